//! WHEP (egress, RFC 9725's sibling draft) and the aiortc-style `POST /offer`: HTTP signalling
//! where the viewer offers and we answer with every candidate included (no trickle).

use super::{ApiError, AppState};
use crate::webrtc::output::{WebRtcError, WebRtcOutput};
use crate::webrtc::registry::Registry;
use crate::webrtc::types::{Via, ViewerId};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Largest offer accepted: real offers are a few KiB.
const MAX_SDP_BYTES: usize = 64 * 1024;

/// How long a viewer of a relaying pipeline waits for a publisher that is connecting (its
/// pipeline plays at its first media) rather than being told nobody publishes.
const RELAY_START_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`output`], once a relaying pipeline's connecting publisher plays (bounded).
async fn ready_output(webrtc: &Registry, name: &str) -> Result<Arc<WebRtcOutput>, ApiError> {
    let deadline = tokio::time::Instant::now() + RELAY_START_WAIT;
    while tokio::time::Instant::now() < deadline {
        let connecting = webrtc
            .ingest(name)
            .is_some_and(|p| p.relays() && p.has_publisher());
        let playing = webrtc.get(name).is_some_and(|o| o.is_playing());
        if playing || !connecting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    output(webrtc, name)
}

fn output(webrtc: &Registry, name: &str) -> Result<Arc<WebRtcOutput>, ApiError> {
    if let Some(out) = webrtc.get(name) {
        return Ok(out);
    }
    // A relaying webrtc-source pipeline has viewers only while somebody publishes.
    if webrtc.ingest(name).is_some_and(|p| p.relays()) {
        return Err(WebRtcError::NobodyPublishing(name.to_string()).into());
    }
    Err(WebRtcError::NotFound(name.to_string()).into())
}

fn sdp_body(body: &[u8]) -> Result<String, ApiError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the offer is larger than {MAX_SDP_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "the offer is not UTF-8 text".into(),
        )
    })?;
    if !text.trim_start().starts_with("v=0") {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "the body must be an SDP offer (starting with v=0)".into(),
        ));
    }
    Ok(text.to_string())
}

fn sdp_offer(headers: &HeaderMap, body: &Bytes, protocol: &str) -> Result<String, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    read_sdp_request(content_type, body, protocol)
}

/// The SDP offer of a WHIP/WHEP request, which must say `Content-Type: application/sdp`:
/// checked before any pipeline is touched (also what the fuzz targets feed).
pub fn read_sdp_request(
    content_type: Option<&str>,
    body: &[u8],
    protocol: &str,
) -> Result<String, ApiError> {
    if !content_type.unwrap_or("").starts_with("application/sdp") {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{protocol} wants Content-Type: application/sdp"),
        ));
    }
    sdp_body(body)
}

/// The client's address, when the listener recorded it (limits on pending sessions are per
/// address).
type Client = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

fn ip(client: Client) -> Option<std::net::IpAddr> {
    client.map(|c| c.0.0.ip())
}

/// `POST /whep/{name}`: `application/sdp` offer in; `201 Created`, the answer and `Location`.
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let offer = sdp_offer(&headers, &body, "WHEP")?;
    let out = ready_output(&state.webrtc, &name).await?;
    let (id, answer) = out.answer(offer, Via::Whep, ip(client)).await?;
    let location = format!("/whep/{name}/{id}");
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response())
}

/// `DELETE /whep/{name}/{id}`: ends that viewer session.
pub async fn end(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    // A session of an output that is gone (its pipeline stopped, its publisher left and
    // nobody came back) is gone too.
    let ended = state
        .webrtc
        .get(&name)
        .is_some_and(|out| out.end(&ViewerId(id.clone())));
    if ended {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no session {id} on `{name}`"),
        ))
    }
}

/// `PATCH /whep/{name}/{id}`: trickle ICE and ICE restarts are not supported; answers
/// include every candidate.
pub async fn patch() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle ICE is not supported: the answer already holds every candidate".into(),
    )
}

#[derive(serde::Deserialize)]
struct OfferBody {
    sdp: String,
    #[serde(rename = "type")]
    kind: String,
    pipeline: Option<String>,
}

/// The body of `POST /offer`: `{"sdp", "type": "offer", "pipeline"?}` → the offer and the
/// pipeline it names, if any.
pub fn read_json_offer(body: &[u8]) -> Result<(String, Option<String>), ApiError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the offer is too large".into(),
        ));
    }
    let req: OfferBody = serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("expected JSON {{\"sdp\": ..., \"type\": \"offer\"}}: {e}"),
        )
    })?;
    if req.kind != "offer" {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("\"type\" must be \"offer\", not \"{}\"", req.kind),
        ));
    }
    Ok((req.sdp, req.pipeline))
}

/// `POST /offer/{name}`: `{"sdp", "type": "offer"}` in, `{"sdp", "type": "answer"}` out.
pub async fn offer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    client: Client,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer_json(&state, Some(name), ip(client), &body).await
}

/// `POST /offer` with `"pipeline"` in the body (or the only webrtc pipeline).
pub async fn offer_any(
    State(state): State<AppState>,
    client: Client,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer_json(&state, None, ip(client), &body).await
}

async fn answer_json(
    state: &AppState,
    name: Option<String>,
    client: Option<std::net::IpAddr>,
    body: &Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (sdp, named) = read_json_offer(body)?;
    let name = match name.or(named) {
        Some(n) => n,
        None => {
            let names = state.webrtc.names();
            match names.as_slice() {
                [only] => only.clone(),
                _ => {
                    return Err(ApiError(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "say which pipeline: POST /offer/NAME or \"pipeline\" in the body (webrtc pipelines: {})",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    let out = ready_output(&state.webrtc, &name).await?;
    let (_, answer) = out.answer(sdp, Via::Offer, client).await?;
    Ok(Json(serde_json::json!({ "sdp": answer, "type": "answer" })))
}

/// `POST /whip/{name}` (RFC 9725): a publisher's `application/sdp` offer in; `201 Created`,
/// the answer and `Location`. One publisher at a time: a second one gets 409.
pub async fn whip_start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let point = state.webrtc.ingest(&name).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no pipeline `{name}` with a webrtc source"),
        )
    })?;
    let offer = sdp_offer(&headers, &body, "WHIP")?;
    let (id, answer) = point.publish(offer, Via::Whip, ip(client)).await?;
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, format!("/whip/{name}/{id}")),
        ],
        answer,
    )
        .into_response())
}

/// `DELETE /whip/{name}/{id}`: the publisher is done; its recording is finalized.
pub async fn whip_end(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let point = state.webrtc.ingest(&name).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no pipeline `{name}` with a webrtc source"),
        )
    })?;
    if point.end(&ViewerId(id.clone())) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no publisher {id} on `{name}`"),
        ))
    }
}
