//! Runtime management of the pipeline set: `PUT`, `DELETE` and `GET .../description`.

use super::{ApiError, AppState};
use crate::supervisor::{Put, PutError, SupervisorError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `PUT /api/pipelines/{name}`: the body is a description file (TOML). Validated like a file;
/// 201 when created, 200 when replaced (or unchanged), 400 with `FILE:LINE:COL` diagnostics
/// when invalid, in which case whatever ran before keeps running.
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = String::from_utf8(body.to_vec()).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the description is not UTF-8 text: {e}"),
        )
    })?;
    match state.supervisor.put(&name, text).await {
        Ok((put, status)) => {
            let (code, result) = match put {
                Put::Created => (StatusCode::CREATED, "created"),
                Put::Replaced => (StatusCode::OK, "replaced"),
                Put::Unchanged => (StatusCode::OK, "unchanged"),
            };
            let mut body = serde_json::to_value(&status).unwrap_or_default();
            if let Some(obj) = body.as_object_mut() {
                obj.insert("result".into(), result.into());
            }
            Ok((code, Json(body)).into_response())
        }
        Err(PutError::Invalid(diags)) => {
            let list: Vec<serde_json::Value> = diags
                .0
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "file": d.file, "line": d.line, "col": d.col, "message": d.message,
                    })
                })
                .collect();
            Ok((
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": diags.to_string(), "diagnostics": list })),
            )
                .into_response())
        }
        Err(e @ PutError::BadName(_)) => Err(ApiError(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e @ PutError::NoDirectory) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
        Err(e @ PutError::ShuttingDown) => {
            Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
        }
        Err(e @ PutError::Io(..)) => {
            Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
    }
}

/// `DELETE /api/pipelines/{name}`: stops the pipeline (finalizing its files) and deletes its
/// description file.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.supervisor.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/pipelines/{name}/description`: the description file as it is on disk.
pub async fn description(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let status = state
        .supervisor
        .get(&name)
        .ok_or_else(|| SupervisorError::NotFound(name.clone()))?;
    let text = tokio::fs::read_to_string(&status.file).await.map_err(|e| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("cannot read {}: {e}", status.file.display()),
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        text,
    )
        .into_response())
}
