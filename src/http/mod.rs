//! The HTTP API (axum): pipeline status and lifecycle.
//!
//! Every error is a JSON body `{"error": "..."}` with a fitting status code.

use crate::signalling::server::Hub;
use crate::webrtc::output::{Registry, WebRtcError};

mod page;
mod recordings;
mod whep;
use crate::supervisor::{Supervisor, SupervisorError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::sync::Arc;

/// An API error: a status code and a sentence.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<WebRtcError> for ApiError {
    fn from(e: WebRtcError) -> Self {
        let code = match e {
            WebRtcError::NotFound(_) => StatusCode::NOT_FOUND,
            WebRtcError::NotPlaying(_) | WebRtcError::Full(..) => StatusCode::SERVICE_UNAVAILABLE,
            WebRtcError::BadOffer(_) => StatusCode::BAD_REQUEST,
            WebRtcError::Busy(_) => StatusCode::CONFLICT,
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

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/publish", get(page::publish))
        .route("/publish.js", get(page::publish_script))
        .route("/style.css", get(page::style))
        .route("/ws", get(crate::signalling::server::handler))
        .route("/whep/{name}", post(whep::start))
        .route("/whep/{name}/{id}", delete(whep::end).patch(whep::patch))
        .route("/whip/{name}", post(whep::whip_start))
        .route(
            "/whip/{name}/{id}",
            delete(whep::whip_end).patch(whep::patch),
        )
        .route("/offer", post(whep::offer_any))
        .route("/offer/{name}", post(whep::offer))
        .route("/api/recordings", get(recordings::list))
        .route(
            "/recordings/{pipeline}/{file}",
            get(recordings::get).delete(recordings::delete),
        )
        .route("/api/pipelines", get(list))
        .route("/api/pipelines/{name}", get(show))
        .route("/api/pipelines/{name}/{action}", post(action))
        .route("/api/pipelines/{name}/snapshot.jpg", get(snapshot))
        .route("/api/events", get(events))
        .fallback(not_found)
        .with_state(state)
}

/// A pipeline's status plus its live WebRTC viewers.
#[derive(serde::Serialize)]
struct PipelineView {
    #[serde(flatten)]
    status: crate::supervisor::Status,
    viewers: Vec<crate::webrtc::session::ViewerStats>,
    publishers: Vec<crate::webrtc::session::ViewerStats>,
    hooks: Vec<crate::hooks::HookStats>,
}

fn view(
    status: crate::supervisor::Status,
    webrtc: &Registry,
    supervisor: &Supervisor,
) -> PipelineView {
    let viewers = webrtc
        .get(&status.name)
        .map(|o| o.viewers())
        .unwrap_or_default();
    let publishers = webrtc
        .ingest(&status.name)
        .map(|p| p.publishers())
        .unwrap_or_default();
    let hooks = supervisor.hook_stats(&status.name);
    PipelineView {
        status,
        viewers,
        publishers,
        hooks,
    }
}

async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let all: Vec<PipelineView> = state
        .supervisor
        .list()
        .into_iter()
        .map(|s| view(s, &state.webrtc, &state.supervisor))
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
        .map(|s| Json(view(s, &state.webrtc, &state.supervisor)))
        .ok_or_else(|| SupervisorError::NotFound(name).into())
}

async fn action(
    State(sup): State<Arc<Supervisor>>,
    Path((name, action)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let status = match action.as_str() {
        "start" => sup.start(&name).await?,
        "stop" => sup.stop(&name).await?,
        "restart" => sup.restart(&name).await?,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown action `{other}`: use start, stop or restart"),
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
) -> Response {
    let mut rx = state.supervisor.events().subscribe();
    ws.on_upgrade(move |mut socket| async move {
        use axum::extract::ws::Message;
        use tokio::sync::broadcast::error::RecvError;
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let text = match ev {
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

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
}
