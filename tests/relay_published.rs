//! Publish once, watch live: a webrtc-source pipeline with a webrtc output relays what its
//! publisher sends to WebRTC viewers (WHEP, `/offer` and the WebSocket protocol) while
//! recording it, without re-encoding; with nobody publishing, viewers are told so (503). A
//! viewer joining a publisher that sends keyframes only when asked gets one at once (its
//! request reaches the publisher as a PLI), and so does a viewer's own request for one (a
//! browser that lost one); viewers wait for the next publisher and end cleanly when none
//! comes.

mod common;
use common::*;
use std::time::Duration;

const RELAY: &str = "[source]\nkind = \"webrtc\"\ncodec = \"h264\"\n\n[[output]]\nkind = \"webrtc\"\n\n[[output]]\nkind = \"record\"\nsegment = \"10m\"\n";

#[test]
fn a_published_stream_is_watched_live_and_recorded() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("mediaweave=info")
        .try_init();
    let (_dir, server, base) = serve_relay();

    // Nobody publishing yet: viewers are told so.
    let offer = include_str!("fixtures/aiortc-offer.sdp");
    let r = post_sdp(&format!("{base}/whep/inbox"), offer);
    assert_eq!(r.status, 503, "{}", r.json);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("nobody is publishing to `inbox`"),
        "{}",
        r.json
    );

    let publisher = publish(&base, "200,40,40", 20, false);
    wait_publishers(&base, 1);
    // Over WHEP, `/offer` and the WebSocket protocol at once: the publisher's size and colour
    // as it sent them.
    let ws = base.replace("http://", "ws://") + "/ws";
    let views: Vec<Vec<String>> = vec![
        vec!["whep".into(), format!("{base}/whep/inbox")],
        vec!["offer".into(), format!("{base}/offer/inbox")],
        vec!["ws".into(), ws, "inbox".into()],
    ];
    let seen: Vec<serde_json::Value> = std::thread::scope(|s| {
        let running: Vec<_> = views
            .iter()
            .map(|how| {
                s.spawn(move || {
                    let mut args: Vec<&str> = how.iter().map(String::as_str).collect();
                    args.extend(["--frames", "60", "--timeout", "30"]);
                    aiortc_view(&args)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("viewer thread"))
            .collect()
    });
    for seen in &seen {
        assert!(seen["frames"].as_u64().unwrap_or(0) >= 60, "{seen}");
        assert_eq!(
            (seen["width"].as_u64(), seen["height"].as_u64()),
            (Some(320), Some(240)),
            "{seen}"
        );
        assert_colour(seen, [200, 40, 40]);
    }
    // A viewer that cannot take H.264 is told which codec the stream is (406).
    let vp8_only: String = offer
        .lines()
        .filter(|l| !l.contains("H264"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let r = post_sdp(&format!("{base}/whep/inbox"), &vp8_only);
    assert_eq!(r.status, 406, "{}", r.json);
    assert!(
        r.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not accept H264")),
        "{}",
        r.json
    );
    // Over the WebSocket protocol, a consumer offering VP8 only gets an error naming H264,
    // then endSession.
    let told = ws_offer(&base, &vp8_only);
    assert!(
        told.len() == 2 && told[0]["type"] == "error" && told[1]["type"] == "endSession",
        "{told:?}"
    );
    assert!(
        told[0]["details"]
            .as_str()
            .is_some_and(|e| e.contains("does not accept H264")),
        "{told:?}"
    );
    // No encoder was involved: the pipeline chose none.
    let status = get(&format!("{base}/api/pipelines/inbox")).json;
    assert!(
        status["chosen"]
            .as_array()
            .is_none_or(|c| c.iter().all(|c| c["role"] != "video encoder")),
        "{status}"
    );
    let (ok, _, stderr) = finish(publisher);
    assert!(ok, "{stderr}");
    // The same publish was recorded, readable as it was sent.
    let list = wait_for(
        "the recording to be finalized",
        Duration::from_secs(30),
        || {
            let list = get(&format!("{base}/api/recordings")).json;
            let list = list.as_array().cloned().unwrap_or_default();
            (list.len() == 1 && list[0]["recording"] == false).then_some(list)
        },
    );
    let probe = ffprobe(list[0]["path"].as_str().expect("path"), None).expect("ffprobe");
    let video = probe.video().expect("video");
    assert_eq!((video.width, video.height), (320, 240), "{probe:?}");
    assert!(video.frames >= 60, "{probe:?}");
    server.shutdown();
}

/// A published stream with a `tcp` output (and no webrtc output): a GStreamer TCP client
/// decodes the publisher's frames as MPEG-TS while the publisher is live, from a publisher
/// that sends keyframes only when asked (the client's arrival asks); the port is let go when
/// the publisher leaves.
#[test]
fn a_published_stream_is_served_to_tcp_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    write_pipeline(
        dir.path(),
        "inbox",
        &format!(
            "[source]\nkind = \"webrtc\"\ncodec = \"h264\"\n\n[[output]]\nkind = \"tcp\"\nport = {port}\n\n[[output]]\nkind = \"record\"\n"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");
    let publisher = publish(&base, "40,40,200", 20, true);
    wait_publishers(&base, 1);
    // The reader listens once the publisher's media flows.
    let frames = wait_for(
        "a TCP client to decode 30 frames",
        Duration::from_secs(40),
        || {
            let seen = gst_decode_tcp_rgb(port, 30).unwrap_or_default();
            (seen.len() >= 30).then_some(seen)
        },
    );
    for (w, h, rgb) in &frames {
        assert_eq!((*w, *h), (320, 240));
        let near = rgb
            .iter()
            .zip([40u8, 40, 200])
            .all(|(a, b)| a.abs_diff(b) < 40);
        assert!(near, "centre pixel {rgb:?}, published 40,40,200");
    }
    // The reader's bytes are counted like an in-pipeline TCP output's.
    let (_, metrics) = get_text(&format!("{base}/metrics"));
    let sent = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "mediaweave_tcp_sent_bytes_total{pipeline=\"inbox\",element=\"out0_sink\"} ",
            )
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(sent.is_some_and(|b| b > 0.0), "{metrics}");
    let (ok, _, stderr) = finish(publisher);
    assert!(ok, "{stderr}");
    wait_for("the TCP port to close", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    // It was recorded meanwhile.
    let list = wait_for("the recording", Duration::from_secs(30), || {
        let list = get(&format!("{base}/api/recordings")).json;
        let list = list.as_array().cloned().unwrap_or_default();
        (list.len() == 1 && list[0]["recording"] == false).then_some(list)
    });
    let probe = ffprobe(list[0]["path"].as_str().expect("path"), None).expect("ffprobe");
    assert_eq!(probe.video().map(|v| v.codec.as_str()), Some("h264"));
    server.shutdown();
}

/// A service with the relay pipeline `inbox` playing (nobody publishing yet): its pipelines'
/// directory, the server and its base URL.
fn serve_relay() -> (tempfile::TempDir, TestServer, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "inbox", RELAY);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");
    (dir, server, base)
}

/// The aiortc publisher: H.264 at 320x240 in `colour` ("R,G,B") for `seconds` after it is
/// connected; `on_request`: keyframes only when the receiver asks (as browsers do).
fn publish(base: &str, colour: &str, seconds: u32, on_request: bool) -> std::process::Child {
    let (url, seconds) = (format!("{base}/whip/inbox"), seconds.to_string());
    let mut args = vec![
        "whip",
        &url,
        "--h264",
        "--colour",
        colour,
        "--seconds",
        &seconds,
        "--width",
        "320",
        "--height",
        "240",
    ];
    if on_request {
        args.push("--keyframes-on-request");
    }
    aiortc_publish(&args)
}

fn wait_publishers(base: &str, n: usize) {
    wait_for("the publisher to arrive", Duration::from_secs(20), || {
        let v = get(&format!("{base}/api/pipelines/inbox")).json;
        (v["publishers"].as_array().map(Vec::len) == Some(n)).then_some(())
    });
}

#[test]
fn a_viewer_joining_mid_gop_gets_a_keyframe_at_once() {
    let (_dir, server, base) = serve_relay();
    // This publisher sends a keyframe when it starts and then only when asked.
    let publisher = publish(&base, "40,200,40", 12, true);
    wait_publishers(&base, 1);
    std::thread::sleep(Duration::from_secs(3));
    let ws = base.replace("http://", "ws://") + "/ws";
    for how in [
        vec!["whep", &format!("{base}/whep/inbox")],
        vec!["ws", &ws, "inbox"],
    ] {
        let mut args = how.clone();
        args.extend(["--frames", "30", "--timeout", "8"]);
        let seen = aiortc_view(&args);
        // Without the relay's keyframe request reaching the publisher, nothing would decode.
        assert!(seen["frames"].as_u64().unwrap_or(0) >= 30, "{seen}");
        let ttff = seen["ttff_ms"].as_f64().unwrap_or(f64::MAX);
        assert!(ttff < 2000.0, "first frame after {ttff} ms: {seen}");
        assert_colour(&seen, [40, 200, 40]);
    }
    let metrics = get_text(&format!("{base}/metrics")).1;
    assert!(
        metrics.contains(
            "mediaweave_webrtc_keyframe_requests_total{pipeline=\"inbox\",outcome=\"forwarded\"}"
        ),
        "{metrics}"
    );
    let (ok, _, stderr) = finish(publisher);
    assert!(ok, "{stderr}");
    server.shutdown();
}

/// A viewer that lost a keyframe asks for one (a browser's PLI): its request reaches the
/// publisher, which sends keyframes only when asked, and the viewer gets a new one.
#[test]
fn a_viewers_own_keyframe_request_reaches_the_publisher() {
    let (_dir, server, base) = serve_relay();
    let publisher = publish(&base, "200,40,40", 20, true);
    wait_publishers(&base, 1);
    let mut viewer = common::gst_viewers::GstViewers::whep(&format!("{base}/whep/inbox"));
    let added = viewer.ask("add 1");
    assert_eq!(added["connected"], 1, "{added}");
    // Past the keyframes of its join, and past the interval they were throttled in.
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..2 {
        let asked = viewer.ask("keyframe 8");
        let (before, after) = (&asked["before"][0], &asked["after"][0]);
        assert!(before.as_u64() >= Some(1), "{asked}");
        assert!(
            after.as_u64() > before.as_u64(),
            "no keyframe came: {asked}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(viewer);
    let (ok, _, stderr) = finish(publisher);
    assert!(ok, "{stderr}");
    server.shutdown();
}

#[test]
fn viewers_wait_for_the_next_publisher_or_end_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "inbox", RELAY);
    let server = TestServer::start_custom(dir.path(), |c| {
        c.webrtc.resume_grace = Duration::from_secs(4);
    });
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");

    // Red for 5 s, a pause of about 2 s, then blue: one WHEP viewer sees both, on one session.
    let first = publish(&base, "200,40,40", 5, false);
    wait_publishers(&base, 1);
    let whep = format!("{base}/whep/inbox");
    let seen = std::thread::scope(|s| {
        let viewer =
            s.spawn(|| aiortc_view(&["whep", &whep, "--frames", "100000", "--timeout", "16"]));
        let (ok, _, stderr) = finish(first);
        assert!(ok, "{stderr}");
        wait_publishers(&base, 0);
        std::thread::sleep(Duration::from_secs(2));
        let second = publish(&base, "40,40,200", 8, false);
        let (ok, _, stderr) = finish(second);
        assert!(ok, "{stderr}");
        viewer.join().expect("viewer thread")
    });
    // The pause shows as one long gap, and frames came after it, in the second colour.
    assert!(
        seen["max_gap_ms"].as_f64().unwrap_or(0.0) >= 1000.0,
        "{seen}"
    );
    assert!(
        seen["frames_after_max_gap"].as_u64().unwrap_or(0) >= 60,
        "{seen}"
    );
    assert_colour(&seen, [40, 40, 200]);

    // Nobody comes back: the viewers' sessions end (the WebSocket viewer is told), and
    // their resources are gone (DELETE finds nothing).
    // Long enough for both viewers to connect and count 20 frames on a busy machine (a
    // WebSocket viewer's first frame can take 1.5 s); it leaves well within their hold.
    let third = publish(&base, "200,200,40", 5, false);
    wait_publishers(&base, 1);
    let ws = base.replace("http://", "ws://") + "/ws";
    let seen: Vec<serde_json::Value> = std::thread::scope(|s| {
        let a = s.spawn(|| aiortc_view(&["whep", &whep, "--frames", "20", "--hold", "12"]));
        let b = s.spawn(|| aiortc_view(&["ws", &ws, "inbox", "--frames", "20", "--hold", "12"]));
        vec![a.join().expect("viewer"), b.join().expect("viewer")]
    });
    let (ok, _, stderr) = finish(third);
    assert!(ok, "{stderr}");
    assert!(seen[0]["frames"].as_u64().unwrap_or(0) >= 20, "{}", seen[0]);
    assert_eq!(seen[0]["delete_status"], 404, "{}", seen[0]);
    assert!(seen[1]["frames"].as_u64().unwrap_or(0) >= 20, "{}", seen[1]);
    assert!(
        seen[1]["signalling"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["type"] == "endSession")),
        "{}",
        seen[1]
    );
    wait_no_viewers(
        &base,
        "inbox",
        "the viewers to be freed",
        Duration::from_secs(10),
    );
    server.shutdown();
}

/// A consumer on `/ws` that starts a session with producer `inbox` offering `offer`; returns
/// the messages about that session it hears afterwards, up to its `endSession`.
fn ws_offer(base: &str, offer: &str) -> Vec<serde_json::Value> {
    let url = base.replace("http://", "ws://") + "/ws";
    let (mut sock, _) = tokio_tungstenite::tungstenite::connect(url).expect("ws");
    let mut exchange = |send: Option<serde_json::Value>| -> serde_json::Value {
        if let Some(msg) = send {
            sock.send(msg.to_string().into()).expect("send");
        }
        let text = sock
            .read()
            .expect("read")
            .into_text()
            .expect("text")
            .to_string();
        serde_json::from_str(&text).expect("json")
    };
    let _welcome = exchange(None);
    let mut msg = exchange(Some(serde_json::json!({"type": "list"})));
    while msg["type"] != "list" {
        msg = exchange(None);
    }
    let producer = msg["producers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["meta"]["name"] == "inbox"))
        .and_then(|p| p["id"].as_str())
        .expect("inbox is a producer")
        .to_string();
    let start = serde_json::json!({"type": "startSession", "peerId": producer, "offer": offer});
    let mut msg = exchange(Some(start));
    let mut told = Vec::new();
    loop {
        if !matches!(
            msg["type"].as_str(),
            Some("sessionStarted" | "peerStatusChanged")
        ) {
            let end = msg["type"] == "endSession";
            told.push(msg);
            if end {
                return told;
            }
        }
        msg = exchange(None);
    }
}

#[test]
fn chromium_publishes_and_another_page_watches_it_live() {
    let (_dir, server, base) = serve_relay();
    // The page shows `inbox` waiting until the second page publishes, then plays it.
    let seen = chromium(&base, "inbox", "relay");
    assert_eq!(seen["waitedFirst"], true, "{seen}");
    assert!(seen["framesDecoded"].as_u64().unwrap_or(0) >= 60, "{seen}");
    assert_eq!(seen["shownResolution"], "640×480", "{seen}");
    // What was watched was recorded too.
    let list = wait_for("the recording to finish", Duration::from_secs(20), || {
        let list = get(&format!("{base}/api/recordings")).json;
        let done = list
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["recording"] == false);
        done.then_some(list)
    });
    let probe = ffprobe(list[0]["path"].as_str().expect("path"), None).expect("ffprobe");
    assert_eq!(probe.video().map(|v| (v.width, v.height)), Some((640, 480)));
    server.shutdown();
}
