//! mediaweave: named GStreamer pipelines as a service.
//!
//! # How data flows
//!
//! 1. **Description files** (`pipelines/NAME.toml`) are parsed and validated by
//!    [`description`]: TOML with spans, so every error names `FILE:LINE:COL`. A file is either a
//!    raw gst-launch line or a structured `[source]` / `[encode]` / `[[output]]` description.
//! 2. **Assembly** ([`assemble`]) turns a description into a [`assemble::Plan`]: machine-dependent
//!    choices (encoder, camera format) written out as one gst-launch line, then builds the
//!    `gst::Pipeline`. Structured pipelines encode once and fan out through tees, each output
//!    behind its own leaky queue.
//! 3. **The supervisor** ([`supervisor`]) gives every pipeline one tokio task that owns it:
//!    commands in through a channel, bus messages in through `Bus::stream()`, status out
//!    through a `watch` channel. Errors restart the pipeline with exponential backoff per its
//!    restart policy; stops send end-of-stream first so files are finalized. A source that
//!    stops delivering without an error is caught by the buffer-flow watchdog ([`stall`]).
//!    Only the runner attaches a run's hooks, meter and WebRTC output, after the blocking build
//!    came back in time, so a start that timed out leaves nothing behind.
//! 4. **Frame hooks** ([`hooks`]) take decoded frames off the raw video: observing hooks on
//!    leaky branches of their own (a slow hook loses frames, the outputs never wait), transforms
//!    on the path with a latency budget (a late hook lets the frame pass unchanged). Their
//!    events go to the [`events`] bus.
//! 5. **The stream hub** ([`hub`]): each run of a pipeline (or each publisher's pipeline) is
//!    handed to the readers that live outside it through one small trait (attach, playing,
//!    finish, suspend, detach): its encoded tracks become named streams (gstreamer-utils
//!    `StreamProducer`s) that readers join and leave at run time, each behind its own
//!    bounded, leaky, counted queue; a relayed publisher's stream is the same kind of stream.
//!    Reader kinds: WebRTC viewers, TCP outputs ([`hub::tcp`], MPEG-TS served from a
//!    pipeline of their own), RTSP outputs ([`hub::rtsp`], mounts of one embedded RTSP server), HLS outputs
//!    ([`hub::hls`], segments and a playlist the HTTP server serves), record and file outputs ([`hub::record`], written by a
//!    pipeline of their own, finished at the run's end even when it failed), and the decoder
//!    of a stream kept as it arrives, for its hooks ([`hub::hooks`]). A jpeg-tcp source's
//!    listener is handed each run the same way, to push its sender's frames into the run's
//!    appsrc, and jpeg-tcp outputs' senders take JPEGs off the raw video ([`hub::jpeg_tcp`]).
//!    Only the hooks of raw
//!    video (a local pipeline's, where transforms change the frames on the path) stay in the
//!    source's pipeline, as leaky tee branches.
//! 6. **WebRTC** ([`webrtc`], [`signalling`]), the hub's readers: viewers get a pipeline each,
//!    fed by a stream, their retransmissions held to a budget ([`webrtc::rtx`]) and their
//!    keyframe requests throttled per stream ([`webrtc::keyframes`]); with an encoder ladder
//!    (rungs encoded once, each only while watched) a viewer's own bandwidth estimate moves it
//!    between rungs ([`webrtc::ladder`], [`webrtc::adapt`], [`webrtc::probing`]); negotiation is a
//!    sans-I/O state machine ([`webrtc::negotiation`]); publishers get a pipeline each whose
//!    stream is handed to the readers (viewers, TCP, record) like a run's; a simulcast
//!    publisher's lower layers become the ladder's rungs ([`webrtc::simulcast`]). [`signalling`] is the protocol and the
//!    embedded `/ws` server only; the clients that register outputs as producers live in
//!    [`webrtc::signaller`]. Recordings ([`record`]) are written by a
//!    segment writer that puts every frame into the current segment's muxer as it arrives and
//!    cuts segments on keyframes it asks for, so a crash loses about a second at most.
//! 7. **The HTTP API** ([`http`], served by [`server`]) reads statuses and sends commands;
//!    `PUT`/`DELETE` of descriptions and hot reload ([`reload`]) change the pipeline set through
//!    one serialized path in the supervisor (a replacement waits for its predecessor's task).
//!    Chat lines of every WebRTC chat leave on a bus ([`webrtc::chat`]) that the Socket.IO
//!    chat at `/socket.io/` ([`http::socketio`]) brings to its clients, whose lines go the
//!    other way into the same relays.
//!    Element properties are read and set on the running pipeline's handle; everything that
//!    happens goes to the [`events`] bus, and [`metrics`] reads counters at scrape time.
//!    The CLI (`src/main.rs`, [`cli`], [`ctl`]) talks to a running server or runs pipelines
//!    itself. [`pipeline`] holds leaf helpers for any pipeline (teardown, element paths, error
//!    text), [`meter`] the encoded-video meter; [`redact`] takes tokens and passwords out of
//!    anything logged or shown.
//!
//! Dependencies between these modules flow one way, with the data; `tests/module_graph.rs`
//! fails on any import cycle.

pub mod assemble;
pub mod auth;
pub mod cli;
pub mod ctl;
pub mod description;
pub mod events;
pub mod graph;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod limits;
pub mod meter;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod redact;
pub mod reload;
pub mod server;
pub mod signalling;
pub mod stall;
pub mod supervisor;
pub mod webrtc;

/// Initializes GStreamer and registers the elements built into the service (gst-plugins-rs'
/// `rtpgccbwe`); safe to call more than once.
pub fn init() -> Result<(), glib::Error> {
    gst::init()?;
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        if let Err(e) = gstrsrtp::plugin_register_static() {
            tracing::warn!("cannot register the built-in RTP elements (rtpgccbwe): {e}");
        }
    });
    Ok(())
}
