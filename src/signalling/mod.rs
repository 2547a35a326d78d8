//! WebRTC signalling: the protocol types, the routing state machine, the embedded server.
//! It knows nothing of sessions: the pipelines' own signalling clients live with what they
//! drive, in [`crate::webrtc::signaller`].
//!
//! - [`protocol`]: serde types of the GStreamer WebRTC signalling protocol (no I/O);
//! - [`router`]: the routing rules as a state machine, tested without sockets;
//! - [`server`]: `/ws`, one task per connection, feeding the router.

pub mod protocol;
pub mod router;
pub mod server;
