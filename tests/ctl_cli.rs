//! `mediaweave ctl` drives a running server (`mediaweave serve`) from the command line: put a
//! description, see it listed, set and read an element property, stop, start, follow events,
//! delete; errors print the server's sentence and exit non-zero.

mod common;
use common::*;
use std::process::Command;

fn ctl(base: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(["ctl", "--server", base])
        .args(args)
        .output()
        .expect("ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn ctl_verbs_against_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("mkdir");
    let (mut serve, base) = spawn_serve(&pipelines, &dir.path().join("recordings"));
    let port = free_port();
    let file = dir.path().join("cam.toml");
    std::fs::write(
        &file,
        format!("[source]\nkind = \"test\"\nwidth = 320\nheight = 240\naudio = false\n\n[[output]]\nkind = \"tcp\"\nport = {port}\n"),
    )
    .expect("write");

    let (ok, out, err) = ctl(&base, &["put", "cam", file.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    assert!(out.starts_with("cam: created"), "{out}");
    wait_state(&base, "cam", "playing");
    assert!(pipelines.join("cam.toml").exists());

    let (ok, out, _) = ctl(&base, &["list"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("cam") && l.contains("playing")),
        "{out}"
    );

    let (ok, out, err) = ctl(&base, &["set", "cam", "video_encoder", "bitrate", "700"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "700");
    let (ok, out, _) = ctl(&base, &["get", "cam", "video_encoder", "bitrate"]);
    assert!(ok);
    assert_eq!(out.trim(), "700");
    let (ok, out, _) = ctl(&base, &["elements", "cam"]);
    assert!(ok);
    assert!(
        out.contains("/cam/video_encoder") && out.contains("x264enc"),
        "{out}"
    );

    let (ok, out, _) = ctl(&base, &["stop", "cam"]);
    assert!(ok);
    assert_eq!(out.trim(), "cam: stopped");
    let (ok, out, _) = ctl(&base, &["start", "cam"]);
    assert!(ok);
    assert_eq!(out.trim(), "cam: playing");
    assert!(gst_decode_tcp(port, 3).expect("decode").len() == 3);

    let (ok, _, err) = ctl(&base, &["set", "cam", "video_encoder", "bitrat", "1"]);
    assert!(!ok);
    assert!(
        err.contains("404: element `video_encoder` (x264enc) has no property `bitrat`; did you mean `bitrate`?"),
        "{err}"
    );
    let (ok, out, _) = ctl(&base, &["description", "cam"]);
    assert!(ok);
    assert!(out.contains("kind = \"tcp\""));
    let (ok, out, _) = ctl(&base, &["metrics"]);
    assert!(ok);
    assert!(out.contains("mediaweave_pipeline_state{"), "{out}");

    let (ok, out, _) = ctl(&base, &["delete", "cam"]);
    assert!(ok);
    assert_eq!(out.trim(), "cam: deleted");
    assert!(!pipelines.join("cam.toml").exists());
    let (ok, _, err) = ctl(&base, &["stop", "cam"]);
    assert!(!ok);
    assert!(err.contains("404: no pipeline named `cam`"), "{err}");

    let (ok, _, err) = ctl("http://127.0.0.1:1", &["list"]);
    assert!(!ok);
    assert!(
        err.contains("cannot reach http://127.0.0.1:1/api/pipelines"),
        "{err}"
    );

    let _ = serve.kill();
    let _ = serve.wait();
}
