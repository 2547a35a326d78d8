//! Interop with the reference gst-webrtc-signalling-server: a pipeline whose webrtc output
//! names it in `signalling_url` registers there as a producer and stock aiortc watches through
//! it; when that server goes away and comes back, the producer reconnects by itself.

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn reference_server(port: u16) -> Child {
    let bin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/gst-webrtc-signalling-server");
    assert!(
        bin.exists(),
        "{} is missing: scripts/setup builds it",
        bin.display()
    );
    Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gst-webrtc-signalling-server")
}

#[test]
fn producer_works_with_the_reference_server_and_reconnects() {
    let port = free_port();
    let mut reference = reference_server(port);
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "ref",
        &format!(
            "backoff = {{ initial = \"200ms\" }}\n[source]\nkind = \"test\"\nwidth = 640\nheight = 360\n[[output]]\nkind = \"webrtc\"\nsignalling_url = \"ws://127.0.0.1:{port}\"\n"
        ),
    );
    let server = TestServer::start(dir.path());
    wait_state(&server.base, "ref", "playing");
    let url = format!("ws://127.0.0.1:{port}");

    let seen = aiortc_view(&["ws", &url, "ref"]);
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 60, "{seen}");
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(640), Some(360))
    );

    // The server goes away and comes back on the same port: the producer registers again.
    let _ = reference.kill();
    let _ = reference.wait();
    std::thread::sleep(Duration::from_secs(1));
    let mut reference = reference_server(port);
    let seen = aiortc_view(&["ws", &url, "ref"]);
    assert!(
        seen["frames"].as_u64().unwrap_or(0) >= 60,
        "after reconnect: {seen}"
    );
    let _ = reference.kill();
    let _ = reference.wait();
    server.shutdown();
}
