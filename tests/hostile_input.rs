//! Hostile input, generated (proptest, fixed seed and case count so every run is the same and
//! bounded): the description parser and validator, signalling message handling, SDP reading,
//! the hook framing parser, and the HTTP signalling endpoints of a running service. None may
//! panic; errors keep their shape (FILE:LINE:COL diagnostics, `error` messages, 4xx answers)
//! and the service keeps serving.

mod common;
#[path = "fuzz/harness.rs"]
mod harness;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::path::Path;

/// The inputs kept by the cargo-fuzz runs (`scripts/fuzz`), and the crashes they found once,
/// go through the same checks on every run of the suite.
#[test]
fn fuzz_corpus_replays_cleanly() {
    harness::init();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    for (name, run) in harness::TARGETS {
        let dir = corpus.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).expect("corpus file");
            run(&bytes);
            inputs += 1;
        }
        assert!(inputs > 0, "no corpus for {name}");
    }
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x6d65_6469_6177),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Lines that look like description files: real keys and tables with random values.
fn description_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "kind",
        "width",
        "height",
        "framerate",
        "pattern",
        "port",
        "host",
        "launch",
        "path",
        "uri",
        "codec",
        "bitrate",
        "segment",
        "every",
        "budget",
        "mode",
        "name",
        "command",
        "listen",
        "format",
        "autostart",
        "restart",
        "frames",
        "audio",
        "device",
        "loop",
    ]);
    let value = prop_oneof![
        "-?[0-9]{1,12}",
        "\"[ -~]{0,24}\"",
        Just("true".to_string()),
        Just("\"test\"".to_string()),
        Just("\"tcp\"".to_string()),
        Just("\"webrtc\"".to_string()),
        Just("\"record\"".to_string()),
        Just("\"videotestsrc ! fakesink\"".to_string()),
        "\\[[0-9, ]{0,8}\\]",
        "\\{ ?[a-z]{1,5} = [0-9]{1,3} ?\\}",
    ];
    prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        prop::sample::select(vec![
            "[source]",
            "[encode]",
            "[[output]]",
            "[[hook]]",
            "[backoff]",
            "[source.x]",
            "",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,40}",
    ]
}

#[test]
fn descriptions_never_panic_and_point_at_the_file() {
    harness::init();
    proptest!(config(3000), |(lines in prop::collection::vec(description_line(), 0..14))| {
        harness::description(lines.join("\n").as_bytes());
    });
    // Arbitrary text, too.
    proptest!(config(1000), |(text in "\\PC{0,300}")| {
        harness::description(text.as_bytes());
    });
}

/// Signalling messages: valid shapes with random fields, and garbage.
fn signalling_message() -> impl Strategy<Value = String> {
    let id = prop_oneof![
        Just("p0".to_string()),
        Just("p1".to_string()),
        Just("p2".to_string()),
        "[a-z0-9-]{0,12}",
    ];
    let sid = prop_oneof![Just("s0".to_string()), "[a-z0-9-]{0,12}"];
    prop_oneof![
        Just(r#"{"type":"list"}"#.to_string()),
        Just(r#"{"type":"listConsumers"}"#.to_string()),
        Just(r#"{"type":"setPeerStatus","roles":["producer"],"meta":{"name":"cam"}}"#.to_string()),
        Just(r#"{"type":"setPeerStatus","roles":["listener"]}"#.to_string()),
        Just(r#"{"type":"setPeerStatus","roles":[]}"#.to_string()),
        id.clone()
            .prop_map(|p| format!(r#"{{"type":"startSession","peerId":"{p}"}}"#)),
        sid.clone()
            .prop_map(|s| format!(r#"{{"type":"endSession","sessionId":"{s}"}}"#)),
        (sid.clone(), "[ -~]{0,40}").prop_map(|(s, t)| format!(
            r#"{{"type":"peer","sessionId":"{s}","sdp":{{"type":"offer","sdp":{t:?}}}}}"#
        )),
        (sid, 0u32..5, "[ -~]{0,40}").prop_map(|(s, m, c)| format!(
            r#"{{"type":"peer","sessionId":"{s}","ice":{{"candidate":{c:?},"sdpMLineIndex":{m}}}}}"#
        )),
        "\\PC{0,80}",
        "\\{\"type\":\"[a-zA-Z]{0,12}\"[ -~]{0,30}\\}",
    ]
}

#[test]
fn signalling_router_survives_any_message_order() {
    proptest!(config(1500), |(script in prop::collection::vec((0u8..3, signalling_message()), 1..40))| {
        // One message per line, its first byte the sending peer (the fuzz target's format).
        let mut bytes = Vec::new();
        for (who, text) in &script {
            bytes.push(*who);
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(b'\n');
        }
        harness::signalling(&bytes);
    });
}

/// A real offer with lines dropped, duplicated, cut or replaced.
fn mangled_offer() -> impl Strategy<Value = String> {
    let offer = include_str!("fixtures/aiortc-offer.sdp");
    let lines: Vec<String> = offer.lines().map(str::to_string).collect();
    let n = lines.len();
    prop::collection::vec((0..n, 0u8..4, "[ -~]{0,30}"), 0..12).prop_map(move |edits| {
        let mut l = lines.clone();
        for (i, op, junk) in edits {
            let i = i % l.len().max(1);
            match op {
                0 if !l.is_empty() => {
                    l.remove(i);
                }
                1 if !l.is_empty() => {
                    let dup = l[i].clone();
                    l.insert(i, dup);
                }
                2 if !l.is_empty() => {
                    let cut = l[i].len() / 2;
                    l[i].truncate(cut);
                }
                _ if !l.is_empty() => l[i] = junk,
                _ => {}
            }
        }
        l.join("\r\n") + "\r\n"
    })
}

/// A real offer missing what ICE and DTLS need, or with it spoiled: each bit of the mask
/// drops one kind of line or applies one change.
fn broken_offer() -> impl Strategy<Value = String> {
    let offer = include_str!("fixtures/aiortc-offer.sdp");
    any::<u16>().prop_map(move |mask| {
        let drops = [
            "a=ice-ufrag",
            "a=ice-pwd",
            "a=fingerprint",
            "a=setup",
            "a=mid",
            "a=group:BUNDLE",
            "a=rtcp-mux",
            "a=candidate",
            "c=",
            "a=rtpmap",
        ];
        let bit = |i: usize| mask & (1 << i) != 0;
        let mut text: String = offer
            .lines()
            .filter(|l| {
                !drops
                    .iter()
                    .enumerate()
                    .any(|(i, d)| bit(i) && l.starts_with(d))
            })
            .map(|l| format!("{l}\r\n"))
            .collect();
        if bit(10) {
            text = text.replace("a=fingerprint:sha-256", "a=fingerprint:sha-999");
        }
        if bit(11) {
            text = text.replace("m=video 58585", "m=video 0");
        }
        if bit(12) {
            text = text
                .replace("m=video 58585", "m=video 0")
                .replace("m=audio 34657", "m=audio 0");
        }
        if bit(13) {
            text = text.replace("a=setup:actpass", "a=setup:holdconn");
        }
        if bit(14) {
            text = text.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP");
        }
        if bit(15) {
            text = text.replace("a=recvonly", "a=sendrecv");
        }
        text
    })
}

#[test]
fn sdp_reading_never_panics() {
    harness::init();
    proptest!(config(2000), |(offer in prop_oneof![mangled_offer(), "\\PC{0,400}".prop_map(|s| s)])| {
        harness::sdp(offer.as_bytes());
    });
}

#[test]
fn hook_framing_parser_takes_any_bytes_in_any_pieces() {
    let frame = |len: u32| {
        let mut f = b"MWF1".to_vec();
        for v in [4u32, 2, u32::from_le_bytes(*b"GRAY"), 4] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&[0u8; 4]);
        f.extend_from_slice(&7u64.to_le_bytes());
        f.extend_from_slice(&len.to_le_bytes());
        f.extend(std::iter::repeat_n(9u8, len as usize));
        f
    };
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        Just(frame(8)),
        Just(b"{\"kind\":\"x\"}\n".to_vec()),
        Just(b"MWF".to_vec()),
        (0u32..64).prop_map(frame),
    ];
    proptest!(config(2000), |(pieces in prop::collection::vec(piece, 0..20), split in 0u8..16)| {
        let mut bytes = vec![split];
        bytes.extend(pieces.concat());
        harness::hook_framing(&bytes);
    });
}

#[test]
fn http_signalling_endpoints_answer_garbage_with_4xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", WEBRTC_TEST_PATTERN);
    write_pipeline(dir.path(), "inbox", INBOX);
    write_pipeline(
        dir.path(),
        "lobby",
        "[source]\nkind = \"room\"\nmax_participants = 3\n\n[[output]]\nkind = \"webrtc\"\n",
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    wait_state(&base, "inbox", "playing");
    wait_state(&base, "lobby", "playing");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into();
    let target = prop::sample::select(vec![
        "/whep/cam",
        "/whip/inbox",
        "/offer/cam",
        "/offer",
        "/whep/nope",
        "/whep/cam/x",
        // A room: join (with odd names), watch, leave, offer, someone who is not there.
        "/whip/lobby",
        "/whip/lobby?name=%00%FF%20%E2%80%AE..%2F",
        "/whip/lobby?name=a&name=b",
        "/whip/lobby/nobody",
        "/whep/lobby/nobody",
        "/whep/lobby/nobody/x",
        "/offer/lobby/nobody",
        "/whep/lobby",
        "/api/pipelines/fz",
        "/api/pipelines/cam/elements/video_encoder/properties/bitrate",
    ]);
    let content_type = prop::sample::select(vec![
        "application/sdp",
        "application/json",
        "text/plain",
        "application/toml",
        "",
    ]);
    let body = prop_oneof![
        mangled_offer(),
        "\\PC{0,200}",
        "\\{\"sdp\":\"[ -~]{0,60}\",\"type\":\"(offer|answer|x)\"\\}",
        description_line(),
    ];
    proptest!(config(160), |(path in target, ct in content_type, body in body, method in 0u8..4)| {
        let url = format!("{base}{path}");
        let status = if method == 3 {
            agent.delete(&url).call().expect("the service answers").status().as_u16()
        } else {
            let request = match method {
                0 => agent.post(&url),
                1 => agent.put(&url),
                _ => agent.patch(&url),
            };
            let request = if ct.is_empty() { request } else { request.header("Content-Type", ct) };
            request.send(body.as_str()).expect("the service answers").status().as_u16()
        };
        // Garbage is a client error; a PUT of a valid text may create a pipeline (200/201),
        // a valid property value 200. Never a server error.
        prop_assert!(status < 500 || status == 503, "{path} {ct:?} → {status} for {body:?}");
    });
    // What is missing is named.
    let offer = include_str!("fixtures/aiortc-offer.sdp");
    let without = |prefix: &str| {
        offer
            .lines()
            .filter(|l| !l.starts_with(prefix))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
    };
    for (path, body, expected) in [
        (
            "/whep/cam",
            without("a=ice-ufrag"),
            "video m-line has no a=ice-ufrag",
        ),
        (
            "/whep/cam",
            without("a=fingerprint"),
            "has no a=fingerprint",
        ),
        (
            "/whep/cam",
            offer.replace("a=fingerprint:sha-256", "a=fingerprint:sha-999"),
            "unknown hash `sha-999`",
        ),
        (
            "/whep/cam",
            offer
                .replace("m=video 58585", "m=video 0")
                .replace("m=audio 34657", "m=audio 0"),
            "every m-line of the offer is rejected (port 0)",
        ),
    ] {
        let r = post_sdp(&format!("{base}{path}"), &body);
        let error = r.json["error"].as_str().unwrap_or_default();
        assert_eq!(r.status, 400, "{path}: {error}");
        assert!(error.contains(expected), "{error}");
    }
    let r = post(&format!("{base}/offer/cam"));
    assert_eq!(r.status, 400, "{}", r.json);

    // Offers that lack or spoil what ICE and DTLS need: a 4xx naming it, never a 5xx (nor a
    // session that can never connect). Sessions that are created are ended at once.
    let target = prop::sample::select(vec![
        "/whep/cam",
        "/offer/cam",
        "/whip/inbox",
        "/whip/lobby?name=fz",
    ]);
    proptest!(config(150), |(path in target, offer in broken_offer())| {
        let url = format!("{base}{path}");
        let response = if path.starts_with("/offer") {
            let body = serde_json::json!({"type": "offer", "sdp": offer}).to_string();
            agent.post(&url).header("Content-Type", "application/json").send(body.as_str())
        } else {
            agent.post(&url).header("Content-Type", "application/sdp").send(offer.as_str())
        };
        let mut response = response.expect("the service answers");
        let status = response.status().as_u16();
        if let Some(location) = response.headers().get("location").and_then(|l| l.to_str().ok()) {
            let _ = agent.delete(&format!("{base}{location}")).call();
        }
        let body = response.body_mut().read_to_string().unwrap_or_default();
        prop_assert!(status < 500 || status == 503, "{path} → {status} {body} for {offer:?}");
    });
    // Still serving, and the pipelines are unharmed; the room is empty again.
    assert_eq!(wait_state(&base, "cam", "playing")["name"], "cam");
    wait_for(
        "the room to empty",
        std::time::Duration::from_secs(30),
        || {
            let v = get(&format!("{base}/api/pipelines/lobby")).json;
            v["participants"]
                .as_array()
                .is_some_and(|p| p.is_empty())
                .then_some(())
        },
    );
    let seen = aiortc_view(&["whep", &format!("{base}/whep/cam"), "--frames", "10"]);
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 10, "{seen}");
}
