//! A pipeline whose element errors mid-run is marked failed with the element's path and
//! message, then restarted with exponentially growing delays up to the maximum; the event
//! stream reports each error (with the element) and each restart.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn erroring_pipeline_restarts_with_exponential_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    // identity error-after=N posts a real ERROR after N buffers: a source failing mid-run.
    write_pipeline(
        dir.path(),
        "flaky",
        r#"
restart = "on-failure"
backoff = { initial = "200ms", max = "800ms" }
launch = "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=30/1 ! identity name=breaker error-after=10 ! fakesink"
"#,
    );
    let server = TestServer::start(dir.path());
    let sup = server.server.as_ref().expect("server").supervisor.clone();
    let mut rx = sup.subscribe("flaky").expect("pipeline exists");
    let mut events = sup.events().subscribe();

    // Follow every status change: the states it passes through, and the restart delay
    // announced at each transition into `failed`.
    let (states, delays, error) = server.rt().block_on(async move {
        use mediaweave::supervisor::State;
        let mut states: Vec<State> = Vec::new();
        let mut delays = Vec::new();
        let mut error = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while delays.len() < 5 {
            let s = rx.borrow_and_update().clone();
            if states.last() != Some(&s.state) {
                if s.state == State::Failed {
                    delays.push(s.retry_in);
                    error = s.error.clone();
                }
                states.push(s.state);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        (states, delays, error)
    });
    use mediaweave::supervisor::State::*;
    assert!(
        states.windows(3).any(|w| w == [Starting, Playing, Failed]),
        "states: {states:?}"
    );
    let error = error.expect("an error was recorded");
    assert!(
        error.contains("/flaky/breaker"),
        "error names the element path: {error}"
    );
    // Delays double from 0.2 s and then stay at the 0.8 s maximum.
    let expected = [0.2, 0.4, 0.8, 0.8, 0.8].map(Some);
    assert_eq!(delays, expected, "delays announced at each failure");

    let status = get(&format!("{}/api/pipelines/flaky", server.base)).json;
    assert!(status["restarts"].as_u64().unwrap_or(0) >= 3, "{status}");
    let last = &status["last_error"];
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/flaky/breaker"),
        "the last error stays visible after the restart: {status}"
    );
    assert!(
        last["detail"].as_str().is_some(),
        "the GStreamer debug string is kept: {status}"
    );
    // The event stream said the same: errors naming the element, and each restart.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    let error = seen
        .iter()
        .find(|e| e.kind == "error")
        .expect("an error event");
    assert_eq!(error.pipeline, "flaky");
    assert_eq!(error.fields["element"], "/flaky/breaker");
    assert!(
        seen.iter().filter(|e| e.kind == "restart").count() >= 3,
        "restart events: {seen:?}"
    );
    server.shutdown();
}
