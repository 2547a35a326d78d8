//! Socket.IO chat at `/socket.io/`: Socket.IO v5 over Engine.IO v4 (what socket.io-client 3+
//! and python-socketio 5 speak), served by socketioxide, behind the same origin rule and tokens
//! as every route (a token must be able to view the chat's target).
//!
//! - A connection's target is its `?room=` (default `lobby`): a room's name, or a pipeline's
//!   whose webrtc output has viewers chatting on their data channels.
//! - A client that emits `chat_message` with a string says it in the target's chat, within the
//!   limits every speaker has ([`crate::webrtc::chat::ChatLimit`]): the other Socket.IO
//!   clients of the target get it as `chat_message`, and so do the target's WebRTC sessions
//!   (as their data channels' chat lines).
//! - What the WebRTC sessions say reaches the target's Socket.IO clients as `chat_message`
//!   with the text, as the tutorials' servers broadcast it.
//! - A target with no chat running (no such room, or no webrtc output) is a chat of its
//!   Socket.IO clients alone.

use crate::webrtc::chat::{ChatBus, ChatLimit, ChatLine};
use crate::webrtc::registry::Registry;
use crate::webrtc::types::ViewerId;
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::layer::SocketIoLayer;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast};

/// Where a connection without `?room=` chats.
pub const DEFAULT_TARGET: &str = "lobby";

/// The event that carries a chat line, both ways.
pub const EVENT: &str = "chat_message";

/// Longest target name taken from `?room=` (the rest is cut).
const MAX_TARGET: usize = 128;

/// The largest Engine.IO payload taken from a client: a few chat lines' worth.
const MAX_PAYLOAD: u64 = 64 * 1024;

/// The chat target a connection asks for in its query (`?room=NAME`, default `lobby`). A
/// room participant's stream (`ROOM/PARTICIPANT`) chats in its room: the target is the room.
pub fn target(uri: &axum::http::Uri) -> String {
    let room = super::query_value(uri, "room");
    let room = room
        .as_deref()
        .map(|r| r.split('/').next().unwrap_or_default().trim());
    match room {
        Some(room) if !room.is_empty() => room.chars().take(MAX_TARGET).collect(),
        _ => DEFAULT_TARGET.to_string(),
    }
}

/// The Socket.IO room of the clients of chat `target`.
fn target_room(target: &str) -> String {
    format!("chat:{target}")
}

/// The Socket.IO room of client `id` alone (so the lines it says come back to everyone but
/// itself); no target's room can be named so.
fn own_room(id: &ViewerId) -> String {
    format!("client:{}", id.0)
}

/// Whether a request's query carries an Engine.IO session id (every request after the
/// handshake does).
pub fn has_session(uri: &axum::http::Uri) -> bool {
    super::query_value(uri, "sid").is_some()
}

/// The Socket.IO server: its layer goes into the router; this owns the task that brings the
/// WebRTC chats' lines to the clients.
pub struct SocketChat {
    io: SocketIo,
    stop: Arc<Notify>,
    bridge: tokio::task::JoinHandle<()>,
}

impl SocketChat {
    /// The layer to serve `/socket.io/` with, and the server behind it.
    pub fn start(registry: Arc<Registry>) -> (SocketIoLayer, SocketChat) {
        let (layer, io) = SocketIo::builder()
            .max_payload(MAX_PAYLOAD)
            .ws_max_message_size(MAX_PAYLOAD as usize)
            .build_layer();
        let to_webrtc = registry.clone();
        io.ns("/", move |socket: SocketRef| {
            let registry = to_webrtc.clone();
            async move { connected(socket, registry) }
        });
        let stop = Arc::new(Notify::new());
        let bridge = tokio::spawn(bridge(
            io.clone(),
            registry.chat_bus().clone(),
            stop.clone(),
        ));
        (layer, SocketChat { io, stop, bridge })
    }

    /// Closes every client's connection and ends the bridge.
    pub async fn shutdown(mut self) {
        self.stop.notify_one();
        self.io.close().await;
        let _ = (&mut self.bridge).await;
    }
}

impl Drop for SocketChat {
    /// Without [`SocketChat::shutdown`] (a server that failed to start): the bridge ends.
    fn drop(&mut self) {
        self.bridge.abort();
    }
}

/// A client connected: it joins its target's chat, and a room of its own (so the lines it
/// says come back to everyone but itself).
fn connected(socket: SocketRef, registry: Arc<Registry>) {
    let target = target(&socket.req_parts().uri);
    let me = ViewerId(format!("sio-{}", socket.id));
    tracing::debug!(
        "socket.io client {} joins the chat of `{target}`",
        me.short()
    );
    socket.join([target_room(&target), own_room(&me)]);
    let limit = Arc::new(Mutex::new(ChatLimit::new(std::time::Instant::now())));
    socket.on(
        EVENT,
        move |socket: SocketRef, Data(said): Data<serde_json::Value>| {
            let line = match &said {
                serde_json::Value::String(text) => limit
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .admit(std::time::Instant::now(), text),
                other => {
                    tracing::debug!(
                        "socket.io client {}: a {EVENT} that is not a string ({other}) is ignored",
                        me.short()
                    );
                    None
                }
            };
            let (registry, target, me) = (registry.clone(), target.clone(), me.clone());
            async move {
                let Some(line) = line else { return };
                // Through the target's relay when it has one (which brings it back to the
                // Socket.IO clients but this one), else straight to the other clients.
                if !registry.say(&target, &me, &line) {
                    let _ = socket.to(target_room(&target)).emit(EVENT, &line).await;
                }
            }
        },
    );
}

/// Brings every line the WebRTC chats relay to the Socket.IO clients of its target (but to
/// the one that said it, if a client did), until told to stop.
async fn bridge(io: SocketIo, bus: ChatBus, stop: Arc<Notify>) {
    let mut lines = bus.subscribe();
    loop {
        let line: ChatLine = tokio::select! {
            _ = stop.notified() => return,
            line = lines.recv() => match line {
                Ok(line) => line,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("socket.io chat: {n} line(s) missed (the clients are slow)");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let _ = io
            .to(target_room(&line.target))
            .except(own_room(&ViewerId(line.from)))
            .emit(EVENT, &line.text)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_room_query_or_the_lobby() {
        let of = |uri: &str| target(&uri.parse().expect("uri"));
        assert_eq!(of("/socket.io/"), "lobby");
        assert_eq!(of("/socket.io/?EIO=4&transport=polling"), "lobby");
        assert_eq!(of("/socket.io/?room=cam&EIO=4"), "cam");
        assert_eq!(of("/socket.io/?EIO=4&room=my%20room"), "my room");
        assert_eq!(of("/socket.io/?room=a+b"), "a b");
        assert_eq!(of("/socket.io/?room="), "lobby");
        assert_eq!(of("/socket.io/?room=lobby%2Fana-1234"), "lobby");
    }

    #[test]
    fn only_requests_after_the_handshake_carry_a_session() {
        let has = |uri: &str| has_session(&uri.parse().expect("uri"));
        assert!(!has("/socket.io/?EIO=4&transport=polling"));
        assert!(!has("/socket.io/?EIO=4&transport=polling&xsid=1"));
        assert!(has("/socket.io/?EIO=4&transport=polling&sid=abc"));
    }
}
