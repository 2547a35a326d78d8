//! Hot reload: editing a description on disk restarts just that pipeline (a TCP client sees
//! the new picture size); a comment-only edit restarts nothing; an invalid edit leaves the
//! pipeline running and is reported in its status and on /api/events; a deleted file stops
//! its pipeline and a new file starts one.

mod common;
use common::*;
use std::time::Duration;

fn tcp(port: u16, width: u32) -> String {
    format!(
        "[source]\nkind = \"test\"\nwidth = {width}\nheight = 240\naudio = false\n\n[[output]]\nkind = \"tcp\"\nport = {port}\n"
    )
}

#[test]
fn edits_on_disk_restart_only_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    write_pipeline(dir.path(), "a", &tcp(pa, 320));
    write_pipeline(dir.path(), "b", &tcp(pb, 320));
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    let a0 = wait_state(&base, "a", "playing");
    let b0 = wait_state(&base, "b", "playing");

    // A real change: `a` restarts with the new size, `b` is untouched.
    write_pipeline(dir.path(), "a", &tcp(pa, 160));
    wait_for("a to restart", Duration::from_secs(20), || {
        let a = get(&format!("{base}/api/pipelines/a")).json;
        (a["state"] == "playing" && a["since"] != a0["since"]).then_some(())
    });
    let frames = gst_decode_tcp(pa, 5).expect("decode");
    assert_eq!(frames.first(), Some(&(160, 240)), "the edited size");
    let b = get(&format!("{base}/api/pipelines/b")).json;
    assert_eq!(b["since"], b0["since"], "b was not restarted");

    // Comments and layout only: nothing restarts.
    let a1 = get(&format!("{base}/api/pipelines/a")).json;
    write_pipeline(
        dir.path(),
        "a",
        &format!("# a comment\n\n{}", tcp(pa, 160).replace(" = ", "=")),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        get(&format!("{base}/api/pipelines/a")).json["since"],
        a1["since"]
    );

    // An invalid edit: reported, and the pipeline keeps running.
    let events = collect_events(&base, |seen| seen.iter().any(|e| e["type"] == "reload"));
    std::thread::sleep(Duration::from_millis(300));
    write_pipeline(
        dir.path(),
        "a",
        "[source]\nkind = \"test\"\nwidth = \"wide\"\n",
    );
    let events = events.join().expect("events");
    let reload = events
        .iter()
        .find(|e| e["type"] == "reload")
        .expect("a reload event");
    assert_eq!(reload["pipeline"], "a");
    assert_eq!(reload["fields"]["ok"], false);
    let error = reload["fields"]["error"].as_str().expect("error");
    assert!(error.contains("a.toml:3:9:"), "{error}");
    let a = get(&format!("{base}/api/pipelines/a")).json;
    assert_eq!(a["state"], "playing");
    assert_eq!(a["since"], a1["since"]);
    assert!(
        a["reload_error"]
            .as_str()
            .unwrap_or_default()
            .contains("a.toml:3:9:"),
        "{a}"
    );
    assert_eq!(gst_decode_tcp(pa, 3).expect("decode").len(), 3);

    // Deleting a file stops its pipeline; a new file starts one.
    std::fs::remove_file(dir.path().join("b.toml")).expect("rm");
    wait_for("b to go", Duration::from_secs(20), || {
        (get(&format!("{base}/api/pipelines/b")).status == 404).then_some(())
    });
    let pc = free_port();
    write_pipeline(dir.path(), "c", &tcp(pc, 320));
    wait_state(&base, "c", "playing");
    assert!(gst_decode_tcp(pc, 3).expect("decode").len() == 3);
}
