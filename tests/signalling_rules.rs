//! The signalling router, one test per rule, driven without sockets; and one check over a real
//! WebSocket that malformed input gets an `error` and leaves the connection up.

mod common;
use mediaweave::signalling::protocol::{
    IceCandidate, Incoming, Outgoing, PeerId, PeerMessage, PeerPayload, PeerStatus, Role, Sdp,
    SessionId,
};
use mediaweave::signalling::router::{Delivery, Router};
use serde_json::json;

fn id(s: &str) -> PeerId {
    PeerId(s.into())
}

fn status(roles: &[Role], name: &str) -> Incoming {
    Incoming::SetPeerStatus(PeerStatus {
        roles: roles.to_vec(),
        meta: Some(json!({ "name": name })),
        peer_id: None,
    })
}

/// A router with producer "prod" (meta.name = cam), consumer "cons" and listener "lis".
fn setup() -> Router {
    let mut r = Router::new();
    for p in ["prod", "cons", "lis"] {
        r.connect_as(id(p));
    }
    r.handle(&id("lis"), status(&[Role::Listener], "l"));
    r.handle(&id("prod"), status(&[Role::Producer], "cam"));
    r
}

fn start(r: &mut Router) -> SessionId {
    let out = r.handle(
        &id("cons"),
        Incoming::StartSession {
            peer_id: id("prod"),
            offer: None,
        },
    );
    out.iter()
        .find_map(|(_, m)| match m {
            Outgoing::SessionStarted { session_id, .. } => Some(session_id.clone()),
            _ => None,
        })
        .expect("sessionStarted")
}

fn only_error_to(out: &[Delivery], peer: &str) -> String {
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, id(peer));
    match &out[0].1 {
        Outgoing::Error { details } => details.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn welcome_names_the_new_peer() {
    let mut r = Router::new();
    let (peer, out) = r.connect();
    assert_eq!(
        out,
        vec![(peer.clone(), Outgoing::Welcome { peer_id: peer })]
    );
}

#[test]
fn list_returns_producers_with_meta() {
    let mut r = setup();
    let out = r.handle(&id("cons"), Incoming::List);
    assert_eq!(out.len(), 1);
    let Outgoing::List { producers } = &out[0].1 else {
        panic!("{out:?}")
    };
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].id, id("prod"));
    assert_eq!(producers[0].meta, Some(json!({"name": "cam"})));
}

#[test]
fn listeners_hear_producers_come_and_go() {
    let mut r = Router::new();
    r.connect_as(id("lis"));
    r.connect_as(id("prod"));
    r.handle(&id("lis"), status(&[Role::Listener], "l"));
    let out = r.handle(&id("prod"), status(&[Role::Producer], "cam"));
    assert!(
        matches!(&out[..], [(to, Outgoing::PeerStatusChanged(s))] if *to == id("lis") && s.has(Role::Producer) && s.peer_id == Some(id("prod"))),
        "{out:?}"
    );
    let out = r.disconnect(&id("prod"));
    assert!(
        matches!(&out[..], [(to, Outgoing::PeerStatusChanged(s))] if *to == id("lis") && s.roles.is_empty()),
        "{out:?}"
    );
}

#[test]
fn start_session_routes_to_both_members() {
    let mut r = setup();
    let out = r.handle(
        &id("cons"),
        Incoming::StartSession {
            peer_id: id("prod"),
            offer: None,
        },
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let sid = match &out[0] {
        (
            to,
            Outgoing::StartSession {
                peer_id,
                session_id,
                offer: None,
            },
        ) => {
            assert_eq!((to, peer_id), (&id("prod"), &id("cons")));
            session_id.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        out[1],
        (
            id("cons"),
            Outgoing::SessionStarted {
                peer_id: id("prod"),
                session_id: sid
            }
        )
    );
}

#[test]
fn peer_messages_are_forwarded_within_the_session() {
    let mut r = setup();
    let sid = start(&mut r);
    let offer = PeerMessage {
        session_id: sid.clone(),
        payload: PeerPayload::Sdp(Sdp::Offer { sdp: "v=0".into() }),
    };
    let out = r.handle(&id("prod"), Incoming::Peer(offer.clone()));
    assert_eq!(out, vec![(id("cons"), Outgoing::Peer(offer))]);
    let ice = PeerMessage {
        session_id: sid,
        payload: PeerPayload::Ice(IceCandidate::new("candidate:1".into(), 0)),
    };
    let out = r.handle(&id("cons"), Incoming::Peer(ice.clone()));
    assert_eq!(out, vec![(id("prod"), Outgoing::Peer(ice))]);
}

#[test]
fn wrong_session_id_is_an_error() {
    let mut r = setup();
    let out = r.handle(
        &id("cons"),
        Incoming::Peer(PeerMessage {
            session_id: SessionId("nope".into()),
            payload: PeerPayload::Ice(IceCandidate::new("c".into(), 0)),
        }),
    );
    assert_eq!(only_error_to(&out, "cons"), "no session nope");
}

#[test]
fn outsiders_cannot_use_a_session() {
    let mut r = setup();
    let sid = start(&mut r);
    let out = r.handle(
        &id("lis"),
        Incoming::Peer(PeerMessage {
            session_id: sid.clone(),
            payload: PeerPayload::Ice(IceCandidate::new("c".into(), 0)),
        }),
    );
    assert_eq!(
        only_error_to(&out, "lis"),
        format!("session {sid} is not yours")
    );
    let out = r.handle(
        &id("lis"),
        Incoming::EndSession {
            session_id: sid.clone(),
            reason: None,
        },
    );
    assert_eq!(
        only_error_to(&out, "lis"),
        format!("session {sid} is not yours")
    );
}

#[test]
fn start_session_with_a_non_producer_or_unknown_peer_is_an_error() {
    let mut r = setup();
    let out = r.handle(
        &id("prod"),
        Incoming::StartSession {
            peer_id: id("lis"),
            offer: None,
        },
    );
    assert!(only_error_to(&out, "prod").contains("is not a producer"));
    let out = r.handle(
        &id("cons"),
        Incoming::StartSession {
            peer_id: id("ghost"),
            offer: None,
        },
    );
    assert_eq!(only_error_to(&out, "cons"), "no peer with id ghost");
    let out = r.handle(
        &id("prod"),
        Incoming::StartSession {
            peer_id: id("prod"),
            offer: None,
        },
    );
    assert_eq!(
        only_error_to(&out, "prod"),
        "cannot start a session with yourself"
    );
}

#[test]
fn malformed_json_is_an_error_and_changes_nothing() {
    let mut r = setup();
    let sid = start(&mut r);
    for bad in [
        "not json",
        "{\"type\":\"dance\"}",
        "{\"type\":\"peer\"}",
        "[]",
    ] {
        let out = r.handle_text(&id("cons"), bad);
        assert!(
            only_error_to(&out, "cons").starts_with("malformed message"),
            "{bad}"
        );
    }
    assert!(r.session(&sid).is_some());
}

#[test]
fn end_session_tells_the_other_member() {
    let mut r = setup();
    let sid = start(&mut r);
    let out = r.handle(
        &id("cons"),
        Incoming::EndSession {
            session_id: sid.clone(),
            reason: None,
        },
    );
    assert_eq!(
        out,
        vec![(
            id("prod"),
            Outgoing::EndSession {
                session_id: sid.clone()
            }
        )]
    );
    assert_eq!(r.session_count(), 0);
    let out = r.handle(
        &id("cons"),
        Incoming::EndSession {
            session_id: sid.clone(),
            reason: None,
        },
    );
    assert_eq!(only_error_to(&out, "cons"), format!("no session {sid}"));
}

#[test]
fn a_reason_to_end_reaches_the_other_member_as_an_error() {
    let mut r = setup();
    let sid = start(&mut r);
    let out = r.handle(
        &id("prod"),
        Incoming::EndSession {
            session_id: sid.clone(),
            reason: Some("the offer does not accept H264 video".into()),
        },
    );
    assert_eq!(
        out,
        vec![
            (
                id("cons"),
                Outgoing::error(format!(
                    "session {sid} ended: the offer does not accept H264 video"
                ))
            ),
            (
                id("cons"),
                Outgoing::EndSession {
                    session_id: sid.clone()
                }
            ),
        ]
    );
    assert_eq!(r.session_count(), 0);
}

#[test]
fn peer_gone_mid_session_ends_it_for_the_other() {
    let mut r = setup();
    let sid = start(&mut r);
    let out = r.disconnect(&id("cons"));
    assert_eq!(
        out,
        vec![(id("prod"), Outgoing::EndSession { session_id: sid })]
    );
    assert_eq!(r.session_count(), 0);
    // The producer is still listed.
    let out = r.handle(&id("lis"), Incoming::List);
    assert!(matches!(&out[0].1, Outgoing::List { producers } if producers.len() == 1));
}

#[test]
fn producer_stopping_ends_its_sessions() {
    let mut r = setup();
    let sid = start(&mut r);
    let out = r.handle(&id("prod"), status(&[], "cam"));
    assert!(
        out.contains(&(id("cons"), Outgoing::EndSession { session_id: sid })),
        "{out:?}"
    );
    assert_eq!(r.session_count(), 0);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame, as JSON.
async fn next_json(ws: &mut Ws) -> serde_json::Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        if let Message::Text(t) = ws.next().await.expect("open").expect("frame") {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

#[test]
fn websocket_survives_malformed_input() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::TestServer::start(dir.path());
    let url = format!("{}/ws", server.base.replace("http://", "ws://"));
    server.rt().block_on(async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
        for bad in [
            Message::Text("{oops".into()),
            Message::Text("{\"type\":\"startSession\"}".into()),
            Message::Binary(vec![1, 2, 3].into()),
        ] {
            ws.send(bad).await.expect("send");
            let reply = next_json(&mut ws).await;
            assert_eq!(reply["type"], "error", "{reply}");
        }
        // Still up: a valid request is answered.
        ws.send(Message::Text(r#"{"type":"list"}"#.into()))
            .await
            .expect("send");
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type": "list", "producers": []})
        );
    });
    server.shutdown();
}
