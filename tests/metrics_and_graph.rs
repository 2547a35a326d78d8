//! Observability: `/metrics` passes the Prometheus project's parsers (OpenMetrics and classic
//! text) and its counters move with real traffic (a TCP client, an aiortc viewer, a recording,
//! a hook); the events stream reports viewers and segments; `graph.svg` is SVG naming the
//! pipeline's elements, and `mediaweave graph NAME -o FILE.svg` draws the same live graph.

mod common;
use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Parses a scrape with tests/peers/parse_metrics.py: sample name + labels → value.
fn scrape(base: &str) -> (HashMap<String, String>, HashMap<String, f64>) {
    let (code, text) = get_text(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/parse_metrics.py");
    let mut child = Command::new(venv_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parse");
    assert!(
        out.status.success(),
        "the scrape does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let families = v["families"]
        .as_object()
        .expect("families")
        .iter()
        .map(|(k, t)| (k.clone(), t.as_str().unwrap_or_default().to_string()))
        .collect();
    let mut samples = HashMap::new();
    for s in v["samples"].as_array().expect("samples") {
        let mut labels: Vec<String> = s[1]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        labels.sort();
        let key = format!(
            "{}{{{}}}",
            s[0].as_str().unwrap_or_default(),
            labels.join(",")
        );
        samples.insert(key, s[2].as_f64().unwrap_or(f64::NAN));
    }
    (families, samples)
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| {
        panic!(
            "no sample {key}; have: {:?}",
            samples.keys().collect::<Vec<_>>()
        )
    })
}

#[test]
fn metrics_move_with_traffic_and_graphs_show_elements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    write_pipeline(
        dir.path(),
        "cam",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\naudio = false\n\n[[output]]\nkind = \"tcp\"\nport = {port}\n\n[[output]]\nkind = \"webrtc\"\n\n[[output]]\nkind = \"record\"\nsegment = \"10m\"\n\n[[hook]]\nkind = \"stats\"\n"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    let events = collect_events(&base, |seen| {
        seen.iter().any(|e| e["type"] == "viewer_left")
    });

    let (families, before) = scrape(&base);
    assert_eq!(families["mediaweave_tcp_sent_bytes"], "counter");
    assert_eq!(families["mediaweave_pipeline_state"], "gauge");
    assert_eq!(
        value(
            &before,
            "mediaweave_pipeline_state{pipeline=cam,state=playing}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &before,
            "mediaweave_pipeline_state{pipeline=cam,state=failed}"
        ),
        0.0
    );
    assert_eq!(
        value(
            &before,
            "mediaweave_pipeline_element_info{element=x264enc,pipeline=cam,role=video encoder}"
        ),
        1.0
    );
    assert!(value(&before, "process_resident_memory_bytes{}") > 1e6);
    assert!(value(&before, "process_cpu_seconds_total{}") > 0.0);
    assert_eq!(
        value(&before, "mediaweave_recording_open_segments{pipeline=cam}"),
        1.0
    );

    // Real traffic: a TCP client decodes frames, an aiortc viewer watches over WHEP.
    assert!(gst_decode_tcp(port, 30).expect("decode").len() >= 30);
    let seen = aiortc_view(&["whep", &format!("{base}/whep/cam"), "--frames", "30"]);
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 30, "{seen}");
    let events = events.join().expect("events");
    let (_, after) = scrape(&base);

    let grew = |key: &str| {
        let (b, a) = (before.get(key).copied().unwrap_or(0.0), value(&after, key));
        assert!(a > b, "{key} did not grow: {b} -> {a}");
    };
    grew("mediaweave_tcp_sent_bytes_total{element=out0_sink,pipeline=cam}");
    grew("mediaweave_webrtc_sent_bytes_total{pipeline=cam}");
    grew("mediaweave_webrtc_sent_packets_total{pipeline=cam}");
    grew("mediaweave_webrtc_sessions_total{pipeline=cam}");
    grew("mediaweave_video_encoded_frames_total{pipeline=cam}");
    grew("mediaweave_video_encoded_bytes_total{pipeline=cam}");
    grew("mediaweave_recording_bytes_total{pipeline=cam}");
    grew("mediaweave_hook_delivered_frames_total{hook=stats,pipeline=cam}");
    grew("process_cpu_seconds_total{}");
    assert!(
        value(&after, "mediaweave_webrtc_sent_bytes_total{pipeline=cam}") > 10_000.0,
        "a viewer of 30 frames got more than 10 kB"
    );
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("mediaweave_queue_level_buffers{"))
    );
    assert!(after.contains_key("mediaweave_pipeline_latency_seconds{pipeline=cam}"));
    // The tcp and record outputs are readers of the stream: none fell behind.
    for output in ["out0", "out2"] {
        assert_eq!(
            value(
                &after,
                &format!("mediaweave_reader_dropped_buffers_total{{output={output},pipeline=cam}}")
            ),
            0.0
        );
    }

    // The events stream told of the viewer and the recording.
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"viewer_joined"), "{kinds:?}");
    assert!(kinds.contains(&"viewer_left"), "{kinds:?}");
    let joined = events
        .iter()
        .find(|e| e["type"] == "viewer_joined")
        .expect("joined");
    assert_eq!(joined["pipeline"], "cam");
    assert_eq!(joined["fields"]["via"], "whep");
    assert!(joined["time"].as_str().is_some_and(|t| t.ends_with('Z')));

    // The live graph as SVG, over HTTP and from the CLI.
    let (code, svg) = get_text(&format!("{base}/api/pipelines/cam/graph.svg"));
    assert_eq!(code, 200);
    for name in ["video_encoder", "out0_sink", "video_enc", "cam"] {
        assert!(svg.contains(name), "graph.svg names {name}");
    }
    assert_svg(&svg);
    let out_file = dir.path().join("cam.svg");
    let out = Command::new(bin())
        .args(["graph", "cam", "--server", &base, "-o"])
        .arg(&out_file)
        .output()
        .expect("graph");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drawn = std::fs::read_to_string(&out_file).expect("svg file");
    assert_svg(&drawn);
    assert!(drawn.contains("video_encoder"));
    // Live: elements show `[>]` (PLAYING) and pads push; a graph of a pipeline that was only
    // built would show `[-]` (NULL, inactive) everywhere.
    let (playing, idle) = (
        drawn.matches("[&gt;]").count(),
        drawn.matches("[&#45;]").count(),
    );
    assert!(
        playing > 10 && playing > idle,
        "the live graph: {playing} [>], {idle} [-]"
    );

    let r = get(&format!("{base}/api/pipelines/nope/graph.svg"));
    assert_eq!(r.status, 404);

    // Every property of a recording's file sink reads: structures in their text form, empty
    // boxed values as null.
    let sink = get(&format!("{base}/api/pipelines/cam/elements/out2_sink")).json;
    let props = sink["properties"].as_array().expect("properties");
    let stats = props.iter().find(|p| p["name"] == "stats").expect("stats");
    assert!(
        stats["value"]
            .as_str()
            .is_some_and(|v| v.contains("average-rate")),
        "{stats}"
    );
    let sample = props.iter().find(|p| p["name"] == "last-sample");
    assert!(sample.is_none_or(|p| p["value"].is_null()));
    assert!(props.iter().any(
        |p| p["name"] == "location" && p["value"].as_str().is_some_and(|l| l.ends_with(".mkv"))
    ));

    // Stopping finishes the recording: the events say which file and how big.
    let events = collect_events(&base, |seen| {
        seen.iter().any(|e| e["type"] == "segment_closed")
            && seen
                .iter()
                .any(|e| e["type"] == "state" && e["fields"]["state"] == "stopped")
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(post(&format!("{base}/api/pipelines/cam/stop")).status, 200);
    let events = events.join().expect("events");
    let closed = events
        .iter()
        .find(|e| e["type"] == "segment_closed")
        .expect("segment_closed");
    assert!(
        closed["fields"]["bytes"].as_u64().unwrap_or(0) > 1000,
        "{closed}"
    );
    assert!(
        closed["fields"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(".mkv"))
    );
    let (_, stopped) = scrape(&base);
    assert_eq!(
        value(
            &stopped,
            "mediaweave_pipeline_state{pipeline=cam,state=stopped}"
        ),
        1.0
    );
    assert_eq!(
        value(&stopped, "mediaweave_recording_open_segments{pipeline=cam}"),
        0.0
    );
}

/// Well-formed XML whose root is <svg> (checked by Python's XML parser).
fn assert_svg(svg: &str) {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as ET; r = ET.fromstring(sys.stdin.read()); print(r.tag)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(svg.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("xml");
    assert!(out.status.success(), "not well-formed XML");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "{http://www.w3.org/2000/svg}svg"
    );
}
