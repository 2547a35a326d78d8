//! One peer session (a viewer or a publisher): its own pipeline, owned by one task.
//!
//! Viewers' pipelines are built by [`super::viewer`] (the output's encoded streams through
//! leaky `StreamProducer` consumers, so a slow viewer drops its own data), publishers' by
//! [`super::publisher`]. GStreamer callbacks (webrtcbin signals, promises, pad probes, the bus)
//! only push an [`Event`] into the task's channel; the task feeds them to the sans-I/O
//! [`Negotiation`] and carries out the [`Action`]s it returns.
//!
//! How a session negotiates follows its [`Role`]:
//! - [`Role::Answer`] (WHEP, `POST /offer`) and [`Role::Publish`] (WHIP, `/publish`): the peer
//!   offers; we answer once ICE gathering is complete, so no trickle is needed;
//! - [`Role::Offer`] (the signalling protocol): we offer and trickle candidates through
//!   [`Signal`]s; the answer and remote candidates arrive as [`Command`]s. A `whip` output
//!   offers the same way, once, with every candidate gathered.

mod build;
mod stats;

use super::negotiation::{Action, Input, Negotiation, Start};
use super::peer::{self, Built, EVENT_QUEUE, Event};
use super::types::{
    Answering, ChatSender, Command, Handle, Ingest, Params, Role, Signal, ViewerId, ViewerStats,
};
use crate::description::VideoCodec;
use gst::prelude::*;
use gst_utils::streamproducer::StreamProducer;
use gst_webrtc::{
    WebRTCDataChannel, WebRTCPeerConnectionState, WebRTCSDPType, WebRTCSessionDescription,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Default payload types when we offer.
const OFFER_VIDEO_PT: u32 = 96;
const OFFER_AUDIO_PT: u32 = 111;
/// The TWCC header extension's id when we offer to an adaptive viewer.
const OFFER_TWCC_ID: u8 = 3;

/// Starts a session task; `on_end` runs when it is over and every resource is freed.
pub fn spawn(
    tasks: &tokio_util::task::TaskTracker,
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
        rung: params.ladder.as_ref().map(|l| l.rung(0).label()),
        estimate_kbps: None,
        switches: 0,
    };
    let (stats_tx, stats_rx) = watch::channel(stats);
    let id = params.id.clone();
    let cancel = Arc::new(tokio::sync::Notify::new());
    let task_cancel = cancel.clone();
    tasks.spawn(async move {
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

/// What the session is, for its log lines.
fn kind(role: &Role) -> &'static str {
    match role {
        Role::Publish(..) | Role::Pull(..) => "publisher",
        _ => "viewer",
    }
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
    let role = build::with_layers(role);
    let built = match build::build(&params, &role, &ev_tx).await {
        Ok(b) => b,
        Err(e) => return fail(role, e),
    };
    let ingest = match &role {
        Role::Publish(_, ingest) | Role::Pull(ingest, _) => Some(ingest.clone()),
        _ => None,
    };
    if let (Some(ingest), Some(pipeline)) = (&ingest, built.pipeline.0.as_ref()) {
        *ingest.built.lock().unwrap_or_else(|p| p.into_inner()) = Some(pipeline.downgrade());
        // A publisher whose pipeline relays: its viewers will be served from this pipeline
        // (once it plays, see `Event::Playing`).
        if let Some(relay) = &ingest.relay {
            relay.started(&ingest.plan.name, pipeline, &ingest.plan);
        }
    }
    let built_prober = built.prober.clone();
    let mut session = Session {
        id: id.clone(),
        kind: kind(&role),
        ingest: ingest.clone(),
        built,
        stats,
        chat: params.chat.clone(),
        channel: None,
        chat_limit: super::chat::ChatLimit::new(std::time::Instant::now()),
        heard: Arc::new(Heard::default()),
        listening: false,
        peer_timeout: params.peer_timeout,
        clock: params.clock.as_ref().map(|(clock, _)| clock.clone()),
        pending: params.pending,
        codec: params.codec,
        created: None,
        climber: params
            .ladder
            .as_ref()
            .filter(|_| params.video.is_some())
            .map(|l| {
                let start = params.video.as_ref().and_then(|v| l.rung_of(v));
                super::ladder::Climber::new(l, id.short(), built_prober.clone(), start.unwrap_or(0))
            }),
        simulcast: match &role {
            Role::Publish(a, _) => a.formats.simulcast.clone(),
            _ => None,
        },
    };
    session.channel = session.built.channel.clone();
    if let Some(channel) = session.channel.clone() {
        session.watch_channel(&channel, &ev_tx);
    }

    let io = Io {
        events: &mut events,
        commands: &mut commands,
        ev_tx: &ev_tx,
        cancel: &cancel,
    };
    let outcome = session.serve(role, params.connect_timeout, io).await;
    match &outcome {
        Ok(reason) => tracing::info!("session {id}: ended ({reason})"),
        Err(e) => tracing::warn!("session {id}: ended: {e}"),
    }
    if let Some(ingest) = ingest {
        // Its stream ends through every output first, so recordings are complete.
        let pipeline = session.built.pipeline.0.clone();
        super::publisher::drain(pipeline, &ingest).await;
        if let Some(relay) = &ingest.relay {
            relay.ended(&ingest.plan.name).await;
        }
        ingest.recordings.stopped(&ingest.plan.name);
    }
    session.teardown().await;
}

/// Reports a session that could not even be built.
fn fail(role: Role, error: String) {
    tracing::warn!("{} session failed to start: {error}", kind(&role));
    let (reply, signal) = match role {
        Role::Answer(a) | Role::Publish(a, _) => (Some(a.reply), a.signal),
        Role::Offer { signal, .. } | Role::Pull(_, signal) => (None, Some(signal)),
    };
    if let Some(reply) = reply {
        let _ = reply.send(Err(error.clone()));
    }
    if let Some(signal) = signal {
        let _ = signal.try_send(Signal::Ended(Some(error)));
    }
}

/// The session task's channels.
struct Io<'a> {
    events: &'a mut mpsc::Receiver<Event>,
    commands: &'a mut mpsc::Receiver<Command>,
    ev_tx: &'a mpsc::Sender<Event>,
    cancel: &'a tokio::sync::Notify,
}

/// Who hears what the negotiation produces: the requester of an answer, and (signalling) the
/// peer's connection.
struct Peer {
    /// The peer's description (its offer, or its answer to ours) until it is set.
    remote: Option<String>,
    reply: Option<oneshot::Sender<Result<String, String>>>,
    signal: Option<mpsc::Sender<Signal>>,
}

impl Peer {
    fn answering(a: Answering) -> Peer {
        Peer {
            remote: Some(a.offer),
            reply: Some(a.reply),
            signal: a.signal,
        }
    }
}

struct Session {
    id: ViewerId,
    /// "viewer" or "publisher", for the log.
    kind: &'static str,
    /// A publisher's session: media comes in (into this ingest), nothing is sent.
    ingest: Option<Ingest>,
    built: Built,
    stats: watch::Sender<ViewerStats>,
    chat: ChatSender,
    channel: Option<WebRTCDataChannel>,
    chat_limit: super::chat::ChatLimit,
    /// When a packet last arrived from the peer.
    heard: Arc<Heard>,
    /// Whether the probe that updates `heard` is in place.
    listening: bool,
    peer_timeout: Duration,
    /// Held until the peer connects (see [`Params::pending`]).
    pending: Option<crate::limits::Pass>,
    /// The stream's video codec (what a viewer's answer must accept).
    codec: VideoCodec,
    /// The clock this viewer's pipeline runs on (the main pipeline's when the session
    /// started); a restarted pipeline is followed only on the same one.
    clock: Option<gst::Clock>,
    /// What webrtcbin created last (our offer or answer): the local description.
    created: Option<WebRTCSessionDescription>,
    /// A viewer of a ladder: its rung, moved by its bandwidth estimate.
    climber: Option<super::ladder::Climber>,
    /// A simulcast publisher's layers: our answer accepts them.
    simulcast: Option<super::simulcast::Offered>,
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

impl Session {
    fn webrtc(&self) -> &gst::Element {
        &self.built.webrtc
    }

    /// Negotiates and serves until the session ends; the requester of an answer that never
    /// came, and the signalling peer, hear why.
    async fn serve(
        &mut self,
        role: Role,
        connect_timeout: Duration,
        io: Io<'_>,
    ) -> Result<&'static str, String> {
        let (start, mut peer) = match role {
            Role::Answer(a) => (Start::Viewer, Peer::answering(a)),
            Role::Publish(a, _) => (Start::Publisher, Peer::answering(a)),
            Role::Pull(_, signal) => (
                Start::WhepClient,
                Peer {
                    remote: None,
                    reply: None,
                    signal: Some(signal),
                },
            ),
            Role::Offer { signal, gathered } => (
                if gathered {
                    Start::WhipClient
                } else {
                    Start::Offerer
                },
                Peer {
                    remote: None,
                    reply: None,
                    signal: Some(signal),
                },
            ),
        };
        let result = self.drive(start, connect_timeout, &mut peer, io).await;
        if let Some(reply) = peer.reply.take() {
            let _ = reply.send(Err(match &result {
                Err(e) => e.clone(),
                Ok(r) => r.to_string(),
            }));
        }
        if let Some(signal) = &peer.signal {
            let _ = signal.try_send(Signal::Ended(result.clone().err()));
        }
        result
    }

    /// A relaying publisher's pipeline plays: its viewers are served from it from now on.
    fn relay_playing(&self) {
        if let (Some(ingest), Some(pipeline)) = (&self.ingest, self.built.pipeline.0.as_ref())
            && let Some(relay) = &ingest.relay
        {
            relay.playing(&ingest.plan.name, pipeline);
        }
    }

    /// The loop: events, commands and time go to the negotiation (and the rest of the
    /// session's work); its actions are carried out here. Any error ends the session.
    async fn drive(
        &mut self,
        start: Start,
        connect_timeout: Duration,
        peer: &mut Peer,
        io: Io<'_>,
    ) -> Result<&'static str, String> {
        // Only when we offer do our candidates trickle to the peer.
        let trickle = start == Start::Offerer;
        let (mut negotiation, first) =
            Negotiation::new(start, std::time::Instant::now(), connect_timeout);
        if let Some(why) = self.act(first, peer, io.ev_tx)? {
            return Ok(why);
        }
        let mut stats_tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let deadline = negotiation
                .deadline()
                .map_or_else(far_future, Instant::from_std);
            let input = tokio::select! {
                ev = io.events.recv() => {
                    let Some(ev) = ev else { return Err("event channel closed".into()) };
                    let trickle_to = if trickle { peer.signal.as_ref() } else { None };
                    match self.on_event(ev, trickle_to, io.ev_tx)? {
                        Handled::Input(input) => Some(input),
                        Handled::Done => None,
                        Handled::End(why) => return Ok(why),
                    }
                }
                _ = io.cancel.notified() => return Ok("ended by request"),
                cmd = io.commands.recv() => match cmd {
                    None => return Ok("ended by request"),
                    Some(Command::RemoteAnswer(sdp)) => {
                        super::sdp::check_answer(&sdp, self.codec)?;
                        // A pulled stream without audio: the outputs expecting it go on.
                        if self.ingest.is_some()
                            && !super::sdp::answer_takes_audio(&sdp)
                            && let Some(pipeline) = self.built.pipeline.0.as_ref()
                        {
                            super::publisher::no_audio(pipeline);
                        }
                        peer.remote = Some(sdp);
                        Some(Input::RemoteAnswer)
                    }
                    Some(cmd) => {
                        self.on_command(cmd)?;
                        None
                    }
                },
                _ = tokio::time::sleep_until(deadline) => Some(Input::Timeout),
                _ = stats_tick.tick() => {
                    self.request_stats(io.ev_tx);
                    self.on_estimate(None)?;
                    if negotiation.is_connected() {
                        self.listen_to_peer();
                        let silent = self.heard.silent_for();
                        if self.listening && silent >= self.peer_timeout {
                            return Err(format!(
                                "nothing arrived from the peer for {} s: it is gone",
                                silent.as_secs()
                            ));
                        }
                    }
                    None
                }
            };
            if let Some(input) = input {
                let actions = negotiation.handle(input, std::time::Instant::now());
                if let Some(why) = self.act(actions, peer, io.ev_tx)? {
                    return Ok(why);
                }
            }
        }
    }

    /// Carries out the negotiation's actions: `Some(why)` when one ends the session without
    /// error, `Err` when one fails or ends it with an error.
    fn act(
        &mut self,
        actions: Vec<Action>,
        peer: &mut Peer,
        ev_tx: &mpsc::Sender<Event>,
    ) -> Result<Option<&'static str>, String> {
        for action in actions {
            match action {
                Action::SetRemoteOffer | Action::SetRemoteAnswer => {
                    let (kind, what) = match action {
                        Action::SetRemoteOffer => (WebRTCSDPType::Offer, "offer"),
                        _ => (WebRTCSDPType::Answer, "answer"),
                    };
                    let sdp = peer.remote.take().ok_or(format!("no {what} to set"))?;
                    peer::set_remote(self.webrtc(), kind, &sdp, ev_tx)?;
                }
                Action::CreateAnswer => peer::create(self.webrtc(), true, ev_tx),
                Action::CreateOffer => peer::create(self.webrtc(), false, ev_tx),
                Action::SetLocal => {
                    let desc = self.created.as_ref().ok_or("nothing was created")?;
                    self.webrtc().emit_by_name::<()>(
                        "set-local-description",
                        &[desc, &None::<gst::Promise>],
                    );
                }
                Action::SendAnswer => self.send_answer(&mut peer.reply)?,
                Action::SendOffer => {
                    // With every candidate gathered (no trickle): webrtcbin's local
                    // description has them; otherwise the offer as created.
                    let desc = match self.created.take() {
                        Some(desc) if !self.gathering_complete() => desc,
                        _ => self
                            .webrtc()
                            .property::<Option<WebRTCSessionDescription>>("local-description")
                            .ok_or("no local offer")?,
                    };
                    let sdp = peer::sdp_text(&desc)?;
                    if let Some(signal) = &peer.signal {
                        send_signal(signal, Signal::Offer(sdp))?;
                    }
                }
                Action::Connected => {
                    self.pending.take();
                    self.heard.mark();
                    self.listen_to_peer();
                    self.stats.send_modify(|s| s.connected = true);
                    tracing::info!("{} {}: connected", self.kind, self.id);
                    self.request_keyframe();
                }
                Action::End(end) => return end.map(Some),
            }
        }
        Ok(None)
    }

    /// Turns a GStreamer report into the negotiation's input, or handles it here.
    fn on_event(
        &mut self,
        ev: Event,
        trickle: Option<&mpsc::Sender<Signal>>,
        ev_tx: &mpsc::Sender<Event>,
    ) -> Result<Handled, String> {
        let input = match ev {
            Event::Error(e) => return Err(e),
            Event::PeerGone(why) => return Ok(Handled::End(why)),
            Event::Eos => return Ok(Handled::End("the stream ended")),
            Event::MediaFlowing => Input::MediaFlowing,
            Event::NegotiationNeeded => Input::NegotiationNeeded,
            Event::RemoteSet(r) => Input::RemoteSet(r),
            Event::Created(Ok(desc)) => {
                self.created = Some(match &self.simulcast {
                    Some(offered) => build::accept_simulcast(&desc, offered)?,
                    None => desc,
                });
                Input::Created {
                    result: Ok(()),
                    gathered: self.gathering_complete(),
                }
            }
            Event::Created(Err(e)) => Input::Created {
                result: Err(e),
                gathered: false,
            },
            Event::GatheringComplete => Input::GatheringComplete,
            Event::State(WebRTCPeerConnectionState::Connected) => Input::Connected,
            Event::State(WebRTCPeerConnectionState::Disconnected) => Input::Disconnected,
            Event::State(WebRTCPeerConnectionState::Failed) => Input::Failed,
            Event::State(WebRTCPeerConnectionState::Closed) => Input::Closed,
            Event::IceCandidate(mline, candidate) => {
                if let Some(signal) = trickle {
                    send_signal(signal, Signal::Ice { mline, candidate })?;
                }
                return Ok(Handled::Done);
            }
            Event::DataChannel(channel) => {
                self.watch_channel(&channel, ev_tx);
                self.channel = Some(channel);
                return Ok(Handled::Done);
            }
            Event::ChatIn(text) => {
                self.relay_chat(text);
                return Ok(Handled::Done);
            }
            Event::Playing => {
                self.relay_playing();
                return Ok(Handled::Done);
            }
            Event::Stats(s) => {
                self.update_stats(&s);
                return Ok(Handled::Done);
            }
            Event::Estimate(bps) => {
                self.on_estimate(Some(bps))?;
                return Ok(Handled::Done);
            }
            Event::State(_) => return Ok(Handled::Done),
        };
        Ok(Handled::Input(input))
    }

    /// Commands other than the peer's answer (which goes to the negotiation).
    fn on_command(&mut self, cmd: Command) -> Result<(), String> {
        match cmd {
            Command::RemoteIce { mline, candidate } => {
                // glib strings cannot hold NUL; such a candidate is garbage anyway.
                if candidate.contains('\0') {
                    tracing::debug!(
                        "{} {}: ignoring a candidate with a NUL byte",
                        self.kind,
                        self.id
                    );
                } else {
                    self.webrtc()
                        .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
                }
            }
            Command::Follow {
                video,
                audio,
                clock,
            } => self.follow(video, audio, clock)?,
            Command::Chat(text) => {
                if let Some(ch) = &self.channel
                    && ch.ready_state() == gst_webrtc::WebRTCDataChannelState::Open
                    && let Err(e) = ch.send_string_full(Some(&text))
                {
                    tracing::debug!("viewer {}: chat not sent: {e}", self.id);
                }
            }
            Command::RemoteAnswer(_) => {}
        }
        Ok(())
    }

    /// A viewer just connected: what was sent before (its first keyframe, likely) was lost
    /// to a transport that was not up yet, so ask the source for a keyframe now rather than
    /// wait for the peer's PLI (a peer may send none).
    fn request_keyframe(&self) {
        let payloader_sink = self
            .built
            .links
            .iter()
            .find(|l| l.appsrc().name() == "video")
            .and_then(|l| l.appsrc().static_pad("src"))
            .and_then(|src| src.peer());
        if let Some(pad) = payloader_sink {
            let _ = pad.push_event(crate::webrtc::keyframes::on_connect_request());
        }
    }

    fn gathering_complete(&self) -> bool {
        self.webrtc()
            .property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            == gst_webrtc::WebRTCICEGatheringState::Complete
    }

    /// Replies with the local description (candidates included).
    fn send_answer(
        &self,
        reply: &mut Option<oneshot::Sender<Result<String, String>>>,
    ) -> Result<(), String> {
        let desc = self
            .webrtc()
            .property::<Option<WebRTCSessionDescription>>("local-description")
            .ok_or("no local description after create-answer")?;
        let sdp = peer::sdp_text(&desc)?;
        if let Some(reply) = reply.take() {
            reply
                .send(Ok(sdp))
                .map_err(|_| "the requester went away before the answer".to_string())?;
        }
        Ok(())
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
        match self.chat_limit.admit(std::time::Instant::now(), &text) {
            Some(line) => {
                let _ = self.chat.try_send((self.id.clone(), line));
            }
            None => tracing::debug!(
                "viewer {}: blank or over the chat rate, line dropped",
                self.id
            ),
        }
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
        // A viewer of a ladder stays on its rung (whose producer the ladder has renewed).
        let video = match &self.climber {
            Some(c) => c.producer(),
            None => video,
        };
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

    /// Disconnects from the producers and sets the pipeline to NULL off the async threads.
    async fn teardown(mut self) {
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

/// What the session made of an event.
enum Handled {
    Input(Input),
    /// Handled here (chat, stats, a candidate sent on).
    Done,
    /// The session is over, without error.
    End(&'static str),
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
