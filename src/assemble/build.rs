//! From a plan's launch line to a `gst::Pipeline`: parsing it, and wiring what a launch line
//! cannot express (decodebin pads, the raw video's colorimetry spelled out in its caps).

use super::*;

impl Plan {
    /// Parses the launch line into a pipeline named after the description and wires its dynamic
    /// parts. The pipeline is returned in the NULL state.
    pub fn build(&self) -> Result<gst::Pipeline, String> {
        let element = gst::parse::launch_full(&self.launch, None, gst::ParseFlags::FATAL_ERRORS)
            .map_err(|e| format!("cannot build the pipeline: {}", e.message()))?;
        let pipeline = match element.downcast::<gst::Pipeline>() {
            Ok(p) => p,
            Err(element) => {
                // A one-element launch line gives the element itself.
                let p = gst::Pipeline::new();
                p.add(&element).map_err(|e| e.to_string())?;
                p
            }
        };
        pipeline.set_property("name", &self.name);

        if let Some(links) = &self.decode {
            wire_decode(&pipeline, links)?;
        }
        explicit_colorimetry(&pipeline, "video_raw");
        Ok(pipeline)
    }
}

/// Writes the raw video's colorimetry into its caps when the source left it out. Left out, it
/// is the default for the picture's size (BT.709 above 576 lines, BT.601 up to), so whatever
/// scales the picture down (a ladder rung, a hook's branch) would also convert its colours
/// from one to the other: three quarters of a 320x180 rung's scaling time, for a picture that
/// looks no better. Spelled out, the scaled picture keeps the colorimetry it has, and its
/// encoder labels it with that.
fn explicit_colorimetry(pipeline: &gst::Pipeline, tee: &str) {
    let Some(pad) = pipeline.by_name(tee).and_then(|e| e.static_pad("sink")) else {
        return;
    };
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, |_, info| {
        let Some(gst::PadProbeData::Event(event)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let gst::EventView::Caps(c) = event.view() else {
            return gst::PadProbeReturn::Ok;
        };
        let caps = c.caps();
        let implied = caps
            .structure(0)
            .is_some_and(|s| s.name() == "video/x-raw" && !s.has_field("colorimetry"));
        if !implied {
            return gst::PadProbeReturn::Ok;
        }
        let Ok(video) = gst_video::VideoInfo::from_caps(caps) else {
            return gst::PadProbeReturn::Ok;
        };
        let mut explicit = caps.to_owned();
        if let Some(s) = explicit.make_mut().structure_mut(0) {
            s.set("colorimetry", video.colorimetry().to_string());
        }
        info.data = Some(gst::PadProbeData::Event(gst::event::Caps::new(&explicit)));
        gst::PadProbeReturn::Ok
    });
}

impl Plan {
    /// Whether a stream of this plan has readers outside its pipeline (viewers, TCP clients,
    /// recorders), which a publisher's stream is relayed to.
    pub fn has_readers(&self) -> bool {
        !(self.webrtc.is_empty()
            && self.tcp.is_empty()
            && self.rtsp.is_empty()
            && self.hls.is_empty()
            && self.whip.is_empty()
            && self.records.is_empty()
            && self.files.is_empty())
    }

    /// Ends the stream so that every sink drains and finalizes. Sources behind a decodebin are
    /// often read in pull mode by a demuxer, which ignores EOS sent to the source element, so
    /// there EOS goes into the decoded branches instead.
    pub fn send_eos(&self, pipeline: &gst::Pipeline) {
        if let Some(ingest) = &self.ingest {
            // The publisher's branches end here; EOS into them drains every output.
            let heads = ["video_in"]
                .into_iter()
                .chain(ingest.audio.then_some("audio_in"));
            for head in heads {
                if let Some(pad) = pipeline.by_name(head).and_then(|e| e.static_pad("sink")) {
                    pad.send_event(gst::event::Eos::new());
                }
            }
            return;
        }
        let Some(links) = &self.decode else {
            pipeline.send_event(gst::event::Eos::new());
            return;
        };
        let heads = [Some(&links.video_head), links.audio_head.as_ref()];
        for head in heads.into_iter().flatten() {
            if let Some(pad) = pipeline.by_name(head).and_then(|e| e.static_pad("sink")) {
                pad.send_event(gst::event::Eos::new());
            }
        }
    }
}

/// Links decodebin's video/audio pads to the branch heads as they appear; at no-more-pads,
/// ends (EOS) any branch that got no stream, so muxers do not wait for it forever.
pub(super) fn wire_decode(pipeline: &gst::Pipeline, links: &DecodeLinks) -> Result<(), String> {
    let decode = pipeline
        .by_name(&links.element)
        .ok_or("the assembled pipeline has no decoder")?;
    let head = |name: &str| pipeline.by_name(name).and_then(|e| e.static_pad("sink"));
    let video = head(&links.video_head);
    let audio = links.audio_head.as_deref().and_then(head);
    let (v, a) = (video.clone(), audio.clone());
    let (expect_video, expect_audio) = (links.expect_video, links.expect_audio);
    decode.connect_pad_added(move |element, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(media) = caps.structure(0).map(|s| s.name().to_string()) else {
            return;
        };
        let is_video = media.starts_with("video/") || media.starts_with("image/");
        let (expected, key) = if is_video {
            (expect_video, "codec")
        } else {
            (expect_audio, "audio_codec")
        };
        if let Some(expected) = expected.filter(|e| media != *e) {
            // End the refused branch: muxers would otherwise hold the
            // other stream waiting for it, and the pipeline could not even be stopped.
            let head = if is_video { v.as_ref() } else { a.as_ref() };
            if let Some(head) = head.filter(|h| !h.is_linked()) {
                head.send_event(gst::event::Eos::new());
            }
            let what = if is_video { "video" } else { "audio" };
            element.post_error_message(gst::error_msg!(
                gst::StreamError::Format,
                [
                    "the stream's {} is {}, not {}: set `{}` in [source] (or passthrough = false to re-encode)",
                    what,
                    media,
                    expected,
                    key
                ]
            ));
            return;
        }
        let target = if media.starts_with("video/") {
            v.as_ref()
        } else if media.starts_with("audio/") {
            a.as_ref()
        } else {
            None
        };
        if let Some(target) = target.filter(|t| !t.is_linked())
            && let Err(e) = pad.link(target) {
                tracing::warn!("cannot link decoded {media} stream: {e:?}");
            }
    });
    decode.connect_no_more_pads(move |_| {
        for head in [video.as_ref(), audio.as_ref()].into_iter().flatten() {
            if !head.is_linked() {
                head.send_event(gst::event::Eos::new());
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use gst::prelude::*;

    /// A 320x180 rung of a 720p test source is encoded from BT.709 pixels, labelled BT.709 (the
    /// source's), not converted to BT.601 (320x180's default).
    #[test]
    fn a_rung_keeps_the_sources_colorimetry() {
        crate::init().expect("GStreamer");
        let text = "[source]\nkind = \"test\"\nwidth = 1280\nheight = 720\naudio = false\n\n\
                    [encode]\nbitrate = 2000\nladder = \"auto\"\n\n[[output]]\nkind = \"webrtc\"\n";
        let desc = crate::description::parse(std::path::Path::new("rung.toml"), text)
            .expect("description");
        let plan = super::super::plan(&desc).expect("plan");
        let pipeline = plan.build().expect("pipeline");
        let valve = pipeline.by_name("rung2_valve").expect("rung 2's valve");
        valve.set_property("drop", false);
        pipeline.set_state(gst::State::Playing).expect("playing");
        let sink = pipeline
            .by_name("out0_rung2")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .expect("rung 2's appsink");
        let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(10));
        let caps = pipeline
            .by_name("rung2_encoder")
            .and_then(|e| e.static_pad("sink"))
            .and_then(|p| p.current_caps());
        let _ = pipeline.set_state(gst::State::Null);
        assert!(sample.is_some(), "rung 2 encoded nothing");
        let caps = caps.expect("rung 2's encoder has caps");
        let s = caps.structure(0).expect("a structure");
        assert_eq!(s.get::<i32>("width").ok(), Some(320), "{caps}");
        assert_eq!(s.get::<&str>("colorimetry").ok(), Some("bt709"), "{caps}");
    }
}
