//! The offer/answer negotiation of one peer session, sans I/O: [`Input`]s in (what webrtcbin,
//! the pipeline and the peer reported, and the passing of time), [`Action`]s out (what the
//! session task must do to webrtcbin or tell the peer). No GStreamer, no channels: every
//! rule is unit-tested below, the session task only carries actions out.
//!
//! The three ways a session negotiates:
//! - [`Start::Publisher`] (WHIP, `/publish`): the peer offers what it sends; set its offer at
//!   once (nothing of ours has to flow first), answer with every candidate gathered.
//! - [`Start::Viewer`] (WHEP, `POST /offer`, a signalling consumer that offers): the peer
//!   offers to receive; wait until our media flows (the answer's codec parameters come from
//!   the stream), then the same.
//! - [`Start::Offerer`] (the signalling protocol): we offer once webrtcbin wants to negotiate
//!   and our media flows; candidates trickle; the peer's answer comes back later.
//! - [`Start::WhipClient`] (a `whip` output publishing to another server): the same, but the
//!   offer goes out once with every candidate gathered (one HTTP request, no trickle).
//! - [`Start::WhepClient`] (a `whep` source pulling from another server): we offer to
//!   receive, so nothing of ours has to flow first; the offer goes out gathered, like a
//!   WHIP client's.

use std::time::{Duration, Instant};

/// How long our own media may take to start flowing.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer waits for ICE gathering before it goes out with what was gathered.
pub const GATHERING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connected peer may stay disconnected (ICE) before the session ends.
pub const DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Publisher,
    Viewer,
    Offerer,
    WhipClient,
    WhepClient,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Our media reached webrtcbin (its caps, hence the codec parameters, are known).
    MediaFlowing,
    /// webrtcbin asks for a negotiation (its transceivers are ready).
    NegotiationNeeded,
    /// The remote description was set (or refused).
    RemoteSet(Result<(), String>),
    /// webrtcbin created our offer or answer (or failed to); `gathered`: ICE gathering was
    /// already complete at that moment.
    Created {
        result: Result<(), String>,
        gathered: bool,
    },
    GatheringComplete,
    /// The peer's answer to our offer arrived.
    RemoteAnswer,
    Connected,
    Disconnected,
    Failed,
    Closed,
    /// The time [`Negotiation::deadline`] named has come.
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Give webrtcbin the peer's offer.
    SetRemoteOffer,
    /// Give webrtcbin the peer's answer.
    SetRemoteAnswer,
    CreateAnswer,
    CreateOffer,
    /// Make what webrtcbin created the local description.
    SetLocal,
    /// Send the local description (an answer, candidates included) to the peer.
    SendAnswer,
    /// Send our offer to the peer (candidates follow as they come).
    SendOffer,
    /// ICE and DTLS are up: the peer counts as connected from now on.
    Connected,
    /// The session is over: why, and whether that is a failure.
    End(Result<&'static str, String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitMedia,
    AwaitRemoteSet,
    AwaitAnswer,
    AwaitGathering(Instant),
    AwaitOfferPrereqs {
        negotiation: bool,
        media: bool,
    },
    AwaitOffer,
    /// Our offer is set locally; it goes out once ICE gathering is complete (or times out).
    AwaitOfferGathering(Instant),
    /// Our offer is out; the peer's answer is awaited (and then served).
    Offered,
    /// Negotiated: serving until the peer goes away.
    Serving,
    Ended,
}

#[derive(Debug)]
pub struct Negotiation {
    phase: Phase,
    media_deadline: Instant,
    connect_deadline: Instant,
    connected: bool,
    disconnected_since: Option<Instant>,
    /// Our offer goes out with every candidate gathered.
    gathered_offer: bool,
}

impl Negotiation {
    /// A session starting at `now`; the peer has `connect_timeout` to connect. Returns the
    /// first actions too.
    pub fn new(start: Start, now: Instant, connect_timeout: Duration) -> (Self, Vec<Action>) {
        let (phase, actions) = match start {
            Start::Publisher => (Phase::AwaitRemoteSet, vec![Action::SetRemoteOffer]),
            Start::Viewer => (Phase::AwaitMedia, vec![]),
            Start::Offerer | Start::WhipClient | Start::WhepClient => (
                Phase::AwaitOfferPrereqs {
                    negotiation: false,
                    // A receiver has no media of its own to wait for.
                    media: start == Start::WhepClient,
                },
                vec![],
            ),
        };
        let n = Negotiation {
            phase,
            media_deadline: now + MEDIA_TIMEOUT,
            connect_deadline: now + connect_timeout,
            connected: false,
            disconnected_since: None,
            gathered_offer: matches!(start, Start::WhipClient | Start::WhepClient),
        };
        (n, actions)
    }

    /// When to call [`Negotiation::handle`] with [`Input::Timeout`] if nothing else happens;
    /// None: no deadline (connected and well).
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ended => None,
            Phase::AwaitMedia | Phase::AwaitOfferPrereqs { .. } => Some(self.media_deadline),
            Phase::AwaitGathering(until) | Phase::AwaitOfferGathering(until) => Some(until),
            _ if !self.connected => Some(self.connect_deadline),
            _ => self.disconnected_since.map(|t| t + DISCONNECTED_TIMEOUT),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        if self.phase == Phase::Ended {
            return vec![];
        }
        let actions = self.step(input, now);
        if actions.iter().any(|a| matches!(a, Action::End(_))) {
            self.phase = Phase::Ended;
        }
        actions
    }

    fn step(&mut self, input: Input, now: Instant) -> Vec<Action> {
        use Action::*;
        // A timer that fires early, or when nothing is due, changes nothing.
        if input == Input::Timeout && self.deadline().is_none_or(|d| now < d) {
            return vec![];
        }
        match (input, self.phase) {
            (Input::MediaFlowing, Phase::AwaitMedia) => {
                self.phase = Phase::AwaitRemoteSet;
                vec![SetRemoteOffer]
            }
            (Input::MediaFlowing, Phase::AwaitOfferPrereqs { negotiation, .. }) => {
                self.offer_when_ready(negotiation, true)
            }
            (Input::NegotiationNeeded, Phase::AwaitOfferPrereqs { media, .. }) => {
                self.offer_when_ready(true, media)
            }
            (Input::RemoteSet(Err(e)), _) | (Input::Created { result: Err(e), .. }, _) => {
                vec![End(Err(e))]
            }
            (Input::RemoteSet(Ok(())), Phase::AwaitRemoteSet) => {
                self.phase = Phase::AwaitAnswer;
                vec![CreateAnswer]
            }
            (Input::Created { gathered, .. }, Phase::AwaitAnswer) => {
                if gathered {
                    self.phase = Phase::Serving;
                    vec![SetLocal, SendAnswer]
                } else {
                    self.phase = Phase::AwaitGathering(now + GATHERING_TIMEOUT);
                    vec![SetLocal]
                }
            }
            (Input::Created { gathered, .. }, Phase::AwaitOffer) => {
                if self.gathered_offer && !gathered {
                    self.phase = Phase::AwaitOfferGathering(now + GATHERING_TIMEOUT);
                    vec![SetLocal]
                } else {
                    self.phase = Phase::Offered;
                    vec![SetLocal, SendOffer]
                }
            }
            (Input::GatheringComplete | Input::Timeout, Phase::AwaitOfferGathering(_)) => {
                self.phase = Phase::Offered;
                vec![SendOffer]
            }
            (Input::GatheringComplete | Input::Timeout, Phase::AwaitGathering(_)) => {
                // On timeout: answer with the candidates gathered so far rather than not at all.
                self.phase = Phase::Serving;
                vec![SendAnswer]
            }
            (Input::RemoteAnswer, Phase::Offered) => {
                self.phase = Phase::Serving;
                vec![SetRemoteAnswer]
            }
            (Input::RemoteAnswer, _) => vec![End(Err(
                "an answer arrived while no offer of ours was waiting for one".into(),
            ))],
            (Input::Connected, _) => {
                self.disconnected_since = None;
                if std::mem::replace(&mut self.connected, true) {
                    vec![]
                } else {
                    vec![Connected]
                }
            }
            (Input::Disconnected, _) => {
                self.disconnected_since.get_or_insert(now);
                vec![]
            }
            (Input::Failed, _) => vec![End(Err("connection failed (ICE or DTLS)".into()))],
            (Input::Closed, _) => vec![End(Ok("peer closed the connection"))],
            (Input::Timeout, Phase::AwaitMedia | Phase::AwaitOfferPrereqs { .. }) => {
                vec![End(Err("no media from the pipeline within 10 s".into()))]
            }
            (Input::Timeout, _) if !self.connected => vec![End(Err(
                "the peer did not connect in time (ICE/DTLS)".into(),
            ))],
            (Input::Timeout, _) if self.disconnected_since.is_some() => {
                vec![End(Err("the peer stayed disconnected for 10 s".into()))]
            }
            // Anything else changes nothing (a late or repeated report).
            _ => vec![],
        }
    }

    fn offer_when_ready(&mut self, negotiation: bool, media: bool) -> Vec<Action> {
        if negotiation && media {
            self.phase = Phase::AwaitOffer;
            vec![Action::CreateOffer]
        } else {
            self.phase = Phase::AwaitOfferPrereqs { negotiation, media };
            vec![]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Action::*;
    use super::*;

    const CONNECT: Duration = Duration::from_secs(10);

    /// A publisher's session whose remote offer is set: it is creating its answer.
    fn answering(t: Instant) -> Negotiation {
        let (mut n, _) = Negotiation::new(Start::Publisher, t, CONNECT);
        n.handle(Input::RemoteSet(Ok(())), t);
        n
    }

    /// A publisher's session whose answer (ICE gathered) went out.
    fn answered(t: Instant) -> Negotiation {
        let mut n = answering(t);
        n.handle(created(true), t);
        n
    }

    fn created(gathered: bool) -> Input {
        Input::Created {
            result: Ok(()),
            gathered,
        }
    }

    #[test]
    fn a_publisher_offer_is_set_at_once() {
        let (_, first) = Negotiation::new(Start::Publisher, Instant::now(), CONNECT);
        assert_eq!(first, vec![SetRemoteOffer]);
    }

    #[test]
    fn a_viewer_offer_waits_for_our_media() {
        let t = Instant::now();
        let (mut n, first) = Negotiation::new(Start::Viewer, t, CONNECT);
        assert_eq!(first, vec![]);
        assert_eq!(n.handle(Input::NegotiationNeeded, t), vec![]);
        assert_eq!(n.handle(Input::MediaFlowing, t), vec![SetRemoteOffer]);
        assert_eq!(n.handle(Input::MediaFlowing, t), vec![], "only once");
    }

    #[test]
    fn the_answer_follows_the_remote_offer() {
        let t = Instant::now();
        let (mut n, _) = Negotiation::new(Start::Publisher, t, CONNECT);
        assert_eq!(n.handle(Input::RemoteSet(Ok(())), t), vec![CreateAnswer]);
    }

    #[test]
    fn an_answer_goes_out_once_gathering_is_complete() {
        let t = Instant::now();
        let mut n = answering(t);
        assert_eq!(n.handle(created(false), t), vec![SetLocal]);
        assert_eq!(n.deadline(), Some(t + GATHERING_TIMEOUT));
        assert_eq!(n.handle(Input::GatheringComplete, t), vec![SendAnswer]);
        assert_eq!(n.handle(Input::GatheringComplete, t), vec![], "sent once");
    }

    #[test]
    fn an_answer_goes_out_at_once_when_already_gathered() {
        let t = Instant::now();
        let mut n = answering(t);
        assert_eq!(n.handle(created(true), t), vec![SetLocal, SendAnswer]);
    }

    #[test]
    fn slow_gathering_answers_with_what_it_has() {
        let t = Instant::now();
        let mut n = answering(t);
        n.handle(created(false), t);
        let later = t + GATHERING_TIMEOUT;
        assert_eq!(n.handle(Input::Timeout, later), vec![SendAnswer]);
    }

    #[test]
    fn we_offer_when_negotiation_is_needed_and_media_flows_in_any_order() {
        let t = Instant::now();
        for order in [
            [Input::NegotiationNeeded, Input::MediaFlowing],
            [Input::MediaFlowing, Input::NegotiationNeeded],
        ] {
            let (mut n, first) = Negotiation::new(Start::Offerer, t, CONNECT);
            assert_eq!(first, vec![]);
            let [a, b] = order;
            assert_eq!(n.handle(a, t), vec![]);
            assert_eq!(n.handle(b, t), vec![CreateOffer]);
            assert_eq!(n.handle(created(false), t), vec![SetLocal, SendOffer]);
        }
    }

    #[test]
    fn a_whip_client_offers_once_every_candidate_is_gathered() {
        let t = Instant::now();
        let (mut n, _) = Negotiation::new(Start::WhipClient, t, CONNECT);
        n.handle(Input::NegotiationNeeded, t);
        assert_eq!(n.handle(Input::MediaFlowing, t), vec![CreateOffer]);
        assert_eq!(n.handle(created(false), t), vec![SetLocal]);
        assert_eq!(n.deadline(), Some(t + GATHERING_TIMEOUT));
        assert_eq!(n.handle(Input::GatheringComplete, t), vec![SendOffer]);
        assert_eq!(n.handle(Input::RemoteAnswer, t), vec![SetRemoteAnswer]);
        // Gathered already when created: at once; a slow gathering: what there is, in time.
        let (mut n, _) = Negotiation::new(Start::WhipClient, t, CONNECT);
        n.handle(Input::NegotiationNeeded, t);
        n.handle(Input::MediaFlowing, t);
        assert_eq!(n.handle(created(true), t), vec![SetLocal, SendOffer]);
        let (mut n, _) = Negotiation::new(Start::WhipClient, t, CONNECT);
        n.handle(Input::NegotiationNeeded, t);
        n.handle(Input::MediaFlowing, t);
        n.handle(created(false), t);
        assert_eq!(
            n.handle(Input::Timeout, t + GATHERING_TIMEOUT),
            vec![SendOffer]
        );
    }

    #[test]
    fn a_whep_client_offers_to_receive_without_media_of_its_own() {
        let t = Instant::now();
        let (mut n, first) = Negotiation::new(Start::WhepClient, t, CONNECT);
        assert_eq!(first, vec![]);
        assert_eq!(n.handle(Input::NegotiationNeeded, t), vec![CreateOffer]);
        assert_eq!(n.handle(created(false), t), vec![SetLocal]);
        assert_eq!(n.handle(Input::GatheringComplete, t), vec![SendOffer]);
        assert_eq!(n.handle(Input::RemoteAnswer, t), vec![SetRemoteAnswer]);
    }

    #[test]
    fn the_peer_answer_is_taken_only_after_our_offer() {
        let t = Instant::now();
        let (mut n, _) = Negotiation::new(Start::Offerer, t, CONNECT);
        let early = n.handle(Input::RemoteAnswer, t);
        assert!(
            matches!(&early[..], [End(Err(e))] if e.contains("no offer")),
            "{early:?}"
        );

        let (mut n, _) = Negotiation::new(Start::Offerer, t, CONNECT);
        n.handle(Input::NegotiationNeeded, t);
        n.handle(Input::MediaFlowing, t);
        n.handle(created(false), t);
        assert_eq!(n.handle(Input::RemoteAnswer, t), vec![SetRemoteAnswer]);
        // A second answer is not another negotiation.
        let again = n.handle(Input::RemoteAnswer, t);
        assert!(matches!(&again[..], [End(Err(_))]), "{again:?}");
    }

    #[test]
    fn errors_from_webrtcbin_end_the_session() {
        let t = Instant::now();
        let (mut n, _) = Negotiation::new(Start::Publisher, t, CONNECT);
        assert_eq!(
            n.handle(Input::RemoteSet(Err("refused".into())), t),
            vec![End(Err("refused".into()))]
        );
        assert_eq!(n.handle(Input::RemoteSet(Ok(())), t), vec![], "over");
        let mut n = answering(t);
        let failed = Input::Created {
            result: Err("no answer".into()),
            gathered: true,
        };
        assert_eq!(n.handle(failed, t), vec![End(Err("no answer".into()))]);
    }

    #[test]
    fn our_media_must_flow_within_its_timeout() {
        let t = Instant::now();
        for start in [Start::Viewer, Start::Offerer] {
            let (mut n, _) = Negotiation::new(start, t, CONNECT);
            assert_eq!(n.deadline(), Some(t + MEDIA_TIMEOUT));
            let out = n.handle(Input::Timeout, t + MEDIA_TIMEOUT);
            assert!(
                matches!(&out[..], [End(Err(e))] if e.contains("no media")),
                "{out:?}"
            );
        }
    }

    #[test]
    fn the_peer_must_connect_in_time() {
        let t = Instant::now();
        let mut n = answered(t);
        assert_eq!(n.deadline(), Some(t + CONNECT));
        // Woken early (a spurious timer): nothing happens.
        assert_eq!(n.handle(Input::Timeout, t + Duration::from_secs(1)), vec![]);
        let out = n.handle(Input::Timeout, t + CONNECT);
        assert!(
            matches!(&out[..], [End(Err(e))] if e.contains("did not connect")),
            "{out:?}"
        );
    }

    #[test]
    fn connected_is_reported_once_and_clears_the_deadline() {
        let t = Instant::now();
        let mut n = answered(t);
        assert_eq!(n.handle(Input::Connected, t), vec![Connected]);
        assert_eq!(n.handle(Input::Connected, t), vec![]);
        assert!(n.is_connected());
        assert_eq!(n.deadline(), None);
    }

    #[test]
    fn a_peer_disconnected_too_long_ends_the_session() {
        let t = Instant::now();
        let mut n = answered(t);
        n.handle(Input::Connected, t);
        assert_eq!(n.handle(Input::Disconnected, t), vec![]);
        assert_eq!(n.deadline(), Some(t + DISCONNECTED_TIMEOUT));
        // Back within the time: the deadline goes away.
        n.handle(Input::Connected, t + Duration::from_secs(2));
        assert_eq!(n.deadline(), None);
        n.handle(Input::Disconnected, t + Duration::from_secs(3));
        let out = n.handle(
            Input::Timeout,
            t + Duration::from_secs(3) + DISCONNECTED_TIMEOUT,
        );
        assert!(
            matches!(&out[..], [End(Err(e))] if e.contains("disconnected")),
            "{out:?}"
        );
    }

    #[test]
    fn failed_and_closed_end_the_session() {
        let t = Instant::now();
        let (mut n, _) = Negotiation::new(Start::Viewer, t, CONNECT);
        assert!(matches!(&n.handle(Input::Failed, t)[..], [End(Err(_))]));
        assert_eq!(n.handle(Input::Closed, t), vec![], "already over");
        let (mut n, _) = Negotiation::new(Start::Viewer, t, CONNECT);
        assert_eq!(
            n.handle(Input::Closed, t),
            vec![End(Ok("peer closed the connection"))]
        );
        assert_eq!(n.deadline(), None);
    }
}
