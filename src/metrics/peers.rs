//! The WebRTC part of `/metrics`: viewers and publishers per pipeline, each viewer's numbers,
//! and the encoder ladder's rungs.

use super::{Scrape, WebRtcOf, labels};

/// WebRTC viewers and publishers, per pipeline and per viewer.
pub(super) fn webrtc_peers(s: &mut Scrape, all: &[WebRtcOf]) {
    let (mut viewers, mut publishers) = (vec![], vec![]);
    let (mut sessions, mut sent, mut packets, mut lost, mut dropped, mut received) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut v_rtt, mut v_lost, mut v_dropped, mut v_sent) = (vec![], vec![], vec![], vec![]);
    let mut keyframes = vec![];
    let (mut v_switches, mut v_estimate) = (vec![], vec![]);
    for row in all {
        let p = labels(&[("pipeline", &row.pipeline)]);
        if let Some((t, live)) = &row.viewers {
            for (outcome, n) in [
                ("forwarded", row.keyframes.0),
                ("suppressed", row.keyframes.1),
            ] {
                keyframes.push((
                    labels(&[("pipeline", &row.pipeline), ("outcome", outcome)]),
                    n,
                ));
            }
            viewers.push((p.clone(), live.len() as f64));
            sessions.push((p.clone(), t.sessions));
            sent.push((p.clone(), t.bytes_sent));
            packets.push((p.clone(), t.packets_sent));
            lost.push((p.clone(), t.packets_lost));
            dropped.push((p.clone(), t.dropped_buffers));
            for v in live {
                let l = labels(&[("pipeline", &row.pipeline), ("viewer", &v.id)]);
                if let Some(rtt) = v.round_trip_time_ms {
                    v_rtt.push((l.clone(), rtt / 1000.0));
                }
                v_lost.push((l.clone(), v.packets_lost.max(0) as u64));
                v_dropped.push((l.clone(), v.dropped_buffers));
                v_sent.push((l.clone(), v.bytes_sent));
                if let Some(rung) = &v.rung {
                    v_switches.push((l, u64::from(v.switches)));
                    let l = labels(&[
                        ("pipeline", &row.pipeline),
                        ("viewer", &v.id),
                        ("rung", rung),
                    ]);
                    if let Some(kbps) = v.estimate_kbps {
                        v_estimate.push((l, f64::from(kbps)));
                    }
                }
            }
        }
        if let Some((t, now)) = &row.publishers {
            publishers.push((p.clone(), *now as f64));
            received.push((p, t.bytes_received));
        }
    }
    s.gauge(
        "mediaweave_webrtc_viewers",
        "WebRTC viewers connected now",
        viewers,
    );
    s.gauge(
        "mediaweave_webrtc_publishers",
        "WebRTC publishers sending now",
        publishers,
    );
    s.counter(
        "mediaweave_webrtc_sessions",
        "WebRTC viewer sessions since the service started",
        sessions,
    );
    s.counter(
        "mediaweave_webrtc_sent_bytes",
        "RTP bytes sent to WebRTC viewers",
        sent,
    );
    s.counter(
        "mediaweave_webrtc_sent_packets",
        "RTP packets sent to WebRTC viewers",
        packets,
    );
    s.counter(
        "mediaweave_webrtc_lost_packets",
        "Packets viewers reported lost (RTCP receiver reports)",
        lost,
    );
    s.counter(
        "mediaweave_webrtc_dropped_buffers",
        "Encoded buffers dropped by viewers' leaky queues (viewers too slow)",
        dropped,
    );
    s.counter(
        "mediaweave_webrtc_keyframe_requests",
        "Keyframe requests of viewers (joins, PLI, FIR) for a stream: forwarded to its encoder or publisher, or suppressed (one was forwarded under 500 ms before)",
        keyframes,
    );
    s.counter(
        "mediaweave_webrtc_received_bytes",
        "Bytes received from WebRTC publishers",
        received,
    );
    s.gauge(
        "mediaweave_webrtc_viewer_round_trip_seconds",
        "Round-trip time per viewer (RTCP)",
        v_rtt,
    );
    s.counter(
        "mediaweave_webrtc_viewer_lost_packets",
        "Packets a viewer reported lost (RTCP)",
        v_lost,
    );
    s.counter(
        "mediaweave_webrtc_viewer_dropped_buffers",
        "Encoded buffers dropped by a viewer's leaky queue",
        v_dropped,
    );
    s.counter(
        "mediaweave_webrtc_viewer_sent_bytes",
        "RTP bytes sent to a viewer",
        v_sent,
    );
    s.gauge(
        "mediaweave_webrtc_viewer_estimate_kbps",
        "A viewer's bandwidth estimate (TWCC, delay-based; receiver-reported loss as a floor), with the ladder rung it watches",
        v_estimate,
    );
    s.counter(
        "mediaweave_webrtc_viewer_rung_switches",
        "Moves of a viewer between ladder rungs",
        v_switches,
    );
    ladders(s, all);
}

/// Per ladder rung: its viewers, whether its encoder runs, and the frames it encoded.
fn ladders(s: &mut Scrape, all: &[WebRtcOf]) {
    let (mut viewers, mut encoding, mut frames) = (vec![], vec![], vec![]);
    for row in all {
        for r in row.ladder.iter().flatten() {
            let l = labels(&[("pipeline", &row.pipeline), ("rung", &r.rung)]);
            viewers.push((l.clone(), r.viewers as f64));
            encoding.push((l.clone(), if r.encoding { 1.0 } else { 0.0 }));
            frames.push((l, r.frames_encoded));
        }
    }
    s.gauge(
        "mediaweave_ladder_viewers",
        "Viewers on each rung of a pipeline's encoder ladder",
        viewers,
    );
    s.gauge(
        "mediaweave_ladder_encoding",
        "Whether a ladder rung's encoder runs (1) or waits for a viewer (0)",
        encoding,
    );
    s.counter(
        "mediaweave_ladder_encoded_frames",
        "Frames a ladder rung's encoder made",
        frames,
    );
}
