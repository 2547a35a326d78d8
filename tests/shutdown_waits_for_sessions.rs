//! Stopping the service ends every WebRTC session first: when `Server::shutdown` returns, no
//! viewer's or publisher's pipeline is left (each one's task tore it down and was waited for).

mod common;
use common::*;
use std::time::Duration;

const RELAY: &str =
    "[source]\nkind = \"webrtc\"\ncodec = \"h264\"\n\n[[output]]\nkind = \"webrtc\"\n";

#[test]
fn shutdown_returns_after_every_peer_pipeline_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "inbox", RELAY);
    write_pipeline(dir.path(), "tp", WEBRTC_TEST_PATTERN);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");
    wait_state(&base, "tp", "playing");

    // A publisher, a viewer of what it publishes, and a viewer of a local pipeline, all
    // still connected when the service stops.
    let url = format!("{base}/whip/inbox");
    let publisher = aiortc_publish(&["whip", &url, "--h264", "--seconds", "60"]);
    wait_for("the publisher", Duration::from_secs(20), || {
        let v = get(&format!("{base}/api/pipelines/inbox")).json;
        (v["publishers"].as_array().map(Vec::len) == Some(1)).then_some(())
    });
    let viewers: Vec<_> = ["inbox", "tp"]
        .iter()
        .map(|name| {
            let url = format!("{base}/whep/{name}");
            std::thread::spawn(move || {
                aiortc_view(&[
                    "whep",
                    &url,
                    "--frames",
                    "10",
                    "--hold",
                    "10",
                    "--timeout",
                    "30",
                ])
            })
        })
        .collect();
    for name in ["inbox", "tp"] {
        wait_for("a connected viewer", Duration::from_secs(30), || {
            let v = get(&format!("{base}/api/pipelines/{name}")).json;
            v["viewers"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v["connected"] == true))
                .then_some(())
        });
    }
    let live = mediaweave::webrtc::peer::live_peer_pipelines();
    assert!(live >= 3, "{live} peer pipelines");

    let mut server = server;
    server.stop_service();
    assert_eq!(mediaweave::webrtc::peer::live_peer_pipelines(), 0);
    server.shutdown();

    let mut publisher = publisher;
    let _ = publisher.kill();
    let _ = publisher.wait();
    // The viewers end after their hold; what they saw does not matter here.
    for v in viewers {
        let _ = v.join();
    }
}
