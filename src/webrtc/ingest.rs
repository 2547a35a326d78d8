//! A webrtc-source pipeline's door for publishers: at most one at a time (WHIP, or the
//! `/publish` page through the signalling protocol). Each publisher gets a session of its own
//! whose pipeline is the description's outputs fed by webrtcbin, so every publisher starts new
//! segments and its leaving finalizes them.

use super::output::{Totals, WebRtcConfig, WebRtcError};
use super::sdp;
use super::session;
use super::types::{
    AnswerSession, Answering, ChatSender, Handle, Ingest, Params, Role, Signal, Via, ViewerId,
    ViewerStats,
};
use crate::assemble::Plan;
use crate::events::Event;
use crate::record::Recordings;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

pub struct IngestPoint {
    pub pipeline: String,
    plan: Arc<Plan>,
    recordings: Arc<Recordings>,
    hooks: crate::hooks::HookHost,
    config: WebRtcConfig,
    state: Mutex<State>,
    /// Goes to 0 when the current publisher's session has fully ended (finalized, freed).
    active: watch::Sender<usize>,
    /// The signalling client that takes publishers from the `/publish` page.
    consumer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What publishers that already left sent (the registry's ledger for this pipeline).
    ended: Arc<Mutex<Totals>>,
    /// Set when the pipeline has a webrtc output: publishers are relayed to its viewers.
    relay: Option<super::registry::Relay>,
    /// A room participant's: where the lines its publisher types go (the room's chat).
    chat: Option<ChatSender>,
    /// A whep source's puller, told to stop (and `DELETE` its session) when the ingest closes.
    puller: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closing: watch::Sender<bool>,
    /// What a whep source's pulling is doing.
    pub pull_state: Arc<Mutex<super::whip_client::WhipState>>,
    /// The current publisher's pipeline, set by its session once built.
    built: super::types::PipelineSlot,
}

#[derive(Default)]
struct State {
    closed: bool,
    publisher: Option<Handle>,
}

/// What an ingest point is made of (a room keeps one for all its participants' points).
#[derive(Clone)]
pub struct IngestParts {
    pub plan: Plan,
    pub recordings: Arc<Recordings>,
    pub hooks: crate::hooks::HookHost,
    pub config: WebRtcConfig,
    /// The registry's ledger of the pipeline's publishers that left.
    pub ended: Arc<Mutex<Totals>>,
    pub relay: Option<super::registry::Relay>,
}

impl IngestPoint {
    /// The door of stream `pipeline`; `chat`: where its publisher's lines go (a room's).
    pub fn new(pipeline: &str, parts: IngestParts, chat: Option<ChatSender>) -> Arc<IngestPoint> {
        let IngestParts {
            plan,
            recordings,
            hooks,
            config,
            ended,
            relay,
        } = parts;
        Arc::new(IngestPoint {
            pipeline: pipeline.to_string(),
            plan: Arc::new(plan),
            recordings,
            hooks,
            config,
            state: Mutex::new(State::default()),
            active: watch::channel(0).0,
            consumer: Mutex::new(None),
            ended,
            relay,
            chat,
            puller: Mutex::new(None),
            closing: watch::channel(false).0,
            pull_state: Arc::default(),
            built: Arc::default(),
        })
    }

    /// The current publisher's pipeline, while it runs.
    pub fn publisher_pipeline(&self) -> Option<gst::Pipeline> {
        self.lock().publisher.as_ref()?;
        let slot = self.built.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().and_then(|w| w.upgrade())
    }

    /// Where the pipeline's events go.
    pub fn events(&self) -> &crate::events::EventBus {
        &self.hooks.events
    }

    /// Whether this ingest pulls its stream (a whep source).
    pub fn plan_pulls(&self) -> bool {
        self.plan.pull.is_some()
    }

    /// A whep source's endpoint (empty for other ingests).
    pub fn pull_url(&self) -> String {
        self.plan
            .pull
            .as_ref()
            .map(|p| p.url.clone())
            .unwrap_or_default()
    }

    /// Whether the pipeline relays its publishers to WebRTC viewers.
    pub fn relays(&self) -> bool {
        self.relay.is_some() && !self.plan.webrtc.is_empty()
    }

    /// Takes publishers from a signalling server too (the `/publish` page's producers).
    pub fn listen_for_publishers(self: &Arc<Self>, url: String) {
        let task = tokio::spawn(super::signaller::run_consumer(url, Arc::downgrade(self)));
        if let Some(old) = self
            .consumer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Totals over every publisher since the pipeline started, the current one included.
    pub fn totals(&self) -> Totals {
        // Under the state lock, which is also held while a publisher moves into the ledger.
        let state = self.lock();
        let mut t = *self.ended.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = &state.publisher {
            t.add(&h.stats.borrow());
        }
        t
    }

    /// Whether a publisher is live (or connecting) now.
    pub fn has_publisher(&self) -> bool {
        self.lock().publisher.is_some()
    }

    pub fn publishers(&self) -> Vec<ViewerStats> {
        self.lock()
            .publisher
            .iter()
            .map(|h| h.stats.borrow().clone())
            .collect()
    }

    /// Starts a publisher session answering `offer`; 409-style `Busy` while another publishes.
    pub fn publish_session(
        self: &Arc<Self>,
        offer: String,
        via: Via,
        client: Option<std::net::IpAddr>,
        signal: Option<mpsc::Sender<Signal>>,
    ) -> Result<AnswerSession, WebRtcError> {
        let ingest = self
            .plan
            .ingest
            .ok_or_else(|| WebRtcError::NotFound(self.pipeline.clone()))?;
        if self.plan.pull.is_some() {
            return Err(WebRtcError::Pulls(self.pipeline.clone()));
        }
        let formats = sdp::read_publish_offer(&offer, ingest.codec, ingest.audio)
            .map_err(WebRtcError::BadOffer)?;
        let (tx, rx) = oneshot::channel();
        let handle = self.start_publisher(via, client, |ingest| {
            Role::Publish(
                Answering {
                    offer,
                    formats,
                    reply: tx,
                    signal,
                },
                ingest,
            )
        })?;
        Ok((handle.0, handle.1, rx))
    }

    /// Starts the session of a publisher (one that offered, or a stream we pull) whose role
    /// `role` makes from the ingest; `Busy` while another publishes.
    pub(super) fn start_publisher(
        self: &Arc<Self>,
        via: Via,
        client: Option<std::net::IpAddr>,
        role: impl FnOnce(Ingest) -> Role,
    ) -> Result<(ViewerId, mpsc::Sender<super::types::Command>), WebRtcError> {
        let ingest = self
            .plan
            .ingest
            .ok_or_else(|| WebRtcError::NotFound(self.pipeline.clone()))?;
        let mut state = self.lock();
        if state.closed {
            return Err(WebRtcError::NotPlaying(self.pipeline.clone()));
        }
        if state.publisher.is_some() {
            return Err(WebRtcError::Busy(self.pipeline.clone()));
        }
        let limits = &self.config.limits;
        let slot = limits.publisher().ok_or(WebRtcError::ServiceFull(
            limits.max_publishers,
            "publishers",
        ))?;
        let pending = limits
            .pending(client)
            .map_err(WebRtcError::TooManyPending)?;
        // A webrtc source's publisher does not chat; a room's participant chats with the room.
        let chat = self.chat.clone().unwrap_or_else(|| mpsc::channel(1).0);
        let params = Params {
            id: ViewerId::new(),
            via,
            codec: ingest.codec,
            video: None,
            audio: None,
            clock: None,
            ice: self.config.ice.clone(),
            chat,
            connect_timeout: self.config.connect_timeout,
            peer_timeout: self.config.peer_timeout,
            pending: Some(pending),
            ladder: None,
        };
        let via_name = via;
        let weak = Arc::downgrade(self);
        self.active.send_modify(|n| *n += 1);
        let handle = session::spawn(
            &self.config.sessions,
            params,
            role(Ingest {
                plan: self.plan.clone(),
                recordings: self.recordings.clone(),
                hooks: self.hooks.clone(),
                relay: self.relay.clone(),
                built: self.built.clone(),
            }),
            move |id| {
                let _slot = slot;
                if let Some(point) = weak.upgrade() {
                    let mut state = point.lock();
                    let gone = state
                        .publisher
                        .take_if(|h| h.id == *id)
                        .map(|h| h.stats.borrow().clone());
                    if let Some(stats) = &gone {
                        point
                            .ended
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .add(stats);
                    }
                    drop(state);
                    let bytes = gone.as_ref().map(|s| s.bytes_received).unwrap_or(0);
                    point.active.send_modify(|n| *n = n.saturating_sub(1));
                    tracing::info!("{}: publisher {id} left", point.pipeline);
                    point.hooks.events.publish(Event::new(
                        "publisher_stopped",
                        &point.pipeline,
                        serde_json::json!({ "publisher": id.short(), "bytes_received": bytes }),
                    ));
                }
            },
        );
        let (id, commands) = (handle.id.clone(), handle.commands.clone());
        tracing::info!("{}: publisher {id} arrived", self.pipeline);
        self.hooks.events.publish(Event::new(
            "publisher_started",
            &self.pipeline,
            serde_json::json!({ "publisher": id.short(), "via": via_name }),
        ));
        state.publisher = Some(handle);
        Ok((id, commands))
    }

    /// The current publisher's handle on its statistics, if it is `id`.
    pub(super) fn publisher_stats(&self, id: &ViewerId) -> Option<watch::Receiver<ViewerStats>> {
        self.lock()
            .publisher
            .as_ref()
            .filter(|h| h.id == *id)
            .map(|h| h.stats.clone())
    }

    /// A whep source: pulls its stream from `pull` (another server's WHEP endpoint) as this
    /// ingest's publisher, again with backoff whenever it ends, until the ingest closes.
    pub fn pull_from(self: &Arc<Self>, pull: crate::assemble::WhepPull) {
        let closing = self.closing.subscribe();
        let task = tokio::spawn(super::whep_pull::run(Arc::downgrade(self), pull, closing));
        if let Some(old) = self
            .puller
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    /// WHIP: answers the publisher's offer with every candidate gathered.
    pub async fn publish(
        self: &Arc<Self>,
        offer: String,
        via: Via,
        client: Option<std::net::IpAddr>,
    ) -> Result<(ViewerId, String), WebRtcError> {
        let (id, _, rx) = self.publish_session(offer, via, client, None)?;
        super::output::await_answer(id, rx).await
    }

    /// Sends a line to the current publisher's data channel (a room's chat); false if it
    /// cannot take it now.
    pub fn send_chat(&self, line: String) -> bool {
        self.lock().publisher.as_ref().is_some_and(|h| {
            h.commands
                .try_send(super::types::Command::Chat(line))
                .is_ok()
        })
    }

    /// The current publisher's session id.
    pub fn publisher_id(&self) -> Option<ViewerId> {
        self.lock().publisher.as_ref().map(|h| h.id.clone())
    }

    /// Waits until the publisher's session has fully ended (its recording finalized).
    pub async fn idle(&self) {
        let _ = self.active.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Ends the publisher session `id` (its recording is finalized); false if it is not current.
    pub fn end(&self, id: &ViewerId) -> bool {
        let state = self.lock();
        match &state.publisher {
            Some(h) if h.id == *id => {
                h.end();
                true
            }
            _ => false,
        }
    }

    /// Admits no more publishers, ends the current one and waits (bounded) until its
    /// recording is finalized and its pipeline freed.
    pub async fn close(&self) {
        if let Some(task) = self
            .consumer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
        {
            let mut state = self.lock();
            state.closed = true;
            if let Some(h) = &state.publisher {
                h.end();
            }
        }
        // A puller ends its session with the server (`DELETE`) and stops.
        self.closing.send_replace(true);
        let puller = self.puller.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(puller) = puller
            && tokio::time::timeout(Duration::from_secs(12), puller)
                .await
                .is_err()
        {
            tracing::warn!(
                "{}: the WHEP puller did not stop within 12 s",
                self.pipeline
            );
        }
        let mut active = self.active.subscribe();
        let done = active.wait_for(|n| *n == 0);
        if tokio::time::timeout(Duration::from_secs(10), done)
            .await
            .is_err()
        {
            tracing::warn!(
                "{}: the publisher did not finish within 10 s",
                self.pipeline
            );
        }
    }
}
