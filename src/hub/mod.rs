//! The stream hub: how a running pipeline's streams reach the readers that live outside its
//! GStreamer pipeline.
//!
//! A pipeline's encoded tracks (its shared encoder's output, or what a publisher sends) end in
//! appsinks, one set per reader kind that wants them ([`crate::assemble::Plan`]'s `webrtc`,
//! `tcp` and `records` taps); [`Readers::attach`] turns them into streams whose readers attach and detach at
//! run time, each behind its own bounded, leaky, counted queue (gstreamer-utils'
//! `StreamProducer` with one appsrc per reader). Reader kinds: WebRTC viewers
//! ([`crate::webrtc`], a pipeline per viewer), TCP readers ([`tcp`], a pipeline per output
//! serving MPEG-TS) and record readers ([`record`], a pipeline per output writing segments). The supervisor only knows the trait, through a [`ReaderSet`] of
//! every kind, so dependencies run one way: supervisor → hub ← readers.

pub mod hls;
pub mod hooks;
pub mod jpeg_framing;
pub mod jpeg_tcp;
pub mod record;
pub mod rtsp;
mod rtsp_auth;
pub mod tcp;

use crate::assemble::Plan;
use crate::events::EventBus;
use crate::hooks::HookHost;
use crate::record::Recordings;
use gst::prelude::*;
use gst_utils::streamproducer::ConsumptionLink;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

/// The stream of the appsink `sink` in `source`: a producer its readers' appsrcs consume.
/// No clock sync: a frame goes to the readers the moment it arrives (the source paces the
/// stream). The source's end-of-stream is not its readers' end: the reader kinds end them when
/// the pipeline stops, or keep them for its next run.
pub fn producer(
    source: &gst::Pipeline,
    sink: &str,
) -> Result<(gst_app::AppSink, gst_utils::streamproducer::StreamProducer), String> {
    let appsink = source
        .by_name(sink)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| format!("the assembled pipeline has no appsink {sink}"))?;
    let settings = gst_utils::streamproducer::ProducerSettings { sync: false };
    let producer = gst_utils::streamproducer::StreamProducer::with(&appsink, settings);
    producer.set_forward_events([gst::EventType::Gap]);
    Ok((appsink, producer))
}

/// How far a reader pipeline's running time is ahead of its source's (on a clock of its own,
/// or on the source's with an earlier base time): every buffer is due the moment it arrives,
/// so nothing in it (a muxer) waits for a late one.
const CLOCK_MARGIN: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// A reader's pipeline from its launch line, named `name`.
pub(crate) fn reader_pipeline(launch: &str, name: &str) -> Result<gst::Pipeline, String> {
    let pipeline = gst::parse::launch(launch)
        .map_err(|e| format!("cannot build {name}: {}", e.message()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| format!("{name} is not a pipeline"))?;
    pipeline.set_property("name", name);
    Ok(pipeline)
}

/// Feeds the appsrc `appsrc` of `reader` from the appsink `appsink` of `source`: it holds at
/// most `max_time` before it drops (counted in the link), and gets the source's end-of-stream.
pub(crate) fn feed(
    source: &gst::Pipeline,
    appsink: &str,
    reader: &gst::Pipeline,
    appsrc: &str,
    max_time: gst::ClockTime,
) -> Result<(gst_app::AppSrc, ConsumptionLink), String> {
    let appsrc = reader
        .by_name(appsrc)
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| format!("{} has no appsrc {appsrc}", reader.name()))?;
    let (_, producer) = producer(source, appsink)?;
    producer.set_forward_events([gst::EventType::Gap, gst::EventType::Eos]);
    let settings = gst_utils::streamproducer::ConsumerSettings {
        max_time,
        ..Default::default()
    };
    let link = producer
        .add_consumer_with(&appsrc, settings)
        .map_err(|e| format!("cannot attach {}: {e}", reader.name()))?;
    Ok((appsrc, link))
}

/// Starts a reader on a clock of its own, [`CLOCK_MARGIN`] ahead of its source's running time.
pub(crate) fn play_ahead(reader: &gst::Pipeline) -> Result<(), String> {
    let clock = gst::SystemClock::obtain();
    reader.use_clock(Some(&clock));
    reader.set_start_time(gst::ClockTime::NONE);
    reader.set_base_time(clock.time().saturating_sub(CLOCK_MARGIN));
    reader
        .set_state(gst::State::Playing)
        .map(|_| ())
        .map_err(|_| format!("{} did not start", reader.name()))
}

/// Starts a reader that decodes a stream: it must start on a keyframe, asked for through the
/// element `keyframes` (an identity before its decoder) now and again until one comes (a
/// publisher sends none unasked, and the one it sent on connecting may have gone by); then it
/// plays ahead of its source ([`play_ahead`]).
pub(crate) fn start_decoding(reader: &gst::Pipeline, keyframes: &str) -> Result<(), String> {
    if let Some(asker) = reader
        .by_name(keyframes)
        .and_then(|identity| KeyframeAsker::on(&identity, None))
    {
        asker.ask();
    }
    play_ahead(reader)
}

/// Hands each error of `reader` to `report` (described, with the element's path), on
/// GStreamer's thread: it should only log and record. Other messages are dropped.
pub(crate) fn on_errors(
    reader: &gst::Pipeline,
    report: impl Fn(&gst::Message, String) + Send + Sync + 'static,
) -> Result<(), String> {
    let bus = reader
        .bus()
        .ok_or_else(|| format!("{} has no bus", reader.name()))?;
    bus.set_sync_handler(move |_, msg| {
        if let gst::MessageView::Error(e) = msg.view() {
            let error = crate::pipeline::describe_error(msg, &e.error(), e.debug().as_deref());
            report(msg, error);
        }
        gst::BusSyncReply::Drop
    });
    Ok(())
}

/// How long a reader waits for the keyframe it asked for before it asks again.
const KEYFRAME_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks a stream's source for a keyframe through a reader's parser, and again each second
/// until one has left the parser: a request can be lost on the way (made before the source's
/// video is linked, or before its publisher's RTP session knows the sender), and a reader
/// must not wait for a publisher's next keyframe of its own accord (browsers and aiortc send
/// none unasked). A reader that needs keyframes at a steady pace (segments) also asks
/// whenever none has come for its interval.
#[derive(Clone)]
pub(crate) struct KeyframeAsker {
    /// Asked from the parser's input.
    upstream: gst::glib::WeakRef<gst::Pad>,
    state: Arc<Mutex<Asking>>,
}

#[derive(Default)]
struct Asking {
    /// Since when a keyframe is wanted (None: nobody waits).
    wanted: Option<std::time::Instant>,
    /// Keyframes are wanted at least this often.
    every: Option<std::time::Duration>,
    last_keyframe: Option<std::time::Instant>,
    last_request: Option<std::time::Instant>,
}

impl Asking {
    /// Whether a frame leaving the parser at `now` calls for a request.
    fn passed(&mut self, keyframe: bool, now: std::time::Instant) -> bool {
        let since = |t: Option<std::time::Instant>| t.map(|t| now.saturating_duration_since(t));
        if keyframe {
            self.wanted = None;
            self.last_keyframe = Some(now);
            return false;
        }
        let retry = since(self.last_request).is_none_or(|d| d >= KEYFRAME_RETRY);
        let waited = self.wanted.is_some() && retry;
        let due = match (self.every, since(self.last_keyframe)) {
            (Some(every), Some(gone)) => gone >= every && retry,
            _ => false,
        };
        if waited || due {
            self.last_request = Some(now);
        }
        waited || due
    }
}

impl KeyframeAsker {
    /// Watches the keyframes leaving `parse`; nothing is asked until [`KeyframeAsker::ask`],
    /// or, with `every`, until the first keyframe is more than `every` old.
    pub(crate) fn on(
        parse: &gst::Element,
        every: Option<std::time::Duration>,
    ) -> Option<KeyframeAsker> {
        let (upstream, downstream) = (parse.static_pad("sink")?, parse.static_pad("src")?);
        let asker = KeyframeAsker {
            upstream: upstream.downgrade(),
            state: Arc::new(Mutex::new(Asking {
                every,
                ..Asking::default()
            })),
        };
        let watching = asker.clone();
        downstream.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let keyframe = info
                .buffer()
                .is_some_and(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
            let again = watching
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .passed(keyframe, std::time::Instant::now());
            if again {
                watching.request();
            }
            gst::PadProbeReturn::Ok
        });
        Some(asker)
    }

    /// A keyframe is wanted now.
    pub(crate) fn ask(&self) {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            state.wanted = Some(now);
            state.last_request = Some(now);
        }
        self.request();
    }

    fn request(&self) {
        if let Some(pad) = self.upstream.upgrade() {
            let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            pad.push_event(event);
        }
    }
}

/// A kind of reader, told about each run of a pipeline.
pub trait Readers: Send + Sync {
    /// A freshly built pipeline (not yet playing): the plan's taps for this kind become
    /// streams. A pipeline that restarts after an error keeps its waiting readers, which
    /// follow the new run.
    fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        plan: &Plan,
        events: &EventBus,
    ) -> Result<(), String>;

    /// The pipeline plays: readers are served from now on (its clock and base time are
    /// final), and its streams are announced (signalling producers).
    fn playing(&self, name: &str, pipeline: &gst::Pipeline);

    /// The run is over, before [`Readers::suspend`] or [`Readers::detach`]: readers that write
    /// files finish them (bounded). `drained`: the run's end-of-stream went through the
    /// pipeline (stopped, or its source ended), so it is on its way to the readers; otherwise
    /// (it failed) they end their streams themselves.
    fn finish<'a>(
        &'a self,
        _name: &'a str,
        _drained: bool,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(std::future::ready(()))
    }

    /// The pipelines of `name`'s readers of this kind that have one per output (their
    /// elements are named as the outputs' would be in the source's pipeline).
    fn pipelines(&self, _name: &str) -> Vec<gst::Pipeline> {
        Vec::new()
    }

    /// The buffers each of `name`'s readers of this kind with a pipeline of its own has dropped
    /// (its bounded queue was full), by output (`out{N}`).
    fn dropped(&self, _name: &str) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// The pipeline failed and will restart, or a relay's publisher left: readers that can
    /// wait for the next run do (bounded), the others end (by default, all of this kind).
    fn suspend(&self, name: &str) {
        self.detach(name);
    }

    /// The pipeline stopped: its readers end.
    fn detach(&self, name: &str);

    /// A pipeline whose source is published to it (a webrtc source): open it to publishers;
    /// each publisher's pipeline is handed to `relay_to` (every reader kind) like a run. Only
    /// the kind that takes publishers does anything.
    fn open_ingest(
        &self,
        _name: &str,
        _plan: Plan,
        _recordings: Arc<Recordings>,
        _hooks: HookHost,
        _relay_to: Weak<dyn Readers>,
    ) {
    }

    /// Close it again: the publisher (if any) ends and its recording is finalized first; the
    /// other kinds let go of the publisher's readers.
    fn close_ingest<'a>(&'a self, name: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.detach(name) })
    }
}

/// A reader's pipeline of its own, serving one output; set to NULL when it goes (a small
/// pipeline: a file sink or a socket closes at once).
pub(crate) struct OwnPipeline {
    pub(crate) pipeline: gst::Pipeline,
    /// The output it serves, `out{N}`.
    pub(crate) output: String,
    /// Its feeds from the stream (their bounded queues count what they drop).
    pub(crate) links: Vec<ConsumptionLink>,
}

impl Drop for OwnPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A reader kept in a [`ReaderTable`].
pub(crate) trait HasPipeline {
    fn own(&self) -> &OwnPipeline;
}

/// The running readers of a kind that has a pipeline per output, by pipeline name.
pub(crate) struct ReaderTable<R>(Mutex<HashMap<String, Vec<R>>>);

impl<R> Default for ReaderTable<R> {
    fn default() -> Self {
        ReaderTable(Mutex::default())
    }
}

impl<R: HasPipeline> ReaderTable<R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<R>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run's readers replace the previous run's, which end (outside the lock).
    pub(crate) fn replace(&self, name: &str, readers: Vec<R>) {
        let old = std::mem::replace(self.lock().entry(name.to_string()).or_default(), readers);
        drop(old);
    }

    pub(crate) fn take(&self, name: &str) -> Vec<R> {
        self.lock().remove(name).unwrap_or_default()
    }

    /// Runs `f` on `name`'s readers, if it has any.
    pub(crate) fn with<T>(&self, name: &str, f: impl FnOnce(&mut Vec<R>) -> T) -> Option<T> {
        self.lock().get_mut(name).map(f)
    }

    pub(crate) fn pipelines(&self, name: &str) -> Vec<gst::Pipeline> {
        self.with(name, |readers| {
            readers.iter().map(|r| r.own().pipeline.clone()).collect()
        })
        .unwrap_or_default()
    }

    pub(crate) fn dropped(&self, name: &str) -> Vec<(String, u64)> {
        self.with(name, |readers| {
            readers
                .iter()
                .map(|r| {
                    let own = r.own();
                    (
                        own.output.clone(),
                        own.links.iter().map(|l| l.dropped()).sum(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    }
}

/// Every reader kind at once: what the supervisor hands each run to.
pub struct ReaderSet {
    kinds: Vec<Arc<dyn Readers>>,
}

impl ReaderSet {
    pub fn new(kinds: Vec<Arc<dyn Readers>>) -> Arc<ReaderSet> {
        Arc::new(ReaderSet { kinds })
    }
}

impl Readers for ReaderSet {
    fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        plan: &Plan,
        events: &EventBus,
    ) -> Result<(), String> {
        for (i, kind) in self.kinds.iter().enumerate() {
            if let Err(e) = kind.attach(name, pipeline, plan, events) {
                // The kinds attached so far let this run go again.
                for done in &self.kinds[..i] {
                    done.detach(name);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn playing(&self, name: &str, pipeline: &gst::Pipeline) {
        self.kinds.iter().for_each(|k| k.playing(name, pipeline));
    }

    fn finish<'a>(
        &'a self,
        name: &'a str,
        drained: bool,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            for kind in &self.kinds {
                kind.finish(name, drained).await;
            }
        })
    }

    fn pipelines(&self, name: &str) -> Vec<gst::Pipeline> {
        self.kinds.iter().flat_map(|k| k.pipelines(name)).collect()
    }

    fn dropped(&self, name: &str) -> Vec<(String, u64)> {
        self.kinds.iter().flat_map(|k| k.dropped(name)).collect()
    }

    fn suspend(&self, name: &str) {
        self.kinds.iter().for_each(|k| k.suspend(name));
    }

    fn detach(&self, name: &str) {
        self.kinds.iter().for_each(|k| k.detach(name));
    }

    fn open_ingest(
        &self,
        name: &str,
        plan: Plan,
        recordings: Arc<Recordings>,
        hooks: HookHost,
        relay_to: Weak<dyn Readers>,
    ) {
        for kind in &self.kinds {
            kind.open_ingest(
                name,
                plan.clone(),
                recordings.clone(),
                hooks.clone(),
                relay_to.clone(),
            );
        }
    }

    fn close_ingest<'a>(&'a self, name: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            for kind in &self.kinds {
                kind.close_ingest(name).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_wanted_keyframe_is_asked_again_each_second_until_one_passes() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut asking = Asking {
            wanted: Some(t0),
            last_request: Some(t0),
            ..Asking::default()
        };
        assert!(!asking.passed(false, at(500)));
        assert!(asking.passed(false, at(1000)));
        assert!(!asking.passed(false, at(1500)));
        assert!(!asking.passed(true, at(1600)));
        assert!(!asking.passed(false, at(5000)));
    }

    #[test]
    fn a_paced_reader_asks_when_no_keyframe_came_for_its_interval() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut asking = Asking {
            every: Some(Duration::from_secs(1)),
            ..Asking::default()
        };
        // Nothing is due before the first keyframe (that one is asked for on its own).
        assert!(!asking.passed(false, at(0)));
        assert!(!asking.passed(true, at(100)));
        assert!(!asking.passed(false, at(900)));
        assert!(asking.passed(false, at(1100)));
        // Not again within a second of the request, then again.
        assert!(!asking.passed(false, at(1500)));
        assert!(asking.passed(false, at(2100)));
        // A keyframe of the source's own accord resets the pace.
        assert!(!asking.passed(true, at(2200)));
        assert!(!asking.passed(false, at(3000)));
    }
}
