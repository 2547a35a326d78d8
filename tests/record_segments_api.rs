//! A `record` output writes segments of the configured length named by their UTC start time,
//! retention deletes the oldest beyond the size budget (never the one being written), and the
//! recordings API lists, serves (with Range) and deletes them without letting paths escape.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn segments_rotate_retention_trims_and_api_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "cam",
        r#"
[source]
kind = "test"
width = 320
height = 240
framerate = 30

[[output]]
kind = "record"
segment = "2s"
max_total_size = "1.2MB"
"#,
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    // Long enough for several 2 s segments (~0.5 MB each at the default 2 Mbit/s).
    std::thread::sleep(Duration::from_secs(9));

    // At a cut the old segment is finalized beside the new one, so for an instant two are
    // being written: read the list outside that instant.
    let list = wait_for("one segment being written", Duration::from_secs(5), || {
        let list = get(&format!("{base}/api/recordings")).json;
        let writing = list
            .as_array()?
            .iter()
            .filter(|r| r["recording"] == true)
            .count();
        (writing == 1).then_some(list)
    });
    let all = list.as_array().expect("array").clone();
    assert!(!all.is_empty(), "{list}");
    let total: u64 = all.iter().map(|r| r["bytes"].as_u64().unwrap_or(0)).sum();
    let writing: Vec<_> = all.iter().filter(|r| r["recording"] == true).collect();
    assert_eq!(
        writing.len(),
        1,
        "exactly one segment is being written: {list}"
    );
    // Retention: the finished segments fit the budget (the one being written is never deleted).
    let finished = total - writing[0]["bytes"].as_u64().unwrap_or(0);
    assert!(
        finished <= 1_200_000,
        "finished segments take {finished} bytes: {list}"
    );
    assert!(all.len() < 5, "old segments were deleted: {list}");

    let done = all
        .iter()
        .find(|r| r["recording"] == false)
        .expect("a finished segment");
    let file = done["file"].as_str().expect("file").to_string();
    assert_eq!(done["pipeline"], "cam");
    assert!(file.ends_with(".mkv"), "{file}");
    assert!(
        done["started"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{done}"
    );
    let duration = done["duration"]
        .as_f64()
        .expect("duration of a finished segment");
    assert!((1.5..=3.5).contains(&duration), "segment of {duration} s");
    let path = std::path::Path::new(done["path"].as_str().expect("path"));
    assert!(path.is_absolute() && path.exists(), "{path:?}");

    // Served over HTTP: ffprobe decodes it, and a Range request gets 206.
    let url = format!("{base}/recordings/cam/{file}");
    let probe = ffprobe(&url, None).expect("ffprobe over HTTP");
    assert!(probe.video().is_some_and(|v| v.frames >= 45), "{probe:?}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let r = agent
        .get(&url)
        .header("Range", "bytes=0-99")
        .call()
        .expect("range GET");
    assert_eq!(r.status().as_u16(), 206);
    assert!(
        r.headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("bytes 0-99/")),
        "{:?}",
        r.headers()
    );

    // Paths cannot leave the recordings directory, symlinks are not followed.
    let rec_dir = path.parent().expect("pipeline dir");
    std::os::unix::fs::symlink("/etc/passwd", rec_dir.join("evil.mkv")).expect("symlink");
    for (bad, code) in [
        ("/recordings/cam/evil.mkv", 404),
        ("/recordings/cam/..%2F..%2Fetc%2Fpasswd", 400),
        ("/recordings/..%2Fetc/passwd.mkv", 400),
        ("/recordings/cam/notes.txt", 400),
    ] {
        let r = agent.get(&format!("{base}{bad}")).call().expect("GET");
        assert_eq!(r.status().as_u16(), code, "{bad}");
    }
    std::fs::remove_file(rec_dir.join("evil.mkv")).expect("remove symlink");
    // A symlinked directory does not lead out either: not served, not listed, not deleted.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    std::fs::write(elsewhere.path().join("X.mkv"), b"not a recording").expect("write");
    let recordings = rec_dir.parent().expect("recordings root");
    std::os::unix::fs::symlink(elsewhere.path(), recordings.join("raw-example")).expect("symlink");
    let outside = format!("{base}/recordings/raw-example/X.mkv");
    assert_eq!(
        agent.get(&outside).call().expect("GET").status().as_u16(),
        404
    );
    assert_eq!(
        agent
            .delete(&outside)
            .call()
            .expect("DELETE")
            .status()
            .as_u16(),
        404
    );
    assert!(
        elsewhere.path().join("X.mkv").exists(),
        "nothing outside deleted"
    );
    let listed = get(&format!("{base}/api/recordings")).json;
    assert!(
        listed
            .as_array()
            .is_some_and(|a| a.iter().all(|r| r["pipeline"] != "raw-example")),
        "{listed}"
    );

    // Deleting: a finished segment goes; the one being written is refused.
    let r = agent.delete(&url).call().expect("DELETE");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(agent.get(&url).call().expect("GET").status().as_u16(), 404);
    // Ask again: the segment seen earlier may have been finalized since.
    let list = get(&format!("{base}/api/recordings")).json;
    let now_writing = list
        .as_array()
        .and_then(|a| a.iter().find(|r| r["recording"] == true).cloned())
        .expect("a segment being written");
    let busy = format!(
        "{base}/recordings/cam/{}",
        now_writing["file"].as_str().expect("file")
    );
    let r = agent.delete(&busy).call().expect("DELETE");
    assert_eq!(r.status().as_u16(), 409, "{busy}");
    server.shutdown();

    // After a clean stop, every segment is finished and complete.
    let list = get_offline(&dir.path().join("recordings/cam"));
    for file in list {
        let probe = ffprobe(&file, None).expect("every segment decodes");
        assert!(probe.video().is_some(), "{file}");
    }
}

fn get_offline(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "mkv"))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}
