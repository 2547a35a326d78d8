//! The [`Registry`]: every running `webrtc` output and ingest point by pipeline name. The
//! supervisor hands it each run's pipeline through [`crate::hub::Readers`] (attach, playing,
//! suspend, detach); the HTTP API and the signalling clients look outputs up here. A
//! relaying ingest point's [`Relay`] feeds each publisher's pipeline to the same output.

use super::output::{CHAT_QUEUE, Feed, Sessions, Totals, WebRtcConfig, WebRtcOutput};
use super::types::{Command, ViewerId};
use crate::description::VideoCodec;
use crate::hub::Readers;
use gst::prelude::*;
use gst_utils::streamproducer::StreamProducer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The running webrtc outputs, by pipeline name.
pub struct Registry {
    /// Itself, for the tasks and relays it hands out.
    me: std::sync::Weak<Registry>,
    outputs: Mutex<HashMap<String, Arc<WebRtcOutput>>>,
    ingests: Mutex<HashMap<String, Arc<super::ingest::IngestPoint>>>,
    rooms: Mutex<HashMap<String, Arc<super::room::Room>>>,
    config: WebRtcConfig,
    /// `ws://.../ws` of this process's own signalling server, once it listens.
    embedded: Mutex<Option<String>>,
    /// Per pipeline: what its ended viewer sessions and publishers sent and received, kept
    /// across runs for the counters in `/metrics`.
    viewer_ledgers: Ledgers,
    publisher_ledgers: Ledgers,
    /// Per pipeline: its video's keyframe requests, across runs and publishers.
    keyframe_ledgers: Mutex<HashMap<String, Arc<super::keyframes::RequestCounts>>>,
    /// The `whip` outputs, publishing each run's stream to other servers.
    whip: super::whip_client::WhipClients,
    /// Every pipeline's and room's chat lines, for the Socket.IO clients.
    chat: super::chat::ChatBus,
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
        Arc::new_cyclic(|me| Registry {
            me: me.clone(),
            outputs: Mutex::new(HashMap::new()),
            ingests: Mutex::new(HashMap::new()),
            rooms: Mutex::new(HashMap::new()),
            embedded: Mutex::new(None),
            chat: super::chat::ChatBus::default(),
            viewer_ledgers: Mutex::default(),
            publisher_ledgers: Mutex::default(),
            keyframe_ledgers: Mutex::default(),
            whip: super::whip_client::WhipClients::new(config.clone()),
            config,
        })
    }

    /// A pipeline's ledger; a room's participants (`room/participant`) share the room's, so
    /// what they counted stays when they leave and nothing is kept per participant.
    fn ledger(&self, ledgers: &Ledgers, name: &str) -> Arc<Mutex<Totals>> {
        ledgers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(crate::description::pipeline_of(name).to_string())
            .or_default()
            .clone()
    }

    /// Keyframe requests of pipeline `name`'s video so far: (forwarded upstream, held back).
    pub fn keyframe_counts(&self, name: &str) -> (u64, u64) {
        let ledgers = self
            .keyframe_ledgers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        ledgers.get(name).map_or((0, 0), |c| {
            let read =
                |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
            (read(&c.forwarded), read(&c.suppressed))
        })
    }

    /// Every pipeline's and room's chat lines as they are relayed.
    pub fn chat_bus(&self) -> &super::chat::ChatBus {
        &self.chat
    }

    /// Says `text` in the chat of `target` (a room's, or a pipeline's webrtc output's) as
    /// `from`, a speaker that is not one of its sessions (a Socket.IO client); false when
    /// `target` has no chat running, or it did not take the line (its queue is full).
    pub fn say(&self, target: &str, from: &ViewerId, text: &str) -> bool {
        let sender = match self.room(target) {
            Some(room) => room.chat_sender(),
            None => match self.get(target) {
                Some(out) => out.chat.clone(),
                None => return false,
            },
        };
        sender.try_send((from.clone(), text.to_string())).is_ok()
    }

    /// The counters of pipeline `name`'s keyframe requests, kept across its runs.
    fn keyframe_requests(&self, name: &str) -> Arc<super::keyframes::RequestCounts> {
        self.keyframe_ledgers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(crate::description::pipeline_of(name).to_string())
            .or_default()
            .clone()
    }

    /// What pipeline `name`'s `whip` outputs are doing.
    pub fn whip_states(&self, name: &str) -> Vec<super::whip_client::WhipState> {
        self.whip.states(name)
    }

    /// What pipeline `name`'s whep source is doing, if it has one.
    pub fn whep_state(&self, name: &str) -> Option<super::whip_client::WhipState> {
        let point = self.ingest(name)?;
        point.plan_pulls().then(|| {
            point
                .pull_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }

    /// The service-wide limits.
    pub fn limits(&self) -> &Arc<crate::limits::Limits> {
        &self.config.limits
    }

    /// Viewer totals of pipeline `name` since the service started, None if it never had a
    /// webrtc output.
    pub fn viewer_totals(&self, name: &str) -> Option<Totals> {
        if let Some(room) = self.room(name) {
            // The participants' outputs share the room's ledger: their live sessions, read
            // under every output's session lock (taken in name order) and then the ledger,
            // so a session moving into it is counted once.
            let mut outputs: Vec<Arc<WebRtcOutput>> =
                room.streams().iter().filter_map(|s| self.get(s)).collect();
            outputs.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
            let tables: Vec<_> = outputs.iter().map(|o| o.lock_sessions()).collect();
            let mut t = ledger_total(&self.viewer_ledgers, name).unwrap_or_default();
            for table in &tables {
                for h in table.by_id.values().chain(table.ending.values()) {
                    t.add(&h.stats.borrow());
                }
            }
            return Some(t);
        }
        match self.get(name) {
            Some(out) => Some(out.totals()),
            None => ledger_total(&self.viewer_ledgers, name),
        }
    }

    /// The live viewer sessions of pipeline `name`: a room's are those watching any of its
    /// participants.
    /// The rungs of the pipeline's encoder ladder, if it has one and runs.
    pub fn ladder_of(&self, name: &str) -> Option<Vec<super::ladder::RungInfo>> {
        let out = self.get(name)?;
        let ladder = out.lock_feed().ladder.clone()?;
        Some(ladder.info())
    }

    pub fn viewers_of(&self, name: &str) -> Vec<super::types::ViewerStats> {
        match self.room(name) {
            Some(room) => room
                .streams()
                .iter()
                .filter_map(|s| self.get(s))
                .flat_map(|out| out.viewers())
                .collect(),
            None => self.get(name).map(|o| o.viewers()).unwrap_or_default(),
        }
    }

    /// The live publishers of pipeline `name`: a webrtc source's one, or a room's participants.
    pub fn publishers_of(&self, name: &str) -> Vec<super::types::ViewerStats> {
        match self.room(name) {
            Some(room) => room.publishers(),
            None => self
                .ingest(name)
                .map(|p| p.publishers())
                .unwrap_or_default(),
        }
    }

    /// Publisher totals of a webrtc-source pipeline since the service started.
    pub fn publisher_totals(&self, name: &str) -> Option<Totals> {
        if let Some(room) = self.room(name) {
            return Some(room.totals());
        }
        match self.ingest(name) {
            Some(point) => Some(point.totals()),
            None => ledger_total(&self.publisher_ledgers, name),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<WebRtcOutput>>> {
        self.outputs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends every viewer and publisher session and waits (bounded) until each one's pipeline
    /// is torn down: what serve's shutdown waits for after the pipelines stopped.
    pub async fn shutdown(&self) {
        let mut ingests: Vec<String> = self
            .ingests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ingests.extend(
            self.rooms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned(),
        );
        for name in ingests {
            self.detach_ingest(&name).await;
        }
        for name in self.names() {
            self.detach(&name);
        }
        self.whip.stop_all();
        let sessions = &self.config.sessions;
        sessions.close();
        if tokio::time::timeout(std::time::Duration::from_secs(10), sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} WebRTC session(s) still ending after 10 s",
                sessions.len()
            );
        }
    }

    /// Where producers join when nothing else is configured.
    pub fn set_embedded_signalling(&self, url: String) {
        *self.embedded.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
    }

    pub fn get(&self, name: &str) -> Option<Arc<WebRtcOutput>> {
        self.lock().get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
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
        let room = self
            .rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(room) = room {
            room.close().await;
        }
        self.detach(name);
    }

    /// A webrtc source's ingest point, or a room participant's (`room/participant`).
    pub fn ingest(&self, name: &str) -> Option<Arc<super::ingest::IngestPoint>> {
        if let Some((room, participant)) = name.split_once('/') {
            return self.room(room)?.participant(participant);
        }
        self.ingests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The pipelines of the publishers of stream `name`: a webrtc source's (or a room
    /// participant's) one, or every participant's of a room.
    pub fn publisher_pipelines(&self, name: &str) -> Vec<gst::Pipeline> {
        if let Some(room) = self.room(name) {
            return room.publisher_pipelines();
        }
        self.ingest(name)
            .and_then(|p| p.publisher_pipeline())
            .into_iter()
            .collect()
    }

    /// The room pipeline `name`, while it runs.
    pub fn room(&self, name: &str) -> Option<Arc<super::room::Room>> {
        self.rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The room a participant's stream (`room/participant`) belongs to.
    fn room_of(&self, stream: &str) -> Option<Arc<super::room::Room>> {
        self.room(stream.split_once('/')?.0)
    }
}

/// A webrtc-source pipeline's relay: each publisher's pipeline feeds the pipeline's webrtc
/// output while it lasts (its appsinks become the viewers' stream producers, its clock theirs);
/// between publishers the viewers wait, as they wait for a restarted pipeline.
#[derive(Clone)]
pub struct Relay {
    /// Every reader kind (WebRTC viewers through this registry, TCP readers, ...).
    readers: std::sync::Weak<dyn Readers>,
    events: crate::events::EventBus,
}

impl Relay {
    /// A publisher's pipeline is built: its appsinks become the readers' streams.
    pub fn started(&self, name: &str, pipeline: &gst::Pipeline, plan: &crate::assemble::Plan) {
        if let Some(readers) = self.readers.upgrade()
            && let Err(e) = readers.attach(name, pipeline, plan, &self.events)
        {
            tracing::warn!("{name}: cannot relay the publisher: {e}");
        }
    }

    /// The publisher's pipeline plays (it waits for the publisher's first media): viewers
    /// share its clock and base time, which are final only now.
    pub fn playing(&self, name: &str, pipeline: &gst::Pipeline) {
        if let Some(readers) = self.readers.upgrade() {
            readers.playing(name, pipeline);
        }
    }

    /// A room's participant left: its stream's readers (viewers, recorders) end.
    pub fn detach(&self, name: &str) {
        if let Some(readers) = self.readers.upgrade() {
            readers.detach(name);
        }
    }

    /// The publisher left (its stream drained): its recordings are finished, its viewers wait
    /// for the next one (same codec) or end.
    pub async fn ended(&self, name: &str) {
        if let Some(readers) = self.readers.upgrade() {
            readers.finish(name, true).await;
            readers.suspend(name);
        }
    }
}

/// How the supervisor hands each run of a pipeline to its WebRTC viewers (see [`crate::hub`]).
impl Readers for Registry {
    /// Takes the appsinks of `taps` from a freshly built pipeline as stream producers.
    /// Call before the pipeline plays; viewers are accepted once [`Registry::playing`] is called.
    fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        plan: &crate::assemble::Plan,
        events: &crate::events::EventBus,
    ) -> Result<(), String> {
        self.whip.attach(name, pipeline, plan, events)?;
        // One webrtc output per pipeline is what viewers address (by pipeline name).
        let Some(tap) = plan.webrtc.first() else {
            return Ok(());
        };
        let requests = self.keyframe_requests(name);
        let producer = |sink: &str| -> Result<StreamProducer, String> {
            let (appsink, producer) = crate::hub::producer(pipeline, sink)?;
            if sink == tap.video_sink {
                if tap.codec == VideoCodec::H264 {
                    super::keyframes::mark_h264_keyframes(appsink.upcast_ref());
                }
                super::keyframes::throttle_requests(appsink.upcast_ref(), requests.clone());
            }
            Ok(producer)
        };
        let video = Some(producer(&tap.video_sink)?);
        let audio = tap.audio_sink.as_deref().map(producer).transpose()?;
        // The ladder's other rungs are prepared like the top.
        let prepare = |appsink: &gst_app::AppSink| {
            if tap.codec == VideoCodec::H264 {
                super::keyframes::mark_h264_keyframes(appsink.upcast_ref());
            }
            super::keyframes::throttle_requests(appsink.upcast_ref(), requests.clone());
        };
        // A room participant's watchers chat with the whole room; other viewers with each other.
        let room = self.room_of(name);
        let (chat_tx, chat_rx) = match &room {
            Some(room) => (room.chat_sender(), mpsc::channel(1).1),
            None => mpsc::channel(CHAT_QUEUE),
        };
        // A pipeline restarting after an error (or the next publisher): its waiting viewers
        // follow the new run, if it has the same ladder (a publisher that sends other
        // simulcast layers than the last one gets a new output; the old one's viewers end).
        let rungs = |o: &WebRtcOutput| o.lock_feed().ladder.as_ref().map_or(0, |l| l.len());
        if let Some(old) = self.get(name)
            && rungs(&old) == tap.ladder.len()
            && old.resume_with(tap, video.clone(), audio.clone())
        {
            if let (Some(ladder), Some(top)) = (old.lock_feed().ladder.clone(), &video) {
                ladder.resume(pipeline, &tap.ladder, top, &prepare)?;
            }
            return Ok(());
        }
        let ladder = match (&video, tap.ladder.is_empty()) {
            (Some(top), false) => Some(super::ladder::Ladder::new(
                pipeline,
                &tap.ladder,
                top,
                &prepare,
                (events.clone(), name),
            )?),
            _ => None,
        };
        let output = Arc::new(WebRtcOutput {
            pipeline: name.to_string(),
            tap: tap.clone(),
            feed: Mutex::new(Feed {
                video,
                audio,
                ladder,
                ..Feed::default()
            }),
            sessions: Mutex::new(Sessions::default()),
            chat: chat_tx,
            config: self.config.clone(),
            producer: Mutex::new(None),
            forwarder: Mutex::new(None),
            chat_relay: Mutex::new(None),
            events: events.clone(),
            ended: self.ledger(&self.viewer_ledgers, name),
        });
        if room.is_none() {
            let relay = tokio::spawn(WebRtcOutput::relay_chat(
                Arc::downgrade(&output),
                chat_rx,
                self.chat.clone(),
            ));
            *output.chat_relay.lock().unwrap_or_else(|p| p.into_inner()) = Some(relay);
        }
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

    /// The pipeline is playing: viewers share its clock and base time from now on, and the
    /// output registers as a producer with its signalling server.
    fn playing(&self, name: &str, pipeline: &gst::Pipeline) {
        self.whip.playing(name, pipeline);
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
    /// [`WebRtcConfig::resume_grace`] at most) and follow the next run, without renegotiating. Without
    /// viewers this is [`Registry::detach`].
    fn suspend(&self, name: &str) {
        // A `whip` output's session ends with the run; the next run publishes anew.
        self.whip.detach(name);
        let Some(out) = self.get(name) else { return };
        let Some(generation) = out.suspend() else {
            return self.detach(name);
        };
        tracing::info!("{name}: viewers wait for the pipeline to restart");
        let (registry, name) = (self.me.clone(), name.to_string());
        let grace = self.config.resume_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
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
    fn detach(&self, name: &str) {
        self.whip.detach(name);
        if let Some(out) = self.lock().remove(name) {
            out.end_all();
        }
    }

    /// Opens a webrtc-source pipeline to publishers.
    fn open_ingest(
        &self,
        name: &str,
        plan: crate::assemble::Plan,
        recordings: Arc<crate::record::Recordings>,
        hooks: crate::hooks::HookHost,
        relay_to: std::sync::Weak<dyn Readers>,
    ) {
        let ledger = self.ledger(&self.publisher_ledgers, name);
        // Each publisher's stream is relayed to its readers (viewers, TCP clients, recorders)
        // as it arrives.
        let relay = plan.has_readers().then(|| Relay {
            readers: relay_to,
            events: hooks.events.clone(),
        });
        let room = plan.ingest.and_then(|i| i.room);
        let parts = super::ingest::IngestParts {
            plan,
            recordings,
            hooks,
            config: self.config.clone(),
            ended: ledger,
            relay,
        };
        if let Some(max) = room {
            let room = super::room::Room::new(name, max, parts, self.me.clone());
            self.rooms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string(), room);
            return;
        }
        let pull = parts.plan.pull.clone();
        let point = super::ingest::IngestPoint::new(name, parts, None);
        if let Some(pull) = pull {
            // A whep source: its one publisher is the stream it pulls.
            point.pull_from(pull);
            self.ingests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string(), point);
            return;
        }
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
            .insert(name.to_string(), point);
    }

    fn close_ingest<'a>(
        &'a self,
        name: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.detach_ingest(name))
    }
}
