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

use super::{Frame, FrameHook, FrameMut, HookEvent};
use crate::events::{Event, EventBus};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a transform's worker waits for the frame to come back before giving up on it
/// (the frame itself has long passed unchanged by then: see the hook's budget).
const REPLY_WAIT: Duration = Duration::from_secs(2);

/// A frame a transform process wrote back: its header fields and pixels.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub width: u32,
    pub height: u32,
    pub format: [u8; 4],
    pub pixels: Vec<u8>,
}

/// Reads a header (whose magic has been seen) and its payload. Payloads are bounded by what
/// a frame can be (8K RGBA), so a corrupt length cannot allocate without limit.
pub fn read_frame(input: &mut impl Read) -> std::io::Result<Reply> {
    let mut h = [0u8; HEADER_LEN];
    input.read_exact(&mut h)?;
    if &h[0..4] != MAGIC {
        return Err(std::io::Error::other("not a frame header (magic MWF1)"));
    }
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let length = u32_at(28) as usize;
    if length > 7680 * 4320 * 4 {
        return Err(std::io::Error::other(format!(
            "frame payload of {length} bytes"
        )));
    }
    let mut pixels = vec![0u8; length];
    input.read_exact(&mut pixels)?;
    Ok(Reply {
        width: u32_at(4),
        height: u32_at(8),
        format: [h[12], h[13], h[14], h[15]],
        pixels,
    })
}

pub const MAGIC: &[u8; 4] = b"MWF1";
pub const HEADER_LEN: usize = 32;

/// The 32-byte header of `frame` with a payload of `length` bytes.
pub fn header(frame: &Frame, length: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&frame.width().to_le_bytes());
    h[8..12].copy_from_slice(&frame.height().to_le_bytes());
    let code: &[u8] = match frame.format() {
        "GRAY8" => b"GRAY",
        other => other.as_bytes(),
    };
    let n = code.len().min(4);
    h[12..12 + n].copy_from_slice(&code[..n]);
    h[16..20].copy_from_slice(&(frame.stride(0) as u32).to_le_bytes());
    let pts = frame.pts().map_or(u64::MAX, |d| d.as_nanos() as u64);
    h[20..28].copy_from_slice(&pts.to_le_bytes());
    h[28..32].copy_from_slice(&(length as u32).to_le_bytes());
    h
}

pub struct ProcessHook {
    command: Vec<String>,
    name: String,
    pipeline: String,
    events: EventBus,
    child: Option<(Child, ChildStdin)>,
    /// Frames the child wrote back (transforms).
    replies: Option<mpsc::Receiver<Reply>>,
    restart_at: Instant,
    failures: u32,
}

impl ProcessHook {
    pub fn new(command: Vec<String>, name: &str, pipeline: &str, events: EventBus) -> ProcessHook {
        ProcessHook {
            command,
            name: name.to_string(),
            pipeline: pipeline.to_string(),
            events,
            child: None,
            replies: None,
            restart_at: Instant::now(),
            failures: 0,
        }
    }

    fn event(&self, kind: &str, fields: serde_json::Value) {
        self.events.publish(Event::new(
            "hook",
            &self.pipeline,
            serde_json::json!({ "hook": self.name, "kind": kind, "fields": fields }),
        ));
    }

    fn spawn(&mut self) {
        let Some((program, args)) = self.command.split_first() else {
            return;
        };
        let spawned = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
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
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            self.failed();
            return;
        };
        // The child's output on a thread of its own: JSON lines (events) and frames.
        let (events, name, pipeline) = (
            self.events.clone(),
            self.name.clone(),
            self.pipeline.clone(),
        );
        let (replies, replies_rx) = mpsc::sync_channel(2);
        let reader = std::thread::Builder::new()
            .name(format!("hook-{}-out", self.name))
            .spawn(move || read_output(stdout, replies, events, name, pipeline));
        if reader.is_err() {
            let _ = child.kill();
            self.failed();
            return;
        }
        tracing::info!(
            "{}: hook {} started: {}",
            self.pipeline,
            self.name,
            self.command.join(" ")
        );
        self.child = Some((child, stdin));
        self.replies = Some(replies_rx);
    }

    /// The child is gone: reap it and restart after 0.5 s, doubling up to 30 s.
    fn failed(&mut self) {
        if let Some((mut child, _)) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.replies = None;
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
}

impl ProcessHook {
    /// Writes `frame` to the child (starting it if it is due); false if there is none.
    fn send(&mut self, frame: &Frame) -> bool {
        if self.child.is_none() {
            if Instant::now() < self.restart_at {
                return false;
            }
            self.spawn();
        }
        let Some((_, stdin)) = self.child.as_mut() else {
            return false;
        };
        let length: usize = (0..frame.n_planes())
            .map(|p| frame.plane_data(p).len())
            .sum();
        // Blocking writes are fine here: this is the hook's own thread, and its branch drops
        // frames (or, for a transform, lets them pass) while the child catches up.
        let mut write = || -> std::io::Result<()> {
            stdin.write_all(&header(frame, length))?;
            for p in 0..frame.n_planes() {
                stdin.write_all(frame.plane_data(p))?;
            }
            stdin.flush()
        };
        if write().is_err() {
            self.failed();
            return false;
        }
        if self.failures > 0 {
            // Running again: the next crash starts the backoff from the beginning.
            self.failures = 0;
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
        let reply = self.replies.as_ref()?.recv_timeout(REPLY_WAIT).ok()?;
        let (planes, expected, w, h, format) = {
            let f = frame.as_frame();
            let planes: Vec<usize> = (0..f.n_planes()).map(|p| f.plane_data(p).len()).collect();
            (
                planes.clone(),
                header(&f, planes.iter().sum()),
                f.width(),
                f.height(),
                f.format(),
            )
        };
        let fits = reply.width == w
            && reply.height == h
            && reply.format[..] == expected[12..16]
            && reply.pixels.len() == planes.iter().sum::<usize>();
        if !fits {
            return Some(HookEvent {
                kind: "error".into(),
                fields: serde_json::json!({
                    "error": format!(
                        "the frame written back is {}x{} {} with {} bytes; expected {w}x{h} {} with {} bytes (same framing, same size and format)",
                        reply.width, reply.height,
                        String::from_utf8_lossy(&reply.format).trim_end_matches('\0'),
                        reply.pixels.len(), format, planes.iter().sum::<usize>()
                    )
                }),
            });
        }
        let mut at = 0;
        for (p, len) in planes.into_iter().enumerate() {
            frame
                .plane_data_mut(p as u32)
                .copy_from_slice(&reply.pixels[at..at + len]);
            at += len;
        }
        None
    }
}

/// The child's stdout: lines of JSON become events; frames (magic `MWF1`) go to `replies`.
fn read_output(
    stdout: ChildStdout,
    replies: mpsc::SyncSender<Reply>,
    events: EventBus,
    name: String,
    pipeline: String,
) {
    let mut out = BufReader::new(stdout);
    loop {
        let starts_frame = match out.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(buf) => buf[0] == MAGIC[0],
        };
        if starts_frame {
            match read_frame(&mut out) {
                Ok(frame) => {
                    let _ = replies.try_send(frame);
                }
                Err(e) => {
                    tracing::warn!("hook {name}: bad frame on stdout: {e}");
                    return;
                }
            }
            continue;
        }
        let mut raw = Vec::new();
        match out.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            tracing::debug!("hook {name}: not JSON: {line}");
            continue;
        };
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("event")
            .to_string();
        events.publish(Event::new(
            "hook",
            &pipeline,
            serde_json::json!({ "hook": name, "kind": kind, "fields": value }),
        ));
    }
}

impl Drop for ProcessHook {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin); // EOF: a well-behaved script exits by itself
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
}
