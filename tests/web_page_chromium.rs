//! Real headless Chromium opens the page at `/`, clicks "watch" on a pipeline and decodes its
//! video over WebRTC (the figures are read from the page's own getStats panel); two pages
//! exchange a chat line over their data channels; the pipeline's charts show its fps and bitrate
//! and its live graph opens.

mod common;
use common::*;

#[test]
fn chromium_watches_from_the_page_and_chats() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "test-pattern", WEBRTC_TEST_PATTERN);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "test-pattern", "playing");

    let stats = chromium(&base, "test-pattern", "watch");
    assert!(stats.get("error").is_none(), "{stats}");
    assert!(
        stats["framesDecoded"].as_u64().unwrap_or(0) >= 60,
        "{stats}"
    );
    assert_eq!(
        (stats["frameWidth"].as_u64(), stats["frameHeight"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(
        stats["shownResolution"], "1280×720",
        "the page shows what it decodes"
    );
    // The page's "stop" DELETEs its WHEP session: gone at once, not after an RTCP timeout.
    wait_no_viewers(
        &base,
        "test-pattern",
        "the page's session to end",
        std::time::Duration::from_secs(3),
    );

    let chat = chromium(&base, "test-pattern", "chat");
    assert_eq!(chat["received"], true, "{chat}");
    assert!(
        chat["shown"]
            .as_str()
            .unwrap_or_default()
            .contains("hello from page A"),
        "{chat}"
    );

    // The pipeline's live charts fill from its meter, and its graph opens as a picture.
    let board = chromium(&base, "test-pattern", "dashboard");
    assert!(board.get("error").is_none(), "{board}");
    let fps = board["fps"].as_f64().unwrap_or(0.0);
    assert!((20.0..=40.0).contains(&fps), "a 30 fps source: {board}");
    assert!(
        board["bitrate"].as_f64().unwrap_or(0.0) > 100.0,
        "kbit/s: {board}"
    );
    assert!(board["charts"].as_u64().unwrap_or(0) >= 3, "{board}");
    assert!(board["graphWidth"].as_u64().unwrap_or(0) > 200, "{board}");

    // The page itself is served from the binary.
    let page = ureq::get(&format!("{base}/"))
        .call()
        .expect("GET /")
        .body_mut()
        .read_to_string()
        .expect("html");
    assert!(page.contains("<title>mediaweave</title>"));
    server.shutdown();
}
