//! Frame hooks: decoded video handed to Rust code, without stalling the live stream.
//!
//! Each `[[hook]]` of a description gets its own branch off the raw video tee:
//! `queue (leaky, 2 frames) → videoconvert/videoscale/videorate as needed → appsink (1 frame,
//! drop)`. The branch can only hold a couple of frames, so a slow hook loses frames (counted as
//! dropped) and the outputs keep their full rate. A thread per hook pulls frames and calls
//! [`FrameHook::on_frame`] with a [`Frame`] that maps the buffer without copying.
//!
//! Transform hooks (`mode = "transform"`) sit on the path instead, before the raw video is
//! fanned out: each frame is offered to the hook's worker thread and waits at most the hook's
//! latency budget for the changed frame; a late or busy hook lets the original pass (counted
//! as passed through), so the outputs never wait longer than the budget.
//!
//! Rust hooks are registered by name ([`register`]); the built-ins are `stats` (mean luma and
//! frame interval), `motion`, `invert` (a transform) and `snapshot` (the latest frame as JPEG).
//! [`process`] runs an external program per hook; [`socket`] serves frames to any number of
//! subscribers.

mod builtin;
pub mod convert;
mod frame;
pub mod framing;
pub mod process;
pub mod shm;
pub mod socket;

use crate::events::{Event, EventBus};
use builtin::{Invert, Motion, Stamp, Stats};
pub use builtin::{STAMP_BITS, STAMP_BLOCK, read_stamp, stamp};
pub(crate) use frame::keep_sender_time;
pub use frame::{Frame, FrameMut, SENDER_TIME};
use gst::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// What a hook reports: a kind and any JSON fields; published on `/api/events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookEvent {
    pub kind: String,
    pub fields: serde_json::Value,
}

/// Code that looks at live frames. Runs on a thread of its own; a slow hook only loses frames.
pub trait FrameHook: Send {
    fn on_frame(&mut self, frame: &Frame) -> Option<HookEvent>;

    /// Called instead of [`FrameHook::on_frame`] when the hook is a transform
    /// (`mode = "transform"`): change the pixels in place. By default the hook only looks.
    fn transform(&mut self, frame: &mut FrameMut) -> Option<HookEvent> {
        self.on_frame(&frame.as_frame())
    }
}

/// Options of a `[[hook]]` table that a hook factory may read (`every`, `threshold`, ...).
pub type HookOptions = serde_json::Map<String, serde_json::Value>;

type Factory = Box<dyn Fn(&HookOptions) -> Box<dyn FrameHook> + Send + Sync>;

fn factories() -> &'static Mutex<HashMap<String, Factory>> {
    static F: OnceLock<Mutex<HashMap<String, Factory>>> = OnceLock::new();
    F.get_or_init(|| {
        let mut m: HashMap<String, Factory> = HashMap::new();
        m.insert("stats".into(), Box::new(|o| Box::new(Stats::new(o))));
        m.insert("motion".into(), Box::new(|o| Box::new(Motion::new(o))));
        m.insert("invert".into(), Box::new(|_| Box::new(Invert)));
        m.insert("stamp".into(), Box::new(|_| Box::new(Stamp)));
        Mutex::new(m)
    })
}

/// Makes a Rust hook available to description files as `kind = "rust", name = NAME`.
pub fn register(
    name: &str,
    factory: impl Fn(&HookOptions) -> Box<dyn FrameHook> + Send + Sync + 'static,
) {
    factories()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_string(), Box::new(factory));
}

fn make(name: &str, options: &HookOptions) -> Option<Box<dyn FrameHook>> {
    factories()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .map(|f| f(options))
}

/// Counters of one hook, as `GET /api/pipelines/{name}` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct HookStats {
    pub name: String,
    pub kind: String,
    /// "observe" or "transform".
    pub mode: &'static str,
    /// Frames that reached the hook's branch.
    pub arrived: u64,
    /// Frames the hook processed.
    pub delivered: u64,
    /// Frames the hook never saw: it was busy (observe: its bounded branch dropped them;
    /// counted beyond the 3 frames the branch holds).
    pub dropped: u64,
    /// Transform hooks: frames that went on unchanged because the hook was busy or missed
    /// its latency budget.
    pub passed_through: u64,
    pub processing_p50_ms: Option<f64>,
    pub processing_p99_ms: Option<f64>,
}

/// Shared between a hook's thread, its branch's probe and the API.
pub struct HookState {
    pub name: String,
    pub kind: String,
    transform: bool,
    arrived: AtomicU64,
    delivered: AtomicU64,
    passed_through: AtomicU64,
    /// The last 512 processing times (µs): enough for stable percentiles, bounded memory.
    times: Mutex<std::collections::VecDeque<u64>>,
    /// The latest JPEG of a snapshot hook.
    pub latest_jpeg: Mutex<Option<Vec<u8>>>,
    stop: AtomicBool,
    /// Ends what the hook may be blocked on (a process hook's child), when stopping stalls.
    abort: Mutex<Abort>,
}

impl HookState {
    pub fn stats(&self) -> HookStats {
        let arrived = self.arrived.load(Ordering::Relaxed);
        let delivered = self.delivered.load(Ordering::Relaxed);
        let mut times: Vec<u64> = self
            .times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        times.sort_unstable();
        let pct = |p: f64| -> Option<f64> {
            let i = ((times.len() as f64 - 1.0) * p).round() as usize;
            times.get(i).map(|us| *us as f64 / 1000.0)
        };
        // An observe hook's branch holds up to 3 frames (2 queued, 1 in the appsink).
        let in_flight = if self.transform { 0 } else { 3 };
        HookStats {
            name: self.name.clone(),
            kind: self.kind.clone(),
            mode: if self.transform {
                "transform"
            } else {
                "observe"
            },
            arrived,
            delivered,
            dropped: arrived.saturating_sub(delivered).saturating_sub(in_flight),
            passed_through: self.passed_through.load(Ordering::Relaxed),
            processing_p50_ms: pct(0.5),
            processing_p99_ms: pct(0.99),
        }
    }

    fn record(&self, took: Duration) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        if times.len() == 512 {
            times.pop_front();
        }
        times.push_back(took.as_micros() as u64);
    }
}

/// A planned hook: which element feeds it and what runs on the frames.
#[derive(Debug, Clone, PartialEq)]
pub struct HookTap {
    /// The branch's appsink (observe hooks) or the `identity` on the path (transforms).
    pub element: String,
    pub name: String,
    /// "rust" (a registered hook), "process", "socket", or "snapshot" (the branch ends in
    /// jpegenc).
    pub kind: String,
    pub options: HookOptions,
    /// Transform hooks: how long a frame may wait for the hook before it goes on unchanged.
    pub budget: Option<Duration>,
    /// Observe hooks whose branch delivers I420 but which want RGB, BGR or GRAY8: converted
    /// in the hook's thread (see [`convert`]).
    pub convert: Option<convert::Wanted>,
}

/// The hooks of running pipelines, by pipeline name (what the API reads counters from).
pub type HookTable = Mutex<HashMap<String, Vec<Arc<HookState>>>>;

/// Where the hooks of a pipeline report: the event stream and the table the API reads.
#[derive(Clone, Default)]
pub struct HookHost {
    pub events: EventBus,
    pub table: Arc<HookTable>,
}

/// A frame offered to a transform hook's worker; the changed frame goes back on `reply`.
struct Job {
    buffer: gst::Buffer,
    info: gst_video::VideoInfo,
    reply: mpsc::SyncSender<gst::Buffer>,
}

/// Where a transform's probe offers frames; emptied when the hooks stop, which ends the worker.
type JobSlot = Arc<Mutex<Option<mpsc::SyncSender<Job>>>>;

/// The hooks of a running pipeline. Dropping them stops their threads (without waiting);
/// [`RunningHooks::stop`] also waits for them.
pub struct RunningHooks {
    pub states: Vec<Arc<HookState>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    jobs: Vec<JobSlot>,
    registered: Option<(Arc<HookTable>, String)>,
    /// The pipeline the hooks' branches are in when it is not the source's (a decoder that
    /// reads the stream, see [`crate::hub::hooks`]), and what keeps it fed; stopped with them.
    feeder: Option<(gst::Pipeline, Box<dyn Send + Sync>)>,
}

impl RunningHooks {
    /// Starts a thread per hook on the built (not yet playing) pipeline and lists the hooks in
    /// `host`'s table under `pipeline_name`.
    pub fn start(
        pipeline_name: &str,
        pipeline: &gst::Pipeline,
        taps: &[HookTap],
        host: &HookHost,
    ) -> Result<RunningHooks, String> {
        let mut running = RunningHooks {
            states: Vec::new(),
            threads: Vec::new(),
            jobs: Vec::new(),
            registered: None,
            feeder: None,
        };
        for tap in taps {
            let element = pipeline
                .by_name(&tap.element)
                .ok_or_else(|| format!("the assembled pipeline has no element {}", tap.element))?;
            let (hook, abort) = instantiate(tap, pipeline_name, &host.events)?;
            let state = Arc::new(HookState {
                name: tap.name.clone(),
                kind: tap.kind.clone(),
                transform: tap.budget.is_some(),
                arrived: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                passed_through: AtomicU64::new(0),
                times: Mutex::new(std::collections::VecDeque::with_capacity(512)),
                latest_jpeg: Mutex::new(None),
                stop: AtomicBool::new(false),
                abort: Mutex::new(abort),
            });
            let (s, bus, name) = (
                state.clone(),
                host.events.clone(),
                pipeline_name.to_string(),
            );
            let spawn = std::thread::Builder::new().name(format!("hook-{}", tap.name));
            let thread = match (tap.budget, hook) {
                (Some(budget), Some(hook)) => {
                    // A rendezvous: a frame is handed over only while the worker waits for
                    // one, so a busy worker costs the stream nothing.
                    let (tx, rx) = mpsc::sync_channel(0);
                    let slot: JobSlot = Arc::new(Mutex::new(Some(tx)));
                    offer_frames(&element, budget, slot.clone(), state.clone())?;
                    running.jobs.push(slot);
                    spawn.spawn(move || run_transform(rx, hook, s, bus, name))
                }
                (_, hook) => {
                    let appsink = element
                        .downcast::<gst_app::AppSink>()
                        .map_err(|_| format!("{} is not an appsink", tap.element))?;
                    // Count what reaches the branch (its queue); the difference to what the
                    // hook took is what it dropped.
                    let head = pipeline
                        .by_name(&format!("{}_queue", tap.element))
                        .unwrap_or_else(|| appsink.clone().upcast());
                    if let Some(pad) = head.static_pad("sink") {
                        let s = state.clone();
                        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                            s.arrived.fetch_add(1, Ordering::Relaxed);
                            gst::PadProbeReturn::Ok
                        });
                    }
                    let path = tap
                        .options
                        .get("path")
                        .and_then(|p| p.as_str())
                        .map(str::to_string);
                    let converter = tap.convert.map(convert::Converter::new);
                    let taker = Taker {
                        appsink,
                        hook,
                        converter,
                        snapshot_path: path,
                    };
                    spawn.spawn(move || run(taker, s, bus, name))
                }
            }
            .map_err(|e| format!("cannot start a hook thread: {e}"))?;
            running.states.push(state);
            running.threads.push(thread);
        }
        if !running.states.is_empty() {
            host.table
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(pipeline_name.to_string(), running.states.clone());
            running.registered = Some((host.table.clone(), pipeline_name.to_string()));
        }
        Ok(running)
    }

    /// Tells every hook to finish: observe hooks take what is left in their appsink, transform
    /// workers end, the entry leaves the table (if it is still ours).
    fn signal_stop(&mut self) {
        for s in &self.states {
            s.stop.store(true, Ordering::Relaxed);
        }
        for slot in self.jobs.drain(..) {
            slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        if let Some((table, name)) = self.registered.take() {
            let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
            let ours = table.get(&name).is_some_and(|states| {
                states
                    .first()
                    .zip(self.states.first())
                    .is_some_and(|(a, b)| Arc::ptr_eq(a, b))
            });
            if ours {
                table.remove(&name);
            }
        }
    }

    /// Stops the hook threads and waits for them, boundedly (blocking: call off the async
    /// threads): after 1 s what a hook is blocked on is ended (a process hook's child is
    /// killed); a thread still running 2 s later is left to finish on its own.
    /// The hooks' branches are in `pipeline`, fed as long as `link` lives: both go when the
    /// hooks stop.
    pub fn fed_by(&mut self, pipeline: gst::Pipeline, link: Box<dyn Send + Sync>) {
        self.feeder = Some((pipeline, link));
    }

    pub fn stop(mut self) {
        self.signal_stop();
        let threads = std::mem::take(&mut self.threads);
        let wait = |limit: Duration| {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline && !threads.iter().all(|t| t.is_finished()) {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait(Duration::from_secs(1));
        for (state, thread) in self.states.iter().zip(&threads) {
            if !thread.is_finished()
                && let Some(abort) = state
                    .abort
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
            {
                abort();
            }
        }
        wait(Duration::from_secs(2));
        for (state, thread) in self.states.iter().zip(threads) {
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("hook {} did not stop within 3 s; left behind", state.name);
            }
        }
        self.stop_feeder();
    }

    fn stop_feeder(&mut self) {
        if let Some((pipeline, link)) = self.feeder.take() {
            drop(link);
            let _ = pipeline.set_state(gst::State::Null);
        }
    }
}

impl Drop for RunningHooks {
    fn drop(&mut self) {
        self.signal_stop();
        self.stop_feeder();
    }
}

/// Whether a bus message comes from an observing hook's branch (every element there is named
/// `hook…`, the decoder of published streams `hooks_decode`). Errors there are the hook's
/// problem: reported as hook events, they do not stop the pipeline or its recording.
pub fn from_hook_branch(msg: &gst::Message) -> bool {
    let mut object = msg.src().cloned();
    while let Some(o) = object {
        if o.name().starts_with("hook") && !o.name().starts_with("hook_t") {
            return true;
        }
        object = o.parent();
    }
    false
}

/// How to end what a hook may block on.
type Abort = Option<Box<dyn Fn() + Send + Sync>>;

/// The code a tap runs: a registered Rust hook, a process, a socket server; `None` for the
/// snapshot (its branch encodes JPEG itself). With it, how to unblock it (process hooks).
fn instantiate(
    tap: &HookTap,
    pipeline_name: &str,
    events: &EventBus,
) -> Result<(Option<Box<dyn FrameHook>>, Abort), String> {
    let text = |key: &str| tap.options.get(key).and_then(|v| v.as_str()).unwrap_or("");
    let timed = tap.options.get("sender_time") == Some(&serde_json::Value::Bool(true));
    let hook: Option<Box<dyn FrameHook>> = match tap.kind.as_str() {
        "snapshot" => None,
        "process" => {
            let command: Vec<String> = tap
                .options
                .get("command")
                .and_then(|c| c.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let hook = process::ProcessHook::new(
                command,
                (text("transport") == "shm", timed),
                &tap.name,
                pipeline_name,
                events.clone(),
            );
            let abort: Abort = Some(Box::new(hook.killer()));
            return Ok((Some(Box::new(hook)), abort));
        }
        "socket" => Some(Box::new(socket::SocketHook::bind(
            text("listen"),
            text("transport") == "shm",
            timed,
            pipeline_name,
            events.clone(),
        )?)),
        _ => Some(
            make(&tap.name, &tap.options)
                .ok_or_else(|| format!("no Rust hook named `{}` is registered", tap.name))?,
        ),
    };
    Ok((hook, None))
}

/// A transform's probe on the path: offers each frame to the worker and waits up to `budget`
/// (and never longer than one frame interval, so the frame rate is kept) for the changed one.
/// A busy worker or a late answer lets the original pass.
fn offer_frames(
    element: &gst::Element,
    budget: Duration,
    slot: JobSlot,
    state: Arc<HookState>,
) -> Result<(), String> {
    let pad = element
        .static_pad("src")
        .ok_or("a transform hook's element has no src pad")?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        state.arrived.fetch_add(1, Ordering::Relaxed);
        let offered = info.buffer().cloned().zip(
            pad.current_caps()
                .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok()),
        );
        if let Some((buffer, info_v)) = offered {
            let interval = info
                .buffer()
                .and_then(|b| b.duration())
                .map(|d| Duration::from_nanos(d.nseconds()));
            let wait = interval.map_or(budget, |i| budget.min(i));
            let (reply, answer) = mpsc::sync_channel(1);
            let job = Job {
                buffer,
                info: info_v,
                reply,
            };
            // Fails unless the worker is waiting for work: busy, the original passes at once.
            let taken = slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_some_and(|jobs| jobs.try_send(job).is_ok());
            if taken && let Ok(changed) = answer.recv_timeout(wait) {
                info.data = Some(gst::PadProbeData::Buffer(changed));
                return gst::PadProbeReturn::Ok;
            }
        }
        state.passed_through.fetch_add(1, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

fn publish(events: &EventBus, pipeline: &str, state: &HookState, ev: HookEvent) {
    events.publish(Event::hook(pipeline, &state.name, &ev.kind, ev.fields));
}

/// A transform hook's worker: changes a copy of each offered frame and hands it back.
fn run_transform(
    jobs: mpsc::Receiver<Job>,
    mut hook: Box<dyn FrameHook>,
    state: Arc<HookState>,
    events: EventBus,
    pipeline: String,
) {
    while let Ok(job) = jobs.recv() {
        let started = Instant::now();
        // The original stays untouched: it is what passes if this is too slow.
        let Ok(mut buffer) = job.buffer.copy_deep() else {
            continue;
        };
        let event = {
            let buffer = buffer.make_mut();
            match gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &job.info) {
                Ok(frame) => hook.transform(&mut FrameMut { frame }),
                Err(_) => continue,
            }
        };
        let _ = job.reply.try_send(buffer);
        state.record(started.elapsed());
        if let Some(ev) = event {
            publish(&events, &pipeline, &state, ev);
        }
    }
}

/// Writes a snapshot to `template` (`{time}`: the UTC time) through a temporary file, so
/// readers never see half a JPEG.
fn save_snapshot(template: &str, jpeg: &[u8]) {
    let time = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let path = std::path::PathBuf::from(template.replace("{time}", &time));
    let tmp = path.with_extension("jpg.part");
    let written = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&tmp, jpeg))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!("snapshot not written to {}: {e}", path.display());
    }
}

/// What an observe hook's thread takes frames from and hands them to.
struct Taker {
    appsink: gst_app::AppSink,
    /// None for the snapshot (its branch encodes the JPEG).
    hook: Option<Box<dyn FrameHook>>,
    /// Turns the branch's I420 into what the hook asked for.
    converter: Option<convert::Converter>,
    snapshot_path: Option<String>,
}

impl Taker {
    /// Hands one sample to the hook (or keeps the snapshot); the hook's event, if any.
    fn take(&mut self, sample: &gst::Sample, state: &HookState) -> Option<HookEvent> {
        let buffer = sample.buffer()?;
        let Some(hook) = &mut self.hook else {
            // Snapshot: the branch already encoded the JPEG.
            if let Ok(map) = buffer.map_readable() {
                if let Some(path) = &self.snapshot_path {
                    save_snapshot(path, map.as_slice());
                }
                *state.latest_jpeg.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(map.as_slice().to_vec());
            }
            return None;
        };
        let info = sample
            .caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())?;
        let converted;
        let (buffer, info) = match &mut self.converter {
            Some(c) => match c.convert(&sample.buffer_owned()?, &info) {
                Ok(done) => {
                    converted = done;
                    (converted.0.as_ref(), &converted.1)
                }
                Err(e) => {
                    tracing::warn!("hook {}: frame not converted: {e}", state.name);
                    return None;
                }
            },
            None => (buffer, &info),
        };
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info).ok()?;
        hook.on_frame(&Frame { frame: &frame })
    }
}

/// An observe hook's thread: pulls frames from its appsink until told to stop, then takes
/// what is left there (so a stream that ended is seen to its last frame).
fn run(mut taker: Taker, state: Arc<HookState>, events: EventBus, pipeline: String) {
    let mut last = false;
    while !last {
        // Told to stop: one last look at what the appsink holds (the end of a stream that
        // ended), then done, even if frames keep coming.
        last = state.stop.load(Ordering::Relaxed);
        let wait = if last {
            gst::ClockTime::ZERO
        } else {
            gst::ClockTime::from_mseconds(100)
        };
        let Some(sample) = taker.appsink.try_pull_sample(wait) else {
            if taker.appsink.is_eos() {
                // Nothing more will come; wait to be stopped.
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        let started = Instant::now();
        let event = taker.take(&sample, &state);
        state.record(started.elapsed());
        if let Some(ev) = event {
            publish(&events, &pipeline, &state, ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back() {
        gst::init().expect("gst");
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 1280, 720)
            .build()
            .expect("info");
        let mut buffer = gst::Buffer::with_size(info.size()).expect("buffer");
        let millis = 1_795_000_123_456u64;
        {
            let b = buffer.make_mut();
            let frame = gst_video::VideoFrameRef::from_buffer_ref_writable(b, &info).expect("map");
            stamp(&mut FrameMut { frame }, millis);
        }
        let map = buffer.map_readable().expect("read");
        let stride = info.stride()[0] as usize;
        assert_eq!(
            read_stamp(map.as_slice(), stride),
            millis & ((1 << STAMP_BITS) - 1)
        );
    }
}
