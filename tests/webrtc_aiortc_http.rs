//! Stock aiortc watches a pipeline over WHEP and over POST /offer (both directions of the
//! HTTP signalling where the viewer offers): each decodes ≥ 60 frames of 1280x720, and the
//! session is gone once the viewer leaves. Bad requests get clear HTTP errors.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn aiortc_watches_over_whep_and_offer() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "tp", WEBRTC_TEST_PATTERN);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "tp", "playing");

    let whep = aiortc_view(&["whep", &format!("{base}/whep/tp")]);
    assert!(whep["frames"].as_u64().unwrap_or(0) >= 60, "{whep}");
    assert_eq!(
        (whep["width"].as_u64(), whep["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert!(
        whep["audio_frames"].as_u64().unwrap_or(0) > 0,
        "Opus audio decoded: {whep}"
    );
    // WHEP DELETE ended that session.
    wait_no_viewers(
        &base,
        "tp",
        "the WHEP session to end",
        Duration::from_secs(10),
    );

    let offer = aiortc_view(&["offer", &format!("{base}/offer/tp")]);
    assert!(offer["frames"].as_u64().unwrap_or(0) >= 60, "{offer}");
    assert_eq!(
        (offer["width"].as_u64(), offer["height"].as_u64()),
        (Some(1280), Some(720))
    );
    server.shutdown();
}

#[test]
fn whep_answer_mirrors_the_offer_and_enables_rtcp_feedback() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "tp", WEBRTC_TEST_PATTERN);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "tp", "playing");
    // An offer stock aiortc made (recvonly video + audio; its H.264 packetization-mode=1
    // entry has payload type 101).
    let offer = include_str!("fixtures/aiortc-offer.sdp");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(&format!("{base}/whep/tp"))
        .header("Content-Type", "application/sdp")
        .send(offer)
        .expect("POST");
    assert_eq!(r.status().as_u16(), 201);
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_string();
    assert!(location.starts_with("/whep/tp/"), "{location}");
    let answer = r.body_mut().read_to_string().expect("answer");
    for line in [
        "a=rtpmap:101 H264/90000",
        "a=rtcp-fb:101 nack",
        "a=rtcp-fb:101 nack pli",
        "packetization-mode=1",
        "a=rtpmap:96 OPUS/48000/2",
        "a=candidate:",
    ] {
        assert!(answer.contains(line), "answer lacks {line}:\n{answer}");
    }
    // One certificate, one fingerprint, on every m-line.
    let prints: std::collections::BTreeSet<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=fingerprint:sha-256 "))
        .collect();
    assert_eq!(prints.len(), 1, "{answer}");
    let r = agent
        .delete(&format!("{base}{location}"))
        .call()
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 200);
    let r = agent
        .delete(&format!("{base}{location}"))
        .call()
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 404, "a second DELETE finds nothing");
    server.shutdown();
}

#[test]
fn whep_and_offer_reject_bad_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "tp", WEBRTC_TEST_PATTERN);
    write_pipeline(
        dir.path(),
        "no-webrtc",
        "launch = \"videotestsrc is-live=true ! fakesink\"\n",
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "tp", "playing");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |path: &str, ct: &str, body: &str| {
        let mut r = agent
            .post(&format!("{base}{path}"))
            .header("Content-Type", ct)
            .send(body)
            .expect("request");
        let status = r.status().as_u16();
        let json: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
        (
            status,
            json["error"].as_str().unwrap_or_default().to_string(),
        )
    };
    let (code, err) = post("/whep/nope", "application/sdp", "v=0\r\n");
    assert_eq!(
        (code, err.as_str()),
        (404, "no pipeline `nope` with a webrtc output")
    );
    let (code, _) = post("/whep/no-webrtc", "application/sdp", "v=0\r\n");
    assert_eq!(code, 404);
    let (code, err) = post("/whep/tp", "application/sdp", "hello");
    assert_eq!(code, 400, "{err}");
    let (code, err) = post("/whep/tp", "text/plain", "v=0\r\n");
    assert_eq!(code, 415, "{err}");
    let (code, err) = post(
        "/whep/tp",
        "application/sdp",
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 VP8/90000\r\n",
    );
    assert_eq!(code, 406);
    assert!(err.contains("does not accept H264"), "{err}");
    let (code, err) = post("/offer/tp", "application/json", "{\"sdp\": 1}");
    assert_eq!(code, 400, "{err}");
    let (code, err) = post(
        "/offer",
        "application/json",
        "{\"sdp\": \"v=0\", \"type\": \"answer\"}",
    );
    assert_eq!(code, 400);
    assert!(err.contains("must be \"offer\""), "{err}");
    // The service is still fine.
    assert_eq!(
        get(&format!("{base}/api/pipelines/tp")).json["state"],
        "playing"
    );
    server.shutdown();
}

#[test]
fn vp8_is_selectable() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "v",
        "[source]\nkind = \"test\"\nwidth = 640\nheight = 360\n[encode]\ncodec = \"vp8\"\n[[output]]\nkind = \"webrtc\"\n",
    );
    let server = TestServer::start(dir.path());
    wait_state(&server.base, "v", "playing");
    let seen = aiortc_view(&["whep", &format!("{}/whep/v", server.base)]);
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 60, "{seen}");
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(640), Some(360))
    );
    server.shutdown();
}
