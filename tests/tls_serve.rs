//! `serve --tls-cert/--tls-key`: the API, WHEP and the signalling WebSocket over HTTPS/WSS,
//! checked by real clients that trust only the test's own certificate (curl, stock aiortc with
//! Python's TLS); our own producers still reach the signalling server (over their loopback
//! listener), and plain HTTP on the TLS port gets nothing.

mod common;
use common::*;
use std::process::Command;

#[test]
fn https_and_wss_with_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).expect("mkdir");
    write_pipeline(&pipelines, "cam", WEBRTC_TEST_PATTERN);
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, key.cert.pem()).expect("cert");
    std::fs::write(&key_file, key.signing_key.serialize_pem()).expect("key");

    let (mut serve, base) = spawn_serve_with(
        &pipelines,
        &dir.path().join("recordings"),
        &[
            "--tls-cert".as_ref(),
            cert_file.as_os_str(),
            "--tls-key".as_ref(),
            key_file.as_os_str(),
        ],
    );
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let curl = |url: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&cert_file)
            .arg(url)
            .output()
            .expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let playing = wait_for("cam over HTTPS", std::time::Duration::from_secs(30), || {
        let (ok, body) = curl(&format!("{base}/api/pipelines/cam"));
        (ok && body.contains("\"state\":\"playing\"")).then_some(body)
    });
    assert!(playing.contains("\"name\":\"cam\""));
    // Plain HTTP on the TLS port gets no answer.
    let (ok, body) = curl(&base.replace("https://", "http://"));
    assert!(!ok || body.is_empty(), "plain HTTP answered: {body}");

    let cert = cert_file.to_str().expect("utf-8");
    let whep = aiortc_view_env(
        &["whep", &format!("{base}/whep/cam"), "--frames", "20"],
        &[("SSL_CERT_FILE", cert)],
    );
    assert!(whep["frames"].as_u64().unwrap_or(0) >= 20, "{whep}");
    let wss = base.replace("https://", "wss://");
    let signalled = aiortc_view_env(
        &["ws", &format!("{wss}/ws"), "cam", "--frames", "20"],
        &[("SSL_CERT_FILE", cert)],
    );
    assert!(
        signalled["frames"].as_u64().unwrap_or(0) >= 20,
        "{signalled}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    assert!(serve.wait().expect("exit").success(), "a clean stop");
}
