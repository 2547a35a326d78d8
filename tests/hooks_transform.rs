//! Transform hooks change the video the outputs carry: a client decoding the TCP output of a
//! solid red source sees cyan when the built-in `invert` (Rust, in place) or the shipped
//! Python example `invert.py` (frames back on stdout) is on the path. A transform that takes
//! 200 ms per frame misses its budget: frames pass unchanged (counted) at the full rate.

mod common;
use common::*;
use mediaweave::hooks::{Frame, FrameHook, FrameMut, HookEvent};
use std::time::Duration;

struct SlowTransform;

impl FrameHook for SlowTransform {
    fn on_frame(&mut self, _: &Frame) -> Option<HookEvent> {
        None
    }

    fn transform(&mut self, frame: &mut FrameMut) -> Option<HookEvent> {
        std::thread::sleep(Duration::from_millis(200));
        frame.plane_data_mut(0).fill(0);
        None
    }
}

fn red_source(port: u16, hook: &str) -> String {
    format!(
        "[source]\nkind = \"test\"\npattern = \"red\"\nclock = false\naudio = false\nwidth = 320\nheight = 240\nframerate = 30\n\n[[output]]\nkind = \"tcp\"\nport = {port}\n\n[[hook]]\n{hook}\n"
    )
}

fn is_cyan(px: &[u8; 3]) -> bool {
    px[0] < 40 && px[1] > 215 && px[2] > 215
}

fn is_red(px: &[u8; 3]) -> bool {
    px[0] > 215 && px[1] < 40 && px[2] < 40
}

#[test]
fn transforms_change_what_the_outputs_carry() {
    mediaweave::hooks::register("slow-transform", |_| Box::new(SlowTransform));
    let dir = tempfile::tempdir().expect("tempdir");
    let (rust_port, python_port, slow_port) = (free_port(), free_port(), free_port());
    write_pipeline(
        dir.path(),
        "inverted",
        &red_source(
            rust_port,
            "kind = \"rust\"\nname = \"invert\"\nmode = \"transform\"",
        ),
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/examples/invert.py");
    write_pipeline(
        dir.path(),
        "python",
        &red_source(
            python_port,
            &format!(
                "kind = \"process\"\nmode = \"transform\"\nbudget = \"200ms\"\ncommand = [{:?}, {:?}]",
                venv_python().display().to_string(),
                script.display().to_string()
            ),
        ),
    );
    write_pipeline(
        dir.path(),
        "slow",
        &red_source(
            slow_port,
            "kind = \"rust\"\nname = \"slow-transform\"\nmode = \"transform\"\nbudget = \"20ms\"",
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    for name in ["inverted", "python", "slow"] {
        wait_state(&base, name, "playing");
    }

    // Rust, in place: every decoded frame is the negative of red.
    let frames = gst_decode_tcp_rgb(rust_port, 30).expect("decode");
    assert_eq!(frames.len(), 30);
    // A frame may pass unchanged when the machine is too busy for the budget (counted as
    // passed through); nearly all are inverted, and nothing else is ever seen.
    for (w, h, px) in &frames {
        assert_eq!((*w, *h), (320, 240));
        assert!(is_cyan(px) || is_red(px), "decoded {px:?}");
    }
    let cyan = frames.iter().filter(|(_, _, px)| is_cyan(px)).count();
    assert!(cyan >= 27, "{cyan} of 30 frames inverted");
    let status = get(&format!("{base}/api/pipelines/inverted")).json;
    let hook = &status["hooks"][0];
    assert_eq!(hook["mode"], "transform", "{hook}");
    assert!(hook["delivered"].as_u64().unwrap_or(0) >= 30, "{hook}");

    // Python: frames that arrive while the script starts pass unchanged; then it inverts.
    wait_for("the Python transform", Duration::from_secs(30), || {
        let frames = gst_decode_tcp_rgb(python_port, 10).ok()?;
        frames.iter().all(|(_, _, px)| is_cyan(px)).then_some(())
    });
    let status = get(&format!("{base}/api/pipelines/python")).json;
    assert!(
        status["hooks"][0]["delivered"].as_u64().unwrap_or(0) >= 10,
        "{status}"
    );

    // Slow: over its budget every time, so frames pass unchanged and none is lost.
    let probe = ffprobe(&format!("tcp://127.0.0.1:{slow_port}"), Some(4)).expect("ffprobe");
    let frames = probe.video().map(|v| v.frames).unwrap_or(0);
    assert!(
        frames >= 108,
        "the output kept {frames} of ~120 frames while the transform was slow"
    );
    let decoded = gst_decode_tcp_rgb(slow_port, 10).expect("decode");
    assert!(decoded.iter().all(|(_, _, px)| is_red(px)), "{decoded:?}");
    let status = get(&format!("{base}/api/pipelines/slow")).json;
    let hook = &status["hooks"][0];
    assert!(
        hook["passed_through"].as_u64().unwrap_or(0) > 60,
        "most frames passed through: {hook}"
    );
    assert!(hook["delivered"].as_u64().unwrap_or(0) > 0, "{hook}");
    server.shutdown();
}
