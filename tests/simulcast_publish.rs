//! A simulcast publisher, relayed without encoding: headless Chromium publishes its fake
//! camera in three layers (1280x720, 640x360, 320x180) from the /publish page to `inbox`.
//! A Chromium viewer behind a slow link (`tbf` on a veth pair into a namespace of the test's
//! own) is moved to a lower layer; one on an unshaped link keeps the top layer. The service
//! encodes nothing: every rung of the relayed ladder is a publisher's layer. A WHIP publisher
//! (Chromium, its own rid names) is relayed the same way; when it pauses its top layer (as a
//! browser short of uplink does), its viewers move to a layer that still arrives, and back.
//!
//! The tests run one at a time: each has a Chromium publisher whose own bandwidth estimate
//! drops its top layer when the machine is short of CPU, and two of them at once with their
//! viewers (five browsers on two cores) made that happen.

mod common;
use common::slow_link::SlowLink;
use common::watcher::{Watcher, num, smoothness};
use common::*;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

const INBOX: &str = "[source]\nkind = \"webrtc\"\ncodec = \"h264\"\naudio = false\n\n[[output]]\nkind = \"webrtc\"\n\n[[output]]\nkind = \"record\"\n";

/// Chromium sending simulcast to `name` for `seconds`: from the /publish page (`publish`) or
/// over WHIP (`whip-simulcast`, its top layer paused while `pause` exists). With
/// MEDIAWEAVE_TEST_LOG set, it also prints its layers' stats.
fn publish_simulcast(
    base: &str,
    name: &str,
    mode: &str,
    seconds: u32,
    pause: Option<&std::path::Path>,
) -> Child {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/view.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .args([base, name, mode])
        .env("SIMULCAST", "1")
        .env("PUBLISH_SECONDS", seconds.to_string())
        .stdout(Stdio::null());
    if std::env::var_os("MEDIAWEAVE_TEST_LOG").is_some() {
        cmd.env("PUBLISHER_STATS", "1");
    }
    if let Some(pause) = pause {
        cmd.env("PAUSE_FILE", pause);
    }
    cmd.spawn().expect("start chromium")
}

fn ladder(base: &str) -> Vec<serde_json::Value> {
    get(&format!("{base}/api/pipelines/inbox")).json["ladder"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The ladder once the publisher's three layers arrived (sizes measured), checking their rids.
fn layers_arrive(base: &str, rids: [&str; 3]) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(40);
    let layers = loop {
        let l = ladder(base);
        let labels: Vec<&str> = l.iter().filter_map(|r| r["rung"].as_str()).collect();
        if labels == ["1280x720", "640x360", "320x180"] {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the publisher's three layers did not arrive: {l:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("layers: {layers:?}");
    let got: Vec<&str> = layers.iter().filter_map(|r| r["layer"].as_str()).collect();
    assert_eq!(got, rids, "{layers:?}");
    for rung in &layers {
        assert_eq!(rung["frames_encoded"], 0, "{layers:?}");
        assert_eq!(rung["encoding"], false, "{layers:?}");
    }
    no_encoder_runs(base, "inbox");
    layers
}

/// Every element of the stream's pipelines, as the elements API lists them (the publisher's,
/// webrtcbin's insides included, and the readers'): a webrtcbin receives, and no video or
/// audio encoder is among them. The graph draws the same pipeline.
fn no_encoder_runs(base: &str, name: &str) {
    gst::init().expect("gst");
    let listed = get(&format!("{base}/api/pipelines/{name}/elements")).json;
    let factories: Vec<&str> = listed
        .as_array()
        .expect("a list of elements")
        .iter()
        .filter_map(|e| e["factory"].as_str())
        .collect();
    assert!(factories.contains(&"webrtcbin"), "{factories:?}");
    let encoders: Vec<&&str> = factories
        .iter()
        .filter(|f| {
            gst::ElementFactory::find(f).is_some_and(|f| {
                f.metadata(gst::ELEMENT_METADATA_KLASS)
                    .is_some_and(|k| k.contains("Codec/Encoder"))
            })
        })
        .collect();
    assert!(encoders.is_empty(), "encoders run: {encoders:?}");
    // The DTLS decoder's `pem` reads back the service's certificate, without its private key.
    let dtls = listed
        .as_array()
        .and_then(|l| l.iter().find(|e| e["factory"] == "dtlssrtpdec"))
        .and_then(|e| e["name"].as_str())
        .expect("a dtlssrtpdec");
    let (status, body) = get_text(&format!("{base}/api/pipelines/{name}/elements/{dtls}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("BEGIN CERTIFICATE"), "{body}");
    assert!(!body.contains("PRIVATE KEY-----"), "{body}");
    let (status, dot) = get_text(&format!("{base}/api/pipelines/{name}/graph.dot"));
    assert_eq!(status, 200, "{dot}");
    assert!(dot.contains("GstWebRTCBin"), "{dot}");
}

#[test]
fn a_slow_viewer_gets_a_lower_simulcast_layer_while_a_fast_one_keeps_the_top() {
    let _one = one_at_a_time();
    let link = SlowLink::new("300kbit");
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "inbox", INBOX);
    let host = link.host.clone();
    let server = TestServer::start_custom(dir.path(), |c| {
        c.listen = format!("{host}:0").parse().expect("address");
        // No tokens, and not loopback: this namespace is the test's own.
        c.insecure = true;
        c.webrtc.ice.addresses = vec![host.clone(), "127.0.0.1".into()];
    });
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");
    // Before anyone publishes, the stream has no elements to show.
    let (status, text) = get_text(&format!("{base}/api/pipelines/inbox/elements"));
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("while one publishes"), "{text}");
    let mut publisher = publish_simulcast(&base, "inbox", "publish", 120, None);
    // The three layers arrive and are measured; none is encoded here.
    layers_arrive(&base, ["f", "h", "q"]);

    let mut fast = Watcher::start("fast viewer", None, &base, "inbox");
    fast.until("30 frames of the top layer", Duration::from_secs(40), |s| {
        num(s, "framesDecoded") >= 30.0 && num(s, "frameWidth") == 1280.0
    });
    let mut slow = Watcher::start("slow viewer", Some(&link.ns), &base, "inbox");
    slow.until("its first frame", Duration::from_secs(40), |s| {
        num(s, "framesDecoded") >= 1.0
    });
    let down = slow.until("a move to a lower layer", Duration::from_secs(20), |s| {
        matches!(s["rung"].as_str(), Some("640x360" | "320x180"))
    });
    println!("slow viewer moved down: {down}");
    slow.until("frames of the lower layer", Duration::from_secs(15), |s| {
        num(s, "frameWidth") <= 640.0 && num(s, "framesPerSecond") >= 10.0
    });
    std::thread::sleep(Duration::from_secs(2));
    let (slow_a, fast_a) = (slow.now(), fast.now());
    std::thread::sleep(Duration::from_secs(10));
    let (slow_b, fast_b) = (slow.now(), fast.now());

    // Each plays its layer: frames keep coming at the publisher's rate, nothing frozen long.
    let (fps, frozen) = smoothness(&slow_a, &slow_b);
    println!(
        "slow viewer: {fps:.1} fps, {:.1} % frozen, {slow_b}",
        frozen * 100.0
    );
    assert!(
        matches!(slow_b["rung"].as_str(), Some("640x360" | "320x180")),
        "{slow_b}"
    );
    assert!(num(&slow_b, "frameWidth") <= 640.0, "{slow_b}");
    let (fast_fps, fast_frozen) = smoothness(&fast_a, &fast_b);
    println!(
        "fast viewer: {fast_fps:.1} fps, {:.1} % frozen, {fast_b}",
        fast_frozen * 100.0
    );
    assert_eq!(fast_b["rung"], "1280x720", "{fast_b}");
    assert_eq!(fast_b["frameWidth"], 1280, "{fast_b}");
    // The fake camera sends 20 frames a second.
    assert!(
        fast_fps >= 15.0,
        "fast viewer at {fast_fps:.1} fps: {fast_b}"
    );
    assert!(fps >= 15.0, "slow viewer at {fps:.1} fps: {slow_b}");
    assert!(frozen < 0.05, "slow viewer frozen {frozen:.3} of the time");

    // Still nothing encoded by the service, and the API counts a viewer on each side.
    let status = get(&format!("{base}/api/pipelines/inbox")).json;
    for rung in status["ladder"].as_array().expect("ladder") {
        assert_eq!(rung["frames_encoded"], 0, "{status}");
        assert_eq!(rung["encoding"], false, "{status}");
    }
    let on = |label: &str| {
        status["ladder"]
            .as_array()
            .and_then(|l| l.iter().find(|r| r["rung"] == label))
            .and_then(|r| r["viewers"].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(on("1280x720"), 1, "{status}");
    assert_eq!(on("640x360") + on("320x180"), 1, "{status}");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// A WHIP simulcast publisher (Chromium, rids lo, mid, hi) on `inbox` for `seconds`, its
/// top layer paused while the file `pause` (in the pipelines' directory) exists; once its
/// layers arrived, a viewer decoding its top layer.
struct WhipSimulcast {
    server: TestServer,
    dir: tempfile::TempDir,
    publisher: Child,
    viewer: Watcher,
    /// The viewer's sample with 30 frames of the top layer decoded.
    top: serde_json::Value,
}

impl WhipSimulcast {
    fn start(seconds: u32, pause: Option<&str>) -> WhipSimulcast {
        let dir = tempfile::tempdir().expect("tempdir");
        write_pipeline(dir.path(), "inbox", INBOX);
        let server = TestServer::start(dir.path());
        wait_state(&server.base, "inbox", "playing");
        let pause = pause.map(|p| dir.path().join(p));
        let publisher = publish_simulcast(
            &server.base,
            "inbox",
            "whip-simulcast",
            seconds,
            pause.as_deref(),
        );
        layers_arrive(&server.base, ["hi", "mid", "lo"]);
        let mut viewer = Watcher::start("viewer", None, &server.base, "inbox");
        let top = viewer.until("30 frames of the top layer", Duration::from_secs(40), |s| {
            num(s, "framesDecoded") >= 30.0 && num(s, "frameWidth") == 1280.0
        });
        WhipSimulcast {
            server,
            dir,
            publisher,
            viewer,
            top,
        }
    }
}

impl Drop for WhipSimulcast {
    fn drop(&mut self) {
        let _ = self.publisher.kill();
        let _ = self.publisher.wait();
    }
}

#[test]
fn a_whip_simulcast_publisher_is_relayed_layer_by_layer() {
    let _one = one_at_a_time();
    let call = WhipSimulcast::start(60, None);
    let s = &call.top;
    assert_eq!(s["frameWidth"], 1280, "{s}");
    assert_eq!(s["rung"], "1280x720", "{s}");
}

#[test]
fn a_paused_top_layer_moves_its_viewers_to_one_that_arrives_and_back() {
    let _one = one_at_a_time();
    let mut call = WhipSimulcast::start(120, Some("pause-top-layer"));
    let base = call.server.base.clone();
    let pause = call.dir.path().join("pause-top-layer");
    let viewer = &mut call.viewer;

    // The publisher pauses its top layer: the viewer goes on with a lower one.
    std::fs::write(&pause, b"").expect("pause file");
    let down = viewer.until("frames of a lower layer", Duration::from_secs(20), |s| {
        matches!(s["rung"].as_str(), Some("640x360" | "320x180"))
            && num(s, "frameWidth") <= 640.0
            && num(s, "framesPerSecond") >= 10.0
    });
    println!("viewer while the top layer is paused: {down}");
    // A viewer who joins meanwhile starts on a layer that arrives.
    let mut late = Watcher::start("late viewer", None, &base, "inbox");
    let first = late.until("frames of a lower layer", Duration::from_secs(40), |s| {
        num(s, "framesDecoded") >= 10.0
    });
    assert!(num(&first, "frameWidth") <= 640.0, "{first}");
    let a = viewer.now();
    std::thread::sleep(Duration::from_secs(4));
    let b = viewer.now();
    let (fps, frozen) = smoothness(&a, &b);
    println!(
        "viewer on the lower layer: {fps:.1} fps, {:.1} % frozen",
        frozen * 100.0
    );
    assert!(fps >= 10.0, "{b}");

    // The top layer resumes: both are back on it.
    std::fs::remove_file(&pause).expect("resume");
    for w in [viewer, &mut late] {
        let up = w.until(
            "frames of the top layer again",
            Duration::from_secs(40),
            |s| s["rung"] == "1280x720" && num(s, "frameWidth") == 1280.0,
        );
        println!("back on the top layer: {up}");
        assert!(num(&up, "switches") >= 1.0, "{up}");
    }
}
