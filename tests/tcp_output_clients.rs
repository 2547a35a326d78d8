//! A `tcp` output serves MPEG-TS that real clients decode: ffprobe and a GStreamer
//! tcpclientsrc ! tsdemux pipeline, one at a time and both at once.

mod common;
use common::*;

#[test]
fn tcp_output_is_decoded_by_ffprobe_and_gstreamer_clients_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    write_pipeline(
        dir.path(),
        "tcp",
        &format!(
            r#"
[source]
kind = "test"
width = 320
height = 240
framerate = 30
audio = true

[encode]
bitrate = 500

[[output]]
kind = "tcp"
port = {port}
"#
        ),
    );
    let server = TestServer::start(dir.path());
    wait_state(&server.base, "tcp", "playing");

    // One client alone.
    let sizes = gst_decode_tcp(port, 30).expect("gstreamer client");
    assert!(
        sizes.len() >= 30,
        "GStreamer client decoded only {} frames",
        sizes.len()
    );
    assert!(
        sizes.iter().all(|s| *s == (320, 240)),
        "frame sizes: {sizes:?}"
    );

    // Two clients at once: ffprobe and GStreamer both decode frames of the right size.
    let url = format!("tcp://127.0.0.1:{port}");
    let probe = std::thread::spawn(move || ffprobe(&url, Some(3)));
    let sizes = gst_decode_tcp(port, 30).expect("gstreamer client");
    let probe = probe
        .join()
        .expect("ffprobe thread")
        .expect("ffprobe reads the stream");

    assert!(
        sizes.len() >= 30,
        "second GStreamer client decoded {} frames",
        sizes.len()
    );
    let video = probe.video().expect("a video stream");
    assert_eq!(video.codec, "h264");
    assert_eq!((video.width, video.height), (320, 240));
    assert!(
        video.frames >= 30,
        "ffprobe decoded {} frames",
        video.frames
    );
    assert_eq!(probe.audio().map(|a| a.codec.as_str()), Some("aac"));
    server.shutdown();
}
