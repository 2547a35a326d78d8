//! Probing a viewer's link: a delay-based estimator only learns what a link carries by
//! seeing it carry that much, and a viewer on a lower rung sends less than a better rung
//! needs. So while its rules ask for it ([`super::adapt`]), the viewer is also sent
//! retransmissions of packets it already has, up to a padding rate: on its RTX stream, as
//! libwebrtc pads, with sequence numbers of their own (SRTP refuses to send one packet
//! twice). The receiver drops them as duplicates, and its transport-wide feedback counts
//! them, so the estimate can grow to what a better rung needs, or show that the link cannot
//! carry it. The prober also counts what the video sends, padding included.
//!
//! A viewer that negotiated no retransmissions (its offer had no `rtx`) cannot be padded:
//! `rtprtxsend` then answers every request without sending anything. Such a viewer gets no
//! padding, and none is counted (counting it made the estimate climb over padding that never
//! left, and the viewer try a better rung its link could not carry every half minute).

use gst::prelude::*;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// How many retransmissions one media packet may set off (a 200 kbit/s rung probing for
/// 2.6 Mbit/s needs ~12).
const MAX_COPIES: usize = 16;
/// Packets remembered to be resent as padding: about the last half second of a low rung,
/// within what `rtprtxsend` keeps (see [`super::rtx::MAX_AGE`]).
const RECENT: usize = 64;
/// Packets older than this are not resent (`rtprtxsend` may have forgotten them).
const MAX_AGE: std::time::Duration = std::time::Duration::from_millis(700);

#[derive(Default)]
pub struct Prober {
    /// bit/s of padding to add (0: none).
    padding_bps: AtomicU32,
    /// Bytes the video sent, padding included, and its media alone.
    sent: AtomicU64,
    media: AtomicU64,
    state: Mutex<State>,
    /// The viewer's `rtprtxsend`, which sends the padding (its retransmission requests).
    rtx: Arc<super::rtx::RtxCounters>,
    /// The viewer's estimator (if one could be made), fed the feedback that passes the
    /// payloader.
    estimator: Option<Arc<super::estimator::Estimator>>,
    /// Whether `rtprtxsend` retransmits for this viewer, read when padding is first due:
    /// padding is asked for only once the estimator had feedback, after negotiation.
    can_pad: OnceLock<bool>,
}

/// Whether `rtxsend` has a retransmission payload type for some stream: without one it sends
/// nothing for a request.
fn retransmits(rtxsend: &gst::Element) -> bool {
    rtxsend.find_property("payload-type-map").is_some()
        && rtxsend
            .property::<Option<gst::Structure>>("payload-type-map")
            .is_some_and(|map| map.n_fields() > 0)
}

#[derive(Default)]
struct State {
    bucket: Bucket,
    /// (ssrc, seq, size) of recent video packets and when they went, oldest first.
    recent: std::collections::VecDeque<((u32, u16, usize), Instant)>,
    /// Which of them goes next.
    next: usize,
}

#[derive(Default)]
struct Bucket {
    /// Bytes of padding due.
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// Adds what `bps` earned since the last call (at most 100 ms' worth).
    fn refill(&mut self, bps: u32, now: Instant) {
        let dt = self
            .last
            .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64())
            .min(0.1);
        self.last = Some(now);
        let rate = f64::from(bps) / 8.0;
        self.tokens = (self.tokens + rate * dt).min(rate * 0.1);
    }

    /// Takes a packet of `size` bytes if one is due.
    fn take(&mut self, size: usize) -> bool {
        let size = size.max(1) as f64;
        if self.tokens >= size {
            self.tokens -= size;
            true
        } else {
            false
        }
    }
}

impl State {
    /// The packets to resend now: recent ones in turn, as many as the padding rate allows.
    fn due(&mut self, bps: u32, now: Instant) -> Vec<(u32, u16, usize)> {
        self.bucket.refill(bps, now);
        while self
            .recent
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > MAX_AGE)
        {
            self.recent.pop_front();
            self.next = self.next.saturating_sub(1);
        }
        let mut out = Vec::new();
        while out.len() < MAX_COPIES && !self.recent.is_empty() {
            let i = self.next % self.recent.len();
            let packet = self.recent[i].0;
            if !self.bucket.take(packet.2) {
                break;
            }
            self.next = i + 1;
            out.push(packet);
        }
        out
    }

    fn note(&mut self, packet: (u32, u16, usize), now: Instant) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
            self.next = self.next.saturating_sub(1);
        }
        self.recent.push_back((packet, now));
    }
}

impl Prober {
    /// A prober that pads through the viewer's `rtprtxsend` (found through `rtx` once
    /// webrtcbin made it), and whose [`Prober::raise`] sets `estimator`'s estimate.
    pub fn new(
        rtx: Arc<super::rtx::RtxCounters>,
        estimator: Option<Arc<super::estimator::Estimator>>,
    ) -> Arc<Prober> {
        Arc::new(Prober {
            rtx,
            estimator,
            ..Prober::default()
        })
    }

    /// Sets the estimate (bit/s): the link carried enough to say so.
    pub fn raise(&self, bps: u32) {
        if let Some(e) = &self.estimator {
            e.set_estimate(bps);
        }
    }

    /// Counts the RTP leaving `payloader_src`, pads it when asked, and hands the estimator
    /// the feedback coming back.
    pub fn attach(self: &Arc<Self>, payloader_src: &gst::Pad) {
        if let Some(e) = &self.estimator {
            e.listen(payloader_src);
        }
        let p = self.clone();
        payloader_src.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                p.on_data(info);
                gst::PadProbeReturn::Ok
            },
        );
    }

    pub fn set_padding(&self, bps: u32) {
        self.padding_bps.store(bps, Ordering::Relaxed);
    }

    /// Bytes sent so far, padding included.
    pub fn sent_bytes(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes of media sent so far.
    pub fn media_bytes(&self) -> u64 {
        self.media.load(Ordering::Relaxed)
    }

    /// Whether the viewer's `rtprtxsend` sends what the prober asks for (read once).
    fn can_pad(&self, rtxsend: &gst::Element) -> bool {
        *self.can_pad.get_or_init(|| {
            let can = retransmits(rtxsend);
            if !can {
                tracing::debug!("viewer negotiated no retransmissions: it is not padded");
            }
            can
        })
    }

    fn on_data(&self, info: &gst::PadProbeInfo) {
        let bps = self.padding_bps.load(Ordering::Relaxed);
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // The packets before these have gone through rtprtxsend already: they can be resent.
        let due = if bps > 0 {
            state.due(bps, now)
        } else {
            Vec::new()
        };
        let mut note = |buffer: &gst::BufferRef| {
            self.sent.fetch_add(buffer.size() as u64, Ordering::Relaxed);
            self.media
                .fetch_add(buffer.size() as u64, Ordering::Relaxed);
            if let Ok(rtp) = gst_rtp::RTPBuffer::from_buffer_readable(buffer) {
                state.note((rtp.ssrc(), rtp.seq(), buffer.size()), now);
            }
        };
        match &info.data {
            Some(gst::PadProbeData::Buffer(b)) => note(b),
            Some(gst::PadProbeData::BufferList(l)) => l.iter().for_each(note),
            _ => {}
        }
        drop(state);
        if due.is_empty() {
            return;
        }
        let Some(rtxsend) = self.rtx.element() else {
            return;
        };
        if !self.can_pad(&rtxsend) {
            return;
        }
        let Some(src) = rtxsend.static_pad("src") else {
            return;
        };
        for (ssrc, seq, size) in due {
            let request = gst::Structure::builder("GstRTPRetransmissionRequest")
                .field("ssrc", ssrc)
                .field("seqnum", u32::from(seq))
                .field(super::rtx::PADDING_FIELD, true)
                .build();
            if src.send_event(gst::event::CustomUpstream::new(request)) {
                self.sent.fetch_add(size as u64, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A prober padding a 40-packet stream through a real `rtprtxsend`, with `pt_map` (rtx
    /// payload type by media payload type) or none: (bytes counted as sent, media bytes,
    /// retransmissions `rtprtxsend` made).
    fn pad_through_rtxsend(pt_map: Option<&str>) -> (u64, u64, u32) {
        gst::init().expect("gstreamer");
        let pipeline = gst::parse::launch(
            "appsrc name=src format=time caps=application/x-rtp,media=video,clock-rate=90000,payload=96 \
             ! rtprtxsend name=rtx ! fakesink sync=false",
        )
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        let rtxsend = pipeline.by_name("rtx").expect("rtprtxsend");
        if let Some(map) = pt_map {
            let map = map.parse::<gst::Structure>().expect("map");
            rtxsend.set_property("payload-type-map", map);
        }
        let counters = Arc::new(super::super::rtx::RtxCounters::default());
        super::super::rtx::guard(&rtxsend, counters.clone());
        let prober = Prober::new(counters, None);
        let appsrc = pipeline
            .by_name("src")
            .and_downcast::<gst_app::AppSrc>()
            .expect("appsrc");
        prober.attach(&appsrc.static_pad("src").expect("src pad"));
        prober.set_padding(2_000_000);
        pipeline.set_state(gst::State::Playing).expect("playing");
        for seq in 0..40u16 {
            let mut buffer =
                <gst::Buffer as gst_rtp::rtp_buffer::RTPBufferExt>::new_rtp_with_sizes(1000, 0, 0)
                    .expect("rtp");
            {
                let b = buffer.get_mut().expect("writable");
                b.set_pts(gst::ClockTime::from_mseconds(u64::from(seq) * 10));
                let mut rtp = gst_rtp::RTPBuffer::from_buffer_writable(b).expect("rtp");
                rtp.set_ssrc(7);
                rtp.set_seq(seq);
                rtp.set_payload_type(96);
            }
            appsrc.push_buffer(buffer).expect("pushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        let made = rtxsend.property::<u32>("num-rtx-packets");
        pipeline.set_state(gst::State::Null).expect("stopped");
        (prober.sent_bytes(), prober.media_bytes(), made)
    }

    #[test]
    fn a_viewer_without_retransmissions_is_not_padded_nor_counted_as_padded() {
        let (sent, media, made) = pad_through_rtxsend(None);
        assert_eq!(made, 0);
        assert_eq!(sent, media, "padding counted that was never sent");
        let (sent, media, made) =
            pad_through_rtxsend(Some("application/x-rtp-pt-map, 96=(uint)97"));
        assert!(made > 0, "no padding sent");
        assert!(sent > media, "padding sent but not counted: {sent} {media}");
    }

    #[test]
    fn padding_resends_recent_packets_in_turn_at_its_rate() {
        let t0 = Instant::now();
        let mut st = State::default();
        for seq in 0..3u16 {
            st.note((7, seq, 1000), t0);
        }
        assert!(st.due(800_000, t0).is_empty());
        // 20 ms at 800 kbit/s = 2000 bytes: two packets, oldest first, then on in turn.
        let due = st.due(800_000, t0 + Duration::from_millis(20));
        assert_eq!(due, [(7, 0, 1000), (7, 1, 1000)]);
        let due = st.due(800_000, t0 + Duration::from_millis(40));
        assert_eq!(due, [(7, 2, 1000), (7, 0, 1000)]);
        // At most 100 ms' worth at once, and at most MAX_COPIES.
        assert_eq!(st.due(800_000, t0 + Duration::from_millis(200)).len(), 10);
        assert_eq!(
            st.due(100_000_000, t0 + Duration::from_millis(400)).len(),
            MAX_COPIES
        );
        // Packets too old to be resent are dropped.
        assert!(st.due(800_000, t0 + Duration::from_secs(1)).is_empty());
        assert!(st.recent.is_empty());
        // The oldest is forgotten past RECENT.
        for seq in 0..(RECENT as u16 + 10) {
            st.note((7, seq, 100), t0);
        }
        assert_eq!(st.recent.len(), RECENT);
        assert_eq!(st.recent[0].0.1, 10);
    }
}
