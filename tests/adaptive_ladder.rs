//! Adaptive viewers over a shared encoder ladder, with real traffic shaping and real browsers:
//! a 720p 2 Mbit/s pipeline with `ladder = "auto"` (640x360 at 700, 320x180 at 200 kbit/s).
//! Headless Chromium behind a 600 kbit/s link (`tbf` on a veth pair into a namespace of the
//! test's own) moves down to a rung that fits and plays it smoothly, while a Chromium on an
//! unshaped link stays on 1280x720 at full rate; with the limit lifted, the slow one climbs
//! back to 1280x720. Rungs nobody watches encode nothing.

mod common;
use common::slow_link::SlowLink;
use common::watcher::{Watcher, num, smoothness};
use common::*;
use std::time::{Duration, Instant};

const CAM: &str = "[source]\nkind = \"test\"\nwidth = 1280\nheight = 720\nframerate = 30\naudio = false\n\n[encode]\nbitrate = 2000\nladder = \"auto\"\n\n[[output]]\nkind = \"webrtc\"\n";

/// The pipeline's ladder as the API shows it, by rung.
fn ladder(base: &str) -> Vec<serde_json::Value> {
    get(&format!("{base}/api/pipelines/cam")).json["ladder"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn frames_of(ladder: &[serde_json::Value], rung: &str) -> u64 {
    ladder
        .iter()
        .find(|r| r["rung"] == rung)
        .and_then(|r| r["frames_encoded"].as_u64())
        .unwrap_or_else(|| panic!("no rung {rung} in {ladder:?}"))
}

#[test]
fn a_slow_viewer_moves_down_the_ladder_and_back_while_a_fast_one_stays_on_top() {
    let link = SlowLink::new("600kbit");
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", CAM);
    let (host, ns) = (link.host.clone(), link.ns.clone());
    let server = TestServer::start_custom(dir.path(), |c| {
        c.listen = format!("{host}:0").parse().expect("address");
        // No tokens, and not loopback: this namespace is the test's own.
        c.insecure = true;
        c.webrtc.ice.addresses = vec![host.clone(), "127.0.0.1".into()];
    });
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    let events_url = format!("{}/api/events", base.replace("http://", "ws://"));
    let mut shown = 0;
    let events = collect_events_within(events_url, Duration::from_secs(150), move |seen| {
        // Each move as it comes, with its estimate: in the output of a run that fails.
        for e in seen.iter().skip(shown) {
            if e["type"] == "viewer_rung_changed" {
                println!("event: {e}");
            }
        }
        shown = seen.len();
        seen.iter()
            .filter(|e| e["type"] == "viewer_rung_changed")
            .any(|e| e["fields"]["rung"] == "1280x720")
    });

    // Nobody watches: only the top rung encodes.
    let idle = ladder(&base);
    let labels: Vec<&str> = idle.iter().filter_map(|r| r["rung"].as_str()).collect();
    assert_eq!(labels, ["1280x720", "640x360", "320x180"], "{idle:?}");
    for r in &idle[1..] {
        assert_eq!(r["frames_encoded"], 0, "{idle:?}");
        assert_eq!(r["encoding"], false, "{idle:?}");
    }

    // The fast viewer, on this side of the shaper: it stays on top, and the lower rungs still
    // encode nothing.
    let mut fast = Watcher::start("fast viewer", None, &base, "cam");
    fast.until("30 frames", Duration::from_secs(40), |s| {
        num(s, "framesDecoded") >= 30.0
    });
    let before = ladder(&base);
    std::thread::sleep(Duration::from_secs(3));
    let after = ladder(&base);
    for rung in ["640x360", "320x180"] {
        assert_eq!(
            frames_of(&before, rung),
            frames_of(&after, rung),
            "rung {rung} encoded with nobody on it: {after:?}"
        );
    }
    assert!(frames_of(&after, "1280x720") > frames_of(&before, "1280x720"));

    // The slow viewer, behind 600 kbit/s: on a rung of at most 640x360 within 15 s.
    let mut slow = Watcher::start("slow viewer", Some(&ns), &base, "cam");
    slow.until("its first frame", Duration::from_secs(40), |s| {
        num(s, "framesDecoded") >= 1.0
    });
    let down = slow.until("a move down the ladder", Duration::from_secs(15), |s| {
        matches!(s["rung"].as_str(), Some("640x360" | "320x180"))
    });
    println!("slow viewer moved down: {down}");
    // Once the lower rung plays (the browser counts the freeze of the first seconds, 2 Mbit/s
    // into 600 kbit/s, when it ends), it plays smoothly: ≥ 25 fps with under 2 % of the time
    // frozen over 10 s.
    slow.until("frames of the lower rung", Duration::from_secs(15), |s| {
        num(s, "frameWidth") <= 640.0 && num(s, "framesPerSecond") >= 20.0
    });
    std::thread::sleep(Duration::from_secs(2));
    let (slow_a, fast_a) = (slow.now(), fast.now());
    std::thread::sleep(Duration::from_secs(10));
    let (slow_b, fast_b) = (slow.now(), fast.now());
    let (fps, frozen) = smoothness(&slow_a, &slow_b);
    println!(
        "slow viewer: {fps:.1} fps, {:.1} % frozen, {slow_b}",
        frozen * 100.0
    );
    assert!(
        matches!(slow_b["rung"].as_str(), Some("640x360" | "320x180")),
        "{slow_b}"
    );
    assert!(fps >= 25.0, "slow viewer at {fps:.1} fps: {slow_b}");
    assert!(
        frozen < 0.02,
        "slow viewer frozen {frozen:.3} of the time: {slow_b}"
    );
    // Meanwhile the fast one has the top rung at full rate.
    let (fps, frozen) = smoothness(&fast_a, &fast_b);
    println!(
        "fast viewer: {fps:.1} fps, {:.1} % frozen, {fast_b}",
        frozen * 100.0
    );
    assert_eq!(fast_b["rung"], "1280x720", "{fast_b}");
    assert_eq!(fast_b["frameWidth"], 1280, "{fast_b}");
    assert!(fps >= 27.0, "fast viewer at {fps:.1} fps: {fast_b}");
    assert_eq!(fast_b["switches"], 0, "{fast_b}");

    // The API and /metrics say who is where.
    let status = get(&format!("{base}/api/pipelines/cam")).json;
    let rungs: Vec<&str> = status["viewers"]
        .as_array()
        .map(|v| v.iter().filter_map(|v| v["rung"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(rungs.len(), 2, "{status}");
    assert!(rungs.contains(&"1280x720"), "{status}");
    let (_, metrics) = get_text(&format!("{base}/metrics"));
    assert!(
        metrics.contains("mediaweave_ladder_viewers{pipeline=\"cam\",rung=\"1280x720\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mediaweave_webrtc_viewer_estimate_kbps{"),
        "{metrics}"
    );

    // The limit goes: the slow viewer is back on 1280x720 within 40 s.
    link.lift();
    let lifted = Instant::now();
    let up = slow.until("the climb back to 1280x720", Duration::from_secs(40), |s| {
        s["rung"] == "1280x720"
    });
    println!(
        "slow viewer back on top after {:.1} s: {up}",
        lifted.elapsed().as_secs_f64()
    );
    slow.until("1280-wide frames", Duration::from_secs(10), |s| {
        s["frameWidth"] == 1280
    });
    let events = events.join().expect("events");
    let moves: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "viewer_rung_changed" && e["pipeline"] == "cam")
        .collect();
    assert!(moves.len() >= 2, "{moves:?}");
    assert!(moves[0]["fields"]["estimate_kbps"].is_u64(), "{moves:?}");
    drop((slow, fast));
    server.shutdown();
}
