//! The GStreamer WebRTC signalling protocol (JSON over WebSocket), as plain serde types.
//!
//! Wire-compatible with gst-webrtc-signalling-server, webrtcsink/webrtcsrc and gstwebrtc-api:
//! one JSON object per text frame, tagged by `"type"`, camelCase fields. No I/O here.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one signalling connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub String);

/// Identifies one session between a producer and a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Producer,
    Consumer,
    Listener,
}

/// A peer as listed to others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id: PeerId,
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
}

/// `setPeerStatus` / `peerStatusChanged`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    pub roles: Vec<Role>,
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<PeerId>,
}

impl PeerStatus {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// An SDP offer or answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Sdp {
    Offer { sdp: String },
    Answer { sdp: String },
}

/// An ICE candidate as browsers send it. Fields we do not use (`sdpMid`, `usernameFragment`)
/// are kept, so the server forwards the candidate unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default)]
    pub sdp_m_line_index: Option<u32>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl IceCandidate {
    pub fn new(candidate: String, sdp_m_line_index: u32) -> IceCandidate {
        IceCandidate {
            candidate,
            sdp_m_line_index: Some(sdp_m_line_index),
            extra: serde_json::Map::new(),
        }
    }
}

/// What a `peer` message carries: an SDP or an ICE candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PeerPayload {
    Sdp(Sdp),
    Ice(IceCandidate),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerMessage {
    pub session_id: SessionId,
    #[serde(flatten)]
    pub payload: PeerPayload,
}

/// Messages a peer sends to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Incoming {
    SetProtocolVersion {
        version: String,
    },
    SetPeerStatus(PeerStatus),
    #[serde(rename_all = "camelCase")]
    StartSession {
        peer_id: PeerId,
        #[serde(default)]
        offer: Option<String>,
    },
    /// `reason` (an extension; other servers ignore it): why the sender ends the session,
    /// passed on to the other member as an `error` before its `endSession`.
    #[serde(rename_all = "camelCase")]
    EndSession {
        session_id: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Peer(PeerMessage),
    List,
    ListConsumers,
}

/// Messages the server sends to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Outgoing {
    #[serde(rename_all = "camelCase")]
    Welcome {
        peer_id: PeerId,
    },
    PeerStatusChanged(PeerStatus),
    #[serde(rename_all = "camelCase")]
    StartSession {
        peer_id: PeerId,
        session_id: SessionId,
        offer: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    SessionStarted {
        peer_id: PeerId,
        session_id: SessionId,
    },
    #[serde(rename_all = "camelCase")]
    EndSession {
        session_id: SessionId,
    },
    Peer(PeerMessage),
    List {
        producers: Vec<PeerInfo>,
    },
    ListConsumers {
        consumers: Vec<PeerInfo>,
    },
    Error {
        details: String,
    },
}

impl Outgoing {
    pub fn error(details: impl Into<String>) -> Outgoing {
        Outgoing::Error {
            details: details.into(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain types cannot fail (string keys, no maps with other keys).
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","details":"internal serialization error"}"#.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peer_messages_match_the_wire_format() {
        let ice: Incoming = serde_json::from_value(json!({
            "type": "peer", "sessionId": "s1",
            "ice": {"candidate": "candidate:1 1 UDP 1 127.0.0.1 5000 typ host", "sdpMLineIndex": 0}
        }))
        .expect("ice parses");
        assert_eq!(
            ice,
            Incoming::Peer(PeerMessage {
                session_id: SessionId("s1".into()),
                payload: PeerPayload::Ice(IceCandidate::new(
                    "candidate:1 1 UDP 1 127.0.0.1 5000 typ host".into(),
                    0
                ))
            })
        );
        let sdp = Outgoing::Peer(PeerMessage {
            session_id: SessionId("s1".into()),
            payload: PeerPayload::Sdp(Sdp::Offer { sdp: "v=0".into() }),
        });
        assert_eq!(
            serde_json::to_value(&sdp).expect("serializes"),
            json!({"type": "peer", "sessionId": "s1", "sdp": {"type": "offer", "sdp": "v=0"}})
        );
    }

    #[test]
    fn ice_candidates_keep_fields_we_do_not_use() {
        let raw = json!({
            "type": "peer", "sessionId": "s",
            "ice": {"candidate": "candidate:1", "sdpMLineIndex": null, "sdpMid": "0", "usernameFragment": "u"}
        });
        let msg: Incoming = serde_json::from_value(raw.clone()).expect("parses");
        assert_eq!(serde_json::to_value(&msg).expect("serializes"), raw);
    }

    #[test]
    fn session_messages_round_trip() {
        let start: Incoming =
            serde_json::from_str(r#"{"type":"startSession","peerId":"p"}"#).expect("parses");
        assert_eq!(
            start,
            Incoming::StartSession {
                peer_id: PeerId("p".into()),
                offer: None
            }
        );
        let status: Incoming = serde_json::from_str(
            r#"{"type":"setPeerStatus","roles":["producer"],"meta":{"name":"cam"}}"#,
        )
        .expect("parses");
        let Incoming::SetPeerStatus(s) = status else {
            panic!("not a status")
        };
        assert!(s.has(Role::Producer));
        assert_eq!(
            Outgoing::Welcome {
                peer_id: PeerId("x".into())
            }
            .to_json(),
            r#"{"type":"welcome","peerId":"x"}"#
        );
    }
}
