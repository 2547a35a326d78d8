//! External hooks: a child process gets frames on stdin and writes JSON lines (events) on
//! stdout. Restarted with backoff if it dies; the pipeline never notices.
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

use super::{Frame, FrameHook, HookEvent};
use crate::events::{Event, EventBus};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

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
        // The child's events: one JSON object per line, on a thread of their own.
        let (events, name, pipeline) = (
            self.events.clone(),
            self.name.clone(),
            self.pipeline.clone(),
        );
        let reader = std::thread::Builder::new()
            .name(format!("hook-{}-out", self.name))
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
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
            });
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
    }

    /// The child is gone: reap it and restart after 0.5 s, doubling up to 30 s.
    fn failed(&mut self) {
        if let Some((mut child, _)) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
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
}

impl FrameHook for ProcessHook {
    fn on_frame(&mut self, frame: &Frame) -> Option<HookEvent> {
        if self.child.is_none() {
            if Instant::now() < self.restart_at {
                return None;
            }
            self.spawn();
        }
        let (_, stdin) = self.child.as_mut()?;
        let length: usize = (0..frame.n_planes())
            .map(|p| frame.plane_data(p).len())
            .sum();
        // Blocking writes are fine here: this is the hook's own thread, and its branch drops
        // frames while the child catches up.
        let mut write = || -> std::io::Result<()> {
            stdin.write_all(&header(frame, length))?;
            for p in 0..frame.n_planes() {
                stdin.write_all(frame.plane_data(p))?;
            }
            stdin.flush()
        };
        if write().is_err() {
            self.failed();
        } else if self.failures > 0 {
            // Running again: the next crash starts the backoff from the beginning.
            self.failures = 0;
        }
        None
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
