//! kill -9 of the service while a WHIP publisher is sending: after a restart every recording is
//! readable, and together they hold the video up to about a second before the kill — with a
//! publisher that sends keyframes only when asked, as browsers and aiortc do (so nothing may
//! wait for the next keyframe before writing what arrived).

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn kill_9_while_publishing_h264() {
    kill_while_publishing("h264", &["--h264", "--keyframes-on-request"]);
}

#[test]
fn kill_9_while_publishing_vp8() {
    // aiortc's VP8 encoder sends a keyframe only when asked (or every 3000 frames).
    kill_while_publishing("vp8", &[]);
}

fn kill_while_publishing(codec: &str, publisher: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipelines = dir.path().join("pipelines");
    let recordings = dir.path().join("recordings");
    std::fs::create_dir(&pipelines).expect("mkdir");
    write_pipeline(
        &pipelines,
        "inbox",
        &format!(
            "[source]\nkind = \"webrtc\"\ncodec = \"{codec}\"\n\n[[output]]\nkind = \"record\"\nsegment = \"10m\"\n"
        ),
    );
    let (mut service, base) = spawn_serve(&pipelines, &recordings);
    wait_state(&base, "inbox", "playing");
    let url = format!("{base}/whip/inbox");
    let mut args = vec!["whip", url.as_str(), "--seconds", "30"];
    args.extend(publisher);
    let mut publisher = aiortc_publish(&args);
    let dir_inbox = recordings.join("inbox");
    wait_for("the recording to start", Duration::from_secs(20), || {
        std::fs::read_dir(&dir_inbox)
            .ok()
            .and_then(|mut d| d.next())
            .map(|_| ())
    });
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let elapsed = started.elapsed().as_secs_f64();
    let _ = service.kill(); // SIGKILL mid-publish
    let _ = service.wait();
    let _ = publisher.kill();
    let _ = publisher.wait();

    let (mut service, base) = spawn_serve(&pipelines, &recordings);
    wait_state(&base, "inbox", "playing");
    let list = get(&format!("{base}/api/recordings")).json;
    let all = list.as_array().cloned().unwrap_or_default();
    // One segment of 10 minutes. None may be empty: an empty one left by the kill is removed
    // at start.
    assert_eq!(all.len(), 1, "{list}");
    let segment = &all[0];
    assert_eq!(segment["recording"], false, "{list}");
    assert!(segment["bytes"].as_u64().unwrap_or(0) > 0, "{list}");
    let path = segment["path"].as_str().expect("path");
    let probe = ffprobe(path, None).expect("readable after kill -9");
    let video = probe.video().expect("video");
    assert_eq!(video.codec, codec, "{probe:?}");
    // The publisher really was one that sends keyframes only when asked: the stream's first,
    // and at most a couple more (a lost packet makes the receiver ask for one).
    let keyframes = keyframe_count(path);
    assert!(
        (1..=3).contains(&keyframes),
        "{keyframes} keyframes in {elapsed:.1} s: the publisher must send them only on request"
    );
    // aiortc sends 30 frames per second.
    let seconds = video.frames as f64 / 30.0;
    assert!(
        seconds >= elapsed - 1.2,
        "{seconds:.2} s of video after {elapsed:.2} s of publishing"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status();
    let _ = service.wait();
}

/// How many keyframes the video of a file has (ffprobe reading keyframes only).
fn keyframe_count(path: &str) -> usize {
    let args = [
        "-v",
        "error",
        "-select_streams",
        "v",
        "-skip_frame",
        "nokey",
        "-show_entries",
        "frame=pts_time",
        "-of",
        "csv=p=0",
        path,
    ];
    let out = run_limited(40, "ffprobe", &args);
    assert!(out.status.success(), "ffprobe -skip_frame nokey {path}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}
