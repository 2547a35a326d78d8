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
        limits.max_pending_per_address = 4;
        limits.max_pending = 64;
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
    assert_eq!(offer(&format!("{base}/whep/cam"), silent).status, 201);
    // The connected viewer was never evicted: it decoded all its frames.
    let seen = watcher.join().expect("watcher");
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 150, "{seen}");
    drop(server);

    // In total: loopback is held to the total only.
    let server = TestServer::start_custom(dir.path(), |c| {
        let mut limits = Limits::new(500, 32, 0, false);
        limits.max_pending = 5;
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
