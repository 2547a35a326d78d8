//! A `tcp` pull source recorded as it arrives: parse and mux, no decoding or encoding (the
//! plan has no encoder; the file has the upstream's H.264 and AAC). A stream that is not the
//! declared codec fails with a message saying so.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn tcp_stream_is_recorded_without_reencoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    write_pipeline(
        dir.path(),
        "upstream",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 640\nheight = 360\n[[output]]\nkind = \"tcp\"\nport = {port}\n"
        ),
    );
    write_pipeline(
        dir.path(),
        "pull",
        &format!(
            "backoff = {{ initial = \"200ms\", max = \"1s\" }}\n[source]\nkind = \"tcp\"\nport = {port}\n[[output]]\nkind = \"record\"\nsegment = \"1m\"\n"
        ),
    );
    write_pipeline(
        dir.path(),
        "wrong",
        &format!(
            "backoff = {{ initial = \"200ms\", max = \"1s\" }}\n[source]\nkind = \"tcp\"\nport = {port}\ncodec = \"vp8\"\n[[output]]\nkind = \"record\"\n"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    let status = wait_state(&base, "pull", "playing");
    let launch = status["launch"].as_str().unwrap_or_default();
    assert!(
        launch.contains("decodebin name=decode caps=\"video/x-h264;"),
        "decoding stops at the encoded streams: {launch}"
    );
    for element in [
        "x264enc",
        "openh264enc",
        "avenc_aac",
        "opusenc",
        "avdec_h264",
    ] {
        assert!(
            !launch.contains(element),
            "no decoding or encoding: {launch}"
        );
    }
    assert_eq!(status["chosen"][0]["role"], "passthrough");

    std::thread::sleep(Duration::from_secs(4));
    let r = post(&format!("{base}/api/pipelines/pull/stop"));
    assert_eq!(r.json["state"], "stopped");
    let list = get(&format!("{base}/api/recordings")).json;
    let rec = list
        .as_array()
        .and_then(|a| a.iter().find(|r| r["pipeline"] == "pull").cloned())
        .expect("a recording of pull");
    let probe = ffprobe(rec["path"].as_str().expect("path"), None).expect("ffprobe");
    let video = probe.video().expect("video");
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", 640, 360)
    );
    assert!(video.frames >= 60, "{probe:?}");
    assert_eq!(
        probe.audio().map(|a| a.codec.as_str()),
        Some("aac"),
        "upstream's AAC kept"
    );

    // The declared codec does not match what arrives: a clear failure.
    let failed = wait_for("wrong to fail", Duration::from_secs(20), || {
        let v = get(&format!("{base}/api/pipelines/wrong")).json;
        v["last_error"]["message"]
            .as_str()
            .filter(|m| m.contains("video/x-h264, not video/x-vp8"))
            .map(str::to_string)
    });
    assert!(failed.contains("set `codec` in [source]"), "{failed}");
    server.shutdown();
}

/// A real RTSP server (gst-rtsp-server) with H.264 + AAC at rtsp://127.0.0.1:PORT/test.
fn rtsp_server() -> (std::process::Child, u16) {
    use std::io::{BufRead, BufReader};
    let port = free_port();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/rtsp_server.py");
    let mut rtsp = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the RTSP server");
    let mut line = String::new();
    BufReader::new(rtsp.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "ready");
    (rtsp, port)
}

#[test]
fn rtsp_stream_is_recorded_without_reencoding() {
    let (mut rtsp, port) = rtsp_server();

    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "cam",
        &format!(
            "[source]\nkind = \"uri\"\nuri = \"rtsp://127.0.0.1:{port}/test\"\n[[output]]\nkind = \"record\"\nsegment = \"1m\"\n"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    std::thread::sleep(Duration::from_secs(4));
    post(&format!("{base}/api/pipelines/cam/stop"));
    let list = get(&format!("{base}/api/recordings")).json;
    let path = list[0]["path"].as_str().expect("a recording").to_string();
    let probe = ffprobe(&path, None).expect("ffprobe");
    let video = probe.video().expect("video");
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", 320, 240)
    );
    assert!(video.frames >= 60, "{probe:?}");
    assert_eq!(
        probe.audio().map(|a| a.codec.as_str()),
        Some("aac"),
        "{probe:?}"
    );
    server.shutdown();
    let _ = rtsp.kill();
    let _ = rtsp.wait();
}

#[test]
fn rtsp_h264_reaches_webrtc_viewers_without_reencoding() {
    let (mut rtsp, port) = rtsp_server();
    let dir = tempfile::tempdir().expect("tempdir");
    // WebRTC carries no AAC: video only (audio = false), kept as the camera sends it.
    let text = format!(
        "[source]\nkind = \"uri\"\nuri = \"rtsp://127.0.0.1:{port}/test\"\npassthrough = true\naudio = false\n[[output]]\nkind = \"webrtc\"\n[[output]]\nkind = \"record\"\nsegment = \"1m\"\n"
    );
    write_pipeline(dir.path(), "cam", &text);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    let status = wait_state(&base, "cam", "playing");
    // No encoder in the graph: nothing chosen but passthrough, nothing encoding in the line.
    assert_eq!(status["chosen"][0]["role"], "passthrough", "{status}");
    let launch = status["launch"].as_str().unwrap_or_default();
    let encoders: Vec<&str> = launch
        .split_whitespace()
        .filter(|t| !t.contains('=') && (t.ends_with("enc") || t.starts_with("avenc")))
        .collect();
    assert!(encoders.is_empty(), "{encoders:?} in {launch}");
    let seen = aiortc_view(&[
        "whep",
        &format!("{base}/whep/cam"),
        "--frames",
        "60",
        "--timeout",
        "30",
    ]);
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 60, "{seen}");
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(320), Some(240)),
        "{seen}"
    );
    server.shutdown();
    let _ = rtsp.kill();
    let _ = rtsp.wait();
}
