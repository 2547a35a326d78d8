//! Signalling routing as a state machine: `(peer, message)` in, `(peer, message)` deliveries
//! out. No sockets, no tasks: [`super::server`] moves bytes, this decides.
//!
//! Rules (those of gst-webrtc-signalling-server, plus an `error` reply wherever it would stay
//! silent or drop the connection):
//! - a new connection gets `welcome` with its peer id;
//! - `setPeerStatus` sets roles and meta; listeners hear `peerStatusChanged` when a peer starts
//!   or stops producing;
//! - `list` / `listConsumers` answer with producers / passive consumers;
//! - `startSession` from a consumer to a producer gives the producer `startSession` and the
//!   consumer `sessionStarted` (a producer may likewise start one with a passive consumer);
//! - `peer` (SDP, ICE) is forwarded to the other member of the session, only by a member;
//! - `endSession` ends it for both; a disconnect ends every session of that peer;
//! - anything malformed, unknown or out of order gets `error` and changes nothing.

use super::protocol::{
    Incoming, Outgoing, PeerId, PeerInfo, PeerMessage, PeerStatus, Role, SessionId,
};
use std::collections::{BTreeMap, BTreeSet};

/// A message for one peer.
pub type Delivery = (PeerId, Outgoing);

#[derive(Debug, Default)]
struct Peer {
    status: PeerStatus,
    sessions: BTreeSet<SessionId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub producer: PeerId,
    pub consumer: PeerId,
}

impl Session {
    fn other(&self, peer: &PeerId) -> &PeerId {
        if *peer == self.producer {
            &self.consumer
        } else {
            &self.producer
        }
    }
}

#[derive(Debug, Default)]
pub struct Router {
    peers: BTreeMap<PeerId, Peer>,
    sessions: BTreeMap<SessionId, Session>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// A new connection with a fresh random id.
    pub fn connect(&mut self) -> (PeerId, Vec<Delivery>) {
        let id = PeerId(uuid::Uuid::new_v4().to_string());
        let out = self.connect_as(id.clone());
        (id, out)
    }

    /// A new connection with a chosen id (tests use readable ones).
    pub fn connect_as(&mut self, id: PeerId) -> Vec<Delivery> {
        self.peers.insert(id.clone(), Peer::default());
        vec![(id.clone(), Outgoing::Welcome { peer_id: id })]
    }

    pub fn session(&self, id: &SessionId) -> Option<&Session> {
        self.sessions.get(id)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `peer` has neither a role nor a session (it registered nothing yet).
    pub fn is_unregistered(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.status.roles.is_empty() && p.sessions.is_empty())
    }

    /// A text frame from `from`: parsed, then handled; unparseable text gets an error reply.
    pub fn handle_text(&mut self, from: &PeerId, text: &str) -> Vec<Delivery> {
        match serde_json::from_str::<Incoming>(text) {
            Ok(msg) => self.handle(from, msg),
            Err(e) => vec![reply_error(from, format!("malformed message: {e}"))],
        }
    }

    pub fn handle(&mut self, from: &PeerId, msg: Incoming) -> Vec<Delivery> {
        if !self.peers.contains_key(from) {
            return vec![reply_error(from, "unknown peer: connect first")];
        }
        match msg {
            Incoming::SetProtocolVersion { version } => {
                if version == "v1_0" {
                    Vec::new()
                } else {
                    vec![reply_error(
                        from,
                        format!(
                            "unsupported protocol version `{version}` (this server speaks v1_0)"
                        ),
                    )]
                }
            }
            Incoming::SetPeerStatus(status) => self.set_status(from, status),
            Incoming::List => vec![(
                from.clone(),
                Outgoing::List {
                    producers: self.with_role(Role::Producer),
                },
            )],
            Incoming::ListConsumers => vec![(
                from.clone(),
                Outgoing::ListConsumers {
                    consumers: self.with_role(Role::Consumer),
                },
            )],
            Incoming::StartSession { peer_id, offer } => self.start_session(from, &peer_id, offer),
            Incoming::Peer(msg) => self.forward(from, msg),
            Incoming::EndSession { session_id, reason } => {
                self.end_session_by(from, &session_id, reason)
            }
        }
    }

    /// The peer's connection is gone: end its sessions and tell listeners it stopped producing.
    pub fn disconnect(&mut self, peer: &PeerId) -> Vec<Delivery> {
        let mut out = Vec::new();
        let Some(state) = self.peers.get(peer) else {
            return out;
        };
        let was_producer = state.status.has(Role::Producer);
        let meta = state.status.meta.clone();
        let sessions: Vec<SessionId> = state.sessions.iter().cloned().collect();
        for sid in sessions {
            out.extend(self.end_session(&sid, Some(peer)));
        }
        self.peers.remove(peer);
        if was_producer {
            out.extend(self.tell_listeners(PeerStatus {
                roles: Vec::new(),
                meta,
                peer_id: Some(peer.clone()),
            }));
        }
        out
    }

    fn with_role(&self, role: Role) -> Vec<PeerInfo> {
        self.peers
            .iter()
            .filter(|(_, p)| p.status.has(role))
            .map(|(id, p)| PeerInfo {
                id: id.clone(),
                meta: p.status.meta.clone(),
            })
            .collect()
    }

    /// The meta a peer announced (producers name their pipeline in it), if the peer exists.
    pub fn meta_of(&self, peer: &PeerId) -> Option<Option<serde_json::Value>> {
        self.peers.get(peer).map(|p| p.status.meta.clone())
    }

    fn set_status(&mut self, from: &PeerId, status: PeerStatus) -> Vec<Delivery> {
        let Some(peer) = self.peers.get_mut(from) else {
            return Vec::new();
        };
        let was_producer = peer.status.has(Role::Producer);
        peer.status = PeerStatus {
            roles: status.roles,
            meta: status.meta,
            peer_id: None,
        };
        let is_producer = peer.status.has(Role::Producer);
        let mut out = Vec::new();
        if was_producer && !is_producer {
            // It no longer produces: the sessions it produced for are over.
            let produced: Vec<SessionId> = self
                .sessions
                .iter()
                .filter(|(_, s)| s.producer == *from)
                .map(|(id, _)| id.clone())
                .collect();
            for sid in produced {
                out.extend(self.end_session(&sid, None));
            }
        }
        if was_producer != is_producer {
            let mut status = self.peers[from].status.clone();
            status.peer_id = Some(from.clone());
            out.extend(self.tell_listeners(status));
        }
        out
    }

    fn tell_listeners(&self, status: PeerStatus) -> Vec<Delivery> {
        self.peers
            .iter()
            .filter(|(id, p)| p.status.has(Role::Listener) && Some(*id) != status.peer_id.as_ref())
            .map(|(id, _)| (id.clone(), Outgoing::PeerStatusChanged(status.clone())))
            .collect()
    }

    fn start_session(
        &mut self,
        from: &PeerId,
        target: &PeerId,
        offer: Option<String>,
    ) -> Vec<Delivery> {
        if from == target {
            return vec![reply_error(from, "cannot start a session with yourself")];
        }
        let Some(target_peer) = self.peers.get(target) else {
            return vec![reply_error(from, format!("no peer with id {target}"))];
        };
        let from_is_producer = self.peers[from].status.has(Role::Producer);
        let session = if target_peer.status.has(Role::Producer) {
            Session {
                producer: target.clone(),
                consumer: from.clone(),
            }
        } else if target_peer.status.has(Role::Consumer) && from_is_producer {
            Session {
                producer: from.clone(),
                consumer: target.clone(),
            }
        } else {
            return vec![reply_error(
                from,
                format!("peer {target} is not a producer (send `list` for producers)"),
            )];
        };
        let sid = SessionId(uuid::Uuid::new_v4().to_string());
        for member in [&session.producer, &session.consumer] {
            if let Some(p) = self.peers.get_mut(member) {
                p.sessions.insert(sid.clone());
            }
        }
        let (initiator, other) = (from.clone(), target.clone());
        self.sessions.insert(sid.clone(), session);
        vec![
            (
                other,
                Outgoing::StartSession {
                    peer_id: initiator.clone(),
                    session_id: sid.clone(),
                    offer,
                },
            ),
            (
                initiator,
                Outgoing::SessionStarted {
                    peer_id: target.clone(),
                    session_id: sid,
                },
            ),
        ]
    }

    fn forward(&mut self, from: &PeerId, msg: PeerMessage) -> Vec<Delivery> {
        let Some(session) = self.sessions.get(&msg.session_id) else {
            return vec![reply_error(from, format!("no session {}", msg.session_id))];
        };
        if session.producer != *from && session.consumer != *from {
            return vec![reply_error(
                from,
                format!("session {} is not yours", msg.session_id),
            )];
        }
        vec![(session.other(from).clone(), Outgoing::Peer(msg))]
    }

    /// A member ends session `sid`; the other member hears `reason` first, as an `error`.
    fn end_session_by(
        &mut self,
        from: &PeerId,
        sid: &SessionId,
        reason: Option<String>,
    ) -> Vec<Delivery> {
        match self.sessions.get(sid) {
            None => vec![reply_error(from, format!("no session {sid}"))],
            Some(s) if s.producer != *from && s.consumer != *from => {
                vec![reply_error(from, format!("session {sid} is not yours"))]
            }
            Some(s) => {
                let other = if s.producer == *from {
                    s.consumer.clone()
                } else {
                    s.producer.clone()
                };
                let mut out: Vec<Delivery> = reason
                    .map(|r| reply_error(&other, format!("session {sid} ended: {r}")))
                    .into_iter()
                    .collect();
                out.extend(self.end_session(sid, Some(from)));
                out
            }
        }
    }

    /// Removes a session and tells its members, except `quiet` (who ended it or is gone).
    fn end_session(&mut self, sid: &SessionId, quiet: Option<&PeerId>) -> Vec<Delivery> {
        let Some(session) = self.sessions.remove(sid) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for member in [&session.producer, &session.consumer] {
            if let Some(p) = self.peers.get_mut(member) {
                p.sessions.remove(sid);
            }
            if Some(member) != quiet {
                out.push((
                    member.clone(),
                    Outgoing::EndSession {
                        session_id: sid.clone(),
                    },
                ));
            }
        }
        out
    }
}

fn reply_error(to: &PeerId, details: impl Into<String>) -> Delivery {
    (to.clone(), Outgoing::error(details))
}
