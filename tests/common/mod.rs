//! Helpers shared by the integration tests: a server on a free port, real clients (ffprobe,
//! a GStreamer decoder, HTTP), and polling with deadlines.
#![allow(dead_code)]

pub mod gst_viewers;
pub mod slow_link;
pub mod watcher;

use mediaweave::server::{Server, ServerConfig};
use mediaweave::supervisor::SupervisorConfig;
use mediaweave::webrtc::output::WebRtcConfig;
use mediaweave::webrtc::types::IceConfig;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mediaweave")
}

/// A TCP port on loopback that was free a moment ago, given out once per process, and outside
/// the kernel's ephemeral range (32768-60999): a port the kernel picks itself (a listener on
/// port 0, a client's own end) never takes it before the pipeline binds it, and no two calls
/// give the same one (two outputs on one port: the second cannot serve).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Processes start at different places, should two ever run side by side.
    let start = (std::process::id() % 600) * 20;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free port left on loopback");
        let port = (FIRST + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Writes `pipelines/NAME.toml` under `dir` and returns its path.
pub fn write_pipeline(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write description");
    path
}

/// A server running in-process on its own runtime, on a free port.
pub struct TestServer {
    runtime: Option<tokio::runtime::Runtime>,
    pub server: Option<Server>,
    pub base: String,
}

impl TestServer {
    pub fn start(dir: &Path) -> TestServer {
        TestServer::start_with(dir, mediaweave::auth::Auth::default())
    }

    /// A server that requires the tokens of `auth`.
    pub fn start_with(dir: &Path, auth: mediaweave::auth::Auth) -> TestServer {
        TestServer::start_custom(dir, |c| c.auth = auth)
    }

    /// A server whose configuration `change` adjusts first.
    pub fn start_custom(dir: &Path, change: impl FnOnce(&mut ServerConfig)) -> TestServer {
        // MEDIAWEAVE_TEST_LOG=info (an env filter) shows the service's log in a test's output.
        if let Ok(filter) = std::env::var("MEDIAWEAVE_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            pipelines_dir: dir.to_path_buf(),
            supervisor: SupervisorConfig {
                eos_timeout: Duration::from_secs(3),
                ..SupervisorConfig::default()
            },
            recordings_dir: dir.join("recordings"),
            auth: mediaweave::auth::Auth::default(),
            insecure: false,
            tls: None,
            // Free, so tests with rtsp outputs can run side by side.
            rtsp_listen: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
            webrtc: WebRtcConfig {
                // Loopback only: tests never send to another address.
                ice: IceConfig {
                    addresses: vec!["127.0.0.1".into()],
                    ..IceConfig::default()
                },
                ..WebRtcConfig::default()
            },
        };
        let mut config = config;
        change(&mut config);
        let server = rt.block_on(Server::start(config)).expect("server starts");
        let base = format!("http://{}", server.addr);
        TestServer {
            runtime: Some(rt),
            server: Some(server),
            base,
        }
    }

    pub fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the server")
    }

    pub fn shutdown(self) {
        drop(self);
    }

    /// `Server::shutdown` alone: the runtime keeps running (its tasks are not cancelled), so
    /// what is left afterwards is what the service itself left.
    pub fn stop_service(&mut self) {
        if let (Some(server), Some(rt)) = (self.server.take(), self.runtime.as_ref()) {
            rt.block_on(server.shutdown());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let (Some(server), Some(rt)) = (self.server.take(), self.runtime.as_ref()) {
            rt.block_on(server.shutdown());
        }
        // The service stops waiting for a stuck GStreamer call after its bounds; the runtime
        // must not wait for it forever either (a plain drop waits for every blocking task).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(10));
        }
    }
}

/// An HTTP response: status and parsed JSON body.
pub struct Reply {
    pub status: u16,
    pub json: serde_json::Value,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn get(url: &str) -> Reply {
    let mut r = agent().get(url).call().expect("GET");
    Reply {
        status: r.status().as_u16(),
        json: r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    }
}

pub fn post(url: &str) -> Reply {
    let mut r = agent().post(url).send_empty().expect("POST");
    Reply {
        status: r.status().as_u16(),
        json: r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    }
}

/// `PUT` with a text body (a description file, or JSON).
pub fn put(url: &str, body: &str) -> Reply {
    let mut r = agent().put(url).send(body).expect("PUT");
    Reply {
        status: r.status().as_u16(),
        json: r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    }
}

/// `POST` of an SDP offer (WHEP, WHIP): the status and the JSON error body, if any.
pub fn post_sdp(url: &str, sdp: &str) -> Reply {
    let mut r = agent()
        .post(url)
        .header("Content-Type", "application/sdp")
        .send(sdp)
        .expect("POST");
    Reply {
        status: r.status().as_u16(),
        json: r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    }
}

pub fn delete(url: &str) -> Reply {
    let mut r = agent().delete(url).call().expect("DELETE");
    Reply {
        status: r.status().as_u16(),
        json: r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    }
}

/// `GET` returning the body as text.
pub fn get_text(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().expect("GET");
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the API reports `state` for pipeline `name`, returning its status.
pub fn wait_state(base: &str, name: &str, state: &str) -> serde_json::Value {
    wait_for(
        &format!("{name} to be {state}"),
        Duration::from_secs(30),
        || {
            let r = get(&format!("{base}/api/pipelines/{name}"));
            (r.json["state"] == state).then_some(r.json)
        },
    )
}

/// Decodes H.264 video from an MPEG-TS TCP stream with a real GStreamer client
/// (tcpclientsrc ! tsdemux ! h264parse ! avdec_h264 ! appsink) until `frames` frames arrived.
/// Returns the (width, height) of each decoded frame.
pub fn gst_decode_tcp(port: u16, frames: usize) -> Result<Vec<(i32, i32)>, String> {
    Ok(gst_decode_tcp_rgb(port, frames)?
        .into_iter()
        .map(|(w, h, _)| (w, h))
        .collect())
}

/// Decodes `frames` frames of a TCP output (MPEG-TS, H.264) to RGB, as a client would: the
/// size and the centre pixel of each.
pub fn gst_decode_tcp_rgb(port: u16, frames: usize) -> Result<Vec<(i32, i32, [u8; 3])>, String> {
    gst::init().map_err(|e| e.to_string())?;
    use gst::prelude::*;
    let launch = format!(
        "tcpclientsrc host=127.0.0.1 port={port} ! tsdemux ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&launch)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("client cannot start: {e}"))?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < frames && Instant::now() < deadline {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(1)) {
            let info = sample
                .caps()
                .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
                .ok_or("decoded frame without video caps")?;
            let (w, h) = (info.width() as usize, info.height() as usize);
            let stride = info.stride()[0] as usize;
            let map = sample
                .buffer()
                .ok_or("sample without buffer")?
                .map_readable()
                .map_err(|e| e.to_string())?;
            let at = (h / 2) * stride + (w / 2) * 3;
            let px = map
                .as_slice()
                .get(at..at + 3)
                .map(|p| [p[0], p[1], p[2]])
                .unwrap_or_default();
            seen.push((w as i32, h as i32, px));
        } else if sink.is_eos() {
            break;
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    Ok(seen)
}

pub fn run_limited(secs: u32, program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(secs.to_string())
        .arg(program)
        .args(args)
        .output()
        .expect("run command")
}

/// What ffprobe reads of a stream or file: per stream (codec_type, codec, width, height,
/// frames decoded), plus the container duration when known.
#[derive(Debug, Default)]
pub struct Probe {
    pub streams: Vec<ProbeStream>,
    pub duration: Option<f64>,
}

#[derive(Debug)]
pub struct ProbeStream {
    pub kind: String,
    pub codec: String,
    pub width: i64,
    pub height: i64,
    pub frames: i64,
    /// e.g. "yuv420p" (empty for audio).
    pub pix_fmt: String,
}

impl Probe {
    pub fn video(&self) -> Option<&ProbeStream> {
        self.streams.iter().find(|s| s.kind == "video")
    }
    pub fn audio(&self) -> Option<&ProbeStream> {
        self.streams.iter().find(|s| s.kind == "audio")
    }
}

/// ffprobe with `-count_frames`: decodes every frame of a file, or the first `seconds` of a
/// live URL.
pub fn ffprobe(input: &str, seconds: Option<u32>) -> Result<Probe, String> {
    let interval = seconds.map(|s| format!("%+{s}"));
    let mut args = vec!["-v", "error", "-count_frames"];
    if let Some(i) = &interval {
        args.extend(["-read_intervals", i.as_str()]);
    }
    args.extend([
        "-show_entries",
        "stream=codec_type,codec_name,width,height,nb_read_frames,pix_fmt:format=duration",
        "-of",
        "json",
        input,
    ]);
    let out = run_limited(40, "ffprobe", &args);
    if !out.status.success() {
        return Err(format!(
            "ffprobe {input} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("ffprobe output: {e}"))?;
    let num = |v: &serde_json::Value| -> i64 {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    let streams = json["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| ProbeStream {
            kind: s["codec_type"].as_str().unwrap_or_default().to_string(),
            codec: s["codec_name"].as_str().unwrap_or_default().to_string(),
            pix_fmt: s["pix_fmt"].as_str().unwrap_or_default().to_string(),
            width: num(&s["width"]),
            height: num(&s["height"]),
            frames: num(&s["nb_read_frames"]),
        })
        .collect();
    let duration = json["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok());
    Ok(Probe { streams, duration })
}

/// The JSON lines a child prints on `stdout`, as they come (read on a thread of their own,
/// which ends with the child's output or when nobody listens any more).
pub fn json_lines(
    stdout: std::process::ChildStdout,
) -> std::sync::mpsc::Receiver<serde_json::Value> {
    use std::io::BufRead;
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    lines
}

/// The venv Python that scripts/setup creates (stock aiortc, websockets).
pub fn venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Runs the aiortc viewer (tests/peers/aiortc_viewer.py) and returns what it decoded:
/// {"frames", "width", "height", "audio_frames"}.
pub fn aiortc_view(args: &[&str]) -> serde_json::Value {
    aiortc_view_with_token(args, None)
}

/// The aiortc viewer, sending `token` as `Authorization: Bearer` on its HTTP requests.
pub fn aiortc_view_with_token(args: &[&str], token: Option<&str>) -> serde_json::Value {
    let env: Vec<(&str, &str)> = token.map(|t| ("MEDIAWEAVE_TOKEN", t)).into_iter().collect();
    aiortc_view_env(args, &env)
}

/// The aiortc viewer with extra environment variables (a token, `SSL_CERT_FILE`, ...).
pub fn aiortc_view_env(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiortc_viewer.py");
    let mut cmd = Command::new("timeout");
    cmd.arg("90").arg(venv_python()).arg(script).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the aiortc viewer");
    last_json_line(&out, "aiortc viewer")
}

/// A 1280x720 test pattern with audio and a webrtc output, as pipelines/test-pattern.toml.
pub const WEBRTC_TEST_PATTERN: &str = r#"
[source]
kind = "test"
width = 1280
height = 720
framerate = 30

[encode]
bitrate = 1500

[[output]]
kind = "webrtc"
"#;

/// The last JSON object a helper program printed, or a panic with everything it said.
fn last_json_line(out: &Output, what: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "{what} printed no result ({}): {stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what} printed bad JSON ({e}): {line}"))
}

/// Runs tests/browser/view.mjs (headless Chromium against the page) and returns its JSON.
pub fn chromium(base: &str, pipeline: &str, mode: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/view.mjs");
    let out = run_limited(
        120,
        "node",
        &[script.to_str().expect("utf-8 path"), base, pipeline, mode],
    );
    last_json_line(&out, "browser driver")
}

/// Starts the aiortc WHIP publisher (tests/peers/aiortc_publisher.py) without waiting.
pub fn aiortc_publish(args: &[&str]) -> std::process::Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiortc_publisher.py");
    Command::new(venv_python())
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the aiortc publisher")
}

/// Waits for a child and returns (success, stdout, stderr).
pub fn finish(child: std::process::Child) -> (bool, String, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// An ingest pipeline: a WebRTC publisher recorded as Matroska.
pub const INBOX: &str =
    "[source]\nkind = \"webrtc\"\n\n[[output]]\nkind = \"record\"\nsegment = \"10m\"\n";

/// Runs `mediaweave serve` on a free port (ICE on loopback) and returns it with its base URL,
/// read from the line it prints when it listens.
pub fn spawn_serve(pipelines: &Path, recordings: &Path) -> (std::process::Child, String) {
    spawn_serve_with(pipelines, recordings, &[])
}

/// [`spawn_serve`] with more options (e.g. `--tls-cert`); the base URL may be `https://`.
pub fn spawn_serve_with(
    pipelines: &Path,
    recordings: &Path,
    extra: &[&std::ffi::OsStr],
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ice-address",
            "127.0.0.1",
        ])
        .arg("--pipelines")
        .arg(pipelines)
        .arg("--recordings")
        .arg(recordings)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        base.starts_with("http://") || base.starts_with("https://"),
        "first line: {line}"
    );
    (child, base)
}

/// Collects events from /api/events until `done` says enough (or 30 s pass).
pub fn collect_events(
    base: &str,
    done: impl FnMut(&[serde_json::Value]) -> bool + Send + 'static,
) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    collect_events_at(
        format!("{}/api/events", base.replace("http://", "ws://")),
        done,
    )
}

/// Like [`collect_events`], from a full `ws://` URL (e.g. with `?token=`).
pub fn collect_events_at(
    url: String,
    done: impl FnMut(&[serde_json::Value]) -> bool + Send + 'static,
) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    collect_events_within(url, Duration::from_secs(30), done)
}

/// Like [`collect_events_at`], for up to `timeout` instead of 30 s.
pub fn collect_events_within(
    url: String,
    timeout: Duration,
    mut done: impl FnMut(&[serde_json::Value]) -> bool + Send + 'static,
) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    std::thread::spawn(move || {
        let (mut ws, _) = tokio_tungstenite::tungstenite::connect(&url).expect("connect");
        if let tokio_tungstenite::tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        }
        let mut seen = Vec::new();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !done(&seen) {
            if let Ok(msg) = ws.read()
                && let Ok(text) = msg.into_text()
                && let Ok(v) = serde_json::from_str(&text)
            {
                seen.push(v);
            }
        }
        seen
    })
}

pub fn hook_events<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["type"] == "hook" && e["fields"]["kind"] == kind)
        .collect()
}

/// Waits (up to `timeout`) until pipeline `name` has no WebRTC viewer sessions left.
pub fn wait_no_viewers(base: &str, name: &str, what: &str, timeout: Duration) {
    wait_for(what, timeout, || {
        let v = get(&format!("{base}/api/pipelines/{name}")).json;
        v["viewers"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            .then_some(())
    });
}

/// A live MPEG-TS server (gst-launch-1.0: a bouncing ball, 320x240 at 30 fps, H.264 with a
/// keyframe each second) on 127.0.0.1:`port`, for `tcp` sources.
pub fn ts_server(port: u16) -> std::process::Child {
    Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "is-live=true", "pattern=ball", "!"])
        .args(["video/x-raw,width=320,height=240,framerate=30/1", "!"])
        .args([
            "x264enc",
            "tune=zerolatency",
            "speed-preset=ultrafast",
            "key-int-max=30",
            "!",
        ])
        .args(["h264parse", "config-interval=-1", "!", "mpegtsmux", "!"])
        .args(["tcpserversink", "host=127.0.0.1", &format!("port={port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gst-launch-1.0")
}

/// The viewer's last sampled colour is `want`, within what H.264 and colour conversion change.
pub fn assert_colour(seen: &serde_json::Value, want: [i64; 3]) {
    let rgb: Vec<i64> = seen["rgb"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(rgb.len(), 3, "no colour: {seen}");
    for (got, want) in rgb.iter().zip(want) {
        assert!(
            (got - want).abs() <= 24,
            "colour {rgb:?}, want {want:?}: {seen}"
        );
    }
}

/// ffprobe's streams (codec, size, frames read) of the first `seconds` of `url`, with `options`
/// before the input (`-rtsp_transport tcp`); its stderr is in `error`.
pub fn probe_frames(url: &str, options: &[&str], seconds: u32) -> serde_json::Value {
    let interval = format!("%+{seconds}");
    let mut args = vec!["-v", "error"];
    args.extend_from_slice(options);
    args.extend_from_slice(&[
        "-count_frames",
        "-read_intervals",
        &interval,
        "-show_entries",
        "stream=codec_type,codec_name,width,height,nb_read_frames",
        "-of",
        "json",
        url,
    ]);
    let out = run_limited(seconds + 37, "ffprobe", &args);
    let mut seen: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| serde_json::json!({}));
    seen["error"] = String::from_utf8_lossy(&out.stderr).to_string().into();
    seen
}

/// The first stream of `kind` ("video", "audio") in what [`probe_frames`] saw.
pub fn probed<'a>(probe: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    probe["streams"]
        .as_array()?
        .iter()
        .find(|s| s["codec_type"] == kind)
}

/// The frames [`probe_frames`] read of its first stream of `kind`.
pub fn probed_frames(probe: &serde_json::Value, kind: &str) -> i64 {
    probed(probe, kind)
        .and_then(|s| s["nb_read_frames"].as_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
