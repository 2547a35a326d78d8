//! A pipeline's webrtc output registers as a producer (meta.name = pipeline) on the embedded
//! signalling server; stock aiortc, as a consumer, finds it with `list`, starts a session,
//! answers our offer and decodes ≥ 60 frames of 1280x720 with trickled ICE.

mod common;
use common::*;

#[test]
fn aiortc_watches_over_the_websocket_protocol() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "tp", WEBRTC_TEST_PATTERN);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "tp", "playing");
    let ws = format!("{}/ws", base.replace("http://", "ws://"));

    let seen = aiortc_view(&["ws", &ws, "tp"]);
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 60, "{seen}");
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert!(seen["audio_frames"].as_u64().unwrap_or(0) > 0, "{seen}");
    // The consumer's WebSocket closed: the session ends and is freed.
    wait_no_viewers(
        &base,
        "tp",
        "the session to end",
        std::time::Duration::from_secs(15),
    );
    server.shutdown();
}
