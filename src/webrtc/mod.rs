//! WebRTC, the stream hub's readers: per-peer sessions around webrtcbin, viewers fed by a
//! pipeline's encoded streams or a publisher's relayed ones, publishers recorded and relayed.
//!
//! - [`types`]: ids, statistics, the messages in and out of a session, its parameters;
//! - [`session`]: one peer = one pipeline + one task;
//! - [`negotiation`]: offer/answer as a sans-I/O state machine (inputs in, actions out);
//! - [`peer`]: webrtcbin set up for any session, and its asynchronous calls;
//! - [`viewer`], [`publisher`]: the two kinds of session pipeline;
//! - [`cert`]: the ECDSA DTLS certificate and the fingerprint fix-up;
//! - [`sdp`]: reading remote offers (payload types to answer with) and answers;
//! - [`output`]: a pipeline's `webrtc` output: its stream producers, sessions and chat;
//! - [`registry`]: the running outputs and ingest points by pipeline name; the relay;
//! - [`ingest`]: a webrtc-source pipeline's door for publishers (WHIP, `/publish`);
//! - [`room`]: a room's participants, each an ingest point of its own, and its chat;
//! - [`chat`]: the limits on typed lines, and the bus on which every chat's lines leave
//!   (for the Socket.IO clients);
//! - [`keyframes`]: which frames a joining viewer starts on, and keyframe requests held
//!   to one per half second per stream, none lost;
//! - [`rtx`]: each viewer's retransmission budget;
//! - [`estimator`]: each adaptive viewer's bandwidth estimator, fed its feedback;
//! - [`ladder`], [`adapt`]: a pipeline's encoder ladder (rungs encoded once, started when
//!   watched) and the rules that move each viewer between rungs by its bandwidth estimate;
//! - [`whip_client`]: `whip` outputs, the stream published to other servers over WHIP;
//! - [`whep_pull`]: `whep` sources, a stream pulled from another server over WHEP;
//! - [`signaller`]: a webrtc output registered as a producer (and an ingest point as a
//!   consumer of browser publishers) on a signalling server, the embedded `/ws` or another.

pub mod adapt;
pub mod cert;
pub mod chat;
pub mod estimator;
pub mod ingest;
pub mod keyframes;
pub mod ladder;
pub mod negotiation;
pub mod output;
pub mod peer;
pub mod probing;
pub mod publisher;
pub mod registry;
pub mod room;
pub mod rtx;
pub mod sdp;
pub mod session;
pub mod signaller;
pub mod simulcast;
pub mod types;
pub mod viewer;
pub mod whep_pull;
pub mod whip_client;

/// Makes the first viewer as quick as the next ones: the DTLS certificate and the WebRTC
/// plugins (webrtcbin, libnice, DTLS, SRTP) are otherwise made and loaded on its time.
/// Blocking; call it off the async threads.
pub fn warm_up() {
    if let Err(e) = cert::certificate() {
        tracing::warn!("DTLS certificate: {e}");
    }
    for factory in [
        "webrtcbin",
        "nicesrc",
        "nicesink",
        "dtlssrtpenc",
        "dtlssrtpdec",
    ] {
        let _ = gst::ElementFactory::make(factory).build();
    }
    match srtp_library() {
        Some(path) => tracing::info!("SRTP through {path}"),
        None => tracing::debug!("libsrtp2 not found among the loaded libraries"),
    }
}

/// The libsrtp the SRTP elements loaded (which one costs a fifth of each viewer's sending: see
/// scripts/setup), read from the process's memory map.
fn srtp_library() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.contains("libsrtp2"))
        .map(str::to_string)
}
