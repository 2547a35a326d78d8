//! The task that owns one pipeline: builds it off the async threads, hands each run to the
//! stream hub's readers, turns bus messages into states, restarts with backoff and stops it
//! with end-of-stream first so files are finalized.

use super::status::now_rfc3339;
use super::{Choice, Command, LastError, Live, State, Status, SupervisorConfig};
use crate::assemble::{self, Plan};
use crate::description::{Description, RestartPolicy};
use crate::events::{Event, EventBus};
use crate::hooks::{HookHost, HookTable, RunningHooks};
use crate::meter::Meter;
use crate::pipeline::{describe_error, element_path, teardown};
use crate::record::Recordings;
use crate::stall::{Stall, Watchdog};
use futures_util::{FutureExt, StreamExt};
use gst::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// How a run of the pipeline ended.
pub(super) enum Ended {
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
pub(super) struct Runner {
    pub(super) desc: Description,
    pub(super) config: SupervisorConfig,
    pub(super) readers: Arc<dyn crate::hub::Readers>,
    pub(super) recordings: Arc<Recordings>,
    pub(super) events: EventBus,
    pub(super) hooks: Arc<HookTable>,
    pub(super) status: Arc<watch::Sender<Status>>,
    pub(super) live: Live,
    pub(super) meter: Arc<Meter>,
    /// Consecutive failures, for the backoff.
    pub(super) failures: u32,
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
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>, run: bool) {
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
        let desc = self.desc.clone();
        let build_delay = self.config.build_delay;
        let mut building = tokio::task::spawn_blocking(move || -> Result<Built, String> {
            let plan = assemble::plan(&desc).map_err(|d| d.to_string())?;
            if plan.ingest.is_some() {
                // Built per publisher, not now.
                return Ok(Built::Ingest(plan));
            }
            std::thread::sleep(build_delay);
            let pipeline = plan.build()?;
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
        let hooks = match crate::hub::hooks::start(self.name(), &pipeline, &plan, &host) {
            Ok(hooks) => hooks,
            Err(e) => {
                discard(None, pipeline).await;
                return Err((e, None));
            }
        };
        if let Err(e) = self
            .readers
            .attach(self.name(), &pipeline, &plan, &host.events)
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
        self.readers.open_ingest(
            self.name(),
            plan,
            self.recordings.clone(),
            self.hook_host(),
            Arc::downgrade(&self.readers),
        );
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
        // Recordings are finished before anything else lets go of the run.
        let drained = !matches!(ended, Ended::Error { .. });
        self.readers.finish(self.name(), drained).await;
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
