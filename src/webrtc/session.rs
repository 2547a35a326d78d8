//! One viewer: its own pipeline `appsrc → payloader → webrtcbin`, owned by one task.
//!
//! The encoded streams come from the main pipeline through `StreamProducer` consumers (leaky
//! appsrcs, 500 ms), so a slow viewer drops its own data and never slows the encoder or the
//! other viewers. GStreamer callbacks (webrtcbin signals, promises, pad probes, the bus) only
//! push an [`Event`] into the task's channel; the task owns every decision.
//!
//! Two ways to negotiate:
//! - [`Role::Answer`] (WHEP, `POST /offer`): the peer offers; we answer once ICE gathering is
//!   complete, so no trickle is needed;
//! - [`Role::Offer`] (the signalling protocol): we offer and trickle candidates through
//!   [`Signal`]s; the answer and remote candidates arrive as [`Command`]s.

use super::cert::{self, DtlsCertificate};
use super::sdp::OfferedFormats;
use crate::description::VideoCodec;
use gst::glib;
use gst::prelude::*;
use gst_utils::streamproducer::{ConsumptionLink, StreamProducer};
use gst_webrtc::{WebRTCDataChannel, WebRTCPeerConnectionState, WebRTCSessionDescription};
use serde::Serialize;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

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
    /// The session is over (its resources are freed).
    Ended,
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

pub enum Role {
    Answer {
        offer: String,
        formats: OfferedFormats,
        reply: oneshot::Sender<Result<String, String>>,
        /// Told `Signal::Ended` when the session ends (a signalling consumer that offered).
        signal: Option<mpsc::Sender<Signal>>,
        /// Set when the peer publishes: we receive into this pipeline instead of sending.
        ingest: Option<Ingest>,
    },
    Offer {
        signal: mpsc::Sender<Signal>,
    },
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
    pub relay: Option<super::output::Relay>,
}

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

/// Longest chat line relayed, in characters.
pub const CHAT_MAX_CHARS: usize = 500;
/// Chat lines one viewer may send per 10 s; more are dropped (and counted in the logs).
const CHAT_BURST: u32 = 10;
/// Default payload types when we offer.
const OFFER_VIDEO_PT: u32 = 96;
const OFFER_AUDIO_PT: u32 = 111;

/// What GStreamer callbacks report to the session task.
enum Event {
    NegotiationNeeded,
    MediaFlowing,
    RemoteSet(Result<(), String>),
    Created(Result<WebRTCSessionDescription, String>),
    IceCandidate(u32, String),
    GatheringComplete,
    State(WebRTCPeerConnectionState),
    DataChannel(WebRTCDataChannel),
    ChatIn(String),
    Stats(gst::Structure),
    /// The peer said goodbye (RTCP BYE).
    PeerGone(&'static str),
    /// End-of-stream reached every sink (a publisher's recording is finalized).
    Eos,
    /// A publisher's pipeline reached PLAYING (its clock and base time are final).
    Playing,
    /// End-of-stream reached the file sink of a file output, or a record output finished its
    /// last segment.
    SinkEos,
    Error(String),
}

/// Events queued from GStreamer threads; a few per second in normal operation (candidates,
/// stats, chat), so 256 only fills if the task is stuck, and then dropping is right.
const EVENT_QUEUE: usize = 256;

/// Starts a session task; `on_end` runs when it is over and every resource is freed.
pub fn spawn(
    params: Params,
    role: Role,
    on_end: impl FnOnce(&ViewerId) + Send + 'static,
) -> Handle {
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let stats = ViewerStats {
        id: params.id.short(),
        via: params.via,
        connected: false,
        bytes_sent: 0,
        packets_sent: 0,
        packets_lost: 0,
        round_trip_time_ms: None,
        dropped_buffers: 0,
        bytes_received: 0,
        retransmitted: 0,
        retransmissions_refused: 0,
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let (stats_tx, stats_rx) = watch::channel(stats);
    let id = params.id.clone();
    let cancel = Arc::new(tokio::sync::Notify::new());
    let task_cancel = cancel.clone();
    tokio::spawn(async move {
        // Runs on_end even if the task panics, so the owner's table never keeps a dead entry.
        struct OnEnd<F: FnOnce(&ViewerId)>(Option<(F, ViewerId)>);
        impl<F: FnOnce(&ViewerId)> Drop for OnEnd<F> {
            fn drop(&mut self) {
                if let Some((f, id)) = self.0.take() {
                    f(&id);
                }
            }
        }
        let _guard = OnEnd(Some((on_end, params.id.clone())));
        run(params, role, cmd_rx, stats_tx, task_cancel).await;
    });
    Handle {
        id,
        commands: cmd_tx,
        stats: stats_rx,
        cancel,
    }
}

/// A built viewer pipeline.
/// Per-peer pipelines (viewers and publishers) not yet freed.
static LIVE_PIPELINES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many per-peer pipelines exist right now (built and not yet freed by GStreamer).
pub fn live_peer_pipelines() -> usize {
    LIVE_PIPELINES.load(std::sync::atomic::Ordering::SeqCst)
}

struct Built {
    pipeline: PipelineGuard,
    /// Frame hooks of a publisher's pipeline; dropping them stops them.
    _hooks: Option<crate::hooks::RunningHooks>,
    webrtc: gst::Element,
    /// What the retransmission guard let through and refused.
    rtx: Arc<super::rtx::RtxCounters>,
    links: Vec<ConsumptionLink>,
    continuity: Arc<Continuity>,
    /// The data channel we created (offer role).
    channel: Option<WebRTCDataChannel>,
}

async fn run(
    params: Params,
    role: Role,
    mut commands: mpsc::Receiver<Command>,
    stats: watch::Sender<ViewerStats>,
    cancel: Arc<tokio::sync::Notify>,
) {
    let (ev_tx, mut events) = mpsc::channel::<Event>(EVENT_QUEUE);
    let id = params.id.clone();
    let (video_pt, audio_pt, offering) = match &role {
        Role::Answer { formats, .. } => (formats.video_pt, formats.audio_pt, false),
        Role::Offer { .. } => (Some(OFFER_VIDEO_PT), Some(OFFER_AUDIO_PT), true),
    };
    let ingest = match &role {
        Role::Answer { ingest, .. } => ingest.clone(),
        Role::Offer { .. } => None,
    };
    let build = if let Some(ingest) = ingest.clone() {
        let (ice, codec, tx) = (params.ice.clone(), params.codec, ev_tx.clone());
        tokio::task::spawn_blocking(move || {
            let cert = cert::certificate()?;
            build_receiver(ingest, codec, video_pt, audio_pt, ice, cert, tx)
        })
    } else {
        let (video, audio) = (params.video.clone(), params.audio.clone());
        let (clock, ice, codec) = (params.clock.clone(), params.ice.clone(), params.codec);
        let (tx, name) = (ev_tx.clone(), format!("viewer-{id}"));
        tokio::task::spawn_blocking(move || {
            let cert = cert::certificate()?;
            build(BuildArgs {
                name,
                codec,
                video: video.zip(video_pt),
                audio: audio.zip(audio_pt),
                clock,
                ice,
                cert,
                create_channel: offering,
                events: tx,
            })
        })
    };
    let built = match build.await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return fail(role, e),
        Err(e) => return fail(role, format!("viewer pipeline setup panicked: {e}")),
    };
    // A publisher whose pipeline relays: its viewers will be served from this pipeline (once
    // it plays, see `Event::Playing`).
    if let Some(ingest) = &ingest
        && let (Some(relay), Some(pipeline)) = (&ingest.relay, built.pipeline.0.as_ref())
    {
        relay.started(&ingest.plan.name, pipeline, &ingest.plan.webrtc);
    }
    let mut session = Session {
        id: id.clone(),
        ingest: ingest.clone(),
        built,
        stats,
        chat: params.chat.clone(),
        channel: None,
        chat_tokens: CHAT_BURST,
        chat_refill: Instant::now(),
        heard: Arc::new(Heard::default()),
        listening: false,
        peer_timeout: params.peer_timeout,
        clock: params.clock.as_ref().map(|(clock, _)| clock.clone()),
        pending: params.pending,
    };
    session.channel = session.built.channel.clone();
    if let Some(channel) = session.channel.clone() {
        session.watch_channel(&channel, &ev_tx);
    }

    let deadline = Instant::now() + params.connect_timeout;
    let outcome = session
        .negotiate_and_serve(role, &mut events, &mut commands, &ev_tx, &cancel, deadline)
        .await;
    match &outcome {
        Ok(reason) => tracing::info!("session {id}: ended ({reason})"),
        Err(e) => tracing::warn!("session {id}: ended: {e}"),
    }
    if let Some(ingest) = ingest {
        if let Some(relay) = &ingest.relay {
            relay.ended(&ingest.plan.name);
        }
        session.drain(&ingest, &mut events).await;
    }
    session.teardown().await;
}

/// Reports a session that could not even be built.
fn fail(role: Role, error: String) {
    tracing::warn!("viewer session failed to start: {error}");
    match role {
        Role::Answer { reply, signal, .. } => {
            let _ = reply.send(Err(error));
            if let Some(signal) = signal {
                let _ = signal.try_send(Signal::Ended);
            }
        }
        Role::Offer { signal } => {
            let _ = signal.try_send(Signal::Ended);
        }
    }
}

struct Session {
    id: ViewerId,
    /// A publisher's session: media comes in (into this ingest), nothing is sent.
    ingest: Option<Ingest>,
    built: Built,
    stats: watch::Sender<ViewerStats>,
    chat: ChatSender,
    channel: Option<WebRTCDataChannel>,
    chat_tokens: u32,
    chat_refill: Instant,
    /// When a packet last arrived from the peer.
    heard: Arc<Heard>,
    /// Whether the probe that updates `heard` is in place.
    listening: bool,
    peer_timeout: Duration,
    /// Held until the peer connects (see [`Params::pending`]).
    pending: Option<crate::limits::Pass>,
    /// The clock this viewer's pipeline runs on (the main pipeline's when the session
    /// started); a restarted pipeline is followed only on the same one.
    clock: Option<gst::Clock>,
}

/// The time of the peer's latest packet, written by a pad probe on a GStreamer thread.
struct Heard {
    epoch: std::time::Instant,
    /// Milliseconds since `epoch`.
    at: std::sync::atomic::AtomicU64,
}

impl Default for Heard {
    fn default() -> Self {
        Heard {
            epoch: std::time::Instant::now(),
            at: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Heard {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn mark(&self) {
        self.at
            .fetch_max(self.now(), std::sync::atomic::Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let at = self.at.load(std::sync::atomic::Ordering::Relaxed);
        Duration::from_millis(self.now().saturating_sub(at))
    }
}

/// Where negotiation stands.
enum Phase {
    /// Answer role: waiting for media, then setting the remote offer.
    AwaitMedia,
    AwaitRemoteSet,
    AwaitAnswer,
    AwaitGathering(Instant),
    /// Offer role: waiting for webrtcbin to want negotiation and for media to flow.
    AwaitOfferPrereqs {
        negotiation: bool,
        media: bool,
    },
    AwaitOffer,
    /// Negotiated (or offer sent): serving until the peer goes away.
    Serving,
}

impl Session {
    fn webrtc(&self) -> &gst::Element {
        &self.built.webrtc
    }

    async fn negotiate_and_serve(
        &mut self,
        role: Role,
        events: &mut mpsc::Receiver<Event>,
        commands: &mut mpsc::Receiver<Command>,
        ev_tx: &mpsc::Sender<Event>,
        cancel: &tokio::sync::Notify,
        connect_deadline: Instant,
    ) -> Result<&'static str, String> {
        // `trickle`: where our offer and candidates go (offer role only); `signal`: who hears
        // that the session ended.
        let (mut reply, signal, trickle, offer) = match role {
            Role::Answer {
                reply,
                offer,
                signal,
                ..
            } => (Some(reply), signal, None, Some(offer)),
            Role::Offer { signal } => (None, Some(signal.clone()), Some(signal), None),
        };
        let result = self
            .drive(
                &mut reply,
                trickle.as_ref(),
                offer.as_deref(),
                events,
                commands,
                ev_tx,
                cancel,
                connect_deadline,
            )
            .await;
        if let Some(reply) = reply.take() {
            let _ = reply.send(Err(match &result {
                Err(e) => e.clone(),
                Ok(r) => r.to_string(),
            }));
        }
        if let Some(signal) = signal {
            let _ = signal.try_send(Signal::Ended);
        }
        result
    }

    /// The negotiation and serving loop; any error ends the session.
    #[allow(clippy::too_many_arguments)]
    /// A relaying publisher's pipeline plays: its viewers are served from it from now on.
    fn relay_playing(&self) {
        if let (Some(ingest), Some(pipeline)) = (&self.ingest, self.built.pipeline.0.as_ref())
            && let Some(relay) = &ingest.relay
        {
            relay.playing(&ingest.plan.name, pipeline);
        }
    }

    async fn drive(
        &mut self,
        reply: &mut Option<oneshot::Sender<Result<String, String>>>,
        signal: Option<&mpsc::Sender<Signal>>,
        offer: Option<&str>,
        events: &mut mpsc::Receiver<Event>,
        commands: &mut mpsc::Receiver<Command>,
        ev_tx: &mpsc::Sender<Event>,
        cancel: &tokio::sync::Notify,
        connect_deadline: Instant,
    ) -> Result<&'static str, String> {
        let mut phase = if self.ingest.is_some() {
            // Nothing of ours has to flow first: take the publisher's offer at once.
            let Some(offer) = offer else {
                return Err("no offer".into());
            };
            self.set_remote(WebRTCSDPType::Offer, offer, ev_tx)?;
            Phase::AwaitRemoteSet
        } else if reply.is_some() {
            Phase::AwaitMedia
        } else {
            Phase::AwaitOfferPrereqs {
                negotiation: false,
                media: false,
            }
        };
        let media_deadline = Instant::now() + Duration::from_secs(10);
        let mut stats_tick = tokio::time::interval(Duration::from_secs(2));
        let mut connected = false;
        let mut disconnected_since: Option<Instant> = None;
        loop {
            let timeout_at = match phase {
                Phase::AwaitMedia | Phase::AwaitOfferPrereqs { .. } => media_deadline,
                Phase::AwaitGathering(until) => until,
                _ if !connected => connect_deadline,
                _ => disconnected_since.map_or(far_future(), |t| t + Duration::from_secs(10)),
            };
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { return Err("event channel closed".into()) };
                    match ev {
                        Event::Error(e) => return Err(e),
                        Event::MediaFlowing => match &mut phase {
                            Phase::AwaitMedia => {
                                let Some(offer) = offer else { return Err("no offer".into()) };
                                self.set_remote(WebRTCSDPType::Offer, offer, ev_tx)?;
                                phase = Phase::AwaitRemoteSet;
                            }
                            Phase::AwaitOfferPrereqs { media, negotiation } => {
                                *media = true;
                                if *negotiation {
                                    self.create(false, ev_tx);
                                    phase = Phase::AwaitOffer;
                                }
                            }
                            _ => {}
                        },
                        Event::NegotiationNeeded => {
                            if let Phase::AwaitOfferPrereqs { negotiation, media } = &mut phase {
                                *negotiation = true;
                                if *media {
                                    self.create(false, ev_tx);
                                    phase = Phase::AwaitOffer;
                                }
                            }
                        }
                        Event::RemoteSet(r) => {
                            r?;
                            if matches!(phase, Phase::AwaitRemoteSet) {
                                self.create(true, ev_tx);
                                phase = Phase::AwaitAnswer;
                            }
                        }
                        Event::Created(desc) => {
                            let desc = desc?;
                            self.webrtc().emit_by_name::<()>(
                                "set-local-description",
                                &[&desc, &None::<gst::Promise>],
                            );
                            match phase {
                                Phase::AwaitAnswer => {
                                    phase = Phase::AwaitGathering(Instant::now() + Duration::from_secs(5));
                                    if self.gathering_complete() {
                                        phase = self.send_answer(reply)?;
                                    }
                                }
                                Phase::AwaitOffer => {
                                    let sdp = sdp_text(&desc)?;
                                    if let Some(signal) = signal {
                                        send_signal(signal, Signal::Offer(sdp))?;
                                    }
                                    phase = Phase::Serving;
                                }
                                _ => {}
                            }
                        }
                        Event::GatheringComplete => {
                            if matches!(phase, Phase::AwaitGathering(_)) {
                                phase = self.send_answer(reply)?;
                            }
                        }
                        Event::IceCandidate(mline, candidate) => {
                            if let Some(signal) = signal {
                                send_signal(signal, Signal::Ice { mline, candidate })?;
                            }
                        }
                        Event::State(state) => match state {
                            WebRTCPeerConnectionState::Connected => {
                                connected = true;
                                self.pending.take();
                                self.heard.mark();
                                self.listen_to_peer();
                                disconnected_since = None;
                                self.stats.send_modify(|s| s.connected = true);
                                tracing::info!("viewer {}: connected", self.id);
                            }
                            WebRTCPeerConnectionState::Disconnected => {
                                disconnected_since.get_or_insert_with(Instant::now);
                            }
                            WebRTCPeerConnectionState::Failed => return Err("connection failed (ICE or DTLS)".into()),
                            WebRTCPeerConnectionState::Closed => return Ok("peer closed the connection"),
                            _ => {}
                        },
                        Event::DataChannel(channel) => {
                            self.watch_channel(&channel, ev_tx);
                            self.channel = Some(channel);
                        }
                        Event::ChatIn(text) => self.relay_chat(text),
                        Event::PeerGone(why) => return Ok(why),
                        Event::Eos => return Ok("the stream ended"),
                        Event::SinkEos => {}
                        Event::Playing => self.relay_playing(),
                        Event::Stats(s) => self.update_stats(&s),
                    }
                }
                _ = cancel.notified() => return Ok("ended by request"),
                cmd = commands.recv() => match cmd {
                    None => return Ok("ended by request"),
                    Some(Command::RemoteAnswer(sdp)) => {
                        self.set_remote(WebRTCSDPType::Answer, &sdp, ev_tx)?;
                    }
                    Some(Command::RemoteIce { mline, candidate }) => {
                        // glib strings cannot hold NUL; such a candidate is garbage anyway.
                        if candidate.contains('\0') {
                            tracing::debug!("viewer {}: ignoring a candidate with a NUL byte", self.id);
                        } else {
                            self.webrtc().emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
                        }
                    }
                    Some(Command::Follow { video, audio, clock }) => self.follow(video, audio, clock)?,
                    Some(Command::Chat(text)) => {
                        if let Some(ch) = &self.channel
                            && ch.ready_state() == gst_webrtc::WebRTCDataChannelState::Open
                                && let Err(e) = ch.send_string_full(Some(&text)) {
                                    tracing::debug!("viewer {}: chat not sent: {e}", self.id);
                                }
                    }
                },
                _ = tokio::time::sleep_until(timeout_at) => match phase {
                    // Answer with the candidates gathered so far rather than not at all.
                    Phase::AwaitGathering(_) => phase = self.send_answer(reply)?,
                    Phase::AwaitMedia | Phase::AwaitOfferPrereqs { .. } => {
                        return Err("no media from the pipeline within 10 s".into())
                    }
                    _ if !connected => return Err("the peer did not connect in time (ICE/DTLS)".into()),
                    _ => return Err("the peer stayed disconnected for 10 s".into()),
                },
                _ = stats_tick.tick() => {
                    self.request_stats(ev_tx);
                    if connected {
                        self.listen_to_peer();
                        let silent = self.heard.silent_for();
                        if self.listening && silent >= self.peer_timeout {
                            return Err(format!(
                                "nothing arrived from the peer for {} s: it is gone",
                                silent.as_secs()
                            ));
                        }
                    }
                }
            }
        }
    }

    fn gathering_complete(&self) -> bool {
        self.webrtc()
            .property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            == gst_webrtc::WebRTCICEGatheringState::Complete
    }

    /// Replies with the local description (candidates included) and starts serving.
    fn send_answer(
        &self,
        reply: &mut Option<oneshot::Sender<Result<String, String>>>,
    ) -> Result<Phase, String> {
        let desc = self
            .webrtc()
            .property::<Option<WebRTCSessionDescription>>("local-description")
            .ok_or("no local description after create-answer")?;
        let sdp = sdp_text(&desc)?;
        if let Some(reply) = reply.take() {
            reply
                .send(Ok(sdp))
                .map_err(|_| "the requester went away before the answer".to_string())?;
        }
        Ok(Phase::Serving)
    }

    fn set_remote(
        &self,
        kind: WebRTCSDPType,
        sdp: &str,
        ev_tx: &mpsc::Sender<Event>,
    ) -> Result<(), String> {
        let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
            .map_err(|_| format!("{OFFER_REFUSED}: the remote description is not a valid SDP"))?;
        let desc = WebRTCSessionDescription::new(kind, msg);
        let tx = ev_tx.clone();
        let promise = gst::Promise::with_change_func(move |reply| {
            let r = match reply {
                Ok(Some(s)) if s.has_field("error") => Err(format!(
                    "{OFFER_REFUSED}: webrtcbin rejected the remote description: {:?}",
                    s.get::<glib::Error>("error").map(|e| e.to_string())
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("setting the remote description failed: {e:?}")),
            };
            let _ = tx.try_send(Event::RemoteSet(r));
        });
        self.webrtc()
            .emit_by_name::<()>("set-remote-description", &[&desc, &promise]);
        Ok(())
    }

    /// create-answer (`answer`) or create-offer; the result comes back as `Event::Created`.
    fn create(&self, answer: bool, ev_tx: &mpsc::Sender<Event>) {
        let tx = ev_tx.clone();
        let field = if answer { "answer" } else { "offer" };
        let promise = gst::Promise::with_change_func(move |reply| {
            let r = match reply {
                Ok(Some(s)) => s.get::<WebRTCSessionDescription>(field).map_err(|_| {
                    match s.get::<glib::Error>("error") {
                        Ok(e) if answer => {
                            format!("{OFFER_REFUSED}: webrtcbin could not create an answer: {e}")
                        }
                        Ok(e) => format!("webrtcbin could not create an {field}: {e}"),
                        Err(_) => format!("webrtcbin gave no {field}"),
                    }
                }),
                Ok(None) => Err(format!("webrtcbin gave no {field}")),
                Err(e) => Err(format!("creating the {field} failed: {e:?}")),
            };
            let _ = tx.try_send(Event::Created(r));
        });
        let signal = if answer {
            "create-answer"
        } else {
            "create-offer"
        };
        self.webrtc()
            .emit_by_name::<()>(signal, &[&None::<gst::Structure>, &promise]);
    }

    fn watch_channel(&self, channel: &WebRTCDataChannel, ev_tx: &mpsc::Sender<Event>) {
        let tx = ev_tx.clone();
        channel.connect_on_message_string(move |_, text| {
            if let Some(text) = text {
                let _ = tx.try_send(Event::ChatIn(text.to_string()));
            }
        });
    }

    /// Relays a chat line from this viewer to the others, within length and rate limits.
    fn relay_chat(&mut self, text: String) {
        let refills = (self.chat_refill.elapsed().as_secs() / 10) as u32;
        if refills > 0 {
            self.chat_tokens = CHAT_BURST;
            self.chat_refill = Instant::now();
        }
        if self.chat_tokens == 0 {
            tracing::debug!("viewer {}: chat rate limit, line dropped", self.id);
            return;
        }
        self.chat_tokens -= 1;
        let text: String = text.trim().chars().take(CHAT_MAX_CHARS).collect();
        if text.is_empty() {
            return;
        }
        let _ = self.chat.try_send((self.id.clone(), text));
    }

    /// Switches to the streams of the restarted main pipeline. The peer sees a pause, then
    /// the new stream with timestamps that go on from where they were (see [`Continuity`]);
    /// the producer asks the new encoder for a keyframe.
    fn follow(
        &mut self,
        video: Option<StreamProducer>,
        audio: Option<StreamProducer>,
        clock: gst::Clock,
    ) -> Result<(), String> {
        // The viewer pipeline keeps its clock; one that belonged to the failed pipeline
        // (an audio device's) may have stopped with it.
        if self.clock.as_ref() != Some(&clock) {
            return Err("the restarted pipeline runs on another clock; reconnect".into());
        }
        self.built.continuity.rebase();
        for link in &mut self.built.links {
            let appsrc = link.appsrc().clone();
            let producer = if appsrc.name() == "video" {
                &video
            } else {
                &audio
            };
            let Some(producer) = producer else {
                return Err(format!(
                    "the restarted pipeline has no {} stream",
                    appsrc.name()
                ));
            };
            link.change_producer(producer, false)
                .map_err(|e| format!("cannot follow the restarted pipeline: {e}"))?;
        }
        tracing::info!("viewer {}: follows the restarted pipeline", self.id);
        Ok(())
    }

    /// Marks `heard` on every packet the peer's ICE transport delivers (DTLS, SRTP, SRTCP:
    /// every live peer sends receiver reports or media at least every few seconds). The
    /// transport exists once the descriptions are set, so this is tried until it is found.
    fn listen_to_peer(&mut self) {
        if self.listening {
            return;
        }
        let Some(bin) = self.webrtc().downcast_ref::<gst::Bin>() else {
            return;
        };
        for element in bin.iterate_recurse().into_iter().flatten() {
            let is_nicesrc = element.factory().is_some_and(|f| f.name() == "nicesrc");
            if let (true, Some(pad)) = (is_nicesrc, element.static_pad("src")) {
                let heard = self.heard.clone();
                pad.add_probe(
                    gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                    move |_, _| {
                        heard.mark();
                        gst::PadProbeReturn::Ok
                    },
                );
                self.listening = true;
            }
        }
    }

    fn request_stats(&self, ev_tx: &mpsc::Sender<Event>) {
        let tx = ev_tx.clone();
        let promise = gst::Promise::with_change_func(move |reply| {
            if let Ok(Some(s)) = reply {
                let _ = tx.try_send(Event::Stats(s.to_owned()));
            }
        });
        self.webrtc()
            .emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    }

    fn update_stats(&self, all: &gst::StructureRef) {
        let (mut bytes, mut packets, mut lost, mut rtt) = (0u64, 0u64, 0i64, None::<f64>);
        let mut received = 0u64;
        for (_, value) in all.iter() {
            let Ok(s) = value.get::<gst::Structure>() else {
                continue;
            };
            match s.name().as_str() {
                "outbound-rtp" => {
                    bytes += s.get::<u64>("bytes-sent").unwrap_or(0);
                    packets += s.get::<u64>("packets-sent").unwrap_or(0);
                }
                "inbound-rtp" => {
                    received += s.get::<u64>("bytes-received").unwrap_or(0);
                }
                "remote-inbound-rtp" => {
                    lost += s.get::<i64>("packets-lost").unwrap_or(0);
                    if let Ok(r) = s.get::<f64>("round-trip-time") {
                        rtt = Some(rtt.map_or(r, |x: f64| x.max(r)));
                    }
                }
                _ => {}
            }
        }
        let dropped = self.built.links.iter().map(|l| l.dropped()).sum();
        // Cumulative counters only grow: a partial (or error) reply never lowers them.
        self.stats.send_modify(|st| {
            st.bytes_sent = st.bytes_sent.max(bytes);
            st.packets_sent = st.packets_sent.max(packets);
            st.packets_lost = st.packets_lost.max(lost);
            st.round_trip_time_ms = rtt.map(|r| r * 1000.0).or(st.round_trip_time_ms);
            st.dropped_buffers = st.dropped_buffers.max(dropped);
            st.bytes_received = st.bytes_received.max(received);
            st.retransmitted = self
                .built
                .rtx
                .resent
                .load(std::sync::atomic::Ordering::Relaxed);
            st.retransmissions_refused = self
                .built
                .rtx
                .refused
                .load(std::sync::atomic::Ordering::Relaxed);
        });
    }

    /// Ends a publisher's stream so every output finalizes (segments get their index), waiting
    /// at most 5 s for end-of-stream to reach the sinks.
    async fn drain(&self, ingest: &Ingest, events: &mut mpsc::Receiver<Event>) {
        let Some(pipeline) = self.built.pipeline.0.clone() else {
            return;
        };
        let plan = ingest.plan.clone();
        let _ = tokio::task::spawn_blocking(move || plan.send_eos(&pipeline)).await;
        // The pipeline as a whole never posts EOS (webrtcbin's network sink gets none): wait
        // for each output to report its own end instead.
        let mut pending = ingest.plan.finalizing_outputs();
        let wait = async {
            while pending > 0 {
                match events.recv().await {
                    None | Some(Event::Eos) | Some(Event::Error(_)) => return,
                    Some(Event::SinkEos) => pending -= 1,
                    Some(_) => {}
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .is_err()
        {
            tracing::warn!(
                "session {}: end-of-stream did not drain within 5 s",
                self.id
            );
        }
        ingest.recordings.stopped(&ingest.plan.name);
    }

    /// Asks webrtcbin for its statistics one last time (bounded), so the totals of a session
    /// that ends between two periodic reads still count everything it sent.
    async fn final_stats(&self) {
        let (promise, reply) = gst::Promise::new_future();
        self.webrtc()
            .emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
        if let Ok(Ok(Some(stats))) = tokio::time::timeout(Duration::from_secs(2), reply).await {
            self.update_stats(&stats);
        }
    }

    /// Disconnects from the producers and sets the pipeline to NULL off the async threads.
    async fn teardown(self) {
        self.final_stats().await;
        let Built {
            mut pipeline,
            links,
            ..
        } = self.built;
        drop(links);
        if let Some(p) = pipeline.0.take() {
            if let Some(bus) = p.bus() {
                bus.unset_sync_handler();
            }
            crate::pipeline::teardown(p).await;
        }
    }
}

use gst_webrtc::WebRTCSDPType;

/// Owns a viewer pipeline: if it is dropped without [`Session::teardown`] (a failed build, a
/// panic), it still goes to NULL, so webrtcbin's threads and sockets are released.
struct PipelineGuard(Option<gst::Pipeline>);

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            stop_pipeline(&p);
        }
    }
}

/// Keeps a viewer's timestamps going forward when its streams switch to a restarted main
/// pipeline, whose running time starts again near zero: the first buffer after
/// [`Continuity::rebase`] sets an offset on every appsrc pad so that it lands where the old
/// stream would be by now (the last buffer sent plus the time since). RTP timestamps then
/// jump by the length of the pause, as a peer expects, and never go back; nothing waits,
/// the viewer pipeline's clock being [`VIEWER_CLOCK_MARGIN`] ahead.
struct Continuity {
    epoch: std::time::Instant,
    /// Running time of the latest buffer sent (ns, offset included), and when it was sent
    /// (ns since `epoch`).
    sent: Mutex<(i64, i64)>,
    rebase: std::sync::atomic::AtomicBool,
}

impl Continuity {
    fn watch<'a>(appsrcs: impl Iterator<Item = &'a gst_app::AppSrc>) -> Arc<Continuity> {
        let continuity = Arc::new(Continuity {
            epoch: std::time::Instant::now(),
            sent: Mutex::new((0, 0)),
            rebase: std::sync::atomic::AtomicBool::new(false),
        });
        let pads: Vec<gst::Pad> = appsrcs.filter_map(|a| a.static_pad("src")).collect();
        // Weak: the probes live on these pads.
        let all: Arc<Vec<glib::WeakRef<gst::Pad>>> =
            Arc::new(pads.iter().map(|p| p.downgrade()).collect());
        for pad in &pads {
            let (c, all) = (continuity.clone(), all.clone());
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(rt) = info.buffer().and_then(|b| running_time(pad, b)) {
                    c.sent(pad, rt, &all);
                }
                gst::PadProbeReturn::Ok
            });
        }
        continuity
    }

    fn sent(&self, pad: &gst::Pad, rt: i64, all: &[glib::WeakRef<gst::Pad>]) {
        let now = i64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(i64::MAX);
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let mut offset = pad.offset();
        if self.rebase.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let (last, at) = *sent;
            offset = last.saturating_add(now.saturating_sub(at).max(1_000_000)) - rt;
            // GStreamer resends the segment with the new offset before this buffer.
            for p in all.iter().filter_map(|w| w.upgrade()) {
                p.set_offset(offset);
            }
        }
        let out = rt.saturating_add(offset);
        if out >= sent.0 {
            *sent = (out, now);
        }
    }

    fn rebase(&self) {
        self.rebase.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A buffer's running time in its pad's segment (ns), without the pad offset.
fn running_time(pad: &gst::Pad, buffer: &gst::BufferRef) -> Option<i64> {
    let pts = buffer.pts()?;
    let event = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = event.segment().downcast_ref::<gst::ClockTime>()?;
    let rt = segment.to_running_time(pts)?;
    i64::try_from(rt.nseconds()).ok()
}

fn stop_pipeline(p: &gst::Pipeline) {
    if let Some(bus) = p.bus() {
        bus.unset_sync_handler();
    }
    let _ = p.set_state(gst::State::Null);
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// Never waits: a signalling connection that cannot keep up ends this session instead of
/// stalling it (and, through it, the other sessions on that connection).
fn send_signal(signal: &mpsc::Sender<Signal>, s: Signal) -> Result<(), String> {
    signal.try_send(s).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => {
            "the signalling connection is not keeping up".to_string()
        }
        mpsc::error::TrySendError::Closed(_) => "the signalling connection is gone".to_string(),
    })
}

/// The SDP text to send to a peer, with our certificate's fingerprint.
fn sdp_text(desc: &WebRTCSessionDescription) -> Result<String, String> {
    let text = desc
        .sdp()
        .as_text()
        .map_err(|e| format!("cannot serialize the SDP: {e}"))?;
    let cert = cert::certificate()?;
    Ok(cert::patch_fingerprint(&text, cert))
}

struct BuildArgs {
    name: String,
    codec: VideoCodec,
    video: Option<(StreamProducer, u32)>,
    audio: Option<(StreamProducer, u32)>,
    clock: Option<(gst::Clock, gst::ClockTime)>,
    ice: IceConfig,
    cert: &'static DtlsCertificate,
    create_channel: bool,
    events: mpsc::Sender<Event>,
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| crate::description::elements::explain_missing(factory))
}

/// Makes webrtcbin, adds it to `pipeline` and wires what every session needs: the ECDSA
/// certificate, the retransmission budget, ICE addresses and servers, and callbacks that only
/// report [`Event`]s.
fn setup_webrtcbin(
    pipeline: &gst::Pipeline,
    ice: &IceConfig,
    cert: &'static DtlsCertificate,
    events: &mpsc::Sender<Event>,
) -> Result<(gst::Element, Arc<super::rtx::RtxCounters>), String> {
    let webrtc = make("webrtcbin")?;
    webrtc.set_property_from_str("bundle-policy", "max-bundle");
    if let Some(stun) = &ice.stun_server {
        webrtc.set_property("stun-server", stun);
    }
    for turn in &ice.turn_servers {
        let _ = webrtc.emit_by_name::<bool>("add-turn-server", &[turn]);
    }
    pipeline.add(&webrtc).map_err(|e| e.to_string())?;

    // The ECDSA certificate goes into dtlssrtpdec while webrtcbin creates it (inside
    // create-offer/create-answer, element still in NULL): the only moment it takes effect.
    // The retransmitter appears as the send side is linked, also inside webrtcbin.
    let pem = cert.pem.clone();
    let rtx = Arc::new(super::rtx::RtxCounters::default());
    let counters = rtx.clone();
    if let Some(bin) = webrtc.downcast_ref::<gst::Bin>() {
        bin.connect_deep_element_added(move |_, _, element| {
            match element.factory().map(|f| f.name()).as_deref() {
                Some("dtlssrtpdec") => element.set_property("pem", &pem),
                Some("rtprtxsend") => super::rtx::guard(element, counters.clone()),
                _ => {}
            }
        });
    }
    let agent = webrtc.property::<glib::Object>("ice-agent");
    for address in &ice.addresses {
        let _ = agent.emit_by_name::<bool>("add-local-ip-address", &[address]);
    }
    // libnice looks for a UPnP router before it calls gathering done (200 ms by default): a
    // server has no use for one, and every WHEP answer waits for gathering to finish.
    if agent.find_property("agent").is_some() {
        let nice = agent.property::<glib::Object>("agent");
        if nice.find_property("upnp").is_some() {
            nice.set_property("upnp", false);
        }
    }

    let tx = events.clone();
    webrtc.connect("on-negotiation-needed", false, move |_| {
        let _ = tx.try_send(Event::NegotiationNeeded);
        None
    });
    let tx = events.clone();
    webrtc.connect("on-ice-candidate", false, move |values| {
        let mline = values.get(1).and_then(|v| v.get::<u32>().ok());
        let candidate = values.get(2).and_then(|v| v.get::<String>().ok());
        if let (Some(mline), Some(candidate)) = (mline, candidate) {
            let _ = tx.try_send(Event::IceCandidate(mline, candidate));
        }
        None
    });
    let tx = events.clone();
    webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
        let state = w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
        if state == gst_webrtc::WebRTCICEGatheringState::Complete {
            let _ = tx.try_send(Event::GatheringComplete);
        }
    });
    let tx = events.clone();
    webrtc.connect_notify(Some("connection-state"), move |w, _| {
        let state = w.property::<WebRTCPeerConnectionState>("connection-state");
        let _ = tx.try_send(Event::State(state));
    });
    let tx = events.clone();
    webrtc.connect("on-data-channel", false, move |values| {
        if let Some(ch) = values
            .get(1)
            .and_then(|v| v.get::<WebRTCDataChannel>().ok())
        {
            let _ = tx.try_send(Event::DataChannel(ch));
        }
        None
    });
    // webrtcbin 1.22 does not notice a peer that closes (no ICE consent checks), but its
    // rtpbin hears an RTCP BYE. (rtpbin's own source timeout is not used: a browser whose
    // stream pauses while the pipeline restarts stops reporting for a while; silence of
    // every kind is what ends a session, see `Heard`.)
    if let Some(rtpbin) = webrtc
        .downcast_ref::<gst::Bin>()
        .and_then(|b| b.by_name("rtpbin"))
    {
        let tx = events.clone();
        rtpbin.connect("on-bye-ssrc", false, move |_| {
            let _ = tx.try_send(Event::PeerGone("the peer said goodbye (RTCP BYE)"));
            None
        });
    }
    if let Some(bus) = pipeline.bus() {
        let tx = events.clone();
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Error(e) if crate::hooks::from_hook_branch(msg) => {
                    // The hooks' decoder or branch: their problem, not the recording's.
                    tracing::warn!("publisher pipeline, hook branch: {}", e.error());
                }
                gst::MessageView::Error(e) => {
                    let _ = tx.try_send(Event::Error(format!(
                        "session pipeline error: {}",
                        e.error()
                    )));
                }
                gst::MessageView::Eos(_) => {
                    let _ = tx.try_send(Event::Eos);
                }
                // The publisher pipeline itself (the only pipeline on its bus) plays.
                gst::MessageView::StateChanged(sc)
                    if sc.current() == gst::State::Playing
                        && msg.src().is_some_and(|s| s.is::<gst::Pipeline>()) =>
                {
                    let _ = tx.try_send(Event::Playing);
                }
                gst::MessageView::Element(e)
                    if e.structure()
                        .is_some_and(|s| s.name() == crate::record::writer::FINISHED_MESSAGE) =>
                {
                    // A publisher's record output finished its last segment.
                    let _ = tx.try_send(Event::SinkEos);
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    }

    Ok((webrtc, rtx))
}

/// Builds and starts a publisher's pipeline: the ingest plan's outputs, fed by webrtcbin
/// through a depayloader per stream as the publisher's pads appear (blocking).
fn build_receiver(
    ingest: Ingest,
    codec: VideoCodec,
    video_pt: Option<u32>,
    audio_pt: Option<u32>,
    ice: IceConfig,
    cert: &'static DtlsCertificate,
    events: mpsc::Sender<Event>,
) -> Result<Built, String> {
    let guard = PipelineGuard(Some(ingest.plan.build(&ingest.recordings)?));
    let pipeline = guard.0.clone().ok_or("no pipeline")?;
    let hooks = if ingest.plan.hooks.is_empty() {
        None
    } else {
        Some(crate::hooks::RunningHooks::start(
            &ingest.plan.name,
            &pipeline,
            &ingest.plan.hooks,
            &ingest.hooks,
        )?)
    };
    for name in ingest.plan.file_sink_names() {
        let tx = events.clone();
        if let Some(pad) = pipeline.by_name(name).and_then(|e| e.static_pad("sink")) {
            pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(ev)) = &info.data
                    && ev.type_() == gst::EventType::Eos
                {
                    let _ = tx.try_send(Event::SinkEos);
                }
                gst::PadProbeReturn::Ok
            });
        }
    }
    let (webrtc, rtx) = setup_webrtcbin(&pipeline, &ice, cert, &events)?;
    let (enc, depay) = match codec {
        VideoCodec::H264 => ("H264", "rtph264depay"),
        VideoCodec::Vp8 => ("VP8", "rtpvp8depay"),
        VideoCodec::Vp9 => ("VP9", "rtpvp9depay"),
        VideoCodec::Av1 => return Err("AV1 cannot be received here".into()),
    };
    let wanted = [
        video_pt.map(|pt| ("video", enc, 90000i32, pt)),
        audio_pt.map(|pt| ("audio", "OPUS", 48000i32, pt)),
    ];
    for (media, enc, rate, pt) in wanted.into_iter().flatten() {
        let caps = gst::Caps::builder("application/x-rtp")
            .field("media", media)
            .field("encoding-name", enc)
            .field("payload", pt as i32)
            .field("clock-rate", rate)
            .build();
        let transceiver = webrtc.emit_by_name_with_values(
            "add-transceiver",
            &[
                gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly.to_value(),
                caps.to_value(),
            ],
        );
        if let Some(t) = transceiver.and_then(|v| v.get::<glib::Object>().ok())
            && t.find_property("do-nack").is_some()
        {
            t.set_property("do-nack", true);
        }
    }
    // Each incoming stream: depayload into its branch head (video_in / audio_in). Linking in
    // pad-added is how GStreamer wires dynamic pads; nothing here waits on anything else.
    let weak = pipeline.downgrade();
    webrtc.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let media = caps
            .structure(0)
            .and_then(|s| s.get::<String>("media").ok())
            .unwrap_or_default();
        let (head, depay) = match media.as_str() {
            "video" => ("video_in", depay),
            "audio" => ("audio_in", "rtpopusdepay"),
            _ => ("", ""),
        };
        let target = pipeline.by_name(head).and_then(|e| e.static_pad("sink"));
        let linked = target.filter(|t| !t.is_linked()).and_then(|target| {
            let d = gst::ElementFactory::make(depay).build().ok()?;
            pipeline.add(&d).ok()?;
            d.sync_state_with_parent().ok()?;
            pad.link(&d.static_pad("sink")?).ok()?;
            d.static_pad("src")?.link(&target).ok()?;
            Some(())
        });
        if linked.is_none() {
            // A stream nobody records (or a second one of a kind): drain it.
            if let Ok(sink) = gst::ElementFactory::make("fakesink")
                .property("async", false)
                .build()
                && pipeline.add(&sink).is_ok()
                && sink.sync_state_with_parent().is_ok()
                && let Some(sinkpad) = sink.static_pad("sink")
            {
                let _ = pad.link(&sinkpad);
            }
        }
    });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "the publisher pipeline did not start".to_string())?;
    // The offer has no audio but the outputs expect it: end that branch so muxers go on.
    if audio_pt.is_none()
        && let Some(pad) = pipeline
            .by_name("audio_in")
            .and_then(|e| e.static_pad("sink"))
    {
        pad.send_event(gst::event::Eos::new());
    }
    Ok(Built {
        pipeline: guard,
        _hooks: hooks,
        webrtc,
        rtx,
        links: Vec::new(),
        continuity: Continuity::watch(std::iter::empty()),
        channel: None,
    })
}

/// How far a viewer pipeline's running time is ahead of its main pipeline's.
const VIEWER_CLOCK_MARGIN: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// Builds and starts a viewer pipeline (blocking: runs on the blocking pool).
fn build(a: BuildArgs) -> Result<Built, String> {
    let guard = PipelineGuard(Some(gst::Pipeline::with_name(&a.name)));
    let pipeline = guard.0.clone().ok_or("no pipeline")?;
    // Counted until GStreamer actually frees it: a session that ended but left its pipeline
    // alive would show here (and in /metrics).
    LIVE_PIPELINES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    pipeline.add_weak_ref_notify(|| {
        LIVE_PIPELINES.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    });
    let (webrtc, rtx) = setup_webrtcbin(&pipeline, &a.ice, a.cert, &a.events)?;

    let mut links = Vec::new();
    let branches = [
        a.video.map(|(p, pt)| (p, pt, true)),
        a.audio.map(|(p, pt)| (p, pt, false)),
    ];
    // An offer or answer carries the right codec parameters only once the stream's caps are
    // known. H.264's come from the stream itself (sprop, profile-level-id), so with H.264 video
    // the video branch must have payloaded a buffer (audio often flows first, while video
    // waits for a keyframe); otherwise any branch will do.
    let h264_video = branches[0].is_some() && a.codec == VideoCodec::H264;
    let flowing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (producer, pt, is_video) in branches.into_iter().flatten() {
        let appsrc = gst_app::AppSrc::builder()
            .name(if is_video { "video" } else { "audio" })
            .format(gst::Format::Time)
            .is_live(true)
            .build();
        let (payloader, caps) = if is_video {
            let (pay, enc) = match a.codec {
                VideoCodec::H264 => ("rtph264pay", "H264"),
                VideoCodec::Vp8 => ("rtpvp8pay", "VP8"),
                VideoCodec::Vp9 => ("rtpvp9pay", "VP9"),
                VideoCodec::Av1 => return Err("AV1 cannot be sent over WebRTC here".into()),
            };
            let p = make(pay)?;
            if a.codec == VideoCodec::H264 {
                // SPS/PPS with every keyframe; one NAL per packet as soon as it is ready.
                p.set_property("config-interval", -1i32);
                p.set_property_from_str("aggregate-mode", "zero-latency");
            }
            let caps = gst::Caps::builder("application/x-rtp")
                .field("media", "video")
                .field("encoding-name", enc)
                .field("payload", pt as i32)
                .field("clock-rate", 90000i32)
                .build();
            (p, caps)
        } else {
            let caps = gst::Caps::builder("application/x-rtp")
                .field("media", "audio")
                .field("encoding-name", "OPUS")
                .field("payload", pt as i32)
                .field("clock-rate", 48000i32)
                .build();
            (make("rtpopuspay")?, caps)
        };
        payloader.set_property("pt", pt);
        let filter = gst::ElementFactory::make("capsfilter")
            .property("caps", &caps)
            .build()
            .map_err(|e| e.to_string())?;
        pipeline
            .add_many([appsrc.upcast_ref(), &payloader, &filter])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([appsrc.upcast_ref(), &payloader, &filter])
            .map_err(|e| format!("cannot link the viewer's payloader: {e}"))?;
        let sink = webrtc
            .request_pad_simple("sink_%u")
            .ok_or("webrtcbin gave no sink pad")?;
        // RTCP feedback: retransmit on NACK (PLI already reaches the encoder as a key-unit
        // request through the payloader and the stream producer).
        if let Some(t) = sink.property::<Option<glib::Object>>("transceiver")
            && t.find_property("do-nack").is_some()
        {
            t.set_property("do-nack", true);
        }
        filter
            .static_pad("src")
            .ok_or("capsfilter has no src pad")?
            .link(&sink)
            .map_err(|e| format!("cannot link into webrtcbin: {e:?}"))?;
        let (tx, flowing) = (a.events.clone(), flowing.clone());
        let counts = is_video || !h264_video;
        if let (Some(src), true) = (payloader.static_pad("src"), counts) {
            src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                if !flowing.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    let _ = tx.try_send(Event::MediaFlowing);
                }
                gst::PadProbeReturn::Remove
            });
        }
        links.push(
            producer
                .add_consumer(&appsrc)
                .map_err(|e| format!("cannot attach the viewer: {e}"))?,
        );
    }
    if links.is_empty() {
        return Err("the offer takes neither the video nor the audio this pipeline sends".into());
    }
    let continuity = Continuity::watch(links.iter().map(|l| l.appsrc()));

    if let Some((clock, base)) = &a.clock {
        // The main pipeline's clock, and its base time moved back by a margin: a live appsrc
        // waits until a buffer's running time comes, and buffers of a main pipeline that is
        // not live (a TCP or URI source buffered while it prerolled) can be ahead of its clock
        // by a second; waiting here would overflow the viewer's queue. With the margin every
        // buffer is already due and goes out the moment it is encoded.
        pipeline.use_clock(Some(clock));
        pipeline.set_start_time(gst::ClockTime::NONE);
        pipeline.set_base_time(base.saturating_sub(VIEWER_CLOCK_MARGIN));
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "the viewer pipeline did not start".to_string())?;
    // After PLAYING: webrtcbin refuses data channels while it is still closed (NULL).
    let channel = if a.create_channel {
        // Typed emit_by_name panics here on GStreamer 1.22 (glib rejects the declared return
        // type), so take the value untyped and convert it.
        let value = webrtc.emit_by_name_with_values(
            "create-data-channel",
            &["chat".to_value(), None::<gst::Structure>.to_value()],
        );
        let channel = value.and_then(|v| {
            v.get::<glib::Object>()
                .ok()
                .and_then(|o| o.downcast::<WebRTCDataChannel>().ok())
        });
        if channel.is_none() {
            tracing::warn!("webrtcbin made no data channel: chat is off for this viewer");
        }
        channel
    } else {
        None
    };

    Ok(Built {
        pipeline: guard,
        _hooks: None,
        webrtc,
        rtx,
        links,
        continuity,
        channel,
    })
}
