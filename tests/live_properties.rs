//! Element access on a running pipeline: the encoder's bitrate is changed live, read back, and
//! a real TCP client measures the stream's rate falling accordingly. Unknown elements and
//! properties, read-only properties and values of the wrong type get clear errors.

mod common;
use common::*;
use std::io::Read;
use std::time::{Duration, Instant};

/// Bytes per second a TCP client reads over `secs`.
fn rate(port: u16, secs: u64) -> f64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = vec![0u8; 65536];
    // Skip the first second: a new client starts at a keyframe burst.
    let start = Instant::now();
    let mut total = 0usize;
    let mut counting = None;
    while start.elapsed() < Duration::from_secs(secs + 1) {
        let n = s.read(&mut buf).unwrap_or(0);
        if start.elapsed() >= Duration::from_secs(1) {
            counting.get_or_insert(Instant::now());
            total += n;
        }
    }
    total as f64 / counting.map(|c| c.elapsed().as_secs_f64()).unwrap_or(1.0)
}

#[test]
fn encoder_bitrate_changes_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // Noise needs every bit it is given: the stream's rate follows the encoder's bitrate.
    write_pipeline(
        dir.path(),
        "cam",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 640\nheight = 360\naudio = false\npattern = \"snow\"\n\n[encode]\nbitrate = 3000\n\n[[output]]\nkind = \"tcp\"\nport = {port}\n"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    let url = format!("{base}/api/pipelines/cam/elements/video_encoder/properties/bitrate");

    let elements = get(&format!("{base}/api/pipelines/cam/elements")).json;
    let enc = elements
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["name"] == "video_encoder")
        .expect("the encoder is listed");
    assert_eq!(enc["factory"], "x264enc");
    assert_eq!(enc["path"], "/cam/video_encoder");

    let before = get(&url);
    assert_eq!(before.status, 200, "{}", before.json);
    assert_eq!(before.json["value"], 3000);
    let high = rate(port, 3);

    let set = put(&url, "300");
    assert_eq!(set.status, 200, "{}", set.json);
    assert_eq!(set.json["value"], 300);
    assert_eq!(get(&url).json["value"], 300);
    let low = rate(port, 3);
    eprintln!("rate at 3000 kbit/s: {high:.0} B/s, at 300 kbit/s: {low:.0} B/s");
    assert!(high > 200_000.0, "3000 kbit/s is about 375 kB/s: {high}");
    assert!(low < high / 3.0, "the rate fell: {high} -> {low}");

    // {"value": ...} works too, and enums take their nick.
    let r = put(&url, "{\"value\": 2500}");
    assert_eq!(r.json["value"], 2500);
    let speed = format!("{base}/api/pipelines/cam/elements/video_encoder/properties/speed-preset");
    let r = get(&speed);
    assert!(
        r.json["type"]
            .as_str()
            .unwrap_or_default()
            .contains("ultrafast"),
        "{}",
        r.json
    );

    // Mistakes get reasons.
    let r = put(
        &format!("{base}/api/pipelines/cam/elements/video_encoder/properties/bitrat"),
        "300",
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json["error"],
        "element `video_encoder` (x264enc) has no property `bitrat`; did you mean `bitrate`?"
    );
    let r = put(&url, "\"fast\"");
    assert_eq!(r.status, 400);
    let e = r.json["error"].as_str().unwrap_or_default();
    assert!(e.contains("takes unsigned integer 1..=2048000"), "{e}");
    let r = put(&url, "99999999");
    assert_eq!(r.status, 400);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("out of range"),
        "{}",
        r.json
    );
    let r = get(&format!(
        "{base}/api/pipelines/cam/elements/nope/properties/bitrate"
    ));
    assert_eq!(r.status, 404);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("pipeline `cam` has no element `nope`; its elements:"),
        "{}",
        r.json
    );
    let served = format!("{base}/api/pipelines/cam/elements/out0_sink/properties/bytes-served");
    assert!(get(&served).json["value"].as_u64().unwrap_or(0) > 100_000);
    let r = put(&served, "0");
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(
        r.json["error"],
        "property `bytes-served` of `out0_sink` (tcpserversink) is read-only"
    );
    let r = put(
        &format!("{base}/api/pipelines/cam/elements/video_encoder/properties/name"),
        "\"x\"",
    );
    assert_eq!(r.status, 400, "{}", r.json);

    // End-of-stream from the API ends the pipeline as its source ending would.
    let r = post(&format!("{base}/api/pipelines/cam/eos"));
    assert_eq!(r.status, 200, "{}", r.json);
    wait_state(&base, "cam", "stopped");
    let r = get(&url);
    assert_eq!(r.status, 409);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("is not running")
    );
}
