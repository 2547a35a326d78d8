//! `GET /metrics`: the service in Prometheus' exposition format (OpenMetrics text), rendered
//! with `prometheus-client` from a snapshot taken at scrape time: pipelines (state, uptime,
//! restarts, encoder, latency, queue levels, encoded bytes and frames, TCP outputs), WebRTC
//! viewers and publishers (bytes, packets, loss and RTT from RTCP, frames dropped by their
//! queues), hooks, recordings, and the process (CPU, memory, threads, file descriptors).
//!
//! GStreamer's own numbers are read the way its tracers would report them, but on demand:
//! a latency query per pipeline and the current level of every queue.

use crate::record::Recordings;
use crate::supervisor::{State, Supervisor};
use crate::webrtc::output::Registry as WebRtc;
use gst::prelude::*;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// A numeric property as f64, whatever its integer type; None if there is no such property.
fn number(e: &gst::Element, prop: &str) -> Option<f64> {
    e.find_property(prop)?;
    let v = e.property_value(prop);
    v.get::<u32>()
        .map(f64::from)
        .or_else(|_| v.get::<i32>().map(f64::from))
        .or_else(|_| v.get::<u64>().map(|x| x as f64))
        .or_else(|_| v.get::<i64>().map(|x| x as f64))
        .or_else(|_| v.get::<f64>())
        .ok()
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Builds one scrape's registry: each metric is a family filled from the snapshot.
struct Scrape {
    registry: Registry,
}

impl Scrape {
    fn gauge(&mut self, name: &str, help: &str, rows: Vec<(Labels, f64)>) {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (l, v) in rows {
            family.get_or_create(&l).set(v);
        }
        self.registry.register(name, help, family);
    }

    /// `name` gets `_total` appended in the output.
    fn counter(&mut self, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
        let family = Family::<Labels, Counter<u64>>::default();
        for (l, v) in rows {
            family.get_or_create(&l).inc_by(v);
        }
        self.registry.register(name, help, family);
    }

    fn counter_f(&mut self, name: &str, help: &str, rows: Vec<(Labels, f64)>) {
        let family = Family::<Labels, Counter<f64, AtomicU64>>::default();
        for (l, v) in rows {
            family.get_or_create(&l).inc_by(v);
        }
        self.registry.register(name, help, family);
    }
}

/// The exposition text. Reads GStreamer elements: call it off the async threads.
pub fn render(sup: &Supervisor, webrtc: &WebRtc, recordings: &Recordings) -> String {
    let mut s = Scrape {
        registry: Registry::default(),
    };
    let statuses = sup.list();
    let now = chrono::Utc::now();

    // Pipelines.
    let states = [
        State::Playing,
        State::Starting,
        State::Stopped,
        State::Failed,
        State::Invalid,
    ];
    let mut rows = Vec::new();
    for st in &statuses {
        for state in states {
            let v = if st.state == state { 1.0 } else { 0.0 };
            rows.push((
                labels(&[("pipeline", &st.name), ("state", state.as_str())]),
                v,
            ));
        }
    }
    s.gauge(
        "mediaweave_pipeline_state",
        "1 for the pipeline's current state, 0 for the others",
        rows,
    );
    let uptime = statuses
        .iter()
        .map(|st| {
            let up = match st.state {
                State::Playing => chrono::DateTime::parse_from_rfc3339(&st.since)
                    .map(|t| {
                        (now - t.with_timezone(&chrono::Utc))
                            .as_seconds_f64()
                            .max(0.0)
                    })
                    .unwrap_or(0.0),
                _ => 0.0,
            };
            (labels(&[("pipeline", &st.name)]), up)
        })
        .collect();
    s.gauge(
        "mediaweave_pipeline_uptime_seconds",
        "Seconds since the pipeline last reached PLAYING (0 when not playing)",
        uptime,
    );
    s.counter(
        "mediaweave_pipeline_restarts",
        "Automatic restarts since the service started",
        statuses
            .iter()
            .map(|st| (labels(&[("pipeline", &st.name)]), u64::from(st.restarts)))
            .collect(),
    );
    s.counter(
        "mediaweave_pipeline_stalls",
        "Runs ended because the source stopped delivering video (stall_timeout)",
        statuses
            .iter()
            .map(|st| (labels(&[("pipeline", &st.name)]), u64::from(st.stalls)))
            .collect(),
    );
    s.gauge(
        "mediaweave_pipeline_element_info",
        "Elements chosen for the machine (role: video encoder, audio encoder, ...)",
        statuses
            .iter()
            .flat_map(|st| {
                st.chosen.iter().map(|c| {
                    let element = c.element.split(' ').next().unwrap_or_default();
                    (
                        labels(&[
                            ("pipeline", &st.name),
                            ("role", &c.role),
                            ("element", element),
                        ]),
                        1.0,
                    )
                })
            })
            .collect(),
    );
    let meters: Vec<(String, crate::meter::MeterCounts)> = statuses
        .iter()
        .filter_map(|st| Some((st.name.clone(), sup.meter(&st.name)?)))
        .collect();
    s.counter(
        "mediaweave_video_encoded_bytes",
        "Bytes of encoded video the pipeline produced (before fan-out)",
        meters
            .iter()
            .map(|(n, m)| (labels(&[("pipeline", n)]), m.video_bytes))
            .collect(),
    );
    s.counter(
        "mediaweave_video_encoded_frames",
        "Encoded video frames the pipeline produced",
        meters
            .iter()
            .map(|(n, m)| (labels(&[("pipeline", n)]), m.video_frames))
            .collect(),
    );

    // What the running pipelines' elements say.
    let (mut latency, mut q_buffers, mut q_time, mut tcp_bytes, mut tcp_clients) =
        (vec![], vec![], vec![], vec![], vec![]);
    for st in &statuses {
        let Ok(Some(pipeline)) = sup.live(&st.name) else {
            continue;
        };
        let mut q = gst::query::Latency::new();
        if pipeline.query(&mut q) {
            let (live, min, _) = q.result();
            if live {
                latency.push((labels(&[("pipeline", &st.name)]), min.seconds_f64()));
            }
        }
        for e in pipeline.iterate_recurse().into_iter().flatten() {
            let factory = e
                .factory()
                .map(|f| f.name().to_string())
                .unwrap_or_default();
            let name = e.name().to_string();
            let l = labels(&[("pipeline", &st.name), ("element", &name)]);
            match factory.as_str() {
                "queue" => {
                    if let (Some(buffers), Some(time)) = (
                        number(&e, "current-level-buffers"),
                        number(&e, "current-level-time"),
                    ) {
                        q_buffers.push((l.clone(), buffers));
                        q_time.push((l, time / 1e9));
                    }
                }
                "tcpserversink" => {
                    if let (Some(bytes), Some(clients)) =
                        (number(&e, "bytes-served"), number(&e, "num-handles"))
                    {
                        tcp_bytes.push((l.clone(), bytes as u64));
                        tcp_clients.push((l, clients));
                    }
                }
                _ => {}
            }
        }
    }
    s.gauge(
        "mediaweave_pipeline_latency_seconds",
        "The live pipeline's latency (GStreamer latency query, minimum)",
        latency,
    );
    s.gauge(
        "mediaweave_queue_level_buffers",
        "Buffers waiting in each queue of the running pipelines",
        q_buffers,
    );
    s.gauge(
        "mediaweave_queue_level_seconds",
        "Time worth of data waiting in each queue of the running pipelines",
        q_time,
    );
    s.counter(
        "mediaweave_tcp_sent_bytes",
        "Bytes a TCP output sent to its clients (all clients together)",
        tcp_bytes,
    );
    s.gauge(
        "mediaweave_tcp_clients",
        "Clients connected to a TCP output",
        tcp_clients,
    );

    // WebRTC viewers and publishers.
    let (mut viewers, mut publishers) = (vec![], vec![]);
    let (mut sessions, mut sent, mut packets, mut lost, mut dropped, mut received) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut v_rtt, mut v_lost, mut v_dropped, mut v_sent) = (vec![], vec![], vec![], vec![]);
    for st in &statuses {
        let p = labels(&[("pipeline", &st.name)]);
        if let Some(t) = webrtc.viewer_totals(&st.name) {
            let live = webrtc
                .get(&st.name)
                .map(|o| o.viewers())
                .unwrap_or_default();
            viewers.push((p.clone(), live.len() as f64));
            sessions.push((p.clone(), t.sessions));
            sent.push((p.clone(), t.bytes_sent));
            packets.push((p.clone(), t.packets_sent));
            lost.push((p.clone(), t.packets_lost));
            dropped.push((p.clone(), t.dropped_buffers));
            for v in live {
                let l = labels(&[("pipeline", &st.name), ("viewer", &v.id)]);
                if let Some(rtt) = v.round_trip_time_ms {
                    v_rtt.push((l.clone(), rtt / 1000.0));
                }
                v_lost.push((l.clone(), v.packets_lost.max(0) as u64));
                v_dropped.push((l.clone(), v.dropped_buffers));
                v_sent.push((l, v.bytes_sent));
            }
        }
        if let Some(t) = webrtc.publisher_totals(&st.name) {
            let now = webrtc
                .ingest(&st.name)
                .map(|p| p.publishers().len())
                .unwrap_or(0);
            publishers.push((p.clone(), now as f64));
            received.push((p, t.bytes_received));
        }
    }
    s.gauge(
        "mediaweave_webrtc_peer_pipelines",
        "Per-peer pipelines (viewers and publishers) that exist now, until GStreamer frees them",
        vec![(vec![], crate::webrtc::session::live_peer_pipelines() as f64)],
    );
    let limits = webrtc.limits();
    s.gauge(
        "mediaweave_webrtc_pending_sessions",
        "WebRTC sessions (viewers and publishers) that have not completed ICE and DTLS yet",
        vec![(vec![], limits.pending.now() as f64)],
    );
    s.counter(
        "mediaweave_webrtc_pending_refused",
        "Sessions refused (503) because too many had not connected yet (--max-pending, --max-pending-per-address)",
        vec![(vec![], limits.pending.refused())],
    );
    s.gauge(
        "mediaweave_http_connections",
        "HTTP connections open now",
        vec![(vec![], limits.connections.now() as f64)],
    );
    s.counter(
        "mediaweave_http_connections_refused",
        "HTTP connections closed at once because of the connection caps",
        vec![(vec![], limits.connections.refused())],
    );
    s.gauge(
        "mediaweave_signalling_connections",
        "Signalling WebSocket connections open now",
        vec![(vec![], limits.signalling.now() as f64)],
    );
    s.counter(
        "mediaweave_signalling_connections_refused",
        "Signalling WebSocket connections refused (503) because of the caps",
        vec![(vec![], limits.signalling.refused())],
    );
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

    // Hooks.
    let (mut arrived, mut delivered, mut h_dropped, mut passed, mut p99) =
        (vec![], vec![], vec![], vec![], vec![]);
    for st in &statuses {
        for h in sup.hook_stats(&st.name) {
            let l = labels(&[("pipeline", &st.name), ("hook", &h.name)]);
            arrived.push((l.clone(), h.arrived));
            delivered.push((l.clone(), h.delivered));
            h_dropped.push((l.clone(), h.dropped));
            passed.push((l.clone(), h.passed_through));
            if let Some(ms) = h.processing_p99_ms {
                p99.push((l, ms / 1000.0));
            }
        }
    }
    s.counter(
        "mediaweave_hook_arrived_frames",
        "Frames that reached a hook's branch",
        arrived,
    );
    s.counter(
        "mediaweave_hook_delivered_frames",
        "Frames a hook processed",
        delivered,
    );
    s.counter(
        "mediaweave_hook_dropped_frames",
        "Frames a hook never saw because it was busy",
        h_dropped,
    );
    s.counter(
        "mediaweave_hook_passed_through_frames",
        "Frames a transform hook let pass unchanged (busy or over its budget)",
        passed,
    );
    s.gauge(
        "mediaweave_hook_processing_p99_seconds",
        "99th percentile of a hook's processing time (last 512 frames)",
        p99,
    );

    // Recordings.
    let counts = recordings.counts();
    s.counter(
        "mediaweave_recording_segments",
        "Recording segments opened",
        counts
            .iter()
            .map(|(n, c, _, _)| (labels(&[("pipeline", n)]), c.segments))
            .collect(),
    );
    s.counter(
        "mediaweave_recording_bytes",
        "Bytes written to recording segments",
        counts
            .iter()
            .map(|(n, _, b, _)| (labels(&[("pipeline", n)]), *b))
            .collect(),
    );
    s.gauge(
        "mediaweave_recording_open_segments",
        "Segments being written now",
        counts
            .iter()
            .map(|(n, _, _, open)| (labels(&[("pipeline", n)]), *open as f64))
            .collect(),
    );

    // The process.
    if let Ok(me) = procfs::process::Process::myself() {
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            s.counter_f(
                "process_cpu_seconds",
                "User and system CPU time of the process",
                vec![(vec![], (stat.utime + stat.stime) as f64 / ticks)],
            );
            s.gauge(
                "process_resident_memory_bytes",
                "Resident memory size",
                vec![(vec![], (stat.rss * procfs::page_size()) as f64)],
            );
            s.gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size",
                vec![(vec![], stat.vsize as f64)],
            );
            s.gauge(
                "process_threads",
                "Threads of the process",
                vec![(vec![], stat.num_threads as f64)],
            );
        }
        if let Ok(fds) = me.fd_count() {
            s.gauge(
                "process_open_fds",
                "Open file descriptors",
                vec![(vec![], fds as f64)],
            );
        }
    }

    let mut text = String::new();
    if encode(&mut text, &s.registry).is_err() {
        return "# the metrics could not be encoded\n# EOF\n".into();
    }
    text
}
