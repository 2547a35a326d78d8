//! The HTTP API lists pipelines and starts, stops and restarts the real pipeline: observed by
//! a TCP client that decodes frames or finds the port closed. Unknown names get 404 with a JSON
//! error; an invalid file is listed as invalid and does not keep the others from running.

mod common;
use common::*;
use std::net::TcpStream;
use std::time::Duration;

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_millis(500),
    )
    .is_ok()
}

fn frames(port: u16) -> usize {
    gst_decode_tcp(port, 10).map(|f| f.len()).unwrap_or(0)
}

#[test]
fn api_controls_real_pipelines_and_reports_invalid_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    write_pipeline(
        dir.path(),
        "live",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\naudio = false\n\n[[output]]\nkind = \"tcp\"\nport = {port}\n"
        ),
    );
    write_pipeline(
        dir.path(),
        "broken",
        "[source]\nkind = \"test\"\nwidht = 320\n",
    );
    write_pipeline(
        dir.path(),
        "manual",
        "autostart = false\nlaunch = \"videotestsrc is-live=true ! fakesink\"\n",
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();

    // The good pipeline runs even though another file is invalid.
    wait_state(&base, "live", "playing");
    assert!(frames(port) >= 10, "frames from the running pipeline");

    let list = get(&format!("{base}/api/pipelines"));
    assert_eq!(list.status, 200);
    let all = list.json.as_array().expect("array").clone();
    let by_name = |n: &str| all.iter().find(|p| p["name"] == n).cloned().expect(n);
    let broken = by_name("broken");
    assert_eq!(broken["state"], "invalid");
    let err = broken["error"].as_str().expect("error text");
    assert!(
        err.contains("broken.toml:3:1: unknown key `widht`"),
        "{err}"
    );
    assert_eq!(by_name("manual")["state"], "stopped", "autostart = false");
    assert_eq!(
        by_name("live")["outputs"][0],
        format!("tcp://127.0.0.1:{port}")
    );
    assert_eq!(
        by_name("live")["chosen"][0]["element"],
        "x264enc (software)"
    );

    // stop: the TCP port closes.
    let r = post(&format!("{base}/api/pipelines/live/stop"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json["state"], "stopped");
    assert!(!port_open(port), "port {port} still open after stop");

    // start: frames again.
    let r = post(&format!("{base}/api/pipelines/live/start"));
    assert_eq!(r.status, 200);
    wait_state(&base, "live", "playing");
    assert!(frames(port) >= 10, "frames after start");

    // restart: a new run, frames again.
    let before = get(&format!("{base}/api/pipelines/live")).json["since"].clone();
    let r = post(&format!("{base}/api/pipelines/live/restart"));
    assert_eq!(r.status, 200);
    let after = wait_state(&base, "live", "playing");
    assert_ne!(after["since"], before, "restart began a new run");
    assert!(frames(port) >= 10, "frames after restart");

    // A pipeline with autostart = false starts on request.
    post(&format!("{base}/api/pipelines/manual/start"));
    wait_state(&base, "manual", "playing");

    // Unknown names and invalid pipelines.
    let r = get(&format!("{base}/api/pipelines/nope"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json["error"], "no pipeline named `nope`");
    let r = post(&format!("{base}/api/pipelines/nope/start"));
    assert_eq!(r.status, 404);
    assert!(r.json["error"].is_string());
    let r = post(&format!("{base}/api/pipelines/broken/start"));
    assert_eq!(r.status, 409);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown key `widht`"),
        "{}",
        r.json
    );
    let r = post(&format!("{base}/api/pipelines/live/dance"));
    assert_eq!(r.status, 404);
    server.shutdown();
}
