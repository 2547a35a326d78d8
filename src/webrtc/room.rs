//! A room (`[source] kind = "room"`): up to `max_participants` publishers at once. Each
//! participant is an ingest point of its own whose stream is named `{room}/{participant}`,
//! so the hub treats it like any publisher's: relayed to its watchers (WHEP
//! `/whep/{room}/{participant}`, a producer on `/ws`), recorded into
//! `{recordings}/{room}/{participant}/`, hooked. One chat joins every session of the room:
//! the participants' publishing sessions and everybody's watching sessions.

use super::ingest::{IngestParts, IngestPoint};
use super::output::{Totals, WebRtcError};
use super::registry::Registry;
use super::types::{ChatSender, Via, ViewerId};
use crate::events::{Event, EventBus};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// A participant as `GET /api/pipelines/{room}` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParticipantView {
    pub id: String,
    pub name: String,
    pub joined: String,
    pub codec: &'static str,
    /// Sessions watching this participant now.
    pub viewers: usize,
    pub connected: bool,
    pub bytes_received: u64,
    /// The room's hooks, running on this participant's stream.
    pub hooks: Vec<crate::hooks::HookStats>,
}

struct Participant {
    name: String,
    joined: String,
    point: Arc<IngestPoint>,
}

#[derive(Default)]
struct State {
    closed: bool,
    participants: BTreeMap<String, Participant>,
    /// Display names of watching sessions that gave one (`?name=`), for their chat lines.
    watchers: HashMap<ViewerId, String>,
}

pub struct Room {
    pub name: String,
    max: u32,
    parts: IngestParts,
    /// The registry, for the watchers' sessions of each participant's stream.
    outputs: Weak<Registry>,
    events: EventBus,
    state: Mutex<State>,
    /// Every line typed in the room, from any of its sessions.
    chat: ChatSender,
    /// Each participant's watcher (it clears the participant out when its session ends) and
    /// the chat relay: waited for when the room closes.
    tasks: tokio_util::task::TaskTracker,
    chat_relay: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A display name as given (`?name=`), trimmed to something printable and short.
pub fn display_name(raw: Option<&str>) -> Option<String> {
    let name: String = raw?
        .chars()
        .filter(|c| !c.is_control())
        .take(40)
        .collect::<String>()
        .trim()
        .to_string();
    (!name.is_empty()).then_some(name)
}

/// A participant id: the display name's letters and digits (so its recordings' directory
/// says whose they are) and a random part no other participant can guess.
fn participant_id(name: Option<&str>) -> String {
    let slug: String = name
        .unwrap_or("")
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(24)
        .collect();
    let random = ViewerId::new().short();
    match slug.trim_start_matches(['-', '_']) {
        "" => random,
        slug => format!("{slug}-{random}"),
    }
}

impl Room {
    pub fn new(name: &str, max: u32, parts: IngestParts, outputs: Weak<Registry>) -> Arc<Room> {
        let events = parts.hooks.events.clone();
        let (chat, lines) = mpsc::channel(super::output::CHAT_QUEUE);
        let room = Arc::new(Room {
            name: name.to_string(),
            max,
            parts,
            outputs,
            events,
            state: Mutex::default(),
            chat,
            tasks: tokio_util::task::TaskTracker::new(),
            chat_relay: Mutex::new(None),
        });
        let relay = tokio::spawn(Room::relay_chat(Arc::downgrade(&room), lines));
        *room.chat_relay.lock().unwrap_or_else(|p| p.into_inner()) = Some(relay);
        room
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the lines of the room's sessions go (its watchers' outputs send theirs here).
    pub fn chat_sender(&self) -> ChatSender {
        self.chat.clone()
    }

    /// The stream name of participant `id`.
    pub fn stream(&self, id: &str) -> String {
        format!("{}/{id}", self.name)
    }

    /// Participant `id`'s ingest point, if it is in the room.
    pub fn participant(&self, id: &str) -> Option<Arc<IngestPoint>> {
        self.lock().participants.get(id).map(|p| p.point.clone())
    }

    /// The stream names of the participants now.
    pub fn streams(&self) -> Vec<String> {
        self.lock()
            .participants
            .keys()
            .map(|id| self.stream(id))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Who is in the room now, in the order of their ids.
    pub fn participants(&self) -> Vec<ParticipantView> {
        let outputs = self.outputs.upgrade();
        let state = self.lock();
        state
            .participants
            .iter()
            .map(|(id, p)| {
                let stats = p.point.publishers().into_iter().next();
                let viewers = outputs
                    .as_ref()
                    .and_then(|o| o.get(&self.stream(id)))
                    .map_or(0, |out| out.viewers().len());
                ParticipantView {
                    id: id.clone(),
                    name: p.name.clone(),
                    joined: p.joined.clone(),
                    codec: self.parts.plan.ingest.map_or("", |i| i.codec.name()),
                    viewers,
                    connected: stats.as_ref().is_some_and(|s| s.connected),
                    bytes_received: stats.map_or(0, |s| s.bytes_received),
                    hooks: self.hook_stats(id),
                }
            })
            .collect()
    }

    /// The participants' ingest points now (taken out of the lock, to be asked in turn).
    fn points(&self) -> Vec<Arc<IngestPoint>> {
        self.lock()
            .participants
            .values()
            .map(|p| p.point.clone())
            .collect()
    }

    /// The participants' publishing sessions.
    pub fn publishers(&self) -> Vec<super::types::ViewerStats> {
        self.points().iter().flat_map(|p| p.publishers()).collect()
    }

    /// The participants' publishers' pipelines.
    pub fn publisher_pipelines(&self) -> Vec<gst::Pipeline> {
        self.points()
            .iter()
            .filter_map(|p| p.publisher_pipeline())
            .collect()
    }

    fn hook_stats(&self, id: &str) -> Vec<crate::hooks::HookStats> {
        let table = self.parts.hooks.table.lock();
        let table = table.unwrap_or_else(|p| p.into_inner());
        table
            .get(&self.stream(id))
            .map(|hooks| hooks.iter().map(|h| h.stats()).collect())
            .unwrap_or_default()
    }

    /// What every participant sent, the ones that left included.
    pub fn totals(&self) -> Totals {
        let state = self.lock();
        let mut t = *self.parts.ended.lock().unwrap_or_else(|p| p.into_inner());
        for p in state.participants.values() {
            for s in p.point.publishers() {
                t.add(&s);
            }
        }
        t
    }

    /// WHIP join: a participant's session answering `offer`; returns its id and the answer.
    pub async fn join(
        self: &Arc<Self>,
        offer: String,
        name: Option<String>,
        via: Via,
        client: Option<std::net::IpAddr>,
    ) -> Result<(String, String), WebRtcError> {
        let (id, point, rx) = {
            let mut state = self.lock();
            if state.closed {
                return Err(WebRtcError::NotPlaying(self.name.clone()));
            }
            if state.participants.len() >= self.max as usize {
                return Err(WebRtcError::RoomFull(self.name.clone(), self.max));
            }
            let id = participant_id(name.as_deref());
            let stream = self.stream(&id);
            let mut parts = self.parts.clone();
            parts.plan.name = stream.clone();
            let point = IngestPoint::new(&stream, parts, Some(self.chat.clone()));
            let (session, _, rx) = point.publish_session(offer, via, client, None)?;
            let name = name.unwrap_or_else(|| id.clone());
            tracing::info!("{}: {name} joined as {id} (session {session})", self.name);
            state.participants.insert(
                id.clone(),
                Participant {
                    name: name.clone(),
                    joined: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    point: point.clone(),
                },
            );
            self.events.publish(Event::new(
                "participant_joined",
                &self.name,
                serde_json::json!({ "participant": id, "name": name, "via": via }),
            ));
            (id, point, rx)
        };
        // Its session ending (left, timed out, failed) takes it out of the room.
        let (room, watched) = (Arc::downgrade(self), id.clone());
        self.tasks.spawn(async move {
            point.idle().await;
            if let Some(room) = room.upgrade() {
                room.left(&watched);
            }
        });
        let session = rx_session(rx).await?;
        Ok((id, session))
    }

    /// The participant's session is over (its recording finished): it leaves the room, and
    /// whoever watched it is told so (their sessions end).
    fn left(&self, id: &str) {
        let Some(p) = self.lock().participants.remove(id) else {
            return;
        };
        if let Some(relay) = &self.parts.relay {
            relay.detach(&self.stream(id));
        }
        tracing::info!("{}: {} ({id}) left", self.name, p.name);
        self.events.publish(Event::new(
            "participant_left",
            &self.name,
            serde_json::json!({ "participant": id, "name": p.name }),
        ));
    }

    /// WHIP `DELETE`: participant `id` leaves; false if there is no such participant.
    pub fn leave(&self, id: &str) -> bool {
        let Some(point) = self.participant(id) else {
            return false;
        };
        point
            .publisher_id()
            .is_some_and(|session| point.end(&session))
    }

    /// A watching session gave a display name, for its chat lines.
    pub fn name_watcher(&self, session: &ViewerId, name: String) {
        let outputs = self.outputs.upgrade();
        let mut state = self.lock();
        // Forget the watchers whose sessions are over, so the table stays as small as the room.
        if let Some(outputs) = &outputs {
            let live: std::collections::HashSet<ViewerId> = state
                .participants
                .keys()
                .filter_map(|id| outputs.get(&self.stream(id)))
                .flat_map(|out| out.session_ids())
                .collect();
            state.watchers.retain(|id, _| live.contains(id));
        }
        state.watchers.insert(session.clone(), name);
    }

    /// Admits nobody more, ends every participant and waits (bounded) until each one's
    /// recording is finished and its pipeline freed.
    pub async fn close(&self) {
        let points: Vec<Arc<IngestPoint>> = {
            let mut state = self.lock();
            state.closed = true;
            state
                .participants
                .values()
                .map(|p| p.point.clone())
                .collect()
        };
        for point in &points {
            point.close().await;
        }
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("{}: participants still leaving after 10 s", self.name);
        }
        if let Some(task) = self
            .chat_relay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// Who typed a line: a participant (its publishing session) or a named watcher.
    fn speaker(&self, session: &ViewerId) -> (String, Option<String>) {
        let state = self.lock();
        for (id, p) in &state.participants {
            if p.point.publisher_id().as_ref() == Some(session) {
                return (p.name.clone(), Some(id.clone()));
            }
        }
        let name = state
            .watchers
            .get(session)
            .cloned()
            .unwrap_or_else(|| format!("viewer {}", session.short()));
        (name, None)
    }

    /// Sends every line typed in the room to every other session of it: the participants'
    /// publishing sessions and the sessions watching them.
    async fn relay_chat(room: Weak<Room>, mut lines: mpsc::Receiver<(ViewerId, String)>) {
        while let Some((from, text)) = lines.recv().await {
            let Some(room) = room.upgrade() else { return };
            let (name, participant) = room.speaker(&from);
            let said = serde_json::json!({
                "from": name,
                "participant": participant,
                "text": text,
            });
            let line = said.to_string();
            // On the event stream too: recorders caption the participants' segments with it.
            room.events.publish(Event::new("chat", &room.name, said));
            let outputs = room.outputs.upgrade();
            if let Some(registry) = &outputs {
                registry.chat_bus().publish(super::chat::ChatLine {
                    target: room.name.clone(),
                    from: from.0.clone(),
                    text: text.clone(),
                });
            }
            let points: Vec<(String, Arc<IngestPoint>)> = room
                .lock()
                .participants
                .iter()
                .map(|(id, p)| (id.clone(), p.point.clone()))
                .collect();
            for (id, point) in points {
                if point.publisher_id().as_ref() != Some(&from) {
                    point.send_chat(line.clone());
                }
                let Some(out) = outputs.as_ref().and_then(|o| o.get(&room.stream(&id))) else {
                    continue;
                };
                out.send_chat_except(&from, &line);
            }
        }
    }
}

async fn rx_session(
    rx: tokio::sync::oneshot::Receiver<Result<String, String>>,
) -> Result<String, WebRtcError> {
    super::output::await_answer(ViewerId(String::new()), rx)
        .await
        .map(|(_, answer)| answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_ids_carry_the_name_and_a_random_part() {
        let id = participant_id(Some("Ana María ../x"));
        assert!(id.starts_with("anamarax-"), "{id}");
        assert!(crate::description::validate_name(&id).is_ok(), "{id}");
        let bare = participant_id(None);
        assert_eq!(bare.len(), 8);
        assert_ne!(participant_id(Some("a")), participant_id(Some("a")));
        assert!(crate::description::validate_name(&participant_id(Some("--"))).is_ok());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name(Some("  Bob\n ")).as_deref(), Some("Bob"));
        assert_eq!(display_name(Some("\u{7}")), None);
        assert_eq!(display_name(None), None);
        assert_eq!(
            display_name(Some(&"x".repeat(100))).map(|n| n.len()),
            Some(40)
        );
    }
}
