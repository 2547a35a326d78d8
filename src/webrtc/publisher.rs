//! A publisher's pipeline: webrtcbin receiving what the peer sends, a depayloader per stream
//! into the ingest plan's outputs (record, relay taps, hooks), built per publisher; and how it
//! is drained when the publisher leaves, so every recording is finalized.

use super::cert::DtlsCertificate;
use super::peer::{Built, Event, PipelineGuard, setup_webrtcbin};
use super::types::{IceConfig, Ingest};
use super::viewer::Continuity;
use crate::description::VideoCodec;
use gst::glib;
use gst::prelude::*;
use tokio::sync::mpsc;

/// What a publisher's pipeline receives: the payload types of its video and audio, and
/// whether we offer them (a pulled stream) rather than answer the publisher's offer.
pub struct Receive {
    pub video_pt: Option<u32>,
    pub audio_pt: Option<u32>,
    pub offering: bool,
    /// A simulcast publisher's layers: each goes where the plan has a place for it.
    pub layers: Option<super::simulcast::Layers>,
}

/// Builds and starts a publisher's pipeline: the ingest plan's outputs, fed by webrtcbin
/// through a depayloader per stream as the publisher's pads appear (blocking).
pub fn build_receiver(
    ingest: Ingest,
    codec: VideoCodec,
    receive: Receive,
    ice: IceConfig,
    cert: &'static DtlsCertificate,
    events: mpsc::Sender<Event>,
) -> Result<Built, String> {
    let guard = PipelineGuard(Some(ingest.plan.build()?));
    let pipeline = guard.0.clone().ok_or("no pipeline")?;
    super::peer::count_live(&pipeline);
    let hooks = if ingest.plan.hooks.is_empty() {
        None
    } else {
        Some(crate::hub::hooks::start(
            &ingest.plan.name,
            &pipeline,
            &ingest.plan,
            &ingest.hooks,
        )?)
    };
    let (webrtc, rtx) = setup_webrtcbin(&pipeline, &ice, cert, &events)?;
    let (enc, depay) = match codec {
        VideoCodec::H264 => ("H264", "rtph264depay"),
        VideoCodec::Vp8 => ("VP8", "rtpvp8depay"),
        VideoCodec::Vp9 => ("VP9", "rtpvp9depay"),
        VideoCodec::Av1 => return Err("AV1 cannot be received here".into()),
    };
    let Receive {
        video_pt,
        audio_pt,
        offering,
        layers,
    } = receive;
    let wanted = [
        video_pt.map(|pt| ("video", enc, 90000i32, pt)),
        audio_pt.map(|pt| ("audio", "OPUS", 48000i32, pt)),
    ];
    for (media, enc, rate, pt) in wanted.into_iter().flatten() {
        let mut caps = gst::Caps::builder("application/x-rtp")
            .field("media", media)
            .field("encoding-name", enc)
            .field("payload", pt as i32)
            .field("clock-rate", rate);
        if offering && enc == "OPUS" {
            caps = caps.field("encoding-params", "2");
        }
        if offering && enc == "H264" {
            // What senders check an H.264 offer for: non-interleaved packets, and any
            // profile from constrained baseline up, at any level.
            caps = caps
                .field("packetization-mode", "1")
                .field("profile-level-id", "42e01f")
                .field("level-asymmetry-allowed", "1");
        }
        let caps = caps.build();
        let transceiver = webrtc.emit_by_name_with_values(
            "add-transceiver",
            &[
                gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly.to_value(),
                caps.to_value(),
            ],
        );
        if let Some(t) = transceiver.and_then(|v| v.get::<glib::Object>().ok())
            && t.find_property("do-nack").is_some()
        {
            t.set_property("do-nack", true);
        }
    }
    // Each incoming stream: depayload into its branch head (video_in / audio_in). Linking in
    // pad-added is how GStreamer wires dynamic pads; nothing here waits on anything else.
    // A simulcast publisher's video streams are told apart by the rid of their first packet.
    let weak = pipeline.downgrade();
    let plan = ingest.plan.clone();
    webrtc.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let media = caps
            .structure(0)
            .and_then(|s| s.get::<String>("media").ok())
            .unwrap_or_default();
        match (media.as_str(), &layers) {
            ("video", Some(layers)) => {
                // Weak: the probe lives on a pad of this pipeline (a pad that never says its
                // layer keeps the probe for the pipeline's life).
                let (layers, plan, weak) = (layers.clone(), plan.clone(), pipeline.downgrade());
                pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                    let Some(pipeline) = weak.upgrade() else {
                        return gst::PadProbeReturn::Remove;
                    };
                    let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
                        return gst::PadProbeReturn::Ok;
                    };
                    // Until a packet says which layer this is, its packets go nowhere.
                    let Some(rid) = super::simulcast::packet_rid(buffer, layers.rid_ext) else {
                        return gst::PadProbeReturn::Drop;
                    };
                    let head = layers
                        .rids
                        .iter()
                        .position(|r| *r == rid)
                        .and_then(|k| plan.layer_head(k));
                    tracing::debug!("simulcast layer {rid} arrives at {head:?}");
                    link_stream(&pipeline, pad, head.as_deref().unwrap_or(""), depay);
                    gst::PadProbeReturn::Remove
                });
            }
            ("video", None) => link_stream(&pipeline, pad, "video_in", depay),
            ("audio", _) => link_stream(&pipeline, pad, "audio_in", "rtpopusdepay"),
            _ => link_stream(&pipeline, pad, "", ""),
        }
    });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "the publisher pipeline did not start".to_string())?;
    // The offer has no audio but the outputs expect it: end that branch so muxers go on.
    if audio_pt.is_none() {
        no_audio(&pipeline);
    }
    Ok(Built {
        pipeline: guard,
        _hooks: hooks,
        webrtc,
        rtx,
        links: Vec::new(),
        continuity: Continuity::watch(std::iter::empty()),
        channel: None,
        prober: None,
    })
}

/// Links an incoming stream through a new `depay` into branch head `head`; a stream nobody
/// takes (no such head, or it is taken: a second one of a kind) is drained.
fn link_stream(pipeline: &gst::Pipeline, pad: &gst::Pad, head: &str, depay: &str) {
    let target = pipeline.by_name(head).and_then(|e| e.static_pad("sink"));
    let linked = target.filter(|t| !t.is_linked()).and_then(|target| {
        let d = gst::ElementFactory::make(depay).build().ok()?;
        pipeline.add(&d).ok()?;
        d.sync_state_with_parent().ok()?;
        pad.link(&d.static_pad("sink")?).ok()?;
        d.static_pad("src")?.link(&target).ok()?;
        Some(())
    });
    if linked.is_none()
        && let Ok(sink) = gst::ElementFactory::make("fakesink")
            .property("async", false)
            .build()
        && pipeline.add(&sink).is_ok()
        && sink.sync_state_with_parent().is_ok()
        && let Some(sinkpad) = sink.static_pad("sink")
    {
        let _ = pad.link(&sinkpad);
    }
}

/// Ends the audio branch of a publisher's pipeline that will get no audio (its offer or
/// answer has none), so muxers waiting for it go on.
pub fn no_audio(pipeline: &gst::Pipeline) {
    if let Some(pad) = pipeline
        .by_name("audio_in")
        .and_then(|e| e.static_pad("sink"))
    {
        pad.send_event(gst::event::Eos::new());
    }
}

/// Ends a publisher's stream: end-of-stream into its branches, which carries through to its
/// readers (recorders finish their files, see [`crate::hub::Readers::finish`]).
pub async fn drain(pipeline: Option<gst::Pipeline>, ingest: &Ingest) {
    let Some(pipeline) = pipeline else {
        return;
    };
    let plan = ingest.plan.clone();
    // Sending EOS into a branch takes its stream lock, which a full queue can hold.
    let _ = tokio::task::spawn_blocking(move || plan.send_eos(&pipeline)).await;
}
