//! WHIP ingest with stock aiortc as the publisher: the stream is recorded as it arrives (same
//! codec and size, no re-encoding), one publisher at a time (a second gets 409), and a publisher
//! that vanishes without saying goodbye still leaves a finalized segment.

mod common;
use common::*;
use std::time::Duration;

fn recordings(base: &str) -> Vec<serde_json::Value> {
    get(&format!("{base}/api/recordings"))
        .json
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn whip_publisher_is_recorded_without_reencoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "inbox", INBOX);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");
    let url = format!("{base}/whip/inbox");
    let events = collect_events(&base, |seen| {
        seen.iter().any(|e| e["type"] == "publisher_stopped")
            && seen.iter().any(|e| e["type"] == "segment_closed")
    });
    std::thread::sleep(Duration::from_millis(300));

    let first = aiortc_publish(&[
        "whip",
        &url,
        "--seconds",
        "5",
        "--width",
        "640",
        "--height",
        "480",
    ]);
    wait_for("the publisher to arrive", Duration::from_secs(20), || {
        let v = get(&format!("{base}/api/pipelines/inbox")).json;
        (v["publishers"].as_array().map(Vec::len) == Some(1)).then_some(())
    });
    // A second publisher meanwhile: 409.
    let (ok, _, stderr) = finish(aiortc_publish(&["whip", &url, "--seconds", "1"]));
    assert!(!ok && stderr.contains("409"), "second publisher: {stderr}");

    let (ok, stdout, stderr) = finish(first);
    assert!(ok, "publisher failed: {stderr}");
    let sent: serde_json::Value = serde_json::from_str(stdout.trim()).expect("publisher JSON");

    // DELETE ended the session; the segment is finalized.
    let list = wait_for("the recording to finish", Duration::from_secs(10), || {
        let list = recordings(&base);
        (list.len() == 1 && list[0]["recording"] == false).then_some(list)
    });
    // The event stream told the story: publisher in, segment opened, publisher out, closed.
    let events = events.join().expect("events");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k}: {kinds:?}"))
    };
    assert!(at("publisher_started") < at("segment_opened"), "{kinds:?}");
    assert!(at("segment_opened") < at("segment_closed"), "{kinds:?}");
    let started = &events[at("publisher_started")];
    assert_eq!(started["pipeline"], "inbox");
    assert_eq!(started["fields"]["via"], "whip");
    let stopped = &events[at("publisher_stopped")];
    assert!(
        stopped["fields"]["bytes_received"].as_u64().unwrap_or(0) > 100_000,
        "{stopped}"
    );

    let probe = ffprobe(list[0]["path"].as_str().expect("path"), None).expect("ffprobe");
    let video = probe.video().expect("video");
    assert_eq!(video.codec, "h264", "the publisher's codec, not re-encoded");
    assert_eq!((video.width, video.height), (640, 480));
    assert!(video.frames >= 100, "{} frames", video.frames);
    let duration = probe.duration.expect("duration");
    let seconds = sent["seconds"].as_f64().unwrap_or(5.0);
    assert!(
        (duration - seconds).abs() <= 1.0,
        "{duration:.2} s recorded of {seconds:.2} s sent"
    );
    assert_eq!(probe.audio().map(|a| a.codec.as_str()), Some("opus"));

    // A second session is a new segment.
    let (ok, _, stderr) = finish(aiortc_publish(&["whip", &url, "--seconds", "2"]));
    assert!(ok, "{stderr}");
    // Finalizing drains the stream (up to 5 s) before the file closes; a loaded machine
    // needs longer than that.
    wait_for("a second segment", Duration::from_secs(20), || {
        let list = recordings(&base);
        (list.len() == 2 && list.iter().all(|r| r["recording"] == false)).then_some(())
    });
    server.shutdown();
}

#[test]
fn publisher_that_vanishes_leaves_a_finalized_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "inbox", INBOX);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");
    let mut publisher = aiortc_publish(&["whip", &format!("{base}/whip/inbox"), "--seconds", "30"]);
    wait_for("recording to start", Duration::from_secs(20), || {
        recordings(&base)
            .iter()
            .any(|r| r["recording"] == true)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let _ = publisher.kill(); // no DELETE, no goodbye
    let _ = publisher.wait();
    let list = wait_for("the session to end", Duration::from_secs(60), || {
        let list = recordings(&base);
        (list.len() == 1 && list[0]["recording"] == false).then_some(list)
    });
    let probe = ffprobe(list[0]["path"].as_str().expect("path"), None).expect("ffprobe");
    assert!(probe.video().is_some_and(|v| v.frames >= 60), "{probe:?}");
    assert!(
        probe.duration.is_some(),
        "finalized: the container knows its duration"
    );
    // The door is open again.
    let v = get(&format!("{base}/api/pipelines/inbox")).json;
    assert_eq!(v["publishers"].as_array().map(Vec::len), Some(0), "{v}");
    server.shutdown();
}
