//! A `jpeg-tcp` output feeding the tutorials' receiver as it is written (the "AI server" of
//! `tests/peers/tutorial_jpeg.py recv`: reads the 64-byte length, the base64 data and the
//! 64-byte time, `cv2.imdecode`s each frame). The output waits for the receiver, reconnects
//! when it goes away, and never holds up the pipeline. A published stream (kept as it arrives)
//! is decoded for it by a reader of its own.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The tutorial's receiver on `port`, killed when dropped; it writes its count to `count`.
struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn receiver(port: u16, count: &Path) -> Receiver {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/tutorial_jpeg.py");
    Receiver(
        Command::new(venv_python())
            .arg(script)
            .args(["recv", &port.to_string()])
            .arg(count)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the receiver"),
    )
}

/// What the receiver has decoded so far.
fn decoded(count: &PathBuf) -> serde_json::Value {
    std::fs::read_to_string(count)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::json!({ "frames": 0 }))
}

fn wait_frames(count: &PathBuf, n: u64) -> serde_json::Value {
    wait_for(
        &format!("{n} frames at the receiver"),
        Duration::from_secs(30),
        || {
            let seen = decoded(count);
            (seen["frames"].as_u64().unwrap_or(0) >= n).then_some(seen)
        },
    )
}

#[test]
fn the_tutorials_receiver_gets_frames_and_gets_them_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    write_pipeline(
        dir.path(),
        "cam",
        &format!(
            "[source]\nkind = \"test\"\npattern = \"ball\"\nwidth = 640\nheight = 360\naudio = false\n\n[[output]]\nkind = \"jpeg-tcp\"\nconnect = \"127.0.0.1:{port}\"\nframing = \"ascii-base64\"\nfps = 15\nwidth = 480\nheight = 315\n"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    // Nobody listens yet: the output says so, and the pipeline plays on.
    let status = wait_for("the output's error", Duration::from_secs(10), || {
        let s = get(&format!("{base}/api/pipelines/cam")).json;
        s["jpeg_tcp_outputs"][0]["error"].is_string().then_some(s)
    });
    assert!(
        status["jpeg_tcp_outputs"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{status}"
    );

    let first = dir.path().join("first.json");
    let r = receiver(port, &first);
    let seen = wait_frames(&first, 30);
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(480), Some(315)),
        "{seen}"
    );
    let status = get(&format!("{base}/api/pipelines/cam")).json;
    let out = &status["jpeg_tcp_outputs"][0];
    assert_eq!(out["connected"], true, "{status}");
    assert!(out["sent"].as_u64().unwrap_or(0) >= 30, "{status}");

    // The receiver is killed and started again: frames flow to the new one.
    drop(r);
    let second = dir.path().join("second.json");
    let _r = receiver(port, &second);
    wait_frames(&second, 30);
    assert_eq!(
        get(&format!("{base}/api/pipelines/cam")).json["state"],
        "playing"
    );
}

#[test]
fn a_published_stream_is_decoded_for_the_tutorials_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // A stream kept as it arrives (a WHIP publisher's, recorded as sent): the output decodes
    // it in a reader of its own.
    write_pipeline(
        dir.path(),
        "inbox",
        &format!(
            "{INBOX}\n[[output]]\nkind = \"jpeg-tcp\"\nconnect = \"127.0.0.1:{port}\"\nframing = \"ascii-base64\"\nfps = 15\n"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");
    let count = dir.path().join("count.json");
    let _r = receiver(port, &count);
    // aiortc sends a keyframe only when asked: the decoder asks.
    let publisher = aiortc_publish(&[
        "whip",
        &format!("{base}/whip/inbox"),
        "--seconds",
        "8",
        "--width",
        "640",
        "--height",
        "480",
    ]);
    let seen = wait_frames(&count, 30);
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(640), Some(480)),
        "{seen}"
    );
    let (ok, _, stderr) = finish(publisher);
    assert!(ok, "publisher failed: {stderr}");
    let status = get(&format!("{base}/api/pipelines/inbox")).json;
    let out = &status["jpeg_tcp_outputs"][0];
    assert!(out["sent"].as_u64().unwrap_or(0) >= 30, "{status}");
    assert!(out["error"].is_null(), "{status}");
}
