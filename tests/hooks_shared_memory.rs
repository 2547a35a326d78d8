//! `transport = "shm"`: a `process` hook and a `socket` hook's subscriber (on a Unix socket)
//! get their frames in shared memory — exact pixels, rising timestamps, far more frames than
//! the ring has slots (so they said when they were done with each) — through the shipped
//! Python reader, which hands out views of the memory, not copies. Asking for it on a TCP
//! socket is refused at its key.

mod common;
use common::*;

/// Reads N frames with mediaweave_frames (from stdin, or from a socket hook), then reports
/// what it saw as one JSON line (an event for a process hook, stdout for a subscriber).
const READER: &str = r#"
import json, sys
sys.path.insert(0, "EXAMPLES")
import mediaweave_frames as m
source, n = sys.argv[1], int(sys.argv[2])
frames = m.frames() if source == "-" else m.subscribe(source)
seen = []
for f in frames:
    image = m.to_numpy(f)
    seen.append((f.pts, int(image.min()), int(image.max()), type(f.data).__name__, f.width, f.height, f.format))
    if len(seen) == n:
        break
report = {"kind": "report", "frames": len(seen),
          "pts_rising": all(a[0] < b[0] for a, b in zip(seen, seen[1:])),
          "min": min(s[1] for s in seen), "max": max(s[2] for s in seen),
          "views": sorted({s[3] for s in seen}), "size": list(seen[-1][4:6]), "format": seen[-1][6]}
print(json.dumps(report), flush=True)
if source == "-":
    for f in frames:  # keep reading until the service stops
        pass
"#;

#[test]
fn frames_in_shared_memory_for_processes_and_subscribers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/examples");
    let reader = dir.path().join("reader.py");
    let code = READER.replace("EXAMPLES", &examples.display().to_string());
    std::fs::write(&reader, code).expect("write");
    let socket = dir.path().join("frames.sock");
    let python = venv_python();
    write_pipeline(
        dir.path(),
        "white",
        &format!(
            "[source]\nkind = \"test\"\npattern = \"white\"\nclock = false\naudio = false\nwidth = 320\nheight = 240\n\n[[hook]]\nkind = \"process\"\ntransport = \"shm\"\nformat = \"RGB\"\nwidth = 160\nheight = 120\ncommand = [\"{}\", \"{}\", \"-\", \"40\"]\n\n[[hook]]\nkind = \"socket\"\ntransport = \"shm\"\nlisten = \"unix:{}\"\nformat = \"GRAY8\"\n",
            python.display(),
            reader.display(),
            socket.display()
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    let events = collect_events(&base, |seen| !hook_events(seen, "report").is_empty());
    wait_state(&base, "white", "playing");

    let subscriber = std::process::Command::new(&python)
        .arg(&reader)
        .arg(format!("unix:{}", socket.display()))
        .arg("60")
        .output()
        .expect("run the subscriber");
    let line = String::from_utf8_lossy(&subscriber.stdout).to_string();
    assert!(
        subscriber.status.success(),
        "subscriber: {line} {}",
        String::from_utf8_lossy(&subscriber.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(line.trim()).expect("a JSON report");
    assert_eq!(seen["frames"], 60, "{seen}");
    assert_eq!(seen["pts_rising"], true, "{seen}");
    assert_eq!(seen["views"], serde_json::json!(["memoryview"]), "{seen}");
    assert_eq!(seen["format"], "GRAY", "{seen}");
    assert_eq!(seen["size"], serde_json::json!([320, 240]), "{seen}");
    // White, as limited-range luma: 235 everywhere.
    assert_eq!(
        (seen["min"].as_u64(), seen["max"].as_u64()),
        (Some(235), Some(235))
    );

    let events = events.join().expect("events");
    let report = &hook_events(&events, "report")[0]["fields"]["fields"];
    assert_eq!(report["frames"], 40, "{report}");
    assert_eq!(report["pts_rising"], true, "{report}");
    assert_eq!(
        report["views"],
        serde_json::json!(["memoryview"]),
        "{report}"
    );
    assert_eq!(report["format"], "RGB", "{report}");
    assert_eq!(report["size"], serde_json::json!([160, 120]), "{report}");
    assert_eq!(
        (report["min"].as_u64(), report["max"].as_u64()),
        (Some(255), Some(255))
    );
    server.shutdown();
}

#[test]
fn shared_memory_over_tcp_is_refused_at_its_key() {
    mediaweave::init().expect("GStreamer");
    let text = "[source]\nkind = \"test\"\n\n[[hook]]\nkind = \"socket\"\nlisten = \"127.0.0.1:7000\"\ntransport = \"shm\"\n";
    let error = mediaweave::description::parse(std::path::Path::new("cam.toml"), text)
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("cam.toml:7:13:") && error.contains("it needs listen = \"unix:PATH\""),
        "{error}"
    );
}
