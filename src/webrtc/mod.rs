//! WebRTC viewing: per-viewer sessions around webrtcbin, fed by the pipeline's encoders.
//!
//! - [`cert`]: the ECDSA DTLS certificate and the fingerprint fix-up;
//! - [`sdp`]: reading remote offers (payload types to answer with);
//! - [`session`]: one viewer = one pipeline + one task;
//! - [`output`]: a pipeline's `webrtc` output: its stream producers, sessions and chat;
//! - [`ingest`]: a webrtc-source pipeline's door for publishers (WHIP, `/publish`);
//! - [`rtx`]: each viewer's retransmission budget;
//! - [`signaller`]: a webrtc output registered as a producer (and an ingest point as a
//!   consumer of browser publishers) on a signalling server, the embedded `/ws` or another.

pub mod cert;
pub mod ingest;
pub mod output;
pub mod rtx;
pub mod sdp;
pub mod session;
pub mod signaller;

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
}
