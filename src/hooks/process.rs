//! External hooks: a child process gets frames on stdin and writes JSON lines (events) on
//! stdout. Restarted with backoff if it dies; the pipeline never notices. A transform
//! (`mode = "transform"`) writes each frame back on stdout in the same framing (same size and
//! format), between its event lines if it has any.
//!
//! Framing (little-endian), one frame after another:
//!
//! | bytes | field  | meaning                                              |
//! |-------|--------|------------------------------------------------------|
//! | 4     | magic  | `MWF1`                                               |
//! | 4     | width  | u32                                                  |
//! | 4     | height | u32                                                  |
//! | 4     | format | ASCII, NUL-padded: `RGB`, `BGR`, `GRAY` (GRAY8), `I420` |
//! | 4     | stride | u32, bytes per row of the first plane                |
//! | 8     | pts    | u64 nanoseconds, `u64::MAX` when unknown             |
//! | 4     | length | u32, payload bytes                                   |
//! | length| pixels | the planes one after another, rows of `stride` bytes |
//!
//! With `sender_time = true` the magic is `MWF2` and 8 bytes follow the header, before the
//! pixels: u64, the sender's time of the frame (ns since the Unix epoch; `u64::MAX` if none).
//! Transforms write their frames back as `MWF1`.

use super::framing::{HEADER_LEN, Head, MAGIC, header};
use super::shm;
use super::{Frame, FrameHook, FrameMut, HookEvent};
use crate::events::{Event, EventBus};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long a transform's worker waits for the frame to come back before giving up on it
/// (the frame itself has long passed unchanged by then: see the hook's budget).
const REPLY_WAIT: Duration = Duration::from_secs(2);

/// A child that stayed up this long starts its next backoff from the beginning.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The largest payload a frame can have (8K, 3 bytes per pixel).
const MAX_PAYLOAD: usize = 7680 * 4320 * 3;

/// A frame a transform process wrote back: its header fields and pixels.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub width: u32,
    pub height: u32,
    pub format: [u8; 4],
    pub pts: u64,
    /// The frame as it arrived, header included: taken whole from the parser, not copied.
    bytes: Vec<u8>,
}

impl Reply {
    pub fn pixels(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// What a child's stdout carries: frames and lines, in any order.
#[derive(Debug, PartialEq)]
pub enum Output {
    Frame(Reply),
    Line(String),
}

/// Splits a child's stdout into frames (magic `MWF1`) and text lines, as bytes arrive.
#[derive(Default)]
pub struct OutputParser {
    pending: Vec<u8>,
}

impl OutputParser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete item, `Ok(None)` if more bytes are needed, or an error for a frame
    /// header no frame can have (the stream cannot be followed after that).
    pub fn next_item(&mut self) -> Result<Option<Output>, String> {
        let p = &self.pending;
        let magic_prefix = p.len() < MAGIC.len() && MAGIC.starts_with(p);
        if p.is_empty() || magic_prefix {
            return Ok(None);
        }
        if p.starts_with(MAGIC) {
            if p.len() < HEADER_LEN {
                return Ok(None);
            }
            let u32_at = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
            let length = u32_at(28) as usize;
            if length > MAX_PAYLOAD {
                return Err(format!("a frame written back claims {length} bytes"));
            }
            if p.len() < HEADER_LEN + length {
                return Ok(None);
            }
            let mut pts = [0u8; 8];
            pts.copy_from_slice(&p[20..28]);
            let (width, height, format) = (u32_at(4), u32_at(8), [p[12], p[13], p[14], p[15]]);
            // The frame leaves the buffer as it is; only what follows it is moved.
            let rest = self.pending.split_off(HEADER_LEN + length);
            let bytes = std::mem::replace(&mut self.pending, rest);
            return Ok(Some(Output::Frame(Reply {
                width,
                height,
                format,
                pts: u64::from_le_bytes(pts),
                bytes,
            })));
        }
        match p.iter().position(|b| *b == b'\n') {
            Some(end) => {
                let line = String::from_utf8_lossy(&p[..end]).trim().to_string();
                self.pending.drain(..=end);
                Ok(Some(Output::Line(line)))
            }
            // A line longer than any event has a reason to be: keep memory bounded.
            None if p.len() > 1 << 20 => Err("a line of more than 1 MiB on stdout".into()),
            None => Ok(None),
        }
    }
}

/// Where a child's frames go: its stdin pipe, or (shared memory) a ring and a socket pair whose
/// other end is its stdin.
enum Input {
    Pipe(ChildStdin),
    Shm { stream: UnixStream, ring: shm::Ring },
}

pub struct ProcessHook {
    command: Vec<String>,
    /// Frames in shared memory (`transport = "shm"`) instead of the pipe.
    shared_memory: bool,
    /// Frames with their sender's time (`MWF2`/`MWS2`).
    sender_time: bool,
    name: String,
    pipeline: String,
    events: EventBus,
    /// Shared with [`ProcessHook::killer`], which can end it while a write blocks.
    child: Arc<Mutex<Option<Child>>>,
    stdin: Option<Input>,
    /// Set by the reader when the child's output cannot be followed (or ended).
    broken: Arc<AtomicBool>,
    /// Frames the child wrote back (transforms).
    replies: Option<mpsc::Receiver<Reply>>,
    started_at: Instant,
    restart_at: Instant,
    failures: u32,
}

impl ProcessHook {
    /// `shared_memory`: frames in shared memory; `sender_time`: with their sender's time.
    pub fn new(
        command: Vec<String>,
        (shared_memory, sender_time): (bool, bool),
        name: &str,
        pipeline: &str,
        events: EventBus,
    ) -> ProcessHook {
        ProcessHook {
            command,
            shared_memory,
            sender_time,
            name: name.to_string(),
            pipeline: pipeline.to_string(),
            events,
            child: Arc::new(Mutex::new(None)),
            stdin: None,
            broken: Arc::new(AtomicBool::new(false)),
            replies: None,
            started_at: Instant::now(),
            restart_at: Instant::now(),
            failures: 0,
        }
    }

    /// Kills the running child from another thread, which unblocks a write stuck on it.
    pub fn killer(&self) -> impl Fn() + Send + Sync + 'static {
        let child = self.child.clone();
        move || {
            if let Some(c) = child.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                let _ = c.kill();
            }
        }
    }

    fn event(&self, kind: &str, fields: serde_json::Value) {
        self.events
            .publish(Event::hook(&self.pipeline, &self.name, kind, fields));
    }

    fn spawn(&mut self) {
        let Some((program, args)) = self.command.split_first() else {
            return;
        };
        // Shared memory: stdin is one end of a socket pair, which carries the memory file's
        // descriptor, the frame messages, and the child's "done" messages back.
        let ring = if self.shared_memory {
            match UnixStream::pair().and_then(|pair| Ok((pair, shm::Ring::new(&self.name)?))) {
                Ok(made) => Some(made),
                Err(e) => {
                    self.event(
                        "error",
                        serde_json::json!({ "error": format!("no shared memory for frames: {e}") }),
                    );
                    self.failed();
                    return;
                }
            }
        } else {
            None
        };
        let (stdin, ring) = match ring {
            Some(((ours, theirs), ring)) => (
                Stdio::from(std::os::fd::OwnedFd::from(theirs)),
                Some((ours, ring)),
            ),
            None => (Stdio::piped(), None),
        };
        let spawned = Command::new(program)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                self.event(
                    "error",
                    serde_json::json!({ "error": format!("cannot start {program}: {e}") }),
                );
                self.failed();
                return;
            }
        };
        let input = match (ring, child.stdin.take()) {
            (Some((stream, ring)), _) => ring.hello(&stream).map(|()| Input::Shm { stream, ring }),
            (None, Some(stdin)) => Ok(Input::Pipe(stdin)),
            (None, None) => Err(std::io::Error::other("no stdin")),
        };
        let (Ok(stdin), Some(stdout)) = (input, child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            self.failed();
            return;
        };
        // The child's output on a thread of its own: JSON lines (events) and frames.
        let broken = Arc::new(AtomicBool::new(false));
        let (events, name, pipeline, flag) = (
            self.events.clone(),
            self.name.clone(),
            self.pipeline.clone(),
            broken.clone(),
        );
        let (replies, replies_rx) = mpsc::sync_channel(2);
        let reader = std::thread::Builder::new()
            .name(format!("hook-{}-out", self.name))
            .spawn(move || read_output(stdout, replies, events, name, pipeline, flag));
        if reader.is_err() {
            let _ = child.kill();
            let _ = child.wait();
            self.failed();
            return;
        }
        tracing::info!(
            "{}: hook {} started: {}",
            self.pipeline,
            self.name,
            self.command.join(" ")
        );
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        self.stdin = Some(stdin);
        self.broken = broken;
        self.replies = Some(replies_rx);
        self.started_at = Instant::now();
    }

    /// The child is gone (or unusable): reap it and restart after 0.5 s, doubling up to 30 s;
    /// a child that had been up for a while starts the backoff from the beginning.
    fn failed(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.replies = None;
        if self.started_at.elapsed() >= STABLE_AFTER {
            self.failures = 0;
        }
        self.failures += 1;
        let delay = Duration::from_millis(500)
            .saturating_mul(2u32.saturating_pow(self.failures - 1))
            .min(Duration::from_secs(30));
        self.restart_at = Instant::now() + delay;
        tracing::warn!(
            "{}: hook {} exited; restarting in {:.1} s",
            self.pipeline,
            self.name,
            delay.as_secs_f64()
        );
        self.event(
            "restart",
            serde_json::json!({ "in_seconds": delay.as_secs_f64(), "failures": self.failures }),
        );
    }

    /// Writes `frame` to the child (starting it if it is due); false if there is none.
    fn send(&mut self, frame: &Frame) -> bool {
        if self.stdin.is_some() && self.broken.load(Ordering::Relaxed) {
            self.failed();
        }
        if self.stdin.is_none() {
            if Instant::now() < self.restart_at {
                return false;
            }
            self.spawn();
        }
        let Some(stdin) = self.stdin.as_mut() else {
            return false;
        };
        let length: usize = (0..frame.n_planes())
            .map(|p| frame.plane_data(p).len())
            .sum();
        let head = Head::new(frame, length, self.sender_time);
        // Blocking writes are fine here: this is the hook's own thread, and its branch drops
        // frames (or, for a transform, lets them pass) while the child catches up. A child that
        // never reads is killed when the hooks stop (see `killer`).
        let mut write = || -> std::io::Result<()> {
            match stdin {
                Input::Pipe(stdin) => {
                    head.write_to(stdin)?;
                    for p in 0..frame.n_planes() {
                        stdin.write_all(frame.plane_data(p))?;
                    }
                    stdin.flush()
                }
                Input::Shm { stream, ring } => {
                    let planes: Vec<&[u8]> =
                        (0..frame.n_planes()).map(|p| frame.plane_data(p)).collect();
                    ring.deliver(stream, &head, &planes)
                }
            }
        };
        if write().is_err() {
            self.failed();
            return false;
        }
        true
    }
}

impl FrameHook for ProcessHook {
    fn on_frame(&mut self, frame: &Frame) -> Option<HookEvent> {
        self.send(frame);
        None
    }

    fn transform(&mut self, frame: &mut FrameMut) -> Option<HookEvent> {
        // A reply that came too late for its frame must not be taken for this one's.
        if let Some(replies) = &self.replies {
            while replies.try_recv().is_ok() {}
        }
        if !self.send(&frame.as_frame()) {
            return None;
        }
        let (planes, expected, w, h, format, pts) = {
            let f = frame.as_frame();
            let planes: Vec<usize> = (0..f.n_planes()).map(|p| f.plane_data(p).len()).collect();
            let header = header(&f, planes.iter().sum());
            let pts = f.pts().map_or(u64::MAX, |d| d.as_nanos() as u64);
            (planes, header, f.width(), f.height(), f.format(), pts)
        };
        let deadline = Instant::now() + REPLY_WAIT;
        let reply = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self.replies.as_ref()?.recv_timeout(left).ok()?;
            // The answer to an earlier frame, come late: not this one's.
            if reply.pts == pts || pts == u64::MAX {
                break reply;
            }
        };
        let total: usize = planes.iter().sum();
        let fits = reply.width == w
            && reply.height == h
            && reply.format[..] == expected[12..16]
            && reply.pixels().len() == total;
        if !fits {
            return Some(HookEvent {
                kind: "error".into(),
                fields: serde_json::json!({
                    "error": format!(
                        "the frame written back is {}x{} {} with {} bytes; expected {w}x{h} {format} with {total} bytes (same framing, same size and format)",
                        reply.width,
                        reply.height,
                        String::from_utf8_lossy(&reply.format).trim_end_matches('\0'),
                        reply.pixels().len(),
                    )
                }),
            });
        }
        let mut at = 0;
        for (p, len) in planes.into_iter().enumerate() {
            frame
                .plane_data_mut(p as u32)
                .copy_from_slice(&reply.pixels()[at..at + len]);
            at += len;
        }
        None
    }
}

/// The child's stdout: lines of JSON become events; frames go to `replies`. Output that
/// cannot be followed marks the child `broken`, and it is restarted.
fn read_output(
    mut stdout: ChildStdout,
    replies: mpsc::SyncSender<Reply>,
    events: EventBus,
    name: String,
    pipeline: String,
    broken: Arc<AtomicBool>,
) {
    let mut parser = OutputParser::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stdout.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        parser.push(&chunk[..n]);
        loop {
            match parser.next_item() {
                Ok(None) => break,
                Ok(Some(Output::Frame(frame))) => {
                    let _ = replies.try_send(frame);
                }
                Ok(Some(Output::Line(line))) => publish_line(&events, &name, &pipeline, &line),
                Err(e) => {
                    tracing::warn!("hook {name}: {e}; restarting it");
                    broken.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
    broken.store(true, Ordering::Relaxed);
}

fn publish_line(events: &EventBus, name: &str, pipeline: &str, line: &str) {
    if line.is_empty() {
        return;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        tracing::debug!("hook {name}: not JSON: {line}");
        return;
    };
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("event")
        .to_string();
    events.publish(Event::hook(pipeline, name, &kind, value));
}

impl Drop for ProcessHook {
    fn drop(&mut self) {
        self.stdin = None; // EOF: a well-behaved script exits by itself
        let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(pts: u64, pixels: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&2u32.to_le_bytes());
        h[8..12].copy_from_slice(&1u32.to_le_bytes());
        h[12..16].copy_from_slice(b"GRAY");
        h[16..20].copy_from_slice(&2u32.to_le_bytes());
        h[20..28].copy_from_slice(&pts.to_le_bytes());
        h[28..32].copy_from_slice(&(pixels.len() as u32).to_le_bytes());
        h.extend_from_slice(pixels);
        h
    }

    #[test]
    fn frames_and_lines_in_any_order_and_any_pieces() {
        let mut stream = b"{\"kind\":\"a\"}\nMade it\n".to_vec();
        stream.extend(frame_bytes(7, &[1, 2]));
        stream.extend(b"{\"kind\":\"b\"}\n");
        // Byte by byte: every split point must work.
        let mut parser = OutputParser::default();
        let mut out = Vec::new();
        for b in &stream {
            parser.push(&[*b]);
            while let Some(item) = parser.next_item().expect("parse") {
                out.push(item);
            }
        }
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(out[0], Output::Line("{\"kind\":\"a\"}".into()));
        assert_eq!(out[1], Output::Line("Made it".into()));
        match &out[2] {
            Output::Frame(f) => {
                assert_eq!((f.width, f.pts, f.pixels()), (2, 7, &[1u8, 2][..]))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(out[3], Output::Line("{\"kind\":\"b\"}".into()));
    }

    #[test]
    fn an_impossible_frame_length_is_an_error() {
        let mut bytes = frame_bytes(0, &[]);
        bytes[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut parser = OutputParser::default();
        parser.push(&bytes);
        assert!(parser.next_item().is_err());
    }
}
