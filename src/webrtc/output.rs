//! A pipeline's `webrtc` output: the stream producers its viewers consume, the viewer
//! sessions, and the chat relay between them. The [`super::registry::Registry`] maps pipeline names to their
//! running outputs; the supervisor attaches and detaches them with the pipeline's lifecycle.

use super::sdp;
use super::session;
use super::types::{
    AnswerSession, Answering, Command, Handle, IceConfig, Params, Role, Signal, Via, ViewerId,
    ViewerStats,
};
use crate::assemble::WebRtcTap;
use crate::description::VideoCodec;
use gst::prelude::*;
use gst_utils::streamproducer::StreamProducer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("no pipeline `{0}` with a webrtc output")]
    NotFound(String),
    #[error("pipeline `{0}` is not playing yet")]
    NotPlaying(String),
    #[error("nobody is publishing to `{0}` yet: its viewers are served while a publisher is live")]
    NobodyPublishing(String),
    #[error("pipeline `{0}` already has a publisher")]
    Busy(String),
    #[error(
        "pipeline `{0}` pulls its stream from a WHEP server (a whep source): it takes no publishers"
    )]
    Pulls(String),
    #[error("room `{0}` is full: it holds {1} participants at most")]
    RoomFull(String, u32),
    #[error("room `{0}` has no participant `{1}`")]
    NoParticipant(String, String),
    #[error("pipeline `{0}` has its maximum of {1} viewers")]
    Full(String, u32),
    #[error("the service has its maximum of {0} {1} (see --max-viewers, --max-publishers)")]
    ServiceFull(usize, &'static str),
    #[error("{0}")]
    BadOffer(String),
    /// The offer does not take the stream's codec (or H.264 profile).
    #[error("{0}")]
    CodecMismatch(String),
    #[error("{0}")]
    TooManyPending(String),
    #[error("{0}")]
    Failed(String),
}

/// Service-wide WebRTC settings.
#[derive(Debug, Clone)]
pub struct WebRtcConfig {
    pub ice: IceConfig,
    /// Signalling server producers join unless a description names one; None = the embedded
    /// server of this process.
    pub signalling_url: Option<String>,
    /// How long a viewer has to complete ICE and DTLS.
    pub connect_timeout: Duration,
    /// How long a connected peer may stay silent before its session ends.
    pub peer_timeout: Duration,
    /// How long viewers wait for a failed pipeline, or for the next publisher of a relayed
    /// stream, before their sessions end.
    pub resume_grace: Duration,
    /// Viewers and publishers in total (shared by every output and ingest point).
    pub limits: Arc<crate::limits::Limits>,
    /// Every session task (viewers and publishers), so shutdown can wait for them all.
    pub sessions: tokio_util::task::TaskTracker,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            ice: IceConfig::default(),
            signalling_url: None,
            connect_timeout: Duration::from_secs(10),
            peer_timeout: Duration::from_secs(15),
            resume_grace: Duration::from_secs(30),
            limits: Arc::default(),
            sessions: tokio_util::task::TaskTracker::new(),
        }
    }
}

/// Waits for a session's answer (ICE gathered) and pairs it with the session id.
pub(super) async fn await_answer(
    id: ViewerId,
    answer: oneshot::Receiver<Result<String, String>>,
) -> Result<(ViewerId, String), WebRtcError> {
    match answer.await {
        Ok(Ok(sdp)) => Ok((id, sdp)),
        Ok(Err(e)) if e.starts_with(super::types::OFFER_REFUSED) => Err(WebRtcError::BadOffer(e)),
        Ok(Err(e)) => Err(WebRtcError::Failed(e)),
        Err(_) => Err(WebRtcError::Failed(
            "the session ended before answering".into(),
        )),
    }
}

/// Chat lines waiting to be relayed; a burst of viewers typing fits, a flood is dropped.
pub(super) const CHAT_QUEUE: usize = 256;

/// The session table; `closed` once the output is detached, so no session can slip in after
/// `end_all`.
#[derive(Default)]
pub(super) struct Sessions {
    pub(super) closed: bool,
    pub(super) by_id: HashMap<ViewerId, Handle>,
    /// Sessions told to end, until their task has finished (and read its final statistics).
    pub(super) ending: HashMap<ViewerId, Handle>,
}

/// What the running pipeline feeds the viewers; replaced when the pipeline restarts after an
/// error, while its sessions wait (suspended) to follow the new run.
#[derive(Default)]
pub(super) struct Feed {
    pub(super) video: Option<StreamProducer>,
    pub(super) audio: Option<StreamProducer>,
    /// The encoder ladder (its top is `video`), if the pipeline has one.
    pub(super) ladder: Option<Arc<super::ladder::Ladder>>,
    /// The pipeline's clock and base time, once it plays (None: not accepting viewers).
    pub(super) clock: Option<(gst::Clock, gst::ClockTime)>,
    /// The pipeline failed and is restarting; its sessions wait for the next run.
    pub(super) suspended: bool,
    /// Counts suspensions, so a grace timer knows whether it is still the current one.
    pub(super) generation: u64,
}

pub struct WebRtcOutput {
    pub pipeline: String,
    pub tap: WebRtcTap,
    pub(super) feed: Mutex<Feed>,
    pub(super) sessions: Mutex<Sessions>,
    pub(super) chat: mpsc::Sender<(ViewerId, String)>,
    pub(super) config: WebRtcConfig,
    /// The producer's signalling client, while the output plays.
    pub(super) producer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Forwards hook events to the viewers (`hook_events = true`).
    pub(super) forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Relays chat between its viewers.
    pub(super) chat_relay: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(super) events: crate::events::EventBus,
    /// What the sessions that already ended sent, across runs of the pipeline (the
    /// registry's ledger), so counters never go backwards.
    pub(super) ended: Arc<Mutex<Totals>>,
}

/// Counters summed over sessions, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    pub sessions: u64,
    pub bytes_sent: u64,
    pub packets_sent: u64,
    pub packets_lost: u64,
    pub dropped_buffers: u64,
    pub bytes_received: u64,
}

impl Totals {
    pub fn add(&mut self, s: &ViewerStats) {
        self.sessions += 1;
        self.bytes_sent += s.bytes_sent;
        self.packets_sent += s.packets_sent;
        self.packets_lost += s.packets_lost.max(0) as u64;
        self.dropped_buffers += s.dropped_buffers;
        self.bytes_received += s.bytes_received;
    }
}

impl WebRtcOutput {
    pub(super) fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether viewers are served now (its pipeline plays; not waiting for a restart or for
    /// a publisher's first media).
    pub fn is_playing(&self) -> bool {
        self.lock_feed().clock.is_some()
    }

    pub(super) fn lock_feed(&self) -> std::sync::MutexGuard<'_, Feed> {
        self.feed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Totals over every session of this pipeline since the service started, live ones
    /// included. Read under the sessions lock, which is also held while a session moves into
    /// the ledger, so no session is counted twice or missed.
    pub fn totals(&self) -> Totals {
        let sessions = self.lock_sessions();
        let mut t = *self.ended.lock().unwrap_or_else(|p| p.into_inner());
        for h in sessions.by_id.values().chain(sessions.ending.values()) {
            t.add(&h.stats.borrow());
        }
        t
    }

    /// A session's task is over (its final statistics read): it goes into the ledger, and an
    /// event says it left.
    fn session_over(&self, id: &ViewerId) {
        let mut sessions = self.lock_sessions();
        let Some(h) = sessions
            .by_id
            .remove(id)
            .or_else(|| sessions.ending.remove(id))
        else {
            return;
        };
        let stats = h.stats.borrow().clone();
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(&stats);
        let remaining = sessions.by_id.len();
        drop(sessions);
        self.announce_left(&stats, remaining);
    }

    fn announce_left(&self, stats: &ViewerStats, remaining: usize) {
        self.events.publish(crate::events::Event::new(
            "viewer_left",
            &self.pipeline,
            serde_json::json!({ "viewer": stats.id, "via": stats.via, "viewers": remaining, "bytes_sent": stats.bytes_sent }),
        ));
    }

    pub fn viewers(&self) -> Vec<ViewerStats> {
        let mut v: Vec<ViewerStats> = self
            .lock_sessions()
            .by_id
            .values()
            .map(|h| h.stats.borrow().clone())
            .collect();
        v.sort_by(|a, b| a.started.cmp(&b.started));
        v
    }

    /// The H.264 profile of the stream as it flows now (None: not H.264, or not known yet).
    fn h264_profile(&self) -> Option<sdp::H264Profile> {
        if self.tap.codec != VideoCodec::H264 {
            return None;
        }
        let caps = self
            .lock_feed()
            .video
            .as_ref()?
            .appsink()
            .static_pad("sink")?
            .current_caps()?;
        let profile = caps.structure(0)?.get::<&str>("profile").ok()?;
        sdp::H264Profile::from_caps(profile)
    }

    fn params(
        self: &Arc<Self>,
        via: Via,
        client: Option<std::net::IpAddr>,
    ) -> Result<Params, WebRtcError> {
        let feed = self.lock_feed();
        if feed.clock.is_none() {
            return Err(WebRtcError::NotPlaying(self.pipeline.clone()));
        }
        let pending = self
            .config
            .limits
            .pending(client)
            .map_err(WebRtcError::TooManyPending)?;
        Ok(Params {
            id: ViewerId::new(),
            via,
            codec: self.tap.codec,
            // A simulcast publisher may have paused its top layer: start on one that arrives.
            video: feed
                .ladder
                .as_ref()
                .and_then(|l| l.first_choice(std::time::Instant::now()))
                .or_else(|| feed.video.clone()),
            audio: feed.audio.clone(),
            clock: feed.clock.clone(),
            ice: self.config.ice.clone(),
            chat: self.chat.clone(),
            connect_timeout: self.config.connect_timeout,
            peer_timeout: self.config.peer_timeout,
            pending: Some(pending),
            ladder: feed.ladder.clone(),
        })
    }

    /// Admits a session: checks the limit, spawns it and records it under one lock, so
    /// concurrent requests cannot exceed `max_viewers` and a session that ends at once cannot
    /// leave a dead entry behind (its `on_end` waits for this lock).
    fn register(
        self: &Arc<Self>,
        params: Params,
        role: Role,
    ) -> Result<(ViewerId, mpsc::Sender<Command>), WebRtcError> {
        let mut sessions = self.lock_sessions();
        if sessions.closed {
            return Err(WebRtcError::NotPlaying(self.pipeline.clone()));
        }
        if sessions.by_id.len() >= self.tap.max_viewers as usize {
            return Err(WebRtcError::Full(
                self.pipeline.clone(),
                self.tap.max_viewers,
            ));
        }
        let limits = &self.config.limits;
        let slot = limits
            .viewer()
            .ok_or(WebRtcError::ServiceFull(limits.max_viewers, "viewers"))?;
        let weak = Arc::downgrade(self);
        let via = params.via;
        let handle = session::spawn(&self.config.sessions, params, role, move |id| {
            // The place is given back when the session is over (or never started).
            let _slot = slot;
            if let Some(out) = weak.upgrade() {
                out.session_over(id);
            }
        });
        let (id, commands) = (handle.id.clone(), handle.commands.clone());
        sessions.by_id.insert(id.clone(), handle);
        tracing::info!(
            "{}: viewer {id} joined ({} now)",
            self.pipeline,
            sessions.by_id.len()
        );
        self.events.publish(crate::events::Event::new(
            "viewer_joined",
            &self.pipeline,
            serde_json::json!({ "viewer": id.short(), "via": via, "viewers": sessions.by_id.len() }),
        ));
        Ok((id, commands))
    }

    /// Starts a session that answers `offer`. The answer (complete, ICE gathered) arrives on
    /// the returned receiver; `signal`, if given, hears `Signal::Ended` when the session ends.
    pub fn answer_session(
        self: &Arc<Self>,
        offer: String,
        via: Via,
        client: Option<std::net::IpAddr>,
        signal: Option<mpsc::Sender<Signal>>,
    ) -> Result<AnswerSession, WebRtcError> {
        let formats =
            sdp::read_offer(&offer, self.tap.codec, self.h264_profile()).map_err(|e| match e {
                sdp::OfferError::Codec(e) => WebRtcError::CodecMismatch(e),
                sdp::OfferError::Invalid(e) => WebRtcError::BadOffer(e),
            })?;
        let takes_video = formats.video_pt.is_some();
        let takes_audio = formats.audio_pt.is_some() && self.lock_feed().audio.is_some();
        if !takes_video && !takes_audio {
            return Err(WebRtcError::BadOffer(
                "the offer takes neither the video nor the audio this pipeline sends".into(),
            ));
        }
        let params = self.params(via, client)?;
        let (tx, rx) = oneshot::channel();
        let (id, commands) = self.register(
            params,
            Role::Answer(Answering {
                offer,
                formats,
                reply: tx,
                signal,
            }),
        )?;
        Ok((id, commands, rx))
    }

    /// Answers a remote offer (WHEP, `POST /offer`): returns the viewer id and the complete
    /// answer SDP once ICE gathering is done.
    pub async fn answer(
        self: &Arc<Self>,
        offer: String,
        via: Via,
        client: Option<std::net::IpAddr>,
    ) -> Result<(ViewerId, String), WebRtcError> {
        let (id, _, rx) = self.answer_session(offer, via, client, None)?;
        await_answer(id, rx).await
    }

    /// Where signalling peer `peer` connected from, if it is one of the embedded server's.
    pub fn signalling_peer_address(&self, peer: &str) -> Option<std::net::IpAddr> {
        self.config.limits.peer_address(peer)
    }

    /// Starts a session in which we offer (signalling protocol). Signals go out on `signal`;
    /// remote SDP and candidates go in through the returned command sender.
    pub fn offer(
        self: &Arc<Self>,
        signal: mpsc::Sender<Signal>,
        client: Option<std::net::IpAddr>,
    ) -> Result<(ViewerId, mpsc::Sender<Command>), WebRtcError> {
        let params = self.params(Via::Signalling, client)?;
        self.register(
            params,
            Role::Offer {
                signal,
                gathered: false,
            },
        )
    }

    /// Ends one viewer session; false if there is none with that id. The session leaves the
    /// table at once (a repeated DELETE finds nothing); its task frees the rest.
    pub fn end(&self, id: &ViewerId) -> bool {
        let mut sessions = self.lock_sessions();
        match sessions.by_id.remove(id) {
            Some(h) => {
                h.end();
                // Counted (and announced) once its task has finished, with its final numbers.
                sessions.ending.insert(id.clone(), h);
                true
            }
            None => false,
        }
    }

    /// The pipeline failed and will be restarted: sessions stay, waiting for the next run.
    /// Returns the suspension's generation, or None if there is no session to keep.
    pub(super) fn suspend(&self) -> Option<u64> {
        if self.lock_sessions().by_id.is_empty() {
            return None;
        }
        let mut feed = self.lock_feed();
        feed.clock = None;
        feed.suspended = true;
        feed.generation += 1;
        Some(feed.generation)
    }

    /// Takes the producers of a restarted pipeline, if this output is waiting for one with
    /// the same streams; false otherwise (its sessions cannot follow).
    pub(super) fn resume_with(
        &self,
        tap: &WebRtcTap,
        video: Option<StreamProducer>,
        audio: Option<StreamProducer>,
    ) -> bool {
        let mut feed = self.lock_feed();
        let same_streams = tap.codec == self.tap.codec
            && video.is_some() == feed.video.is_some()
            && audio.is_some() == feed.audio.is_some();
        if !feed.suspended || !same_streams {
            return false;
        }
        feed.video = video;
        feed.audio = audio;
        true
    }

    /// Ends every session and admits no more (the pipeline stopped).
    pub(super) fn end_all(&self) {
        for task in [&self.producer, &self.forwarder, &self.chat_relay] {
            if let Some(task) = task.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
        }
        // The output goes away with the pipeline: its sessions are counted now, with the
        // numbers they have (their tasks end on their own).
        let mut sessions = self.lock_sessions();
        let table = &mut *sessions;
        table.closed = true;
        let all: Vec<Handle> = table
            .by_id
            .drain()
            .chain(table.ending.drain())
            .map(|(_, h)| h)
            .collect();
        let mut gone = Vec::new();
        {
            let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
            for h in all {
                h.end();
                let stats = h.stats.borrow().clone();
                ended.add(&stats);
                gone.push(stats);
            }
        }
        drop(sessions);
        for stats in gone {
            self.announce_left(&stats, 0);
        }
    }

    /// Sends this pipeline's hook events to every viewer, as `{"event": {...}}` on the data
    /// channel. A session that cannot take more (its queue is full) misses events.
    pub(super) async fn forward_hook_events(
        weak: std::sync::Weak<Self>,
        mut events: tokio::sync::broadcast::Receiver<crate::events::Event>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            let Some(out) = weak.upgrade() else { return };
            if event.kind != "hook" || event.pipeline != out.pipeline {
                continue;
            }
            let line = serde_json::json!({ "event": event }).to_string();
            for h in out.lock_sessions().by_id.values() {
                let _ = h.commands.try_send(Command::Chat(line.clone()));
            }
        }
    }

    /// The ids of the sessions watching now.
    pub fn session_ids(&self) -> Vec<ViewerId> {
        self.lock_sessions().by_id.keys().cloned().collect()
    }

    /// A chat line to every session but `from`'s (dropped for a session whose queue is full).
    pub fn send_chat_except(&self, from: &ViewerId, line: &str) {
        for (id, h) in self.lock_sessions().by_id.iter() {
            if id != from {
                let _ = h.commands.try_send(Command::Chat(line.to_string()));
            }
        }
    }

    /// Relays chat lines from one speaker to every other viewer of this output, and onto
    /// `bus` under the pipeline's name.
    pub(super) async fn relay_chat(
        weak: std::sync::Weak<Self>,
        mut lines: mpsc::Receiver<(ViewerId, String)>,
        bus: super::chat::ChatBus,
    ) {
        while let Some((from, text)) = lines.recv().await {
            let Some(out) = weak.upgrade() else { return };
            let line = serde_json::json!({ "from": from.short(), "text": text }).to_string();
            out.send_chat_except(&from, &line);
            bus.publish(super::chat::ChatLine {
                target: out.pipeline.clone(),
                from: from.0,
                text,
            });
        }
    }
}
