//! The serde types of `[[hook]]` tables: what each hook kind takes.

use super::Kinded;
use super::units::duration;
use serde::Deserialize;
use serde_spanned::Spanned;
use std::time::Duration;
use toml::de::ValueDeserializer;

fn default_hook_format() -> Spanned<String> {
    Spanned::new(0..0, "RGB".to_string())
}

fn default_snapshot_every() -> Duration {
    Duration::from_secs(5)
}

pub(crate) fn default_snapshot_path() -> String {
    "snapshots/{name}.jpg".to_string()
}

fn default_budget() -> Duration {
    Duration::from_millis(50)
}

/// Whether a hook only looks at frames or changes the video the outputs carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookMode {
    #[default]
    Observe,
    Transform,
}

/// How frames reach an external hook: in the stream itself (the default), or in shared
/// memory with only a small message per frame in the stream (`hooks::shm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookTransport {
    #[default]
    Stream,
    Shm,
}

/// A Rust hook registered by name (`mediaweave::hooks::register`), on decoded frames.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RustHook {
    pub name: Spanned<String>,
    /// RGB (default), BGR, GRAY8 or I420.
    #[serde(default = "default_hook_format")]
    pub format: Spanned<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    /// Passed to the hook's factory.
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// "observe" (default) or "transform".
    pub mode: Option<Spanned<HookMode>>,
    /// Transforms: the longest a frame waits for the hook before it goes on unchanged.
    #[serde(default = "default_budget", deserialize_with = "duration")]
    pub budget: Duration,
}

/// Built-in: mean luma and frame interval, reported every `every` frames.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsHook {
    pub every: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
}

/// Built-in: an event when consecutive frames start or stop differing by more than
/// `threshold` (mean absolute luma difference, 0–255).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotionHook {
    pub threshold: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
}

/// Built-in: a JPEG every `every`, written to `path` and served at
/// `/api/pipelines/{name}/snapshot.jpg`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotHook {
    #[serde(default = "default_snapshot_every", deserialize_with = "duration")]
    pub every: Duration,
    /// Where each JPEG is written (replacing the last); `{name}` is the pipeline, `{time}`
    /// the UTC time (a file per snapshot). Default "snapshots/{name}.jpg".
    #[serde(default = "default_snapshot_path")]
    pub path: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// An external program: frames on its stdin (see the framing in the README), JSON lines
/// (events) from its stdout; restarted with backoff when it dies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessHook {
    /// Program and arguments, e.g. ["python3", "scripts/examples/detect.py"].
    pub command: Spanned<Vec<String>>,
    #[serde(default = "default_hook_format")]
    pub format: Spanned<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    /// "observe" (default) or "transform".
    pub mode: Option<Spanned<HookMode>>,
    /// Transforms: the longest a frame waits for the process before it goes on unchanged.
    #[serde(default = "default_budget", deserialize_with = "duration")]
    pub budget: Duration,
    /// "stream" (default) or "shm".
    pub transport: Option<Spanned<HookTransport>>,
    /// Frames carry the time their sender stamped them (a jpeg-tcp source's): the framing's
    /// `MWF2`/`MWS2` headers, 8 bytes longer. Off: `MWF1`/`MWS1`, as readers written for them
    /// expect.
    #[serde(default)]
    pub sender_time: bool,
}

/// Frames in the framing of `process` hooks, served to any number of subscribers on a TCP
/// port ("127.0.0.1:7000") or a Unix socket ("unix:/run/frames.sock").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketHook {
    pub listen: Spanned<String>,
    #[serde(default = "default_hook_format")]
    pub format: Spanned<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    /// "stream" (default) or "shm" (Unix sockets only: the memory travels with the
    /// connection).
    pub transport: Option<Spanned<HookTransport>>,
    /// As on `process` hooks.
    #[serde(default)]
    pub sender_time: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Hook {
    Motion(MotionHook),
    Process(ProcessHook),
    Rust(RustHook),
    Socket(SocketHook),
    Stats(StatsHook),
    Snapshot(SnapshotHook),
}

impl Hook {
    /// External hooks whose frames go through shared memory (`transport = "shm"`).
    pub fn shared_memory(&self) -> bool {
        let transport = match self {
            Hook::Process(p) => p.transport.as_ref(),
            Hook::Socket(s) => s.transport.as_ref(),
            _ => None,
        };
        transport.is_some_and(|t| *t.get_ref() == HookTransport::Shm)
    }

    /// Transforms (and their `mode` key), for the hooks that can be one.
    pub fn transform(&self) -> Option<&Spanned<HookMode>> {
        let mode = match self {
            Hook::Rust(r) => r.mode.as_ref(),
            Hook::Process(p) => p.mode.as_ref(),
            _ => None,
        }?;
        (*mode.get_ref() == HookMode::Transform).then_some(mode)
    }
}

impl Kinded for Hook {
    const KINDS: &'static [&'static str] =
        &["rust", "process", "socket", "stats", "motion", "snapshot"];
    fn deserialize_kind(kind: &str, de: ValueDeserializer<'_>) -> Result<Self, toml::de::Error> {
        Ok(match kind {
            "rust" => Hook::Rust(RustHook::deserialize(de)?),
            "process" => Hook::Process(ProcessHook::deserialize(de)?),
            "socket" => Hook::Socket(SocketHook::deserialize(de)?),
            "stats" => Hook::Stats(StatsHook::deserialize(de)?),
            "motion" => Hook::Motion(MotionHook::deserialize(de)?),
            _ => Hook::Snapshot(SnapshotHook::deserialize(de)?),
        })
    }
}

/// Formats a hook may ask for.
pub const HOOK_FORMATS: &[&str] = &["RGB", "BGR", "GRAY8", "I420"];
