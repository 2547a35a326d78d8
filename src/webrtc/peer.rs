//! What viewer and publisher sessions have in common on the GStreamer side: webrtcbin set up
//! with our certificate, ICE settings and callbacks that only report [`Event`]s; the owned
//! pipeline; and the asynchronous webrtcbin calls whose results come back as events.

use super::cert::{self, DtlsCertificate};
use super::types::{IceConfig, OFFER_REFUSED};
use super::viewer::Continuity;
use gst::glib;
use gst::prelude::*;
use gst_utils::streamproducer::ConsumptionLink;
use gst_webrtc::{
    WebRTCDataChannel, WebRTCPeerConnectionState, WebRTCSDPType, WebRTCSessionDescription,
};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What GStreamer callbacks report to the session task.
pub enum Event {
    NegotiationNeeded,
    MediaFlowing,
    RemoteSet(Result<(), String>),
    Created(Result<WebRTCSessionDescription, String>),
    IceCandidate(u32, String),
    GatheringComplete,
    State(WebRTCPeerConnectionState),
    DataChannel(WebRTCDataChannel),
    ChatIn(String),
    Stats(gst::Structure),
    /// The viewer's bandwidth estimate changed (bit/s, from its TWCC feedback).
    Estimate(u32),
    /// The peer said goodbye (RTCP BYE).
    PeerGone(&'static str),
    /// End-of-stream reached every sink (a publisher's recording is finalized).
    Eos,
    /// A publisher's pipeline reached PLAYING (its clock and base time are final).
    Playing,
    Error(String),
}

/// Events queued from GStreamer threads; a few per second in normal operation (candidates,
/// stats, chat), so 256 only fills if the task is stuck, and then dropping is right.
pub const EVENT_QUEUE: usize = 256;

/// Per-peer pipelines (viewers and publishers) not yet freed.
static LIVE_PIPELINES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts `pipeline` as a live peer pipeline until GStreamer actually frees it: a session
/// that ended but left its pipeline alive shows in [`live_peer_pipelines`] (and /metrics).
pub fn count_live(pipeline: &gst::Pipeline) {
    LIVE_PIPELINES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    pipeline.add_weak_ref_notify(|| {
        LIVE_PIPELINES.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    });
}

/// How many per-peer pipelines exist right now (built and not yet freed by GStreamer).
pub fn live_peer_pipelines() -> usize {
    LIVE_PIPELINES.load(std::sync::atomic::Ordering::SeqCst)
}

/// A built peer pipeline.
pub struct Built {
    pub pipeline: PipelineGuard,
    /// Frame hooks of a publisher's pipeline; dropping them stops them.
    pub _hooks: Option<crate::hooks::RunningHooks>,
    pub webrtc: gst::Element,
    /// What the retransmission guard let through and refused.
    pub rtx: Arc<super::rtx::RtxCounters>,
    pub links: Vec<ConsumptionLink>,
    pub continuity: Arc<Continuity>,
    /// The data channel we created (offer role).
    pub channel: Option<WebRTCDataChannel>,
    /// An adaptive viewer's video prober (see [`super::probing`]).
    pub prober: Option<Arc<super::probing::Prober>>,
}

/// Owns a viewer pipeline: if it is dropped without the session's teardown (a failed build, a
/// panic), it still goes to NULL, so webrtcbin's threads and sockets are released.
pub struct PipelineGuard(pub Option<gst::Pipeline>);

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            stop_pipeline(&p);
        }
    }
}

pub fn stop_pipeline(p: &gst::Pipeline) {
    if let Some(bus) = p.bus() {
        bus.unset_sync_handler();
    }
    let _ = p.set_state(gst::State::Null);
}

/// The SDP text to send to a peer, with our certificate's fingerprint.
pub fn sdp_text(desc: &WebRTCSessionDescription) -> Result<String, String> {
    let text = desc
        .sdp()
        .as_text()
        .map_err(|e| format!("cannot serialize the SDP: {e}"))?;
    let cert = cert::certificate()?;
    Ok(cert::patch_fingerprint(&text, cert))
}

pub fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| crate::description::elements::explain_missing(factory))
}

/// Makes webrtcbin, adds it to `pipeline` and wires what every session needs: the ECDSA
/// certificate, the retransmission budget, ICE addresses and servers, and callbacks that only
/// report [`Event`]s.
pub fn setup_webrtcbin(
    pipeline: &gst::Pipeline,
    ice: &IceConfig,
    cert: &'static DtlsCertificate,
    events: &mpsc::Sender<Event>,
) -> Result<(gst::Element, Arc<super::rtx::RtxCounters>), String> {
    let webrtc = make("webrtcbin")?;
    webrtc.set_property_from_str("bundle-policy", "max-bundle");
    if let Some(stun) = &ice.stun_server {
        webrtc.set_property("stun-server", stun);
    }
    for turn in &ice.turn_servers {
        let _ = webrtc.emit_by_name::<bool>("add-turn-server", &[turn]);
    }
    pipeline.add(&webrtc).map_err(|e| e.to_string())?;

    // The ECDSA certificate goes into dtlssrtpdec while webrtcbin creates it (inside
    // create-offer/create-answer, element still in NULL): the only moment it takes effect.
    // The retransmitter appears as the send side is linked, also inside webrtcbin.
    let pem = cert.pem.clone();
    let rtx = Arc::new(super::rtx::RtxCounters::default());
    let counters = rtx.clone();
    if let Some(bin) = webrtc.downcast_ref::<gst::Bin>() {
        bin.connect_deep_element_added(move |_, _, element| {
            match element.factory().map(|f| f.name()).as_deref() {
                Some("dtlssrtpdec") => element.set_property("pem", &pem),
                Some("rtprtxsend") => super::rtx::guard(element, counters.clone()),
                _ => {}
            }
        });
    }
    let agent = webrtc.property::<glib::Object>("ice-agent");
    for address in &ice.addresses {
        let _ = agent.emit_by_name::<bool>("add-local-ip-address", &[address]);
    }
    // libnice looks for a UPnP router before it calls gathering done (200 ms by default): a
    // server has no use for one, and every WHEP answer waits for gathering to finish.
    if agent.find_property("agent").is_some() {
        let nice = agent.property::<glib::Object>("agent");
        if nice.find_property("upnp").is_some() {
            nice.set_property("upnp", false);
        }
    }

    let tx = events.clone();
    webrtc.connect("on-negotiation-needed", false, move |_| {
        let _ = tx.try_send(Event::NegotiationNeeded);
        None
    });
    let tx = events.clone();
    webrtc.connect("on-ice-candidate", false, move |values| {
        let mline = values.get(1).and_then(|v| v.get::<u32>().ok());
        let candidate = values.get(2).and_then(|v| v.get::<String>().ok());
        if let (Some(mline), Some(candidate)) = (mline, candidate) {
            let _ = tx.try_send(Event::IceCandidate(mline, candidate));
        }
        None
    });
    let tx = events.clone();
    webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
        let state = w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
        if state == gst_webrtc::WebRTCICEGatheringState::Complete {
            let _ = tx.try_send(Event::GatheringComplete);
        }
    });
    let tx = events.clone();
    webrtc.connect_notify(Some("connection-state"), move |w, _| {
        let state = w.property::<WebRTCPeerConnectionState>("connection-state");
        let _ = tx.try_send(Event::State(state));
    });
    let tx = events.clone();
    webrtc.connect("on-data-channel", false, move |values| {
        if let Some(ch) = values
            .get(1)
            .and_then(|v| v.get::<WebRTCDataChannel>().ok())
        {
            let _ = tx.try_send(Event::DataChannel(ch));
        }
        None
    });
    // webrtcbin 1.22 does not notice a peer that closes (no ICE consent checks), but its
    // rtpbin hears an RTCP BYE. (rtpbin's own source timeout is not used: a browser whose
    // stream pauses while the pipeline restarts stops reporting for a while; silence of
    // every kind is what ends a session, see `Heard`.)
    if let Some(rtpbin) = webrtc
        .downcast_ref::<gst::Bin>()
        .and_then(|b| b.by_name("rtpbin"))
    {
        let tx = events.clone();
        rtpbin.connect("on-bye-ssrc", false, move |_| {
            let _ = tx.try_send(Event::PeerGone("the peer said goodbye (RTCP BYE)"));
            None
        });
    }
    if let Some(bus) = pipeline.bus() {
        let tx = events.clone();
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Error(e) if crate::hooks::from_hook_branch(msg) => {
                    // The hooks' decoder or branch: their problem, not the recording's.
                    tracing::warn!("publisher pipeline, hook branch: {}", e.error());
                }
                gst::MessageView::Error(e) => {
                    let _ = tx.try_send(Event::Error(format!(
                        "session pipeline error: {}",
                        e.error()
                    )));
                }
                gst::MessageView::Eos(_) => {
                    let _ = tx.try_send(Event::Eos);
                }
                // The publisher pipeline itself (the only pipeline on its bus) plays.
                gst::MessageView::StateChanged(sc)
                    if sc.current() == gst::State::Playing
                        && msg.src().is_some_and(|s| s.is::<gst::Pipeline>()) =>
                {
                    let _ = tx.try_send(Event::Playing);
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    }

    Ok((webrtc, rtx))
}

pub fn set_remote(
    webrtc: &gst::Element,
    kind: WebRTCSDPType,
    sdp: &str,
    ev_tx: &mpsc::Sender<Event>,
) -> Result<(), String> {
    let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
        .map_err(|_| format!("{OFFER_REFUSED}: the remote description is not a valid SDP"))?;
    let desc = WebRTCSessionDescription::new(kind, msg);
    let tx = ev_tx.clone();
    let promise = gst::Promise::with_change_func(move |reply| {
        let r = match reply {
            Ok(Some(s)) if s.has_field("error") => Err(format!(
                "{OFFER_REFUSED}: webrtcbin rejected the remote description: {:?}",
                s.get::<glib::Error>("error").map(|e| e.to_string())
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("setting the remote description failed: {e:?}")),
        };
        let _ = tx.try_send(Event::RemoteSet(r));
    });
    webrtc.emit_by_name::<()>("set-remote-description", &[&desc, &promise]);
    Ok(())
}

/// create-answer (`answer`) or create-offer; the result comes back as `Event::Created`.
pub fn create(webrtc: &gst::Element, answer: bool, ev_tx: &mpsc::Sender<Event>) {
    let tx = ev_tx.clone();
    let field = if answer { "answer" } else { "offer" };
    let promise = gst::Promise::with_change_func(move |reply| {
        let r = match reply {
            Ok(Some(s)) => s.get::<WebRTCSessionDescription>(field).map_err(|_| match s
                .get::<glib::Error>("error")
            {
                Ok(e) if answer => {
                    format!("{OFFER_REFUSED}: webrtcbin could not create an answer: {e}")
                }
                Ok(e) => format!("webrtcbin could not create an {field}: {e}"),
                Err(_) => format!("webrtcbin gave no {field}"),
            }),
            Ok(None) => Err(format!("webrtcbin gave no {field}")),
            Err(e) => Err(format!("creating the {field} failed: {e:?}")),
        };
        let _ = tx.try_send(Event::Created(r));
    });
    let signal = if answer {
        "create-answer"
    } else {
        "create-offer"
    };
    webrtc.emit_by_name::<()>(signal, &[&None::<gst::Structure>, &promise]);
}
