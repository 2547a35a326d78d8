//! The built-in motion hook: a moving pattern raises a `motion` event; a still picture never
//! does.

mod common;
use common::*;

#[test]
fn motion_hook_sees_movement_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = "\n[[hook]]\nkind = \"motion\"\nthreshold = 1\n";
    write_pipeline(
        dir.path(),
        "moving",
        &format!(
            "[source]\nkind = \"test\"\npattern = \"ball\"\nclock = false\naudio = false\nwidth = 320\nheight = 240\n{hook}"
        ),
    );
    write_pipeline(
        dir.path(),
        "still",
        &format!(
            "[source]\nkind = \"test\"\npattern = \"white\"\nclock = false\naudio = false\nwidth = 320\nheight = 240\n{hook}"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    // Watch for a few seconds in any case, so a motion event from `still` would be seen.
    let started = std::time::Instant::now();
    let seen = collect_events(&base, move |seen| {
        started.elapsed() > std::time::Duration::from_secs(4)
            && !hook_events(seen, "motion").is_empty()
    })
    .join()
    .expect("events");
    let motion = hook_events(&seen, "motion");
    assert!(motion.iter().any(|e| e["pipeline"] == "moving"), "{seen:?}");
    assert!(
        !motion.iter().any(|e| e["pipeline"] == "still"),
        "a still picture does not move: {motion:?}"
    );
    let level = motion[0]["fields"]["fields"]["level"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(level > 1.0, "{level}");
    server.shutdown();
}
