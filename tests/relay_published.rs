//! Publish once, watch live: a webrtc-source pipeline with a webrtc output relays what its
//! publisher sends to WebRTC viewers (WHEP and `/offer`) while recording it, without
//! re-encoding; with nobody publishing, viewers are told so (503).

mod common;
use common::*;
use std::time::Duration;

const RELAY: &str = "[source]\nkind = \"webrtc\"\ncodec = \"h264\"\n\n[[output]]\nkind = \"webrtc\"\n\n[[output]]\nkind = \"record\"\nsegment = \"10m\"\n";

#[test]
fn a_published_stream_is_watched_live_and_recorded() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("mediaweave=info")
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "inbox", RELAY);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");

    // Nobody publishing yet: viewers are told so.
    let offer = include_str!("fixtures/aiortc-offer.sdp");
    let r = post_sdp(&format!("{base}/whep/inbox"), offer);
    assert_eq!(r.status, 503, "{}", r.json);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("nobody is publishing to `inbox`"),
        "{}",
        r.json
    );

    let publisher = aiortc_publish(&[
        "whip",
        &format!("{base}/whip/inbox"),
        "--h264",
        "--seconds",
        "20",
        "--width",
        "320",
        "--height",
        "240",
    ]);
    wait_for("the publisher to arrive", Duration::from_secs(20), || {
        let v = get(&format!("{base}/api/pipelines/inbox")).json;
        (v["publishers"].as_array().map(Vec::len) == Some(1)).then_some(())
    });
    // Over WHEP and over `/offer`, the publisher's size as it sent it.
    let whep = aiortc_view(&[
        "whep",
        &format!("{base}/whep/inbox"),
        "--frames",
        "60",
        "--timeout",
        "30",
    ]);
    let offered = aiortc_view(&[
        "offer",
        &format!("{base}/offer/inbox"),
        "--frames",
        "60",
        "--timeout",
        "30",
    ]);
    for seen in [&whep, &offered] {
        assert!(seen["frames"].as_u64().unwrap_or(0) >= 60, "{seen}");
        assert_eq!(
            (seen["width"].as_u64(), seen["height"].as_u64()),
            (Some(320), Some(240)),
            "{seen}"
        );
    }
    // No encoder was involved: the pipeline chose none.
    let status = get(&format!("{base}/api/pipelines/inbox")).json;
    assert!(
        status["chosen"]
            .as_array()
            .is_none_or(|c| c.iter().all(|c| c["role"] != "video encoder")),
        "{status}"
    );
    let (ok, _, stderr) = finish(publisher);
    assert!(ok, "{stderr}");
    // The same publish was recorded, readable as it was sent.
    let list = wait_for(
        "the recording to be finalized",
        Duration::from_secs(30),
        || {
            let list = get(&format!("{base}/api/recordings")).json;
            let list = list.as_array().cloned().unwrap_or_default();
            (list.len() == 1 && list[0]["recording"] == false).then_some(list)
        },
    );
    let probe = ffprobe(list[0]["path"].as_str().expect("path"), None).expect("ffprobe");
    let video = probe.video().expect("video");
    assert_eq!((video.width, video.height), (320, 240), "{probe:?}");
    assert!(video.frames >= 60, "{probe:?}");
    server.shutdown();
}
