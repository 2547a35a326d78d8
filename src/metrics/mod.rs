//! `GET /metrics`: the service in Prometheus' exposition format (OpenMetrics text), rendered
//! with `prometheus-client` from a snapshot taken at scrape time: pipelines (state, uptime,
//! restarts, encoder, latency, queue levels, encoded bytes and frames, TCP outputs), WebRTC
//! viewers and publishers (bytes, packets, loss and RTT from RTCP, frames dropped by their
//! queues), hooks, recordings, and the process (CPU, memory, threads, file descriptors).
//!
//! GStreamer's own numbers are read the way its tracers would report them, but on demand:
//! a latency query per pipeline and the current level of every queue.
//!
//! A scrape first takes a [`Snapshot`] (the only part that reads the service and GStreamer),
//! then one collector per area turns its part of the snapshot into metric families.

mod peers;

use crate::hooks::HookStats;
use crate::meter::MeterCounts;
use crate::record::{Counts, Recordings};
use crate::supervisor::{State, Status, Supervisor};
use crate::webrtc::output::Totals;
use crate::webrtc::registry::Registry as WebRtc;
use crate::webrtc::types::ViewerStats;
use gst::prelude::*;
use peers::webrtc_peers;
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
#[derive(Default)]
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

/// What one scrape reports, read from the service at scrape time.
pub struct Snapshot {
    pub now: chrono::DateTime<chrono::Utc>,
    pub statuses: Vec<Status>,
    /// Encoded video counters of the pipelines that have a meter.
    pub meters: Vec<(String, MeterCounts)>,
    pub elements: Vec<ElementsOf>,
    pub webrtc: Vec<WebRtcOf>,
    /// Per-peer pipelines not yet freed.
    pub peer_pipelines: usize,
    pub limits: LimitCounts,
    pub hooks: Vec<(String, HookStats)>,
    /// Per pipeline: recording counts, bytes, open segments.
    pub recordings: Vec<(String, Counts, u64, usize)>,
    /// (pipeline, output, buffers dropped) of each reader with a pipeline of its own.
    pub reader_drops: Vec<(String, String, u64)>,
    pub process: Option<ProcessStats>,
}

/// What a running pipeline's elements say.
#[derive(Default)]
pub struct ElementsOf {
    pub pipeline: String,
    /// Minimum latency, for a live pipeline.
    pub latency_s: Option<f64>,
    /// (element, buffers, seconds) of each queue.
    pub queues: Vec<(String, f64, f64)>,
    /// (element, bytes served, clients) of each TCP output.
    pub tcp: Vec<(String, u64, f64)>,
}

/// A pipeline's WebRTC viewers (webrtc output) and publishers (webrtc source).
pub struct WebRtcOf {
    pub pipeline: String,
    /// Viewer totals since the service started, and the viewers now; None without an output.
    pub viewers: Option<(Totals, Vec<ViewerStats>)>,
    /// Keyframe requests (forwarded, suppressed).
    pub keyframes: (u64, u64),
    /// Publisher totals and how many publish now; None for a pipeline that takes none.
    pub publishers: Option<(Totals, usize)>,
    /// The encoder ladder's rungs, with one.
    pub ladder: Option<Vec<crate::webrtc::ladder::RungInfo>>,
}

#[derive(Default)]
pub struct LimitCounts {
    pub pending: usize,
    pub pending_refused: u64,
    pub connections: usize,
    pub connections_refused: u64,
    pub signalling: usize,
    pub signalling_refused: u64,
}

pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub rss_bytes: f64,
    pub virtual_bytes: f64,
    pub threads: f64,
    pub open_fds: Option<f64>,
}

impl Snapshot {
    /// Reads everything a scrape reports. Reads GStreamer elements: call it off the async
    /// threads.
    pub fn take(sup: &Supervisor, webrtc: &WebRtc, recordings: &Recordings) -> Snapshot {
        let statuses = sup.list();
        let meters = statuses
            .iter()
            .filter_map(|st| Some((st.name.clone(), sup.meter(&st.name)?)))
            .collect();
        let elements = statuses
            .iter()
            .filter_map(|st| {
                // TCP, record and file outputs are readers with pipelines of their own.
                let readers = sup.reader_pipelines(&st.name);
                let mut of = match sup.live(&st.name) {
                    Ok(Some(pipeline)) => elements_of(&st.name, &pipeline),
                    _ if readers.is_empty() => return None,
                    _ => ElementsOf {
                        pipeline: st.name.clone(),
                        ..ElementsOf::default()
                    },
                };
                for reader in &readers {
                    of.tcp.extend(elements_of(&st.name, reader).tcp);
                }
                Some(of)
            })
            .collect();
        let webrtc_rows = statuses
            .iter()
            .map(|st| {
                let viewers = webrtc.viewer_totals(&st.name).map(|t| {
                    let live = webrtc.viewers_of(&st.name);
                    (t, live)
                });
                let keyframes = webrtc.keyframe_counts(&st.name);
                let publishers = webrtc.publisher_totals(&st.name).map(|t| {
                    let now = webrtc.publishers_of(&st.name).len();
                    (t, now)
                });
                WebRtcOf {
                    pipeline: st.name.clone(),
                    viewers,
                    keyframes,
                    publishers,
                    ladder: webrtc.ladder_of(&st.name),
                }
            })
            .collect();
        let l = webrtc.limits();
        let limits = LimitCounts {
            pending: l.pending.now(),
            pending_refused: l.pending.refused(),
            connections: l.connections.now(),
            connections_refused: l.connections.refused(),
            signalling: l.signalling.now(),
            signalling_refused: l.signalling.refused(),
        };
        let hooks = statuses
            .iter()
            .flat_map(|st| {
                sup.hook_stats(&st.name)
                    .into_iter()
                    .map(|h| (st.name.clone(), h))
            })
            .collect();
        let reader_drops = statuses
            .iter()
            .flat_map(|st| {
                sup.reader_dropped(&st.name)
                    .into_iter()
                    .map(|(output, n)| (st.name.clone(), output, n))
            })
            .collect();
        Snapshot {
            now: chrono::Utc::now(),
            statuses,
            meters,
            elements,
            webrtc: webrtc_rows,
            peer_pipelines: crate::webrtc::peer::live_peer_pipelines(),
            limits,
            hooks,
            recordings: recordings.counts(),
            reader_drops,
            process: process_stats(),
        }
    }
}

/// A live pipeline's minimum latency. Its outputs leave it through appsinks that do not sync
/// (the hub's taps), which answer a pipeline's query as not live: then the latency is what
/// the stream has gathered on its way to them (the most of any tap).
fn latency(pipeline: &gst::Pipeline) -> Option<f64> {
    let mut q = gst::query::Latency::new();
    if pipeline.query(&mut q) && q.result().0 {
        return Some(q.result().1.seconds_f64());
    }
    pipeline
        .iterate_sinks()
        .into_iter()
        .flatten()
        .filter_map(|sink| {
            let mut q = gst::query::Latency::new();
            let pad = sink.static_pad("sink")?;
            (pad.peer_query(&mut q) && q.result().0).then(|| q.result().1.seconds_f64())
        })
        .max_by(f64::total_cmp)
}

/// A running pipeline's latency, queue levels and TCP outputs.
fn elements_of(name: &str, pipeline: &gst::Pipeline) -> ElementsOf {
    let mut out = ElementsOf {
        pipeline: name.to_string(),
        ..ElementsOf::default()
    };
    out.latency_s = latency(pipeline);
    for e in pipeline.iterate_recurse().into_iter().flatten() {
        let factory = e
            .factory()
            .map(|f| f.name().to_string())
            .unwrap_or_default();
        let element = e.name().to_string();
        match factory.as_str() {
            "queue" => {
                if let (Some(buffers), Some(time)) = (
                    number(&e, "current-level-buffers"),
                    number(&e, "current-level-time"),
                ) {
                    out.queues.push((element, buffers, time / 1e9));
                }
            }
            "tcpserversink" => {
                if let (Some(bytes), Some(clients)) =
                    (number(&e, "bytes-served"), number(&e, "num-handles"))
                {
                    out.tcp.push((element, bytes as u64, clients));
                }
            }
            _ => {}
        }
    }
    out
}

fn process_stats() -> Option<ProcessStats> {
    let me = procfs::process::Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    Some(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        rss_bytes: (stat.rss * procfs::page_size()) as f64,
        virtual_bytes: stat.vsize as f64,
        threads: stat.num_threads as f64,
        open_fds: me.fd_count().ok().map(|n| n as f64),
    })
}

/// The exposition text. Reads GStreamer elements: call it off the async threads.
pub fn render(sup: &Supervisor, webrtc: &WebRtc, recordings: &Recordings) -> String {
    exposition(&Snapshot::take(sup, webrtc, recordings))
}

/// The exposition text of a snapshot: one collector per area.
pub fn exposition(snap: &Snapshot) -> String {
    let mut s = Scrape::default();
    pipelines(&mut s, snap);
    elements(&mut s, &snap.elements);
    webrtc_peers(&mut s, &snap.webrtc);
    service_limits(&mut s, snap);
    hooks(&mut s, &snap.hooks);
    recording(&mut s, &snap.recordings);
    readers(&mut s, &snap.reader_drops);
    process(&mut s, snap.process.as_ref());
    let mut text = String::new();
    if encode(&mut text, &s.registry).is_err() {
        return "# the metrics could not be encoded\n# EOF\n".into();
    }
    text
}

/// Pipelines: state, uptime, restarts, stalls, chosen elements, encoded video.
fn pipelines(s: &mut Scrape, snap: &Snapshot) {
    let (statuses, now) = (&snap.statuses, snap.now);
    let states = [
        State::Playing,
        State::Starting,
        State::Stopped,
        State::Failed,
        State::Invalid,
    ];
    let mut rows = Vec::new();
    for st in statuses {
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
    let meters = &snap.meters;
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
}

/// What the running pipelines' elements say: latency, queue levels, TCP outputs.
fn elements(s: &mut Scrape, all: &[ElementsOf]) {
    let (mut latency, mut q_buffers, mut q_time, mut tcp_bytes, mut tcp_clients) =
        (vec![], vec![], vec![], vec![], vec![]);
    for e in all {
        let p = labels(&[("pipeline", &e.pipeline)]);
        if let Some(l) = e.latency_s {
            latency.push((p, l));
        }
        for (element, buffers, seconds) in &e.queues {
            let l = labels(&[("pipeline", &e.pipeline), ("element", element)]);
            q_buffers.push((l.clone(), *buffers));
            q_time.push((l, *seconds));
        }
        for (element, bytes, clients) in &e.tcp {
            let l = labels(&[("pipeline", &e.pipeline), ("element", element)]);
            tcp_bytes.push((l.clone(), *bytes));
            tcp_clients.push((l, *clients));
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
}

/// Peer pipelines, and the service's caps on sessions and connections.
fn service_limits(s: &mut Scrape, snap: &Snapshot) {
    s.gauge(
        "mediaweave_webrtc_peer_pipelines",
        "Per-peer pipelines (viewers and publishers) that exist now, until GStreamer frees them",
        vec![(vec![], snap.peer_pipelines as f64)],
    );
    let limits = &snap.limits;
    s.gauge(
        "mediaweave_webrtc_pending_sessions",
        "WebRTC sessions (viewers and publishers) that have not completed ICE and DTLS yet",
        vec![(vec![], limits.pending as f64)],
    );
    s.counter(
        "mediaweave_webrtc_pending_refused",
        "Sessions refused (503) because too many had not connected yet (--max-pending, --max-pending-per-address)",
        vec![(vec![], limits.pending_refused)],
    );
    s.gauge(
        "mediaweave_http_connections",
        "HTTP connections open now",
        vec![(vec![], limits.connections as f64)],
    );
    s.counter(
        "mediaweave_http_connections_refused",
        "HTTP connections closed at once because of the connection caps",
        vec![(vec![], limits.connections_refused)],
    );
    s.gauge(
        "mediaweave_signalling_connections",
        "Signalling WebSocket connections open now",
        vec![(vec![], limits.signalling as f64)],
    );
    s.counter(
        "mediaweave_signalling_connections_refused",
        "Signalling WebSocket connections refused (503) because of the caps",
        vec![(vec![], limits.signalling_refused)],
    );
}

/// Frame hooks.
fn hooks(s: &mut Scrape, all: &[(String, HookStats)]) {
    let (mut arrived, mut delivered, mut h_dropped, mut passed, mut p99) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (pipeline, h) in all {
        let l = labels(&[("pipeline", pipeline), ("hook", &h.name)]);
        arrived.push((l.clone(), h.arrived));
        delivered.push((l.clone(), h.delivered));
        h_dropped.push((l.clone(), h.dropped));
        passed.push((l.clone(), h.passed_through));
        if let Some(ms) = h.processing_p99_ms {
            p99.push((l, ms / 1000.0));
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
}

/// Recordings.
fn recording(s: &mut Scrape, counts: &[(String, Counts, u64, usize)]) {
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
}

/// Readers with pipelines of their own (TCP, record and file outputs): what their bounded
/// queues dropped.
fn readers(s: &mut Scrape, drops: &[(String, String, u64)]) {
    s.counter(
        "mediaweave_reader_dropped_buffers",
        "Buffers a reader dropped because its queue was full (it fell behind the stream)",
        drops
            .iter()
            .map(|(p, output, n)| (labels(&[("pipeline", p), ("output", output)]), *n))
            .collect(),
    );
}

/// The process: CPU, memory, threads, file descriptors.
fn process(s: &mut Scrape, p: Option<&ProcessStats>) {
    let Some(p) = p else { return };
    s.counter_f(
        "process_cpu_seconds",
        "User and system CPU time of the process",
        vec![(vec![], p.cpu_seconds)],
    );
    s.gauge(
        "process_resident_memory_bytes",
        "Resident memory size",
        vec![(vec![], p.rss_bytes)],
    );
    s.gauge(
        "process_virtual_memory_bytes",
        "Virtual memory size",
        vec![(vec![], p.virtual_bytes)],
    );
    s.gauge(
        "process_threads",
        "Threads of the process",
        vec![(vec![], p.threads)],
    );
    if let Some(fds) = p.open_fds {
        s.gauge(
            "process_open_fds",
            "Open file descriptors",
            vec![(vec![], fds)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(sessions: u64) -> Totals {
        Totals {
            sessions,
            ..Totals::default()
        }
    }

    #[test]
    fn a_snapshot_renders_every_area_without_the_service() {
        let snap = Snapshot {
            now: chrono::Utc::now(),
            statuses: vec![],
            meters: vec![],
            elements: vec![ElementsOf {
                pipeline: "cam".into(),
                latency_s: Some(0.1),
                queues: vec![("q".into(), 3.0, 0.5)],
                tcp: vec![("out0_sink".into(), 1000, 2.0)],
            }],
            webrtc: vec![WebRtcOf {
                pipeline: "inbox".into(),
                viewers: Some((totals(4), vec![])),
                keyframes: (2, 7),
                publishers: Some((totals(1), 1)),
                ladder: None,
            }],
            peer_pipelines: 2,
            limits: LimitCounts {
                pending_refused: 5,
                ..LimitCounts::default()
            },
            hooks: vec![],
            recordings: vec![],
            reader_drops: vec![("cam".into(), "out1".into(), 4)],
            process: None,
        };
        let text = exposition(&snap);
        for line in [
            "mediaweave_pipeline_latency_seconds{pipeline=\"cam\"} 0.1",
            "mediaweave_queue_level_buffers{pipeline=\"cam\",element=\"q\"} 3.0",
            "mediaweave_tcp_clients{pipeline=\"cam\",element=\"out0_sink\"} 2.0",
            "mediaweave_webrtc_sessions_total{pipeline=\"inbox\"} 4",
            "mediaweave_webrtc_keyframe_requests_total{pipeline=\"inbox\",outcome=\"suppressed\"} 7",
            "mediaweave_webrtc_publishers{pipeline=\"inbox\"} 1.0",
            "mediaweave_webrtc_peer_pipelines{} 2.0",
            "mediaweave_webrtc_pending_refused_total{} 5",
            "mediaweave_reader_dropped_buffers_total{pipeline=\"cam\",output=\"out1\"} 4",
        ] {
            assert!(text.contains(line), "no `{line}` in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
