//! WebRTC viewing: per-viewer sessions around webrtcbin, fed by the pipeline's encoders.
//!
//! - [`cert`]: the ECDSA DTLS certificate and the fingerprint fix-up;
//! - [`sdp`]: reading remote offers (payload types to answer with);
//! - [`session`]: one viewer = one pipeline + one task;
//! - [`output`]: a pipeline's `webrtc` output: its stream producers, sessions and chat.

pub mod cert;
pub mod output;
pub mod sdp;
pub mod session;
