//! `mediaweave run FILE` prints the chosen elements and each state change and stops cleanly on
//! Ctrl-C (SIGINT), leaving a complete file; `mediaweave list` shows every description with its
//! state from a running server, invalid files with their error.

mod common;
use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn run_prints_states_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run.mp4");
    let file = write_pipeline(
        dir.path(),
        "fg",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\naudio = false\n[[output]]\nkind = \"file\"\npath = \"{}\"\n",
            out.display()
        ),
    );
    let mut child = Command::new(bin())
        .arg("run")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run");
    wait_for("the file to grow", Duration::from_secs(20), || {
        // About a second of video at the default 2 Mbit/s.
        std::fs::metadata(&out).ok().filter(|m| m.len() > 200_000)
    });
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = wait_for("run to exit", Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    assert!(status.success(), "exit {status}: {stdout}");
    assert!(
        stdout.contains("video encoder: x264enc (software)"),
        "{stdout}"
    );
    assert!(stdout.contains("fg: starting"), "{stdout}");
    assert!(stdout.contains("fg: playing"), "{stdout}");
    assert!(stdout.contains("fg: stopped"), "{stdout}");
    let probe = ffprobe(&out.display().to_string(), None).expect("a complete MP4");
    assert!(probe.video().is_some_and(|v| v.frames >= 20), "{probe:?}");
}

#[test]
fn list_shows_state_from_the_server_and_invalid_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    write_pipeline(
        dir.path(),
        "alpha",
        &format!(
            "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\naudio = false\n[[output]]\nkind = \"tcp\"\nport = {port}\n"
        ),
    );
    write_pipeline(
        dir.path(),
        "beta",
        "launch = \"videotestsrc ! x264enk ! fakesink\"\n",
    );
    let server = TestServer::start(dir.path());
    wait_state(&server.base, "alpha", "playing");

    // Run from a folder without pipelines/: a running server is asked first.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin())
        .current_dir(elsewhere.path())
        .args(["list", "--server", &server.base])
        .output()
        .expect("run list");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    let row = |name: &str| row_in(&stdout, name);
    let alpha = row("alpha");
    assert_eq!(alpha[1], "structured");
    assert!(
        alpha.contains(&format!("tcp://127.0.0.1:{port}").as_str()),
        "{alpha:?}"
    );
    assert!(alpha.contains(&"x264enc"), "{alpha:?}");
    assert_eq!(alpha.last(), Some(&"playing"));
    assert_eq!(row("beta").last(), Some(&"invalid"));
    assert!(
        stdout.contains("beta.toml:1:26: no element `x264enk`; did you mean `x264enc`?"),
        "{stdout}"
    );

    // Without a server, list reads the files and says so; without files either, it says both.
    let out = Command::new(bin())
        .args(["list", "--server", "http://127.0.0.1:9", "--pipelines"])
        .arg(dir.path())
        .output()
        .expect("run list");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("no server answers at http://127.0.0.1:9"),
        "{stdout}"
    );
    assert_eq!(row_in(&stdout, "beta").last(), Some(&"invalid"));
    let out = Command::new(bin())
        .current_dir(elsewhere.path())
        .args(["list", "--server", "http://127.0.0.1:9"])
        .output()
        .expect("run list");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no server answers at http://127.0.0.1:9")
            && stderr.contains("cannot read the pipelines directory pipelines"),
        "{stderr}"
    );
    server.shutdown();
}

/// The words of the table row of `name`.
fn row_in<'a>(stdout: &'a str, name: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
        .split_whitespace()
        .collect()
}
