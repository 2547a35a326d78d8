//! External hooks: the shipped OpenCV example (scripts/examples/detect.py) receives live frames
//! and its JSON events arrive on /api/events; a hook process that crashes is restarted and the
//! pipeline never stops.

mod common;
use common::*;

#[test]
fn opencv_example_reports_and_a_crashing_hook_is_restarted() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = venv_python();
    let detect = root.join("scripts/examples/detect.py");
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "watched",
        &format!(
            "[source]\nkind = \"test\"\npattern = \"ball\"\naudio = false\nwidth = 640\nheight = 360\n\n[[hook]]\nkind = \"process\"\ncommand = [\"{}\", \"{}\"]\nformat = \"RGB\"\nwidth = 320\nheight = 240\n",
            python.display(),
            detect.display()
        ),
    );
    // Says hello, reads ~20 frames, then crashes.
    let crashy = "import sys, json, os\nprint(json.dumps({'kind': 'hello', 'pid': os.getpid()}), flush=True)\nsys.stdin.buffer.read(20 * (32 + 160 * 120 * 3))\nsys.exit(3)\n";
    let crashy_path = dir.path().join("crashy.py");
    std::fs::write(&crashy_path, crashy).expect("write");
    write_pipeline(
        dir.path(),
        "crashy",
        &format!(
            "[source]\nkind = \"test\"\naudio = false\nwidth = 320\nheight = 240\n\n[[hook]]\nkind = \"process\"\ncommand = [\"{}\", \"{}\"]\nwidth = 160\nheight = 120\n",
            python.display(),
            crashy_path.display()
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    let events = collect_events(&base, |seen| {
        hook_events(seen, "motion").len() >= 2 && hook_events(seen, "hello").len() >= 3
    });
    let seen = events.join().expect("events");

    let motion = hook_events(&seen, "motion");
    assert!(
        motion.len() >= 2,
        "motion events from the OpenCV example: {seen:?}"
    );
    let fields = &motion[0]["fields"]["fields"];
    assert_eq!(motion[0]["pipeline"], "watched");
    assert!(
        fields["motion"].as_f64().unwrap_or(0.0) > 0.0,
        "the ball moves: {fields}"
    );
    assert!(fields["brightness"].as_f64().is_some(), "{fields}");

    let hellos = hook_events(&seen, "hello");
    assert!(
        hellos.len() >= 3,
        "the crashing hook was started again and again: {seen:?}"
    );
    let pids: std::collections::BTreeSet<_> = hellos
        .iter()
        .map(|e| e["fields"]["fields"]["pid"].to_string())
        .collect();
    assert!(pids.len() >= 3, "new processes: {pids:?}");
    assert!(
        !hook_events(&seen, "restart").is_empty(),
        "restarts are reported"
    );
    // The pipeline itself never stopped.
    let status = get(&format!("{base}/api/pipelines/crashy")).json;
    assert_eq!(status["state"], "playing");
    assert_eq!(status["restarts"], 0, "{status}");
    server.shutdown();
}

/// A hook that never reads its frames cannot hold up a stop; text that is not JSON (even a
/// line starting with `M`, like the framing's magic) is skipped and the events after it count.
#[test]
fn a_stuck_hook_never_blocks_a_stop_and_chatter_is_skipped() {
    let python = venv_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let stuck = dir.path().join("stuck.py");
    std::fs::write(&stuck, "import time\ntime.sleep(600)\n").expect("write");
    let chatty = dir.path().join("chatty.py");
    std::fs::write(
        &chatty,
        "import sys, json\nprint('Model loaded', flush=True)\nprint('MWF', flush=True)\nwhile sys.stdin.buffer.read(32 + 64 * 48 * 3):\n    print(json.dumps({'kind': 'after-chatter'}), flush=True)\n",
    )
    .expect("write");
    for (name, script) in [("stuck", &stuck), ("chatty", &chatty)] {
        write_pipeline(
            dir.path(),
            name,
            &format!(
                "[source]\nkind = \"test\"\naudio = false\nwidth = 640\nheight = 480\n\n[[hook]]\nkind = \"process\"\ncommand = [\"{}\", \"{}\"]\nwidth = {}\nheight = {}\n",
                python.display(),
                script.display(),
                if name == "stuck" { 640 } else { 64 },
                if name == "stuck" { 480 } else { 48 },
            ),
        );
    }
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    let events = collect_events(&base, |seen| hook_events(seen, "after-chatter").len() >= 3);
    wait_state(&base, "stuck", "playing");
    // Long enough for the pipe to the sleeping script to fill up and the write to block.
    std::thread::sleep(std::time::Duration::from_secs(2));
    // Before the fix this stop hung for good (the hook thread blocked on a full pipe).
    assert_eq!(
        post(&format!("{base}/api/pipelines/stuck/stop")).status,
        200
    );
    wait_state(&base, "stuck", "stopped");
    let seen = events.join().expect("events");
    assert!(
        hook_events(&seen, "after-chatter").len() >= 3,
        "events after non-JSON lines: {seen:?}"
    );
    server.shutdown();
}
