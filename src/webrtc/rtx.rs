//! Retransmission within a budget, per viewer.
//!
//! webrtcbin (GStreamer 1.22) answers every NACK with a retransmission (its `rtprtxsend` has no
//! limit, resends one packet as often as it is asked, and keeps 500 packets). A viewer on a
//! link slower than the stream loses packets all the time and keeps asking: the service then
//! sent it twelve to fifteen times the stream, saturating the uplink every viewer shares. The
//! guard here sits on each viewer's `rtprtxsend`: it sees the original packets go by and the
//! retransmission requests come up, and lets a request through only when
//! - the packet was sent within the last [`MAX_AGE`] (older ones come too late to be played),
//! - it has not been retransmitted before, and
//! - the viewer's budget allows it: [`SHARE`] of the media bytes it was sent, with at most a
//!   second's worth saved up for a burst of losses.
//!
//! So what goes toward a viewer is at most the stream plus a quarter, whatever its link. (It
//! still gets the whole stream; adapting the picture to the link is another matter.)
//!
//! [`Ledger`] is the decision, without GStreamer; [`guard`] hooks it to the element.

use gst::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Retransmissions may use this share of the bytes sent.
pub const SHARE: f64 = 0.25;
/// A packet older than this is not retransmitted: a receiver plays video within a few hundred
/// milliseconds, and a retransmission still has a trip to make.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// What became of a retransmission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Resend,
    /// Sent longer ago than [`MAX_AGE`], or never seen.
    TooOld,
    AlreadyResent,
    OverBudget,
}

#[derive(Debug)]
struct Sent {
    ssrc: u32,
    seq: u16,
    size: usize,
    at: Instant,
    resent: bool,
}

/// The original packets of the last [`MAX_AGE`] and the bytes retransmissions may still use.
#[derive(Debug, Default)]
pub struct Ledger {
    sent: VecDeque<Sent>,
    /// Bytes of the packets in `sent`.
    window_bytes: usize,
    tokens: f64,
}

impl Ledger {
    /// An original packet went out.
    pub fn sent(&mut self, ssrc: u32, seq: u16, size: usize, now: Instant) {
        self.forget_before(now);
        self.sent.push_back(Sent {
            ssrc,
            seq,
            size,
            at: now,
            resent: false,
        });
        self.window_bytes += size;
        // What may be saved up: the share of the last second's media.
        let cap = self.window_bytes as f64 * SHARE;
        self.tokens = (self.tokens + size as f64 * SHARE).min(cap);
    }

    /// The receiver asks for packet `seq` of `ssrc` again.
    pub fn request(&mut self, ssrc: u32, seq: u16, now: Instant) -> Decision {
        self.forget_before(now);
        let Some(packet) = self
            .sent
            .iter_mut()
            .rev()
            .find(|p| p.ssrc == ssrc && p.seq == seq)
        else {
            return Decision::TooOld;
        };
        if packet.resent {
            return Decision::AlreadyResent;
        }
        if self.tokens < packet.size as f64 {
            return Decision::OverBudget;
        }
        self.tokens -= packet.size as f64;
        packet.resent = true;
        Decision::Resend
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(p) = self.sent.front() {
            if now.saturating_duration_since(p.at) <= MAX_AGE {
                break;
            }
            self.window_bytes -= p.size;
            self.sent.pop_front();
        }
    }
}

/// What a viewer's guard let through and held back, for its statistics.
/// Marks a retransmission request of the viewer's own prober (padding, see
/// [`super::probing`]): outside the budget, and not counted.
pub const PADDING_FIELD: &str = "mediaweave-padding";

#[derive(Debug, Default)]
pub struct RtxCounters {
    pub resent: AtomicU64,
    pub refused: AtomicU64,
    /// The viewer's `rtprtxsend`, once webrtcbin made it.
    rtxsend: Mutex<Option<glib::WeakRef<gst::Element>>>,
}

impl RtxCounters {
    pub fn element(&self) -> Option<gst::Element> {
        self.rtxsend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|w| w.upgrade())
    }
}

/// Puts the budget on a viewer's `rtprtxsend` (called as webrtcbin creates it).
pub fn guard(rtxsend: &gst::Element, counters: Arc<RtxCounters>) {
    // Its own history needs to reach no further back than ours.
    if rtxsend.find_property("max-size-time").is_some() {
        rtxsend.set_property("max-size-time", MAX_AGE.as_millis() as u32);
    }
    *counters.rtxsend.lock().unwrap_or_else(|p| p.into_inner()) = Some(rtxsend.downgrade());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    if let Some(sink) = rtxsend.static_pad("sink") {
        let ledger = ledger.clone();
        sink.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                let now = Instant::now();
                let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
                let mut note = |buffer: &gst::BufferRef| {
                    if let Some((ssrc, seq)) = rtp_ids(buffer) {
                        ledger.sent(ssrc, seq, buffer.size(), now);
                    }
                };
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => note(b),
                    Some(gst::PadProbeData::BufferList(l)) => l.iter().for_each(note),
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
    if let Some(src) = rtxsend.static_pad("src") {
        src.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            let Some(request) = info
                .event()
                .and_then(|e| e.structure())
                .filter(|s| s.name() == "GstRTPRetransmissionRequest")
            else {
                return gst::PadProbeReturn::Ok;
            };
            if request.has_field(PADDING_FIELD) {
                return gst::PadProbeReturn::Ok;
            }
            let (Ok(ssrc), Ok(seq)) = (request.get::<u32>("ssrc"), request.get::<u32>("seqnum"))
            else {
                return gst::PadProbeReturn::Ok;
            };
            let decision = ledger.lock().unwrap_or_else(|p| p.into_inner()).request(
                ssrc,
                seq as u16,
                Instant::now(),
            );
            if decision == Decision::Resend {
                counters.resent.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            } else {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                // Consumed here (Handled, not Drop: gstreamer-rs takes the event out of the
                // probe info, and GStreamer 1.22 then unrefs the empty slot of a dropped event).
                gst::PadProbeReturn::Handled
            }
        });
    }
}

/// SSRC and sequence number of an RTP packet.
fn rtp_ids(buffer: &gst::BufferRef) -> Option<(u32, u16)> {
    let rtp = gst_rtp::RTPBuffer::from_buffer_readable(buffer).ok()?;
    Some((rtp.ssrc(), rtp.seq()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2 Mbit/s stream: 1200-byte packets, 200 a second.
    fn stream(ledger: &mut Ledger, start: Instant, packets: u16) -> Instant {
        let mut now = start;
        for seq in 0..packets {
            now = start + Duration::from_millis(5 * seq as u64);
            ledger.sent(1, seq, 1200, now);
        }
        now
    }

    #[test]
    fn resends_once_within_the_budget() {
        let mut l = Ledger::default();
        let now = stream(&mut l, Instant::now(), 200);
        assert_eq!(l.request(1, 150, now), Decision::Resend);
        assert_eq!(l.request(1, 150, now), Decision::AlreadyResent);
        assert_eq!(l.request(2, 150, now), Decision::TooOld, "another stream");
    }

    #[test]
    fn old_packets_are_not_resent() {
        let mut l = Ledger::default();
        let now = stream(&mut l, Instant::now(), 400);
        // Packet 0 went out 2 s ago.
        assert_eq!(l.request(1, 0, now), Decision::TooOld);
        assert_eq!(l.request(1, 399, now), Decision::Resend);
    }

    #[test]
    fn a_flood_of_requests_gets_a_quarter_of_the_stream() {
        let mut l = Ledger::default();
        let start = Instant::now();
        let (mut resent, mut asked) = (0usize, 0usize);
        // Ten seconds of a viewer asking for every packet again.
        for seq in 0..2000u16 {
            let now = start + Duration::from_millis(5 * seq as u64);
            l.sent(1, seq, 1200, now);
            asked += 1;
            if l.request(1, seq, now) == Decision::Resend {
                resent += 1;
            }
        }
        let share = resent as f64 / asked as f64;
        assert!((0.2..=0.26).contains(&share), "{share}");
    }
}
