//! HLS over HTTP: `GET /hls/{name}/index.m3u8` and its segments, written by the pipeline's
//! `hls` output ([`crate::hub::hls`]). Tokens as for recordings (`view` of the pipeline); a
//! playlist asked for with `?token=` names its segments with the same query, for players that
//! cannot set headers (a `<video>`, ffmpeg, VLC).

use super::{ApiError, AppState};
use crate::hub::hls::PLAYLIST;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

/// A segment's file name as hlssink2 writes them: `segment00042.ts`.
fn is_segment(file: &str) -> bool {
    file.strip_prefix("segment")
        .and_then(|rest| rest.strip_suffix(".ts"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The playlist with `query` (`token=…`) added to each segment's URI.
fn with_query(playlist: &str, query: Option<&str>) -> String {
    let Some(query) = query else {
        return playlist.to_string();
    };
    playlist
        .lines()
        .map(|line| {
            if line.is_empty() || line.starts_with('#') {
                line.to_string()
            } else {
                format!("{line}?{query}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `GET /hls/{name}/{file}`: the playlist (never cached) or a segment.
pub async fn get(
    State(state): State<AppState>,
    Path((name, file)): Path<(String, String)>,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no HLS stream `{name}/{file}` (is an hls output of `{name}` running?)"),
        )
    };
    if file != PLAYLIST && !is_segment(&file) {
        return Err(not_found());
    }
    let dir = state.hls.dir(&name).ok_or_else(not_found)?;
    let path = dir.join(&file);
    if file == PLAYLIST {
        // Written as the first segment closes: until then there is nothing to play yet.
        let text = tokio::fs::read_to_string(&path).await.map_err(|_| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("`{name}` has no HLS segment yet; try again in a moment"),
            )
        })?;
        let token = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find(|p| p.starts_with("token=")));
        return Ok((
            [
                (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            with_query(&text, token),
        )
            .into_response());
    }
    if !path.is_file() {
        return Err(not_found());
    }
    let response = ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut response = response.map(Body::new);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("video/mp2t"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_named_as_written() {
        assert!(is_segment("segment00042.ts"));
        assert!(!is_segment("segment.ts"));
        assert!(!is_segment("../segment1.ts"));
        assert!(!is_segment("segment1.ts.bak"));
        assert!(!is_segment("index.m3u8"));
    }

    #[test]
    fn a_token_query_follows_into_segment_uris() {
        let playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nsegment00001.ts\n";
        assert_eq!(with_query(playlist, None), playlist);
        assert_eq!(
            with_query(playlist, Some("token=abc")),
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nsegment00001.ts?token=abc\n"
        );
    }
}
