//! `whep` sources: a stream pulled from another server's WHEP endpoint (another mediaweave,
//! MediaMTX) and taken in as the ingest's publisher, so it is relayed, recorded and hooked as
//! it arrives, never re-encoded.
//!
//! The session receives ([`super::types::Role::Pull`]): we offer to receive video (and Opus)
//! with every candidate gathered, `POST` it to the endpoint (the same exchange as a `whip`
//! output's, [`super::whip_client`]), set the answer, and `DELETE` the resource when the
//! pipeline stops. When the pull fails or ends (the server refused, went away, or stopped the
//! stream), it is said (status and a `whep_error` event) and tried again after 1 s doubling
//! to 30 s, reset once connected.

use super::ingest::IngestPoint;
use super::types::{Command, Role, Signal, Via, ViewerId};
use super::whip_client::{Backoff, WhipState, delete, post_offer};
use crate::assemble::WhepPull;
use crate::events::Event;
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, watch};

/// How an attempt ended.
enum Outcome {
    Stopped,
    Failed(String),
}

/// Pulls until the ingest point closes (or goes).
pub async fn run(point: Weak<IngestPoint>, pull: WhepPull, mut closing: watch::Receiver<bool>) {
    let url = crate::redact::redact(&pull.url);
    if let Some(p) = point.upgrade() {
        *p.pull_state.lock().unwrap_or_else(|e| e.into_inner()) = WhipState {
            output: "source".into(),
            url: url.clone(),
            ..WhipState::default()
        };
    }
    let mut backoff = Backoff::default();
    loop {
        if *closing.borrow() {
            return;
        }
        let Some(p) = point.upgrade() else { return };
        update(&p, |s| {
            s.attempts += 1;
            s.retry_in = None;
        });
        let error = match attempt(&p, &pull, &mut closing, &mut backoff).await {
            Outcome::Stopped => return,
            Outcome::Failed(error) => error,
        };
        let delay = backoff.delay();
        tracing::warn!(
            "{}: whep source {url}: {error}; trying again in {} s",
            p.pipeline,
            delay.as_secs()
        );
        update(&p, |s| {
            s.connected = false;
            s.error = Some(error.clone());
            s.retry_in = Some(delay.as_secs_f64());
        });
        p.events().publish(Event::new(
            "whep_error",
            &p.pipeline,
            serde_json::json!({ "url": url, "error": error, "retry_in": delay.as_secs_f64() }),
        ));
        drop(p);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
    }
}

fn update(point: &IngestPoint, f: impl FnOnce(&mut WhipState)) {
    f(&mut point.pull_state.lock().unwrap_or_else(|e| e.into_inner()));
}

/// One session: offer, `POST`, receive until it ends or the ingest closes; then `DELETE`.
async fn attempt(
    point: &Arc<IngestPoint>,
    pull: &WhepPull,
    closing: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Outcome {
    let (signal_tx, mut signals) = mpsc::channel(16);
    let (id, commands) =
        match point.start_publisher(Via::Whep, None, |ingest| Role::Pull(ingest, signal_tx)) {
            Ok(started) => started,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
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
            _ = closing.wait_for(|c| *c) => {
                point.end(&id);
                return Outcome::Stopped;
            }
        }
    };
    let (url, token) = (pull.url.clone(), pull.token.clone());
    let post = tokio::task::spawn_blocking(move || post_offer(&url, token.as_deref(), &offer));
    let posted = tokio::select! {
        posted = post => posted.unwrap_or_else(|e| Err(format!("the WHEP request failed: {e}"))),
        _ = closing.wait_for(|c| *c) => {
            point.end(&id);
            return Outcome::Stopped;
        }
    };
    let (resource, answer) = match posted {
        Ok(r) => r,
        Err(e) => {
            point.end(&id);
            return Outcome::Failed(e.replace("WHIP server", "WHEP server"));
        }
    };
    let outcome = receive(
        point,
        &id,
        &commands,
        answer,
        &mut signals,
        closing,
        backoff,
    )
    .await;
    point.end(&id);
    let token = pull.token.clone();
    let _ = tokio::task::spawn_blocking(move || delete(&resource, token.as_deref())).await;
    outcome
}

/// The answer is in: receive until the session ends or the ingest closes.
async fn receive(
    point: &Arc<IngestPoint>,
    id: &ViewerId,
    commands: &mpsc::Sender<Command>,
    answer: String,
    signals: &mut mpsc::Receiver<Signal>,
    closing: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Outcome {
    if commands.send(Command::RemoteAnswer(answer)).await.is_err() {
        return Outcome::Failed("the session ended before the answer".into());
    }
    let Some(mut stats) = point.publisher_stats(id) else {
        return Outcome::Failed("the session ended before the answer".into());
    };
    let mut announced = false;
    loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Some(Signal::Ended(why)) => {
                    return Outcome::Failed(why.unwrap_or_else(|| "the stream ended".into()));
                }
                Some(_) => {}
                None => return Outcome::Failed("the stream ended".into()),
            },
            changed = stats.changed() => {
                if changed.is_err() {
                    return Outcome::Failed("the stream ended".into());
                }
                if stats.borrow_and_update().connected && !announced {
                    announced = true;
                    backoff.reset();
                    update(point, |s| {
                        s.connected = true;
                        s.error = None;
                    });
                    point.events().publish(Event::new(
                        "whep_connected",
                        &point.pipeline,
                        serde_json::json!({ "url": crate::redact::redact(&point.pull_url()) }),
                    ));
                }
            }
            _ = closing.wait_for(|c| *c) => return Outcome::Stopped,
        }
    }
}
