//! A start that times out while the pipeline is still being built leaves nothing behind when
//! the build finally returns: no webrtc output appears for a pipeline that is not running
//! (viewers would be accepted into a pipeline nobody plays), and the pipeline stays failed.
//! The build is slowed on purpose (`build_delay`) past the start timeout.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn late_build_attaches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "slow",
        "restart = \"never\"\n[source]\nkind = \"test\"\nwidth = 320\nheight = 240\naudio = false\n[[output]]\nkind = \"webrtc\"\n",
    );
    let server = TestServer::start_custom(dir.path(), |c| {
        c.supervisor.start_timeout = Duration::from_secs(1);
        c.supervisor.build_delay = Duration::from_secs(2);
    });
    let base = server.base.clone();
    let status = wait_state(&base, "slow", "failed");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not start within 1 s")),
        "{status}"
    );
    // The build returns a second later, and is torn down unseen.
    std::thread::sleep(Duration::from_secs(2));
    let offer = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aiortc-offer.sdp"),
    )
    .expect("fixture");
    let r = post_sdp(&format!("{base}/whep/slow"), &offer);
    assert_eq!(r.status, 404, "{}", r.json);
    assert!(
        r.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("no pipeline `slow` with a webrtc output")),
        "{}",
        r.json
    );
    assert_eq!(
        get(&format!("{base}/api/pipelines/slow")).json["state"],
        "failed"
    );
    server.shutdown();
}
