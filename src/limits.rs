//! Limits that keep one client (or a crowd) from slowing everyone else down: WebRTC viewers and
//! publishers in total, sessions that have not connected yet (in total and per address), and
//! how fast one address may open new sessions. Over a limit the answer is an explicit refusal
//! (503, 429), never a slowdown, and never the eviction of a connected peer.

use governor::clock::DefaultClock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The service-wide limits, shared by the WebRTC outputs, the ingest points and the HTTP layer.
pub struct Limits {
    pub max_viewers: usize,
    pub max_publishers: usize,
    viewers: AtomicUsize,
    publishers: AtomicUsize,
    /// New sessions (WHEP, WHIP, `/offer`, signalling connections) per second per address.
    sessions: Option<RateLimiter<IpAddr, HashMapStateStore<IpAddr>, DefaultClock>>,
    /// Apply the session rate to loopback addresses too (a local proxy in front of the service
    /// should do its own limiting; tests and the benchmark connect from loopback).
    pub limit_loopback: bool,
    pub session_rate: u32,
    /// Sessions that have not completed ICE and DTLS yet, in total and per client address.
    pub max_pending: usize,
    pub max_pending_per_address: usize,
    pending: Mutex<Pending>,
    /// Sessions refused because too many were pending.
    pub pending_refused: AtomicU64,
}

#[derive(Default)]
struct Pending {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One session that has not connected yet; dropping it (connected, or over) gives the place
/// back.
pub struct PendingSlot {
    limits: Arc<Limits>,
    address: Option<IpAddr>,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut p = self.limits.lock_pending();
        p.total = p.total.saturating_sub(1);
        if let Some(ip) = self.address
            && let Some(n) = p.by_address.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.by_address.remove(&ip);
            }
        }
    }
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("max_viewers", &self.max_viewers)
            .field("max_publishers", &self.max_publishers)
            .field("session_rate", &self.session_rate)
            .finish()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(500, 32, 20, false)
    }
}

/// Holds one place under a limit; dropping it gives the place back.
pub struct Slot {
    count: Arc<Limits>,
    publisher: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let c = if self.publisher {
            &self.count.publishers
        } else {
            &self.count.viewers
        };
        c.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limits {
    /// `session_rate` new sessions per second per address (a burst of twice that); 0 = none.
    pub fn new(
        max_viewers: usize,
        max_publishers: usize,
        session_rate: u32,
        limit_loopback: bool,
    ) -> Limits {
        let sessions = NonZeroU32::new(session_rate).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            RateLimiter::hashmap(Quota::per_second(rate).allow_burst(burst))
        });
        Limits {
            max_viewers,
            max_publishers,
            viewers: AtomicUsize::new(0),
            publishers: AtomicUsize::new(0),
            sessions,
            limit_loopback,
            session_rate,
            max_pending: 64,
            max_pending_per_address: 8,
            pending: Mutex::default(),
            pending_refused: AtomicU64::new(0),
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more session that has yet to connect, from `client` (None: not known,
    /// e.g. a signalling session; then only the total applies). Loopback clients are held to
    /// the total only, unless `limit_loopback` (a proxy in front limits its own clients).
    pub fn pending(self: &Arc<Self>, client: Option<IpAddr>) -> Result<PendingSlot, String> {
        let address = client.filter(|ip| !ip.is_loopback() || self.limit_loopback);
        let mut p = self.lock_pending();
        let refusal = if p.total >= self.max_pending {
            Some(format!(
                "the service has {} sessions that have not connected yet, its maximum (see --max-pending); retry shortly",
                p.total
            ))
        } else if let Some(ip) = address
            && p.by_address.get(&ip).copied().unwrap_or(0) >= self.max_pending_per_address
        {
            Some(format!(
                "{ip} has {} sessions that have not connected yet, its maximum (see --max-pending-per-address); retry once they connect",
                self.max_pending_per_address
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            self.pending_refused.fetch_add(1, Ordering::Relaxed);
            return Err(why);
        }
        p.total += 1;
        if let Some(ip) = address {
            *p.by_address.entry(ip).or_default() += 1;
        }
        Ok(PendingSlot {
            limits: self.clone(),
            address,
        })
    }

    /// Sessions that have not connected yet.
    pub fn pending_now(&self) -> usize {
        self.lock_pending().total
    }

    fn take(self: &Arc<Self>, publisher: bool) -> Option<Slot> {
        let (count, max) = if publisher {
            (&self.publishers, self.max_publishers)
        } else {
            (&self.viewers, self.max_viewers)
        };
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                count: self.clone(),
                publisher,
            })
    }

    /// A place for one more viewer session, if the service has one.
    pub fn viewer(self: &Arc<Self>) -> Option<Slot> {
        self.take(false)
    }

    /// A place for one more publisher, if the service has one.
    pub fn publisher(self: &Arc<Self>) -> Option<Slot> {
        self.take(true)
    }

    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::SeqCst)
    }

    /// Whether `ip` may open another session now; otherwise the seconds to wait.
    pub fn session_allowed(&self, ip: IpAddr) -> Result<(), u64> {
        let Some(limiter) = &self.sessions else {
            return Ok(());
        };
        if ip.is_loopback() && !self.limit_loopback {
            return Ok(());
        }
        // Forget addresses that have been quiet, so the table stays small.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).map_err(|not_until| {
            let wait =
                not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()));
            wait.as_secs().max(1)
        })
    }
}
