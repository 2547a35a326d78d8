//! A TCP source whose server stops sending but keeps the connection open: no error comes from
//! GStreamer, yet the buffer-flow watchdog notices within `stall_timeout`, names the source,
//! counts the stall (status, event, /metrics) and the pipeline is restarted; the server
//! sending again brings it back to playing.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A relay in front of `upstream`: its first client gets `stall_after` of the stream and then
/// nothing more on a connection that stays open; later clients get the stream as it comes.
fn stalling_relay(upstream: u16, stall_after: Duration) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let done = stop.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (n, client) in listener.incoming().enumerate() {
            if done.load(Ordering::SeqCst) {
                return;
            }
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let limit = (n == 0).then(|| std::time::Instant::now() + stall_after);
            let keep = client.try_clone().expect("clone");
            held.push(keep);
            let done = done.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while !done.load(Ordering::SeqCst) {
                    if limit.is_some_and(|l| std::time::Instant::now() >= l) {
                        // Silent, but the connection stays open (held by the acceptor).
                        return;
                    }
                    match server.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => {
                            if client.write_all(&buf[..k]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (port, stop)
}

#[test]
fn a_silent_source_is_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = free_port();
    write_pipeline(
        dir.path(),
        "upstream",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\naudio = false\n[encode]\nbitrate = 500\n[[output]]\nkind = \"tcp\"\nport = {upstream}\n"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "upstream", "playing");
    let (relay, stop) = stalling_relay(upstream, Duration::from_secs(3));
    let events = collect_events(&base, |seen| {
        seen.iter()
            .any(|e| e["type"] == "stall" && e["pipeline"] == "stalled")
    });
    // Written after the relay listens: the pipeline starts at once. tcpclientsrc's own read
    // timeout (10 s) is longer than the watchdog's 2 s.
    let out = free_port();
    write_pipeline(
        dir.path(),
        "stalled",
        &format!(
            "stall_timeout = \"2s\"\nbackoff = {{ initial = \"200ms\", max = \"1s\" }}\n[source]\nkind = \"tcp\"\nport = {relay}\naudio = false\n[[output]]\nkind = \"tcp\"\nport = {out}\n"
        ),
    );
    let status = wait_for("a stall and a restart", Duration::from_secs(40), || {
        let s = get(&format!("{base}/api/pipelines/stalled")).json;
        (s["stalls"].as_u64().unwrap_or(0) >= 1 && s["restarts"].as_u64().unwrap_or(0) >= 1)
            .then_some(s)
    });
    let message = status["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("/stalled/source: no video for 2s: the source stalled"),
        "{status}"
    );
    // The restarted run gets the stream again.
    wait_state(&base, "stalled", "playing");
    let frames = gst_decode_tcp(out, 10).expect("frames after the restart");
    assert_eq!(frames.len(), 10);

    let events = events.join().expect("events");
    let stall = events
        .iter()
        .find(|e| e["type"] == "stall")
        .expect("a stall event");
    assert_eq!(stall["fields"]["element"], "/stalled/source", "{stall}");
    let (_, metrics) = get_text(&format!("{base}/metrics"));
    assert!(
        metrics.contains("mediaweave_pipeline_stalls_total{pipeline=\"stalled\"} 1"),
        "{metrics}"
    );
    stop.store(true, Ordering::SeqCst);
    server.shutdown();
}
