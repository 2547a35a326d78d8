//! Limits that keep one client (or a crowd) from slowing everyone else down: WebRTC viewers and
//! publishers in total; sessions that have not connected yet, HTTP connections and signalling
//! WebSockets, each in total and per address ([`Gate`]); and how fast one address may open new
//! sessions. Over a limit the answer is an explicit refusal
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
    /// WebRTC sessions that have not completed ICE and DTLS yet.
    pub pending: Gate,
    /// HTTP connections (TCP, or TLS once accepted).
    pub connections: Gate,
    /// Signalling WebSocket peers.
    pub signalling: Gate,
    /// How long a client has to send a request's headers, and how long a keep-alive HTTP
    /// connection may stay idle.
    pub header_timeout: std::time::Duration,
    /// How long one HTTP request may take, its body included (the longest legitimate one
    /// waits for a pipeline to stop and start again).
    pub request_timeout: std::time::Duration,
    /// How long a signalling peer may stay without a role or a session since its last message.
    pub signalling_idle: std::time::Duration,
    /// The address of each peer of the embedded signalling server, so that sessions started
    /// through it count against their client's address too.
    signalling_peers: Mutex<HashMap<String, IpAddr>>,
}

/// A count of things in progress, capped in total and per client address; over a cap the
/// caller refuses (and it is counted).
pub struct Gate {
    /// What is counted, for refusals: "sessions that have not connected yet".
    what: &'static str,
    /// The options that set the caps, for refusals.
    options: (&'static str, &'static str),
    pub max_total: usize,
    pub max_per_address: usize,
    counts: Arc<Mutex<Counts>>,
    /// Refused because a cap was reached.
    refused: AtomicU64,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One thing counted by a [`Gate`]; dropping it gives the place back.
pub struct Pass {
    counts: Arc<Mutex<Counts>>,
    address: Option<IpAddr>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = self.address
            && let Some(n) = c.by_address.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_address.remove(&ip);
            }
        }
    }
}

impl Gate {
    pub fn new(
        what: &'static str,
        options: (&'static str, &'static str),
        max_total: usize,
        max_per_address: usize,
    ) -> Gate {
        Gate {
            what,
            options,
            max_total,
            max_per_address,
            counts: Arc::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// A place for one more from `address` (None: not counted per address, only in total).
    pub fn enter(&self, address: Option<IpAddr>) -> Result<Pass, String> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let refusal = if c.total >= self.max_total {
            Some(format!(
                "the service has {} {}, its maximum (see {}); retry shortly",
                c.total, self.what, self.options.0
            ))
        } else if let Some(ip) = address
            && c.by_address.get(&ip).copied().unwrap_or(0) >= self.max_per_address
        {
            Some(format!(
                "{ip} has {} {}, its maximum (see {})",
                self.max_per_address, self.what, self.options.1
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(why);
        }
        c.total += 1;
        if let Some(ip) = address {
            *c.by_address.entry(ip).or_default() += 1;
        }
        Ok(Pass {
            counts: self.counts.clone(),
            address,
        })
    }

    /// How many now.
    pub fn now(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
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
            pending: Gate::new(
                "sessions that have not connected yet",
                ("--max-pending", "--max-pending-per-address"),
                64,
                8,
            ),
            connections: Gate::new(
                "open HTTP connections",
                ("--max-connections", "--max-connections-per-address"),
                1024,
                64,
            ),
            signalling: Gate::new(
                "signalling WebSocket connections",
                ("--max-signalling", "--max-signalling-per-address"),
                512,
                16,
            ),
            header_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(120),
            signalling_idle: std::time::Duration::from_secs(30),
            signalling_peers: Mutex::default(),
        }
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, IpAddr>> {
        self.signalling_peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A signalling peer connected from `ip` (until [`Limits::forget_peer`]).
    pub fn remember_peer(&self, peer: &str, ip: IpAddr) {
        self.lock_peers().insert(peer.to_string(), ip);
    }

    pub fn forget_peer(&self, peer: &str) {
        self.lock_peers().remove(peer);
    }

    /// Where signalling peer `peer` connected from, if it is one of the embedded server's.
    pub fn peer_address(&self, peer: &str) -> Option<IpAddr> {
        self.lock_peers().get(peer).copied()
    }

    /// The address a per-address cap counts `client` under: loopback clients are held to the
    /// totals only, unless `limit_loopback` (a proxy in front limits its own clients).
    pub fn address(&self, client: Option<IpAddr>) -> Option<IpAddr> {
        // `::ffff:127.0.0.1` (a dual-stack listener) is loopback too.
        client
            .map(|ip| ip.to_canonical())
            .filter(|ip| !ip.is_loopback() || self.limit_loopback)
    }

    /// A place for one more WebRTC session that has yet to connect, from `client` (None: not
    /// known, e.g. a signalling session).
    pub fn pending(&self, client: Option<IpAddr>) -> Result<Pass, String> {
        self.pending.enter(self.address(client))
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
