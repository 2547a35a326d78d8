//! The HTTP API (axum): pipeline status and lifecycle.
//!
//! Every error is a JSON body `{"error": "..."}` with a fitting status code.

use crate::signalling::server::Hub;
use crate::webrtc::output::WebRtcError;
use crate::webrtc::registry::Registry;

mod elements;
mod hls;
pub mod listen;
mod manage;
mod page;
mod recordings;
pub mod socketio;
mod whep;
use crate::supervisor::{Supervisor, SupervisorError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::sync::Arc;
pub use whep::{read_json_offer, read_sdp_request};

/// An API error: a status code and a sentence.
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn status(&self) -> StatusCode {
        self.0
    }

    pub fn message(&self) -> &str {
        &self.1
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<WebRtcError> for ApiError {
    fn from(e: WebRtcError) -> Self {
        let code = match e {
            WebRtcError::NotFound(_) | WebRtcError::NoParticipant(..) => StatusCode::NOT_FOUND,
            WebRtcError::NotPlaying(_)
            | WebRtcError::RoomFull(..)
            | WebRtcError::NobodyPublishing(_)
            | WebRtcError::Full(..)
            | WebRtcError::ServiceFull(..)
            | WebRtcError::TooManyPending(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebRtcError::BadOffer(_) => StatusCode::BAD_REQUEST,
            WebRtcError::CodecMismatch(_) => StatusCode::NOT_ACCEPTABLE,
            WebRtcError::Busy(_) | WebRtcError::Pulls(_) => StatusCode::CONFLICT,
            WebRtcError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> Self {
        let code = match e {
            SupervisorError::NotFound(_) => StatusCode::NOT_FOUND,
            SupervisorError::Invalid(..) => StatusCode::CONFLICT,
            SupervisorError::Gone(_) => StatusCode::SERVICE_UNAVAILABLE,
            SupervisorError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

/// Everything the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: Arc<Supervisor>,
    pub hub: Arc<Hub>,
    pub webrtc: Arc<Registry>,
    pub recordings: Arc<crate::record::Recordings>,
    pub auth: Arc<crate::auth::Auth>,
    /// Where the `hls` outputs' playlists and segments are.
    pub hls: Arc<crate::hub::hls::HlsReaders>,
    /// The jpeg-tcp sources' senders.
    pub jpeg_in: Arc<crate::hub::jpeg_tcp::JpegSources>,
}

impl axum::extract::FromRef<AppState> for Arc<Registry> {
    fn from_ref(s: &AppState) -> Self {
        s.webrtc.clone()
    }
}

impl axum::extract::FromRef<AppState> for Arc<Supervisor> {
    fn from_ref(s: &AppState) -> Self {
        s.supervisor.clone()
    }
}

impl axum::extract::FromRef<AppState> for Arc<Hub> {
    fn from_ref(s: &AppState) -> Self {
        s.hub.clone()
    }
}

/// The service's routes, with Socket.IO served by `socketio` (see [`socketio::SocketChat`]).
pub fn router(state: AppState, socketio: socketioxide::layer::SocketIoLayer) -> Router {
    // Pages of the allowed origins may call WHIP/WHEP and the API from their own scripts.
    let origins: Vec<axum::http::HeaderValue> = state
        .auth
        .allowed_origins
        .iter()
        .filter(|o| o.as_str() != "*")
        .filter_map(|o| o.trim_end_matches('/').parse().ok())
        .collect();
    let any = state.auth.allowed_origins.iter().any(|o| o == "*");
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(if any {
            tower_http::cors::AllowOrigin::any()
        } else {
            tower_http::cors::AllowOrigin::list(origins)
        })
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::PATCH,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
        ])
        .expose_headers([
            axum::http::header::LOCATION,
            axum::http::header::ETAG,
            axum::http::header::LINK,
        ]);
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/token.js", get(page::token_script))
        .route("/publish", get(page::publish))
        .route("/publish.js", get(page::publish_script))
        .route("/style.css", get(page::style))
        .route("/room/{room}", get(page::room))
        .route("/room.js", get(page::room_script))
        .route("/ws", get(crate::signalling::server::handler))
        .route("/whep/{name}", post(whep::start))
        .route(
            "/whep/{name}/{id}",
            post(whep::start_participant)
                .delete(whep::end)
                .patch(whep::patch),
        )
        .route(
            "/whep/{room}/{participant}/{id}",
            delete(whep::end_participant).patch(whep::patch),
        )
        .route("/whip/{name}", post(whep::whip_start))
        .route(
            "/whip/{name}/{id}",
            delete(whep::whip_end).patch(whep::patch),
        )
        .route("/offer", post(whep::offer_any))
        .route("/offer/{name}", post(whep::offer))
        .route("/offer/{room}/{participant}", post(whep::offer_participant))
        .route("/hls/{name}/{file}", get(hls::get))
        .route("/api/recordings", get(recordings::list))
        .route(
            "/recordings/{pipeline}/{file}",
            get(recordings::get).delete(recordings::delete),
        )
        .route(
            "/recordings/{room}/{participant}/{file}",
            get(recordings::get_participant).delete(recordings::delete_participant),
        )
        .route("/api/pipelines", get(list))
        .route(
            "/api/pipelines/{name}",
            get(show).put(manage::put).delete(manage::delete),
        )
        .route(
            "/api/pipelines/{name}/description",
            get(manage::description),
        )
        .route("/api/pipelines/{name}/{action}", post(action))
        .route("/api/pipelines/{name}/elements", get(elements::list))
        .route("/api/pipelines/{name}/graph.svg", get(elements::graph_svg))
        .route("/api/pipelines/{name}/graph.dot", get(elements::graph_dot))
        .route(
            "/api/pipelines/{name}/elements/{element}",
            get(elements::show),
        )
        .route(
            "/api/pipelines/{name}/elements/{element}/properties/{prop}",
            get(elements::get).put(elements::set),
        )
        .route("/api/pipelines/{name}/snapshot.jpg", get(snapshot))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // `/socket.io/` (inside the token and origin checks).
        .layer(socketio)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        // A body that stalls holds a connection no longer than headers may, and no request
        // (a body sent a byte at a time included) lasts beyond the request timeout: 408.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.webrtc.limits().header_timeout,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.webrtc.limits().request_timeout,
        ))
        .layer(cors)
        .with_state(state)
}

/// A pipeline's status plus its live WebRTC viewers.
#[derive(serde::Serialize)]
struct PipelineView {
    #[serde(flatten)]
    status: crate::supervisor::Status,
    viewers: Vec<crate::webrtc::types::ViewerStats>,
    publishers: Vec<crate::webrtc::types::ViewerStats>,
    /// A room's participants.
    #[serde(skip_serializing_if = "Option::is_none")]
    participants: Option<Vec<crate::webrtc::room::ParticipantView>>,
    hooks: Vec<crate::hooks::HookStats>,
    /// The `whip` outputs: where each publishes, connected or why not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    whip: Vec<crate::webrtc::whip_client::WhipState>,
    /// A whep source: where it pulls from, connected or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    whep: Option<crate::webrtc::whip_client::WhipState>,
    /// The encoder ladder: each rung's viewers and frames encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    ladder: Option<Vec<crate::webrtc::ladder::RungInfo>>,
    /// Encoded video bytes and frames so far (a client derives bitrate and fps from two reads).
    meter: Option<crate::meter::MeterCounts>,
    /// A jpeg-tcp source: its sender, frames, and how late they arrive.
    #[serde(skip_serializing_if = "Option::is_none")]
    jpeg_tcp: Option<crate::hub::jpeg_tcp::JpegInStatus>,
    /// The jpeg-tcp outputs: their receivers, connected or why not, frames sent and dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    jpeg_tcp_outputs: Vec<crate::hub::jpeg_tcp::JpegOutStatus>,
}

fn view(status: crate::supervisor::Status, state: &AppState) -> PipelineView {
    let (webrtc, supervisor) = (&state.webrtc, &state.supervisor);
    let viewers = webrtc.viewers_of(&status.name);
    let publishers = webrtc.publishers_of(&status.name);
    let participants = webrtc.room(&status.name).map(|r| r.participants());
    let hooks = supervisor.hook_stats(&status.name);
    let meter = supervisor.meter(&status.name);
    let whip = webrtc.whip_states(&status.name);
    let whep = webrtc.whep_state(&status.name);
    let ladder = webrtc.ladder_of(&status.name);
    let jpeg_tcp = state.jpeg_in.status(&status.name);
    let jpeg_tcp_outputs = state.jpeg_in.outputs(&status.name);
    PipelineView {
        jpeg_tcp,
        jpeg_tcp_outputs,
        whip,
        whep,
        ladder,
        status,
        viewers,
        publishers,
        participants,
        hooks,
        meter,
    }
}

/// Checks the request's token against what its endpoint needs (see [`crate::auth`]) and
/// hands the grant to the handler, which filters lists to what it may see.
async fn authorize(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use crate::auth::{Grant, Need};
    // A page of another origin may not drive the service (CSRF against a loopback service
    // without tokens, a foreign site opening our WebSockets), unless it is allowed.
    if let Some(origin) = request
        .headers()
        .get(axum::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    {
        let host = request
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok());
        if !crate::auth::origin_allowed(origin, host, &state.auth.allowed_origins) {
            return ApiError(
                StatusCode::FORBIDDEN,
                format!("requests from pages at {origin} are not allowed (see --allow-origin)"),
            )
            .into_response();
        }
    }
    let need = if is_socketio(request.uri()) {
        // A chat's clients may view its room or pipeline.
        Need::View(Some(socketio::target(request.uri())))
    } else {
        crate::auth::need(request.method(), request.uri().path())
    };
    if state.auth.is_open() {
        request.extensions_mut().insert(Grant::all("open"));
        if let Some(refusal) = session_rate(&state, &request) {
            return refusal;
        }
        return next.run(request).await;
    }
    let token = bearer(request.headers()).or_else(|| query_token(request.uri()));
    let grant = match (token.as_deref().map(|t| state.auth.check(t)), &need) {
        (Some(Some(grant)), _) => grant.clone(),
        (_, Need::Nothing) => Grant::default(),
        (None, _) => {
            return unauthorized(
                "this needs a token: send `Authorization: Bearer TOKEN` (or `?token=TOKEN` where headers are impossible)",
            );
        }
        (Some(None), _) => return unauthorized("the token is not valid"),
    };
    if !grant.covers(&need) {
        let what = match &need {
            Need::View(Some(p)) if p == "*" => "view every pipeline".to_string(),
            Need::View(Some(p)) => format!("view `{p}`"),
            Need::View(None) => "view pipelines".to_string(),
            Need::Publish(p) => format!("publish into `{p}`"),
            Need::Admin => "administer the service".to_string(),
            Need::Nothing | Need::AnyToken => "this".to_string(),
        };
        return ApiError(
            StatusCode::FORBIDDEN,
            format!("token `{}` may not {what}", grant.name),
        )
        .into_response();
    }
    request.extensions_mut().insert(grant);
    if let Some(refusal) = session_rate(&state, &request) {
        return refusal;
    }
    next.run(request).await
}

/// New sessions (WHEP, WHIP, `/offer`, signalling connections) per address are rate-limited:
/// 429 with `Retry-After` beyond the rate.
fn session_rate(state: &AppState, request: &axum::extract::Request) -> Option<Response> {
    use axum::http::Method;
    let path = request.uri().path();
    let creates = (request.method() == Method::POST
        && (path.starts_with("/whep/") && path.matches('/').count() == 2
            || path.starts_with("/whip/") && path.matches('/').count() == 2
            || path == "/offer"
            || path.starts_with("/offer/")))
        || (request.method() == Method::GET && path == "/ws")
        // A Socket.IO handshake (later requests carry the session's `sid`).
        || (request.method() == Method::GET
            && is_socketio(request.uri())
            && !socketio::has_session(request.uri()));
    if !creates {
        return None;
    }
    let ip = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?
        .0
        .ip();
    let limits = state.webrtc.limits();
    let wait = limits.session_allowed(ip).err()?;
    let mut response = ApiError(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many new sessions from {ip}: at most {} a second (see --session-rate); retry in {wait} s",
            limits.session_rate
        ),
    )
    .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&wait.to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    Some(response)
}

fn unauthorized(why: &str) -> Response {
    let mut response = ApiError(StatusCode::UNAUTHORIZED, why.to_string()).into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn is_socketio(uri: &axum::http::Uri) -> bool {
    uri.path() == "/socket.io" || uri.path().starts_with("/socket.io/")
}

/// The value of `key` in `uri`'s query, decoded.
fn query_value(uri: &axum::http::Uri, key: &str) -> Option<String> {
    let query: axum::extract::Query<std::collections::HashMap<String, String>> =
        axum::extract::Query::try_from_uri(uri).ok()?;
    query.0.get(key).cloned()
}

fn query_token(uri: &axum::http::Uri) -> Option<String> {
    query_value(uri, "token")
}

async fn list(
    State(state): State<AppState>,
    axum::Extension(grant): axum::Extension<crate::auth::Grant>,
) -> impl IntoResponse {
    let all: Vec<PipelineView> = state
        .supervisor
        .list()
        .into_iter()
        .filter(|s| grant.can_view(&s.name))
        .map(|s| view(s, &state))
        .collect();
    Json(all)
}

async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state
        .supervisor
        .get(&name)
        .map(|s| Json(view(s, &state)))
        .ok_or_else(|| SupervisorError::NotFound(name).into())
}

async fn action(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let sup = &state.supervisor;
    let status = match action.as_str() {
        "start" => sup.start(&name).await?,
        "stop" => sup.stop(&name).await?,
        "restart" => sup.restart(&name).await?,
        "eos" => {
            elements::eos(&state, &name).await?;
            sup.get(&name)
                .ok_or_else(|| SupervisorError::NotFound(name.clone()))?
        }
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown action `{other}`: use start, stop, restart or eos"),
            ));
        }
    };
    Ok(Json(status))
}

/// `GET /api/pipelines/{name}/snapshot.jpg`: the snapshot hook's latest frame.
async fn snapshot(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if state.supervisor.get(&name).is_none() {
        return Err(SupervisorError::NotFound(name).into());
    }
    let jpeg = state.supervisor.snapshot(&name).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("`{name}` has no snapshot yet (it needs a [[hook]] kind = \"snapshot\" and a running pipeline)"),
        )
    })?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/jpeg"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

/// `GET /api/events`: WebSocket of events (state changes, hook events), one JSON per frame.
async fn events(
    ws: axum::extract::ws::WebSocketUpgrade,
    State(state): State<AppState>,
    axum::Extension(grant): axum::Extension<crate::auth::Grant>,
) -> Response {
    let mut rx = state.supervisor.events().subscribe();
    ws.on_upgrade(move |mut socket| async move {
        use axum::extract::ws::Message;
        use tokio::sync::broadcast::error::RecvError;
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let text = match ev {
                        // Only the pipelines this token may view.
                        Ok(ev) if !grant.can_view(&ev.pipeline) => continue,
                        Ok(ev) => serde_json::to_string(&ev).unwrap_or_default(),
                        // A reader too slow for the backlog is told how much it missed.
                        Err(RecvError::Lagged(n)) => serde_json::json!({"type": "lagged", "skipped": n}).to_string(),
                        Err(RecvError::Closed) => return,
                    };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    _ => {}
                },
            }
        }
    })
}

/// `GET /metrics`: Prometheus exposition (OpenMetrics text).
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = tokio::task::spawn_blocking(move || {
        crate::metrics::render(&state.supervisor, &state.webrtc, &state.recordings)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /api/openapi.json`: the API described as OpenAPI 3.1.
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not supported on {}", uri.path()),
    )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    /// Every route the router registers is in the OpenAPI document, so it cannot fall behind.
    #[test]
    fn openapi_documents_every_route() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is JSON");
        let source = include_str!("mod.rs");
        let routes: Vec<&str> = source
            .split(".route(")
            .skip(1)
            .filter_map(|s| s.trim_start().strip_prefix('"')?.split('"').next())
            .filter(|r| r.starts_with('/'))
            .collect();
        assert!(routes.len() > 20, "{routes:?}");
        for route in routes {
            assert!(
                doc["paths"][route].is_object(),
                "{route} is missing from openapi.json"
            );
        }
    }
}
