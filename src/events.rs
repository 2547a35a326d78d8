//! The service's event stream: pipeline state changes and hook events, fanned out to every
//! `GET /api/events` WebSocket (one JSON object per text frame).

use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for slow subscribers; one that falls further behind skips ahead (and is told).
const BACKLOG: usize = 1024;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// "state", "hook", ...
    #[serde(rename = "type")]
    pub kind: String,
    pub pipeline: String,
    /// RFC 3339.
    pub time: String,
    pub fields: serde_json::Value,
}

impl Event {
    pub fn new(kind: &str, pipeline: &str, fields: serde_json::Value) -> Event {
        Event {
            kind: kind.to_string(),
            pipeline: pipeline.to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            fields,
        }
    }

    /// A hook's event: `{"hook": hook, "kind": kind, "fields": fields}`.
    pub fn hook(pipeline: &str, hook: &str, kind: &str, fields: serde_json::Value) -> Event {
        Event::new(
            "hook",
            pipeline,
            serde_json::json!({ "hook": hook, "kind": kind, "fields": fields }),
        )
    }
}

#[derive(Clone)]
pub struct EventBus(broadcast::Sender<Event>);

impl Default for EventBus {
    fn default() -> Self {
        EventBus(broadcast::channel(BACKLOG).0)
    }
}

impl EventBus {
    /// Never blocks; without subscribers the event is simply gone.
    pub fn publish(&self, event: Event) {
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}
