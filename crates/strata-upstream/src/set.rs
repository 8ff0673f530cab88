//! The live side of one listener's backends: health state, balancer, retry budget, checkers,
//! and the tries of one request over them.

use std::sync::Arc;

use std::pin::Pin;
use strata_config as config;
use strata_health::{spawn_checks, Backend, Group, InFlight, Probe};
use strata_metrics::{Counter, Gauge};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::balance::{Balancer, Key};
use crate::budget::RetryBudget;
use crate::failure::{Failure, Retry};

/// Backends of one listener and everything needed to choose among them. `X` is what the layer
/// keeps per backend (its own statistics), one slot for each backend in `group`, carried over
/// a reload with the backend.
#[derive(Debug)]
pub struct Upstream<X = ()> {
    /// The backends with their health, in config order.
    pub group: Group,
    /// The layer's own slot for each backend, in the order of `group.backends`.
    pub extra: Vec<Arc<X>>,
    /// The settings this generation was built from.
    pub config: config::Upstream,
    pub(crate) balancer: Balancer,
    pub(crate) budget: RetryBudget,
    /// What waits for a backend with room, carried over a reload with the backends.
    pub queue: Arc<Queue>,
    /// Of those waiting, the ones that wait for this generation's backends: what a new request
    /// lines up behind and what `queue_size` bounds (requests that waited under the generation
    /// before a reload pick among its backends only, and do not hold up this one's).
    waiting_here: Gauge,
    checks: CancellationToken,
}

/// The requests (or connections) of one listener waiting for a backend with room, while every
/// backend that could take them is at its `max_conns`: HAProxy's queue. A backend tells
/// [`Queue`]'s `room` when one of its requests ends, which wakes the longest waiting; a new
/// request finds the queue not empty and lines up behind it.
#[derive(Debug, Default)]
pub struct Queue {
    room: Arc<Notify>,
    /// Waiting now.
    pub waiting: Gauge,
    /// Those that waited `queue_timeout` and gave up.
    pub timeouts: Counter,
    /// Those turned away because the queue held `queue_size` already.
    pub refused: Counter,
}

impl<X: Default> Upstream<X> {
    /// Builds the upstream; backends that `previous` already had (same address) are carried
    /// over with their health, drain state, counters and `extra`, so a reload forgets nothing
    /// (a changed weight applies to them in place).
    pub fn new(config: &config::Upstream, previous: Option<&Upstream<X>>) -> Self {
        let queue = previous.map_or_else(Arc::default, |p| p.queue.clone());
        let (backends, extra): (Vec<Arc<Backend>>, _) = config
            .backends
            .iter()
            .map(|spec| {
                let kept = previous.and_then(|p| {
                    let i = p.group.backends.iter().position(|b| b.addr == spec.addr)?;
                    let backend = p.group.backends[i].clone();
                    backend.set_weight(spec.weight);
                    Some((backend, p.extra[i].clone()))
                });
                kept.unwrap_or_else(|| {
                    (
                        Arc::new(Backend::new(spec.addr, spec.weight)),
                        Arc::new(X::default()),
                    )
                })
            })
            .unzip();
        for (backend, spec) in backends.iter().zip(&config.backends) {
            backend.set_max_conns(spec.max_conns);
            backend.tell_room(&queue.room);
        }
        let group = Group {
            backends,
            passive: config.passive.clone(),
        };
        // what waits under the generation before looks again at this one's backends and limits
        queue.room.notify_waiters();
        Upstream {
            balancer: Balancer::new(&config.balance, &group, config.slow_start),
            budget: RetryBudget::after(config.retry_budget, previous.map(|p| &p.budget)),
            queue,
            waiting_here: Gauge::default(),
            group,
            extra,
            config: config.clone(),
            checks: CancellationToken::new(),
        }
    }
}

impl<X> Upstream<X> {
    /// Starts the active health checks, if configured; `owner` names the listener in logs.
    pub fn start_checks(&self, owner: &str) {
        self.start_checks_with(owner, None)
    }

    /// Starts the active health checks, made by `probe` when the layer speaks a protocol the
    /// built-in checks do not (HTTP/2, gRPC).
    pub fn start_checks_with(&self, owner: &str, probe: Option<Probe>) {
        if let Some(check) = &self.config.health {
            spawn_checks(
                owner,
                &self.group.backends,
                check,
                self.checks.clone(),
                probe,
            );
        }
    }

    /// Stops the active health checks (on reload, before the next generation starts its own).
    pub fn stop_checks(&self) {
        self.checks.cancel();
    }

    fn pick(&self, key: &Key, tried: &[usize]) -> Option<usize> {
        self.balancer.pick(&self.group, key, tried)
    }

    /// How many backends can take traffic now.
    pub fn available(&self) -> usize {
        self.group
            .backends
            .iter()
            .filter(|b| b.is_available())
            .count()
    }
}

/// How often a request waiting in the queue looks again though nothing woke it: for room that
/// comes with no event (an ejection that runs out); a freed place, a reload, a backend back up
/// or restored wake it at once.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Pooled connections found closed by the backend, tried again at no cost to the retry count.
const MAX_STALE: u32 = 4;

/// The tries of one request or connection: a backend for each, not one tried already while
/// another is up, within the retry count and the retry budget; and, while every backend that
/// could take it is at its `max_conns`, a place in the listener's queue.
pub struct Tries<'a, X = ()> {
    up: &'a Upstream<X>,
    key: Key,
    tried: Vec<usize>,
    attempt: u32,
    stale: u32,
    /// Counted among the queue's waiting now.
    queued: bool,
    /// When its time in the queue runs out (set when it first lines up).
    give_up: Option<Instant>,
    /// Its place in line for a freed place, kept while it looks again (see [`RECHECK`]).
    turn: Option<Pin<Box<Notified<'a>>>>,
}

/// What one pick came to.
enum Pick<'a> {
    Go(usize, &'a Arc<Backend>, InFlight),
    /// Backends are up, and all of those that could take it are full (or others wait).
    Full,
    Nothing,
}

/// What a wait in the queue came to.
enum Wait {
    /// Woken, or time to look again.
    Again,
    /// Its `queue_timeout` ran out.
    TimedOut,
    /// The queue held `queue_size` already: not let in.
    Refused,
}

/// A backend for a try, its index in the set, and its place in flight there (held until the
/// request or connection ends).
pub type Go<'a> = (usize, &'a Arc<Backend>, InFlight);

impl<'a, X> Tries<'a, X> {
    /// The tries of one request or connection over `up`; the request adds its share to the retry
    /// budget.
    pub fn new(up: &'a Upstream<X>, key: Key) -> Self {
        up.budget.deposit();
        Tries {
            up,
            key,
            tried: Vec::with_capacity(2),
            attempt: 0,
            stale: 0,
            queued: false,
            give_up: None,
            turn: None,
        }
    }

    /// The next backend, counted in flight there; `Ok(None)` when the retries, the budget or
    /// the backends are used up. While every backend that could take it is at its
    /// `max_conns`, it waits in the listener's queue, and fails after `queue_timeout` there.
    /// `retries` counts the listener's retries. A retry spends a budget token and is counted
    /// only once there is a backend to send it to.
    pub async fn next(&mut self, retries: &Counter) -> Result<Option<Go<'a>>, Failure> {
        loop {
            match self.pick(retries) {
                Pick::Go(index, backend, in_flight) => {
                    return Ok(Some((index, backend, in_flight)))
                }
                Pick::Nothing => return Ok(None),
                // (boxed: only a request that queues carries the wait's state)
                Pick::Full => match Box::pin(self.wait()).await {
                    Wait::Again => {}
                    Wait::TimedOut => {
                        self.leave_queue();
                        self.up.queue.timeouts.inc();
                        return Err(Failure::queue_timeout());
                    }
                    Wait::Refused => {
                        self.up.queue.refused.inc();
                        return Err(Failure::queue_full());
                    }
                },
            }
        }
    }

    fn pick(&mut self, retries: &Counter) -> Pick<'a> {
        // a retry pays first (a pick moves round robin along), and is paid back when there is
        // no backend to send it to; it counts only once it goes
        let retry = self.attempt > 0;
        if self.attempt > self.up.config.retries || (retry && !self.up.budget.withdraw()) {
            if self.queued {
                // it may have been woken for a place it will not take: the next in line may
                self.leave_queue();
                self.up.queue.room.notify_one();
            }
            return Pick::Nothing;
        }
        let refund = |up: &Upstream<X>| {
            if retry {
                up.budget.refund();
            }
        };
        // what waits already goes first (unless there is no backend to wait for)
        if !self.queued && self.up.waiting_here.get() > 0 {
            refund(self.up);
            return if self.up.available() > 0 {
                Pick::Full
            } else {
                Pick::Nothing
            };
        }
        let Some(index) = self.up.pick(&self.key, &self.tried) else {
            refund(self.up);
            if self.up.available() > 0 {
                return Pick::Full;
            }
            self.leave_queue();
            return Pick::Nothing;
        };
        let backend = &self.up.group.backends[index];
        // (another thread may have taken its last place since the pick looked)
        let Some(in_flight) = backend.try_start() else {
            refund(self.up);
            return Pick::Full;
        };
        self.leave_queue();
        if retry {
            retries.inc();
        }
        self.attempt += 1;
        self.tried.push(index);
        if retry {
            backend.stats.retries.inc();
        }
        backend.stats.requests.inc();
        Pick::Go(index, backend, in_flight)
    }

    /// Waits in the queue for a chance at a place, unless its time there has run out or the
    /// queue is full.
    ///
    /// A freed place wakes the longest waiting; a reload, or a backend back up or restored,
    /// wakes all; [`RECHECK`] passing wakes it too, keeping its place in line.
    async fn wait(&mut self) -> Wait {
        let queue = &self.up.queue;
        let now = Instant::now();
        let give_up = *self
            .give_up
            .get_or_insert_with(|| now + self.up.config.queue_timeout);
        if now >= give_up {
            return Wait::TimedOut;
        }
        if !self.queued {
            let limit = match self.up.config.queue_size {
                0 => i64::MAX,
                n => i64::from(n),
            };
            if !self.up.waiting_here.inc_below(limit) {
                return Wait::Refused;
            }
            queue.waiting.inc();
            self.queued = true;
        }
        let turn = self
            .turn
            .get_or_insert_with(|| Box::pin(queue.room.notified()));
        if tokio::time::timeout_at(give_up.min(now + RECHECK), turn.as_mut())
            .await
            .is_ok()
        {
            // woken: the next wait lines up again, at the back
            self.turn = None;
        }
        Wait::Again
    }

    /// Leaves the queue, if in it (a wake its place in line had and did not use goes on to the
    /// next in line as the place is dropped).
    fn leave_queue(&mut self) {
        if std::mem::take(&mut self.queued) {
            self.up.waiting_here.dec();
            self.up.queue.waiting.dec();
            self.turn = None;
        }
    }

    /// After a failed try on `backend`: whether to try another. A failure that counts against
    /// the backend is recorded for passive checking; `idempotent` says whether the request may
    /// be sent again once a backend may have acted on it.
    pub fn failed(&mut self, backend: &Backend, failure: &Failure, idempotent: bool) -> bool {
        if failure.retry == Retry::Free && self.stale() {
            return true;
        }
        if failure.blames_backend() {
            self.up.failed(backend, &failure.to_string());
        }
        match failure.retry {
            Retry::Free | Retry::Always => true,
            Retry::IfIdempotent => idempotent,
            Retry::Never => false,
        }
    }

    /// The last try met a pooled connection the backend had closed: it does not count, unless
    /// that keeps happening. False when it counts.
    fn stale(&mut self) -> bool {
        if self.stale >= MAX_STALE {
            return false;
        }
        self.stale += 1;
        self.attempt -= 1;
        self.tried.pop();
        true
    }

    /// The backend of the last try, for the records.
    pub fn last(&self) -> Option<&'a Arc<Backend>> {
        self.tried.last().map(|&i| &self.up.group.backends[i])
    }
}

impl<X> Drop for Tries<'_, X> {
    fn drop(&mut self) {
        self.leave_queue();
    }
}

impl<X> Upstream<X> {
    /// Records a failure of `backend` that counts against it (passive checking).
    fn failed(&self, backend: &Backend, why: &str) {
        backend.stats.failures.inc();
        self.group.report_failure(backend, why);
    }
}

impl<X> Drop for Upstream<X> {
    fn drop(&mut self) {
        self.checks.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{Kind, Stage};
    use std::time::Duration;
    use strata_config::{BackendSpec, Balance, Passive};

    fn upstream(backends: u16, retries: u32) -> Upstream {
        let config = config::Upstream {
            backends: (0..backends)
                .map(|i| BackendSpec {
                    addr: ([127, 0, 0, 1], 9000 + i).into(),
                    weight: 1,
                    max_conns: 0,
                })
                .collect(),
            balance: Balance::RoundRobin,
            health: None,
            passive: Passive {
                failures: 0,
                base_ejection: Duration::ZERO,
                max_ejection: Duration::ZERO,
                max_ejected_percent: 0,
            },
            retries,
            retry_budget: 1.0,
            connect_timeout: Duration::from_secs(1),
            slow_start: Duration::ZERO,
            queue_timeout: Duration::from_secs(5),
            queue_size: 0,
        };
        Upstream::new(&config, None)
    }

    fn key() -> Key {
        Key {
            client: [127, 0, 0, 1].into(),
            value: None,
        }
    }

    #[tokio::test]
    async fn the_failure_says_whether_another_backend_is_tried() {
        let up = upstream(3, 2);
        let retries = Counter::default();
        let at = |stage, retry| Failure::new(stage, Kind::Io, retry);
        for (failure, idempotent, again) in [
            (at(Stage::Connect, Retry::Always), false, true),
            (at(Stage::Request, Retry::IfIdempotent), true, true),
            (at(Stage::Request, Retry::IfIdempotent), false, false),
            (at(Stage::Request, Retry::Never), true, false),
            (at(Stage::Client, Retry::Never), true, false),
        ] {
            let mut tries = Tries::new(&up, key());
            let (_, backend, _) = tries.next(&retries).await.unwrap().unwrap();
            assert_eq!(
                tries.failed(backend, &failure, idempotent),
                again,
                "{failure:?}"
            );
        }
        // the client's fault never counts against a backend
        assert!(up.group.backends.iter().all(|b| b.stats.failures.get() < 4));
    }

    #[tokio::test]
    async fn a_stale_pooled_connection_costs_no_retry_and_a_retry_costs_only_when_it_goes() {
        let up = upstream(1, 0);
        let retries = Counter::default();
        let mut tries = Tries::new(&up, key());
        let (_, backend, _) = tries.next(&retries).await.unwrap().unwrap();
        let stale = Failure::new(Stage::Request, Kind::Closed, Retry::Free);
        assert!(tries.failed(backend, &stale, true));
        // retries = 0, yet the same request goes again: the stale try did not count
        assert!(tries.next(&retries).await.unwrap().is_some());
        assert_eq!(retries.get(), 0);
        assert_eq!(
            backend.stats.failures.get(),
            0,
            "a stale connection is no fault"
        );
        // no backend left to pick for the retry: it is neither counted nor paid for
        let up = upstream(1, 2);
        let mut tries = Tries::new(&up, key());
        let (_, backend, _) = tries.next(&retries).await.unwrap().unwrap();
        let refused = Failure::new(Stage::Connect, Kind::Connect, Retry::Always);
        assert!(tries.failed(backend, &refused, true));
        backend.drain();
        let tokens = up.budget.tokens();
        assert!(tries.next(&retries).await.unwrap().is_none());
        assert_eq!(retries.get(), 0);
        assert_eq!(backend.stats.retries.get(), 0);
        assert_eq!(up.budget.tokens(), tokens, "no budget spent");
    }

    /// `upstream` with backend `i` limited to `max[i]` at once, waiting `queue` for room.
    fn limited(max: &[u32], queue: Duration) -> Upstream {
        Upstream::new(&limited_config(max, queue), None)
    }

    /// The settings of [`limited`]'s upstream.
    fn limited_config(max: &[u32], queue: Duration) -> config::Upstream {
        let mut config = upstream(max.len() as u16, 2).config.clone();
        for (spec, &m) in config.backends.iter_mut().zip(max) {
            spec.max_conns = m;
        }
        config.queue_timeout = queue;
        config
    }

    /// In `$up` (one backend with one place): a request that holds the place, its guard bound
    /// to `$held`, and one that waits for it, pinned as `$waiting` and polled once.
    macro_rules! one_held_one_waiting {
        ($up:ident, $retries:ident, $held:ident, $waiting:ident) => {
            let mut first = Tries::new(&$up, key());
            let $held = first.next(&$retries).await.unwrap().unwrap();
            let mut second = Tries::new(&$up, key());
            let $waiting = second.next(&$retries);
            tokio::pin!($waiting);
            assert!(futures_poll($waiting.as_mut()).is_none());
        };
    }

    #[tokio::test]
    async fn a_full_backend_is_passed_over_and_its_place_comes_back_when_a_request_ends() {
        let up = limited(&[1, 0], Duration::from_secs(5));
        let retries = Counter::default();
        let mut first = Tries::new(&up, key());
        let (i, _, held) = first.next(&retries).await.unwrap().unwrap();
        // round robin starts at backend 0; it is full now, so every other request goes to 1
        assert_eq!(i, 0);
        for _ in 0..4 {
            let mut tries = Tries::new(&up, key());
            let (i, _, _) = tries.next(&retries).await.unwrap().unwrap();
            assert_eq!(i, 1, "a full backend takes nothing more");
        }
        drop(held);
        let picked: Vec<usize> = (0..4).map(|_| up.pick(&key(), &[]).unwrap()).collect();
        assert!(picked.contains(&0), "room again: {picked:?}");
    }

    #[tokio::test]
    async fn a_request_waits_for_room_and_goes_when_a_place_frees() {
        let up = limited(&[1], Duration::from_secs(30));
        let retries = Counter::default();
        one_held_one_waiting!(up, retries, held, waiting);
        // it waits, and is counted as waiting
        assert_eq!(up.queue.waiting.get(), 1);
        drop(held);
        let (i, _, _) = waiting.await.unwrap().unwrap();
        assert_eq!(i, 0);
        assert_eq!(up.queue.waiting.get(), 0);
        assert_eq!(up.queue.timeouts.get(), 0);
    }

    #[tokio::test]
    async fn a_waiting_request_finds_room_that_comes_without_a_place_freeing() {
        let up = limited(&[1], Duration::from_secs(30));
        let retries = Counter::default();
        one_held_one_waiting!(up, retries, _held, waiting);
        // a reload raises the limit: nothing ends, and the waiting request goes all the same,
        // long before its 30 s in the queue are up
        up.group.backends[0].set_max_conns(2);
        let went = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        let (i, _, _) = went.expect("still waiting").unwrap().unwrap();
        assert_eq!(i, 0);
        assert_eq!(up.queue.timeouts.get(), 0);
    }

    #[tokio::test]
    async fn with_no_backend_up_nothing_waits_though_the_queue_is_not_empty() {
        let up = limited(&[1], Duration::from_secs(30));
        let retries = Counter::default();
        one_held_one_waiting!(up, retries, _held, waiting);
        up.group.backends[0].drain();
        // a new request does not line up behind it: no backend is there to wait for
        let mut third = Tries::new(&up, key());
        let now = third.next(&retries);
        tokio::pin!(now);
        assert!(matches!(futures_poll(now.as_mut()), Some(Ok(None))));
        // and the waiting one learns it when it looks again, long before its 30 s are up
        let went = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert!(matches!(went, Ok(Ok(None))));
        assert_eq!(up.queue.waiting.get(), 0);
    }

    #[tokio::test]
    async fn a_request_that_finds_no_room_within_queue_timeout_fails_and_blames_no_backend() {
        let up = limited(&[1], Duration::from_millis(20));
        let retries = Counter::default();
        let mut first = Tries::new(&up, key());
        let _held = first.next(&retries).await.unwrap().unwrap();
        let mut second = Tries::new(&up, key());
        let failure = second.next(&retries).await.err().unwrap();
        assert_eq!(failure.kind, Kind::QueueTimeout);
        assert!(!failure.blames_backend());
        assert_eq!(up.queue.timeouts.get(), 1);
        assert_eq!(up.queue.waiting.get(), 0);
        // and with every backend down, nothing waits: no backend at once
        up.group.backends[0].drain();
        let mut third = Tries::new(&up, key());
        assert!(third.next(&retries).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_request_that_finds_the_queue_at_queue_size_is_turned_away_at_once() {
        let mut config = limited_config(&[1], Duration::from_secs(30));
        config.queue_size = 1;
        let up: Upstream = Upstream::new(&config, None);
        let retries = Counter::default();
        one_held_one_waiting!(up, retries, held, waiting);
        // the queue holds one: the next is refused at once, long before its 30 s
        let mut third = Tries::new(&up, key());
        let failure = third.next(&retries).await.err().unwrap();
        assert_eq!(failure.kind, Kind::QueueFull);
        assert!(failure.from_queue() && !failure.blames_backend());
        assert_eq!(up.queue.refused.get(), 1);
        assert_eq!(up.queue.waiting.get(), 1);
        // the one in line still gets its turn, and the queue has room again after it
        drop(held);
        let (_, _, held) = waiting.await.unwrap().unwrap();
        assert_eq!(up.queue.waiting.get(), 0);
        let mut fourth = Tries::new(&up, key());
        let waits = fourth.next(&retries);
        tokio::pin!(waits);
        assert!(futures_poll(waits.as_mut()).is_none());
        assert_eq!(up.queue.waiting.get(), 1);
        drop(held);
        assert!(waits.await.unwrap().is_some());
        assert_eq!(up.queue.refused.get(), 1);
    }

    #[tokio::test]
    async fn requests_after_a_reload_do_not_wait_behind_those_of_the_generation_before() {
        let mut config = limited_config(&[1], Duration::from_secs(30));
        config.queue_size = 1;
        let up: Upstream = Upstream::new(&config, None);
        let retries = Counter::default();
        let next = {
            one_held_one_waiting!(up, retries, _held, waiting);
            // the queue is full, and a reload sends traffic to another backend with room: a
            // new request goes there at once (it is neither refused nor lined up behind the
            // one waiting for the old backend)
            config.backends[0].addr = ([127, 0, 0, 1], 9100).into();
            let next = Upstream::new(&config, Some(&up));
            {
                let mut tries = Tries::new(&next, key());
                let went =
                    tokio::time::timeout(Duration::from_secs(10), tries.next(&retries)).await;
                let (_, backend, _) = went.expect("it waited").unwrap().unwrap();
                assert_eq!(backend.addr.port(), 9100);
            }
            assert_eq!((next.queue.refused.get(), next.queue.waiting.get()), (0, 1));
            assert!(futures_poll(waiting.as_mut()).is_none());
            next
        };
        // the one that waited under the generation before has left the queue with its request
        assert_eq!(next.queue.waiting.get(), 0);
    }

    /// Polls `f` once: its output if it was ready.
    fn futures_poll<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        match f.poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
