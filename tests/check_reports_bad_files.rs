//! `mediaweave check` reports each kind of bad description file as `FILE:LINE:COL: message`
//! at the offending key or value, and exits 1.

mod common;
use common::*;
use std::path::Path;

/// Runs `mediaweave check FILE` on `text`; returns (exit code, stderr, file path).
fn check(name: &str, text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(dir.path(), name, text);
    let out = run_check(&path);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
        path.display().to_string(),
    )
}

/// Runs `mediaweave check` on the file at `path`.
fn run_check(path: &Path) -> std::process::Output {
    std::process::Command::new(bin())
        .arg("check")
        .arg(path)
        .output()
        .expect("run mediaweave check")
}

fn assert_error(name: &str, text: &str, line_col: &str, message: &str) {
    let (code, stderr, path) = check(name, text);
    assert_eq!(code, 1, "check must exit 1 for {name}; stderr: {stderr}");
    let expected = format!("{path}:{line_col}: {message}");
    assert!(
        stderr.lines().any(|l| l.starts_with(&expected)),
        "expected a line starting with\n  {expected}\ngot:\n{stderr}"
    );
}

#[test]
fn toml_syntax_error() {
    assert_error(
        "syntax",
        "description = \"x\"\n[source\nkind = \"test\"\n",
        "2:8",
        "unclosed table, expected `]`",
    );
}

#[test]
fn unknown_key_with_suggestion() {
    assert_error(
        "unknown-key",
        "[source]\nkind = \"test\"\nwidht = 640\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "3:1",
        "unknown key `widht`; did you mean `width`?",
    );
}

#[test]
fn unknown_top_level_key() {
    assert_error(
        "unknown-top",
        "lauch = \"videotestsrc ! fakesink\"\n",
        "1:1",
        "unknown key `lauch`; did you mean `launch`?",
    );
}

#[test]
fn wrong_type() {
    assert_error(
        "wrong-type",
        "[source]\nkind = \"test\"\nwidth = \"wide\"\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "3:9",
        "invalid type: string \"wide\", expected u32",
    );
}

#[test]
fn unknown_element_in_launch_suggests_nearest() {
    assert_error(
        "unknown-element",
        "# raw form\nlaunch = \"videotestsrc ! x264enk ! fakesink\"\n",
        "2:26",
        "no element `x264enk`; did you mean `x264enc`?",
    );
}

#[test]
fn unknown_encoder_element_in_structured_form() {
    assert_error(
        "unknown-encoder",
        "[source]\nkind = \"test\"\n\n[encode]\nencoder = \"x264enk\"\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "5:11",
        "no element `x264enk`; did you mean `x264enc`?",
    );
}

#[test]
fn launch_that_does_not_parse() {
    // A link to nothing is pointed at (GStreamer itself only says "syntax error").
    assert_error(
        "bad-launch",
        "launch = \"videotestsrc ! ! fakesink\"\n",
        "1:26",
        "in `launch`: this `!` links to nothing",
    );
    assert_error(
        "bad-caps-launch",
        "launch = \"videotestsrc ! video/x-raw ! fakesink =\"\n",
        "1:10",
        "`launch` does not parse: syntax error",
    );
    assert_error(
        "bad-media-type",
        "launch = \"videotestsrc ! 0/a ! fakesink\"\n",
        "1:26",
        "in `launch`: a caps filter's media type starts with a letter",
    );
}

#[test]
fn unknown_property_in_launch() {
    assert_error(
        "bad-property",
        "launch = \"videotestsrc patern=ball ! fakesink\"\n",
        "1:24",
        "in `launch`: no property \"patern\" in element \"videotestsrc\"",
    );
}

#[test]
fn missing_plugin_names_the_debian_package() {
    // Elements Debian packages ship but this test setup does not install.
    let candidates = [
        ("pipewiresrc", "gstreamer1.0-pipewire"),
        ("rtspclientsink", "gstreamer1.0-rtsp"),
        ("gtksink", "gstreamer1.0-gtk3"),
        ("wpesrc", "gstreamer1.0-wpe"),
        ("qmlglsink", "gstreamer1.0-qt5"),
    ];
    gst::init().expect("gstreamer");
    let (element, package) = candidates
        .iter()
        .find(|(e, _)| gst::ElementFactory::find(e).is_none())
        .expect("every candidate element is installed; pick one that is not");
    assert_error(
        "missing-plugin",
        &format!("launch = \"{element} ! fakesink\"\n"),
        "1:11",
        &format!(
            "element `{element}` is not installed: it is in the Debian package {package} (apt-get install {package})"
        ),
    );
}

#[test]
fn camera_device_that_does_not_exist() {
    let device = "/dev/video-mediaweave-none";
    assert!(!Path::new(device).exists());
    assert_error(
        "no-camera",
        &format!(
            "[source]\nkind = \"camera\"\ndevice = \"{device}\"\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n"
        ),
        "3:10",
        &format!("camera device `{device}` does not exist"),
    );
}

#[test]
fn unknown_source_kind() {
    assert_error(
        "bad-kind",
        "[source]\nkind = \"tset\"\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "2:8",
        "unknown source kind `tset` (expected one of camera, test, file, uri, tcp, jpeg-tcp, webrtc, room, whep); did you mean `test`?",
    );
}

#[test]
fn output_that_cannot_carry_the_codec() {
    assert_error(
        "bad-codec",
        "[source]\nkind = \"test\"\n\n[encode]\ncodec = \"vp8\"\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "7:1",
        "tcp output cannot carry vp8 video (MPEG-TS carries h264); set [encode] codec = \"h264\"",
    );
}

#[test]
fn passthrough_aac_cannot_go_to_webrtc_viewers() {
    assert_error(
        "rtsp-aac",
        "[source]\nkind = \"uri\"\nuri = \"rtsp://cam/1\"\npassthrough = true\n\n[[output]]\nkind = \"webrtc\"\n",
        "6:1",
        "a passthrough source sends its AAC audio as it arrives, and WebRTC carries Opus only: set audio = false in [source] (video only), or passthrough = false to re-encode",
    );
}

#[test]
fn container_hint_names_a_codec_it_carries() {
    assert_error(
        "webm-h264",
        "[source]\nkind = \"test\"\n\n[[output]]\nkind = \"file\"\npath = \"a.webm\"\n",
        "4:1",
        "file output cannot carry h264 video (WebM carries vp8, vp9, av1); set [encode] codec = \"vp8\"",
    );
}

#[test]
fn out_of_range_values_point_at_their_key() {
    assert_error(
        "low-bitrate",
        "[source]\nkind = \"test\"\n\n[encode]\ncodec = \"h264\"\nbitrate = 5\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "6:11",
        "bitrate 5 kbit/s is out of range: use 16 to 100000",
    );
    assert_error(
        "odd-width",
        "[source]\nkind = \"test\"\nwidth = 33\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "3:9",
        "width 33 is out of range: use an even number from 16 to 7680",
    );
    assert_error(
        "huge-backoff",
        "backoff = { initial = 9223372036854775807 }\nlaunch = \"videotestsrc ! fakesink\"\n",
        "1:23",
        "duration 9223372036854775807 is longer than a day",
    );
}

#[test]
fn forced_encoder_must_produce_the_codec() {
    assert_error(
        "mismatch",
        "[source]\nkind = \"test\"\n\n[encode]\ncodec = \"h264\"\nencoder = \"vp8enc\"\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "6:11",
        "encoder `vp8enc` does not produce h264 (it produces video/x-vp8)",
    );
}

#[test]
fn launch_positions_name_the_right_word() {
    // The property of the second element, not the same name on the first.
    assert_error(
        "second-element",
        "launch = \"videotestsrc pattern=ball ! x264enc pattern=1 ! fakesink\"\n",
        "1:47",
        "in `launch`: no property \"pattern\" in element \"x264enc\"",
    );
    // The element, not the same text inside a property value.
    assert_error(
        "name-in-value",
        "launch = \"filesrc location=/x/x264enk ! x264enk ! fakesink\"\n",
        "1:41",
        "no element `x264enk`; did you mean `x264enc`?",
    );
}

#[test]
fn good_files_pass_and_show_the_chosen_encoder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        dir.path(),
        "good",
        "[source]\nkind = \"test\"\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
    );
    let out = run_check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok (structured: test 1280x720@30 → tcp://127.0.0.1:5000)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("video encoder: x264enc (software)"),
        "{stdout}"
    );
}

#[test]
fn shipped_pipelines_are_valid_except_the_missing_camera() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    for name in ["test-pattern", "tcp-test", "raw-example", "inbox", "lobby"] {
        let out = run_check(&dir.join(format!("{name}.toml")));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn hook_mistakes() {
    assert_error(
        "hook-format",
        "[source]\nkind = \"test\"\n\n[[hook]]\nkind = \"rust\"\nname = \"invert\"\nformat = \"RGBA\"\n",
        "7:10",
        "unknown hook format `RGBA`: use RGB, BGR, GRAY8, I420",
    );
    assert_error(
        "hook-transform-ingest",
        "[source]\nkind = \"webrtc\"\n\n[[output]]\nkind = \"record\"\n\n[[hook]]\nkind = \"rust\"\nname = \"invert\"\nmode = \"transform\"\n",
        "10:8",
        "a transform changes the video the outputs carry, which needs re-encoding",
    );
    assert_error(
        "hook-transform-size",
        "[source]\nkind = \"test\"\n\n[[hook]]\nkind = \"rust\"\nname = \"invert\"\nmode = \"transform\"\nwidth = 320\n",
        "4:1",
        "a transform works on the video the outputs carry: drop width/height/fps",
    );
    assert_error(
        "hook-mode",
        "[source]\nkind = \"test\"\n\n[[hook]]\nkind = \"rust\"\nname = \"invert\"\nmode = \"change\"\n",
        "7:8",
        "unknown variant `change`, expected `observe` or `transform`",
    );
    assert_error(
        "hook-socket",
        "[source]\nkind = \"test\"\n\n[[hook]]\nkind = \"socket\"\nlisten = \"7000\"\n",
        "6:10",
        "`7000` is not an address to listen on: use HOST:PORT",
    );
}

#[test]
fn hls_segments_are_whole_seconds_and_playlists_bounded() {
    let out = "[source]\nkind = \"test\"\n\n[[output]]\nkind = \"hls\"\n";
    assert_error(
        "hls-segment",
        &format!("{out}segment = \"500ms\"\n"),
        "6:11",
        "an HLS segment is whole seconds from 1 to 60, not 500ms",
    );
    assert_error(
        "hls-playlist",
        &format!("{out}playlist_length = 0\n"),
        "6:19",
        "playlist_length is the number of segments a playlist names, 1 to 100, not 0",
    );
    assert_error(
        "hls-vp8",
        &format!("[encode]\ncodec = \"vp8\"\n\n{out}"),
        "7:1",
        "hls output cannot carry vp8 video (HLS carries h264); set [encode] codec = \"h264\"",
    );
}

#[test]
fn whip_and_whep_endpoints_are_http_urls() {
    assert_error(
        "whep-url",
        "[source]\nkind = \"whep\"\nurl = \"rtsp://cam/1\"\n\n[[output]]\nkind = \"webrtc\"\n",
        "3:7",
        "`rtsp://cam/1` is not a WHEP endpoint: use http(s)://HOST[:PORT]/PATH",
    );
    assert_error(
        "whip-ice",
        "[source]\nkind = \"test\"\n\n[[output]]\nkind = \"whip\"\nurl = \"http://h/whip/x\"\nice_servers = [\"stun.example.org\"]\n",
        "7:16",
        "`stun.example.org` is not an ICE server: use stun://HOST:PORT or turn(s)://USER:PASSWORD@HOST:PORT",
    );
    assert_error(
        "whep-tcp-vp8",
        "[source]\nkind = \"whep\"\nurl = \"http://h/whep/x\"\ncodec = \"vp8\"\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "6:1",
        "a tcp output carries H.264 here: this whep source takes vp8",
    );
}

#[test]
fn ladder_mistakes_point_at_the_ladder() {
    let webrtc = "\n[[output]]\nkind = \"webrtc\"\n";
    assert_error(
        "ladder-word",
        &format!("[source]\nkind = \"test\"\n\n[encode]\nladder = \"steep\"\n{webrtc}"),
        "5:10",
        "ladder `steep`: use \"auto\" or a list of { width, height, bitrate }",
    );
    assert_error(
        "ladder-bigger",
        &format!(
            "[source]\nkind = \"test\"\n\n[encode]\nbitrate = 1000\nladder = [{{ width = 640, height = 360, bitrate = 1200 }}]\n{webrtc}"
        ),
        "6:10",
        "rung 1 (640x360, 1200 kbit/s) must be smaller in width, height and bitrate than the top (1280x720, 1000 kbit/s)",
    );
    assert_error(
        "ladder-relayed",
        &format!("[source]\nkind = \"webrtc\"\n\n[encode]\nladder = \"auto\"\n{webrtc}"),
        "5:10",
        "a ladder encodes the raw video again at smaller sizes, but this source's stream is kept as it arrives",
    );
    assert_error(
        "ladder-no-viewers",
        "[source]\nkind = \"test\"\n\n[encode]\nladder = \"auto\"\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        "5:10",
        "a ladder serves WebRTC viewers: add a `webrtc` output",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        dir.path(),
        "laddered",
        &format!("[source]\nkind = \"test\"\n\n[encode]\nladder = \"auto\"\n{webrtc}"),
    );
    let out = run_check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ladder: 1280x720 2000k, 640x360 700k, 320x180 200k"),
        "{stdout}"
    );
}

#[test]
fn jpeg_tcp_mistakes_point_at_their_key() {
    let webrtc = "\n[[output]]\nkind = \"webrtc\"\n";
    assert_error(
        "jpeg-listen",
        &format!(
            "[source]\nkind = \"jpeg-tcp\"\nlisten = \"localhost\"\nframing = \"u32be\"\n{webrtc}"
        ),
        "3:10",
        "`localhost` is not an address to listen on: use HOST:PORT",
    );
    assert_error(
        "jpeg-framing",
        &format!(
            "[source]\nkind = \"jpeg-tcp\"\nlisten = \"127.0.0.1:8485\"\nframing = \"base64\"\n{webrtc}"
        ),
        "4:11",
        "unknown variant `base64`, expected `ascii-base64` or `u32be`",
    );
    assert_error(
        "jpeg-max",
        &format!(
            "[source]\nkind = \"jpeg-tcp\"\nlisten = \"127.0.0.1:8485\"\nframing = \"u32be\"\nmax_frame_bytes = 10\n{webrtc}"
        ),
        "5:19",
        "max_frame_bytes 10 is out of range",
    );
    let out = "\n[[output]]\nkind = \"jpeg-tcp\"\nconnect = \"127.0.0.1:8485\"\nframing = \"ascii-base64\"\n";
    assert_error(
        "jpeg-out-room",
        &format!("[source]\nkind = \"room\"\n{out}"),
        "4:1",
        "a room has a stream per participant, and a jpeg-tcp output sends one stream to one receiver",
    );
    assert_error(
        "jpeg-out-connect",
        &format!("[source]\nkind = \"test\"\n{out}").replace("127.0.0.1:8485", "ai-server"),
        "6:11",
        "`ai-server` is not a receiver's address: use HOST:PORT",
    );
}
