//! What the API reports of a named pipeline: its state, its last error, the choices its
//! assembly made.

use crate::description::RestartPolicy;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The lifecycle state of a named pipeline, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Playing,
    Starting,
    Stopped,
    Failed,
    Invalid,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Playing => "playing",
            State::Starting => "starting",
            State::Stopped => "stopped",
            State::Failed => "failed",
            State::Invalid => "invalid",
        }
    }
}

/// A machine-dependent choice made when the pipeline was planned (e.g. the encoder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Choice {
    pub role: String,
    pub element: String,
}

/// An error as it happened: message (element path first), debug string and time (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LastError {
    pub message: String,
    pub detail: Option<String>,
    pub at: String,
}

/// What the API and CLI show about one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Status {
    pub name: String,
    pub state: State,
    /// The last error in plain words (element path and message), or null.
    pub error: Option<String>,
    /// GStreamer's debug string for that error, when it gave one.
    pub error_detail: Option<String>,
    /// The most recent error, kept after a restart brings the pipeline back.
    pub last_error: Option<LastError>,
    /// Automatic restarts since the service started.
    pub restarts: u32,
    /// Runs ended by the buffer-flow watchdog (the source stopped delivering) since the
    /// service started.
    #[serde(default)]
    pub stalls: u32,
    /// "raw" or "structured"; null when the file is invalid.
    pub form: Option<String>,
    pub source: Option<String>,
    pub outputs: Vec<String>,
    pub chosen: Vec<Choice>,
    pub description: Option<String>,
    pub autostart: bool,
    pub restart_policy: Option<RestartPolicy>,
    pub file: PathBuf,
    /// The launch line that runs (the assembled one for structured files).
    pub launch: Option<String>,
    /// When the current state began (RFC 3339).
    pub since: String,
    /// Seconds until the next automatic restart, while one is scheduled.
    pub retry_in: Option<f64>,
    /// Why the file's latest edit was not applied (the pipeline runs its previous content).
    #[serde(default)]
    pub reload_error: Option<String>,
}

impl Status {
    pub(super) fn new(name: &str, file: &Path) -> Status {
        Status {
            name: name.to_string(),
            state: State::Stopped,
            error: None,
            error_detail: None,
            last_error: None,
            restarts: 0,
            stalls: 0,
            form: None,
            source: None,
            outputs: Vec::new(),
            chosen: Vec::new(),
            description: None,
            autostart: false,
            restart_policy: None,
            file: file.to_path_buf(),
            launch: None,
            since: now_rfc3339(),
            retry_in: None,
            reload_error: None,
        }
    }
}

pub(super) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
