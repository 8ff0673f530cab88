//! The live side of one listener's backends: health state, balancer, retry budget, checkers.

use std::sync::Arc;

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

impl Drop for Upstream {
    fn drop(&mut self) {
        self.checks.cancel();
    }
}
