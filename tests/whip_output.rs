//! The `whip` output: two instances chained on loopback (A's test pattern published over
//! WHIP into B's `webrtc` source, relayed to an aiortc viewer on B), B killed and restarted
//! with A reconnecting on its own; and WHIP servers that refuse (403), never answer or are
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
