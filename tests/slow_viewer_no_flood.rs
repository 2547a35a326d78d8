//! A viewer on a slow link never makes the service flood it: headless Chromium watches a
//! 2 Mbit/s 720p stream through a 600 kbit/s link (a veth pair into a network namespace of the
//! test's own, shaped with `tbf`). It loses most packets and keeps asking for them (NACK);
//! what the service offers that link (what the shaper sent plus what it dropped) stays within
//! 1.5× the stream, and a viewer on a fast link keeps 30 fps meanwhile.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::gst_viewers::GstViewers;
use common::slow_link::SlowLink;

#[test]
fn a_slow_viewer_gets_at_most_one_and_a_half_times_the_stream() {
    let link = SlowLink::new("600kbit");
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "cam",
        "[source]\nkind = \"test\"\nwidth = 1280\nheight = 720\nframerate = 30\naudio = false\n[encode]\nbitrate = 2000\n[[output]]\nkind = \"webrtc\"\n",
    );
    let server = TestServer::start_custom(dir.path(), |c| {
        c.listen = format!("{}:0", link.host).parse().expect("address");
        // No tokens, and not loopback: this namespace is the test's own.
        c.insecure = true;
        c.webrtc.ice.addresses = vec![link.host.clone(), "127.0.0.1".into()];
    });
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");

    // The slow viewer: Chromium in the namespace, watching for 25 s whatever arrives.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/view.mjs");
    let mut chromium = Command::new("ip")
        .args(["netns", "exec", &link.ns, "node"])
        .arg(&script)
        .args([base.as_str(), "cam", "linger"])
        .env("WATCH_SECONDS", "25")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut lines = BufReader::new(chromium.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("\"connected\":true"), "chromium: {first}");
    // Let its losses and requests build up.
    std::thread::sleep(Duration::from_secs(3));

    // The fast viewer: a GStreamer webrtcbin viewer on loopback, counting frames.
    let mut fast = GstViewers::whep(&format!("{base}/whep/cam"));
    let added = fast.ask("add 1");
    assert_eq!(added["connected"], 1, "{added}");

    let meter = || -> u64 {
        get(&format!("{base}/api/pipelines/cam")).json["meter"]["video_bytes"]
            .as_u64()
            .unwrap_or(0)
    };
    let (shaper0, stream0) = (link.shaper(), meter());
    let measured = fast.ask("measure 12");
    let (shaper1, stream1) = (link.shaper(), meter());
    let status = get(&format!("{base}/api/pipelines/cam")).json;
    drop(fast);
    let _ = chromium.wait();

    let sent = shaper1.0 - shaper0.0;
    let packets = (shaper1.1 - shaper0.1).max(1);
    let dropped = shaper1.2 - shaper0.2;
    // Dropped packets are counted, not their bytes: they weigh what the sent ones did.
    let offered = sent + dropped * sent / packets;
    let stream = stream1 - stream0;
    let ratio = offered as f64 / stream as f64;
    println!(
        "offered {offered} bytes toward the slow viewer (sent {sent}, dropped {dropped} packets) for a stream of {stream} bytes: {ratio:.2}×"
    );
    assert!(ratio <= 1.5, "{ratio:.2}× the stream: {status}");
    let refused: u64 = status["viewers"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|s| s["retransmissions_refused"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    assert!(
        refused > 0,
        "the slow viewer asked for more than its budget: {status}"
    );
    let fps = measured["fps"][0].as_f64().unwrap_or(0.0);
    assert!(fps >= 27.0, "the fast viewer got {fps} fps: {measured}");
    server.shutdown();
}
