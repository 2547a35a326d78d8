//! The `rtsp` output: the embedded RTSP server serves a pipeline's stream as it is encoded at
//! `rtsp://HOST:PORT/{name}`, to ffprobe over TCP and over UDP at once and to a GStreamer
//! `rtspsrc` client; with tokens configured a client presents one that may view the pipeline as
//! its Basic-auth password.

mod common;
use common::*;
use sha2::Digest;

const CAM: &str =
    "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\n\n[[output]]\nkind = \"rtsp\"\n";

/// ffprobe's frames and codecs of the first 3 s of `url` over `transport`.
fn probe(url: &str, transport: &str) -> serde_json::Value {
    probe_frames(url, &["-rtsp_transport", transport], 3)
}

fn stream<'a>(probe: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    probed(probe, kind)
}

#[test]
fn rtsp_clients_over_tcp_udp_and_gstreamer_decode_the_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", CAM);
    let port = free_port();
    let server = TestServer::start_custom(dir.path(), |c| {
        c.rtsp_listen = format!("127.0.0.1:{port}").parse().expect("addr");
    });
    wait_state(&server.base, "cam", "playing");
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    // Two clients at once, one over each transport.
    let (tcp, udp) = std::thread::scope(|s| {
        let tcp = s.spawn(|| probe(&url, "tcp"));
        let udp = s.spawn(|| probe(&url, "udp"));
        (tcp.join().expect("tcp"), udp.join().expect("udp"))
    });
    for seen in [&tcp, &udp] {
        let video = stream(seen, "video").unwrap_or_else(|| panic!("no video: {seen}"));
        assert_eq!(video["codec_name"], "h264", "{seen}");
        assert_eq!(
            (video["width"].as_i64(), video["height"].as_i64()),
            (Some(320), Some(240))
        );
        let frames: i64 = video["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(frames >= 30, "{seen}");
        assert_eq!(
            stream(seen, "audio").map(|a| a["codec_name"].clone()),
            Some("aac".into()),
            "{seen}"
        );
    }
    // GStreamer's own client decodes 30 frames: its sink reaches end-of-stream after the 30th.
    // (Not its exit status: once the sink has had its frames, the client stops reading while
    // the server still sends, and its own teardown can fail on the connection the server
    // dropped meanwhile.)
    let out = run_limited(
        30,
        "gst-launch-1.0",
        &[
            "rtspsrc",
            &format!("location={url}"),
            "protocols=tcp",
            "!",
            "rtph264depay",
            "!",
            "avdec_h264",
            "!",
            "fakesink",
            "num-buffers=30",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Got EOS from element"),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.shutdown();
}

/// With tokens, the token is the Basic-auth password (any user name) and must view the
/// pipeline: the viewer's token plays `cam`, not `other`; no or a wrong token gets 401.
#[test]
fn with_tokens_rtsp_clients_present_the_token_as_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", CAM);
    write_pipeline(dir.path(), "other", CAM);
    let entry = |name: &str, token: &[u8], scopes: &str| {
        let hash: String = sha2::Sha256::digest(token)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("[[token]]\nname = \"{name}\"\nsha256 = \"{hash}\"\nscopes = [{scopes}]\n")
    };
    let tokens =
        entry("ops", b"ops-token", "\"admin\"") + &entry("viewer", b"view-cam", "\"view:cam\"");
    let auth = mediaweave::auth::Auth::load(None, Some(&tokens)).expect("tokens");
    let port = free_port();
    let server = TestServer::start_custom(dir.path(), |c| {
        c.auth = auth;
        c.rtsp_listen = format!("127.0.0.1:{port}").parse().expect("addr");
    });
    let client = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    for name in ["cam", "other"] {
        wait_for(
            "the pipelines to play",
            std::time::Duration::from_secs(30),
            || {
                let r = client
                    .get(&format!("{}/api/pipelines/{name}", server.base))
                    .header("Authorization", "Bearer ops-token")
                    .call()
                    .ok()?;
                let v: serde_json::Value = r.into_body().read_json().ok()?;
                (v["state"] == "playing").then_some(())
            },
        );
    }
    let seen = probe(
        &format!("rtsp://anyone:view-cam@127.0.0.1:{port}/cam"),
        "tcp",
    );
    let video = stream(&seen, "video").unwrap_or_else(|| panic!("no video: {seen}"));
    let frames: i64 = video["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(frames >= 30, "{seen}");
    for url in [
        format!("rtsp://127.0.0.1:{port}/cam"),
        format!("rtsp://anyone:wrong@127.0.0.1:{port}/cam"),
        format!("rtsp://anyone:view-cam@127.0.0.1:{port}/other"),
    ] {
        let refused = probe(&url, "tcp");
        assert!(
            refused["error"].as_str().unwrap_or("").contains("401"),
            "{url}: {refused}"
        );
    }
    server.shutdown();
}

/// A published stream over RTSP: an aiortc publisher that sends keyframes only when asked is
/// served as it arrives (H.264 and its Opus), the media's keyframe request reaching it.
#[test]
fn a_published_stream_is_served_over_rtsp() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "inbox",
        "[source]\nkind = \"webrtc\"\ncodec = \"h264\"\n\n[[output]]\nkind = \"rtsp\"\n",
    );
    let port = free_port();
    let server = TestServer::start_custom(dir.path(), |c| {
        c.rtsp_listen = format!("127.0.0.1:{port}").parse().expect("addr");
    });
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");
    let url = format!("{base}/whip/inbox");
    let publisher = aiortc_publish(&[
        "whip",
        &url,
        "--h264",
        "--keyframes-on-request",
        "--seconds",
        "12",
        "--width",
        "320",
        "--height",
        "240",
    ]);
    let seen = wait_for(
        "an RTSP client to decode 30 frames",
        std::time::Duration::from_secs(40),
        || {
            let seen = probe(&format!("rtsp://127.0.0.1:{port}/inbox"), "tcp");
            let frames: i64 = stream(&seen, "video")?["nb_read_frames"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (frames >= 30).then_some(seen)
        },
    );
    assert_eq!(
        stream(&seen, "audio").map(|a| a["codec_name"].clone()),
        Some("opus".into()),
        "{seen}"
    );
    let (ok, _, stderr) = finish(publisher);
    assert!(ok, "{stderr}");
    server.shutdown();
}
