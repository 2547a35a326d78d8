//! Tokens: each surface answers 401 without a valid token and 403 with one lacking the scope;
//! lists and events show only what a token may view; a viewer token watches over WHEP and the
//! signalling WebSocket (whose producers join with the service's own internal token); the
//! service refuses to listen beyond loopback without tokens unless told `--insecure`.

mod common;
use common::*;
use mediaweave::auth::{Auth, hash, hex};
use std::process::{Command, Stdio};
use std::time::Duration;

const ADMIN: &str = "admin-secret-token";
const VIEWER: &str = "viewer-secret-token";
const PUBLISHER: &str = "publisher-secret-token";

fn tokens() -> String {
    let entry = |name: &str, token: &str, scopes: &str| {
        format!(
            "[[token]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [{scopes}]\n",
            hex(&hash(token))
        )
    };
    [
        entry("ops", ADMIN, "\"admin\""),
        entry("viewer", VIEWER, "\"view:cam\""),
        entry("obs", PUBLISHER, "\"publish:inbox\""),
    ]
    .join("\n")
}

/// (status, JSON body, WWW-Authenticate) of a request with an optional bearer token.
fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let response = match method {
        "GET" => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        "DELETE" => {
            let mut r = agent.delete(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        "POST" | "PUT" => {
            let mut r = if method == "POST" {
                agent.post(url)
            } else {
                agent.put(url)
            };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.header("Content-Type", "application/sdp").send(body)
        }
        _ => panic!("{method}"),
    };
    let mut response = response.expect("request");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = response.status().as_u16();
    let json = response
        .body_mut()
        .read_json()
        .unwrap_or(serde_json::Value::Null);
    (status, json, challenge)
}

fn error(v: &serde_json::Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

#[test]
fn every_surface_checks_tokens_and_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", WEBRTC_TEST_PATTERN);
    write_pipeline(dir.path(), "inbox", INBOX);
    let auth = Auth::load(None, Some(&tokens())).expect("tokens");
    let server = TestServer::start_with(dir.path(), auth);
    let base = server.base.clone();
    let admin_state = |name: &str| {
        common::wait_for(&format!("{name} playing"), Duration::from_secs(30), || {
            let (s, v, _) = call(
                "GET",
                &format!("{base}/api/pipelines/{name}"),
                Some(ADMIN),
                "",
            );
            (s == 200 && v["state"] == "playing").then_some(())
        })
    };
    admin_state("cam");
    admin_state("inbox");

    // The page and the API description are public.
    assert_eq!(call("GET", &format!("{base}/"), None, "").0, 200);
    assert_eq!(
        call("GET", &format!("{base}/api/openapi.json"), None, "").0,
        200
    );

    // No token, a wrong token: 401 with a Bearer challenge, on every kind of surface.
    let surfaces = [
        ("GET", "/api/pipelines"),
        ("GET", "/api/pipelines/cam"),
        ("PUT", "/api/pipelines/cam"),
        ("POST", "/api/pipelines/cam/stop"),
        ("GET", "/api/pipelines/cam/elements"),
        ("GET", "/api/recordings"),
        ("GET", "/metrics"),
        ("POST", "/whep/cam"),
        ("POST", "/offer/cam"),
        ("POST", "/whip/inbox"),
        ("GET", "/api/events"),
    ];
    for (method, path) in surfaces {
        let (status, body, challenge) = call(method, &format!("{base}{path}"), None, "v=0");
        assert_eq!(
            (status, challenge.as_str()),
            (401, "Bearer"),
            "{method} {path}: {body}"
        );
        assert!(error(&body).starts_with("this needs a token"), "{body}");
        let (status, body, _) = call(method, &format!("{base}{path}"), Some("nope"), "v=0");
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(error(&body), "the token is not valid");
    }

    // Under-scoped: 403 naming the token and what it lacks.
    let forbidden = [
        (
            VIEWER,
            "GET",
            "/api/pipelines/inbox",
            "token `viewer` may not view `inbox`",
        ),
        (
            VIEWER,
            "PUT",
            "/api/pipelines/cam",
            "token `viewer` may not administer the service",
        ),
        (
            VIEWER,
            "POST",
            "/api/pipelines/cam/stop",
            "token `viewer` may not administer the service",
        ),
        (
            VIEWER,
            "GET",
            "/api/pipelines/cam/elements/video_encoder/properties/bitrate",
            "token `viewer` may not administer the service",
        ),
        (
            VIEWER,
            "GET",
            "/api/pipelines/cam/description",
            "token `viewer` may not administer the service",
        ),
        (
            VIEWER,
            "GET",
            "/metrics",
            "token `viewer` may not administer the service",
        ),
        (
            VIEWER,
            "POST",
            "/whip/inbox",
            "token `viewer` may not publish into `inbox`",
        ),
        (
            VIEWER,
            "POST",
            "/offer",
            "token `viewer` may not view every pipeline",
        ),
        (
            PUBLISHER,
            "POST",
            "/whep/cam",
            "token `obs` may not view `cam`",
        ),
        (
            PUBLISHER,
            "GET",
            "/api/pipelines",
            "token `obs` may not view pipelines",
        ),
    ];
    for (token, method, path, expected) in forbidden {
        let (status, body, _) = call(method, &format!("{base}{path}"), Some(token), "v=0");
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(error(&body), expected);
    }

    // In scope: the request gets through to the handler (here: an offer that is not one).
    let (status, body, _) = call(
        "POST",
        &format!("{base}/whip/inbox"),
        Some(PUBLISHER),
        "v=0",
    );
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = call("POST", &format!("{base}/whep/cam"), Some(VIEWER), "v=0");
    assert_eq!(status, 400, "{body}");
    // Lists show only what the token may view; the query form works where headers cannot.
    let (status, list, _) = call(
        "GET",
        &format!("{base}/api/pipelines?token={VIEWER}"),
        None,
        "",
    );
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["cam"]);
    let (status, all, _) = call("GET", &format!("{base}/api/pipelines"), Some(ADMIN), "");
    assert_eq!((status, all.as_array().map(Vec::len)), (200, Some(2)));
    assert_eq!(
        call("GET", &format!("{base}/metrics"), Some(ADMIN), "").0,
        200
    );

    // A viewer watches for real over WHEP (Bearer) and over signalling (?token=); the
    // service's producer joined the WebSocket with its internal token.
    let whep = aiortc_view_with_token(
        &["whep", &format!("{base}/whep/cam"), "--frames", "20"],
        Some(VIEWER),
    );
    assert!(whep["frames"].as_u64().unwrap_or(0) >= 20, "{whep}");
    let ws = base.replace("http://", "ws://");
    let signalled = aiortc_view(&[
        "ws",
        &format!("{ws}/ws?token={VIEWER}"),
        "cam",
        "--frames",
        "20",
    ]);
    assert!(
        signalled["frames"].as_u64().unwrap_or(0) >= 20,
        "{signalled}"
    );
    // The page takes the token from its URL and watches with it (headless Chromium).
    let page = chromium(&format!("{base}/?token={VIEWER}"), "cam", "watch");
    assert!(page.get("error").is_none(), "{page}");
    assert!(page["framesDecoded"].as_u64().unwrap_or(0) >= 60, "{page}");
    let refused = tokio_tungstenite::tungstenite::connect(format!("{ws}/ws"));
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("a WebSocket without token: {other:?}"),
    }

    // On the signalling WebSocket, scopes apply per message.
    assert_eq!(
        signal(
            &format!("{ws}/ws?token={VIEWER}"),
            r#"{"type":"setPeerStatus","roles":["producer"],"meta":{"publish":"inbox"}}"#
        ),
        "token `viewer` may not publish into `inbox`"
    );
    assert_eq!(
        signal(
            &format!("{ws}/ws?token={VIEWER}"),
            r#"{"type":"setPeerStatus","roles":["producer"],"meta":{"name":"cam"}}"#
        ),
        "token `viewer` may not register a producer (a browser publisher sets meta.publish to its pipeline)"
    );
    // `list` shows only the producers a token may view.
    let producers = |token: &str| -> Vec<serde_json::Value> {
        let (mut sock, _) =
            tokio_tungstenite::tungstenite::connect(format!("{ws}/ws?token={token}")).expect("ws");
        let _welcome = sock.read().expect("welcome");
        sock.send(r#"{"type":"list"}"#.into()).expect("send");
        let list: serde_json::Value =
            serde_json::from_str(&sock.read().expect("list").into_text().expect("text"))
                .expect("json");
        list["producers"].as_array().cloned().unwrap_or_default()
    };
    let cam_producer = producers(ADMIN)
        .iter()
        .find(|p| p["meta"]["name"] == "cam")
        .and_then(|p| p["id"].as_str())
        .expect("cam's producer is listed to an admin")
        .to_string();
    assert!(
        producers(PUBLISHER).is_empty(),
        "a publish token views nothing"
    );
    let seen = producers(VIEWER);
    assert!(
        seen.len() == 1 && seen[0]["meta"]["name"] == "cam",
        "a view:cam token sees only cam: {seen:?}"
    );
    assert_eq!(
        signal(
            &format!("{ws}/ws?token={PUBLISHER}"),
            &format!(r#"{{"type":"startSession","peerId":"{cam_producer}"}}"#)
        ),
        "token `obs` may not view `cam`"
    );

    // Events only for what the token may view.
    let events = collect_events_at(format!("{ws}/api/events?token={VIEWER}"), |seen| {
        seen.iter().any(|e| {
            e["pipeline"] == "cam" && e["type"] == "state" && e["fields"]["state"] == "playing"
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    for name in ["inbox", "cam"] {
        let (s, _, _) = call(
            "POST",
            &format!("{base}/api/pipelines/{name}/restart"),
            Some(ADMIN),
            "",
        );
        assert_eq!(s, 200);
    }
    let events = events.join().expect("events");
    assert!(events.iter().any(|e| e["pipeline"] == "cam"));
    assert!(events.iter().all(|e| e["pipeline"] == "cam"), "{events:?}");

    // The CLI carries a token too.
    let out = Command::new(bin())
        .args(["ctl", "--server", &base, "list"])
        .output()
        .expect("ctl");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401: this needs a token"));
    let out = Command::new(bin())
        .args(["ctl", "--server", &base, "--token", ADMIN, "list"])
        .output()
        .expect("ctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("inbox"));
}

/// Sends one signalling message and returns the text of the error it earns.
fn signal(url: &str, message: &str) -> String {
    let (mut sock, _) = tokio_tungstenite::tungstenite::connect(url).expect("ws");
    let _welcome = sock.read().expect("welcome");
    sock.send(message.into()).expect("send");
    loop {
        let text = sock
            .read()
            .expect("reply")
            .into_text()
            .expect("text")
            .to_string();
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        if v["type"] == "error" {
            return v["details"].as_str().unwrap_or_default().to_string();
        }
    }
}

#[test]
fn without_tokens_only_loopback_unless_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = |extra: &[&str]| {
        Command::new(bin())
            .args(["serve", "--listen", "0.0.0.0:0", "--pipelines"])
            .arg(dir.path())
            .arg("--recordings")
            .arg(dir.path().join("recordings"))
            .args(extra)
            .env_remove("MEDIAWEAVE_TOKENS")
            .env_remove("MEDIAWEAVE_TOKENS_FILE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve")
    };
    let refused = serve(&[]).wait_with_output().expect("exit");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without any token"),
        "{stderr}"
    );

    let mut open = serve(&["--insecure"]);
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(open.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert!(
        line.starts_with("mediaweave serving on http://0.0.0.0:"),
        "{line}"
    );
    let _ = open.kill();
    let out = open.wait_with_output().expect("exit");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NO TOKENS CONFIGURED"),
        "a loud warning"
    );

    // A token file that does not parse stops the service with the place of the mistake.
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        "[[token]]\nname = \"x\"\nsha256 = \"abc\"\nscopes = [\"admin\"]\n",
    )
    .expect("write");
    let bad = serve(&["--tokens", file.to_str().expect("utf-8")])
        .wait_with_output()
        .expect("exit");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("token `x`: sha256 must be 64 hex digits"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn pages_of_other_origins_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", WEBRTC_TEST_PATTERN);
    let mut auth = Auth::default();
    auth.allowed_origins = vec!["https://app.example.org".into()];
    let server = TestServer::start_with(dir.path(), auth);
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |origin: &str| {
        let mut r = agent
            .post(&format!("{base}/api/pipelines/cam/restart"))
            .header("Origin", origin)
            .send_empty()
            .expect("POST");
        let status = r.status().as_u16();
        (
            status,
            r.body_mut()
                .read_json::<serde_json::Value>()
                .unwrap_or_default(),
        )
    };
    // A foreign page cannot drive even a service without tokens (no CSRF).
    let (status, body) = post("http://evil.example");
    assert_eq!(status, 403);
    assert_eq!(
        body["error"],
        "requests from pages at http://evil.example are not allowed (see --allow-origin)"
    );
    // The service's own pages and the allowed origin can.
    assert_eq!(post(&base).0, 200);
    assert_eq!(post("https://app.example.org").0, 200);
    // CORS: a preflight from the allowed origin is answered for WHEP.
    let r = agent
        .options(&format!("{base}/whep/cam"))
        .header("Origin", "https://app.example.org")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .call()
        .expect("OPTIONS");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.org")
    );
    // A foreign page's WebSocket is refused at the handshake.
    let ws = base.replace("http://", "ws://");
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{ws}/ws"
        ))
        .expect("request");
    request
        .headers_mut()
        .insert("Origin", "http://evil.example".parse().expect("header"));
    match tokio_tungstenite::tungstenite::connect(request) {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a foreign page's WebSocket: {other:?}"),
    }
}

/// The service's own signalling token never reaches the log: every URL logged has its
/// `token=` redacted (and the token could only register producers anyway).
#[test]
fn no_token_in_the_log() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", WEBRTC_TEST_PATTERN);
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--pipelines"])
        .arg(dir.path())
        .arg("--recordings")
        .arg(dir.path().join("recordings"))
        .env("MEDIAWEAVE_TOKENS", tokens())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let done = line.contains("registered as a producer");
                log.push(line);
                if done {
                    break;
                }
            }
            Err(_) => continue,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push(line);
    }
    let registered = log
        .iter()
        .find(|l| l.contains("registered as a producer"))
        .unwrap_or_else(|| panic!("the producer registers: {log:#?}"));
    assert!(registered.contains("/ws?token=REDACTED"), "{registered}");
    for line in &log {
        let lower = line.to_ascii_lowercase();
        for (at, _) in lower.match_indices("token=") {
            let value = &lower[at + 6..];
            assert!(
                value.is_empty()
                    || value.starts_with("redacted")
                    || !value.starts_with(|c: char| c.is_ascii_hexdigit()),
                "a token in the log: {line}"
            );
        }
    }
}
