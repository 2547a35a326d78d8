//! SIGTERM to `mediaweave serve` sends end-of-stream through every pipeline before exiting,
//! so a `file` output (MP4, which is unreadable without its final index) is complete.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_leaves_a_complete_mp4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).expect("mkdir");
    let out = dir.path().join("out/rec.mp4");
    write_pipeline(
        &pipelines,
        "rec",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\nframerate = 30\naudio = true\n\n[[output]]\nkind = \"file\"\npath = \"{}\"\n",
            out.display()
        ),
    );
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--pipelines"])
        .arg(&pipelines)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("serving on URL")
        .to_string();
    assert!(base.starts_with("http://"), "first line: {line}");
    wait_state(&base, "rec", "playing");
    let playing_at = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let recorded = playing_at.elapsed().as_secs_f64();

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = wait_for("serve to exit", Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    assert!(exit.success(), "serve exited with {exit}");

    let probe = ffprobe(&out.display().to_string(), None).expect("ffprobe reads the MP4");
    let video = probe.video().expect("video stream");
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", 320, 240)
    );
    assert_eq!(probe.audio().map(|a| a.codec.as_str()), Some("aac"));
    let duration = probe.duration.expect("duration");
    assert!(
        duration >= recorded - 1.0,
        "file holds {duration:.2} s of the {recorded:.2} s recorded"
    );
    // Every frame up to the end decodes: about 30 per second.
    assert!(
        video.frames as f64 >= (duration - 0.5) * 30.0 * 0.9,
        "{} frames in {duration:.2} s",
        video.frames
    );
}
