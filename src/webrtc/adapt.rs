//! Which ladder rung a viewer should be on, from its bandwidth estimate: sans-I/O (estimates
//! and time in, a rung out), so the rules are tested without a network.
//!
//! - **Down**: the link is congested (the estimator fell within [`FULL_MEMORY`], or the peer
//!   reports heavy loss) and the estimate has stayed below what the current rung sends for
//!   [`DOWN_AFTER`] (its bitrate, or less when the picture needs less: encoders do not pad,
//!   and a simple picture at 2 Mbit/s may send a few hundred kbit/s); the viewer goes to the
//!   best rung the estimate carries (the lowest if none does). An estimator that has only
//!   climbed (it started below what the rung sends, as when a simulcast publisher's layers
//!   grow) is catching up, not congested.
//! - **Up**: the estimate has held [`UP_MARGIN`] × a better rung's bitrate for [`UP_AFTER`];
//!   the viewer goes to the best such rung.
//! - **Loss floor**: receiver reports losing more than [`LOSS_HIGH`] of the packets cap the
//!   estimate at what the current rung sends, less half the loss (GCC's loss rule), so a
//!   viewer whose peer reports loss but no delay feedback still moves down.
//! - **Only what was seen**: a delay-based estimator keeps raising its estimate while the
//!   link is not full, so the estimate counts only up to [`SENT_MARGIN`] × what the viewer
//!   actually sent.
//! - **Probing**: below the top, the viewer's video is padded (see [`super::probing`]) up to
//!   the estimate, at most [`UP_MARGIN`] × the top rung's bitrate, so the estimate can grow
//!   to what a better rung needs; after the estimate falls (the link is full) padding pauses
//!   for [`PROBE_PAUSE`], and for [`FULL_MEMORY`] the padded rate goes no more than a tenth
//!   over where the link filled: a slow link is probed gently (its queue grows before it
//!   drops, and the estimator backs off in time), not pushed into losses. When the link has
//!   carried the padded rate for [`RAISE_AFTER`] without the estimate falling, the estimate
//!   is raised to [`RAISE`] × that rate: the estimator alone grows 8 % a second, which takes
//!   half a minute from a low rung to the top.

use std::time::{Duration, Instant};

/// How long the estimate must stay below the current rung before moving down: long enough
/// that a busy machine's scheduling delays (which a delay-based estimator reads as a queue)
/// do not move a viewer on a good link, within the ~5 s a congested viewer should wait.
pub const DOWN_AFTER: Duration = Duration::from_secs(4);
/// Below half the rung, the link is plainly too slow: moving sooner spares the viewer frozen
/// seconds.
pub const DOWN_AFTER_FAR: Duration = Duration::from_secs(2);
/// How long the estimate must hold a better rung (with the margin) before moving up.
pub const UP_AFTER: Duration = Duration::from_secs(12);
/// A better rung needs this much more than its bitrate.
pub const UP_MARGIN: f64 = 1.3;
/// A loss fraction above this caps the estimate.
pub const LOSS_HIGH: f64 = 0.1;
/// A loss report counts for this long.
const LOSS_FRESH: Duration = Duration::from_secs(4);
/// The estimate counts up to this many times the rate actually sent.
pub const SENT_MARGIN: f64 = 1.5;
/// No padding for this long after the estimate fell.
pub const PROBE_PAUSE: Duration = Duration::from_secs(4);
/// How long the level at which the link last filled limits probing.
pub const FULL_MEMORY: Duration = Duration::from_secs(10);
/// How long a padded rate must hold before the estimate is raised over it.
pub const RAISE_AFTER: Duration = Duration::from_secs(1);
/// How far over a rate that held the estimate is raised.
pub const RAISE: f64 = 1.25;

/// What to do after an estimate: move to another rung, and pad the video at this rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub to: Option<usize>,
    pub padding_kbps: u32,
    /// Set the estimator's estimate to this (kbit/s): the link carried less than that.
    pub raise_kbps: Option<u32>,
}

#[derive(Debug)]
pub struct Adapt {
    /// kbit/s, top first, each lower than the one before.
    bitrates: Vec<u32>,
    current: usize,
    /// Since when the estimate has been below the current rung.
    below_since: Option<Instant>,
    /// Per better rung (index < current): since when the estimate has held it.
    above_since: Vec<Option<Instant>>,
    loss: Option<(Instant, f64)>,
    estimate_kbps: Option<u32>,
    switches: u32,
    /// The estimator's previous figure, to see it fall.
    last_raw: Option<u32>,
    /// No padding before this.
    quiet_until: Option<Instant>,
    /// Since when the estimate has not fallen (or was last raised).
    stable_since: Option<Instant>,
    /// What the current rung's media sends (kbit/s), smoothed; None until measured.
    media_kbps: Option<f64>,
    /// When, and at what estimate, the link last filled (the estimate fell).
    full_at: Option<(Instant, u32)>,
}

impl Adapt {
    /// Starts on rung `current` of `bitrates` (kbit/s, top first).
    pub fn new(bitrates: Vec<u32>, current: usize) -> Adapt {
        let n = bitrates.len();
        Adapt {
            bitrates,
            current: current.min(n.saturating_sub(1)),
            below_since: None,
            above_since: vec![None; n],
            loss: None,
            estimate_kbps: None,
            switches: 0,
            last_raw: None,
            quiet_until: None,
            stable_since: None,
            media_kbps: None,
            full_at: None,
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// New figures for the same rungs (a simulcast publisher's layers, as measured); the
    /// rules go on with what they have seen so far.
    pub fn set_bitrates(&mut self, bitrates: Vec<u32>) {
        if bitrates.len() == self.bitrates.len() {
            self.bitrates = bitrates;
        }
    }

    pub fn switches(&self) -> u32 {
        self.switches
    }

    /// The viewer is on rung `to` for another reason than these rules (the rung they chose
    /// stopped arriving): they go on from there.
    pub fn moved(&mut self, to: usize) {
        if to != self.current && to < self.bitrates.len() {
            self.switch(to);
        }
    }

    /// The latest estimate, loss floor applied.
    pub fn estimate_kbps(&self) -> Option<u32> {
        self.estimate_kbps
    }

    /// A receiver report's fraction of packets lost (0 to 1).
    pub fn loss(&mut self, now: Instant, fraction: f64) {
        self.loss = Some((now, fraction.clamp(0.0, 1.0)));
    }

    /// What the current rung sends now (kbit/s): its bitrate, or the measured media rate
    /// with a fifth to spare when that is lower.
    fn rung_rate(&self) -> u32 {
        let nominal = self.bitrates.get(self.current).copied().unwrap_or(0);
        match self.media_kbps {
            Some(m) => nominal.min((m * 1.2).max(16.0) as u32),
            None => nominal,
        }
    }

    /// The estimator's figure (kbit/s), what the viewer sent lately (kbit/s, padding
    /// included) and, of that, its media (None until measured): whether to move, and how
    /// much to pad.
    pub fn step(&mut self, now: Instant, raw_kbps: u32, sent: Option<(u32, u32)>) -> Step {
        let (sent_kbps, media_kbps) = sent.unwrap_or((raw_kbps, 0));
        if sent.is_some() {
            let m = f64::from(media_kbps);
            self.media_kbps = Some(self.media_kbps.map_or(m, |old| old + 0.1 * (m - old)));
        }
        if let Some(last) = self.last_raw.filter(|&last| raw_kbps < last) {
            self.quiet_until = Some(now + PROBE_PAUSE);
            self.stable_since = None;
            self.full_at = Some((now, last));
        }
        self.last_raw = Some(raw_kbps);
        let stable_since = *self.stable_since.get_or_insert(now);
        let seen = (SENT_MARGIN * f64::from(sent_kbps)) as u32;
        let congested = self.congested(now);
        let to = self.decide(now, raw_kbps.min(seen), congested);
        let padding_kbps = self.padding(now);
        // Padding has lifted what was sent, and the link carried it: raise the estimate.
        let ceiling = self.probe_limit(now);
        let over = ((RAISE * f64::from(sent_kbps)) as u32).min(ceiling);
        let raise_kbps = (padding_kbps > 0
            && now.saturating_duration_since(stable_since) >= RAISE_AFTER
            && over > raw_kbps)
            .then_some(over);
        if raise_kbps.is_some() {
            self.stable_since = Some(now);
            self.last_raw = raise_kbps;
        }
        Step {
            to,
            padding_kbps,
            raise_kbps,
        }
    }

    /// Padding goes no further than the margin over the top rung.
    fn ceiling(&self) -> u32 {
        let top = self.bitrates.first().copied().unwrap_or(0);
        (UP_MARGIN * f64::from(top)).ceil() as u32
    }

    /// How far probing may take the rate now: the ceiling, or a tenth over where the link
    /// filled within [`FULL_MEMORY`].
    fn probe_limit(&self, now: Instant) -> u32 {
        match self.full_at {
            Some((at, level)) if now.saturating_duration_since(at) < FULL_MEMORY => {
                self.ceiling().min((f64::from(level) * 1.1) as u32)
            }
            _ => self.ceiling(),
        }
    }

    /// Padding while below the top and not just congested: up to the estimate, at most the
    /// margin over the top rung, less what the rung sends itself.
    fn padding(&self, now: Instant) -> u32 {
        let Some(estimate) = self.estimate_kbps else {
            return 0;
        };
        if self.current == 0
            || self.below_since.is_some()
            || self.quiet_until.is_some_and(|q| now < q)
        {
            return 0;
        }
        // Padding lifts the rate to a little over the estimate, so the estimator sees it hold.
        let want = ((f64::from(estimate) * 1.1) as u32).min(self.probe_limit(now));
        want.saturating_sub(self.rung_rate())
    }

    /// A new bandwidth estimate (kbit/s), the link taken as congested: the rung to move to,
    /// if it is time to move.
    pub fn estimate(&mut self, now: Instant, kbps: u32) -> Option<usize> {
        self.decide(now, kbps, true)
    }

    /// Whether the link showed congestion lately: the estimator fell within [`FULL_MEMORY`],
    /// or the peer reports losing more than [`LOSS_HIGH`].
    fn congested(&self, now: Instant) -> bool {
        let fell = self
            .full_at
            .is_some_and(|(at, _)| now.saturating_duration_since(at) < FULL_MEMORY);
        fell || self.loss_floor(now).is_some()
    }

    /// The rules, for an estimate of `kbps`; down only when `congested`.
    fn decide(&mut self, now: Instant, kbps: u32, congested: bool) -> Option<usize> {
        let kbps = self.with_loss_floor(now, kbps);
        self.estimate_kbps = Some(kbps);
        let current_rate = self.rung_rate();
        // Down.
        if congested && kbps < current_rate && self.current + 1 < self.bitrates.len() {
            let since = *self.below_since.get_or_insert(now);
            let wait = if kbps < current_rate / 2 {
                DOWN_AFTER_FAR
            } else {
                DOWN_AFTER
            };
            if now.saturating_duration_since(since) >= wait {
                let target = (self.current + 1..self.bitrates.len())
                    .find(|&k| self.bitrates[k] <= kbps)
                    .unwrap_or(self.bitrates.len() - 1);
                return Some(self.switch(target));
            }
        } else {
            self.below_since = None;
        }
        // Up.
        let mut best = None;
        for k in (0..self.current).rev() {
            let holds = kbps as f64 >= UP_MARGIN * self.bitrates[k] as f64;
            if !holds {
                self.above_since[k] = None;
                continue;
            }
            let since = *self.above_since[k].get_or_insert(now);
            if now.saturating_duration_since(since) >= UP_AFTER {
                best = Some(k);
            }
        }
        best.map(|k| self.switch(k))
    }

    /// What an up-move to the next better rung would need (kbit/s), if there is one: where
    /// probing should take the estimate.
    pub fn probe_target_kbps(&self) -> Option<u32> {
        let next = self.current.checked_sub(1)?;
        Some((UP_MARGIN * self.bitrates[next] as f64).ceil() as u32)
    }

    fn with_loss_floor(&self, now: Instant, kbps: u32) -> u32 {
        self.loss_floor(now).map_or(kbps, |floor| kbps.min(floor))
    }

    /// The cap heavy reported loss puts on the estimate (kbit/s), while the report is fresh.
    fn loss_floor(&self, now: Instant) -> Option<u32> {
        match self.loss {
            Some((at, fraction))
                if fraction > LOSS_HIGH && now.saturating_duration_since(at) < LOSS_FRESH =>
            {
                let sent = f64::from(self.rung_rate());
                Some((sent * (1.0 - 0.5 * fraction)) as u32)
            }
            _ => None,
        }
    }

    fn switch(&mut self, to: usize) -> usize {
        // Up: better rungs keep the time they have held so far. Down: everything starts over.
        let up = to < self.current;
        self.current = to;
        self.switches += 1;
        self.media_kbps = None;
        self.below_since = None;
        for (k, since) in self.above_since.iter_mut().enumerate() {
            if !up || k >= to {
                *since = None;
            }
        }
        // Losses reported for the old rung say nothing about the new one.
        self.loss = None;
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Feeds `kbps` every 100 ms from `from` to `to` ms; the first switch, with its time.
    fn run(a: &mut Adapt, t0: Instant, from: u64, to: u64, kbps: u32) -> Option<(u64, usize)> {
        (from..to)
            .step_by(100)
            .find_map(|ms| a.estimate(at(t0, ms), kbps).map(|k| (ms, k)))
    }

    #[test]
    fn sustained_congestion_moves_down_to_what_fits() {
        let t0 = Instant::now();
        let mut a = Adapt::new(vec![2000, 700, 200], 0);
        // A short dip is not congestion.
        assert_eq!(run(&mut a, t0, 0, 3500, 1500), None);
        assert_eq!(run(&mut a, t0, 3500, 5000, 2500), None);
        // DOWN_AFTER a little below: to the rung that fits (700 at 1500 kbit/s).
        let (ms, k) = run(&mut a, t0, 5000, 15_000, 1500).expect("moves down");
        assert_eq!(k, 1);
        assert_eq!(ms, 5000 + DOWN_AFTER.as_millis() as u64);
        // Far below (under half of 700): sooner, straight to the rung that fits.
        let (ms, k) = run(&mut a, t0, 20_000, 30_000, 300).expect("moves down");
        assert_eq!(k, 2);
        assert_eq!(ms, 20_000 + DOWN_AFTER_FAR.as_millis() as u64);
        assert_eq!(a.switches(), 2);
        // Below even the lowest rung: nowhere to go.
        assert_eq!(run(&mut a, t0, 30_000, 40_000, 50), None);
    }

    #[test]
    fn a_better_rung_must_hold_with_margin() {
        let t0 = Instant::now();
        let mut a = Adapt::new(vec![2000, 700, 200], 2);
        // 900 < 1.3 × 700: never up.
        assert_eq!(run(&mut a, t0, 0, 30_000, 900), None);
        // 1000 ≥ 910 for UP_AFTER: up one rung.
        let (ms, k) = run(&mut a, t0, 30_000, 60_000, 1000).expect("moves up");
        assert_eq!(k, 1);
        assert_eq!(ms, 30_000 + UP_AFTER.as_millis() as u64);
        // An interruption restarts the count.
        assert_eq!(run(&mut a, t0, 60_000, 65_000, 2700), None);
        assert_eq!(run(&mut a, t0, 65_000, 65_100, 800), None);
        assert_eq!(a.probe_target_kbps(), Some(2600));
        let (ms, k) = run(&mut a, t0, 65_100, 90_000, 2700).expect("to the top");
        assert_eq!((k, ms), (0, 65_100 + UP_AFTER.as_millis() as u64));
        assert_eq!(a.probe_target_kbps(), None);
    }

    #[test]
    fn jumps_to_the_best_rung_that_held() {
        let t0 = Instant::now();
        let mut a = Adapt::new(vec![2000, 700, 200], 2);
        let (_, k) = run(&mut a, t0, 0, 30_000, 5000).expect("up");
        assert_eq!(k, 0);
    }

    #[test]
    fn the_estimate_counts_only_up_to_what_was_sent_and_padding_probes_for_more() {
        let t0 = Instant::now();
        let mut a = Adapt::new(vec![2000, 700, 200], 2);
        // The estimator says 4000, but 200 was sent: it counts as 300, no move up.
        let s = a.step(t0, 4000, Some((200, 200)));
        assert_eq!(a.estimate_kbps(), Some(300));
        // Padding lifts the rate to 1.1 × the estimate: 330 − 200.
        assert_eq!(
            s,
            Step {
                to: None,
                padding_kbps: 130,
                raise_kbps: None
            }
        );
        // With padding the sent rate follows, up to 1.3 × the top (2600).
        let s = a.step(at(t0, 1000), 4000, Some((3000, 200)));
        assert_eq!(s.padding_kbps, 2600 - 200);
        assert_eq!(s.raise_kbps, None, "the estimator is above what was sent");
        // The estimate falls: no padding for PROBE_PAUSE.
        let s = a.step(at(t0, 2000), 1000, Some((1000, 200)));
        assert_eq!(s.padding_kbps, 0);
        let s = a.step(
            at(t0, 2000 + PROBE_PAUSE.as_millis() as u64),
            1000,
            Some((1000, 200)),
        );
        assert_eq!(s.padding_kbps, 1100 - 200);
        // A padded rate that held for RAISE_AFTER raises the estimate over it, once a second.
        let mut b = Adapt::new(vec![2000, 700, 200], 2);
        assert_eq!(b.step(t0, 500, Some((500, 200))).raise_kbps, None);
        let s = b.step(at(t0, 1000), 500, Some((520, 200)));
        assert_eq!(s.raise_kbps, Some(650));
        assert_eq!(b.step(at(t0, 1500), 650, Some((600, 200))).raise_kbps, None);
        assert_eq!(
            b.step(at(t0, 2000), 650, Some((700, 200))).raise_kbps,
            Some(875)
        );
        // Where the link filled limits probing to a tenth over it for FULL_MEMORY.
        let mut c = Adapt::new(vec![2000, 700, 200], 2);
        c.step(t0, 600, Some((600, 200)));
        c.step(at(t0, 100), 500, Some((600, 200)));
        let later = at(t0, 100 + PROBE_PAUSE.as_millis() as u64);
        let s = c.step(later, 900, Some((900, 200)));
        assert_eq!(s.padding_kbps, 660 - 200);
        assert_eq!(s.raise_kbps, None);
        let free = at(t0, 100 + FULL_MEMORY.as_millis() as u64);
        assert_eq!(c.step(free, 900, Some((900, 200))).padding_kbps, 990 - 200);
        // On the top nothing is padded.
        let mut top = Adapt::new(vec![2000, 700], 0);
        assert_eq!(top.step(t0, 5000, Some((2000, 2000))).padding_kbps, 0);
    }

    #[test]
    fn a_rung_that_sends_less_than_its_bitrate_is_judged_by_what_it_sends() {
        let t0 = Instant::now();
        // A simple picture: the top sends 300 of its 2000 kbit/s; the estimate counts up to
        // 1.5 × 300 = 450, which carries what is sent: no move down.
        let mut a = Adapt::new(vec![2000, 700, 200], 0);
        for ms in (0..10_000).step_by(100) {
            assert_eq!(a.step(at(t0, ms), 3000, Some((300, 300))).to, None);
        }
        // Congestion below what it sends still moves it.
        let s = (10_000..20_000)
            .step_by(100)
            .find_map(|ms| a.step(at(t0, ms), 200, Some((300, 300))).to);
        assert_eq!(s, Some(2));
    }

    #[test]
    fn an_estimator_that_only_climbs_is_catching_up_not_congested() {
        let t0 = Instant::now();
        // It started at 300 while the rung sends 500, and climbs 8 % a second: no move.
        let mut a = Adapt::new(vec![2000, 700, 200], 0);
        let mut raw = 300.0;
        for ms in (0..10_000).step_by(100) {
            assert_eq!(a.step(at(t0, ms), raw as u32, Some((500, 500))).to, None);
            raw *= 1.008;
        }
        // Once it falls, the link is full: below what is sent for DOWN_AFTER moves down.
        let fell = (10_000..20_000).step_by(100).find_map(|ms| {
            a.step(at(t0, ms), 380, Some((500, 500)))
                .to
                .map(|k| (ms, k))
        });
        assert_eq!(fell, Some((10_000 + DOWN_AFTER.as_millis() as u64, 2)));
    }

    #[test]
    fn receiver_reported_loss_caps_the_estimate() {
        let t0 = Instant::now();
        let mut a = Adapt::new(vec![2000, 700, 200], 0);
        a.loss(t0, 0.3);
        // 2000 × (1 − 0.15) = 1700 < 2000 however high the delay-based estimate.
        assert_eq!(a.estimate(t0, 9000), None);
        assert_eq!(a.estimate_kbps(), Some(1700));
        a.loss(at(t0, 1000), 0.3);
        assert_eq!(a.estimate(at(t0, 4100), 9000), Some(1));
        // A stale report no longer counts; a light one never did.
        let mut b = Adapt::new(vec![2000, 700], 0);
        b.loss(t0, 0.05);
        assert_eq!(b.estimate(t0, 3000), None);
        assert_eq!(b.estimate_kbps(), Some(3000));
    }
}
