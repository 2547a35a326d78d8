//! Socket.IO chat at `/socket.io/`: python-socketio and socket.io-client (Node), as the
//! tutorials' chat clients connect, exchange `chat_message` with each other and with a Chromium
//! page's data-channel chat of the same pipeline; a room's participants (aiortc, over their
//! data channels) and its Socket.IO clients hear each other; length and rate limits hold;
//! connections need a token that may view the target, and a page of the same origin.

mod common;
use common::*;
use mediaweave::auth::{Auth, hash, hex};
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A chat peer program driven over stdin, whose JSON lines are read as they come.
struct Peer {
    what: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<serde_json::Value>,
    /// Everything it printed so far.
    seen: Vec<serde_json::Value>,
}

impl Peer {
    fn start(what: &'static str, mut cmd: Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let lines = json_lines(child.stdout.take().expect("stdout"));
        Peer {
            what,
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// python-socketio, connected to `url` (the base with the chat's query).
    fn python(url: &str, token: Option<&str>) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/socketio_chat.py");
        let mut cmd = Command::new(venv_python());
        cmd.arg(script).arg(url);
        if let Some(token) = token {
            cmd.args(["--token", token]);
        }
        Peer::start("python-socketio", cmd)
    }

    /// The Chromium page watching `name` and a socket.io-client on `?room=name`.
    fn page_and_node(base: &str, name: &str) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/chat_peers.mjs");
        let mut cmd = Command::new("node");
        cmd.arg(script).args([base, name]);
        Peer::start("page and socket.io-client", cmd)
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap_or_else(|e| panic!("{}: {e}", self.what));
        let _ = self.stdin.flush();
    }

    /// Waits for a printed line that `pred` accepts.
    fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = Instant::now() + timeout;
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "{}: {what} did not happen within {timeout:?}; it printed {:?}",
            self.what, self.seen
        );
    }

    /// Waits until `who` heard `text`.
    fn heard(&mut self, who: &str, text: &str) -> serde_json::Value {
        let what = format!("{who} hears {text:?}");
        self.until(&what, Duration::from_secs(15), |v| {
            v["heard"] == text && v.get("who").is_none_or(|w| w == who)
        })
    }

    /// What it printed within `wait` from now, and before.
    fn settle(&mut self, wait: Duration) -> &[serde_json::Value] {
        let end = Instant::now() + wait;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => break,
            }
        }
        &self.seen
    }

    fn ready(mut self) -> Peer {
        let ready = self.until("ready", Duration::from_secs(60), |v| {
            v["ready"] == true || v.get("refused").is_some() || v.get("error").is_some()
        });
        assert_eq!(ready["ready"], true, "{}: {ready}", self.what);
        self
    }

    /// Ends it: quit, then wait (killed if it hangs).
    fn quit(mut self) {
        self.send("quit");
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn socketio_clients_chat_with_each_other_and_the_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", WEBRTC_TEST_PATTERN);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");

    let mut python = Peer::python(&format!("{base}?room=cam"), None).ready();
    let mut browser = Peer::page_and_node(&base, "cam").ready();

    // Each one's line reaches the two others, whichever way it came in.
    python.send("say hello from python");
    browser.heard("node", "hello from python");
    let on_page = browser.heard("page", "hello from python");
    assert!(
        on_page["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("sio-")),
        "the page names a Socket.IO speaker: {on_page}"
    );
    browser.send("node hello from node");
    python.heard("python", "hello from node");
    browser.heard("page", "hello from node");
    browser.send("page hello from the page");
    python.heard("python", "hello from the page");
    browser.heard("node", "hello from the page");
    // Nobody hears their own line back.
    let echoes = |seen: &[serde_json::Value], who: &str, text: &str| {
        seen.iter()
            .filter(|v| v["heard"] == text && v.get("who").is_none_or(|w| w == who))
            .count()
    };
    let seen = python.settle(Duration::from_secs(1)).to_vec();
    assert_eq!(echoes(&seen, "python", "hello from python"), 0, "{seen:?}");
    let seen = browser.settle(Duration::ZERO).to_vec();
    assert_eq!(echoes(&seen, "node", "hello from node"), 0, "{seen:?}");

    // Length: a line is cut to 500 characters.
    let long = "x".repeat(600);
    python.send(&format!("say {long}"));
    browser.heard("node", &long[..500]);
    // Rate: of 25 lines at once, at most the burst allowance (10 per 10 s; 2 are spent, and
    // at most one refill can fall inside the burst) gets through.
    python.send("burst 25");
    browser.heard("node", "burst 1");
    let seen = browser.settle(Duration::from_secs(2)).to_vec();
    let through = seen
        .iter()
        .filter(|v| {
            v["who"] == "node" && v["heard"].as_str().is_some_and(|t| t.starts_with("burst "))
        })
        .count();
    assert!(
        (1..=18).contains(&through),
        "{through} of 25 got through: {seen:?}"
    );

    // A client of another target hears none of this (python has spent its allowance: the
    // Node client speaks).
    let mut elsewhere = Peer::python(&format!("{base}?room=elsewhere"), None).ready();
    browser.send("node only for cam");
    python.heard("python", "only for cam");
    let seen = elsewhere.settle(Duration::from_secs(1)).to_vec();
    assert!(seen.iter().all(|v| v.get("heard").is_none()), "{seen:?}");

    python.quit();
    browser.quit();
    elsewhere.quit();
    // The service still serves.
    wait_state(&base, "cam", "playing");
}

const ROOM: &str = "[source]\nkind = \"room\"\ncodec = \"h264\"\nmax_participants = 2\n\n[[output]]\nkind = \"webrtc\"\n";

#[test]
fn a_room_and_its_socketio_clients_hear_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The default target (no `?room=`): the lobby.
    write_pipeline(dir.path(), "lobby", ROOM);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "lobby", "playing");
    let events = collect_events(&base, |seen| {
        seen.iter()
            .any(|e| e["type"] == "chat" && e["fields"]["text"] == "hello from python")
    });

    let mut python = Peer::python(&base, None).ready();
    // An aiortc participant says a line on its data channel once it is in, and listens.
    let ana = aiortc_publish(&[
        "whip",
        &format!("{base}/whip/lobby?name=ana"),
        "--h264",
        "--seconds",
        "12",
        "--width",
        "320",
        "--height",
        "240",
        "--chat",
        "--say-when",
        "1",
        "--say",
        "hello from ana",
    ]);
    python.heard("python", "hello from ana");
    python.send("say hello from python");
    let (ok, out, stderr) = finish(ana);
    assert!(ok, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("{}")).expect("the participant's report");
    let heard = report["chat"].as_array().cloned().unwrap_or_default();
    assert!(
        heard.iter().any(|l| l["text"] == "hello from python"
            && l["from"].as_str().is_some_and(|f| f.contains("sio-"))),
        "ana heard {heard:?}"
    );
    // The room's chat events (which recordings caption) have it too.
    let events = events.join().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "chat" && e["fields"]["text"] == "hello from python"),
        "{events:?}"
    );
    python.quit();
}

#[test]
fn socketio_needs_a_token_that_may_view_the_target_and_the_same_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", WEBRTC_TEST_PATTERN);
    let tokens = format!(
        "[[token]]\nname = \"viewer\"\nsha256 = \"{}\"\nscopes = [\"view:cam\"]\n",
        hex(&hash("viewer-secret"))
    );
    let auth = Auth::load(None, Some(&tokens)).expect("tokens");
    let server = TestServer::start_with(dir.path(), auth);
    let base = server.base.clone();

    // No token, a wrong one, or one for another target: refused.
    for (query, token) in [
        ("?room=cam", None),
        ("?room=cam", Some("wrong")),
        ("?room=other", Some("viewer-secret")),
        ("", Some("viewer-secret")),
    ] {
        let mut refused = Peer::python(&format!("{base}{query}"), token);
        let said = refused.until("a refusal", Duration::from_secs(20), |v| {
            v.get("refused").is_some() || v["ready"] == true
        });
        assert!(said.get("refused").is_some(), "{query} {token:?}: {said}");
    }
    // The handshake answers why, as every route does.
    let (status, body) = get_text(&format!(
        "{base}/socket.io/?EIO=4&transport=polling&room=other"
    ));
    assert_eq!(status, 401, "{body}");
    // The token as a header, or in the query as pages send it: in.
    let mut a = Peer::python(&format!("{base}?room=cam"), Some("viewer-secret")).ready();
    let mut b = Peer::python(&format!("{base}?room=cam&token=viewer-secret"), None).ready();
    a.send("say with a token");
    b.heard("python", "with a token");
    a.quit();
    b.quit();

    // A page of another origin may not open it.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let reply = agent
        .get(format!(
            "{base}/socket.io/?EIO=4&transport=polling&room=cam&token=viewer-secret"
        ))
        .header("Origin", "http://evil.example")
        .call()
        .expect("request");
    assert_eq!(reply.status().as_u16(), 403);
}
