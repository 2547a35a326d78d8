//! `record` and `file` outputs are readers of the stream hub: their muxers and file sinks run
//! in pipelines of their own (drawn beside the source's in its graph; the element API finds
//! them), and a source that fails mid-recording still gets its segment and its file finished —
//! Matroska with its duration written, which a file cut off without end-of-stream lacks.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn a_failed_sources_segment_is_finished_by_its_reader() {
    let port = free_port();
    let mut source = ts_server(port);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("files").join("cam.mkv");
    write_pipeline(
        dir.path(),
        "cam",
        &format!(
            "restart = \"never\"\nstall_timeout = \"2s\"\n\n[source]\nkind = \"tcp\"\nport = {port}\naudio = false\n\n[encode]\nkeyframe_interval = \"1s\"\n\n[[output]]\nkind = \"record\"\nsegment = \"60s\"\n\n[[output]]\nkind = \"file\"\npath = \"{}\"\n",
            file.display()
        ),
    );
    let service = TestServer::start(dir.path());
    let base = service.base.clone();
    wait_state(&base, "cam", "playing");
    let segment = wait_for("a segment being written", Duration::from_secs(20), || {
        let list = get(&format!("{base}/api/recordings")).json;
        list.as_array()?
            .iter()
            .find(|r| r["recording"] == true && r["bytes"].as_u64().unwrap_or(0) > 20_000)
            .and_then(|r| r["path"].as_str().map(str::to_string))
    });

    // The recorder is not in the source's pipeline but in one of its own, drawn beside it in
    // the graph, and its file sink is there to inspect.
    let (code, dot) = get_text(&format!("{base}/api/pipelines/cam/graph.dot"));
    assert_eq!(code, 200);
    assert!(
        dot.contains("cluster_reader_0") && dot.contains("cam-record0"),
        "the graph draws the recorder's pipeline"
    );
    let sink = get(&format!("{base}/api/pipelines/cam/elements/out0_sink")).json;
    assert_eq!(sink["factory"], "filesink", "{sink}");
    assert!(
        sink["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/cam-record0/")),
        "{sink}"
    );

    // Three more seconds recorded, then the source stops sending without closing: the
    // watchdog fails the run.
    std::thread::sleep(Duration::from_secs(3));
    let pid = source.id().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let status = wait_state(&base, "cam", "failed");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("stalled")),
        "{status}"
    );
    wait_for(
        "the segment to be finished",
        Duration::from_secs(15),
        || {
            let list = get(&format!("{base}/api/recordings")).json;
            list.as_array()?
                .iter()
                .any(|r| r["path"] == segment.as_str() && r["recording"] == false)
                .then_some(())
        },
    );
    let probe = ffprobe(&segment, None).expect("ffprobe reads the segment");
    let video = probe.video().expect("a video stream");
    assert_eq!((video.width, video.height), (320, 240));
    assert!(
        probe.duration.is_some_and(|d| d > 2.5),
        "the finished segment has its duration: {:?}",
        probe.duration
    );

    // The file output's file, finished before the run was reported failed.
    let probe = ffprobe(&file.to_string_lossy(), None).expect("ffprobe reads the file");
    assert!(
        probe.duration.is_some_and(|d| d > 2.5),
        "the file output's file has its duration: {:?}",
        probe.duration
    );

    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    let _ = source.kill();
    let _ = source.wait();
    service.shutdown();
}
