//! A passthrough pipeline fed a codec it does not expect fails, and is torn down and restarted
//! with backoff; after ten such teardowns no GStreamer thread is left behind (the process has
//! as many threads as before), and the service still stops promptly on SIGTERM.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn ten_teardowns_leave_no_thread_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).expect("mkdir");
    let port = free_port();
    write_pipeline(
        &pipelines,
        "upstream",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\n[[output]]\nkind = \"tcp\"\nport = {port}\n"
        ),
    );
    // Expects VP8, gets H.264 (and AAC): fails at once, every time.
    write_pipeline(
        &pipelines,
        "wrong",
        &format!(
            "autostart = false\nbackoff = {{ initial = \"100ms\", max = \"200ms\" }}\n[source]\nkind = \"tcp\"\nport = {port}\ncodec = \"vp8\"\n[[output]]\nkind = \"record\"\n"
        ),
    );
    let (mut service, base) = spawn_serve(&pipelines, &dir.path().join("recordings"));
    let pid = service.id();
    wait_state(&base, "upstream", "playing");
    // The service at rest: its pools have started what they keep.
    std::thread::sleep(Duration::from_secs(2));
    let before = threads(pid);

    post(&format!("{base}/api/pipelines/wrong/start"));
    let status = wait_for("ten restarts of wrong", Duration::from_secs(60), || {
        let s = get(&format!("{base}/api/pipelines/wrong")).json;
        (s["restarts"].as_u64().unwrap_or(0) >= 10).then_some(s)
    });
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("video/x-h264, not video/x-vp8")),
        "{status}"
    );
    let stopped = post(&format!("{base}/api/pipelines/wrong/stop"));
    assert_eq!(stopped.json["state"], "stopped", "{}", stopped.json);

    // Idle threads of the blocking pools end after 10 s; a thread stuck in a torn-down
    // pipeline never does. One stuck per teardown would be ten more.
    let after = wait_for(
        "threads back to the baseline",
        Duration::from_secs(30),
        || {
            let now = threads(pid);
            (now <= before + 2).then_some(now)
        },
    );
    assert!(
        after <= before + 2,
        "{before} threads before, {after} after"
    );

    // Nothing blocks the way out.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let t = Instant::now();
    let exited = wait_for("serve to exit on SIGTERM", Duration::from_secs(15), || {
        service.try_wait().ok().flatten()
    });
    assert!(exited.success(), "{exited:?} after {:?}", t.elapsed());
}

/// The number of threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}
