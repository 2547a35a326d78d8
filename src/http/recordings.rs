//! Recordings over HTTP: the list, the files (with Range requests, so a `<video>` can seek),
//! and deletion.

use super::{ApiError, AppState};
use crate::record::RecordError;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        let code = match e {
            RecordError::BadName(_) => StatusCode::BAD_REQUEST,
            RecordError::NotFound(_) => StatusCode::NOT_FOUND,
            RecordError::Busy(_) => StatusCode::CONFLICT,
            RecordError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

/// `GET /api/recordings`: every segment on disk of the pipelines the token may view.
pub async fn list(
    State(state): State<AppState>,
    axum::Extension(grant): axum::Extension<crate::auth::Grant>,
) -> Result<impl IntoResponse, ApiError> {
    let rec = state.recordings.clone();
    // Scans directories and asks containers for durations: off the async threads.
    let mut list = tokio::task::spawn_blocking(move || rec.list())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    list.retain(|r| grant.can_view(&r.pipeline));
    Ok(Json(list))
}

/// `GET /recordings/{pipeline}/{file}`: the file, with Range support.
pub async fn get(
    State(state): State<AppState>,
    Path((pipeline, file)): Path<(String, String)>,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    let path = state.recordings.resolve(&pipeline, &file)?;
    let response = ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(response.map(Body::new))
}

/// `GET /recordings/{room}/{participant}/{file}`: a room participant's segment.
pub async fn get_participant(
    state: State<AppState>,
    Path((room, participant, file)): Path<(String, String, String)>,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    get(
        state,
        Path((format!("{room}/{participant}"), file)),
        request,
    )
    .await
}

/// `DELETE /recordings/{room}/{participant}/{file}`.
pub async fn delete_participant(
    state: State<AppState>,
    Path((room, participant, file)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    delete(state, Path((format!("{room}/{participant}"), file))).await
}

/// `DELETE /recordings/{pipeline}/{file}`: removes a finished segment; 204.
pub async fn delete(
    State(state): State<AppState>,
    Path((pipeline, file)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let rec = state.recordings.clone();
    tokio::task::spawn_blocking(move || rec.delete(&pipeline, &file))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}
