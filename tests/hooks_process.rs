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
