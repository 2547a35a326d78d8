//! A source that fails mid-stream: the supervisor restarts the pipeline, and the WebRTC
//! viewers that were watching — aiortc and headless Chromium — keep their sessions (no
//! reconnection, no new offer) and get video again after a pause. The source is a real MPEG-TS server (gst-launch-1.0) killed with SIGKILL and
//! started again.

mod common;
use common::*;
use std::time::Duration;

fn status(base: &str) -> serde_json::Value {
    get(&format!("{base}/api/pipelines/relay")).json
}

fn viewer_ids(s: &serde_json::Value) -> Vec<String> {
    s["viewers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn viewers_get_video_again_after_the_source_fails() {
    let port = free_port();
    let mut server = ts_server(port);
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "relay",
        &format!(
            "restart = \"always\"\nbackoff = {{ initial = \"300ms\", max = \"1s\" }}\n\n[source]\nkind = \"tcp\"\nport = {port}\naudio = false\n\n[encode]\nkeyframe_interval = \"1s\"\n\n[[output]]\nkind = \"webrtc\"\n"
        ),
    );
    let service = TestServer::start(dir.path());
    let base = service.base.clone();
    wait_state(&base, "relay", "playing");

    // 300 frames: more than arrive before the failure, so the viewer only finishes if video
    // comes back.
    let url = format!("{base}/whep/relay");
    let viewer = std::thread::spawn(move || {
        aiortc_view(&["whep", &url, "--frames", "300", "--timeout", "75"])
    });
    let page_base = base.clone();
    let browser = std::thread::spawn(move || chromium(&page_base, "relay", "follow"));
    let ids = wait_for("both viewers to connect", Duration::from_secs(40), || {
        let s = status(&base);
        let connected: Vec<String> = s["viewers"]
            .as_array()?
            .iter()
            .filter(|v| v["connected"] == true)
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect();
        (connected.len() == 2).then_some(connected)
    });
    let mut ids = ids;
    ids.sort();
    let sorted = |s: &serde_json::Value| {
        let mut v = viewer_ids(s);
        v.sort();
        v
    };
    std::thread::sleep(Duration::from_secs(2));

    // The source dies: the pipeline fails (or ends), and cannot start while it is gone.
    let _ = server.kill();
    let _ = server.wait();
    wait_for("the pipeline to notice", Duration::from_secs(20), || {
        (status(&base)["state"] != "playing").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let s = status(&base);
    assert_eq!(sorted(&s), ids, "the viewers wait: {s}");

    // The source is back: the pipeline restarts and the same session goes on.
    let mut server = ts_server(port);
    wait_for(
        "the pipeline to play again",
        Duration::from_secs(30),
        || {
            let s = status(&base);
            (s["state"] == "playing" && s["restarts"].as_u64().unwrap_or(0) >= 1).then_some(())
        },
    );
    // One session all along: nobody joined again.
    let s = status(&base);
    assert_eq!(sorted(&s), ids, "after the restart: {s}");
    let seen = viewer.join().expect("viewer thread");
    let page = browser.join().expect("browser thread");
    let _ = server.kill();
    let _ = server.wait();
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 300, "{seen}");
    let gap = seen["max_gap_ms"].as_f64().unwrap_or(0.0);
    assert!(gap >= 1000.0, "no pause seen: {seen}");
    assert!(
        seen["frames_after_max_gap"].as_u64().unwrap_or(0) >= 60,
        "too little video after the pause: {seen}"
    );
    assert!(
        page["maxGapMs"].as_f64().unwrap_or(0.0) >= 2500.0,
        "Chromium saw no pause: {page}"
    );
    assert!(
        page["framesAfterGap"].as_u64().unwrap_or(0) >= 60,
        "Chromium got too little video after the pause: {page}"
    );
}
