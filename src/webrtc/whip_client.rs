//! `whip` outputs: the stream published to another server over WHIP (RFC 9725) — another
//! mediaweave, Janus behind its WHIP front end, MediaMTX, LiveKit, Cloudflare.
//!
//! Each output is one session like a viewer's ([`super::session`], the same pipeline, DTLS
//! certificate and leaky feed from the stream producers) in which we offer, once, with every
//! candidate gathered: `POST` of the offer (`Content-Type: application/sdp`, `Authorization:
//! Bearer` with the output's token), `201 Created` with the answer and a `Location`, and
//! `DELETE` of that location when the output stops. A refused `POST` (4xx/5xx), a server that
//! does not answer in time or goes away, or a session that ends (ICE failed, nothing heard)
//! is said (status and a `whip_error` event) and tried again with exponential backoff (1 s up
//! to 30 s, reset once connected); the pipeline and its other outputs never wait for it.
//!
//! The HTTP exchange is webrtcbin plus the service's HTTP client rather than gst-plugins-rs
//! `whipclientsink`: the viewer sessions already do everything else (and the ECDSA
//! certificate other stacks need), while `whipclientsink` would re-encode per session unless
//! fed pre-encoded streams, and bring its own TLS stack and HTTP client to build.

use super::output::WebRtcConfig;
use super::types::{Command, IceConfig, Params, Role, Signal, Via, ViewerId};
use crate::assemble::WhipTap;
use crate::description::VideoCodec;
use crate::events::{Event, EventBus};
use gst::prelude::*;
use gst_utils::streamproducer::StreamProducer;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long a WHIP server has to answer a request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a `whip` output (or a `whep` source) is doing, for the pipeline's status.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WhipState {
    /// The output, `out{N}` (`source` for a whep source).
    pub output: String,
    /// Where it publishes (passwords and tokens taken out).
    pub url: String,
    pub connected: bool,
    /// Attempts so far (the first included).
    pub attempts: u32,
    /// Why the last attempt failed, until one connects.
    pub error: Option<String>,
    /// Seconds until the next attempt, while waiting for it.
    pub retry_in: Option<f64>,
}

/// The delay before each next attempt: 1 s, doubling up to [`MAX_BACKOFF`].
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn delay(&mut self) -> Duration {
        let delay = Duration::from_secs(1u64 << self.failures.min(5)).min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The resource URL of a `Location` header, which may be relative to the endpoint.
pub fn resolve_location(endpoint: &str, location: &str) -> Result<String, String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_string());
    }
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| format!("`{endpoint}` is not a URL"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    // Relative to the endpoint's directory.
    let path = &rest[authority.len()..];
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    Ok(format!("{scheme}://{authority}{dir}/{location}"))
}

/// What a WHIP server's reply to our offer means: the answer and resource, or why not.
pub fn read_reply(
    endpoint: &str,
    status: u16,
    location: Option<&str>,
    body: &str,
) -> Result<(String, String), String> {
    if status != 201 && status != 200 {
        let said: String = body.trim().chars().take(200).collect();
        return Err(if said.is_empty() {
            format!("the WHIP server answered {status}")
        } else {
            format!("the WHIP server answered {status}: {said}")
        });
    }
    if !body.trim_start().starts_with("v=0") {
        return Err(format!(
            "the WHIP server answered {status} without an SDP answer"
        ));
    }
    let location = location.ok_or("the WHIP server's answer has no Location header")?;
    Ok((resolve_location(endpoint, location)?, body.to_string()))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into()
}

/// `POST`s the offer (WHIP or WHEP: the same exchange); blocking (run on the blocking pool).
pub(super) fn post_offer(
    url: &str,
    token: Option<&str>,
    offer: &str,
) -> Result<(String, String), String> {
    let mut request = agent().post(url).header("Content-Type", "application/sdp");
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut reply = request.send(offer).map_err(|e| {
        format!(
            "cannot reach the WHIP server: {}",
            crate::redact::redact(&e.to_string())
        )
    })?;
    let status = reply.status().as_u16();
    let location = reply
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    let body = reply
        .body_mut()
        .with_config()
        .limit(256 * 1024)
        .read_to_string()
        .unwrap_or_default();
    read_reply(url, status, location.as_deref(), &body)
}

/// `DELETE`s the session's resource; blocking, best effort (the server may be gone).
pub(super) fn delete(resource: &str, token: Option<&str>) {
    let mut request = agent().delete(resource);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    if let Err(e) = request.call() {
        tracing::debug!("DELETE {}: {e}", crate::redact::redact(resource));
    }
}

/// A pipeline's `whip` outputs: their streams (set on attach) and running clients.
#[derive(Default)]
struct Publishing {
    targets: Vec<Target>,
    clients: Vec<Client>,
}

#[derive(Clone)]
struct Target {
    tap: WhipTap,
    video: Option<StreamProducer>,
    audio: Option<StreamProducer>,
    events: EventBus,
}

struct Client {
    stop: watch::Sender<bool>,
    state: Arc<Mutex<WhipState>>,
}

/// Every pipeline's `whip` outputs.
pub struct WhipClients {
    config: WebRtcConfig,
    running: Mutex<HashMap<String, Publishing>>,
}

impl WhipClients {
    pub fn new(config: WebRtcConfig) -> WhipClients {
        WhipClients {
            config,
            running: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Publishing>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run's streams for its `whip` outputs (started once it plays).
    pub fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        plan: &crate::assemble::Plan,
        events: &EventBus,
    ) -> Result<(), String> {
        self.detach(name);
        if plan.whip.is_empty() {
            return Ok(());
        }
        let mut targets = Vec::new();
        for tap in &plan.whip {
            let (appsink, video) = crate::hub::producer(pipeline, &tap.stream.video_sink)?;
            if tap.stream.codec == VideoCodec::H264 {
                super::keyframes::mark_h264_keyframes(appsink.upcast_ref());
            }
            // The receiving server's PLIs reach a relayed stream's publisher.
            super::keyframes::clean_requests(appsink.upcast_ref());
            let audio = match &tap.stream.audio_sink {
                Some((sink, _)) => Some(crate::hub::producer(pipeline, sink)?.1),
                None => None,
            };
            targets.push(Target {
                tap: tap.clone(),
                video: Some(video),
                audio,
                events: events.clone(),
            });
        }
        self.lock().insert(
            name.to_string(),
            Publishing {
                targets,
                clients: Vec::new(),
            },
        );
        Ok(())
    }

    /// The run plays: each output starts publishing, on the run's clock.
    pub fn playing(&self, name: &str, pipeline: &gst::Pipeline) {
        let clock = pipeline
            .clock()
            .map(|c| (c, pipeline.base_time().unwrap_or(gst::ClockTime::ZERO)));
        let mut running = self.lock();
        let Some(publishing) = running.get_mut(name) else {
            return;
        };
        if !publishing.clients.is_empty() {
            return;
        }
        for target in &publishing.targets {
            let (stop, stopped) = watch::channel(false);
            let state = Arc::new(Mutex::new(WhipState {
                output: format!("out{}", target.tap.stream.index),
                url: crate::redact::redact(&target.tap.url),
                ..WhipState::default()
            }));
            let job = Job {
                name: name.to_string(),
                target: target.clone(),
                clock: clock.clone(),
                config: self.config.clone(),
                state: state.clone(),
            };
            self.config.sessions.spawn(job.run(stopped));
            publishing.clients.push(Client { stop, state });
        }
    }

    /// The run is over: each output ends its session (`DELETE`) and stops trying.
    pub fn detach(&self, name: &str) {
        if let Some(publishing) = self.lock().remove(name) {
            for client in publishing.clients {
                let _ = client.stop.send(true);
            }
        }
    }

    /// Every pipeline's outputs stop (the service shuts down).
    pub fn stop_all(&self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        for name in names {
            self.detach(&name);
        }
    }

    /// What `name`'s `whip` outputs are doing.
    pub fn states(&self, name: &str) -> Vec<WhipState> {
        self.lock()
            .get(name)
            .map(|p| {
                p.clients
                    .iter()
                    .map(|c| c.state.lock().unwrap_or_else(|p| p.into_inner()).clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One output's publishing, attempt after attempt, until it is stopped.
struct Job {
    name: String,
    target: Target,
    clock: Option<(gst::Clock, gst::ClockTime)>,
    config: WebRtcConfig,
    state: Arc<Mutex<WhipState>>,
}

/// How an attempt ended.
enum Outcome {
    Stopped,
    Failed(String),
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut WhipState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn publish_event(&self, kind: &str, fields: serde_json::Value) {
        let mut data = serde_json::json!({
            "output": format!("out{}", self.target.tap.stream.index),
            "url": crate::redact::redact(&self.target.tap.url),
        });
        if let (Some(data), Some(fields)) = (data.as_object_mut(), fields.as_object()) {
            data.extend(fields.clone());
        }
        self.target
            .events
            .publish(Event::new(kind, &self.name, data));
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        loop {
            if *stopped.borrow() {
                return;
            }
            self.update(|s| {
                s.attempts += 1;
                s.retry_in = None;
            });
            let error = match self.attempt(&mut stopped, &mut backoff).await {
                Outcome::Stopped => return,
                Outcome::Failed(error) => error,
            };
            let delay = backoff.delay();
            tracing::warn!(
                "{}: whip output {}: {error}; trying again in {} s",
                self.name,
                crate::redact::redact(&self.target.tap.url),
                delay.as_secs()
            );
            self.update(|s| {
                s.connected = false;
                s.error = Some(error.clone());
                s.retry_in = Some(delay.as_secs_f64());
            });
            self.publish_event(
                "whip_error",
                serde_json::json!({ "error": error, "retry_in": delay.as_secs_f64() }),
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    }

    /// One session: offer, `POST`, serve until it ends or the output stops.
    async fn attempt(&self, stopped: &mut watch::Receiver<bool>, backoff: &mut Backoff) -> Outcome {
        let tap = &self.target.tap;
        let (signal_tx, mut signals) = mpsc::channel(16);
        // Chat lines from the far side have nobody to go to.
        let (chat, _unheard) = mpsc::channel(1);
        let params = Params {
            id: ViewerId::new(),
            via: Via::Whip,
            codec: tap.stream.codec,
            video: self.target.video.clone(),
            audio: self.target.audio.clone(),
            clock: self.clock.clone(),
            ice: ice_for(&self.config.ice, &tap.ice_servers),
            chat,
            connect_timeout: self.config.connect_timeout,
            peer_timeout: self.config.peer_timeout,
            pending: None,
            ladder: None,
        };
        let role = Role::Offer {
            signal: signal_tx,
            gathered: true,
        };
        let handle = super::session::spawn(&self.config.sessions, params, role, |_| {});
        let offer = loop {
            tokio::select! {
                signal = signals.recv() => match signal {
                    Some(Signal::Offer(sdp)) => break sdp,
                    Some(Signal::Ended(why)) => {
                        return Outcome::Failed(why.unwrap_or_else(|| "the session ended before offering".into()));
                    }
                    Some(_) => continue,
                    None => return Outcome::Failed("the session ended before offering".into()),
                },
                _ = stopped.wait_for(|s| *s) => {
                    handle.end();
                    return Outcome::Stopped;
                }
            }
        };
        let (url, token) = (tap.url.clone(), tap.token.clone());
        let post = tokio::task::spawn_blocking(move || post_offer(&url, token.as_deref(), &offer));
        let posted = tokio::select! {
            posted = post => posted.unwrap_or_else(|e| Err(format!("the WHIP request failed: {e}"))),
            _ = stopped.wait_for(|s| *s) => {
                handle.end();
                return Outcome::Stopped;
            }
        };
        let (resource, answer) = match posted {
            Ok(r) => r,
            Err(e) => {
                handle.end();
                return Outcome::Failed(e);
            }
        };
        let outcome = self
            .serve(&handle, answer, &mut signals, stopped, backoff)
            .await;
        handle.end();
        let token = tap.token.clone();
        let _ = tokio::task::spawn_blocking(move || delete(&resource, token.as_deref())).await;
        outcome
    }

    /// The answer is in: serve until the session ends or the output stops.
    async fn serve(
        &self,
        handle: &super::types::Handle,
        answer: String,
        signals: &mut mpsc::Receiver<Signal>,
        stopped: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Outcome {
        if handle
            .commands
            .send(Command::RemoteAnswer(answer))
            .await
            .is_err()
        {
            return Outcome::Failed("the session ended before the answer".into());
        }
        let mut stats = handle.stats.clone();
        let mut announced = false;
        loop {
            tokio::select! {
                signal = signals.recv() => match signal {
                    Some(Signal::Ended(why)) => {
                        return Outcome::Failed(why.unwrap_or_else(|| "the session ended".into()));
                    }
                    Some(_) => {}
                    None => return Outcome::Failed("the session ended".into()),
                },
                changed = stats.changed() => {
                    if changed.is_err() {
                        return Outcome::Failed("the session ended".into());
                    }
                    let connected = stats.borrow_and_update().connected;
                    if connected && !announced {
                        announced = true;
                        backoff.reset();
                        tracing::info!(
                            "{}: publishing to {} over WHIP",
                            self.name,
                            crate::redact::redact(&self.target.tap.url)
                        );
                        self.update(|s| {
                            s.connected = true;
                            s.error = None;
                        });
                        self.publish_event("whip_connected", serde_json::json!({}));
                    }
                }
                _ = stopped.wait_for(|s| *s) => return Outcome::Stopped,
            }
        }
    }
}

/// The service's ICE settings with the output's own STUN/TURN servers, if it names any.
fn ice_for(service: &IceConfig, servers: &[String]) -> IceConfig {
    if servers.is_empty() {
        return service.clone();
    }
    IceConfig {
        addresses: service.addresses.clone(),
        stun_server: servers.iter().find(|s| s.starts_with("stun://")).cloned(),
        turn_servers: servers
            .iter()
            .filter(|s| s.starts_with("turn"))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets() {
        let mut b = Backoff::default();
        let secs: Vec<u64> = (0..8).map(|_| b.delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.delay().as_secs(), 1);
    }

    #[test]
    fn locations_resolve_against_the_endpoint() {
        let ep = "http://10.0.0.2:7080/whip/endpoint/test";
        assert_eq!(
            resolve_location(ep, "/whip/resource/abc").as_deref(),
            Ok("http://10.0.0.2:7080/whip/resource/abc")
        );
        assert_eq!(
            resolve_location(ep, "https://other/x").as_deref(),
            Ok("https://other/x")
        );
        assert_eq!(
            resolve_location(ep, "abc").as_deref(),
            Ok("http://10.0.0.2:7080/whip/endpoint/abc")
        );
    }

    #[test]
    fn replies_are_read_as_the_rfc_says() {
        let ep = "http://h/whip/x";
        let answer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n";
        assert_eq!(
            read_reply(ep, 201, Some("/whip/x/1"), answer),
            Ok(("http://h/whip/x/1".to_string(), answer.to_string()))
        );
        assert_eq!(
            read_reply(ep, 403, None, "{\"error\": \"no\"}"),
            Err("the WHIP server answered 403: {\"error\": \"no\"}".to_string())
        );
        assert_eq!(
            read_reply(ep, 503, None, ""),
            Err("the WHIP server answered 503".to_string())
        );
        assert!(read_reply(ep, 201, None, answer).is_err_and(|e| e.contains("Location")));
        assert!(read_reply(ep, 201, Some("/x"), "<html>").is_err_and(|e| e.contains("SDP")));
    }
}
