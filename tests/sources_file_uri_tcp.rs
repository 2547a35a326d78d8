//! The non-camera sources, each observed at a real client: a `tcp` source relaying another
//! pipeline's stream, a `file` source with `loop` (more frames come out than the file holds),
//! and a `uri` source scaled and recorded to Matroska until the file ends.

mod common;
use common::*;

#[test]
fn tcp_relay_file_loop_and_uri_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("clip.mp4");
    // A 2 s clip (60 frames of 320x240 H.264 + AAC), made by gst-launch-1.0.
    let made = run_limited(
        60,
        "gst-launch-1.0",
        &[
            "-q",
            "videotestsrc",
            "num-buffers=60",
            "!",
            "video/x-raw,width=320,height=240,framerate=30/1",
            "!",
            "x264enc",
            "!",
            "h264parse",
            "!",
            "mp4mux",
            "name=m",
            "!",
            "filesink",
            &format!("location={}", clip.display()),
            "audiotestsrc",
            "num-buffers=90",
            "!",
            "avenc_aac",
            "!",
            "aacparse",
            "!",
            "m.",
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).expect("mkdir");
    let (up, relay, looped) = (free_port(), free_port(), free_port());
    let recording = dir.path().join("rec/from-uri.mkv");
    write_pipeline(
        &pipelines,
        "upstream",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\n[[output]]\nkind = \"tcp\"\nport = {up}\n"
        ),
    );
    write_pipeline(
        &pipelines,
        "relay",
        &format!(
            "backoff = {{ initial = \"200ms\", max = \"1s\" }}\n[source]\nkind = \"tcp\"\nport = {up}\n[[output]]\nkind = \"tcp\"\nport = {relay}\n"
        ),
    );
    write_pipeline(
        &pipelines,
        "looped",
        &format!(
            "[source]\nkind = \"file\"\npath = \"{}\"\nloop = true\n[[output]]\nkind = \"tcp\"\nport = {looped}\n",
            clip.display()
        ),
    );
    write_pipeline(
        &pipelines,
        "from-uri",
        &format!(
            "[source]\nkind = \"uri\"\nuri = \"file://{}\"\nwidth = 160\nheight = 120\nframerate = 15\n[[output]]\nkind = \"file\"\npath = \"{}\"\n",
            clip.display(),
            recording.display()
        ),
    );
    let server = TestServer::start(&pipelines);

    // tcp source: the relay re-serves decodable frames of the upstream's size.
    wait_state(&server.base, "relay", "playing");
    let sizes = gst_decode_tcp(relay, 30).expect("relay client");
    assert!(sizes.len() >= 30, "relay gave {} frames", sizes.len());
    assert!(sizes.iter().all(|s| *s == (320, 240)), "{sizes:?}");

    // file source with loop: 4 s of a 2 s (60 frame) clip.
    wait_state(&server.base, "looped", "playing");
    let probe = ffprobe(&format!("tcp://127.0.0.1:{looped}"), Some(4)).expect("ffprobe looped");
    let frames = probe.video().map(|v| v.frames).unwrap_or(0);
    assert!(frames > 75, "looping file gave only {frames} frames in 4 s");

    // uri source: ends with the file (policy on-failure → stopped) and the recording is whole.
    wait_state(&server.base, "from-uri", "stopped");
    let probe = ffprobe(&recording.display().to_string(), None).expect("ffprobe recording");
    let video = probe.video().expect("video");
    assert_eq!((video.width, video.height), (160, 120));
    assert!(video.frames >= 25, "{} frames", video.frames);
    assert_eq!(probe.audio().map(|a| a.codec.as_str()), Some("opus"));
    let duration = probe.duration.unwrap_or(0.0);
    assert!((1.5..=3.0).contains(&duration), "duration {duration}");
    server.shutdown();
}
