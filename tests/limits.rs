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
