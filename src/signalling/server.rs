//! The embedded signalling server at `/ws`: moves frames between sockets and the [`Router`].
//!
//! Each connection has one task and a bounded outbox. The router runs under a mutex that is
//! only held while it computes deliveries (never across an await). Connections are capped in
//! total and per address (`Limits::signalling`, 503 beyond); a peer that has neither a role
//! nor a session is closed after `Limits::signalling_idle` without a message; a message over
//! [`MAX_MESSAGE_BYTES`] is answered with an `error` and a close frame with code 1009.

use super::protocol::{Incoming, Outgoing, PeerId, Role};
use super::router::{Delivery, Router};
use crate::auth::Grant;
use crate::limits::{Limits, Pass};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Largest accepted message: an SDP with many candidates is a few KiB; 256 KiB leaves room.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Largest message read at all: between the two, the peer is told why it is closed.
const MAX_READ_BYTES: usize = 4 * MAX_MESSAGE_BYTES;
/// WebSocket close code for a message too big to process (RFC 6455).
const TOO_BIG: u16 = 1009;
/// WebSocket close code for a policy violation (RFC 6455).
const POLICY: u16 = 1008;
/// Messages queued for a peer that reads too slowly before it is disconnected.
const OUTBOX: usize = 256;

#[derive(Default)]
pub struct Hub {
    router: Mutex<Router>,
    outboxes: Mutex<HashMap<PeerId, Outbox>>,
    limits: Arc<Limits>,
}

/// Where a connection's messages go, and what its token may see.
struct Outbox {
    tx: mpsc::Sender<String>,
    grant: Grant,
}

/// The pipeline a peer's meta names: a browser publisher's `publish`, a producer's `name`.
fn pipeline_of(meta: &Option<serde_json::Value>) -> Option<String> {
    let field = |key: &str| {
        meta.as_ref()
            .and_then(|m| m.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    field("publish").or_else(|| field("name"))
}

fn publishes(meta: &Option<serde_json::Value>) -> bool {
    meta.as_ref().and_then(|m| m.get("publish")).is_some()
}

/// Whether `grant` may watch the producer that announced `meta`: the pipeline it names must be
/// viewable; the service's own consumer sees only browser publishers.
fn may_watch(grant: &Grant, meta: &Option<serde_json::Value>) -> bool {
    if grant.service {
        return publishes(meta);
    }
    match pipeline_of(meta) {
        Some(p) => grant.can_view(&p),
        None => grant.can_view_all(),
    }
}

/// `msg` as `grant` may see it: producers it may not watch are left out of lists and their
/// status changes are not sent.
fn visible(grant: &Grant, msg: Outgoing) -> Option<Outgoing> {
    match msg {
        Outgoing::List { mut producers } => {
            producers.retain(|p| may_watch(grant, &p.meta));
            Some(Outgoing::List { producers })
        }
        Outgoing::PeerStatusChanged(status) if !may_watch(grant, &status.meta) => None,
        other => Some(other),
    }
}

impl Hub {
    pub fn new(limits: Arc<Limits>) -> Arc<Hub> {
        Arc::new(Hub {
            limits,
            ..Hub::default()
        })
    }

    pub fn session_count(&self) -> usize {
        self.router.lock().map(|r| r.session_count()).unwrap_or(0)
    }

    fn deliver(&self, deliveries: Vec<Delivery>) {
        let mut outboxes = self.outboxes.lock().unwrap_or_else(|p| p.into_inner());
        for (to, msg) in deliveries {
            let Some(outbox) = outboxes.get(&to) else {
                continue;
            };
            let Some(msg) = visible(&outbox.grant, msg) else {
                continue;
            };
            if outbox.tx.try_send(msg.to_json()).is_err() {
                // Full (a stuck reader) or closed: drop this peer rather than block the others.
                tracing::warn!("signalling peer {to} is not reading; disconnecting it");
                outboxes.remove(&to);
            }
        }
    }

    fn with_router<T>(&self, f: impl FnOnce(&mut Router) -> T) -> T {
        let mut router = self.router.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut router)
    }

    /// What `grant` may not do with `text`, if anything: registering as a producer of viewers'
    /// video takes `admin` (or the service's own token), registering as a browser publisher
    /// (`meta.publish`) takes `publish` for that pipeline, and starting a session with a
    /// producer takes `view` for the pipeline it names.
    fn refused(&self, grant: &Grant, text: &str) -> Option<String> {
        match serde_json::from_str::<Incoming>(text).ok()? {
            Incoming::SetPeerStatus(status) if status.has(Role::Producer) => {
                let publish = status
                    .meta
                    .as_ref()
                    .and_then(|m| m.get("publish"))
                    .map(|p| p.as_str().unwrap_or_default().to_string());
                match publish {
                    Some(p) if grant.can_publish(&p) => None,
                    Some(p) => Some(format!("token `{}` may not publish into `{p}`", grant.name)),
                    None if grant.admin || grant.service => None,
                    None => Some(format!(
                        "token `{}` may not register a producer (a browser publisher sets meta.publish to its pipeline)",
                        grant.name
                    )),
                }
            }
            Incoming::StartSession { peer_id, .. } => {
                // An unknown peer: the router answers that.
                let meta = self.with_router(|r| r.meta_of(&peer_id))?;
                if may_watch(grant, &meta) {
                    return None;
                }
                Some(match pipeline_of(&meta) {
                    Some(p) => format!("token `{}` may not view `{p}`", grant.name),
                    None => format!(
                        "token `{}` may not view a producer that names no pipeline",
                        grant.name
                    ),
                })
            }
            _ => None,
        }
    }

    /// Serves one WebSocket connection until it closes; `_pass` holds its place under the
    /// connection caps.
    pub async fn serve(
        self: Arc<Self>,
        mut socket: WebSocket,
        grant: Grant,
        client: Option<std::net::IpAddr>,
        _pass: Pass,
    ) {
        let (tx, mut rx) = mpsc::channel::<String>(OUTBOX);
        let (peer, welcome) = self.with_router(|r| r.connect());
        if let Some(ip) = client {
            self.limits.remember_peer(&peer.0, ip);
        }
        self.outboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                peer.clone(),
                Outbox {
                    tx,
                    grant: grant.clone(),
                },
            );
        self.deliver(welcome);
        let idle = self.limits.signalling_idle;
        let mut heard = tokio::time::Instant::now();
        let closing = loop {
            tokio::select! {
                incoming = socket.recv() => {
                    match incoming {
                        Some(Ok(Message::Text(text))) if text.len() > MAX_MESSAGE_BYTES => {
                            let why = format!(
                                "a message of {} bytes is over the limit of {MAX_MESSAGE_BYTES}",
                                text.len()
                            );
                            let err = Outgoing::error(why.clone()).to_json();
                            let _ = socket.send(Message::Text(err.into())).await;
                            break Some((TOO_BIG, why));
                        }
                        Some(Ok(Message::Text(text))) => {
                            if let Some(why) = self.refused(&grant, text.as_str()) {
                                self.deliver(vec![(peer.clone(), Outgoing::error(why))]);
                                continue;
                            }
                            // Only a message the protocol takes counts as activity.
                            if serde_json::from_str::<Incoming>(text.as_str()).is_ok() {
                                heard = tokio::time::Instant::now();
                            }
                            let out = self.with_router(|r| r.handle_text(&peer, text.as_str()));
                            self.deliver(out);
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let err = Outgoing::error("binary frames are not part of the protocol: send JSON text");
                            self.deliver(vec![(peer.clone(), err)]);
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => break None,
                        Some(Err(e)) => break read_failure(e),
                    }
                }
                outgoing = rx.recv() => match outgoing {
                    Some(text) => {
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            break None;
                        }
                    }
                    // Removed from the outboxes (too slow): end the connection.
                    None => break None,
                },
                () = tokio::time::sleep_until(heard + idle) => {
                    if self.with_router(|r| r.is_unregistered(&peer)) {
                        break Some((POLICY, format!(
                            "idle: no role and no session {} s after the last message",
                            idle.as_secs()
                        )));
                    }
                    heard = tokio::time::Instant::now();
                }
            }
        };
        if let Some((code, reason)) = closing {
            tracing::debug!("signalling peer {peer}: closing ({reason})");
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = socket.send(Message::Close(Some(frame))).await;
        }
        self.outboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer);
        self.limits.forget_peer(&peer.0);
        let out = self.with_router(|r| r.disconnect(&peer));
        self.deliver(out);
    }
}

/// How a connection that failed to read ends: a message over even the read limit gets the
/// close code for it (best effort: the rest of the message is unread).
fn read_failure(e: axum::Error) -> Option<(u16, String)> {
    use tokio_tungstenite::tungstenite::Error;
    match e.into_inner().downcast::<Error>() {
        Ok(e) if matches!(*e, Error::Capacity(_)) => Some((
            TOO_BIG,
            format!("a message over the limit of {MAX_MESSAGE_BYTES} bytes"),
        )),
        _ => None,
    }
}

/// `GET /ws`: upgrade to the signalling protocol, within the connection caps (503 beyond).
pub async fn handler(
    ws: WebSocketUpgrade,
    State(hub): State<Arc<Hub>>,
    axum::Extension(grant): axum::Extension<Grant>,
    client: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Response {
    let ip = client.map(|c| c.0.0.ip());
    let pass = match hub.limits.signalling.enter(hub.limits.address(ip)) {
        Ok(pass) => pass,
        Err(why) => {
            let body = axum::Json(serde_json::json!({ "error": why }));
            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, body).into_response();
        }
    };
    ws.max_message_size(MAX_READ_BYTES)
        .max_frame_size(MAX_READ_BYTES)
        .on_upgrade(move |socket| hub.serve(socket, grant, ip, pass))
}
