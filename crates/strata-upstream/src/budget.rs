//! A retry budget: retries may add at most a set fraction on top of the requests themselves,
//! plus a small steady allowance, so a failing backend can't turn every request into three.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use strata_net::now_ms;

/// Tokens are in thousandths of a retry.
const ONE: i64 = 1000;
/// Retries always allowed per second, however little traffic there is.
const MIN_PER_SECOND: i64 = 10;
/// At most this many retries can be saved up.
const CAP: i64 = 100 * ONE;

#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Tokens each request deposits (ratio * ONE).
    deposit: i64,
    tokens: AtomicI64,
    last_refill_ms: AtomicU64,
}

impl RetryBudget {
    pub(crate) fn new(ratio: f64) -> Self {
        RetryBudget {
            deposit: (ratio * ONE as f64) as i64,
            tokens: AtomicI64::new(MIN_PER_SECOND * ONE),
            last_refill_ms: AtomicU64::new(now_ms()),
        }
    }

    /// A budget of `ratio` that goes on from `previous` (the generation before a reload): the
    /// tokens saved or spent stay so, and a reload does not hand out fresh retries.
    pub(crate) fn after(ratio: f64, previous: Option<&RetryBudget>) -> Self {
        let budget = RetryBudget::new(ratio);
        if let Some(p) = previous {
            budget.tokens.store(p.tokens.load(Relaxed), Relaxed);
            budget
                .last_refill_ms
                .store(p.last_refill_ms.load(Relaxed), Relaxed);
        }
        budget
    }

    /// Called once per request.
    pub(crate) fn deposit(&self) {
        if self.deposit > 0 && self.tokens.load(Relaxed) < CAP {
            self.tokens.fetch_add(self.deposit, Relaxed);
        }
    }

    /// Gives back the token of a retry that could not be made after all.
    pub(crate) fn refund(&self) {
        self.tokens.fetch_add(ONE, Relaxed);
    }

    /// Tokens held now, in thousandths of a retry.
    #[cfg(test)]
    pub(crate) fn tokens(&self) -> i64 {
        self.tokens.load(Relaxed)
    }

    /// Whether a retry may be made now; takes its token when it may.
    pub(crate) fn withdraw(&self) -> bool {
        let now = now_ms();
        let last = self.last_refill_ms.load(Relaxed);
        if now > last
            && self
                .last_refill_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            let refill = (now - last) as i64 * MIN_PER_SECOND;
            let _ = self
                .tokens
                .fetch_update(Relaxed, Relaxed, |t| Some((t + refill).min(CAP)));
        }
        self.tokens
            .fetch_update(Relaxed, Relaxed, |t| (t >= ONE).then_some(t - ONE))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_does_not_refill_the_budget() {
        let spent = RetryBudget::new(0.0);
        while spent.withdraw() {}
        let after = RetryBudget::after(0.2, Some(&spent));
        assert_eq!(
            after.tokens.load(Relaxed),
            spent.tokens.load(Relaxed),
            "a reload handed out fresh retries"
        );
    }

    #[test]
    fn budget_runs_out_and_deposits_refill_it() {
        let b = RetryBudget::new(0.5);
        let mut granted = 0;
        while b.withdraw() {
            granted += 1;
            assert!(granted < 1000, "never ran out");
        }
        assert!(granted >= MIN_PER_SECOND as usize);
        b.deposit();
        b.deposit();
        assert!(b.withdraw(), "two requests at 0.5 pay for one retry");
    }
}
