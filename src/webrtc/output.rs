//! A pipeline's `webrtc` output: the stream producers its viewers consume, the viewer
//! sessions, and the chat relay between them. The [`Registry`] maps pipeline names to their
//! running outputs; the supervisor attaches and detaches them with the pipeline's lifecycle.

use super::sdp;
use super::session::{
    self, AnswerSession, Command, Handle, IceConfig, Params, Role, Signal, Via, ViewerId,
    ViewerStats,
};
use crate::assemble::WebRtcTap;
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
    #[error("pipeline `{0}` has its maximum of {1} viewers")]
    Full(String, u32),
    #[error("the service has its maximum of {0} {1} (see --max-viewers, --max-publishers)")]
    ServiceFull(usize, &'static str),
    #[error("{0}")]
    BadOffer(String),
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
    /// Viewers and publishers in total (shared by every output and ingest point).
    pub limits: Arc<crate::limits::Limits>,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            ice: IceConfig::default(),
            signalling_url: None,
            connect_timeout: Duration::from_secs(10),
            peer_timeout: Duration::from_secs(15),
            limits: Arc::default(),
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
        Ok(Err(e)) if e.starts_with(super::session::OFFER_REFUSED) => Err(WebRtcError::BadOffer(e)),
        Ok(Err(e)) => Err(WebRtcError::Failed(e)),
        Err(_) => Err(WebRtcError::Failed(
            "the session ended before answering".into(),
        )),
    }
}

/// Chat lines waiting to be relayed; a burst of viewers typing fits, a flood is dropped.
const CHAT_QUEUE: usize = 256;

/// The session table; `closed` once the output is detached, so no session can slip in after
/// `end_all`.
#[derive(Default)]
struct Sessions {
    closed: bool,
    by_id: HashMap<ViewerId, Handle>,
    /// Sessions told to end, until their task has finished (and read its final statistics).
    ending: HashMap<ViewerId, Handle>,
}

/// What the running pipeline feeds the viewers; replaced when the pipeline restarts after an
/// error, while its sessions wait (suspended) to follow the new run.
#[derive(Default)]
struct Feed {
    video: Option<StreamProducer>,
    audio: Option<StreamProducer>,
    /// The pipeline's clock and base time, once it plays (None: not accepting viewers).
    clock: Option<(gst::Clock, gst::ClockTime)>,
    /// The pipeline failed and is restarting; its sessions wait for the next run.
    suspended: bool,
    /// Counts suspensions, so a grace timer knows whether it is still the current one.
    generation: u64,
}

/// How long viewers wait for a failed pipeline to come back before their sessions end.
const RESUME_GRACE: Duration = Duration::from_secs(30);

pub struct WebRtcOutput {
    pub pipeline: String,
    pub tap: WebRtcTap,
    feed: Mutex<Feed>,
    sessions: Mutex<Sessions>,
    chat: mpsc::Sender<(ViewerId, String)>,
    config: WebRtcConfig,
    /// The producer's signalling client, while the output plays.
    producer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Forwards hook events to the viewers (`hook_events = true`).
    forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
    events: crate::events::EventBus,
    /// What the sessions that already ended sent, across runs of the pipeline (the
    /// registry's ledger), so counters never go backwards.
    ended: Arc<Mutex<Totals>>,
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
    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether viewers are served now (its pipeline plays; not waiting for a restart or for
    /// a publisher's first media).
    pub fn is_playing(&self) -> bool {
        self.lock_feed().clock.is_some()
    }

    fn lock_feed(&self) -> std::sync::MutexGuard<'_, Feed> {
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
            video: feed.video.clone(),
            audio: feed.audio.clone(),
            clock: feed.clock.clone(),
            ice: self.config.ice.clone(),
            chat: self.chat.clone(),
            connect_timeout: self.config.connect_timeout,
            peer_timeout: self.config.peer_timeout,
            pending: Some(pending),
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
        let handle = session::spawn(params, role, move |id| {
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
        let formats = sdp::read_offer(&offer, self.tap.codec).map_err(WebRtcError::BadOffer)?;
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
            Role::Answer {
                offer,
                formats,
                reply: tx,
                signal,
                ingest: None,
            },
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
        self.register(params, Role::Offer { signal })
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
    fn suspend(&self) -> Option<u64> {
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
    fn resume_with(
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
    fn end_all(&self) {
        for task in [&self.producer, &self.forwarder] {
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
    async fn forward_hook_events(
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

    /// Relays chat lines from one viewer to every other viewer of this output.
    async fn relay_chat(
        weak: std::sync::Weak<Self>,
        mut lines: mpsc::Receiver<(ViewerId, String)>,
    ) {
        while let Some((from, text)) = lines.recv().await {
            let Some(out) = weak.upgrade() else { return };
            let line = serde_json::json!({ "from": from.short(), "text": text }).to_string();
            for (id, h) in out.lock_sessions().by_id.iter() {
                if *id != from {
                    let _ = h.commands.try_send(Command::Chat(line.clone()));
                }
            }
        }
    }
}

/// The running webrtc outputs, by pipeline name.
pub struct Registry {
    outputs: Mutex<HashMap<String, Arc<WebRtcOutput>>>,
    ingests: Mutex<HashMap<String, Arc<super::ingest::IngestPoint>>>,
    config: WebRtcConfig,
    /// `ws://.../ws` of this process's own signalling server, once it listens.
    embedded: Mutex<Option<String>>,
    /// Per pipeline: what its ended viewer sessions and publishers sent and received, kept
    /// across runs for the counters in `/metrics`.
    viewer_ledgers: Ledgers,
    publisher_ledgers: Ledgers,
}

type Ledgers = Mutex<HashMap<String, Arc<Mutex<Totals>>>>;

/// What a pipeline's ended sessions counted, if it ever had any ledger.
fn ledger_total(ledgers: &Ledgers, name: &str) -> Option<Totals> {
    let ledger = ledgers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .cloned()?;
    let total = *ledger.lock().unwrap_or_else(|p| p.into_inner());
    Some(total)
}

impl Registry {
    pub fn new(config: WebRtcConfig) -> Arc<Registry> {
        Arc::new(Registry {
            outputs: Mutex::new(HashMap::new()),
            ingests: Mutex::new(HashMap::new()),
            config,
            embedded: Mutex::new(None),
            viewer_ledgers: Mutex::default(),
            publisher_ledgers: Mutex::default(),
        })
    }

    fn ledger(&self, ledgers: &Ledgers, name: &str) -> Arc<Mutex<Totals>> {
        ledgers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The service-wide limits.
    pub fn limits(&self) -> &Arc<crate::limits::Limits> {
        &self.config.limits
    }

    /// Viewer totals of pipeline `name` since the service started, None if it never had a
    /// webrtc output.
    pub fn viewer_totals(&self, name: &str) -> Option<Totals> {
        match self.get(name) {
            Some(out) => Some(out.totals()),
            None => ledger_total(&self.viewer_ledgers, name),
        }
    }

    /// Publisher totals of a webrtc-source pipeline since the service started.
    pub fn publisher_totals(&self, name: &str) -> Option<Totals> {
        match self.ingest(name) {
            Some(point) => Some(point.totals()),
            None => ledger_total(&self.publisher_ledgers, name),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<WebRtcOutput>>> {
        self.outputs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the appsinks of `taps` from a freshly built pipeline as stream producers.
    /// Call before the pipeline plays; viewers are accepted once [`Registry::playing`] is called.
    pub fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        taps: &[WebRtcTap],
        events: &crate::events::EventBus,
    ) -> Result<(), String> {
        // One webrtc output per pipeline is what viewers address (by pipeline name).
        let Some(tap) = taps.first() else {
            return Ok(());
        };
        let producer = |sink: &str| -> Result<StreamProducer, String> {
            let appsink = pipeline
                .by_name(sink)
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .ok_or_else(|| format!("the assembled pipeline has no appsink {sink}"))?;
            // No clock sync: a frame goes to the viewers the moment it is encoded (live
            // sources and `clocksync` pace the stream); syncing held each one a frame longer.
            let settings = gst_utils::streamproducer::ProducerSettings { sync: false };
            let producer = StreamProducer::with(&appsink, settings);
            // The pipeline's end-of-stream is not the viewers' end: the registry ends their
            // sessions when the pipeline stops, or keeps them for its restart.
            producer.set_forward_events([gst::EventType::Gap]);
            Ok(producer)
        };
        let video = Some(producer(&tap.video_sink)?);
        let audio = tap.audio_sink.as_deref().map(producer).transpose()?;
        let (chat_tx, chat_rx) = mpsc::channel(CHAT_QUEUE);
        // A pipeline restarting after an error: its waiting viewers follow the new run.
        if let Some(old) = self.get(name)
            && old.resume_with(tap, video.clone(), audio.clone())
        {
            return Ok(());
        }
        let output = Arc::new(WebRtcOutput {
            pipeline: name.to_string(),
            tap: tap.clone(),
            feed: Mutex::new(Feed {
                video,
                audio,
                ..Feed::default()
            }),
            sessions: Mutex::new(Sessions::default()),
            chat: chat_tx,
            config: self.config.clone(),
            producer: Mutex::new(None),
            forwarder: Mutex::new(None),
            events: events.clone(),
            ended: self.ledger(&self.viewer_ledgers, name),
        });
        tokio::spawn(WebRtcOutput::relay_chat(Arc::downgrade(&output), chat_rx));
        if tap.hook_events {
            let task = tokio::spawn(WebRtcOutput::forward_hook_events(
                Arc::downgrade(&output),
                events.subscribe(),
            ));
            *output.forwarder.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        if let Some(old) = self.lock().insert(name.to_string(), output) {
            old.end_all();
        }
        Ok(())
    }

    /// Where producers join when nothing else is configured.
    pub fn set_embedded_signalling(&self, url: String) {
        *self.embedded.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
    }

    /// The pipeline is playing: viewers share its clock and base time from now on, and the
    /// output registers as a producer with its signalling server.
    pub fn playing(&self, name: &str, pipeline: &gst::Pipeline) {
        self.serve_from(name, pipeline, true);
    }

    /// [`Registry::playing`]; `announce`: register as a producer too.
    fn serve_from(&self, name: &str, pipeline: &gst::Pipeline, announce: bool) {
        let Some(out) = self.get(name) else { return };
        if let Some(clock) = pipeline.clock() {
            let base = pipeline.base_time().unwrap_or(gst::ClockTime::ZERO);
            let mut feed = out.lock_feed();
            feed.clock = Some((clock.clone(), base));
            if std::mem::take(&mut feed.suspended) {
                // The sessions that waited switch to the new run's streams.
                let follow = || Command::Follow {
                    video: feed.video.clone(),
                    audio: feed.audio.clone(),
                    clock: clock.clone(),
                };
                let sessions = out.lock_sessions();
                tracing::info!(
                    "{name}: {} viewer(s) follow the restarted pipeline",
                    sessions.by_id.len()
                );
                for h in sessions.by_id.values() {
                    if h.commands.try_send(follow()).is_err() {
                        h.end();
                    }
                }
            }
        }
        if !announce {
            return;
        }
        let url = out
            .tap
            .signalling_url
            .clone()
            .or_else(|| self.config.signalling_url.clone())
            .or_else(|| {
                self.embedded
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            });
        let mut producer = out.producer.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(url), None) = (url, producer.as_ref()) {
            *producer = Some(tokio::spawn(super::signaller::run_producer(
                url,
                Arc::downgrade(&out),
            )));
        }
    }

    /// The pipeline failed and will be restarted: its viewers' sessions wait (for
    /// [`RESUME_GRACE`] at most) and follow the next run, without renegotiating. Without
    /// viewers this is [`Registry::detach`].
    pub fn suspend(self: &Arc<Self>, name: &str) {
        let Some(out) = self.get(name) else { return };
        let Some(generation) = out.suspend() else {
            return self.detach(name);
        };
        tracing::info!("{name}: viewers wait for the pipeline to restart");
        let (registry, name) = (Arc::downgrade(self), name.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(RESUME_GRACE).await;
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let still_waiting = registry.get(&name).is_some_and(|now| {
                let feed = now.lock_feed();
                Arc::ptr_eq(&now, &out) && feed.suspended && feed.generation == generation
            });
            if still_waiting {
                tracing::info!("{name}: the pipeline did not come back; its viewers' sessions end");
                registry.detach(&name);
            }
        });
    }

    /// The pipeline stopped: its viewers' sessions end.
    pub fn detach(&self, name: &str) {
        if let Some(out) = self.lock().remove(name) {
            out.end_all();
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<WebRtcOutput>> {
        self.lock().get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Opens a webrtc-source pipeline to publishers.
    pub fn attach_ingest(
        self: &Arc<Self>,
        name: &str,
        plan: crate::assemble::Plan,
        recordings: Arc<crate::record::Recordings>,
        hooks: crate::hooks::HookHost,
    ) -> Arc<super::ingest::IngestPoint> {
        let ledger = self.ledger(&self.publisher_ledgers, name);
        // With a webrtc output, each publisher's stream is relayed to viewers as it arrives.
        let relay = (!plan.webrtc.is_empty()).then(|| Relay {
            registry: Arc::downgrade(self),
            events: hooks.events.clone(),
        });
        let point = super::ingest::IngestPoint::new(
            name,
            plan,
            recordings,
            hooks,
            self.config.clone(),
            ledger,
            relay,
        );
        let url = self.config.signalling_url.clone().or_else(|| {
            self.embedded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        });
        if let Some(url) = url {
            point.listen_for_publishers(url);
        }
        self.ingests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), point.clone());
        point
    }

    /// Closes it again: the publisher (if any) is ended and its recording finalized first;
    /// viewers of its relay end.
    pub async fn detach_ingest(&self, name: &str) {
        let point = self
            .ingests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(point) = point {
            point.close().await;
        }
        self.detach(name);
    }

    pub fn ingest(&self, name: &str) -> Option<Arc<super::ingest::IngestPoint>> {
        self.ingests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

/// A webrtc-source pipeline's relay: each publisher's pipeline feeds the pipeline's webrtc
/// output while it lasts (its appsinks become the viewers' stream producers, its clock theirs);
/// between publishers the viewers wait, as they wait for a restarted pipeline.
#[derive(Clone)]
pub struct Relay {
    registry: std::sync::Weak<Registry>,
    events: crate::events::EventBus,
}

impl Relay {
    /// A publisher's pipeline is built: its appsinks become the viewers' stream producers.
    pub fn started(&self, name: &str, pipeline: &gst::Pipeline, taps: &[WebRtcTap]) {
        if let Some(registry) = self.registry.upgrade()
            && let Err(e) = registry.attach(name, pipeline, taps, &self.events)
        {
            tracing::warn!("{name}: cannot relay the publisher: {e}");
        }
    }

    /// The publisher's pipeline plays (it waits for the publisher's first media): viewers
    /// share its clock and base time, which are final only now.
    pub fn playing(&self, name: &str, pipeline: &gst::Pipeline) {
        if let Some(registry) = self.registry.upgrade() {
            registry.playing(name, pipeline);
        }
    }

    /// The publisher left: its viewers wait for the next one (same codec) or end.
    pub fn ended(&self, name: &str) {
        if let Some(registry) = self.registry.upgrade() {
            registry.suspend(name);
        }
    }
}
