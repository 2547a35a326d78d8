//! The `whip` output and the `whep` source: two instances chained on loopback (A's test
//! pattern published over WHIP into B's `webrtc` source, relayed to an aiortc viewer on B, and
//! pulled back into A by a `whep` source, relayed to a viewer there), B shut down and started
//! again with A reconnecting both on its own; Janus as the WHIP server; and WHIP servers that refuse (403), never answer or are
//! not there: each said in A's status and events and retried with backoff, while A's other
//! outputs serve on.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

const EDGE: &str =
    "[source]\nkind = \"webrtc\"\ncodec = \"h264\"\n\n[[output]]\nkind = \"webrtc\"\n";

fn origin(url: &str) -> String {
    format!(
        "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\n\n[[output]]\nkind = \"whip\"\nurl = \"{url}\"\n"
    )
}

/// The `whip` entries of `name`'s status.
fn whip_states(base: &str, name: &str) -> Vec<serde_json::Value> {
    get(&format!("{base}/api/pipelines/{name}")).json["whip"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until B's `edge` has a connected publisher (A's whip session).
fn wait_published(b: &str) {
    wait_for("A to publish into B", Duration::from_secs(60), || {
        let v = get(&format!("{b}/api/pipelines/edge")).json;
        v["publishers"]
            .as_array()?
            .iter()
            .any(|p| p["connected"] == true && p["via"] == "whip")
            .then_some(())
    });
}

/// Waits until A's `back` (a whep source) pulls, then watches it: what an aiortc viewer saw.
fn wait_pulled(a: &str) -> serde_json::Value {
    wait_for("A's whep source to pull", Duration::from_secs(60), || {
        let v = get(&format!("{a}/api/pipelines/back")).json;
        (v["whep"]["connected"] == true).then_some(())
    });
    aiortc_view(&["whep", &format!("{a}/whep/back"), "--frames", "60"])
}

#[test]
fn a_whip_output_feeds_another_instance_and_reconnects_when_it_comes_back() {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    write_pipeline(dir_b.path(), "edge", EDGE);
    let b_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("b");
    let b = TestServer::start_custom(dir_b.path(), |c| c.listen = b_addr);
    let b_base = b.base.clone();
    write_pipeline(
        dir_a.path(),
        "origin",
        &origin(&format!("{b_base}/whip/edge")),
    );
    // B's relay pulled back into A: a whep source, relayed to A's viewers.
    write_pipeline(
        dir_a.path(),
        "back",
        &format!(
            "[source]\nkind = \"whep\"\nurl = \"{b_base}/whep/edge\"\n\n[[output]]\nkind = \"webrtc\"\n"
        ),
    );
    let a = TestServer::start(dir_a.path());
    wait_published(&b_base);
    let states = whip_states(&a.base, "origin");
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0]["connected"], true, "{states:?}");

    // A viewer of B sees A's test pattern, relayed as A encoded it.
    let whep = format!("{b_base}/whep/edge");
    let seen = aiortc_view(&["whep", &whep, "--frames", "60"]);
    assert!(seen["frames"].as_i64().unwrap_or(0) >= 60, "{seen}");
    assert_eq!(
        (seen["width"].as_i64(), seen["height"].as_i64()),
        (Some(320), Some(240))
    );
    let pulled = wait_pulled(&a.base);
    assert!(pulled["frames"].as_i64().unwrap_or(0) >= 60, "{pulled}");
    assert!(pulled["audio_frames"].as_i64().unwrap_or(0) > 0, "{pulled}");

    // B goes away: A says so and keeps trying; B comes back on the same address: A publishes
    // again without being told, and B's viewers can watch again.
    let events = collect_events(&a.base, |seen| {
        seen.iter().any(|e| e["type"] == "whip_error")
            && seen
                .iter()
                .rev()
                .take_while(|e| e["type"] != "whip_error")
                .any(|e| e["type"] == "whip_connected")
    });
    b.shutdown();
    let b = TestServer::start_custom(dir_b.path(), |c| c.listen = b_addr);
    wait_published(&b.base);
    let seen = aiortc_view(&["whep", &whep, "--frames", "60"]);
    assert!(seen["frames"].as_i64().unwrap_or(0) >= 60, "{seen}");
    let events = events.join().expect("events");
    let error = events
        .iter()
        .find(|e| e["type"] == "whip_error")
        .unwrap_or_else(|| panic!("no whip_error in {events:?}"));
    assert_eq!(error["pipeline"], "origin", "{error}");
    assert!(error["fields"]["retry_in"].as_f64().is_some(), "{error}");
    let states = whip_states(&a.base, "origin");
    assert!(
        states[0]["attempts"].as_u64().unwrap_or(0) >= 2,
        "{states:?}"
    );
    assert_eq!(states[0]["connected"], true, "{states:?}");
    // The whep source came back too.
    let pulled = wait_pulled(&a.base);
    assert!(pulled["frames"].as_i64().unwrap_or(0) >= 60, "{pulled}");
    // A whep source takes no publishers of its own.
    let offer = include_str!("fixtures/aiortc-offer.sdp");
    let refused = post_sdp(&format!("{}/whip/back", a.base), offer);
    assert_eq!(refused.status, 409, "{}", refused.json);
    assert!(
        refused.json["error"]
            .as_str()
            .unwrap_or("")
            .contains("pulls its stream from a WHEP server"),
        "{}",
        refused.json
    );
    a.shutdown();
    b.shutdown();
}

/// A WHIP server stand-in on a port of its own: answers every request with `reply` (None:
/// reads the request and never answers).
fn fake_server(reply: Option<&'static str>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 65536];
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = conn.read(&mut buf);
            match reply {
                Some(reply) => {
                    let _ = conn.write_all(reply.as_bytes());
                }
                // Keeps the connection open and silent.
                None => held.push(conn),
            }
        }
    });
    port
}

#[test]
fn unkind_whip_servers_are_said_and_retried_while_the_rest_serves() {
    let refusing = fake_server(Some(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nbad token, go",
    ));
    let failing = fake_server(Some(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ));
    let silent = fake_server(None);
    let gone = free_port();
    let tcp = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = format!(
        "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\n\n[[output]]\nkind = \"tcp\"\nport = {tcp}\n"
    );
    for port in [refusing, failing, silent, gone] {
        text.push_str(&format!(
            "\n[[output]]\nkind = \"whip\"\nurl = \"http://127.0.0.1:{port}/whip/x\"\ntoken = \"secret-token\"\n"
        ));
    }
    write_pipeline(dir.path(), "origin", &text);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    let events = collect_events(&base, |seen| {
        let errors: Vec<&serde_json::Value> =
            seen.iter().filter(|e| e["type"] == "whip_error").collect();
        ["403", "503", "reach"].iter().all(|what| {
            errors
                .iter()
                .any(|e| e["fields"]["error"].as_str().unwrap_or("").contains(what))
        })
    });
    wait_state(&base, "origin", "playing");
    // Every output is said with its error and tried again (the silent one after its 10 s).
    let states = wait_for(
        "every whip output to be retried",
        Duration::from_secs(40),
        || {
            let states = whip_states(&base, "origin");
            (states.len() == 4
                && states
                    .iter()
                    .all(|s| s["attempts"].as_u64().unwrap_or(0) >= 2 && s["error"].is_string()))
            .then_some(states)
        },
    );
    let error = |i: usize| states[i]["error"].as_str().unwrap_or("").to_string();
    assert!(
        error(0).contains("403") && error(0).contains("bad token, go"),
        "{states:?}"
    );
    assert!(error(1).contains("503"), "{states:?}");
    assert!(
        error(2).contains("cannot reach the WHIP server"),
        "{states:?}"
    );
    assert!(
        error(3).contains("cannot reach the WHIP server"),
        "{states:?}"
    );
    for s in &states {
        assert_eq!(s["connected"], false, "{s}");
        assert!(!s.to_string().contains("secret-token"), "{s}");
    }
    // Backoff: the refused output waits longer each time (1 s, 2 s, ...), not in a loop.
    assert!(
        states[0]["attempts"].as_u64().unwrap_or(0) <= 6,
        "{states:?}"
    );
    let events = events.join().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "whip_error" && e["pipeline"] == "origin"),
        "{events:?}"
    );
    // The pipeline's other output serves all along.
    let seen = probe_frames(&format!("tcp://127.0.0.1:{tcp}"), &[], 2);
    assert!(probed_frames(&seen, "video") >= 30, "{seen}");
    assert_eq!(
        get(&format!("{base}/api/pipelines/origin")).json["state"],
        "playing"
    );
    server.shutdown();
}

/// Janus (an SFU nobody here wrote) behind its WHIP front end, in a network namespace of its
/// own (`tests/peers/janus_whip.py`): a `whip` output publishes into it, and Janus's RTP
/// forward of what it received decodes here, ≥ 30 frames at the pipeline's 320x240.
#[test]
fn a_whip_output_publishes_into_janus() {
    use std::io::BufRead;
    let video_port = free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/janus_whip.py");
    let mut janus = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .args([
            "--video-port",
            &video_port.to_string(),
            "--subnet",
            "10.78.0.0/24",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the Janus harness");
    let mut ready = String::new();
    std::io::BufReader::new(janus.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("the harness's first line");
    let info: serde_json::Value = serde_json::from_str(&ready)
        .unwrap_or_else(|e| panic!("the Janus harness did not start ({e}): {ready:?}"));
    let host = info["host_address"]
        .as_str()
        .expect("host_address")
        .to_string();
    let whip = info["whip"].as_str().expect("whip").to_string();
    let caps = info["video_caps"].as_str().expect("video_caps").to_string();

    // What Janus forwards, depayloaded and decoded: 30 frames, their size in the caps.
    let receiver = std::process::Command::new("timeout")
        .args(["60", "gst-launch-1.0", "-v", "udpsrc"])
        .arg(format!("address={host}"))
        .arg(format!("port={video_port}"))
        .arg(format!("caps={caps}"))
        .args([
            "!",
            "rtph264depay",
            "!",
            "avdec_h264",
            "!",
            "fakesink",
            "num-buffers=30",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the receiver");

    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "origin", &origin(&whip));
    // Our candidates on the veth toward Janus's namespace (Janus cannot reach loopback).
    let server = TestServer::start_custom(dir.path(), |c| {
        c.webrtc.ice.addresses = vec![host.clone()];
    });
    let out = receiver.wait_with_output().expect("receiver");
    let printed = String::from_utf8_lossy(&out.stdout);
    let states = whip_states(&server.base, "origin");
    assert!(
        out.status.success(),
        "no 30 frames from Janus: {states:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("width=(int)320, height=(int)240"),
        "{printed}"
    );
    assert_eq!(states[0]["connected"], true, "{states:?}");
    server.shutdown();
    drop(janus.stdin.take());
    let _ = janus.wait();
}
