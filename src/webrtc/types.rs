//! The types a peer session shares with its owners (outputs, ingest points, the signaller,
//! the HTTP API): ids, statistics, the messages in and out of a session, its parameters.

use super::sdp::OfferedFormats;
use crate::description::VideoCodec;
use gst_utils::streamproducer::StreamProducer;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How an answering session's error starts when the remote offer was the problem (webrtcbin
/// refused it): the client gets 400, not a server error.
pub const OFFER_REFUSED: &str = "the offer was refused";

/// Identifies a viewer session (also its WHEP resource id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ViewerId(pub String);

impl ViewerId {
    pub fn new() -> ViewerId {
        ViewerId(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl ViewerId {
    /// The first 8 characters: enough to tell viewers apart in the API and chat, and not the
    /// whole id, which is the WHEP resource's capability (whoever knows it can DELETE it).
    pub fn short(&self) -> String {
        self.0.chars().take(8).collect()
    }
}

impl Default for ViewerId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ViewerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the viewer negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Whep,
    Whip,
    Offer,
    Signalling,
}

/// Per-viewer statistics, from webrtcbin's `get-stats` (RTCP receiver reports for loss/RTT).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewerStats {
    /// A prefix of the viewer id (see [`ViewerId::short`]).
    pub id: String,
    pub via: Via,
    pub connected: bool,
    pub bytes_sent: u64,
    pub packets_sent: u64,
    pub packets_lost: i64,
    pub round_trip_time_ms: Option<f64>,
    /// Encoded buffers the leaky per-viewer queue dropped because this viewer fell behind.
    pub dropped_buffers: u64,
    /// What a publisher sent us.
    pub bytes_received: u64,
    /// Packets sent again on the viewer's request (NACK), and requests refused (too old,
    /// already resent, or over its retransmission budget: see [`super::rtx`]).
    pub retransmitted: u64,
    pub retransmissions_refused: u64,
    pub started: String,
    /// The ladder rung it watches (`WIDTHxHEIGHT`), with a ladder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rung: Option<String>,
    /// Its bandwidth estimate (kbit/s), once one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_kbps: Option<u32>,
    /// Moves between rungs so far.
    pub switches: u32,
}

/// ICE settings of the service.
#[derive(Debug, Clone, Default)]
pub struct IceConfig {
    /// Local addresses to gather host candidates on; empty = every interface but loopback
    /// (libnice's default). Loopback-only machines need "127.0.0.1".
    pub addresses: Vec<String>,
    /// `stun://host:port`.
    pub stun_server: Option<String>,
    /// `turn(s)://user:password@host:port`.
    pub turn_servers: Vec<String>,
}

/// Messages from the session to a signalling peer (offer role).
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    Offer(String),
    /// Our answer to an offer the consumer sent with `startSession`.
    Answer(String),
    Ice {
        mline: u32,
        candidate: String,
    },
    /// The session is over (its resources are freed); why, if it failed.
    Ended(Option<String>),
}

/// Messages into a session.
#[derive(Debug)]
pub enum Command {
    RemoteAnswer(String),
    RemoteIce {
        mline: u32,
        candidate: String,
    },
    /// A chat line from another viewer, to send on this viewer's data channel.
    Chat(String),
    /// The pipeline restarted (after an error): take its streams from now on.
    Follow {
        video: Option<StreamProducer>,
        audio: Option<StreamProducer>,
        clock: gst::Clock,
    },
}

/// What a session is, and how it negotiates.
pub enum Role {
    /// A viewer that offered (WHEP, `POST /offer`, a signalling consumer with an offer).
    Answer(Answering),
    /// A publisher that offered (WHIP, `/publish`): what it sends goes into this ingest.
    Publish(Answering, Ingest),
    /// A stream we pull (a `whep` source): we offer to receive, once, with every candidate
    /// gathered; what arrives goes into this ingest.
    Pull(Ingest, mpsc::Sender<Signal>),
    /// A signalling consumer that did not offer: we offer and trickle candidates; or
    /// (`gathered`, a `whip` output) we offer once, with every candidate gathered.
    Offer {
        signal: mpsc::Sender<Signal>,
        gathered: bool,
    },
}

/// A peer's offer to answer.
pub struct Answering {
    pub offer: String,
    pub formats: OfferedFormats,
    /// Where the answer (ICE gathered), or why there is none, goes.
    pub reply: oneshot::Sender<Result<String, String>>,
    /// Told `Signal::Ended` when the session ends (a signalling peer that offered).
    pub signal: Option<mpsc::Sender<Signal>>,
}

/// Where a publisher's media goes: the ingest pipeline's plan (built per publisher) and the
/// recordings its record outputs write.
#[derive(Clone)]
pub struct Ingest {
    pub plan: Arc<crate::assemble::Plan>,
    pub recordings: Arc<crate::record::Recordings>,
    /// Where the pipeline's hooks (on the decoded stream) report.
    pub hooks: crate::hooks::HookHost,
    /// Where the publisher's stream is relayed to viewers, if the pipeline has a webrtc output.
    pub relay: Option<super::registry::Relay>,
    /// The current publisher's pipeline, once built: what the elements API and the graph of a
    /// published stream show.
    pub built: PipelineSlot,
}

/// A pipeline that someone else owns, kept where it can be found while it lives.
pub type PipelineSlot = Arc<std::sync::Mutex<Option<glib::WeakRef<gst::Pipeline>>>>;

/// A session that answers an offer: its id, its command sender, and where its answer (ICE
/// gathered) arrives.
pub type AnswerSession = (
    ViewerId,
    mpsc::Sender<Command>,
    oneshot::Receiver<Result<String, String>>,
);

/// Chat lines from viewers, to be relayed by whoever owns the session (the output).
pub type ChatSender = mpsc::Sender<(ViewerId, String)>;

/// Everything a session needs from its output.
pub struct Params {
    pub id: ViewerId,
    pub via: Via,
    pub codec: VideoCodec,
    pub video: Option<StreamProducer>,
    pub audio: Option<StreamProducer>,
    /// The main pipeline's clock and base time: viewer pipelines share them so timestamps of
    /// the fanned-out buffers mean the same thing.
    pub clock: Option<(gst::Clock, gst::ClockTime)>,
    pub ice: IceConfig,
    pub chat: ChatSender,
    /// How long a peer has to connect (ICE + DTLS) before the session is dropped.
    pub connect_timeout: Duration,
    /// How long a connected peer may stay silent (nothing at all arrives) before the session
    /// ends: webrtcbin 1.22 has no ICE consent checks, so a peer that vanished without a word
    /// is noticed this way.
    pub peer_timeout: Duration,
    /// Its place among the sessions that have not connected yet, given back on connecting.
    pub pending: Option<crate::limits::Pass>,
    /// The output's encoder ladder: the viewer moves between its rungs as its bandwidth
    /// estimate says (None: it gets `video`, as it is).
    pub ladder: Option<std::sync::Arc<super::ladder::Ladder>>,
}

/// The owner's handle on a running session.
pub struct Handle {
    pub id: ViewerId,
    pub commands: mpsc::Sender<Command>,
    pub stats: watch::Receiver<ViewerStats>,
    /// Ends the session; unlike a queued command it cannot be lost to a full queue.
    pub cancel: Arc<tokio::sync::Notify>,
}

impl Handle {
    pub fn end(&self) {
        // notify_one keeps a permit when the task is not waiting right now.
        self.cancel.notify_one();
    }
}
