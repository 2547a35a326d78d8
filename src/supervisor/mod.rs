//! Named pipelines: lifecycle, bus → state, restart with backoff.
//!
//! Each pipeline is owned by one tokio task ([`Runner`]). The task is the only code that
//! touches its `gst::Pipeline`; everything else talks to it through a command channel and reads
//! its [`Status`] from a `watch` channel. GStreamer bus messages reach the task through
//! `gst::Bus::stream()` (a sync handler that only sends into a channel). Blocking GStreamer calls
//! (building, state changes) run on the blocking pool.

use crate::description::{self, Description, Diagnostics};
use crate::events::{Event, EventBus};
use crate::hooks::HookTable;
use crate::meter::{Meter, MeterCounts};
use crate::record::Recordings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod runner;
mod status;

use runner::Runner;
pub use status::{Choice, LastError, State, Status};

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

    /// The pipelines of `name`'s readers that run beside it (TCP and record readers).
    pub fn reader_pipelines(&self, name: &str) -> Vec<gst::Pipeline> {
        self.readers.pipelines(name)
    }

    /// The buffers `name`'s readers with pipelines of their own have dropped, by output.
    pub fn reader_dropped(&self, name: &str) -> Vec<(String, u64)> {
        self.readers.dropped(name)
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
