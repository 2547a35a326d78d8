//! Frame hooks: decoded video handed to Rust code, without stalling the live stream.
//!
//! Each `[[hook]]` of a description gets its own branch off the raw video tee:
//! `queue (leaky, 2 frames) → videoconvert/videoscale/videorate as needed → appsink (1 frame,
//! drop)`. The branch can only hold a couple of frames, so a slow hook loses frames (counted as
//! dropped) and the outputs keep their full rate. A thread per hook pulls frames and calls
//! [`FrameHook::on_frame`] with a [`Frame`] that maps the buffer without copying.
//!
//! Rust hooks are registered by name ([`register`]); the built-ins are `stats` (mean luma and
//! frame interval) and `snapshot` (the latest frame as JPEG).

pub mod process;

use crate::events::{Event, EventBus};
use gst::prelude::*;
use gst_video::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A decoded video frame, mapped read-only; valid during [`FrameHook::on_frame`].
pub struct Frame<'a> {
    frame: gst_video::VideoFrameRef<&'a gst::BufferRef>,
}

impl Frame<'_> {
    pub fn width(&self) -> u32 {
        self.frame.width()
    }

    pub fn height(&self) -> u32 {
        self.frame.height()
    }

    /// "RGB", "BGR", "GRAY8", "I420", ...
    pub fn format(&self) -> &'static str {
        self.frame.format().to_str()
    }

    /// Bytes per row of `plane`.
    pub fn stride(&self, plane: u32) -> usize {
        self.frame
            .plane_stride()
            .get(plane as usize)
            .map_or(0, |s| (*s).max(0) as usize)
    }

    pub fn n_planes(&self) -> u32 {
        self.frame.n_planes()
    }

    /// The bytes of `plane` (rows of [`Frame::stride`] bytes), without a copy.
    pub fn plane_data(&self, plane: u32) -> &[u8] {
        self.frame.plane_data(plane).unwrap_or(&[])
    }

    /// Presentation time, from the start of the stream.
    pub fn pts(&self) -> Option<Duration> {
        self.frame
            .buffer()
            .pts()
            .map(|t| Duration::from_nanos(t.nseconds()))
    }
}

/// What a hook reports: a kind and any JSON fields; published on `/api/events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookEvent {
    pub kind: String,
    pub fields: serde_json::Value,
}

/// Code that looks at live frames. Runs on a thread of its own; a slow hook only loses frames.
pub trait FrameHook: Send {
    fn on_frame(&mut self, frame: &Frame) -> Option<HookEvent>;
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

/// Built-in `stats`: mean luma and frame interval, reported every `every` frames (default 30).
struct Stats {
    every: u64,
    seen: u64,
    last: Option<Instant>,
    interval_ms: f64,
}

impl Stats {
    fn new(o: &HookOptions) -> Stats {
        Stats {
            every: o.get("every").and_then(|v| v.as_u64()).unwrap_or(30).max(1),
            seen: 0,
            last: None,
            interval_ms: 0.0,
        }
    }
}

impl FrameHook for Stats {
    fn on_frame(&mut self, frame: &Frame) -> Option<HookEvent> {
        let now = Instant::now();
        if let Some(last) = self.last.replace(now) {
            self.interval_ms = now.duration_since(last).as_secs_f64() * 1000.0;
        }
        self.seen += 1;
        if self.seen % self.every != 0 {
            return None;
        }
        // Luma of packed RGB/BGR rows (ITU-R BT.601 weights), or the first plane otherwise.
        let (w, h, stride) = (
            frame.width() as usize,
            frame.height() as usize,
            frame.stride(0),
        );
        let data = frame.plane_data(0);
        let (mut sum, mut n) = (0f64, 0u64);
        let packed = matches!(frame.format(), "RGB" | "BGR");
        let rgb = frame.format() == "RGB";
        for row in data.chunks(stride.max(1)).take(h) {
            if packed {
                for px in row.chunks_exact(3).take(w) {
                    let (r, b) = if rgb { (px[0], px[2]) } else { (px[2], px[0]) };
                    sum += 0.299 * r as f64 + 0.587 * px[1] as f64 + 0.114 * b as f64;
                    n += 1;
                }
            } else {
                for v in row.iter().take(w) {
                    sum += *v as f64;
                    n += 1;
                }
            }
        }
        Some(HookEvent {
            kind: "stats".into(),
            fields: serde_json::json!({
                "mean_luma": if n > 0 { sum / n as f64 } else { 0.0 },
                "frame_interval_ms": self.interval_ms,
                "frames": self.seen,
            }),
        })
    }
}

/// Built-in `motion`: mean absolute difference of luma between consecutive frames; an event
/// when it rises above `threshold` (0–255, default 8) and when it falls back below.
struct Motion {
    threshold: f64,
    previous: Vec<u8>,
    moving: bool,
}

impl Motion {
    fn new(o: &HookOptions) -> Motion {
        Motion {
            threshold: o.get("threshold").and_then(|v| v.as_f64()).unwrap_or(8.0),
            previous: Vec::new(),
            moving: false,
        }
    }
}

impl FrameHook for Motion {
    fn on_frame(&mut self, frame: &Frame) -> Option<HookEvent> {
        // The branch delivers GRAY8: one byte of luma per pixel.
        let (w, h, stride) = (
            frame.width() as usize,
            frame.height() as usize,
            frame.stride(0),
        );
        let luma: Vec<u8> = frame
            .plane_data(0)
            .chunks(stride.max(1))
            .take(h)
            .flat_map(|row| row[..w.min(row.len())].iter().copied())
            .collect();
        let previous = std::mem::replace(&mut self.previous, luma);
        if previous.len() != self.previous.len() || previous.is_empty() {
            return None;
        }
        let diff: u64 = previous
            .iter()
            .zip(&self.previous)
            .map(|(a, b)| a.abs_diff(*b) as u64)
            .sum();
        let level = diff as f64 / previous.len() as f64;
        let moving = level > self.threshold;
        if moving == self.moving {
            return None;
        }
        self.moving = moving;
        Some(HookEvent {
            kind: if moving { "motion" } else { "still" }.into(),
            fields: serde_json::json!({ "level": level, "threshold": self.threshold }),
        })
    }
}

/// Counters of one hook, as `GET /api/pipelines/{name}` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct HookStats {
    pub name: String,
    pub kind: String,
    /// Frames that reached the hook's branch.
    pub arrived: u64,
    /// Frames the hook processed.
    pub delivered: u64,
    /// Frames the hook was too slow for (dropped by its bounded branch).
    pub dropped: u64,
    pub processing_p50_ms: Option<f64>,
    pub processing_p99_ms: Option<f64>,
}

/// Shared between a hook's thread, its branch's probe and the API.
pub struct HookState {
    pub name: String,
    pub kind: String,
    arrived: AtomicU64,
    delivered: AtomicU64,
    /// The last 512 processing times (µs): enough for stable percentiles, bounded memory.
    times: Mutex<std::collections::VecDeque<u64>>,
    /// The latest JPEG of a snapshot hook.
    pub latest_jpeg: Mutex<Option<Vec<u8>>>,
    stop: AtomicBool,
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
        HookStats {
            name: self.name.clone(),
            kind: self.kind.clone(),
            arrived,
            delivered,
            // One frame may be in flight in the appsink.
            dropped: arrived.saturating_sub(delivered + 1),
            processing_p50_ms: pct(0.5),
            processing_p99_ms: pct(0.99),
        }
    }
}

/// A planned hook: which appsink feeds it and what runs on the frames.
#[derive(Debug, Clone, PartialEq)]
pub struct HookTap {
    pub appsink: String,
    pub name: String,
    /// "rust" (a registered hook), or "snapshot" (the branch ends in jpegenc).
    pub kind: String,
    pub options: HookOptions,
}

/// The hooks of a running pipeline; stopping joins their threads.
pub struct RunningHooks {
    pub states: Vec<Arc<HookState>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl RunningHooks {
    /// Starts a thread per hook on the built (not yet playing) pipeline.
    pub fn start(
        pipeline_name: &str,
        pipeline: &gst::Pipeline,
        taps: &[HookTap],
        events: &EventBus,
    ) -> Result<RunningHooks, String> {
        let mut states = Vec::new();
        let mut threads = Vec::new();
        for tap in taps {
            let appsink = pipeline
                .by_name(&tap.appsink)
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .ok_or_else(|| format!("the assembled pipeline has no appsink {}", tap.appsink))?;
            let hook: Option<Box<dyn FrameHook>> =
                match tap.kind.as_str() {
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
                        Some(Box::new(process::ProcessHook::new(
                            command,
                            &tap.name,
                            pipeline_name,
                            events.clone(),
                        )))
                    }
                    _ => Some(make(&tap.name, &tap.options).ok_or_else(|| {
                        format!("no Rust hook named `{}` is registered", tap.name)
                    })?),
                };
            let state = Arc::new(HookState {
                name: tap.name.clone(),
                kind: tap.kind.clone(),
                arrived: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                times: Mutex::new(std::collections::VecDeque::with_capacity(512)),
                latest_jpeg: Mutex::new(None),
                stop: AtomicBool::new(false),
            });
            // Count what reaches the branch; the difference to what the hook took is dropped.
            if let Some(pad) = appsink.static_pad("sink") {
                let s = state.clone();
                pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    s.arrived.fetch_add(1, Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
            }
            let (s, bus, name) = (state.clone(), events.clone(), pipeline_name.to_string());
            let thread = std::thread::Builder::new()
                .name(format!("hook-{}", tap.name))
                .spawn(move || run(appsink, hook, s, bus, name))
                .map_err(|e| format!("cannot start a hook thread: {e}"))?;
            states.push(state);
            threads.push(thread);
        }
        Ok(RunningHooks { states, threads })
    }

    /// Stops and joins the hook threads (blocking: call off the async threads).
    pub fn stop(self) {
        for s in &self.states {
            s.stop.store(true, Ordering::Relaxed);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn run(
    appsink: gst_app::AppSink,
    mut hook: Option<Box<dyn FrameHook>>,
    state: Arc<HookState>,
    events: EventBus,
    pipeline: String,
) {
    while !state.stop.load(Ordering::Relaxed) {
        let Some(sample) = appsink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
            if appsink.is_eos() {
                // Nothing more will come; wait to be stopped.
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let started = Instant::now();
        let event = match &mut hook {
            None => {
                // Snapshot: the branch already encoded the JPEG.
                if let Ok(map) = buffer.map_readable() {
                    *state.latest_jpeg.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(map.as_slice().to_vec());
                }
                None
            }
            Some(hook) => {
                let info = sample
                    .caps()
                    .and_then(|c| gst_video::VideoInfo::from_caps(c).ok());
                let Some(info) = info else { continue };
                match gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info) {
                    Ok(frame) => hook.on_frame(&Frame { frame }),
                    Err(_) => continue,
                }
            }
        };
        let took = started.elapsed().as_micros() as u64;
        state.delivered.fetch_add(1, Ordering::Relaxed);
        {
            let mut times = state.times.lock().unwrap_or_else(|p| p.into_inner());
            if times.len() == 512 {
                times.pop_front();
            }
            times.push_back(took);
        }
        if let Some(ev) = event {
            events.publish(Event::new(
                "hook",
                &pipeline,
                serde_json::json!({ "hook": state.name, "kind": ev.kind, "fields": ev.fields }),
            ));
        }
    }
}
