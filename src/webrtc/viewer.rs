//! A viewer's pipeline: `appsrc → payloader → webrtcbin` per stream, fed by the output's
//! stream producers (leaky appsrcs: a slow viewer drops its own data), on the main pipeline's
//! clock; and the timestamp continuity that lets it follow a restarted pipeline.

use super::cert::DtlsCertificate;
use super::estimator::Estimator;
use super::peer::{Built, Event, PipelineGuard, count_live, make, setup_webrtcbin};
use super::types::IceConfig;
use crate::description::VideoCodec;
use gst::glib;
use gst::prelude::*;
use gst_utils::streamproducer::StreamProducer;
use gst_webrtc::WebRTCDataChannel;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub struct BuildArgs {
    pub name: String,
    pub codec: VideoCodec,
    pub video: Option<(StreamProducer, u32)>,
    pub audio: Option<(StreamProducer, u32)>,
    pub clock: Option<(gst::Clock, gst::ClockTime)>,
    pub ice: IceConfig,
    pub cert: &'static DtlsCertificate,
    pub create_channel: bool,
    pub events: mpsc::Sender<Event>,
    /// Estimate this viewer's bandwidth (an adaptive viewer of a ladder whose peer sends
    /// TWCC feedback).
    pub congestion: Option<Congestion>,
}

/// A viewer's bandwidth estimation: the TWCC header extension on its video, and a delay-based
/// estimator fed the peer's feedback ([`super::estimator`]), whose estimate goes to the
/// session as [`Event::Estimate`].
#[derive(Debug, Clone, Copy)]
pub struct Congestion {
    /// The header extension's id (the peer's, when it offered).
    pub twcc_id: u8,
    /// bit/s: where the estimate starts, and its bounds.
    pub start_bps: u32,
    pub min_bps: u32,
    pub max_bps: u32,
}

/// Adds the TWCC extension to `payloader` and marks `caps` so the SDP carries it with its
/// feedback.
fn add_twcc(payloader: &gst::Element, caps: &mut gst::Caps, id: u8) -> Result<(), String> {
    let ext = gst_rtp::RTPHeaderExtension::create_from_uri(super::sdp::TWCC_URI)
        .ok_or("GStreamer has no TWCC header extension (rtpmanager)")?;
    gst_rtp::prelude::RTPHeaderExtensionExt::set_id(&ext, u32::from(id));
    payloader.emit_by_name::<()>("add-extension", &[&ext]);
    if let Some(s) = caps.make_mut().structure_mut(0) {
        s.set("rtcp-fb-transport-cc", true);
    }
    Ok(())
}

/// A viewer's estimator, whose estimates go to the session; None (the viewer keeps its rung)
/// if GStreamer cannot make one.
fn estimator(cc: &Congestion, events: &mpsc::Sender<Event>) -> Option<Arc<Estimator>> {
    let tx = events.clone();
    match Estimator::new(cc.start_bps, (cc.min_bps, cc.max_bps), move |bps| {
        let _ = tx.try_send(Event::Estimate(bps));
    }) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!("{e}: this viewer keeps its rung");
            None
        }
    }
}

/// How far a viewer pipeline's running time is ahead of its main pipeline's.
const VIEWER_CLOCK_MARGIN: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// Builds and starts a viewer pipeline (blocking: runs on the blocking pool).
pub fn build(a: BuildArgs) -> Result<Built, String> {
    let guard = PipelineGuard(Some(gst::Pipeline::with_name(&a.name)));
    let pipeline = guard.0.clone().ok_or("no pipeline")?;
    count_live(&pipeline);
    let (webrtc, rtx) = setup_webrtcbin(&pipeline, &a.ice, a.cert, &a.events)?;
    // An adaptive viewer's estimator, and its prober (attached to the video's payloader).
    let prober = match (a.congestion, a.video.is_some()) {
        (Some(cc), true) => {
            let estimator = estimator(&cc, &a.events);
            Some(super::probing::Prober::new(rtx.clone(), estimator))
        }
        _ => None,
    };

    let mut links = Vec::new();
    let branches = [
        a.video.map(|(p, pt)| (p, pt, true)),
        a.audio.map(|(p, pt)| (p, pt, false)),
    ];
    // An offer or answer carries the right codec parameters only once the stream's caps are
    // known. H.264's come from the stream itself (sprop, profile-level-id), so with H.264 video
    // the video branch must have payloaded a buffer (audio often flows first, while video
    // waits for a keyframe); otherwise any branch will do.
    let h264_video = branches[0].is_some() && a.codec == VideoCodec::H264;
    let flowing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (producer, pt, is_video) in branches.into_iter().flatten() {
        let appsrc = gst_app::AppSrc::builder()
            .name(if is_video { "video" } else { "audio" })
            .format(gst::Format::Time)
            .is_live(true)
            .build();
        let (payloader, caps) = payloader(a.codec, a.congestion, is_video, pt, prober.as_ref())?;
        payloader.set_property("pt", pt);
        let filter = gst::ElementFactory::make("capsfilter")
            .property("caps", &caps)
            .build()
            .map_err(|e| e.to_string())?;
        pipeline
            .add_many([appsrc.upcast_ref(), &payloader, &filter])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([appsrc.upcast_ref(), &payloader, &filter])
            .map_err(|e| format!("cannot link the viewer's payloader: {e}"))?;
        let sink = webrtc
            .request_pad_simple("sink_%u")
            .ok_or("webrtcbin gave no sink pad")?;
        // RTCP feedback: retransmit on NACK (PLI already reaches the encoder as a key-unit
        // request through the payloader and the stream producer).
        if let Some(t) = sink.property::<Option<glib::Object>>("transceiver")
            && t.find_property("do-nack").is_some()
        {
            t.set_property("do-nack", true);
        }
        filter
            .static_pad("src")
            .ok_or("capsfilter has no src pad")?
            .link(&sink)
            .map_err(|e| format!("cannot link into webrtcbin: {e:?}"))?;
        let (tx, flowing) = (a.events.clone(), flowing.clone());
        let counts = is_video || !h264_video;
        if let (Some(src), true) = (payloader.static_pad("src"), counts) {
            // Payloaders push lists too (rtpvp8pay does): either is media.
            let data = gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST;
            src.add_probe(data, move |_, _| {
                if !flowing.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    let _ = tx.try_send(Event::MediaFlowing);
                }
                gst::PadProbeReturn::Remove
            });
        }
        links.push(
            producer
                .add_consumer(&appsrc)
                .map_err(|e| format!("cannot attach the viewer: {e}"))?,
        );
    }
    if links.is_empty() {
        return Err("the offer takes neither the video nor the audio this pipeline sends".into());
    }
    let continuity = Continuity::watch(links.iter().map(|l| l.appsrc()));

    if let Some((clock, base)) = &a.clock {
        // The main pipeline's clock, and its base time moved back by a margin: a live appsrc
        // waits until a buffer's running time comes, and buffers of a main pipeline that is
        // not live (a TCP or URI source buffered while it prerolled) can be ahead of its clock
        // by a second; waiting here would overflow the viewer's queue. With the margin every
        // buffer is already due and goes out the moment it is encoded.
        pipeline.use_clock(Some(clock));
        pipeline.set_start_time(gst::ClockTime::NONE);
        pipeline.set_base_time(base.saturating_sub(VIEWER_CLOCK_MARGIN));
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "the viewer pipeline did not start".to_string())?;
    // After PLAYING: webrtcbin refuses data channels while it is still closed (NULL).
    let channel = if a.create_channel {
        chat_channel(&webrtc)
    } else {
        None
    };

    Ok(Built {
        pipeline: guard,
        _hooks: None,
        webrtc,
        rtx,
        links,
        continuity,
        channel,
        prober,
    })
}

/// The payloader of a viewer's video or audio, and the RTP caps it sends with (with the TWCC
/// extension, counted by the prober, for an adaptive viewer's video).
fn payloader(
    codec: VideoCodec,
    congestion: Option<Congestion>,
    is_video: bool,
    pt: u32,
    prober: Option<&Arc<super::probing::Prober>>,
) -> Result<(gst::Element, gst::Caps), String> {
    if is_video {
        let (pay, enc) = match codec {
            VideoCodec::H264 => ("rtph264pay", "H264"),
            VideoCodec::Vp8 => ("rtpvp8pay", "VP8"),
            VideoCodec::Vp9 => ("rtpvp9pay", "VP9"),
            VideoCodec::Av1 => return Err("AV1 cannot be sent over WebRTC here".into()),
        };
        let p = make(pay)?;
        if codec == VideoCodec::H264 {
            // SPS/PPS with every keyframe; one NAL per packet as soon as it is ready.
            p.set_property("config-interval", -1i32);
            p.set_property_from_str("aggregate-mode", "zero-latency");
        }
        let mut caps = gst::Caps::builder("application/x-rtp")
            .field("media", "video")
            .field("encoding-name", enc)
            .field("payload", pt as i32)
            .field("clock-rate", 90000i32)
            .build();
        if let Some(cc) = congestion {
            add_twcc(&p, &mut caps, cc.twcc_id)?;
            if let (Some(prober), Some(pad)) = (&prober, p.static_pad("src")) {
                prober.attach(&pad);
            }
        }
        Ok((p, caps))
    } else {
        let caps = gst::Caps::builder("application/x-rtp")
            .field("media", "audio")
            .field("encoding-name", "OPUS")
            .field("payload", pt as i32)
            .field("clock-rate", 48000i32)
            .build();
        Ok((make("rtpopuspay")?, caps))
    }
}

/// The viewer's chat data channel (webrtcbin refuses them before PLAYING).
fn chat_channel(webrtc: &gst::Element) -> Option<WebRTCDataChannel> {
    // Typed emit_by_name panics here on GStreamer 1.22 (glib rejects the declared return
    // type), so take the value untyped and convert it.
    let value = webrtc.emit_by_name_with_values(
        "create-data-channel",
        &["chat".to_value(), None::<gst::Structure>.to_value()],
    );
    let channel = value.and_then(|v| {
        v.get::<glib::Object>()
            .ok()
            .and_then(|o| o.downcast::<WebRTCDataChannel>().ok())
    });
    if channel.is_none() {
        tracing::warn!("webrtcbin made no data channel: chat is off for this viewer");
    }
    channel
}

/// Keeps a viewer's timestamps going forward when its streams switch to a restarted main
/// pipeline, whose running time starts again near zero: the first buffer after
/// [`Continuity::rebase`] sets an offset on every appsrc pad so that it lands where the old
/// stream would be by now (the last buffer sent plus the time since). RTP timestamps then
/// jump by the length of the pause, as a peer expects, and never go back; nothing waits,
/// the viewer pipeline's clock being [`VIEWER_CLOCK_MARGIN`] ahead.
pub struct Continuity {
    epoch: std::time::Instant,
    /// Running time of the latest buffer sent (ns, offset included), and when it was sent
    /// (ns since `epoch`).
    sent: Mutex<(i64, i64)>,
    rebase: std::sync::atomic::AtomicBool,
}

impl Continuity {
    pub fn watch<'a>(appsrcs: impl Iterator<Item = &'a gst_app::AppSrc>) -> Arc<Continuity> {
        let continuity = Arc::new(Continuity {
            epoch: std::time::Instant::now(),
            sent: Mutex::new((0, 0)),
            rebase: std::sync::atomic::AtomicBool::new(false),
        });
        let pads: Vec<gst::Pad> = appsrcs.filter_map(|a| a.static_pad("src")).collect();
        // Weak: the probes live on these pads.
        let all: Arc<Vec<glib::WeakRef<gst::Pad>>> =
            Arc::new(pads.iter().map(|p| p.downgrade()).collect());
        for pad in &pads {
            let (c, all) = (continuity.clone(), all.clone());
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(rt) = info.buffer().and_then(|b| running_time(pad, b)) {
                    c.sent(pad, rt, &all);
                }
                gst::PadProbeReturn::Ok
            });
        }
        continuity
    }

    fn sent(&self, pad: &gst::Pad, rt: i64, all: &[glib::WeakRef<gst::Pad>]) {
        let now = i64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(i64::MAX);
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let mut offset = pad.offset();
        if self.rebase.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let (last, at) = *sent;
            offset = last.saturating_add(now.saturating_sub(at).max(1_000_000)) - rt;
            // GStreamer resends the segment with the new offset before this buffer.
            for p in all.iter().filter_map(|w| w.upgrade()) {
                p.set_offset(offset);
            }
        }
        let out = rt.saturating_add(offset);
        if out >= sent.0 {
            *sent = (out, now);
        }
    }

    pub fn rebase(&self) {
        self.rebase.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A buffer's running time in its pad's segment (ns), without the pad offset.
fn running_time(pad: &gst::Pad, buffer: &gst::BufferRef) -> Option<i64> {
    let pts = buffer.pts()?;
    let event = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = event.segment().downcast_ref::<gst::ClockTime>()?;
    let rt = segment.to_running_time(pts)?;
    i64::try_from(rt.nseconds()).ok()
}
