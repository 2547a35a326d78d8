//! Chat: the limits every typed line meets, and the bus on which the lines of each pipeline's
//! and room's chat leave the WebRTC sessions.
//!
//! - A viewer types on its data channel; its session passes the line through a [`ChatLimit`]
//!   to its output's relay (or its room's), which sends it to every other session there and
//!   puts it on the [`ChatBus`] under the pipeline's (or room's) name.
//! - Socket.IO clients (`crate::http` serves `/socket.io/`) are another kind of speaker: their
//!   lines enter the same relays, and what comes on the bus reaches them.

use std::time::{Duration, Instant};

/// Longest chat line relayed, in characters.
pub const CHAT_MAX_CHARS: usize = 500;

/// Lines a speaker may send at once; all come back [`CHAT_REFILL`] after the last refill.
pub const CHAT_BURST: u32 = 10;

/// How often a speaker's allowance of lines is refilled.
pub const CHAT_REFILL: Duration = Duration::from_secs(10);

/// One speaker's allowance: at most [`CHAT_BURST`] lines per [`CHAT_REFILL`], each trimmed and
/// cut to [`CHAT_MAX_CHARS`] characters.
#[derive(Debug)]
pub struct ChatLimit {
    tokens: u32,
    refilled: Instant,
}

impl ChatLimit {
    pub fn new(now: Instant) -> ChatLimit {
        ChatLimit {
            tokens: CHAT_BURST,
            refilled: now,
        }
    }

    /// The line to relay for `text` typed at `now`: trimmed and cut to length; None when the
    /// speaker is over its rate (the line is dropped) or the line is blank.
    pub fn admit(&mut self, now: Instant, text: &str) -> Option<String> {
        if now.saturating_duration_since(self.refilled) >= CHAT_REFILL {
            self.tokens = CHAT_BURST;
            self.refilled = now;
        }
        if self.tokens == 0 {
            return None;
        }
        self.tokens -= 1;
        let text: String = text.trim().chars().take(CHAT_MAX_CHARS).collect();
        (!text.is_empty()).then_some(text)
    }
}

/// A line said in the chat of `target` (a pipeline's or a room's name) by `from` (the
/// speaker's session id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    pub target: String,
    pub from: String,
    pub text: String,
}

/// Lines kept for a listener that is behind; it loses the oldest beyond this (counted in its
/// log), never slowing the relays.
const BUS_BACKLOG: usize = 256;

/// Every chat's lines, for whoever listens (the Socket.IO clients). Publishing never waits.
pub type ChatBus = crate::events::Bus<ChatLine>;

impl Default for ChatBus {
    fn default() -> Self {
        ChatBus::new(BUS_BACKLOG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_lines_drop_until_the_refill() {
        let t0 = Instant::now();
        let mut limit = ChatLimit::new(t0);
        for i in 0..CHAT_BURST {
            assert_eq!(
                limit.admit(t0, &format!("line {i}")),
                Some(format!("line {i}"))
            );
        }
        assert_eq!(limit.admit(t0 + Duration::from_secs(9), "one more"), None);
        assert_eq!(
            limit.admit(t0 + CHAT_REFILL, "after the refill"),
            Some("after the refill".into())
        );
    }

    #[test]
    fn lines_are_trimmed_and_cut_and_blank_ones_dropped() {
        let t0 = Instant::now();
        let mut limit = ChatLimit::new(t0);
        assert_eq!(limit.admit(t0, "  hi \n"), Some("hi".into()));
        assert_eq!(limit.admit(t0, "   "), None);
        let long = "é".repeat(CHAT_MAX_CHARS + 20);
        let cut = limit.admit(t0, &long).expect("a line");
        assert_eq!(cut.chars().count(), CHAT_MAX_CHARS);
    }
}
