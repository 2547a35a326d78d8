//! Limits answer explicitly: viewers and publishers beyond the service-wide maximum get 503,
//! and one address opening sessions faster than the rate gets 429 with Retry-After. A place
//! freed by a viewer that leaves is available again.

mod common;
use common::*;
use mediaweave::limits::Limits;
use std::sync::Arc;
use std::time::Duration;

struct Answer {
    status: u16,
    location: Option<String>,
    retry_after: Option<String>,
    error: String,
}

fn offer(url: &str, sdp: &str) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(url)
        .header("Content-Type", "application/sdp")
        .send(sdp)
        .expect("POST");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (location, retry_after) = (header("location"), header("retry-after"));
    let status = r.status().as_u16();
    let body: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
    Answer {
        status,
        location,
        retry_after,
        error: body["error"].as_str().unwrap_or_default().to_string(),
    }
}

#[test]
fn viewers_publishers_and_session_rate_are_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", WEBRTC_TEST_PATTERN);
    write_pipeline(dir.path(), "in1", INBOX);
    write_pipeline(dir.path(), "in2", INBOX);
    let server = TestServer::start_custom(dir.path(), |c| {
        c.webrtc.limits = Arc::new(Limits::new(2, 1, 5, true));
    });
    let base = server.base.clone();
    for name in ["cam", "in1", "in2"] {
        wait_state(&base, name, "playing");
    }
    let view = include_str!("fixtures/aiortc-offer.sdp");
    let publish = view.replace("a=recvonly", "a=sendonly");

    // Two viewer places in the whole service: the third waits for nobody, it is refused.
    let first = offer(&format!("{base}/whep/cam"), view);
    assert_eq!(first.status, 201, "{}", first.error);
    assert_eq!(offer(&format!("{base}/whep/cam"), view).status, 201);
    let third = offer(&format!("{base}/whep/cam"), view);
    assert_eq!(third.status, 503);
    assert_eq!(
        third.error,
        "the service has its maximum of 2 viewers (see --max-viewers, --max-publishers)"
    );
    // One publisher place.
    let p1 = offer(&format!("{base}/whip/in1"), &publish);
    assert_eq!(p1.status, 201, "{}", p1.error);
    let p2 = offer(&format!("{base}/whip/in2"), &publish);
    assert_eq!(p2.status, 503);
    assert!(p2.error.contains("maximum of 1 publishers"), "{}", p2.error);

    // A viewer that leaves gives its place back.
    let location = first.location.expect("a session resource");
    let gone = ureq::delete(&format!("{base}{location}"))
        .call()
        .expect("DELETE");
    assert_eq!(gone.status().as_u16(), 200);
    std::thread::sleep(Duration::from_secs(2)); // the rate's tokens come back meanwhile
    wait_for("the freed place", Duration::from_secs(15), || {
        let again = offer(&format!("{base}/whep/cam"), view);
        std::thread::sleep(Duration::from_millis(500));
        (again.status == 201).then_some(())
    });

    // Five new sessions a second per address (bursts of ten; the service's own signalling
    // clients count too here, since this test limits loopback): a flood gets 429.
    std::thread::sleep(Duration::from_secs(3));
    let answers: Vec<Answer> = (0..25)
        .map(|_| offer(&format!("{base}/whep/cam"), "v=0"))
        .collect();
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert!(limited.len() >= 8, "{} of 25 limited", limited.len());
    assert!(
        answers.iter().all(|a| a.status == 429 || a.status == 400),
        "the others reach the handler (a bad offer)"
    );
    assert!(
        limited[0]
            .error
            .starts_with("too many new sessions from 127.0.0.1: at most 5 a second"),
        "{}",
        limited[0].error
    );
    assert!(
        limited[0]
            .retry_after
            .as_deref()
            .is_some_and(|s| s.parse::<u64>().is_ok())
    );
}

/// Sessions that never finish ICE and DTLS cannot hold every place: at most
/// `max_pending_per_address` per address and `max_pending` in total (503 beyond, counted in
/// /metrics), each ended after the connect deadline; a connected viewer is never evicted.
#[test]
fn pending_sessions_are_capped_per_address_and_in_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", WEBRTC_TEST_PATTERN);
    let server = TestServer::start_custom(dir.path(), |c| {
        let mut limits = Limits::new(500, 32, 0, true);
        limits.pending.max_per_address = 4;
        c.webrtc.limits = Arc::new(limits);
        c.webrtc.connect_timeout = Duration::from_secs(3);
    });
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    // A real viewer connects first and keeps watching through the flood.
    let watcher = std::thread::spawn({
        let url = format!("{base}/whep/cam");
        move || aiortc_view(&["whep", &url, "--frames", "150"])
    });
    wait_for("the real viewer connects", Duration::from_secs(20), || {
        let p = get(&format!("{base}/api/pipelines/cam")).json;
        p["viewers"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["connected"] == true))
            .then_some(())
    });
    // 30 concurrent offers whose peer never answers ICE (nothing listens at its candidate).
    let silent = include_str!("fixtures/aiortc-offer.sdp");
    let flood = |base: &str, n: usize| -> Vec<Answer> {
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let url = format!("{base}/whep/cam");
                std::thread::spawn(move || offer(&url, silent))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    };
    let answers = flood(&base, 30);
    let created = answers.iter().filter(|a| a.status == 201).count();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(created, 4, "at most 4 pending per address");
    assert_eq!(refused.len(), 26);
    assert!(
        refused[0]
            .error
            .contains("127.0.0.1 has 4 sessions that have not connected yet"),
        "{}",
        refused[0].error
    );
    let metrics = get_text(&format!("{base}/metrics")).1;
    assert!(
        metrics.contains("mediaweave_webrtc_pending_sessions{} 4.0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mediaweave_webrtc_pending_refused_total{} 26"),
        "{metrics}"
    );
    // Past the deadline the pending ones are gone and the address may try again.
    wait_for("pending sessions end", Duration::from_secs(15), || {
        get_text(&format!("{base}/metrics"))
            .1
            .contains("mediaweave_webrtc_pending_sessions{} 0.0")
            .then_some(())
    });
    // Sessions asked for over the signalling WebSocket count against the asker's address too.
    {
        use tokio_tungstenite::tungstenite;
        let ws = format!("{}/ws", base.replace("http://", "ws://"));
        let (mut sock, _) = tungstenite::connect(&ws).expect("ws");
        let _welcome = sock.read().expect("welcome");
        sock.send(r#"{"type":"list"}"#.into()).expect("send");
        let list: serde_json::Value =
            serde_json::from_str(&sock.read().expect("list").into_text().expect("text"))
                .expect("json");
        let producer = list["producers"][0]["id"]
            .as_str()
            .expect("cam's producer")
            .to_string();
        for _ in 0..7 {
            let start = format!(r#"{{"type":"startSession","peerId":"{producer}"}}"#);
            sock.send(start.into()).expect("send");
        }
        let pending = wait_for(
            "signalling sessions pending",
            Duration::from_secs(10),
            || {
                let m = get_text(&format!("{base}/metrics")).1;
                m.contains("mediaweave_webrtc_pending_refused_total{} 29")
                    .then_some(m)
            },
        );
        assert!(
            pending.contains("mediaweave_webrtc_pending_sessions{} 4.0"),
            "{pending}"
        );
    }
    wait_for("pending sessions end", Duration::from_secs(15), || {
        get_text(&format!("{base}/metrics"))
            .1
            .contains("mediaweave_webrtc_pending_sessions{} 0.0")
            .then_some(())
    });
    assert_eq!(offer(&format!("{base}/whep/cam"), silent).status, 201);
    // The connected viewer was never evicted: it decoded all its frames.
    let seen = watcher.join().expect("watcher");
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 150, "{seen}");
    drop(server);

    // In total: loopback is held to the total only.
    let server = TestServer::start_custom(dir.path(), |c| {
        let mut limits = Limits::new(500, 32, 0, false);
        limits.pending.max_total = 5;
        c.webrtc.limits = Arc::new(limits);
        c.webrtc.connect_timeout = Duration::from_secs(3);
    });
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    let answers = flood(&base, 12);
    assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 5);
    let refused = answers.iter().find(|a| a.status == 503).expect("refusals");
    assert!(
        refused
            .error
            .contains("the service has 5 sessions that have not connected yet, its maximum"),
        "{}",
        refused.error
    );
}

/// Clients that never finish cannot hold connections: headers must arrive within the header
/// timeout (idle keep-alive connections too), connections are capped per address, signalling
/// WebSockets are capped and closed when they register nothing, and an oversized signalling
/// message gets an error and a close frame with code 1009.
#[test]
fn slow_idle_and_oversized_clients_are_cut_off() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use tokio_tungstenite::tungstenite::{self, Message, protocol::frame::coding::CloseCode};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_custom(dir.path(), |c| {
        let mut limits = Limits::new(500, 32, 0, true);
        limits.connections.max_per_address = 20;
        limits.signalling.max_per_address = 5;
        limits.header_timeout = Duration::from_secs(2);
        limits.request_timeout = Duration::from_secs(3);
        limits.signalling_idle = Duration::from_secs(2);
        c.webrtc.limits = Arc::new(limits);
    });
    let base = server.base.clone();
    let addr = base.trim_start_matches("http://").to_string();
    // Whether the server closed `s` (EOF or reset) within `wait`.
    let closed_within = |s: &mut TcpStream, wait: Duration| -> bool {
        s.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    };

    // Slow headers: one byte every 300 ms never completes a request in time.
    let slow = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let mut s = TcpStream::connect(&addr).expect("connect");
            let started = std::time::Instant::now();
            for b in
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
            {
                if s.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            (started.elapsed(), s)
        }
    });
    // Idle: connected, nothing sent.
    let mut idle = TcpStream::connect(&addr).expect("connect");
    assert!(
        !closed_within(&mut idle, Duration::from_millis(500)),
        "open at first"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "closed after the header timeout"
    );
    let (took, mut slow) = slow.join().expect("slow");
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "the slow client is cut off"
    );
    assert!(took < Duration::from_secs(12), "{took:?}");
    // A body sent slowly gets no more time than headers: answered (4xx) and closed.
    let mut body = TcpStream::connect(&addr).expect("connect");
    body.write_all(b"PUT /api/pipelines/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .expect("headers");
    body.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let _ = body.write_all(b"x");
        let mut buf = [0u8; 512];
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "{answer:?} after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // A normal request still works.
    assert_eq!(get(&format!("{base}/api/pipelines")).status, 200);

    // At most 20 connections from one address: the rest are closed at once.
    let mut held: Vec<TcpStream> = (0..25)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let cut = held
        .iter_mut()
        .filter_map(|s| closed_within(s, Duration::from_millis(20)).then_some(()))
        .count();
    assert_eq!(cut, 5, "connections beyond the cap are closed");
    drop(held);
    let metrics = wait_for(
        "the held connections close",
        Duration::from_secs(10),
        || {
            let (status, text) = get_text(&format!("{base}/metrics"));
            (status == 200).then_some(text)
        },
    );
    assert!(
        metrics.contains("mediaweave_http_connections_refused_total{} 5"),
        "{metrics}"
    );

    // Signalling: 5 per address, the 6th is refused with 503.
    let ws = format!("{}/ws", base.replace("http://", "ws://"));
    let mut peers: Vec<_> = (0..5)
        .map(|_| {
            let (mut sock, _) = tungstenite::connect(&ws).expect("ws");
            let _welcome = sock.read().expect("welcome");
            sock
        })
        .collect();
    match tungstenite::connect(&ws) {
        Err(tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 503);
            let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).to_string();
            assert!(
                body.contains("127.0.0.1 has 5 signalling WebSocket connections"),
                "{body}"
            );
        }
        other => panic!("a sixth WebSocket: {other:?}"),
    }
    // One registers as a listener and stays; the others registered nothing and are closed.
    peers[0]
        .send(r#"{"type":"setPeerStatus","roles":["listener"]}"#.into())
        .expect("send");
    let close_code = |sock: &mut tungstenite::WebSocket<_>| -> Option<(CloseCode, String)> {
        loop {
            match sock.read() {
                Ok(Message::Close(frame)) => {
                    return frame.map(|f| (f.code, f.reason.to_string()));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    };
    for sock in peers.iter_mut().skip(1) {
        let (code, reason) = close_code(sock).expect("a close frame");
        assert_eq!(code, CloseCode::Policy);
        assert!(
            reason.starts_with("idle: no role and no session"),
            "{reason}"
        );
    }
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = peers[0].get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
    }
    match peers[0].read() {
        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a registered listener stays connected: {other:?}"),
    }
    drop(peers);

    // An oversized message: an error, then close code 1009, whatever its size.
    for size in [300 * 1024, 1_100_000] {
        let (mut sock, _) = wait_for("a signalling place", Duration::from_secs(10), || {
            tungstenite::connect(&ws).ok()
        });
        let _welcome = sock.read().expect("welcome");
        let _ = sock.send(Message::Text("x".repeat(size).into()));
        let mut error = None;
        let close = loop {
            match sock.read() {
                Ok(Message::Text(t)) => error = Some(t.to_string()),
                Ok(Message::Close(frame)) => break frame,
                Ok(_) => continue,
                Err(e) => panic!("{size} bytes: no close frame: {e}"),
            }
        };
        let frame = close.expect("a close frame");
        assert_eq!(frame.code, CloseCode::Size, "{size} bytes");
        if size < 1_000_000 {
            let error = error.expect("an error message first");
            assert!(error.contains("over the limit of 262144"), "{error}");
        }
    }
}
