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

/// Messages every subscriber hears, published without ever waiting: a subscriber that falls
/// more than the backlog behind skips ahead (and is told).
#[derive(Debug, Clone)]
pub struct Bus<T>(broadcast::Sender<T>);

impl<T: Clone> Bus<T> {
    pub fn new(backlog: usize) -> Bus<T> {
        Bus(broadcast::channel(backlog).0)
    }

    /// Never blocks; without subscribers the message is simply gone.
    pub fn publish(&self, message: T) {
        let _ = self.0.send(message);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<T> {
        self.0.subscribe()
    }
}

/// The service's events.
pub type EventBus = Bus<Event>;

impl Default for EventBus {
    fn default() -> Self {
        Bus::new(BACKLOG)
    }
}
