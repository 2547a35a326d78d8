//! The web page at `/`: plain HTML, CSS and JavaScript compiled into the binary, so nothing
//! depends on the directory the service runs from.

use axum::http::header;
use axum::response::{Html, IntoResponse};

pub async fn index() -> Html<&'static str> {
    Html(include_str!("page/index.html"))
}

pub async fn publish() -> Html<&'static str> {
    Html(include_str!("page/publish.html"))
}

pub async fn publish_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("page/publish.js"),
    )
}

/// `/room/{room}`: the same page for every room; its script reads the room from the path.
pub async fn room() -> Html<&'static str> {
    Html(include_str!("page/room.html"))
}

pub async fn room_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("page/room.js"),
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("page/app.js"),
    )
}

/// The access-token helpers both pages load first.
pub async fn token_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("page/token.js"),
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("page/style.css"),
    )
}
