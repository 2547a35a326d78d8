//! A webrtc output's encoder ladder at run time: each rung's stream producer, the valve that
//! runs its encoder only while somebody watches it, and who watches which rung. Viewers
//! move between rungs through [`Seat`]s; their congestion control ([`super::adapt`]) says
//! where to.

use crate::assemble::LadderRung;
use crate::description::Rung;
use gst::prelude::*;
use gst_utils::streamproducer::StreamProducer;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A simulcast layer that carried nothing for this long has stopped: its publisher paused it
/// (browsers drop their top layers when their own estimate of the uplink falls) or lost it.
/// Its viewers move to a layer that still arrives, and back when it resumes.
pub const LAYER_STOPPED_AFTER: Duration = Duration::from_millis(1500);

/// One rung: what it is, its current run's producer and valve, who watches it, and how many
/// frames its encoder made (across runs). A simulcast layer's size and bitrate are measured
/// (see [`Ladder::refresh`]).
struct RungState {
    rung: Mutex<Rung>,
    run: Mutex<Run>,
    viewers: AtomicUsize,
    frames: Arc<AtomicU64>,
    layer: Option<Arc<Measured>>,
}

/// What a simulcast layer's stream carried: bytes, and the size of its pictures.
#[derive(Default)]
struct Measured {
    rid: String,
    bytes: AtomicU64,
    size: Mutex<Option<(u32, u32)>>,
    /// When the bitrate was last worked out, and the byte count then.
    last: Mutex<Option<(Instant, u64)>>,
    /// When its latest buffer arrived.
    arrived: Mutex<Option<Instant>>,
}

struct Run {
    producer: StreamProducer,
    /// Closed (drop=true) while nobody watches; None for the top, always running.
    valve: Option<gst::Element>,
}

/// A rung as the API shows it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct RungInfo {
    pub rung: String,
    pub bitrate_kbps: u32,
    pub viewers: usize,
    /// Frames its encoder made since the service started.
    pub frames_encoded: u64,
    /// Whether its encoder runs now.
    pub encoding: bool,
    /// A simulcast publisher's layer: its rid (nothing is encoded here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

pub struct Ladder {
    rungs: Vec<RungState>,
    /// For `viewer_rung_changed` events.
    pipeline: String,
    events: crate::events::EventBus,
}

impl Ladder {
    /// The ladder of a run of the pipeline: `top` is the output's video producer; the other
    /// rungs' producers are made from their appsinks, and `prepare` readies each (keyframe
    /// marking and request throttling, as for the top).
    pub fn new(
        pipeline: &gst::Pipeline,
        rungs: &[LadderRung],
        top: &StreamProducer,
        prepare: &dyn Fn(&gst_app::AppSink),
        events: (crate::events::EventBus, &str),
    ) -> Result<Arc<Ladder>, String> {
        let mut states = Vec::new();
        for (k, r) in rungs.iter().enumerate() {
            let frames = Arc::new(AtomicU64::new(0));
            let layer = r.layer.as_ref().map(|rid| {
                Arc::new(Measured {
                    rid: rid.clone(),
                    ..Measured::default()
                })
            });
            let run = Self::run_of(pipeline, (k, r), top, prepare, &frames, layer.as_ref())?;
            states.push(RungState {
                rung: Mutex::new(r.rung),
                run: Mutex::new(run),
                viewers: AtomicUsize::new(0),
                frames,
                layer,
            });
        }
        Ok(Arc::new(Ladder {
            rungs: states,
            pipeline: events.1.to_string(),
            events: events.0,
        }))
    }

    /// Rung `k`'s producer and valve in a run of the pipeline, its counters in place.
    fn run_of(
        pipeline: &gst::Pipeline,
        (k, r): (usize, &LadderRung),
        top: &StreamProducer,
        prepare: &dyn Fn(&gst_app::AppSink),
        frames: &Arc<AtomicU64>,
        layer: Option<&Arc<Measured>>,
    ) -> Result<Run, String> {
        if let Some(layer) = layer {
            measure(pipeline, &r.sink, layer);
        }
        if let Some(pad) = r
            .encoder
            .as_deref()
            .and_then(|e| pipeline.by_name(e))
            .and_then(|e| e.static_pad("src"))
        {
            let frames = frames.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                frames.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        if k == 0 {
            return Ok(Run {
                producer: top.clone(),
                valve: None,
            });
        }
        let (appsink, producer) = crate::hub::producer(pipeline, &r.sink)?;
        prepare(&appsink);
        let valve = r
            .valve
            .as_ref()
            .map(|name| {
                pipeline
                    .by_name(name)
                    .ok_or_else(|| format!("the assembled pipeline has no valve {name}"))
            })
            .transpose()?;
        Ok(Run { producer, valve })
    }

    /// A restarted run of the pipeline: its producers and valves replace the old ones, and
    /// the rungs that have viewers encode again.
    pub fn resume(
        &self,
        pipeline: &gst::Pipeline,
        rungs: &[LadderRung],
        top: &StreamProducer,
        prepare: &dyn Fn(&gst_app::AppSink),
    ) -> Result<(), String> {
        if rungs.len() != self.rungs.len() {
            return Err("the restarted pipeline has another ladder".into());
        }
        for (k, (state, r)) in self.rungs.iter().zip(rungs).enumerate() {
            let run = Self::run_of(
                pipeline,
                (k, r),
                top,
                prepare,
                &state.frames,
                state.layer.as_ref(),
            )?;
            let mut current = state.run.lock().unwrap_or_else(|p| p.into_inner());
            *current = run;
            if let Some(valve) = &current.valve {
                valve.set_property("drop", state.viewers.load(Ordering::SeqCst) == 0);
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rungs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rungs.is_empty()
    }

    /// Rung `k` (0 = top). Callers pass indices below [`Ladder::len`].
    pub fn rung(&self, k: usize) -> Rung {
        *self.rungs[k.min(self.rungs.len().saturating_sub(1))]
            .rung
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The bitrates (kbit/s), top first.
    pub fn bitrates(&self) -> Vec<u32> {
        (0..self.rungs.len())
            .map(|k| self.rung(k).bitrate)
            .collect()
    }

    /// Whether the rungs are a simulcast publisher's layers (measured, not configured).
    pub fn measured(&self) -> bool {
        self.rungs.iter().any(|r| r.layer.is_some())
    }

    /// Works out each simulcast layer's size and bitrate from what it carried since the last
    /// time (at most every 2 s). A layer that carried nothing keeps its last figures; each
    /// stays below the one above, as the rules that move viewers expect.
    pub fn refresh(&self, now: Instant) {
        let mut above: Option<u32> = None;
        for state in &self.rungs {
            let mut rung = state.rung.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = &state.layer {
                let bytes = m.bytes.load(Ordering::Relaxed);
                let mut last = m.last.lock().unwrap_or_else(|p| p.into_inner());
                match *last {
                    Some((at, before)) => {
                        let dt = now.saturating_duration_since(at).as_secs_f64();
                        if dt >= 2.0 {
                            let kbps =
                                (bytes.saturating_sub(before) as f64 * 8.0 / dt / 1000.0) as u32;
                            if kbps > 0 {
                                rung.bitrate = kbps;
                            }
                            *last = Some((now, bytes));
                        }
                    }
                    None => *last = Some((now, bytes)),
                }
                if let Some((w, h)) = *m.size.lock().unwrap_or_else(|p| p.into_inner()) {
                    (rung.width, rung.height) = (w, h);
                }
            }
            if let Some(above) = above {
                rung.bitrate = rung.bitrate.min(above.saturating_sub(1)).max(1);
            }
            above = Some(rung.bitrate);
        }
    }

    /// Whether rung `k` arrives: an encoded rung always does; a simulcast layer while its
    /// buffers keep coming (see [`LAYER_STOPPED_AFTER`]).
    pub fn arriving(&self, k: usize, now: Instant) -> bool {
        let Some(state) = self.rungs.get(k) else {
            return false;
        };
        let Some(layer) = &state.layer else {
            return true;
        };
        let arrived = *layer.arrived.lock().unwrap_or_else(|p| p.into_inner());
        arrived.is_some_and(|at| now.saturating_duration_since(at) < LAYER_STOPPED_AFTER)
    }

    /// The rung to watch for rung `k`: `k` while it arrives, else the nearest that arrives
    /// below it (less to send), else above; None while none arrives.
    pub fn nearest_arriving(&self, k: usize, now: Instant) -> Option<usize> {
        nearest(k, self.rungs.len(), |j| self.arriving(j, now))
    }

    /// Where a new viewer starts: the top, or the best rung that arrives when the top does
    /// not (a simulcast publisher paused it).
    pub fn first_choice(&self, now: Instant) -> Option<StreamProducer> {
        self.producer(self.nearest_arriving(0, now).unwrap_or(0))
    }

    /// Which rung `producer` is.
    pub fn rung_of(&self, producer: &StreamProducer) -> Option<usize> {
        (0..self.rungs.len()).find(|&k| self.producer(k).as_ref() == Some(producer))
    }

    /// The producer of rung `k` in the current run.
    pub fn producer(&self, k: usize) -> Option<StreamProducer> {
        let state = self.rungs.get(k)?;
        let run = state.run.lock().unwrap_or_else(|p| p.into_inner());
        Some(run.producer.clone())
    }

    /// A viewer takes a seat on rung `k`: its encoder runs from the first viewer on.
    pub fn seat(self: &Arc<Self>, k: usize) -> Seat {
        self.enter(k);
        Seat {
            ladder: self.clone(),
            rung: k,
        }
    }

    fn enter(&self, k: usize) {
        let Some(state) = self.rungs.get(k) else {
            return;
        };
        if state.viewers.fetch_add(1, Ordering::SeqCst) == 0 {
            let run = state.run.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(valve) = &run.valve {
                valve.set_property("drop", false);
            }
        }
    }

    fn leave(&self, k: usize) {
        let Some(state) = self.rungs.get(k) else {
            return;
        };
        if state.viewers.fetch_sub(1, Ordering::SeqCst) == 1 {
            let run = state.run.lock().unwrap_or_else(|p| p.into_inner());
            // Re-checked under the lock: a viewer may have entered meanwhile.
            if let (Some(valve), 0) = (&run.valve, state.viewers.load(Ordering::SeqCst)) {
                valve.set_property("drop", true);
            }
        }
    }

    /// Says that viewer `viewer` moved from rung `from` to `to` on an estimate of `kbps`.
    pub fn announce(&self, viewer: &str, from: usize, to: usize, kbps: Option<u32>) {
        self.events.publish(crate::events::Event::new(
            "viewer_rung_changed",
            &self.pipeline,
            serde_json::json!({
                "viewer": viewer,
                "from": self.rung(from).label(),
                "rung": self.rung(to).label(),
                "estimate_kbps": kbps,
            }),
        ));
    }

    pub fn info(&self) -> Vec<RungInfo> {
        if self.measured() {
            self.refresh(Instant::now());
        }
        self.rungs
            .iter()
            .map(|s| {
                let run = s.run.lock().unwrap_or_else(|p| p.into_inner());
                let rung = *s.rung.lock().unwrap_or_else(|p| p.into_inner());
                RungInfo {
                    rung: rung.label(),
                    bitrate_kbps: rung.bitrate,
                    layer: s.layer.as_ref().map(|m| m.rid.clone()),
                    viewers: s.viewers.load(Ordering::SeqCst),
                    frames_encoded: s.frames.load(Ordering::Relaxed),
                    encoding: s.layer.is_none()
                        && run
                            .valve
                            .as_ref()
                            .is_none_or(|v| !v.property::<bool>("drop")),
                }
            })
            .collect()
    }
}

/// Counts the bytes a simulcast layer's appsink takes, and notes its pictures' size.
fn measure(pipeline: &gst::Pipeline, sink: &str, layer: &Arc<Measured>) {
    let Some(pad) = pipeline.by_name(sink).and_then(|e| e.static_pad("sink")) else {
        return;
    };
    let layer = layer.clone();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => {
                    layer.bytes.fetch_add(b.size() as u64, Ordering::Relaxed);
                    *layer.arrived.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                }
                Some(gst::PadProbeData::Event(e)) => {
                    if let gst::EventView::Caps(c) = e.view()
                        && let Some(s) = c.caps().structure(0)
                        && let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height"))
                    {
                        *layer.size.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((w.max(0) as u32, h.max(0) as u32));
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// A viewer's place on one rung; leaving it (moving or dropping it) may stop that rung's
/// encoder.
pub struct Seat {
    ladder: Arc<Ladder>,
    rung: usize,
}

impl Seat {
    pub fn rung(&self) -> usize {
        self.rung
    }

    pub fn ladder(&self) -> &Arc<Ladder> {
        &self.ladder
    }

    /// Moves to rung `k`: that rung's encoder runs before this one's may stop.
    pub fn move_to(&mut self, k: usize) {
        if k == self.rung || k >= self.ladder.len() {
            return;
        }
        self.ladder.enter(k);
        self.ladder.leave(self.rung);
        self.rung = k;
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.ladder.leave(self.rung);
    }
}

/// A viewer on the ladder: its seat and the rules ([`super::adapt`]) that move it, acting on
/// its video link.
pub struct Climber {
    seat: Seat,
    adapt: super::adapt::Adapt,
    viewer: String,
    /// The latest estimate (bit/s): the estimator says when it changes, and the rules also
    /// need to hear that it stayed.
    last_bps: Option<u32>,
    /// Pads the video when the rules probe, and counts what it sends.
    prober: Option<Arc<super::probing::Prober>>,
    /// What the video sent lately (kbit/s: all, and media alone), from the prober's counts
    /// at `counted`.
    sent_kbps: Option<(u32, u32)>,
    counted: Option<(Instant, u64, u64)>,
    /// The rung the rules chose, while the viewer waits on another because that one's
    /// layer stopped arriving.
    displaced_from: Option<usize>,
    /// Moves so far, whatever made them.
    switches: u32,
}

impl Climber {
    /// Starts viewer `viewer` on rung `start` (the one its video link was given).
    pub fn new(
        ladder: &Arc<Ladder>,
        viewer: String,
        prober: Option<Arc<super::probing::Prober>>,
        start: usize,
    ) -> Climber {
        let start = start.min(ladder.len().saturating_sub(1));
        Climber {
            adapt: super::adapt::Adapt::new(ladder.bitrates(), start),
            sent_kbps: None,
            seat: ladder.seat(start),
            viewer,
            last_bps: None,
            prober,
            counted: None,
            // Below the top only because the top did not arrive: back to it once it does.
            displaced_from: (start != 0).then_some(0),
            switches: 0,
        }
    }

    /// What the video sent lately (kbit/s: all, and media alone), measured over half a
    /// second at least.
    fn sent_kbps(&mut self, now: Instant) -> Option<(u32, u32)> {
        let prober = self.prober.as_ref()?;
        let (sent, media) = (prober.sent_bytes(), prober.media_bytes());
        let kbps = |bytes: u64, dt: f64| (bytes as f64 * 8.0 / dt / 1000.0) as u32;
        match self.counted {
            Some((at, sent0, media0)) => {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                if dt >= 0.5 {
                    self.sent_kbps = Some((
                        kbps(sent.saturating_sub(sent0), dt),
                        kbps(media.saturating_sub(media0), dt),
                    ));
                    self.counted = Some((now, sent, media));
                }
            }
            None => self.counted = Some((now, sent, media)),
        }
        self.sent_kbps
    }

    pub fn rung_label(&self) -> String {
        self.seat.ladder().rung(self.seat.rung()).label()
    }

    pub fn estimate_kbps(&self) -> Option<u32> {
        self.adapt.estimate_kbps()
    }

    pub fn switches(&self) -> u32 {
        self.switches
    }

    /// The producer of the rung it is on (to follow a restarted pipeline).
    pub fn producer(&self) -> Option<StreamProducer> {
        self.seat.ladder().producer(self.seat.rung())
    }

    pub fn loss(&mut self, fraction: f64) {
        self.adapt.loss(Instant::now(), fraction);
    }

    /// The latest estimate again, as time passes (see [`Climber::estimate`]); and a move
    /// off a simulcast layer that stopped arriving, or back onto it once it resumes.
    pub fn tick(
        &mut self,
        video: &mut gst_utils::streamproducer::ConsumptionLink,
    ) -> Result<bool, String> {
        let moved = match self.last_bps {
            Some(bps) => self.estimate(bps, video)?,
            None => false,
        };
        Ok(self.follow_layers(video)? || moved)
    }

    /// Keeps the viewer on a layer that arrives: off the rules' choice while it has stopped
    /// (to the nearest that arrives, lower first), back to it when it resumes.
    fn follow_layers(
        &mut self,
        video: &mut gst_utils::streamproducer::ConsumptionLink,
    ) -> Result<bool, String> {
        let ladder = self.seat.ladder().clone();
        if !ladder.measured() {
            return Ok(false);
        }
        let chosen = self.displaced_from.unwrap_or(self.seat.rung());
        self.go(chosen, video)
    }

    /// Moves to rung `chosen` (the rules' choice), or to the nearest that arrives while it
    /// does not; the rules go on from where the viewer is. True when it moved.
    fn go(
        &mut self,
        chosen: usize,
        video: &mut gst_utils::streamproducer::ConsumptionLink,
    ) -> Result<bool, String> {
        let ladder = self.seat.ladder().clone();
        let to = ladder
            .nearest_arriving(chosen, Instant::now())
            .unwrap_or(chosen);
        let was_displaced = self.displaced_from.is_some();
        self.displaced_from = (to != chosen).then_some(chosen);
        self.adapt.moved(to);
        let from = self.seat.rung();
        if to == from {
            return Ok(false);
        }
        let producer = ladder
            .producer(to)
            .ok_or_else(|| format!("the ladder has no rung {to}"))?;
        self.seat.move_to(to);
        video
            .change_producer(&producer, false)
            .map_err(|e| format!("cannot move to rung {}: {e}", ladder.rung(to).label()))?;
        self.switches += 1;
        let why = match (self.displaced_from, was_displaced) {
            (Some(k), _) => format!("layer {} stopped", ladder.rung(k).label()),
            (None, true) => format!("layer {} resumed", ladder.rung(to).label()),
            (None, false) => format!(
                "estimate {} kbit/s",
                self.adapt.estimate_kbps().unwrap_or_default()
            ),
        };
        tracing::info!(
            "{} viewer {}: {} → {} ({why})",
            ladder.pipeline,
            self.viewer,
            ladder.rung(from).label(),
            ladder.rung(to).label(),
        );
        ladder.announce(&self.viewer, from, to, self.adapt.estimate_kbps());
        Ok(true)
    }

    /// A new estimate (bit/s): moves `video` to another rung when the rules say so (the new
    /// rung's encoder runs, and the link waits for its next keyframe, which it asks for).
    /// True when it moved.
    pub fn estimate(
        &mut self,
        bps: u32,
        video: &mut gst_utils::streamproducer::ConsumptionLink,
    ) -> Result<bool, String> {
        self.last_bps = Some(bps);
        let now = Instant::now();
        if self.seat.ladder().measured() {
            self.seat.ladder().refresh(now);
            self.adapt.set_bitrates(self.seat.ladder().bitrates());
        }
        let sent = self.sent_kbps(now);
        let step = self.adapt.step(now, bps / 1000, sent);
        tracing::debug!(
            "viewer {}: estimator {} kbit/s, sent (all, media) {sent:?} kbit/s, counted {:?}, padding {} kbit/s",
            self.viewer,
            bps / 1000,
            self.adapt.estimate_kbps(),
            step.padding_kbps
        );
        if let Some(prober) = &self.prober {
            prober.set_padding(step.padding_kbps.saturating_mul(1000));
            if let Some(kbps) = step.raise_kbps {
                prober.raise(kbps.saturating_mul(1000));
                // The estimate is now the raised one: a tick before the estimator reports
                // again must not read the old figure as a fall (congestion).
                self.last_bps = Some(kbps.saturating_mul(1000));
            }
        }
        match step.to {
            Some(to) => self.go(to, video),
            None => Ok(false),
        }
    }
}

/// Of `n` rungs (0 = top), the one to watch for rung `k`: `k` if it `arrives`, else the
/// nearest below that does, else the nearest above.
fn nearest(k: usize, n: usize, arrives: impl Fn(usize) -> bool) -> Option<usize> {
    (k..n).chain((0..k.min(n)).rev()).find(|&j| arrives(j))
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn a_stopped_layer_gives_way_to_the_nearest_below_then_above() {
        let all = |_| true;
        assert_eq!(nearest(0, 3, all), Some(0));
        // The top stopped (a browser short of uplink drops it first): the middle one.
        assert_eq!(nearest(0, 3, |j| j != 0), Some(1));
        assert_eq!(nearest(0, 3, |j| j == 2), Some(2));
        // The middle stopped: lower first, then higher.
        assert_eq!(nearest(1, 3, |j| j != 1), Some(2));
        assert_eq!(nearest(1, 3, |j| j == 0), Some(0));
        // Nothing arrives: stay where the rules chose.
        assert_eq!(nearest(1, 3, |_| false), None);
        assert_eq!(nearest(5, 3, all), Some(2));
    }
}
