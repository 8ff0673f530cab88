//! Whether reads are answered faster sharing connections or each on its own: found by trying.
//!
//! Sharing (see [`crate::pipeline`]) pays where the server's CPU is the bottleneck: a backend
//! that wakes once for several short queries spends far less than one woken for each, so the
//! server answers more of them in a second. Where the server has cores to spare it costs a
//! little: a read waits behind others where it would have run at once. Which of the two a
//! server is can't be read from outside, nor from answer times alone (a server busy from the
//! first moment never shows how fast it is when quiet; and clients that wait for one answer
//! before they send the next query send more when answers come sooner). So it is tried: reads
//! that could share are counted over windows of [`WINDOW`], they share or not for a window at
//! a time, and every [`EVERY`] windows the other way is tried for one. The way that answered
//! more reads a second is kept: sharing only when its trial answered clearly more (a tenth),
//! each on its own as soon as its trial answered as many. Clients that send no faster when
//! answered sooner (a steady stream of queries) get as many answers either way, so their
//! reads do not share. A window with too few reads to judge, or one that spanned a pause (its
//! reads were answered in a part of it), decides nothing: the way kept stays, the first window
//! of reads after it (clients connecting, caches warming) counts for neither way, and the next
//! trial comes two windows later. Counted, such windows made a way look slower than it was: a
//! window closed by the first read after a 30 s pause averaged its reads over the pause, and
//! the next trial of the other way won against it.
//!
//! A slow query that holds up the reads behind it on a line shows as fewer answers like any
//! other wait, so a mix of long and short reads turns sharing off by itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_net::lock;

/// How long reads go one way before the average is looked at.
pub const WINDOW: Duration = Duration::from_millis(500);
/// A window with fewer answered reads than this decides nothing: too few reads for sharing
/// to matter, or to judge it.
const FEWEST: u64 = 50;
/// Every this many windows, the other way is tried for one.
const EVERY: u32 = 10;

/// One server pool's trials.
#[derive(Debug, Default)]
pub struct Trial {
    /// Reads share now.
    on: AtomicBool,
    /// Reads answered a second, each way, as last counted: each on its own, sharing.
    rates: [AtomicU64; 2],
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    opened: Option<Instant>,
    /// Reads answered in this window.
    count: u64,
    /// The way kept (reads share), and windows since the last trial.
    kept: bool,
    since_trial: u32,
    /// Reads answered, and the time it took, the kept way since the last trial.
    kept_count: u64,
    kept_time: Duration,
    /// This window tries the other way.
    trying: bool,
    /// The first window of reads after a pause: it decides nothing.
    warming: bool,
}

impl Default for State {
    /// Reads each on its own; sharing is tried after two windows with enough reads to judge,
    /// after the first.
    fn default() -> State {
        State {
            opened: None,
            count: 0,
            kept: false,
            since_trial: EVERY - 2,
            kept_count: 0,
            kept_time: Duration::ZERO,
            trying: false,
            warming: true,
        }
    }
}

/// Reads a second.
fn rate(count: u64, time: Duration) -> u64 {
    (count as f64 / time.as_secs_f64().max(1e-3)) as u64
}

impl Trial {
    /// Whether reads share now.
    pub fn on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Reads answered a second each on its own and sharing, as last counted (0: not yet).
    pub fn rates(&self) -> (u64, u64) {
        (self.rates[0].load(Relaxed), self.rates[1].load(Relaxed))
    }

    /// A read that could have shared a connection has its answer.
    pub fn answered(&self) {
        self.answered_at(Instant::now());
    }

    fn answered_at(&self, now: Instant) {
        let mut s = lock(&self.state);
        let opened = *s.opened.get_or_insert(now);
        s.count += 1;
        let time = now.duration_since(opened);
        if time < WINDOW {
            return;
        }
        let count = std::mem::take(&mut s.count);
        s.opened = Some(now);
        let sharing = s.kept != s.trying;
        if count < FEWEST || time > 2 * WINDOW {
            // too few reads to judge, or a pause: no trial until there are enough, then one
            // soon (the way kept stays: a pause does not change the server)
            *s = State {
                opened: s.opened,
                kept: s.kept,
                ..State::default()
            };
            let on = s.kept;
            drop(s);
            self.on.store(on, Relaxed);
            return;
        }
        if std::mem::take(&mut s.warming) {
            return;
        }
        let now_rate = rate(count, time);
        self.rates[usize::from(sharing)].store(now_rate, Relaxed);
        if s.trying {
            let kept = rate(s.kept_count, s.kept_time);
            let better = if sharing {
                now_rate * 10 > kept * 11
            } else {
                now_rate >= kept
            };
            if better {
                s.kept = sharing;
                tracing::debug!(
                    reads_per_second = now_rate,
                    other_way = kept,
                    "reads {} connections: more were answered that way",
                    if sharing { "share" } else { "no longer share" }
                );
            }
            s.trying = false;
            s.since_trial = 0;
            s.kept_count = 0;
            s.kept_time = Duration::ZERO;
        } else {
            s.kept_count += count;
            s.kept_time += time;
            s.since_trial += 1;
            s.trying = s.since_trial >= EVERY;
        }
        let on = s.kept != s.trying;
        drop(s);
        self.on.store(on, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One window of `n` reads answered, beginning at `*t`; whether reads share in the next.
    fn window(trial: &Trial, t: &mut Instant, n: u64) -> bool {
        for _ in 1..n {
            trial.answered_at(*t);
        }
        *t += WINDOW;
        trial.answered_at(*t);
        trial.on()
    }

    /// Windows of `n` reads until a trial (the way changes): how many.
    fn until_trial(trial: &Trial, t: &mut Instant, n: u64) -> u32 {
        let was = trial.on();
        for k in 1..=EVERY + 1 {
            if window(trial, t, n) != was {
                return k;
            }
        }
        panic!("no trial");
    }

    #[test]
    fn sharing_is_kept_when_its_trial_answered_clearly_more_reads() {
        let trial = Trial::default();
        let mut t = Instant::now();
        assert!(!trial.on(), "each read on its own at first");
        // (the first read opens the first window)
        trial.answered_at(t);
        // (the first window counts for neither way)
        assert_eq!(until_trial(&trial, &mut t, 1_000), 3);
        assert!(trial.on(), "trying sharing");
        // 5% more: not enough
        assert!(!window(&trial, &mut t, 1_050));
        assert_eq!(until_trial(&trial, &mut t, 1_000), EVERY);
        // 30% more: kept
        assert!(window(&trial, &mut t, 1_300));
        assert_eq!(trial.rates(), (2_000, 2_600));
        // sharing stays until a trial of each on its own
        assert_eq!(until_trial(&trial, &mut t, 1_300), EVERY);
        assert!(!trial.on());
        // fewer each on its own: sharing goes on
        assert!(window(&trial, &mut t, 1_100));
        assert_eq!(until_trial(&trial, &mut t, 1_300), EVERY);
        // as many each on its own (they come no faster when answered sooner): sharing stops
        assert!(!window(&trial, &mut t, 1_300));
    }

    /// A trial whose first trial of sharing answered twice the reads: sharing is kept; and
    /// the time its next window begins.
    fn sharing_kept() -> (Trial, Instant) {
        let trial = Trial::default();
        let mut t = Instant::now();
        trial.answered_at(t);
        until_trial(&trial, &mut t, 1_000);
        assert!(window(&trial, &mut t, 2_000), "sharing kept");
        (trial, t)
    }

    #[test]
    fn too_few_reads_decide_nothing_and_a_trial_comes_soon_after() {
        let (trial, mut t) = sharing_kept();
        // a trial was due in a few windows
        for _ in 0..EVERY - 3 {
            assert!(window(&trial, &mut t, 2_000));
        }
        // a quiet half second: nothing is decided, the way kept stays
        assert!(window(&trial, &mut t, FEWEST - 1));
        assert!(window(&trial, &mut t, FEWEST - 1));
        // reads again: a trial two windows after the first
        assert_eq!(until_trial(&trial, &mut t, 2_000), 3);
        assert!(!trial.on(), "trying each on its own");
    }

    #[test]
    fn a_window_that_spans_a_pause_decides_nothing() {
        let (trial, mut t) = sharing_kept();
        // reads for a moment, then none for 30 s: the window closes with the next read
        for _ in 0..1_000 {
            trial.answered_at(t);
        }
        t += Duration::from_secs(30);
        trial.answered_at(t);
        assert!(trial.on(), "the way kept stays");
        // counted, its 33 reads a second would have made the next trial of each read on its
        // own look better than sharing; now that trial comes after the first window and two
        // more, and is judged against them
        assert_eq!(until_trial(&trial, &mut t, 2_000), 3);
        assert!(
            window(&trial, &mut t, 1_500),
            "fewer each on its own: sharing goes on"
        );
    }
}
