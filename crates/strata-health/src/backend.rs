//! One backend's shared state, and the group of backends behind one listener.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use strata_config::Passive;
use strata_metrics::{Counter, Gauge};

use strata_net::now_ms;

/// Traffic counters of one backend.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests (HTTP) or connections (TCP) sent to this backend.
    pub requests: Counter,
    /// Connect failures, timeouts and broken upstream connections.
    pub failures: Counter,
    /// Tries that went to this backend as a retry.
    pub retries: Counter,
    /// Times passive checking ejected this backend.
    pub ejections: Counter,
    /// Open client connections relayed to this backend (TCP) or in-flight requests (HTTP).
    pub open: Gauge,
}

/// Why a backend is or is not taking traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Taking traffic.
    Up,
    /// The active check failed `fall` times in a row.
    Down,
    /// Passive checking saw too many failures; back after a while.
    Ejected,
    /// An operator drained it; in-flight work finishes, nothing new arrives.
    Draining,
}

impl State {
    /// The state as `/status` and the admin API spell it: `up`, `down`, `ejected`, `draining`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Ejected => "ejected",
            State::Draining => "draining",
        }
    }
}

/// One server behind a listener, shared by the listener's requests, its health checks and the
/// admin API; all of its state is atomics, so any thread reads and updates it.
#[derive(Debug)]
pub struct Backend {
    /// Where the backend listens.
    pub addr: SocketAddr,
    /// `addr` as text, the backend's name in metrics, status and the admin API.
    pub name: String,
    /// Relative share of new requests, before slow start ([`Backend::effective_weight`]); a
    /// reload may change it.
    weight: AtomicU32,
    /// Its traffic counters.
    pub stats: BackendStats,
    /// Requests or connections in flight now; balancing reads it.
    in_flight: AtomicU32,
    /// The most it takes at once (`max_conns`); 0 for no limit. A reload may change it.
    max_conns: AtomicU32,
    /// Told when a limited backend's request or connection ends: what waits for room (its
    /// listener's queue) looks again. Shared by the backends of one listener.
    room: OnceLock<Arc<Notify>>,
    active_up: AtomicBool,
    /// Active checks in a row that disagree with `active_up`: kept here, not in the checker,
    /// so a checker restarted by a reload goes on counting toward `rise`/`fall`.
    check_streak: AtomicU32,
    draining: AtomicBool,
    passive_failures: AtomicU32,
    /// When the current ejection ends (ms, [`now_ms`]); 0 when not ejected.
    ejected_until: AtomicU64,
    /// Ejections in a row, for the growing back-off.
    ejection_streak: AtomicU32,
    /// When the backend last became available (ms); slow start ramps from here.
    available_since: AtomicU64,
    /// The last thing that changed its state, for /status.
    reason: Mutex<String>,
}

impl Backend {
    /// A backend that is up, not checked yet, with its counters at zero.
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        Backend {
            addr,
            name: addr.to_string(),
            weight: AtomicU32::new(weight),
            stats: BackendStats::default(),
            in_flight: AtomicU32::new(0),
            max_conns: AtomicU32::new(0),
            room: OnceLock::new(),
            active_up: AtomicBool::new(true),
            check_streak: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            passive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejection_streak: AtomicU32::new(0),
            available_since: AtomicU64::new(0),
            reason: Mutex::new("not checked yet".into()),
        }
    }

    /// Its relative share of new requests, as configured.
    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    /// A reload gave it another weight; everything else about it stays.
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Relaxed);
    }

    /// Why it takes traffic or not, now.
    pub fn state(&self) -> State {
        self.state_at(now_ms())
    }

    fn state_at(&self, now: u64) -> State {
        if self.draining.load(Relaxed) {
            State::Draining
        } else if !self.active_up.load(Relaxed) {
            State::Down
        } else if self.ejected_until.load(Relaxed) > now {
            State::Ejected
        } else {
            State::Up
        }
    }

    /// Whether new requests may go here now. Reads the clock only for a backend that has been
    /// ejected at some time (the hot path of a healthy one is three loads).
    pub fn is_available(&self) -> bool {
        if self.draining.load(Relaxed) || !self.active_up.load(Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Relaxed);
        until == 0 || until <= now_ms()
    }

    /// [`Backend::is_available`] at `now` ([`now_ms`]), for callers that look at many backends.
    pub fn is_available_at(&self, now: u64) -> bool {
        self.state_at(now) == State::Up
    }

    /// How much longer a passive ejection keeps it out, in milliseconds; `None` when it is not
    /// ejected.
    pub fn ejected_for_ms(&self) -> Option<u64> {
        let until = self.ejected_until.load(Relaxed);
        let now = now_ms();
        (until > now).then(|| until - now)
    }

    /// The last thing that changed its state, as `/status` shows it.
    pub fn reason(&self) -> String {
        self.reason.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn set_reason(&self, why: String) {
        if let Ok(mut r) = self.reason.lock() {
            *r = why;
        }
    }

    /// Requests or connections in flight now (see [`Backend::start`]).
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// Counts one request or connection in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        self.stats.open.inc();
        InFlight(self.clone())
    }

    /// As [`Backend::start`], unless it has `max_conns` in flight already.
    pub fn try_start(self: &Arc<Self>) -> Option<InFlight> {
        let max = self.max_conns.load(Relaxed);
        if max == 0 {
            return Some(self.start());
        }
        self.in_flight
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .ok()?;
        self.stats.open.inc();
        Some(InFlight(self.clone()))
    }

    /// Whether it can take one more request or connection now (below its `max_conns`).
    pub fn has_room(&self) -> bool {
        let max = self.max_conns.load(Relaxed);
        max == 0 || self.in_flight.load(Relaxed) < max
    }

    /// The most it takes at once; 0 for no limit.
    pub fn max_conns(&self) -> u32 {
        self.max_conns.load(Relaxed)
    }

    /// A reload gave it another limit; what is in flight stays.
    pub fn set_max_conns(&self, max: u32) {
        self.max_conns.store(max, Relaxed);
    }

    /// Whom to tell when one of its requests or connections ends, if nobody is told yet (the
    /// first listener generation that has it decides, and later ones share that).
    pub fn tell_room(&self, room: &Arc<Notify>) {
        let _ = self.room.set(room.clone());
    }

    /// The weight balancing uses now: ramped up from a tenth over `slow_start` after the backend
    /// comes back, like HAProxy's `slowstart`.
    pub fn effective_weight(&self, slow_start: Duration) -> f64 {
        self.effective_weight_at(slow_start, now_ms())
    }

    /// [`Backend::effective_weight`] at `now` ([`now_ms`]).
    pub fn effective_weight_at(&self, slow_start: Duration, now: u64) -> f64 {
        let weight = self.weight() as f64;
        let since = self.available_since.load(Relaxed);
        if slow_start.is_zero() || since == 0 {
            return weight;
        }
        let elapsed = now.saturating_sub(since) as f64;
        let ramp = elapsed / slow_start.as_millis() as f64;
        if ramp >= 1.0 {
            weight
        } else {
            weight * ramp.max(0.1)
        }
    }

    /// Counts one active check that passed (`ok`) or failed, `detail` saying what it saw:
    /// `rise` passes in a row bring a down backend up, `fall` failures take an up one down.
    /// `first`: the checker's first result, which sets the reason of a backend not checked
    /// yet. Returns the new state's reason when the backend went up or down.
    pub(crate) fn checked(
        &self,
        ok: bool,
        detail: &str,
        rise: u32,
        fall: u32,
        first: bool,
    ) -> Option<String> {
        let up = self.active_up.load(Relaxed);
        if ok == up {
            self.check_streak.store(0, Relaxed);
            if !ok {
                self.set_reason(format!("check failed: {detail}"));
            } else if first {
                self.set_reason(format!("check passed: {detail}"));
            }
            return None;
        }
        let needed = if up { fall } else { rise };
        if self.check_streak.fetch_add(1, Relaxed) + 1 < needed {
            return None;
        }
        self.check_streak.store(0, Relaxed);
        let why = if ok {
            format!("up after {needed} passed checks: {detail}")
        } else {
            format!("down after {needed} failed checks: {detail}")
        };
        self.set_active(ok, why.clone());
        Some(why)
    }

    /// The result of one active check, after rise/fall were counted.
    pub(crate) fn set_active(&self, up: bool, why: String) {
        let was = self.active_up.swap(up, Relaxed);
        if up && !was {
            self.available_since.store(now_ms(), Relaxed);
            self.room_came();
        }
        self.set_reason(why);
    }

    /// Takes it out of balancing: in-flight work finishes, nothing new arrives.
    pub fn drain(&self) {
        self.draining.store(true, Relaxed);
        self.set_reason("drained by the admin API".into());
    }

    /// Takes a drained backend back, ramping its weight up from now (slow start); a backend that
    /// is not draining is left as it is.
    pub fn restore(&self) {
        if self.draining.swap(false, Relaxed) {
            self.available_since.store(now_ms(), Relaxed);
            self.set_reason("restored by the admin API".into());
            self.room_came();
        }
    }

    /// It takes traffic again: whatever waits for room looks again.
    fn room_came(&self) {
        if let Some(room) = self.room.get() {
            room.notify_waiters();
        }
    }

    /// A request or connection to this backend worked.
    pub fn report_success(&self) {
        if self.passive_failures.load(Relaxed) != 0 {
            self.passive_failures.store(0, Relaxed);
        }
    }
}

/// Decrements the in-flight count when dropped.
pub struct InFlight(Arc<Backend>);

impl InFlight {
    /// The backend it counts at.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.stats.open.dec();
        if self.0.max_conns.load(Relaxed) != 0 {
            if let Some(room) = self.0.room.get() {
                room.notify_one();
            }
        }
    }
}

/// The backends behind one listener, with the passive-check policy that spans them.
#[derive(Debug)]
pub struct Group {
    /// The backends, in config order.
    pub backends: Vec<Arc<Backend>>,
    /// When failures seen in traffic eject a backend, and for how long.
    pub passive: Passive,
}

impl Group {
    /// The names of the backends that can take traffic now, in config order.
    pub fn available_names(&self) -> Vec<String> {
        let now = now_ms();
        self.backends
            .iter()
            .filter(|b| b.is_available_at(now))
            .map(|b| b.name.clone())
            .collect()
    }

    /// A request or connect to `backend` failed in a way that counts against it (a 5xx, a
    /// refused or timed-out connect). Enough in a row eject it, unless that would eject more
    /// than `max_ejected_percent` of the group.
    pub fn report_failure(&self, backend: &Backend, why: &str) {
        let p = &self.passive;
        if p.failures == 0 {
            return;
        }
        let n = backend.passive_failures.fetch_add(1, Relaxed) + 1;
        if n < p.failures {
            return;
        }
        let now = now_ms();
        if backend.state_at(now) != State::Up {
            return;
        }
        let ejected = self
            .backends
            .iter()
            .filter(|b| b.state_at(now) == State::Ejected)
            .count();
        let allowed = self.backends.len() * p.max_ejected_percent as usize / 100;
        if ejected + 1 > allowed.max(if p.max_ejected_percent > 0 { 1 } else { 0 }) {
            return;
        }
        // the back-off grows while ejections follow each other, and starts over after a quiet spell
        let last_end = backend.ejected_until.load(Relaxed);
        let mut streak = backend.ejection_streak.load(Relaxed);
        if last_end != 0 && now.saturating_sub(last_end) > p.max_ejection.as_millis() as u64 {
            streak = 0;
        }
        let base = p.base_ejection.as_millis() as u64;
        let time = base
            .saturating_mul(1u64 << streak.min(20))
            .min(p.max_ejection.as_millis() as u64);
        backend.ejection_streak.store(streak + 1, Relaxed);
        backend.ejected_until.store(now + time, Relaxed);
        backend.available_since.store(now + time, Relaxed);
        backend.passive_failures.store(0, Relaxed);
        backend.stats.ejections.inc();
        let why = format!(
            "ejected for {}ms after {n} failures in a row, the last: {why}",
            time
        );
        tracing::warn!(backend = %backend.name, "{why}");
        backend.set_reason(why);
    }

    /// The backend named `name` (its address as text).
    pub fn find(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: usize, max_pct: u32) -> Group {
        Group {
            backends: (0..n)
                .map(|i| Arc::new(Backend::new(([127, 0, 0, 1], 1000 + i as u16).into(), 1)))
                .collect(),
            passive: Passive {
                failures: 3,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(40),
                max_ejected_percent: max_pct,
            },
        }
    }

    #[test]
    fn checks_count_toward_fall_and_rise_across_a_restarted_checker() {
        let b = Backend::new(([127, 0, 0, 1], 1000).into(), 1);
        // a reload restarts the checker after two failures: its first result is the third
        assert_eq!(b.checked(false, "refused", 2, 3, true), None);
        assert_eq!(b.checked(false, "refused", 2, 3, false), None);
        let down = b.checked(false, "refused", 2, 3, true);
        assert_eq!(down.as_deref(), Some("down after 3 failed checks: refused"));
        assert_eq!(b.state(), State::Down);
        assert_eq!(b.checked(false, "refused", 2, 3, true), None);
        assert_eq!(b.reason(), "check failed: refused");
        // drained while down: a passing check counts toward rise, it does not bring it up
        b.drain();
        assert_eq!(b.checked(true, "connected", 2, 3, true), None);
        assert!(!b.active_up.load(Relaxed));
        assert!(b.checked(true, "connected", 2, 3, false).is_some());
        b.restore();
        assert_eq!(b.state(), State::Up);
    }

    #[test]
    fn consecutive_failures_eject_and_success_resets() {
        let g = group(2, 50);
        let b = &g.backends[0];
        g.report_failure(b, "503");
        g.report_failure(b, "503");
        b.report_success();
        g.report_failure(b, "503");
        assert_eq!(b.state(), State::Up);
        g.report_failure(b, "503");
        g.report_failure(b, "503");
        assert_eq!(b.state(), State::Ejected);
        assert!(
            b.reason().contains("ejected for 10000ms after 3 failures"),
            "{}",
            b.reason()
        );
    }

    #[test]
    fn max_ejected_percent_keeps_some_backends() {
        let g = group(2, 50);
        for b in &g.backends {
            for _ in 0..3 {
                g.report_failure(b, "connect refused");
            }
        }
        let ejected = g
            .backends
            .iter()
            .filter(|b| b.state() == State::Ejected)
            .count();
        assert_eq!(ejected, 1);
    }

    #[test]
    fn drain_and_restore() {
        let b = Arc::new(Backend::new(([127, 0, 0, 1], 1).into(), 4));
        b.drain();
        assert_eq!(b.state(), State::Draining);
        assert!(!b.is_available());
        b.restore();
        assert!(b.is_available());
        // just restored: slow start begins at a tenth of the weight
        let w = b.effective_weight(Duration::from_secs(100));
        assert!(w < 1.0, "{w}");
        assert_eq!(b.effective_weight(Duration::ZERO), 4.0);
    }

    #[test]
    fn in_flight_guard_counts() {
        let b = Arc::new(Backend::new(([127, 0, 0, 1], 1).into(), 1));
        let g1 = b.start();
        let g2 = b.start();
        assert_eq!(b.in_flight(), 2);
        drop(g1);
        drop(g2);
        assert_eq!(b.in_flight(), 0);
    }
}
