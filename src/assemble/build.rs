//! From a plan's launch line to a `gst::Pipeline`: parsing it, and wiring what a launch line
//! cannot express (decodebin pads).

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
        Ok(pipeline)
    }
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
