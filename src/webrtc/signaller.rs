//! The producer side of the signalling protocol: a pipeline's webrtc output joins a signalling
//! server (the embedded `/ws` or an external gst-webrtc-signalling-server) as a producer with
//! `meta.name` = the pipeline name, and serves every `startSession` with a viewer session.
//!
//! One task owns the connection and the session table. Sessions report through a per-session
//! tagger into one bounded channel; the connection task never waits on a session's queue (a
//! session that cannot keep up is ended instead). If the server goes away, every session is
//! ended and the client reconnects with exponential backoff.

use super::output::WebRtcOutput;
use super::types::{Command, Signal, Via, ViewerId};
use crate::signalling::protocol::{
    IceCandidate, Incoming, Outgoing, PeerMessage, PeerPayload, PeerStatus, Role, Sdp, SessionId,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Signals from all sessions of one producer: at most a few dozen candidates per session in
/// flight, so 1024 only fills when the connection is stuck.
const SIGNAL_QUEUE: usize = 1024;
/// Signals one session may have queued for its tagger.
const SESSION_SIGNALS: usize = 64;

/// Keeps `output` registered as a producer at `url` until the output is dropped.
pub async fn run_producer(url: String, output: Weak<WebRtcOutput>) {
    let mut delay = Duration::from_millis(500);
    // The URL may carry a token: logs get it without.
    let shown = crate::redact::redact(&url);
    loop {
        let Some(name) = output.upgrade().map(|o| o.pipeline.clone()) else {
            return;
        };
        match serve_once(&url, &output).await {
            Ok(()) => {
                tracing::info!("{name}: signalling connection to {shown} closed");
                delay = Duration::from_millis(500);
            }
            Err(e) => tracing::warn!(
                "{name}: signalling at {shown}: {}",
                crate::redact::redact(&e)
            ),
        }
        if output.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// A session as the producer client tracks it.
struct Tracked {
    viewer: ViewerId,
    commands: mpsc::Sender<Command>,
}

async fn serve_once(url: &str, output: &Weak<WebRtcOutput>) -> Result<(), String> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let name = output
        .upgrade()
        .map(|o| o.pipeline.clone())
        .ok_or("the output is gone")?;
    let status = Incoming::SetPeerStatus(PeerStatus {
        roles: vec![Role::Producer],
        meta: Some(serde_json::json!({ "name": name })),
        peer_id: None,
    });
    send(&mut sink, &status).await?;
    tracing::info!(
        "{name}: registered as a producer at {}",
        crate::redact::redact(url)
    );

    let (sig_tx, mut signals) = mpsc::channel::<(SessionId, Signal)>(SIGNAL_QUEUE);
    let mut sessions: HashMap<SessionId, Tracked> = HashMap::new();
    let result = loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => break Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break Err(format!("connection lost: {e}")),
                };
                let msg: Outgoing = match serde_json::from_str(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("{name}: ignoring a message the server sent: {e}");
                        continue;
                    }
                };
                let Some(out) = output.upgrade() else { break Ok(()) };
                match msg {
                    Outgoing::StartSession { session_id, offer, peer_id } => {
                        // A consumer of the embedded server counts against its own address.
                        let client = out.signalling_peer_address(&peer_id.0);
                        match start_session(&out, &session_id, offer, client, &sig_tx) {
                            Ok(tracked) => { sessions.insert(session_id, tracked); }
                            Err(e) => {
                                tracing::warn!("{name}: cannot start session {session_id}: {e}");
                                send(&mut sink, &Incoming::EndSession { session_id, reason: Some(e) }).await?;
                            }
                        }
                    }
                    Outgoing::Peer(PeerMessage { session_id, payload }) => {
                        let Some(s) = sessions.get(&session_id) else { continue };
                        let cmd = match payload {
                            PeerPayload::Sdp(Sdp::Answer { sdp }) => Command::RemoteAnswer(sdp),
                            PeerPayload::Sdp(Sdp::Offer { .. }) => {
                                tracing::warn!("{name}: session {session_id}: unexpected offer");
                                continue;
                            }
                            PeerPayload::Ice(IceCandidate { candidate, sdp_m_line_index, .. }) => {
                                if candidate.trim().is_empty() {
                                    continue; // end-of-candidates
                                }
                                Command::RemoteIce { mline: sdp_m_line_index.unwrap_or(0), candidate }
                            }
                        };
                        if s.commands.try_send(cmd).is_err() {
                            // The session is stuck or gone: end it rather than wait for it.
                            if let Some(s) = sessions.remove(&session_id) {
                                out.end(&s.viewer);
                            }
                            let reason = Some("the session could not keep up with signalling".to_string());
                            send(&mut sink, &Incoming::EndSession { session_id, reason }).await?;
                        }
                    }
                    Outgoing::EndSession { session_id } => {
                        if let Some(s) = sessions.remove(&session_id) {
                            out.end(&s.viewer);
                        }
                    }
                    Outgoing::Error { details } => tracing::warn!("{name}: signalling server: {details}"),
                    _ => {}
                }
            }
            Some((session_id, signal)) = signals.recv() => {
                let Some(msg) = to_server(session_id, signal, &mut sessions) else { continue };
                if let Err(e) = send(&mut sink, &msg).await {
                    break Err(e);
                }
            }
        }
    };
    if let Some(out) = output.upgrade() {
        for (_, s) in sessions.drain() {
            out.end(&s.viewer);
        }
    }
    result
}

/// Starts a viewer session for `startSession`: we offer, or answer the consumer's offer.
fn start_session(
    out: &Arc<WebRtcOutput>,
    session_id: &SessionId,
    offer: Option<String>,
    client: Option<std::net::IpAddr>,
    shared: &mpsc::Sender<(SessionId, Signal)>,
) -> Result<Tracked, String> {
    let tx = tag_signals(session_id, shared);
    match offer {
        None => {
            let (viewer, commands) = out.offer(tx, client).map_err(|e| e.to_string())?;
            Ok(Tracked { viewer, commands })
        }
        Some(offer) => {
            // The consumer offered: answer with every candidate gathered; its own trickled
            // candidates still reach the session through `commands`.
            let (viewer, commands, answer) = out
                .answer_session(offer, Via::Signalling, client, Some(tx.clone()))
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                if let Ok(Ok(sdp)) = answer.await {
                    let _ = tx.send(Signal::Answer(sdp)).await;
                }
            });
            Ok(Tracked { viewer, commands })
        }
    }
}

/// What a session's signal means for the server; `Ended` only for sessions still tracked (one
/// the server ended is not ended twice).
fn to_server<T>(
    session_id: SessionId,
    signal: Signal,
    sessions: &mut HashMap<SessionId, T>,
) -> Option<Incoming> {
    let peer = |payload| {
        Some(Incoming::Peer(PeerMessage {
            session_id: session_id.clone(),
            payload,
        }))
    };
    match signal {
        Signal::Offer(sdp) => peer(PeerPayload::Sdp(Sdp::Offer { sdp })),
        Signal::Answer(sdp) => peer(PeerPayload::Sdp(Sdp::Answer { sdp })),
        Signal::Ice { mline, candidate } => {
            peer(PeerPayload::Ice(IceCandidate::new(candidate, mline)))
        }
        Signal::Ended(reason) => sessions
            .remove(&session_id)
            .map(|_| Incoming::EndSession { session_id, reason }),
    }
}

/// A sender for one session's signals that tags them with its id on the way to the shared
/// connection channel; when every sender is gone the session is over (`Ended`).
fn tag_signals(
    session_id: &SessionId,
    shared: &mpsc::Sender<(SessionId, Signal)>,
) -> mpsc::Sender<Signal> {
    let (tx, mut rx) = mpsc::channel::<Signal>(SESSION_SIGNALS);
    let (sid, shared_tx) = (session_id.clone(), shared.clone());
    tokio::spawn(async move {
        while let Some(s) = rx.recv().await {
            let ended = matches!(s, Signal::Ended(_));
            if shared_tx.send((sid.clone(), s)).await.is_err() || ended {
                return;
            }
        }
        let _ = shared_tx.send((sid, Signal::Ended(None))).await;
    });
    tx
}

async fn send<S>(sink: &mut S, msg: &Incoming) -> Result<(), String>
where
    S: SinkExt<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let text = serde_json::to_string(msg).map_err(|e| e.to_string())?;
    sink.send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("send failed: {e}"))
}

/// The consumer side, for ingest: listens on a signalling server for producers whose
/// `meta.publish` names this pipeline (the `/publish` page sets it), starts a session with
/// each, and answers its offer with a publisher session. One task owns the connection.
pub async fn run_consumer(url: String, point: Weak<super::ingest::IngestPoint>) {
    let mut delay = Duration::from_millis(500);
    loop {
        let Some(name) = point.upgrade().map(|p| p.pipeline.clone()) else {
            return;
        };
        if let Err(e) = consume_once(&url, &point).await {
            tracing::warn!(
                "{name}: signalling (publishers) at {}: {}",
                crate::redact::redact(&url),
                crate::redact::redact(&e)
            );
        } else {
            delay = Duration::from_millis(500);
        }
        if point.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn consume_once(url: &str, point: &Weak<super::ingest::IngestPoint>) -> Result<(), String> {
    use crate::signalling::protocol::PeerId;
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let name = point
        .upgrade()
        .map(|p| p.pipeline.clone())
        .ok_or("the pipeline is gone")?;
    let status = Incoming::SetPeerStatus(PeerStatus {
        roles: vec![Role::Listener],
        meta: Some(serde_json::json!({ "name": format!("mediaweave ingest {name}") })),
        peer_id: None,
    });
    send(&mut sink, &status).await?;
    send(&mut sink, &Incoming::List).await?;
    let wants = |meta: &Option<serde_json::Value>| {
        meta.as_ref()
            .and_then(|m| m.get("publish"))
            .and_then(|p| p.as_str())
            == Some(name.as_str())
    };
    let (sig_tx, mut signals) = mpsc::channel::<(SessionId, Signal)>(SIGNAL_QUEUE);
    let mut sessions: HashMap<SessionId, Option<Tracked>> = HashMap::new();
    let result = loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => break Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break Err(format!("connection lost: {e}")),
                };
                let Ok(msg) = serde_json::from_str::<Outgoing>(&text) else { continue };
                let Some(point) = point.upgrade() else { break Ok(()) };
                let start = |peer: PeerId| Incoming::StartSession { peer_id: peer, offer: None };
                match msg {
                    Outgoing::List { producers } => {
                        for p in producers.into_iter().filter(|p| wants(&p.meta)) {
                            send(&mut sink, &start(p.id)).await?;
                        }
                    }
                    Outgoing::PeerStatusChanged(s) if s.has(Role::Producer) && wants(&s.meta) => {
                        if let Some(peer) = s.peer_id {
                            send(&mut sink, &start(peer)).await?;
                        }
                    }
                    Outgoing::SessionStarted { session_id, .. } => {
                        sessions.insert(session_id, None);
                    }
                    Outgoing::Peer(PeerMessage { session_id, payload }) => {
                        let Some(entry) = sessions.get_mut(&session_id) else { continue };
                        match payload {
                            PeerPayload::Sdp(Sdp::Offer { sdp }) if entry.is_none() => {
                                match answer_publisher(&point, &session_id, sdp, &sig_tx) {
                                    Ok(tracked) => *entry = Some(tracked),
                                    Err(e) => {
                                        tracing::warn!("{name}: refusing publisher: {e}");
                                        sessions.remove(&session_id);
                                        send(&mut sink, &Incoming::EndSession { session_id, reason: Some(e) }).await?;
                                    }
                                }
                            }
                            PeerPayload::Ice(IceCandidate { candidate, sdp_m_line_index, .. }) => {
                                if let Some(t) = entry.as_ref().filter(|_| !candidate.trim().is_empty()) {
                                    let cmd = Command::RemoteIce { mline: sdp_m_line_index.unwrap_or(0), candidate };
                                    let _ = t.commands.try_send(cmd);
                                }
                            }
                            _ => {}
                        }
                    }
                    Outgoing::EndSession { session_id } => {
                        if let Some(Some(t)) = sessions.remove(&session_id) {
                            point.end(&t.viewer);
                        }
                    }
                    Outgoing::Error { details } => tracing::warn!("{name}: signalling server: {details}"),
                    _ => {}
                }
            }
            Some((session_id, signal)) = signals.recv() => {
                let Some(msg) = to_server(session_id, signal, &mut sessions) else { continue };
                if let Err(e) = send(&mut sink, &msg).await {
                    break Err(e);
                }
            }
        }
    };
    if let Some(point) = point.upgrade() {
        for t in sessions.into_values().flatten() {
            point.end(&t.viewer);
        }
    }
    result
}

/// Starts the publisher session for a producer's offer; its answer goes back as a signal.
fn answer_publisher(
    point: &Arc<super::ingest::IngestPoint>,
    session_id: &SessionId,
    offer: String,
    shared: &mpsc::Sender<(SessionId, Signal)>,
) -> Result<Tracked, String> {
    let tx = tag_signals(session_id, shared);
    let (viewer, commands, answer) = point
        .publish_session(offer, Via::Signalling, None, Some(tx.clone()))
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Ok(Ok(sdp)) = answer.await {
            let _ = tx.send(Signal::Answer(sdp)).await;
        }
    });
    Ok(Tracked { viewer, commands })
}
