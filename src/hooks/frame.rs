//! The frames a hook sees: mapped without a copy, with the sender's time where the source
//! carries it.

use gst_video::prelude::*;
use std::time::Duration;

/// A decoded video frame, mapped read-only; valid during [`super::FrameHook::on_frame`].
pub struct Frame<'a> {
    pub(super) frame: &'a gst_video::VideoFrameRef<&'a gst::BufferRef>,
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

    /// The buffer (a new reference, no copy) and its layout, for readers on other threads.
    pub(crate) fn shared(&self) -> (gst::Buffer, gst_video::VideoInfo) {
        (self.frame.buffer().to_owned(), self.frame.info().clone())
    }

    /// Presentation time, from the start of the stream.
    pub fn pts(&self) -> Option<Duration> {
        self.frame
            .buffer()
            .pts()
            .map(|t| Duration::from_nanos(t.nseconds()))
    }

    /// When the sender stamped this frame, by its clock (UTC), where the source carries it: a
    /// jpeg-tcp source's ascii-base64 senders send their time with each frame.
    pub fn sender_time(&self) -> Option<std::time::SystemTime> {
        sender_time_of(self.frame.buffer())
    }
}

/// The caps naming the reference timestamp that carries a frame's sender time (UTC).
pub const SENDER_TIME: &str = "timestamp/x-unix";

pub(crate) fn sender_time_of(buffer: &gst::BufferRef) -> Option<std::time::SystemTime> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|m| {
            m.reference()
                .structure(0)
                .is_some_and(|s| s.name() == SENDER_TIME)
        })
        .map(|m| std::time::UNIX_EPOCH + Duration::from_nanos(m.timestamp().nseconds()))
}

/// Carries `from`'s sender time over to `to` (a converted copy of the frame).
pub(crate) fn keep_sender_time(from: &gst::BufferRef, to: &mut gst::BufferRef) {
    while let Some(meta) = to.meta_mut::<gst::ReferenceTimestampMeta>() {
        if meta.remove().is_err() {
            break;
        }
    }
    if let Some(m) = from.iter_meta::<gst::ReferenceTimestampMeta>().find(|m| {
        m.reference()
            .structure(0)
            .is_some_and(|s| s.name() == SENDER_TIME)
    }) {
        let caps = m.reference().to_owned();
        gst::ReferenceTimestampMeta::add(to, &caps, m.timestamp(), m.duration());
    }
}

/// A decoded video frame a transform hook may change in place; what it holds when the hook
/// returns is what the outputs carry.
pub struct FrameMut<'a> {
    pub(super) frame: gst_video::VideoFrameRef<&'a mut gst::BufferRef>,
}

impl FrameMut<'_> {
    /// The same frame, read-only (width, height, format, stride, pts, planes).
    pub fn as_frame(&self) -> Frame<'_> {
        Frame { frame: &self.frame }
    }

    /// The bytes of `plane`, writable, without a copy.
    pub fn plane_data_mut(&mut self, plane: u32) -> &mut [u8] {
        self.frame.plane_data_mut(plane).unwrap_or(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frames_sender_time_survives_conversion() {
        gst::init().expect("gst");
        let caps = gst::Caps::new_empty_simple(SENDER_TIME);
        let mut from = gst::Buffer::with_size(4).expect("buffer");
        let when = std::time::UNIX_EPOCH + Duration::from_secs(1_796_450_000);
        let ns = when
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64;
        gst::ReferenceTimestampMeta::add(
            from.get_mut().expect("writable"),
            &caps,
            gst::ClockTime::from_nseconds(ns),
            gst::ClockTime::NONE,
        );
        let mut to = gst::Buffer::with_size(4).expect("buffer");
        // Twice: a reused buffer keeps one sender time, the newest.
        keep_sender_time(&from, to.get_mut().expect("writable"));
        keep_sender_time(&from, to.get_mut().expect("writable"));
        assert_eq!(sender_time_of(&to), Some(when));
        assert_eq!(to.iter_meta::<gst::ReferenceTimestampMeta>().count(), 1);
        assert_eq!(sender_time_of(&gst::Buffer::new()), None);
    }
}
