//! Named pipelines: lifecycle, bus → state, restart with backoff.
//!
//! Each pipeline is owned by one tokio task ([`Runner`]). The task is the only code that
//! touches its `gst::Pipeline`; everything else talks to it through a command channel and reads
//! its [`Status`] from a `watch` channel. GStreamer bus messages reach the task through
//! `gst::Bus::stream()` (a sync handler that only sends into a channel). Blocking GStreamer calls
//! (building, state changes) run on the blocking pool.

use crate::assemble::{self, Plan};
use crate::description::{self, Description, Diagnostics, RestartPolicy};
use crate::events::{Event, EventBus};
use crate::hooks::{HookHost, HookTable, RunningHooks};
use crate::meter::{Meter, MeterCounts};
use crate::pipeline::{describe_error, element_path, teardown};
use crate::record::Recordings;
use crate::stall::{Stall, Watchdog};
use futures_util::{FutureExt, StreamExt};
use gst::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
    fn new(name: &str, file: &Path) -> Status {
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

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("no pipeline named `{0}`")]
    NotFound(String),
    #[error("pipeline `{0}` is invalid: {1}")]
    Invalid(String, String),
    #[error("pipeline `{0}` is shutting down")]
    Gone(String),
    #[error("{0}")]
    Io(String),
}

/// A description file read and validated (or not), ready to become an entry.
struct Loaded {
    name: String,
    path: PathBuf,
    content: Option<toml::Table>,
    result: Result<Description, Diagnostics>,
}

impl Loaded {
    /// Reads and validates a file; the name is its stem even when it is invalid.
    fn read(path: &Path) -> Loaded {
        match std::fs::read_to_string(path) {
            Ok(text) => Loaded::parse(path, &text),
            Err(_) => Loaded {
                name: stem(path),
                path: path.to_path_buf(),
                content: None,
                result: description::load(path),
            },
        }
    }

    fn parse(path: &Path, text: &str) -> Loaded {
        Loaded::of(path, text, description::parse(path, text))
    }

    fn of(path: &Path, text: &str, result: Result<Description, Diagnostics>) -> Loaded {
        Loaded {
            name: stem(path),
            path: path.to_path_buf(),
            content: toml::from_str(text).ok(),
            result,
        }
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| path.display().to_string())
}

/// What [`Supervisor::apply`] did.
enum Applied {
    Unchanged,
    Rejected,
    Replaced,
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename, so
/// neither a reader nor a crash ever sees half a file.
fn save_atomically(dir: &Path, path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut tmp = tempfile::Builder::new()
        .prefix(".put-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| e.to_string())?;
    tmp.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    tmp.as_file().sync_all().map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.error.to_string())?;
    Ok(())
}

/// Timing knobs; the defaults suit a service, tests shorten them.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// How long a stop waits for end-of-stream to drain (so files are finalized).
    pub eos_timeout: Duration,
    /// How long a start may take to reach PLAYING before it counts as failed.
    pub start_timeout: Duration,
    /// Playing this long resets the backoff to its initial delay.
    pub stable_after: Duration,
    /// What descriptions sent over the API (`PUT`) may contain.
    pub api_policy: description::ApiPolicy,
    /// A pause inside every build, zero in service: lets tests slow a build on purpose to show
    /// that a start which times out leaves nothing behind.
    pub build_delay: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            eos_timeout: Duration::from_secs(5),
            start_timeout: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            api_policy: description::ApiPolicy::default(),
            build_delay: Duration::ZERO,
        }
    }
}

enum Command {
    Start(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    Shutdown,
}

struct Entry {
    /// Shared with the runner, which publishes every change; the supervisor only adds the
    /// outcome of a rejected reload.
    status: Arc<watch::Sender<Status>>,
    /// None for invalid files: there is nothing to run.
    commands: Option<mpsc::Sender<Command>>,
    task: Option<JoinHandle<()>>,
    /// The file's content as TOML data (comments and layout left out), to tell whether an edit
    /// changed anything; None when the TOML itself did not parse.
    content: Option<toml::Table>,
    /// The running pipeline, for inspection and live properties; the runner sets and clears it.
    live: Live,
    /// Encoded video bytes and frames, across restarts of this entry.
    meter: Arc<Meter>,
}

impl Entry {
    /// Tells the runner to stop without waiting for it.
    fn shutdown_now(&self) {
        if let Some(tx) = &self.commands
            && let Err(mpsc::error::TrySendError::Full(cmd)) = tx.try_send(Command::Shutdown)
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }
}

/// A handle on the running `gst::Pipeline`, if any. GStreamer objects are thread-safe: readers
/// query it, while its lifecycle (state changes, teardown) stays with the runner.
pub type Live = Arc<std::sync::Mutex<Option<gst::Pipeline>>>;

/// Why a `PUT` of a description was refused.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error("{0}")]
    BadName(String),
    #[error("this service has no pipelines directory to save descriptions in")]
    NoDirectory,
    #[error("cannot save {0}: {1}")]
    Io(PathBuf, String),
    #[error("the service is shutting down")]
    ShuttingDown,
}

/// What a `PUT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Replaced,
    /// Same content as what runs: nothing restarted.
    Unchanged,
}

/// All named pipelines of a service.
pub struct Supervisor {
    config: SupervisorConfig,
    readers: Arc<dyn crate::hub::Readers>,
    recordings: Arc<Recordings>,
    events: EventBus,
    hooks: Arc<HookTable>,
    entries: RwLock<BTreeMap<String, Entry>>,
    /// The pipelines directory (set by [`Supervisor::load_dir`]): where `PUT` saves files.
    dir: std::sync::Mutex<Option<PathBuf>>,
    /// Serializes changes of the pipeline set (API writes, hot reload), so that a `PUT` and the
    /// watcher seeing its file never replace the same pipeline twice.
    changes: tokio::sync::Mutex<()>,
    /// Runner tasks of deleted pipelines that had not ended within the stop bound; a new
    /// pipeline of the same name waits for them (they may hold its camera or port).
    lingering: std::sync::Mutex<std::collections::HashMap<String, Vec<JoinHandle<()>>>>,
    /// Set by [`Supervisor::shutdown`]: no more changes.
    closed: std::sync::atomic::AtomicBool,
}

impl Supervisor {
    /// `readers` receives each run of a pipeline (its streams, see [`crate::hub`]); record outputs write
    /// into `recordings`.
    pub fn new(
        config: SupervisorConfig,
        readers: Arc<dyn crate::hub::Readers>,
        recordings: Arc<Recordings>,
        events: EventBus,
    ) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            config,
            readers,
            recordings,
            events,
            hooks: Arc::new(HookTable::default()),
            entries: RwLock::new(BTreeMap::new()),
            dir: std::sync::Mutex::new(None),
            changes: tokio::sync::Mutex::new(()),
            lingering: std::sync::Mutex::new(Default::default()),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The pipelines directory, once [`Supervisor::load_dir`] has read it.
    pub fn dir(&self) -> Option<PathBuf> {
        self.dir.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Loads every `*.toml` in `dir`. Invalid files are listed as invalid; they never keep the
    /// others from running.
    pub fn load_dir(&self, dir: &Path) -> std::io::Result<()> {
        *self.dir.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir.to_path_buf());
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| description::is_description(p))
            .collect();
        files.sort();
        for file in files {
            self.add_file(&file);
        }
        Ok(())
    }

    /// Validates `path` and adds it; it starts at once if it is valid and has `autostart`.
    pub fn add_file(&self, path: &Path) -> Status {
        let previous = self.stop_runner(&stem(path));
        self.install(Loaded::read(path), false, previous)
    }

    /// Adds a validated description and spawns the task that owns it.
    pub fn add(&self, desc: Description) -> Status {
        let content = toml::from_str(&desc.text).ok();
        let previous = self.stop_runner(&desc.name);
        let loaded = Loaded {
            name: desc.name.clone(),
            path: desc.path.clone(),
            content,
            result: Ok(desc),
        };
        self.install(loaded, false, previous)
    }

    /// Puts a new entry in place of the old one. A valid description's runner first waits for
    /// `previous` (the tasks of the runners it replaces, told to stop), so two pipelines of one
    /// name never run at once; then it starts if it has `autostart` or `run` is set. The
    /// counters that must not go backwards (restarts, the meter) carry over.
    fn install(&self, loaded: Loaded, run: bool, previous: Vec<JoinHandle<()>>) -> Status {
        let name = loaded.name.clone();
        let (meter, restarts) = self
            .read()
            .get(&name)
            .map(|e| (e.meter.clone(), e.status.borrow().restarts))
            .unwrap_or_default();
        let (status, entry) = match loaded.result {
            Ok(desc) => {
                let mut status = Status::new(&desc.name, &desc.path);
                status.form = Some(desc.form_name().to_string());
                status.description = desc.options.description.clone();
                status.autostart = desc.options.autostart;
                status.restart_policy = Some(desc.options.restart);
                status.restarts = restarts;
                let status_tx = Arc::new(watch::channel(status.clone()).0);
                let (cmd_tx, cmd_rx) = mpsc::channel(16);
                let live: Live = Arc::default();
                let runner = Runner {
                    desc,
                    config: self.config.clone(),
                    readers: self.readers.clone(),
                    recordings: self.recordings.clone(),
                    events: self.events.clone(),
                    hooks: self.hooks.clone(),
                    status: status_tx.clone(),
                    live: live.clone(),
                    meter: meter.clone(),
                    failures: 0,
                };
                let task = tokio::spawn(async move {
                    for task in previous {
                        let _ = task.await;
                    }
                    runner.run(cmd_rx, run).await
                });
                let entry = Entry {
                    status: status_tx,
                    commands: Some(cmd_tx),
                    task: Some(task),
                    content: loaded.content,
                    live,
                    meter,
                };
                (status, entry)
            }
            Err(diags) => {
                tracing::error!("{diags}");
                let mut status = Status::new(&name, &loaded.path);
                status.state = State::Invalid;
                status.error = Some(diags.to_string());
                status.restarts = restarts;
                if !previous.is_empty() {
                    // Nothing to run, but whatever still stops keeps its name until it has.
                    self.lingering
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(name.clone())
                        .or_default()
                        .extend(previous);
                }
                let entry = Entry {
                    status: Arc::new(watch::channel(status.clone()).0),
                    commands: None,
                    task: None,
                    content: loaded.content,
                    live: Arc::default(),
                    meter,
                };
                (status, entry)
            }
        };
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, entry);
        status
    }

    /// Creates or replaces pipeline `name` from a description's text: validated like a file,
    /// then saved atomically as `{dir}/{name}.toml` (so it survives a restart) and started.
    /// An invalid text changes nothing: the running pipeline keeps running.
    pub async fn put(&self, name: &str, text: String) -> Result<(Put, Status), PutError> {
        description::validate_name(name).map_err(PutError::BadName)?;
        let dir = self.dir().ok_or(PutError::NoDirectory)?;
        let path = dir.join(format!("{name}.toml"));
        let _changing = self.changes.lock().await;
        if self.is_closed() {
            return Err(PutError::ShuttingDown);
        }
        let (p, t, policy) = (path.clone(), text.clone(), self.config.api_policy.clone());
        // Validated like a file, then held to the rules for descriptions from the API.
        let loaded = tokio::task::spawn_blocking(move || {
            description::parse_for_api(&p, &t, &policy).map(|desc| Loaded::of(&p, &t, Ok(desc)))
        })
        .await
        .map_err(|e| PutError::Io(path.clone(), e.to_string()))?
        .map_err(PutError::Invalid)?;
        let p = path.clone();
        tokio::task::spawn_blocking(move || save_atomically(&dir, &p, &text))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|e| PutError::Io(path.clone(), e))?;
        let existed = self.read().contains_key(name);
        let outcome = self.apply(loaded);
        let put = match (existed, outcome) {
            (false, _) => Put::Created,
            (true, Applied::Unchanged) => Put::Unchanged,
            (true, _) => Put::Replaced,
        };
        let status = self
            .get(name)
            .ok_or_else(|| PutError::Io(path, "the pipeline vanished".into()))?;
        Ok((put, status))
    }

    /// Deletes pipeline `name`'s description file, then stops the pipeline (files finalized,
    /// waited for within the stop bound) and forgets it.
    pub async fn delete(&self, name: &str) -> Result<(), SupervisorError> {
        let _changing = self.changes.lock().await;
        if self.is_closed() {
            return Err(SupervisorError::Gone(name.to_string()));
        }
        let file = self
            .get(name)
            .map(|s| s.file)
            .ok_or_else(|| SupervisorError::NotFound(name.to_string()))?;
        // The file first: if it cannot go, the pipeline stays as it is.
        if let Err(e) = tokio::fs::remove_file(&file).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(SupervisorError::Io(format!(
                "cannot delete {}: {e}",
                file.display()
            )));
        }
        self.remove(name, &file).await;
        Ok(())
    }

    /// The hot-reload path: the file at `path` was created, changed or deleted on disk. A
    /// pipeline restarts only if what it describes changed; an invalid edit leaves a running
    /// pipeline alone (its status and an event say why).
    pub async fn file_changed(&self, path: &Path) {
        let _changing = self.changes.lock().await;
        if self.is_closed() {
            return;
        }
        let name = stem(path);
        if !path.exists() {
            if self.read().contains_key(&name) {
                tracing::info!("{name}: {} was deleted; stopping it", path.display());
                self.remove(&name, path).await;
            }
            return;
        }
        let p = path.to_path_buf();
        if let Ok(loaded) = tokio::task::spawn_blocking(move || Loaded::read(&p)).await {
            self.apply(loaded);
        }
    }

    /// Stops and forgets `name`, waiting (bounded) for it to stop; a runner that takes longer
    /// is remembered so a successor under the same name waits for it.
    async fn remove(&self, name: &str, file: &Path) {
        let old = self.stop_runner(name);
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let bound = self.config.eos_timeout + Duration::from_secs(5);
        let mut late = Vec::new();
        for mut task in old {
            if tokio::time::timeout(bound, &mut task).await.is_err() {
                tracing::warn!("{name}: did not stop within {bound:?}; a successor will wait");
                late.push(task);
            }
        }
        if !late.is_empty() {
            self.lingering
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(name.to_string())
                .or_default()
                .extend(late);
        }
        self.events.publish(Event::new(
            "removed",
            name,
            serde_json::json!({ "file": file }),
        ));
    }

    /// Makes the entry match `loaded`, restarting only when the content changed. Callers hold
    /// `changes`. Never waits: a replacement waits for its predecessor's task by itself.
    fn apply(&self, loaded: Loaded) -> Applied {
        let name = loaded.name.clone();
        let current = self.read().get(&name).map(|e| {
            let s = e.status.borrow();
            (
                e.content.clone(),
                e.commands.is_some(),
                // Running, or failed with a restart scheduled: the replacement runs too.
                matches!(s.state, State::Playing | State::Starting) || s.retry_in.is_some(),
            )
        });
        match (&current, &loaded.result) {
            (Some((content, true, _)), Ok(_))
                if content.is_some() && *content == loaded.content =>
            {
                // Same pipeline (perhaps only comments changed); clear a rejected edit's note.
                if let Some(e) = self.read().get(&name) {
                    e.status
                        .send_if_modified(|s| s.reload_error.take().is_some());
                }
                Applied::Unchanged
            }
            (Some((_, true, _)), Err(diags)) => {
                // A running (or runnable) pipeline keeps going on its last good description.
                let error = diags.to_string();
                tracing::error!("{name}: edit rejected, keeping the running pipeline: {error}");
                if let Some(e) = self.read().get(&name) {
                    e.status
                        .send_modify(|s| s.reload_error = Some(error.clone()));
                }
                self.events.publish(Event::new(
                    "reload",
                    &name,
                    serde_json::json!({ "ok": false, "error": error }),
                ));
                Applied::Rejected
            }
            _ => {
                let was_running = current.as_ref().is_some_and(|(_, _, running)| *running);
                if current.is_some() {
                    tracing::info!("{name}: description changed; replacing the pipeline");
                }
                let fields = match &loaded.result {
                    Ok(_) => serde_json::json!({ "ok": true, "replaced": current.is_some() }),
                    Err(d) => serde_json::json!({
                        "ok": false, "replaced": current.is_some(), "error": d.to_string(),
                    }),
                };
                let previous = self.stop_runner(&name);
                self.install(loaded, was_running, previous);
                self.events.publish(Event::new("reload", &name, fields));
                Applied::Replaced
            }
        }
    }

    /// Tells the runner of `name` to stop and returns its task (and those of earlier runners
    /// under this name that have not ended yet), without waiting.
    fn stop_runner(&self, name: &str) -> Vec<JoinHandle<()>> {
        let mut tasks = self
            .lingering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .unwrap_or_default();
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(name) {
            e.shutdown_now();
            tasks.extend(e.task.take());
        }
        tasks.retain(|t| !t.is_finished());
        tasks
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Encoded video bytes and frames of `name` since the service started.
    pub fn meter(&self, name: &str) -> Option<MeterCounts> {
        self.read().get(name).map(|e| e.meter.counts())
    }

    /// The running pipeline of `name`, for inspection (elements, properties, graph).
    pub fn live(&self, name: &str) -> Result<Option<gst::Pipeline>, SupervisorError> {
        let map = self.read();
        let entry = map
            .get(name)
            .ok_or_else(|| SupervisorError::NotFound(name.to_string()))?;
        Ok(entry.live.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        // A panic elsewhere while holding the lock must not take the API down with it.
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Pipeline state changes and hook events, for `/api/events`.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The counters of a running pipeline's hooks.
    pub fn hook_stats(&self, name: &str) -> Vec<crate::hooks::HookStats> {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|v| v.iter().map(|h| h.stats()).collect())
            .unwrap_or_default()
    }

    /// The latest JPEG of the pipeline's snapshot hook.
    pub fn snapshot(&self, name: &str) -> Option<Vec<u8>> {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)?
            .iter()
            .find_map(|h| {
                h.latest_jpeg
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            })
    }

    pub fn list(&self) -> Vec<Status> {
        self.read()
            .values()
            .map(|e| e.status.borrow().clone())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<Status> {
        self.read().get(name).map(|e| e.status.borrow().clone())
    }

    /// Follows a pipeline's status changes.
    pub fn subscribe(&self, name: &str) -> Option<watch::Receiver<Status>> {
        self.read().get(name).map(|e| e.status.subscribe())
    }

    fn sender(&self, name: &str) -> Result<mpsc::Sender<Command>, SupervisorError> {
        let map = self.read();
        let entry = map
            .get(name)
            .ok_or_else(|| SupervisorError::NotFound(name.to_string()))?;
        entry.commands.clone().ok_or_else(|| {
            let error = entry.status.borrow().error.clone().unwrap_or_default();
            SupervisorError::Invalid(name.to_string(), error)
        })
    }

    async fn command(
        &self,
        name: &str,
        make: fn(oneshot::Sender<()>) -> Command,
    ) -> Result<Status, SupervisorError> {
        let tx = self.sender(name)?;
        let (done_tx, done_rx) = oneshot::channel();
        tx.send(make(done_tx))
            .await
            .map_err(|_| SupervisorError::Gone(name.to_string()))?;
        let _ = done_rx.await;
        self.get(name)
            .ok_or_else(|| SupervisorError::NotFound(name.to_string()))
    }

    /// Starts a stopped or failed pipeline; returns once the start has been attempted.
    pub async fn start(&self, name: &str) -> Result<Status, SupervisorError> {
        self.command(name, Command::Start).await
    }

    /// Stops a pipeline cleanly (end-of-stream first, so files are finalized).
    pub async fn stop(&self, name: &str) -> Result<Status, SupervisorError> {
        self.command(name, Command::Stop).await
    }

    pub async fn restart(&self, name: &str) -> Result<Status, SupervisorError> {
        self.command(name, Command::Restart).await
    }

    /// Stops every pipeline cleanly, in parallel, and waits for them (bounded).
    pub async fn shutdown(&self) {
        // No PUT, DELETE or reload may start anything from here on.
        let _changing = self.changes.lock().await;
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let lingering: Vec<JoinHandle<()>> = self
            .lingering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .flat_map(|(_, v)| v)
            .collect();
        let tasks: Vec<(mpsc::Sender<Command>, JoinHandle<()>)> = {
            let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
            map.values_mut()
                .filter_map(|e| Some((e.commands.clone()?, e.task.take()?)))
                .collect()
        };
        for (tx, _) in &tasks {
            let _ = tx.send(Command::Shutdown).await;
        }
        // One deadline for all: pipelines drain in parallel, so N stuck ones cost one bound.
        let bound = self.config.eos_timeout + Duration::from_secs(5);
        let deadline = Instant::now() + bound;
        let all = tasks.into_iter().map(|(_, t)| t).chain(lingering);
        for task in all {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("a pipeline did not stop within {bound:?}");
            }
        }
    }
}

/// How a run of the pipeline ended.
enum Ended {
    Error {
        message: String,
        detail: Option<String>,
        /// The element that posted it, when GStreamer said.
        element: Option<String>,
    },
    Eos,
    Stopped(oneshot::Sender<()>),
    RestartRequested(oneshot::Sender<()>),
    Shutdown,
}

/// The task that owns one pipeline.
struct Runner {
    desc: Description,
    config: SupervisorConfig,
    readers: Arc<dyn crate::hub::Readers>,
    recordings: Arc<Recordings>,
    events: EventBus,
    hooks: Arc<HookTable>,
    status: Arc<watch::Sender<Status>>,
    live: Live,
    meter: Arc<Meter>,
    /// Consecutive failures, for the backoff.
    failures: u32,
}

/// What a start produced: a running pipeline, or an ingest pipeline's plan (its pipelines are
/// built per publisher).
enum Started {
    Pipeline(Active),
    Ingest(Plan),
}

/// What the blocking build hands back: a pipeline not yet seen by anyone, or an ingest plan.
enum Built {
    Pipeline(Plan, gst::Pipeline),
    Ingest(Plan),
}

/// Stops hook threads off the async threads.
async fn stop_hooks(hooks: RunningHooks) {
    let _ = tokio::task::spawn_blocking(move || hooks.stop()).await;
}

/// A start that failed after the build: its hooks stop, its pipeline goes.
async fn discard(hooks: Option<RunningHooks>, pipeline: gst::Pipeline) {
    if let Some(hooks) = hooks {
        stop_hooks(hooks).await;
    }
    teardown(pipeline).await;
}

/// A pipeline that is running, with its bus.
struct Active {
    pipeline: gst::Pipeline,
    bus: gst::bus::BusStream,
    plan: Plan,
    /// Hook threads; stopped (joined) after the pipeline.
    hooks: Option<RunningHooks>,
}

impl Runner {
    fn name(&self) -> &str {
        &self.desc.name
    }

    fn hook_host(&self) -> HookHost {
        HookHost {
            events: self.events.clone(),
            table: self.hooks.clone(),
        }
    }

    fn set_state(&self, state: State, error: Option<(String, Option<String>)>) {
        self.set_state_retrying(state, error, None);
    }

    /// Publishes a state change in one update, with the delay of a scheduled restart if any, so
    /// a watcher never sees "failed" without knowing a restart is coming.
    fn set_state_retrying(
        &self,
        state: State,
        error: Option<(String, Option<String>)>,
        retry_in: Option<Duration>,
    ) {
        let name = self.name().to_string();
        self.events.publish(Event::new(
            "state",
            &name,
            serde_json::json!({
                "state": state.as_str(),
                "error": error.as_ref().map(|(e, _)| e.clone()),
                "retry_in": retry_in.map(|d| d.as_secs_f64()),
            }),
        ));
        match (&state, &error) {
            (_, Some((e, _))) => tracing::error!("{name}: {} — {e}", state.as_str()),
            _ => tracing::info!("{name}: {}", state.as_str()),
        }
        self.status.send_modify(|s| {
            s.state = state;
            s.since = now_rfc3339();
            s.retry_in = retry_in.map(|d| d.as_secs_f64());
            if let Some((message, detail)) = error {
                s.last_error = Some(LastError {
                    message: message.clone(),
                    detail: detail.clone(),
                    at: s.since.clone(),
                });
                s.error = Some(message);
                s.error_detail = detail;
            } else if state == State::Playing {
                s.error = None;
                s.error_detail = None;
            }
        });
    }

    /// `run`: start now even without `autostart` (it replaces a pipeline that was running).
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, run: bool) {
        let mut start_now = self.desc.options.autostart || run;
        let mut retry_at: Option<Instant> = None;
        let mut pending_ack: Option<oneshot::Sender<()>> = None;
        loop {
            if start_now {
                start_now = false;
                retry_at = None;
                let result = self.start().await;
                if let Some(ack) = pending_ack.take() {
                    let _ = ack.send(());
                }
                let ended = match result {
                    Ok(Started::Pipeline(active)) => self.watch(active, &mut commands).await,
                    Ok(Started::Ingest(plan)) => self.watch_ingest(plan, &mut commands).await,
                    Err((message, detail)) => {
                        self.release_viewers(self.desc.options.restart != RestartPolicy::Never);
                        Ended::Error {
                            message,
                            detail,
                            element: None,
                        }
                    }
                };
                match ended {
                    Ended::Shutdown => {
                        self.set_state(State::Stopped, None);
                        return;
                    }
                    Ended::Stopped(ack) => {
                        self.set_state(State::Stopped, None);
                        let _ = ack.send(());
                    }
                    Ended::RestartRequested(ack) => {
                        start_now = true;
                        pending_ack = Some(ack);
                    }
                    Ended::Eos => {
                        if self.desc.options.restart == RestartPolicy::Always {
                            retry_at = Some(self.schedule_retry(None));
                        } else {
                            self.set_state(State::Stopped, None);
                        }
                    }
                    Ended::Error {
                        message,
                        detail,
                        element,
                    } => {
                        self.events.publish(Event::new(
                            "error",
                            self.name(),
                            serde_json::json!({ "element": element, "message": message, "detail": detail }),
                        ));
                        self.failures += 1;
                        let error = Some((message, detail));
                        if self.desc.options.restart == RestartPolicy::Never {
                            self.set_state(State::Failed, error);
                        } else {
                            retry_at = Some(self.schedule_retry(error));
                        }
                    }
                }
                continue;
            }
            // Idle (stopped/failed) or waiting to retry.
            let sleep = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => {
                        self.readers.detach(self.name());
                        return;
                    }
                    Some(Command::Start(ack)) | Some(Command::Restart(ack)) => {
                        self.failures = 0;
                        start_now = true;
                        pending_ack = Some(ack);
                    }
                    Some(Command::Stop(ack)) => {
                        self.readers.detach(self.name());
                        if retry_at.take().is_some() {
                            self.set_state(State::Stopped, None);
                        }
                        let _ = ack.send(());
                    }
                },
                _ = sleep => {
                    self.status.send_modify(|s| s.restarts += 1);
                    self.events.publish(Event::new(
                        "restart",
                        self.name(),
                        serde_json::json!({ "attempt": self.failures, "restarts": self.status.borrow().restarts }),
                    ));
                    tracing::info!("{}: restarting (attempt {})", self.name(), self.failures);
                    start_now = true;
                }
            }
        }
    }

    /// The run ended: its WebRTC viewers' sessions end, or, when it will be restarted (after
    /// an error, or after end-of-stream with `restart = "always"`), wait to follow the next run (the source failing mid-stream costs viewers a
    /// pause, not their connection).
    fn release_viewers(&self, restarts: bool) {
        if restarts {
            self.readers.suspend(self.name());
        } else {
            self.readers.detach(self.name());
        }
    }

    /// Marks the pipeline failed (or stopped after EOS) and returns when to restart it.
    fn schedule_retry(&self, error: Option<(String, Option<String>)>) -> Instant {
        let delay = self.desc.options.backoff.delay(self.failures.max(1));
        let state = if error.is_some() {
            State::Failed
        } else {
            State::Stopped
        };
        self.set_state_retrying(state, error, Some(delay));
        tracing::info!(
            "{}: restarting in {:.1} s",
            self.name(),
            delay.as_secs_f64()
        );
        Instant::now() + delay
    }

    /// Plans, builds and sets the pipeline to PLAYING, within `start_timeout` in all.
    ///
    /// Only the planning and the build run where this task cannot follow them (the blocking
    /// pool), and they touch nothing outside the pipeline they make: everything that makes a
    /// run visible to others (the meter, hooks, the webrtc output) is attached here, by this
    /// task, after the build came back in time. A build that comes back too late is torn down
    /// unseen, so it can never attach anything after this task has moved on.
    async fn start(&mut self) -> Result<Started, (String, Option<String>)> {
        self.set_state(State::Starting, None);
        let limit = self.config.start_timeout;
        let deadline = Instant::now() + limit;
        let timed_out = || {
            (
                format!(
                    "did not start within {} s (a source that cannot connect?)",
                    limit.as_secs()
                ),
                None,
            )
        };
        let (desc, recordings) = (self.desc.clone(), self.recordings.clone());
        let build_delay = self.config.build_delay;
        let mut building = tokio::task::spawn_blocking(move || -> Result<Built, String> {
            let plan = assemble::plan(&desc).map_err(|d| d.to_string())?;
            if plan.ingest.is_some() {
                // Built per publisher, not now.
                return Ok(Built::Ingest(plan));
            }
            std::thread::sleep(build_delay);
            let pipeline = plan.build(&recordings)?;
            Ok(Built::Pipeline(plan, pipeline))
        });
        let built = match tokio::time::timeout_at(deadline, &mut building).await {
            Ok(joined) => joined
                .map_err(|e| (format!("pipeline build panicked: {e}"), None))?
                .map_err(|e| (e, None))?,
            Err(_) => {
                tokio::spawn(async move {
                    if let Ok(Ok(Built::Pipeline(_, pipeline))) = building.await {
                        teardown(pipeline).await;
                    }
                });
                return Err(timed_out());
            }
        };
        let (plan, pipeline) = match built {
            Built::Ingest(plan) => {
                self.announce(&plan);
                return Ok(Started::Ingest(plan));
            }
            Built::Pipeline(plan, pipeline) => (plan, pipeline),
        };

        self.meter.attach(&pipeline);
        let host = self.hook_host();
        let hooks = match RunningHooks::start(self.name(), &pipeline, &plan.hooks, &host) {
            Ok(hooks) => hooks,
            Err(e) => {
                discard(None, pipeline).await;
                return Err((e, None));
            }
        };
        if let Err(e) = self
            .readers
            .attach(self.name(), &pipeline, &plan.webrtc, &host.events)
        {
            discard(Some(hooks), pipeline).await;
            return Err((e, None));
        }
        let Some(bus) = pipeline.bus() else {
            discard(Some(hooks), pipeline).await;
            return Err(("the pipeline has no bus".to_string(), None));
        };
        // Subscribe before starting so no message is missed.
        let mut stream = bus.stream();
        // Some state changes block for minutes (a TCP connect to an unreachable host): give up
        // waiting at the deadline, and tear the pipeline down whenever the call returns. (The
        // caller detaches the webrtc output attached above when a start fails.)
        let p = pipeline.clone();
        let mut playing = tokio::task::spawn_blocking(move || p.set_state(gst::State::Playing));
        match tokio::time::timeout_at(deadline, &mut playing).await {
            Ok(Ok(Ok(_))) => {}
            Ok(_) => {
                let error = first_error(&mut stream).unwrap_or_else(|| {
                    (
                        "the pipeline refused to start (state change failed)".to_string(),
                        None,
                    )
                });
                discard(Some(hooks), pipeline).await;
                return Err(error);
            }
            Err(_) => {
                tokio::spawn(async move {
                    let _ = playing.await;
                    discard(Some(hooks), pipeline).await;
                });
                return Err(timed_out());
            }
        }
        self.announce(&plan);
        Ok(Started::Pipeline(Active {
            pipeline,
            bus: stream,
            plan,
            hooks: Some(hooks),
        }))
    }

    /// What the plan chose, in the log and the status.
    fn announce(&self, plan: &Plan) {
        for (role, element) in &plan.chosen {
            tracing::info!("{}: {role}: {element}", self.name());
        }
        self.status.send_modify(|s| {
            s.source = Some(plan.source.clone());
            s.outputs = plan.outputs.clone();
            // Shown to viewers: without a password or token a URI in it may carry.
            s.launch = Some(crate::redact::redact(&plan.launch));
            s.chosen = plan
                .chosen
                .iter()
                .map(|(role, element)| Choice {
                    role: role.to_string(),
                    element: element.clone(),
                })
                .collect();
        });
    }

    /// A webrtc-source pipeline: open to publishers (each gets a pipeline of its own) until
    /// told to stop; stopping ends the publisher and waits until its recording is finalized.
    async fn watch_ingest(&mut self, plan: Plan, commands: &mut mpsc::Receiver<Command>) -> Ended {
        self.readers
            .open_ingest(self.name(), plan, self.recordings.clone(), self.hook_host());
        self.set_state(State::Playing, None);
        let ended = loop {
            match commands.recv().await {
                Some(Command::Start(ack)) => {
                    let _ = ack.send(());
                }
                Some(Command::Stop(ack)) => break Ended::Stopped(ack),
                Some(Command::Restart(ack)) => break Ended::RestartRequested(ack),
                Some(Command::Shutdown) | None => break Ended::Shutdown,
            }
        };
        self.readers.close_ingest(self.name()).await;
        self.recordings.stopped(self.name());
        ended
    }

    /// Follows a running pipeline until it ends or is told to stop.
    async fn watch(&mut self, mut active: Active, commands: &mut mpsc::Receiver<Command>) -> Ended {
        self.set_live(Some(active.pipeline.clone()));
        let mut playing_since: Option<Instant> = None;
        let mut looped = false;
        let start_deadline = tokio::time::sleep(self.config.start_timeout);
        tokio::pin!(start_deadline);
        let mut watchdog = active
            .plan
            .stall
            .as_ref()
            .and_then(|w| Watchdog::install(&active.pipeline, w));
        let mut tick = tokio::time::interval(
            watchdog
                .as_ref()
                .map(Watchdog::period)
                .unwrap_or(Duration::from_secs(1)),
        );
        let ended = loop {
            tokio::select! {
                msg = active.bus.next() => {
                    let Some(msg) = msg else {
                        break Ended::Error { message: "the pipeline's bus closed".into(), detail: None, element: None };
                    };
                    use gst::MessageView;
                    match msg.view() {
                        MessageView::Error(err) if crate::hooks::from_hook_branch(&msg) => {
                            let error = describe_error(&msg, &err.error(), err.debug().as_deref());
                            tracing::warn!("{}: hook branch: {error}", self.name());
                            let element = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                            self.events.publish(Event::hook(self.name(), &element, "error", serde_json::json!({ "error": error })));
                        }
                        MessageView::Error(err) => {
                            break Ended::Error {
                                message: describe_error(&msg, &err.error(), err.debug().as_deref()),
                                detail: err.debug().map(|d| d.to_string()),
                                element: msg.src().map(element_path),
                            };
                        }
                        MessageView::Eos(_) => break Ended::Eos,
                        MessageView::Warning(w) => {
                            tracing::warn!("{}: {}", self.name(), describe_error(&msg, &w.error(), w.debug().as_deref()));
                        }
                        MessageView::StateChanged(sc)
                            if msg.src() == Some(active.pipeline.upcast_ref::<gst::Object>())
                                && sc.current() == gst::State::Playing
                                && playing_since.is_none() =>
                        {
                            playing_since = Some(Instant::now());
                            if let Some(w) = &mut watchdog {
                                w.playing(Instant::now());
                            }
                            self.readers.playing(self.name(), &active.pipeline);
                            self.set_state(State::Playing, None);
                            if active.plan.looping && !looped {
                                looped = true;
                                // A segment seek makes the source post SEGMENT_DONE instead of
                                // EOS at the end, so playback can continue seamlessly.
                                seek_to_start(&active.pipeline, gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT);
                            }
                        }
                        MessageView::SegmentDone(_) => {
                            seek_to_start(&active.pipeline, gst::SeekFlags::SEGMENT);
                        }
                        _ => {}
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Start(ack)) => { let _ = ack.send(()); }
                    Some(Command::Stop(ack)) => { self.drain(&mut active).await; break Ended::Stopped(ack); }
                    Some(Command::Restart(ack)) => { self.drain(&mut active).await; break Ended::RestartRequested(ack); }
                    Some(Command::Shutdown) | None => { self.drain(&mut active).await; break Ended::Shutdown; }
                },
                _ = &mut start_deadline, if playing_since.is_none() => {
                    break Ended::Error {
                        message: format!(
                            "did not reach PLAYING within {} s (source unreachable or not producing data?)",
                            self.config.start_timeout.as_secs()
                        ),
                        detail: None,
                        element: None,
                    };
                }
                _ = tick.tick(), if watchdog.is_some() => {
                    if let Some(stall) = watchdog.as_mut().and_then(|w| w.check(Instant::now())) {
                        self.stalled(&stall);
                        break Ended::Error { message: stall.message, detail: None, element: Some(stall.element) };
                    }
                }
            }
        };
        drop(watchdog);
        if playing_since.is_some_and(|t| t.elapsed() >= self.config.stable_after) {
            self.failures = 0;
        }
        let restarts = match ended {
            Ended::Error { .. } => self.desc.options.restart != RestartPolicy::Never,
            Ended::Eos => self.desc.options.restart == RestartPolicy::Always,
            _ => false,
        };
        self.release_viewers(restarts);
        // Hooks first: observe hooks still take the frames waiting in their appsinks (a stream
        // that ended is seen to its last frame), transforms let frames pass from now on.
        if let Some(hooks) = active.hooks.take() {
            stop_hooks(hooks).await;
        }
        self.set_live(None);
        teardown(active.pipeline).await;
        self.recordings.stopped(self.name());
        ended
    }

    /// The source stopped delivering: counted, and said on the event bus (the error and the
    /// restart follow as for any error).
    fn stalled(&self, stall: &Stall) {
        tracing::warn!("{}: {}", self.name(), stall.message);
        self.status.send_modify(|s| s.stalls += 1);
        self.events.publish(Event::new(
            "stall",
            self.name(),
            serde_json::json!({ "element": stall.element, "message": stall.message }),
        ));
    }

    fn set_live(&self, pipeline: Option<gst::Pipeline>) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = pipeline;
    }

    /// Sends end-of-stream and waits (bounded) until it has drained through every sink, so
    /// muxers write their indexes and files are complete.
    async fn drain(&self, active: &mut Active) {
        let (plan, pipeline) = (active.plan.clone(), active.pipeline.clone());
        // Sending EOS into a branch takes its stream lock, which a full queue can hold.
        let send = tokio::task::spawn_blocking(move || plan.send_eos(&pipeline));
        let wait = async {
            let _ = send.await;
            while let Some(msg) = active.bus.next().await {
                match msg.view() {
                    gst::MessageView::Eos(_) => return,
                    gst::MessageView::Error(e) => {
                        tracing::warn!("{}: error while stopping: {}", self.name(), e.error());
                        return;
                    }
                    _ => {}
                }
            }
        };
        if tokio::time::timeout(self.config.eos_timeout, wait)
            .await
            .is_err()
        {
            tracing::warn!(
                "{}: end-of-stream did not drain within {} s; stopping anyway",
                self.name(),
                self.config.eos_timeout.as_secs()
            );
        }
    }
}

/// Seeks back to the start from a GStreamer thread: a seek can block on stream locks.
fn seek_to_start(pipeline: &gst::Pipeline, flags: gst::SeekFlags) {
    pipeline.call_async(move |p| {
        let _ = p.seek(
            1.0,
            flags,
            gst::SeekType::Set,
            gst::ClockTime::ZERO,
            gst::SeekType::None,
            gst::ClockTime::NONE,
        );
    });
}

fn first_error(stream: &mut gst::bus::BusStream) -> Option<(String, Option<String>)> {
    while let Some(Some(msg)) = stream.next().now_or_never() {
        if let gst::MessageView::Error(err) = msg.view() {
            return Some((
                describe_error(&msg, &err.error(), err.debug().as_deref()),
                err.debug().map(|d| d.to_string()),
            ));
        }
    }
    None
}
