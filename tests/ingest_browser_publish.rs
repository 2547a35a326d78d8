//! Headless Chromium publishes its (fake) camera and microphone from the /publish page over the
//! GStreamer signalling protocol; the ingest pipeline records a segment with one video and one
//! audio stream.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn chromium_publishes_from_the_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "inbox", INBOX);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");

    let result = chromium(&base, "inbox", "publish");
    assert_eq!(result["published"], true, "{result}");
    let list = wait_for("the recording to finish", Duration::from_secs(15), || {
        let list = get(&format!("{base}/api/recordings")).json;
        let done = list
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["recording"] == false);
        done.then_some(list)
    });
    let path = list[0]["path"].as_str().expect("path").to_string();
    let probe = ffprobe(&path, None).expect("ffprobe");
    let videos = probe.streams.iter().filter(|s| s.kind == "video").count();
    let audios = probe.streams.iter().filter(|s| s.kind == "audio").count();
    assert_eq!((videos, audios), (1, 1), "{probe:?}");
    let video = probe.video().expect("video");
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", 640, 480)
    );
    assert!(video.frames >= 30, "{probe:?}");
    assert_eq!(probe.audio().map(|a| a.codec.as_str()), Some("opus"));

    // The page lists the recording and plays it.
    let shown = chromium(&base, "inbox", "recordings");
    assert_eq!(shown["played"], true, "{shown}");
    assert_eq!(
        (shown["width"].as_u64(), shown["height"].as_u64()),
        (Some(640), Some(480))
    );
    server.shutdown();
}
