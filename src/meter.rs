//! The encoded-video meter of a pipeline: what leaves its video encoder (or what a
//! passthrough source delivers), counted by a pad probe; the API and `/metrics` read it. A leaf:
//! it uses nothing else of this crate.

use gst::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts what leaves a pipeline's video encoder (or what a passthrough source delivers):
/// a pad probe adds each buffer; the API and `/metrics` read it.
#[derive(Debug, Default)]
pub struct Meter {
    bytes: AtomicU64,
    frames: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct MeterCounts {
    /// Encoded video bytes since the service started.
    pub video_bytes: u64,
    /// Encoded video frames since the service started.
    pub video_frames: u64,
}

impl Meter {
    pub fn counts(&self) -> MeterCounts {
        MeterCounts {
            video_bytes: self.bytes.load(Ordering::Relaxed),
            video_frames: self.frames.load(Ordering::Relaxed),
        }
    }

    /// Counts the buffers entering the pipeline's encoded-video tee (`video_enc`), if it has one.
    pub fn attach(self: &Arc<Self>, pipeline: &gst::Pipeline) {
        let Some(pad) = pipeline
            .by_name("video_enc")
            .and_then(|tee| tee.static_pad("sink"))
        else {
            return;
        };
        let meter = self.clone();
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => {
                        meter.add(b.size() as u64, 1);
                    }
                    Some(gst::PadProbeData::BufferList(l)) => {
                        meter.add(l.calculate_size() as u64, l.len() as u64);
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    fn add(&self, bytes: u64, frames: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.frames.fetch_add(frames, Ordering::Relaxed);
    }
}
