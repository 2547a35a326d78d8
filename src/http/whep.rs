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
    Ok(created(format!("/whep/{name}/{id}"), answer))
}

/// `DELETE /whep/{name}/{id}`: ends that viewer session.
pub async fn end(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    end_session(&state, &name, id)
}

fn end_session(state: &AppState, name: &str, id: String) -> Result<StatusCode, ApiError> {
    // A session of an output that is gone (its pipeline stopped, its publisher left and
    // nobody came back) is gone too.
    let ended = state
        .webrtc
        .get(name)
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

/// The query of a room's join or watch: the display name.
#[derive(serde::Deserialize)]
pub struct NameQuery {
    name: Option<String>,
}

type Query = Result<axum::extract::Query<NameQuery>, axum::extract::rejection::QueryRejection>;

/// The display name in the query, if any (a query that does not parse has none).
fn query_name(query: Query) -> Option<String> {
    crate::webrtc::room::display_name(query.ok()?.0.name.as_deref())
}

/// `201 Created` with the answer and the session's `Location`.
fn created(location: String, answer: String) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response()
}

/// `POST /whep/{room}/{participant}`: watch one participant of a room (`?name=` names the
/// watcher in the room's chat).
pub async fn start_participant(
    State(state): State<AppState>,
    Path((room, participant)): Path<(String, String)>,
    query: Query,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let offer = sdp_offer(&headers, &body, "WHEP")?;
    let (stream, room) = participant_stream(&state.webrtc, &room, &participant)?;
    let out = ready_output(&state.webrtc, &stream).await?;
    let (id, answer) = out.answer(offer, Via::Whep, ip(client)).await?;
    if let Some(name) = query_name(query) {
        room.name_watcher(&id, name);
    }
    Ok(created(format!("/whep/{stream}/{id}"), answer))
}

/// `room/participant`, if the room runs and the participant is in it.
fn participant_stream(
    webrtc: &Registry,
    room: &str,
    participant: &str,
) -> Result<(String, Arc<crate::webrtc::room::Room>), ApiError> {
    let r = webrtc
        .room(room)
        .ok_or_else(|| ApiError::from(WebRtcError::NotFound(room.to_string())))?;
    if r.participant(participant).is_none() {
        return Err(WebRtcError::NoParticipant(room.into(), participant.into()).into());
    }
    Ok((r.stream(participant), r))
}

/// `DELETE /whep/{room}/{participant}/{id}`: ends that watching session.
pub async fn end_participant(
    State(state): State<AppState>,
    Path((room, participant, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    end_session(&state, &format!("{room}/{participant}"), id)
}

/// `POST /offer/{room}/{participant}`: as `POST /offer/{name}`, for one participant.
pub async fn offer_participant(
    State(state): State<AppState>,
    Path((room, participant)): Path<(String, String)>,
    client: Client,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (stream, _) = participant_stream(&state.webrtc, &room, &participant)?;
    answer_json(&state, Some(stream), ip(client), &body).await
}

/// `POST /whip/{name}` (RFC 9725): a publisher's `application/sdp` offer in; `201 Created`,
/// the answer and `Location`. One publisher at a time: a second one gets 409. A room takes
/// up to its `max_participants` (`?name=` is the display name); one more gets 503.
pub async fn whip_start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Query,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(room) = state.webrtc.room(&name) {
        let offer = sdp_offer(&headers, &body, "WHIP")?;
        let (id, answer) = room
            .join(offer, query_name(query), Via::Whip, ip(client))
            .await?;
        return Ok(created(format!("/whip/{name}/{id}"), answer));
    }
    let point = state.webrtc.ingest(&name).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no pipeline `{name}` with a webrtc source"),
        )
    })?;
    let offer = sdp_offer(&headers, &body, "WHIP")?;
    let (id, answer) = point.publish(offer, Via::Whip, ip(client)).await?;
    Ok(created(format!("/whip/{name}/{id}"), answer))
}

/// `DELETE /whip/{name}/{id}`: the publisher is done; its recording is finalized.
pub async fn whip_end(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if let Some(room) = state.webrtc.room(&name) {
        return if room.leave(&id) {
            Ok(StatusCode::OK)
        } else {
            Err(WebRtcError::NoParticipant(name, id).into())
        };
    }
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
