//! kill -9 of the service in the middle of a recording: every segment on disk stays readable
//! and decodes to within about a second of the kill (Matroska clusters and MP4 fragments of at
//! most 1 s, unbuffered writes). On restart the recordings are listed, recording resumes, and
//! every pipeline comes back — one created over the API before the kill too.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn kill_9_loses_at_most_about_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipelines = dir.path().join("pipelines");
    let recordings = dir.path().join("recordings");
    std::fs::create_dir(&pipelines).expect("mkdir");
    // Matroska cuts clusters on time; fragmented MP4 only at keyframes, so its loss is about a
    // keyframe interval: the MP4 pipeline uses 0.5 s keyframes (as the README advises).
    for (name, container, gop) in [("mkv", "mkv", "1s"), ("mp4", "mp4", "0.5s")] {
        write_pipeline(
            &pipelines,
            name,
            &format!(
                "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\nframerate = 30\n[encode]\nkeyframe_interval = \"{gop}\"\n[[output]]\nkind = \"record\"\ncontainer = \"{container}\"\nsegment = \"1m\"\n"
            ),
        );
    }
    let (mut child, base) = spawn_serve(&pipelines, &recordings);
    wait_state(&base, "mkv", "playing");
    wait_state(&base, "mp4", "playing");
    let tcp_port = free_port();
    let added = put(
        &format!("{base}/api/pipelines/added"),
        &format!(
            "[source]\nkind = \"test\"\nwidth = 160\nheight = 120\naudio = false\n[[output]]\nkind = \"tcp\"\nport = {tcp_port}\n"
        ),
    );
    assert_eq!(added.status, 201, "{}", added.json);
    wait_state(&base, "added", "playing");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let elapsed = started.elapsed().as_secs_f64();
    let _ = child.kill(); // SIGKILL: no end-of-stream, no index, nothing finalized
    let _ = child.wait();

    for name in ["mkv", "mp4"] {
        let files: Vec<_> = std::fs::read_dir(recordings.join(name))
            .expect("recordings dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let probe = ffprobe(&files[0].display().to_string(), None)
            .unwrap_or_else(|e| panic!("{name} after kill -9: {e}"));
        let frames = probe.video().map(|v| v.frames).unwrap_or(0);
        let seconds = frames as f64 / 30.0;
        assert!(
            seconds >= elapsed - 1.5,
            "{name}: {seconds:.2} s of video decodes after {elapsed:.2} s of recording"
        );
    }

    // Restart on the same directories: the recordings are listed, and recording resumes in a
    // new segment.
    let (mut child, base) = spawn_serve(&pipelines, &recordings);
    wait_state(&base, "mkv", "playing");
    wait_state(&base, "mp4", "playing");
    wait_state(&base, "added", "playing");
    let frames = gst_decode_tcp(tcp_port, 10).expect("the API-created pipeline serves again");
    assert_eq!(frames.len(), 10);
    let list = wait_for("a new segment", Duration::from_secs(10), || {
        let list = get(&format!("{base}/api/recordings")).json;
        let n = list
            .as_array()
            .map(|a| a.iter().filter(|r| r["pipeline"] == "mkv").count());
        (n == Some(2)).then_some(list)
    });
    let mkv: Vec<_> = list
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["pipeline"] == "mkv")
        .collect();
    assert_eq!(mkv[0]["recording"], false, "the killed segment: {list}");
    assert_eq!(mkv[1]["recording"], true, "the new one: {list}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
