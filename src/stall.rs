//! The buffer-flow watchdog: a camera, RTSP or TCP source that stops delivering without an
//! error would leave its pipeline "playing" forever while viewers see a frozen frame. A probe
//! counts the buffers of the source's video; the pipeline's runner polls
//! [`Watchdog::check`], and when nothing passed for the plan's `stall_timeout` the run counts
//! as failed, the source named, and is restarted per its restart policy.

use crate::assemble::StallWatch;
use gst::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// A stall as the runner reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    /// The source's element path, e.g. `/cam/source`.
    pub element: String,
    pub message: String,
}

pub struct Watchdog {
    buffers: Arc<AtomicU64>,
    /// The count at the last change, and when it changed; None until the run plays.
    last: Option<(u64, Instant)>,
    timeout: Duration,
    element: String,
    probes: Vec<(gst::glib::WeakRef<gst::Pad>, gst::PadProbeId)>,
}

impl Watchdog {
    /// Counts what the watched pads pass, from now on; None when the plan has no watch or the
    /// pipeline has nothing to watch.
    pub fn install(pipeline: &gst::Pipeline, watch: &StallWatch) -> Option<Watchdog> {
        let pads: Vec<gst::Pad> = match &watch.counted {
            Some(name) => pipeline
                .by_name(name)
                .and_then(|e| e.static_pad("sink"))
                .into_iter()
                .collect(),
            None => sources(pipeline)
                .iter()
                .flat_map(|e| e.src_pads())
                .collect(),
        };
        if pads.is_empty() {
            return None;
        }
        let named = match &watch.source {
            Some(name) => pipeline.by_name(name),
            None => sources(pipeline).into_iter().next(),
        };
        let element = named
            .map(|e| crate::pipeline::element_path(e.upcast_ref()))
            .unwrap_or_else(|| format!("/{}", pipeline.name()));
        let buffers = Arc::new(AtomicU64::new(0));
        let probes = pads
            .iter()
            .filter_map(|pad| {
                let count = buffers.clone();
                let id = pad.add_probe(
                    gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                    move |_, _| {
                        count.fetch_add(1, Ordering::Relaxed);
                        gst::PadProbeReturn::Ok
                    },
                )?;
                Some((pad.downgrade(), id))
            })
            .collect();
        Some(Watchdog {
            buffers,
            last: None,
            timeout: watch.timeout,
            element,
            probes,
        })
    }

    /// The run reached PLAYING: the source has `timeout` from now to deliver.
    pub fn playing(&mut self, now: Instant) {
        self.last = Some((self.buffers.load(Ordering::Relaxed), now));
    }

    /// Some stall once nothing has passed for the timeout (since PLAYING or the last buffer).
    pub fn check(&mut self, now: Instant) -> Option<Stall> {
        let (seen, since) = self.last?;
        let count = self.buffers.load(Ordering::Relaxed);
        if count != seen {
            self.last = Some((count, now));
            return None;
        }
        let silent = now.saturating_duration_since(since);
        (silent >= self.timeout).then(|| Stall {
            element: self.element.clone(),
            message: format!(
                "{}: no video for {}: the source stalled (stall_timeout)",
                self.element,
                humantime::format_duration(Duration::from_secs(silent.as_secs().max(1)))
            ),
        })
    }

    /// How often the runner should call [`Watchdog::check`].
    pub fn period(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        for (pad, id) in self.probes.drain(..) {
            if let Some(pad) = pad.upgrade() {
                pad.remove_probe(id);
            }
        }
    }
}

/// The pipeline's source elements, nested bins included.
fn sources(pipeline: &gst::Pipeline) -> Vec<gst::Element> {
    pipeline
        .iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.element_flags().contains(gst::ElementFlags::SOURCE))
        .collect()
}
