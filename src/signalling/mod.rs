//! WebRTC signalling: the protocol types, the routing state machine, the embedded server.
//!
//! - [`protocol`]: serde types of the GStreamer WebRTC signalling protocol (no I/O);
//! - [`router`]: the routing rules as a state machine, tested without sockets;
//! - [`server`]: `/ws`, one task per connection, feeding the router;
//! - [`client`]: a pipeline's webrtc output registered as a producer on a signalling server.

pub mod client;
pub mod protocol;
pub mod router;
pub mod server;
