//! The fuzz targets' bodies, shared by the cargo-fuzz targets (`tests/fuzz/fuzz_targets/`) and
//! the normal suite (`tests/hostile_input.rs` replays the kept corpus through them). Each takes
//! arbitrary bytes, feeds them to one input surface and checks what must hold whatever the
//! input: no panic, no GLib critical, errors that keep their shape.

use mediaweave::description::{self, ApiPolicy, VideoCodec};
use mediaweave::hooks::process::OutputParser;
use mediaweave::signalling::protocol::Outgoing;
use mediaweave::signalling::router::Router;
use mediaweave::webrtc::{cert, sdp};
use std::path::Path;

/// GStreamer is initialised once and GLib criticals abort (a library's assertion failing on
/// our input is a finding, not noise).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if gst::init().is_ok() {
            glib::log_set_always_fatal(glib::LogLevels::LEVEL_CRITICAL);
        }
        // Made once, on first use: made here, before any input.
        let _ = cert::certificate();
    });
}

/// A description file: parsed and validated as a file, and as a description sent over the
/// API (its elements checked before any is built, then the policy). Every diagnostic points
/// into the file.
pub fn description(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("pipelines/fuzz.toml");
    if let Err(diags) = description::parse(path, &text) {
        check_diagnostics(&diags, &text);
    }
    if let Err(diags) = description::parse_for_api(path, &text, &ApiPolicy::default()) {
        check_diagnostics(&diags, &text);
    }
}

fn check_diagnostics(diags: &description::Diagnostics, text: &str) {
    assert!(!diags.0.is_empty(), "an error without a diagnostic");
    for d in &diags.0 {
        assert!(d.line >= 1 && d.col >= 1, "{d}");
        assert!(d.line <= text.lines().count().max(1) + 1, "{d} in {text:?}");
    }
    assert!(
        diags.to_string().starts_with("pipelines/fuzz.toml:"),
        "{diags}"
    );
}

/// A signalling script: one message per line, the line's first byte picks which of three
/// connected peers sends it. Everything the router sends goes to a connected peer and is
/// valid protocol JSON.
pub fn signalling(data: &[u8]) {
    let mut router = Router::new();
    let peers: Vec<_> = (0..3).map(|_| router.connect().0).collect();
    for line in data.split(|b| *b == b'\n') {
        let Some((who, text)) = line.split_first() else {
            continue;
        };
        let from = &peers[usize::from(*who) % peers.len()];
        for (to, msg) in router.handle_text(from, &String::from_utf8_lossy(text)) {
            assert!(peers.contains(&to), "delivered to an unknown peer {to:?}");
            let json = msg.to_json();
            assert!(serde_json::from_str::<Outgoing>(&json).is_ok(), "{json}");
        }
    }
    for p in &peers {
        for (to, _) in router.disconnect(p) {
            assert!(peers.contains(&to), "delivered to an unknown peer {to:?}");
        }
    }
}

/// An SDP offer as viewers and publishers send it, and the fingerprint patch applied to our
/// own answers: every line survives it, every fingerprint is ours afterwards.
pub fn sdp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for codec in [VideoCodec::H264, VideoCodec::Vp8] {
        let _ = sdp::read_offer(&text, codec, None);
        let _ = sdp::read_offer(&text, codec, Some(sdp::H264Profile::High));
        let _ = sdp::read_publish_offer(&text, codec, true);
        let _ = sdp::read_publish_offer(&text, codec, false);
    }
    if let Ok(ours) = cert::certificate() {
        let patched = cert::patch_fingerprint(&text, ours);
        assert_eq!(
            patched.split_inclusive('\n').count(),
            text.split_inclusive('\n').count()
        );
        for line in patched.lines().filter(|l| l.starts_with("a=fingerprint:")) {
            assert!(line.ends_with(&ours.fingerprint), "{line}");
        }
    }
}

/// A WHIP/WHEP request (`Content-Type` picked by the first byte, then the body) and a
/// `POST /offer` JSON body: refused with a 4xx and a sentence, or an offer that is then read
/// like a real one.
pub fn offer_request(data: &[u8]) {
    let Some((pick, body)) = data.split_first() else {
        return;
    };
    let content_type = [
        None,
        Some("application/sdp"),
        Some("application/sdp; charset=utf-8"),
        Some("text/plain"),
        Some(""),
    ][usize::from(*pick) % 5];
    let read = |offer: &str| {
        let _ = sdp::read_offer(offer, VideoCodec::H264, None);
        let _ = sdp::check_answer(offer, VideoCodec::H264);
        let _ = sdp::read_publish_offer(offer, VideoCodec::H264, true);
    };
    for protocol in ["WHEP", "WHIP"] {
        match mediaweave::http::read_sdp_request(content_type, body, protocol) {
            Ok(offer) => read(&offer),
            Err(e) => refused_well(&e),
        }
    }
    match mediaweave::http::read_json_offer(body) {
        Ok((offer, _pipeline)) => read(&offer),
        Err(e) => refused_well(&e),
    }
}

fn refused_well(e: &mediaweave::http::ApiError) {
    assert!(e.status().is_client_error(), "{}", e.status());
    assert!(!e.message().is_empty());
}

/// A hook's stdout (frames, JSON lines, garbage) in pieces whose size the first byte picks:
/// the parser yields items or one error, never panics or loops.
pub fn hook_framing(data: &[u8]) {
    let Some((split, bytes)) = data.split_first() else {
        return;
    };
    let split = usize::from(*split % 32) + 1;
    let mut parser = OutputParser::default();
    for chunk in bytes.chunks(split) {
        parser.push(chunk);
        loop {
            match parser.next_item() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// A target's body: takes any bytes.
pub type Target = fn(&[u8]);

/// The targets by name, as `scripts/fuzz` and the corpus directories call them.
pub const TARGETS: [(&str, Target); 5] = [
    ("description", description),
    ("signalling", signalling),
    ("sdp", sdp),
    ("offer_request", offer_request),
    ("hook_framing", hook_framing),
];
