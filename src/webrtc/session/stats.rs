//! A session's numbers: webrtcbin's statistics read into the viewer's [`ViewerStats`], and an
//! adaptive viewer's bandwidth estimate moving it along its ladder.

use super::Session;
use crate::webrtc::peer::Event;
use gst::prelude::*;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where the estimator of a viewer of a simulcast publisher's layers starts, at least
/// (kbit/s): what a browser sends for 720p once it has ramped up. The layers' measured
/// bitrates are low while the publisher ramps up, and an estimator started there would hold a
/// viewer that joins then below the top layer.
const MEASURED_START_KBPS: u32 = 2500;

/// Its ceiling, at least (kbit/s): the top layer of a publisher is not known in advance.
const MEASURED_MAX_KBPS: u32 = 10_000;

/// The estimator of a viewer of `ladder`: it starts at the top rung's bitrate and may go
/// from half the lowest rung's to twice the top's (for measured layers, from at least
/// [`MEASURED_START_KBPS`] up to at least [`MEASURED_MAX_KBPS`]).
pub(super) fn congestion(
    ladder: &crate::webrtc::ladder::Ladder,
    twcc_id: u8,
) -> crate::webrtc::viewer::Congestion {
    let rates = ladder.bitrates();
    let (mut top, low) = (
        rates.first().copied().unwrap_or(2000),
        rates.last().copied().unwrap_or(100),
    );
    if ladder.measured() {
        top = top.max(MEASURED_START_KBPS);
    }
    let max = if ladder.measured() {
        top.saturating_mul(2).max(MEASURED_MAX_KBPS)
    } else {
        top.saturating_mul(2)
    };
    crate::webrtc::viewer::Congestion {
        twcc_id,
        start_bps: top.saturating_mul(1000),
        min_bps: low.saturating_mul(500),
        max_bps: max.saturating_mul(1000),
    }
}

impl Session {
    /// A new bandwidth estimate of a viewer of a ladder (None: the latest one again, as time
    /// passes): it may move to another rung.
    pub(super) fn on_estimate(&mut self, bps: Option<u32>) -> Result<(), String> {
        let Some(climber) = self.climber.as_mut() else {
            return Ok(());
        };
        let Some(video) = self
            .built
            .links
            .iter_mut()
            .find(|l| l.appsrc().name() == "video")
        else {
            return Ok(());
        };
        match bps {
            Some(bps) => climber.estimate(bps, video)?,
            None => climber.tick(video)?,
        };
        let (rung, kbps, switches) = (
            climber.rung_label(),
            climber.estimate_kbps(),
            climber.switches(),
        );
        self.stats.send_modify(|st| {
            st.rung = Some(rung);
            st.estimate_kbps = kbps;
            st.switches = switches;
        });
        Ok(())
    }

    pub(super) fn request_stats(&self, ev_tx: &mpsc::Sender<Event>) {
        let tx = ev_tx.clone();
        let promise = gst::Promise::with_change_func(move |reply| {
            if let Ok(Some(s)) = reply {
                let _ = tx.try_send(Event::Stats(s.to_owned()));
            }
        });
        self.webrtc()
            .emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    }

    pub(super) fn update_stats(&mut self, all: &gst::StructureRef) {
        let (mut bytes, mut packets, mut lost, mut rtt) = (0u64, 0u64, 0i64, None::<f64>);
        let (mut received, mut fraction_lost) = (0u64, None::<f64>);
        for (_, value) in all.iter() {
            let Ok(s) = value.get::<gst::Structure>() else {
                continue;
            };
            match s.name().as_str() {
                "outbound-rtp" => {
                    bytes += s.get::<u64>("bytes-sent").unwrap_or(0);
                    packets += s.get::<u64>("packets-sent").unwrap_or(0);
                }
                "inbound-rtp" => {
                    received += s.get::<u64>("bytes-received").unwrap_or(0);
                }
                "remote-inbound-rtp" => {
                    lost += s.get::<i64>("packets-lost").unwrap_or(0);
                    if let Ok(f) = s.get::<f64>("fraction-lost") {
                        fraction_lost = Some(fraction_lost.map_or(f, |x: f64| x.max(f)));
                    }
                    if let Ok(r) = s.get::<f64>("round-trip-time") {
                        rtt = Some(rtt.map_or(r, |x: f64| x.max(r)));
                    }
                }
                _ => {}
            }
        }
        // The receiver reports' loss is a floor under an adaptive viewer's estimate.
        if let (Some(c), Some(f)) = (self.climber.as_mut(), fraction_lost) {
            c.loss(f);
        }
        let dropped = self.built.links.iter().map(|l| l.dropped()).sum();
        // Cumulative counters only grow: a partial (or error) reply never lowers them.
        self.stats.send_modify(|st| {
            st.bytes_sent = st.bytes_sent.max(bytes);
            st.packets_sent = st.packets_sent.max(packets);
            st.packets_lost = st.packets_lost.max(lost);
            st.round_trip_time_ms = rtt.map(|r| r * 1000.0).or(st.round_trip_time_ms);
            st.dropped_buffers = st.dropped_buffers.max(dropped);
            st.bytes_received = st.bytes_received.max(received);
            st.retransmitted = self
                .built
                .rtx
                .resent
                .load(std::sync::atomic::Ordering::Relaxed);
            st.retransmissions_refused = self
                .built
                .rtx
                .refused
                .load(std::sync::atomic::Ordering::Relaxed);
        });
    }

    /// Asks webrtcbin for its statistics one last time (bounded), so the totals of a session
    /// that ends between two periodic reads still count everything it sent.
    pub(super) async fn final_stats(&mut self) {
        let (promise, reply) = gst::Promise::new_future();
        self.webrtc()
            .emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
        if let Ok(Ok(Some(stats))) = tokio::time::timeout(Duration::from_secs(2), reply).await {
            self.update_stats(&stats);
        }
    }
}
