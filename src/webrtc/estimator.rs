//! A viewer's bandwidth estimator: gst-plugins-rs `rtpgccbwe` (Google congestion control),
//! fed the viewer's transport-wide feedback from outside its media path.
//!
//! As webrtcbin's auxiliary sender, `rtpgccbwe` sits before the RTP session and also paces:
//! every packet waits in its queue for a thread of its own, which wakes every 5 ms (its fixed
//! burst time) whether or not it has anything to send. With 20 viewers those threads were
//! the largest share of the service's CPU (README, "Where the time goes"). The estimate needs
//! none of that: the RTP session turns each feedback packet into an upstream `RTPTWCCPackets`
//! event (the send and arrival times of the packets it covers), and `rtpgccbwe` estimates from
//! those events alone, as they reach its source pad. So the estimator stands apart: its
//! source pad is made active, which starts the pacer's task, and the task is stopped at once;
//! the events, on their way upstream past the video's payloader, are handed to it. The media
//! goes on as its rung's encoder made it, unpaced, as MediaMTX and go2rtc send: a rung is
//! encoded at its own bitrate, and a viewer whose link carries less moves down a rung.

use gst::prelude::*;
use std::sync::Arc;

/// The name of the RTP session's feedback event.
const FEEDBACK: &str = "RTPTWCCPackets";

pub struct Estimator {
    bwe: gst::Element,
    /// Its source pad, where the feedback goes in.
    src: gst::Pad,
}

impl Estimator {
    /// An estimator starting at `start` and kept within `min..=max` (bit/s): `on_estimate`
    /// gets each new estimate (bit/s), in the thread that read the feedback.
    pub fn new(
        start: u32,
        (min, max): (u32, u32),
        on_estimate: impl Fn(u32) + Send + Sync + 'static,
    ) -> Result<Arc<Estimator>, String> {
        let bwe = gst::ElementFactory::make("rtpgccbwe")
            .property("min-bitrate", min)
            .property("max-bitrate", max)
            .property("estimated-bitrate", start)
            .build()
            .map_err(|_| "rtpgccbwe is not available".to_string())?;
        let src = bwe.static_pad("src").ok_or("rtpgccbwe has no src pad")?;
        src.set_active(true)
            .map_err(|e| format!("cannot activate rtpgccbwe: {e}"))?;
        // Its pacer, which would send nothing: no buffer ever reaches it.
        if let Err(e) = src.stop_task() {
            tracing::warn!("rtpgccbwe's pacer did not stop: {e}");
        }
        bwe.connect_notify(Some("estimated-bitrate"), move |e, _| {
            on_estimate(e.property::<u32>("estimated-bitrate"));
        });
        Ok(Arc::new(Estimator { bwe, src }))
    }

    /// Feeds the estimator the feedback that passes `pad` upstream (the source pad of the
    /// viewer's video payloader).
    pub fn listen(self: &Arc<Self>, pad: &gst::Pad) {
        let estimator = Arc::downgrade(self);
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            let Some(gst::PadProbeData::Event(event)) = &info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let feedback = event.type_() == gst::EventType::CustomUpstream
                && event.structure().is_some_and(|s| s.name() == FEEDBACK);
            if !feedback {
                return gst::PadProbeReturn::Ok;
            }
            match estimator.upgrade() {
                Some(e) => {
                    // rtpgccbwe passes the event on to its (unlinked) sink pad: false.
                    let _ = e.src.send_event(event.clone());
                    gst::PadProbeReturn::Ok
                }
                None => gst::PadProbeReturn::Remove,
            }
        });
    }

    /// Sets the estimate (bit/s): the link carried enough to say so.
    pub fn set_estimate(&self, bps: u32) {
        self.bwe.set_property("estimated-bitrate", bps);
    }
}

impl Drop for Estimator {
    fn drop(&mut self) {
        let _ = self.src.set_active(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender's RTP session and a receiver's, joined in one pipeline: the receiver sends
    /// transport-wide feedback, the sender's session turns it into events that go upstream
    /// past the payloader, and the estimator (with no thread of its own) estimates from them.
    #[test]
    fn the_estimator_estimates_from_a_real_sessions_feedback_without_a_pacer() {
        crate::init().expect("GStreamer");
        let twcc = format!("extmap-1={}", super::super::sdp::TWCC_URI);
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 \
             ! x264enc tune=zerolatency bitrate=500 key-int-max=30 ! rtph264pay name=pay \
             ! application/x-rtp,{twcc},rtcp-fb-transport-cc=true ! sender.send_rtp_sink_0 \
             rtpbin name=sender rtpbin name=receiver \
             sender.send_rtp_src_0 ! application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96,{twcc},rtcp-fb-transport-cc=true \
             ! receiver.recv_rtp_sink_0 \
             receiver.send_rtcp_src_0 ! sender.recv_rtcp_sink_0 \
             sender.send_rtcp_src_0 ! fakesink sync=false async=false"
        ))
        .expect("the test pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        let receiver = pipeline.by_name("receiver").expect("receiver");
        let bin = pipeline.clone();
        receiver.connect_pad_added(move |_, pad| {
            if pad.name().starts_with("recv_rtp_src") {
                let sink = gst::ElementFactory::make("fakesink")
                    .property("sync", false)
                    .property("async", false)
                    .build()
                    .expect("fakesink");
                let _ = bin.add(&sink);
                let _ = sink.sync_state_with_parent();
                if let Some(s) = sink.static_pad("sink") {
                    let _ = pad.link(&s);
                }
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let estimator = Estimator::new(100_000, (50_000, 5_000_000), move |bps| {
            let _ = tx.send(bps);
        })
        .expect("rtpgccbwe");
        assert_ne!(estimator.src.task_state(), gst::TaskState::Started);
        let pay = pipeline.by_name("pay").expect("payloader");
        estimator.listen(&pay.static_pad("src").expect("its src pad"));
        pipeline.set_state(gst::State::Playing).expect("playing");
        let estimate = rx.recv_timeout(std::time::Duration::from_secs(15));
        pipeline.set_state(gst::State::Null).expect("stopped");
        let estimate = estimate.expect("no estimate from the session's feedback");
        assert!(estimate >= 50_000, "{estimate}");
        assert_ne!(estimator.src.task_state(), gst::TaskState::Started);
    }
}
