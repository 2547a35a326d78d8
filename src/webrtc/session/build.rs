//! What a session is built from: its pipeline (a publisher's receiving one, or a viewer's
//! sending one), and for a simulcast publisher the plan and answer that take its layers.

use super::{OFFER_AUDIO_PT, OFFER_TWCC_ID, OFFER_VIDEO_PT, stats};
use crate::webrtc::cert;
use crate::webrtc::peer::{self, Built, Event};
use crate::webrtc::types::{Params, Role};
use gst_webrtc::WebRTCSessionDescription;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A simulcast publisher's session: its plan keeps a place for each layer (relayed as the
/// rungs of the webrtc output's ladder).
pub(super) fn with_layers(role: Role) -> Role {
    match role {
        Role::Publish(a, mut ingest) => {
            if let Some(offered) = &a.formats.simulcast {
                ingest.plan = Arc::new(ingest.plan.with_layers(&offered.top_first()));
            }
            Role::Publish(a, ingest)
        }
        other => other,
    }
}

/// Builds the session's pipeline on the blocking pool: a publisher's receiving pipeline, or
/// a viewer's sending one (with the payload types its offer takes, or ours when we offer).
pub(super) async fn build(
    params: &Params,
    role: &Role,
    ev_tx: &mpsc::Sender<Event>,
) -> Result<Built, String> {
    let (ice, codec, tx) = (params.ice.clone(), params.codec, ev_tx.clone());
    let task = match role {
        Role::Publish(answering, ingest) => {
            let (ingest, formats) = (ingest.clone(), answering.formats.clone());
            tokio::task::spawn_blocking(move || {
                let cert = cert::certificate()?;
                let receive = crate::webrtc::publisher::Receive {
                    video_pt: formats.video_pt,
                    audio_pt: formats.audio_pt,
                    offering: false,
                    layers: formats.simulcast.and_then(|s| s.layers()),
                };
                crate::webrtc::publisher::build_receiver(ingest, codec, receive, ice, cert, tx)
            })
        }
        Role::Pull(ingest, _) => {
            let ingest = ingest.clone();
            let audio = ingest.plan.ingest.is_some_and(|i| i.audio);
            tokio::task::spawn_blocking(move || {
                let cert = cert::certificate()?;
                let receive = crate::webrtc::publisher::Receive {
                    video_pt: Some(OFFER_VIDEO_PT),
                    audio_pt: audio.then_some(OFFER_AUDIO_PT),
                    offering: true,
                    layers: None,
                };
                crate::webrtc::publisher::build_receiver(ingest, codec, receive, ice, cert, tx)
            })
        }
        Role::Answer(_) | Role::Offer { .. } => {
            let (video_pt, audio_pt, offering, twcc_id) = match role {
                Role::Answer(a) => (
                    a.formats.video_pt,
                    a.formats.audio_pt,
                    false,
                    a.formats.twcc_id,
                ),
                _ => (
                    Some(OFFER_VIDEO_PT),
                    Some(OFFER_AUDIO_PT),
                    true,
                    Some(OFFER_TWCC_ID),
                ),
            };
            let congestion = params
                .ladder
                .as_ref()
                .zip(twcc_id)
                .map(|(l, twcc_id)| stats::congestion(l, twcc_id));
            let (video, audio) = (params.video.clone(), params.audio.clone());
            let (clock, name) = (params.clock.clone(), format!("viewer-{}", params.id));
            tokio::task::spawn_blocking(move || {
                let cert = cert::certificate()?;
                crate::webrtc::viewer::build(crate::webrtc::viewer::BuildArgs {
                    name,
                    codec,
                    video: video.zip(video_pt),
                    audio: audio.zip(audio_pt),
                    clock,
                    ice,
                    cert,
                    create_channel: offering,
                    events: tx,
                    congestion,
                })
            })
        }
    };
    match task.await {
        Ok(built) => built,
        Err(e) => Err(format!("session pipeline setup panicked: {e}")),
    }
}

/// Our answer to a simulcast publisher, with its layers accepted (webrtcbin's own answer
/// leaves them out, and the publisher would then send one).
pub(super) fn accept_simulcast(
    desc: &WebRTCSessionDescription,
    offered: &crate::webrtc::simulcast::Offered,
) -> Result<WebRTCSessionDescription, String> {
    let text = crate::webrtc::simulcast::accept(&peer::sdp_text(desc)?, offered);
    let sdp = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
        .map_err(|_| "the answer with simulcast layers is not a valid SDP".to_string())?;
    tracing::debug!(
        "answer accepting simulcast layers {:?}:\n{text}",
        offered.rids
    );
    Ok(WebRTCSessionDescription::new(desc.type_(), sdp))
}
