//! Helpers for any running `gst::Pipeline`, shared by the supervisor, the WebRTC sessions
//! and the API: bounded teardown, element paths, readable errors. It uses nothing else of
//! this crate but [`crate::redact`].

use gst::prelude::*;
use std::time::Duration;

/// Sets the pipeline to NULL off the async threads and drops it. Bounded: a pipeline that
/// deadlocks in its state change is abandoned (and said so) rather than hanging the service.
pub async fn teardown(pipeline: gst::Pipeline) {
    let name = pipeline.name().to_string();
    let stop = tokio::task::spawn_blocking(move || {
        let _ = pipeline.set_state(gst::State::Null);
    });
    if tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .is_err()
    {
        tracing::error!("{name}: the pipeline did not stop within 10 s; abandoning it");
    }
}

/// "element-path: message: reason", e.g. "/tcp-test/out0_sink: Could not open resource for
/// reading: Failed to bind on host '127.0.0.1:5000': ... Address already in use". GStreamer's
/// message is often generic; the debug string's text after its source-location line usually
/// holds the actual reason, so it is appended when there is one.
pub fn describe_error(msg: &gst::Message, error: &glib::Error, debug: Option<&str>) -> String {
    let mut text = error.message().trim_end_matches('.').to_string();
    let reason = debug
        .and_then(|d| d.split_once('\n').map(|(_, rest)| rest))
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|r| !r.is_empty() && !text.contains(r.as_str()));
    if let Some(reason) = reason {
        text = format!("{text}: {reason}");
    }
    // A URI in the message may hold a password or a token.
    let text = crate::redact::redact(&text);
    match msg.src() {
        Some(src) => format!("{}: {text}", element_path(src)),
        None => text,
    }
}

/// `/pipeline/bin/element`: the names from the top-level pipeline down.
pub fn element_path(obj: &gst::Object) -> String {
    let mut names = vec![obj.name().to_string()];
    let mut parent = obj.parent();
    while let Some(p) = parent {
        names.push(p.name().to_string());
        parent = p.parent();
    }
    names.reverse();
    format!("/{}", names.join("/"))
}
