//! Ten viewers at once all receive frames from one encoder; then they are killed (SIGKILL: no
//! goodbye of any kind) and the service notices, frees every session and keeps playing.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn ten_viewers_then_all_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "small",
        "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\nframerate = 15\n[encode]\nbitrate = 300\n[[output]]\nkind = \"webrtc\"\n",
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "small", "playing");

    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiortc_viewer.py");
    let url = format!("{base}/whep/small");
    let mut viewers: Vec<_> = (0..10)
        .map(|_| {
            Command::new(venv_python())
                .arg(&script)
                .args([
                    "whep",
                    &url,
                    "--frames",
                    "30",
                    "--hold",
                    "120",
                    "--timeout",
                    "90",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start viewer")
        })
        .collect();
    // Each prints its result once it has decoded 30 frames, then stays connected.
    let results: Vec<serde_json::Value> = viewers
        .iter_mut()
        .map(|v| {
            let mut line = String::new();
            BufReader::new(v.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("read");
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("viewer said: {line:?}"))
        })
        .collect();
    for r in &results {
        assert!(r["frames"].as_u64().unwrap_or(0) >= 30, "{r}");
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            (Some(320), Some(240))
        );
    }
    let status = get(&format!("{base}/api/pipelines/small")).json;
    assert_eq!(
        status["viewers"].as_array().map(Vec::len),
        Some(10),
        "{status}"
    );

    for v in &mut viewers {
        let _ = v.kill();
        let _ = v.wait();
    }
    wait_no_viewers(
        &base,
        "small",
        "every session to be freed",
        Duration::from_secs(90),
    );
    assert_eq!(
        get(&format!("{base}/api/pipelines/small")).json["state"],
        "playing"
    );
    // And it still serves a new viewer.
    let again = aiortc_view(&["whep", &url, "--frames", "30"]);
    assert!(again["frames"].as_u64().unwrap_or(0) >= 30, "{again}");
    server.shutdown();
}
