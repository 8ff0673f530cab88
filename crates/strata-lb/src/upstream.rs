//! The live side of one listener's backends: health state, balancer, retry budget, checkers.

use std::sync::Arc;

use strata_admin::Counter;
use strata_config as config;
use strata_health::{spawn_checks, Backend, Group};
use tokio_util::sync::CancellationToken;

use crate::balance::{Balancer, Key};
use crate::budget::RetryBudget;

/// Backends of one listener and everything needed to choose among them.
#[derive(Debug)]
pub struct Upstream {
    pub group: Group,
    pub config: config::Upstream,
    pub(crate) balancer: Balancer,
    pub(crate) budget: RetryBudget,
    checks: CancellationToken,
}

impl Upstream {
    /// Builds the upstream; backends that `previous` already had (same address and weight) are
    /// carried over with their health, drain state and counters, so a reload forgets nothing.
    pub fn new(config: &config::Upstream, previous: Option<&Upstream>) -> Self {
        let backends = config
            .backends
            .iter()
            .map(|spec| {
                previous
                    .and_then(|p| {
                        p.group
                            .backends
                            .iter()
                            .find(|b| b.addr == spec.addr && b.weight == spec.weight)
                    })
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Backend::new(spec.addr, spec.weight)))
            })
            .collect();
        let group = Group {
            backends,
            passive: config.passive.clone(),
        };
        Upstream {
            balancer: Balancer::new(&config.balance, &group, config.slow_start),
            budget: RetryBudget::new(config.retry_budget),
            group,
            config: config.clone(),
            checks: CancellationToken::new(),
        }
    }

    /// Starts the active health checks, if configured; `owner` names the listener in logs.
    pub fn start_checks(&self, owner: &str) {
        if let Some(check) = &self.config.health {
            spawn_checks(owner, &self.group.backends, check, self.checks.clone());
        }
    }

    /// Stops the active health checks (on reload, before the next generation starts its own).
    pub fn stop_checks(&self) {
        self.checks.cancel();
    }

    pub(crate) fn pick(&self, key: &Key, tried: &[usize]) -> Option<usize> {
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
pub(crate) struct Tries<'a> {
    up: &'a Upstream,
    key: Key,
    tried: Vec<usize>,
    attempt: u32,
    stale: u32,
}

impl<'a> Tries<'a> {
    pub(crate) fn new(up: &'a Upstream, key: Key) -> Self {
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
    /// `retries` counts the listener's retries.
    pub(crate) fn next(&mut self, retries: &Counter) -> Option<(usize, &'a Arc<Backend>)> {
        if self.attempt > self.up.config.retries {
            return None;
        }
        self.attempt += 1;
        if self.attempt > 1 {
            if !self.up.budget.withdraw() {
                return None;
            }
            retries.inc();
        }
        let index = self.up.pick(&self.key, &self.tried)?;
        self.tried.push(index);
        let backend = &self.up.group.backends[index];
        if self.attempt > 1 {
            backend.stats.retries.inc();
        }
        backend.stats.requests.inc();
        Some((index, backend))
    }

    /// The last try met a pooled connection the backend had closed: it does not count, unless
    /// that keeps happening. False when it counts.
    pub(crate) fn stale(&mut self) -> bool {
        if self.stale >= MAX_STALE {
            return false;
        }
        self.stale += 1;
        self.attempt -= 1;
        self.tried.pop();
        true
    }

    /// The backend of the last try, for the records.
    pub(crate) fn last(&self) -> Option<&'a Arc<Backend>> {
        self.tried.last().map(|&i| &self.up.group.backends[i])
    }
}

impl Upstream {
    /// Records a failure of `backend` that counts against it (passive checking).
    pub(crate) fn failed(&self, backend: &Backend, why: &str) {
        backend.stats.failures.inc();
        self.group.report_failure(backend, why);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.checks.cancel();
    }
}
