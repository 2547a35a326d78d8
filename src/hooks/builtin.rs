//! The built-in Rust hooks: `stats` (mean luma and frame interval), `motion`, `invert` (a
//! transform) and `stamp` (a transform drawing the wall-clock time that the benchmark reads).

use super::*;

/// Built-in `stats`: mean luma and frame interval, reported every `every` frames (default 30).
pub(super) struct Stats {
    every: u64,
    seen: u64,
    last: Option<Instant>,
    interval_ms: f64,
}

impl Stats {
    pub(super) fn new(o: &HookOptions) -> Stats {
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
        if !self.seen.is_multiple_of(self.every) {
            return None;
        }
        // Luma of packed RGB/BGR rows (ITU-R BT.601 weights, in 1/256ths), or the first plane
        // otherwise; integer sums, so a 1080p frame takes about a millisecond.
        let (w, h, stride) = (
            frame.width() as usize,
            frame.height() as usize,
            frame.stride(0),
        );
        let data = frame.plane_data(0);
        let (weights, bpp) = match frame.format() {
            "RGB" => ([77u64, 150, 29], 3),
            "BGR" => ([29, 150, 77], 3),
            _ => ([256, 0, 0], 1),
        };
        let mut sum = 0u64;
        let mut n = 0u64;
        for row in data.chunks(stride.max(1)).take(h) {
            let row = &row[..(w * bpp).min(row.len())];
            let mut acc = [0u64; 3];
            for px in row.chunks_exact(bpp) {
                for (a, v) in acc.iter_mut().zip(px) {
                    *a += u64::from(*v);
                }
            }
            sum += acc.iter().zip(weights).map(|(a, w)| a * w).sum::<u64>();
            n += (row.len() / bpp) as u64;
        }
        let mean = if n > 0 {
            sum as f64 / 256.0 / n as f64
        } else {
            0.0
        };
        Some(HookEvent {
            kind: "stats".into(),
            fields: serde_json::json!({
                "mean_luma": mean,
                "frame_interval_ms": self.interval_ms,
                "frames": self.seen,
            }),
        })
    }
}

/// Built-in `invert`, a transform: every byte of every plane becomes 255 − byte (the colour
/// negative for RGB/BGR/GRAY8). A demonstration, and what the tests check transforms with.
pub(super) struct Invert;

impl FrameHook for Invert {
    fn on_frame(&mut self, _: &Frame) -> Option<HookEvent> {
        None
    }

    fn transform(&mut self, frame: &mut FrameMut) -> Option<HookEvent> {
        let planes = frame.as_frame().n_planes();
        for plane in 0..planes {
            for byte in frame.plane_data_mut(plane) {
                *byte = !*byte;
            }
        }
        None
    }
}

/// Built-in `stamp`, a transform for measuring glass-to-glass latency: writes the wall-clock
/// time (milliseconds since the Unix epoch, low [`STAMP_BITS`] bits) into the top-left corner
/// as a row of black/white [`STAMP_BLOCK`]-pixel blocks, most significant bit first, so a
/// viewer that decodes the video can compute `now − stamp`. Works on the luma of I420/GRAY8
/// and on RGB/BGR.
pub(super) struct Stamp;

/// Bits in a stamp (about 35 years of milliseconds).
pub const STAMP_BITS: u32 = 40;
/// Side of a stamp block in pixels: large enough to survive compression.
pub const STAMP_BLOCK: u32 = 24;

impl FrameHook for Stamp {
    fn on_frame(&mut self, _: &Frame) -> Option<HookEvent> {
        None
    }

    fn transform(&mut self, frame: &mut FrameMut) -> Option<HookEvent> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        stamp(frame, now);
        None
    }
}

/// Writes `millis` as a stamp (see [`Stamp`]); frames too small for it are left alone.
pub fn stamp(frame: &mut FrameMut, millis: u64) {
    let (w, h, stride, format) = {
        let f = frame.as_frame();
        (f.width(), f.height(), f.stride(0), f.format())
    };
    let (bpp, white, black) = match format {
        "RGB" | "BGR" => (3usize, 255u8, 0u8),
        "I420" | "GRAY8" => (1, 235, 16),
        _ => return,
    };
    if w < STAMP_BITS * STAMP_BLOCK || h < STAMP_BLOCK {
        return;
    }
    let luma = frame.plane_data_mut(0);
    for bit in 0..STAMP_BITS {
        let on = (millis >> (STAMP_BITS - 1 - bit)) & 1 == 1;
        let value = if on { white } else { black };
        let x0 = (bit * STAMP_BLOCK) as usize * bpp;
        for y in 0..STAMP_BLOCK as usize {
            let start = y * stride + x0;
            if let Some(row) = luma.get_mut(start..start + STAMP_BLOCK as usize * bpp) {
                row.fill(value);
            }
        }
    }
}

/// Reads a stamp from packed 8-bit luma (or any one-byte-per-pixel plane), as a viewer would.
pub fn read_stamp(luma: &[u8], stride: usize) -> u64 {
    let mut value = 0u64;
    let half = (STAMP_BLOCK / 2) as usize;
    for bit in 0..STAMP_BITS as usize {
        let at = half * stride + bit * STAMP_BLOCK as usize + half;
        let on = luma.get(at).is_some_and(|v| *v >= 128);
        value = (value << 1) | on as u64;
    }
    value
}

/// Built-in `motion`: mean absolute difference of luma between consecutive frames; an event
/// when it rises above `threshold` (0–255, default 8) and when it falls back below.
pub(super) struct Motion {
    threshold: f64,
    previous: Vec<u8>,
    moving: bool,
}

impl Motion {
    pub(super) fn new(o: &HookOptions) -> Motion {
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
