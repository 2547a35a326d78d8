//! A headless Chromium page watching a pipeline (`tests/browser/view.mjs samples`), in a
//! network namespace of the test's own or here, its stats read a line a second.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A Chromium page watching a pipeline (in a namespace, or here); its stats arrive a line a
/// second.
pub struct Watcher {
    who: &'static str,
    child: Child,
    samples: mpsc::Receiver<serde_json::Value>,
    last: Option<serde_json::Value>,
}

impl Watcher {
    pub fn start(who: &'static str, ns: Option<&str>, base: &str, name: &str) -> Watcher {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/view.mjs");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "node"]);
                c
            }
            None => Command::new("node"),
        };
        let mut child = cmd
            .arg(&script)
            .args([base, name, "samples"])
            .env("WATCH_SECONDS", "150")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let samples = super::json_lines(child.stdout.take().expect("stdout"));
        Watcher {
            who,
            child,
            samples,
            last: None,
        }
    }

    /// The first sample that satisfies `pred` within `timeout`.
    pub fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.samples.recv_timeout(left) {
                Ok(s) => {
                    self.last = Some(s.clone());
                    if pred(&s) {
                        return s;
                    }
                }
                Err(_) => panic!(
                    "{}: {what} did not happen within {timeout:?}; last sample: {:?}",
                    self.who, self.last
                ),
            }
        }
    }

    /// The latest sample: the newest of those waiting, or the next one.
    pub fn now(&mut self) -> serde_json::Value {
        let mut newest = None;
        while let Ok(s) = self.samples.try_recv() {
            newest = Some(s);
        }
        match newest {
            Some(s) => {
                self.last = Some(s.clone());
                s
            }
            None => self.until("a sample", Duration::from_secs(10), |_| true),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// Frames decoded per second and the share of the time frozen between two samples.
pub fn smoothness(a: &serde_json::Value, b: &serde_json::Value) -> (f64, f64) {
    let seconds = (num(b, "at") - num(a, "at")) / 1000.0;
    let fps = (num(b, "framesDecoded") - num(a, "framesDecoded")) / seconds;
    let frozen = (num(b, "totalFreezesDuration") - num(a, "totalFreezesDuration")) / seconds;
    (fps, frozen)
}
