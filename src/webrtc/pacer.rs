//! The thread of each adaptive viewer's pacer, given timer slack.
//!
//! `rtpgccbwe` (gst-plugins-rs) paces a viewer's packets from a thread of its own, which
//! wakes every 5 ms (its fixed burst time) whether or not it has anything to send: 200
//! wake-ups a second per viewer, about a third of that thread's time. Waking a few
//! milliseconds late costs the pacer nothing (it sends what the elapsed time allows, and
//! keeps at most 30 ms queued), so its thread lets the kernel delay its timers by up to
//! [`PACER_TIMER_SLACK`] (`PR_SET_TIMERSLACK`; the default is 50 µs). The kernel then wakes
//! it less often and wakes the viewers' pacers together; their threads take about 15 % less
//! CPU (measured with 20 viewers, half of them with the slack: README, footnote ⁴).
//!
//! The slack is set when the pacer's task enters its thread and taken back when it leaves:
//! GStreamer reuses the thread for other tasks afterwards.

use gst::prelude::*;
use std::num::NonZeroU64;

/// How late (ns) the kernel may wake a pacer: one burst time more at most.
pub const PACER_TIMER_SLACK: NonZeroU64 = NonZeroU64::new(5_000_000).unwrap();

/// A session pipeline's stream-status message, seen in the thread it speaks of (a bus sync
/// handler): gives an `rtpgccbwe` pacer's thread its slack, and takes it back.
pub fn on_stream_status(status: &gst::message::StreamStatus) {
    let (kind, owner) = status.get();
    if owner.factory().is_none_or(|f| f.name() != "rtpgccbwe") {
        return;
    }
    let slack = match kind {
        gst::StreamStatusType::Enter => Some(PACER_TIMER_SLACK),
        // None: the thread's default slack again.
        gst::StreamStatusType::Leave => None,
        _ => return,
    };
    if let Err(e) = rustix::thread::set_current_timer_slack(slack) {
        tracing::debug!("pacer thread: cannot set its timer slack: {e}");
    }
}

#[cfg(test)]
mod tests {
    use gst::prelude::*;

    /// A real `rtpgccbwe` between a live source and a sink: while it paces, its thread has
    /// the slack; the test thread keeps its own.
    #[test]
    fn the_pacers_thread_gets_its_slack() {
        crate::init().expect("GStreamer");
        let pipeline = gst::parse::launch(
            "videotestsrc is-live=true ! video/x-raw,width=64,height=48 ! rtpvrawpay \
             ! rtpgccbwe name=bwe ! fakesink name=sink",
        )
        .expect("the test pipeline");
        let pipeline = pipeline.downcast::<gst::Pipeline>().expect("a pipeline");
        let bus = pipeline.bus().expect("a bus");
        bus.set_sync_handler(|_, msg| {
            if let gst::MessageView::StreamStatus(s) = msg.view() {
                super::on_stream_status(s);
            }
            gst::BusSyncReply::Pass
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let bwe = pipeline.by_name("bwe").expect("rtpgccbwe");
        let src = bwe.static_pad("src").expect("its src pad");
        src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let _ = tx.send(rustix::thread::current_timer_slack().unwrap_or(0));
            gst::PadProbeReturn::Remove
        });
        pipeline.set_state(gst::State::Playing).expect("playing");
        let slack = rx.recv_timeout(std::time::Duration::from_secs(10));
        pipeline.set_state(gst::State::Null).expect("stopped");
        bus.unset_sync_handler();
        assert_eq!(slack, Ok(super::PACER_TIMER_SLACK.get()));
        assert_ne!(
            rustix::thread::current_timer_slack().unwrap_or(0),
            super::PACER_TIMER_SLACK.get()
        );
    }
}
