//! The live side of one listener's backends: health state, balancer, retry budget, checkers,
//! and the tries of one request over them.

use std::sync::Arc;

use strata_config as config;
use strata_health::{spawn_checks, Backend, Group, Probe};
use strata_metrics::Counter;
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
    checks: CancellationToken,
}

impl<X: Default> Upstream<X> {
    /// Builds the upstream; backends that `previous` already had (same address) are carried
    /// over with their health, drain state, counters and `extra`, so a reload forgets nothing
    /// (a changed weight applies to them in place).
    pub fn new(config: &config::Upstream, previous: Option<&Upstream<X>>) -> Self {
        let (backends, extra) = config
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
        let group = Group {
            backends,
            passive: config.passive.clone(),
        };
        Upstream {
            balancer: Balancer::new(&config.balance, &group, config.slow_start),
            budget: RetryBudget::after(config.retry_budget, previous.map(|p| &p.budget)),
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

/// Pooled connections found closed by the backend, tried again at no cost to the retry count.
const MAX_STALE: u32 = 4;

/// The tries of one request or connection: a backend for each, not one tried already while
/// another is up, within the retry count and the retry budget.
pub struct Tries<'a, X = ()> {
    up: &'a Upstream<X>,
    key: Key,
    tried: Vec<usize>,
    attempt: u32,
    stale: u32,
}

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
        }
    }

    /// The next backend, or `None` when the retries, the budget or the backends are used up.
    /// `retries` counts the listener's retries. A retry spends a budget token and is counted
    /// only once there is a backend to send it to.
    pub fn next(&mut self, retries: &Counter) -> Option<(usize, &'a Arc<Backend>)> {
        if self.attempt > self.up.config.retries {
            return None;
        }
        // a retry pays first (a pick moves round robin along), and is paid back when there is
        // no backend to send it to; it counts only once it goes
        let retry = self.attempt > 0;
        if retry && !self.up.budget.withdraw() {
            return None;
        }
        let Some(index) = self.up.pick(&self.key, &self.tried) else {
            if retry {
                self.up.budget.refund();
            }
            return None;
        };
        if retry {
            retries.inc();
        }
        self.attempt += 1;
        self.tried.push(index);
        let backend = &self.up.group.backends[index];
        if retry {
            backend.stats.retries.inc();
        }
        backend.stats.requests.inc();
        Some((index, backend))
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
        };
        Upstream::new(&config, None)
    }

    fn key() -> Key {
        Key {
            client: [127, 0, 0, 1].into(),
            value: None,
        }
    }

    #[test]
    fn the_failure_says_whether_another_backend_is_tried() {
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
            let (_, backend) = tries.next(&retries).unwrap();
            assert_eq!(
                tries.failed(backend, &failure, idempotent),
                again,
                "{failure:?}"
            );
        }
        // the client's fault never counts against a backend
        assert!(up.group.backends.iter().all(|b| b.stats.failures.get() < 4));
    }

    #[test]
    fn a_stale_pooled_connection_costs_no_retry_and_a_retry_costs_only_when_it_goes() {
        let up = upstream(1, 0);
        let retries = Counter::default();
        let mut tries = Tries::new(&up, key());
        let (_, backend) = tries.next(&retries).unwrap();
        let stale = Failure::new(Stage::Request, Kind::Closed, Retry::Free);
        assert!(tries.failed(backend, &stale, true));
        // retries = 0, yet the same request goes again: the stale try did not count
        assert!(tries.next(&retries).is_some());
        assert_eq!(retries.get(), 0);
        assert_eq!(
            backend.stats.failures.get(),
            0,
            "a stale connection is no fault"
        );
        // no backend left to pick for the retry: it is neither counted nor paid for
        let up = upstream(1, 2);
        let mut tries = Tries::new(&up, key());
        let (_, backend) = tries.next(&retries).unwrap();
        let refused = Failure::new(Stage::Connect, Kind::Connect, Retry::Always);
        assert!(tries.failed(backend, &refused, true));
        backend.drain();
        let tokens = up.budget.tokens();
        assert!(tries.next(&retries).is_none());
        assert_eq!(retries.get(), 0);
        assert_eq!(backend.stats.retries.get(), 0);
        assert_eq!(up.budget.tokens(), tokens, "no budget spent");
    }
}
