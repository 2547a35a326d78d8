//! Frame hooks: a Rust hook sees the exact pixels of a solid-colour source at the configured
//! size and format; a hook that takes 200 ms per frame loses frames (counted) while the TCP
//! output keeps its full rate; the snapshot hook serves a decodable JPEG of the configured size;
//! the stats hook's events arrive on /api/events.

mod common;
use common::*;
use mediaweave::hooks::{Frame, FrameHook, HookEvent};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Remembers what it saw of each frame.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Sighting>>>);

/// Width, height, format, first pixel, whether every pixel equals it.
type Sighting = (u32, u32, String, Vec<u8>, bool);

struct Probe(Seen);

impl FrameHook for Probe {
    fn on_frame(&mut self, frame: &Frame) -> Option<HookEvent> {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let bpp = if frame.format() == "GRAY8" { 1 } else { 3 };
        let first: Vec<u8> = frame.plane_data(0)[..bpp].to_vec();
        // Every pixel of every row equals the first one.
        let uniform = frame
            .plane_data(0)
            .chunks(frame.stride(0))
            .take(h)
            .all(|row| row[..w * bpp].chunks(bpp).all(|px| px == first.as_slice()));
        self.0.0.lock().expect("lock").push((
            frame.width(),
            frame.height(),
            frame.format().to_string(),
            first,
            uniform,
        ));
        None
    }
}

struct Sleepy;

impl FrameHook for Sleepy {
    fn on_frame(&mut self, _: &Frame) -> Option<HookEvent> {
        std::thread::sleep(Duration::from_millis(200));
        None
    }
}

#[test]
fn rust_hooks_see_exact_pixels_and_never_stall_outputs() {
    let white = Seen::default();
    let black = Seen::default();
    let (w2, b2) = (white.clone(), black.clone());
    mediaweave::hooks::register("probe-white", move |_| Box::new(Probe(w2.clone())));
    mediaweave::hooks::register("probe-black", move |_| Box::new(Probe(b2.clone())));
    mediaweave::hooks::register("sleepy", |_| Box::new(Sleepy));

    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    write_pipeline(
        dir.path(),
        "white",
        "[source]\nkind = \"test\"\npattern = \"white\"\nclock = false\naudio = false\nwidth = 640\nheight = 480\n\n[[hook]]\nkind = \"rust\"\nname = \"probe-white\"\nformat = \"RGB\"\nwidth = 160\nheight = 120\n\n[[hook]]\nkind = \"stats\"\nevery = 10\n",
    );
    write_pipeline(
        dir.path(),
        "black",
        "[source]\nkind = \"test\"\npattern = \"black\"\nclock = false\naudio = false\nwidth = 320\nheight = 240\n\n[[hook]]\nkind = \"rust\"\nname = \"probe-black\"\nformat = \"RGB\"\n",
    );
    write_pipeline(
        dir.path(),
        "busy",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\nframerate = 30\naudio = false\n\n[[output]]\nkind = \"tcp\"\nport = {port}\n\n[[hook]]\nkind = \"rust\"\nname = \"sleepy\"\n\n[[hook]]\nkind = \"snapshot\"\nevery = \"0.5s\"\nwidth = 320\nheight = 180\npath = \"{}/snaps/{{name}}.jpg\"\n",
            dir.path().display()
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();

    // Events: subscribe before the hooks report.
    let ws_url = format!("{}/api/events", base.replace("http://", "ws://"));
    let events = std::thread::spawn(move || {
        let (mut ws, _) = tungstenite_connect(&ws_url);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let Ok(msg) = ws.read() else { break };
            if let Ok(text) = msg.into_text() {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if v["type"] == "hook" && v["fields"]["kind"] == "stats" {
                    return Some(v);
                }
            }
        }
        None
    });

    for name in ["white", "black", "busy"] {
        wait_state(&base, name, "playing");
    }
    wait_for("30 white frames", Duration::from_secs(20), || {
        (white.0.lock().expect("lock").len() >= 30).then_some(())
    });
    wait_for("30 black frames", Duration::from_secs(20), || {
        (black.0.lock().expect("lock").len() >= 30).then_some(())
    });
    for (w, h, format, first, uniform) in white.0.lock().expect("lock").iter() {
        assert_eq!((*w, *h, format.as_str()), (160, 120, "RGB"));
        assert_eq!(first.as_slice(), &[255, 255, 255], "exact white");
        assert!(uniform, "every pixel is white");
    }
    for (w, h, format, first, uniform) in black.0.lock().expect("lock").iter() {
        assert_eq!((*w, *h, format.as_str()), (320, 240, "RGB"));
        assert_eq!(first.as_slice(), &[0, 0, 0], "exact black");
        assert!(uniform);
    }

    // The slow hook: the TCP viewer still gets (nearly) every frame of 4 s of stream time.
    let probe = ffprobe(&format!("tcp://127.0.0.1:{port}"), Some(4)).expect("ffprobe");
    let frames = probe.video().map(|v| v.frames).unwrap_or(0);
    assert!(
        frames >= 108,
        "the output kept {frames} of ~120 frames while the hook was slow"
    );
    let status = get(&format!("{base}/api/pipelines/busy")).json;
    let sleepy = &status["hooks"][0];
    assert_eq!(sleepy["name"], "sleepy");
    assert!(sleepy["dropped"].as_u64().unwrap_or(0) > 20, "{sleepy}");
    assert!(
        sleepy["processing_p50_ms"].as_f64().unwrap_or(0.0) >= 190.0,
        "{sleepy}"
    );

    // Snapshot: a decodable JPEG of the configured size.
    let jpeg = wait_for("a snapshot", Duration::from_secs(10), || {
        let mut r = ureq::get(&format!("{base}/api/pipelines/busy/snapshot.jpg"))
            .call()
            .ok()?;
        r.body_mut().read_to_vec().ok()
    });
    let path = dir.path().join("snap.jpg");
    std::fs::write(&path, &jpeg).expect("write");
    let probe = ffprobe(&path.display().to_string(), None).expect("a decodable JPEG");
    let v = probe.video().expect("image");
    assert_eq!((v.codec.as_str(), v.width, v.height), ("mjpeg", 320, 180));
    // ... and the same on disk.
    let on_disk = dir.path().join("snaps/busy.jpg");
    let probe = ffprobe(&on_disk.display().to_string(), None).expect("the snapshot file");
    let v = probe.video().expect("image");
    assert_eq!((v.width, v.height), (320, 180));

    // Stats events on /api/events: white has a mean luma of 255.
    let ev = events
        .join()
        .expect("events thread")
        .expect("a stats event");
    let luma = ev["fields"]["fields"]["mean_luma"].as_f64().unwrap_or(0.0);
    assert_eq!(ev["pipeline"], "white");
    assert!((luma - 255.0).abs() < 0.5, "{ev}");
    server.shutdown();
}

fn tungstenite_connect(
    url: &str,
) -> (
    tokio_tungstenite::tungstenite::WebSocket<
        tokio_tungstenite::tungstenite::stream::MaybeTlsStream<std::net::TcpStream>,
    >,
    tokio_tungstenite::tungstenite::handshake::client::Response,
) {
    tokio_tungstenite::tungstenite::connect(url).expect("connect /api/events")
}
