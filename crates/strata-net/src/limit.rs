//! A count of things open at once (a listener's connections, a pool's server connections) that a
//! reload resizes in place: one object for the life of what it limits, so a reload that keeps
//! the number changes nothing, a raised number admits more at once, and a lowered one admits no
//! more until enough of those open have closed.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::lock;

/// At most `size` [`Slot`]s held at once. Clones share the count.
#[derive(Clone)]
pub struct Limit(Arc<Shared>);

struct Shared {
    permits: Semaphore,
    /// The number set last: read without a lock (pools read it at every hand-back), written
    /// under `resizing`.
    size: AtomicUsize,
    /// Keeps two resizes from interleaving.
    resizing: Mutex<()>,
    /// Permits still to be taken out of circulation after the number was lowered while more
    /// than the new number were held: each slot given back while this is above zero is
    /// forgotten instead of returned.
    owed: AtomicUsize,
}

/// One of a [`Limit`]'s places, held until dropped: one pointer, since every idle connection
/// holds one.
pub struct Slot(Limit);

/// The limit was closed: no slot will be given again.
#[derive(Debug)]
pub struct Closed;

impl Limit {
    /// A limit of `size` at once.
    pub fn new(size: usize) -> Self {
        Limit(Arc::new(Shared {
            permits: Semaphore::new(size),
            size: AtomicUsize::new(size),
            resizing: Mutex::new(()),
            owed: AtomicUsize::new(0),
        }))
    }

    /// This limit set to `size`, or a new one when there is none yet: what a reload calls.
    pub fn resized(previous: Option<&Limit>, size: usize) -> Self {
        match previous {
            Some(limit) => {
                limit.resize(size);
                limit.clone()
            }
            None => Limit::new(size),
        }
    }

    /// Sets the number. Raised: waiters get the new places at once. Lowered: free places go at
    /// once, and slots held beyond the new number go as they are given back.
    pub fn resize(&self, size: usize) {
        let _one_at_a_time = lock(&self.0.resizing);
        let current = self.0.size.load(Acquire);
        if size > current {
            let raise = size - current;
            let paid = take_up_to(&self.0.owed, raise);
            self.0.permits.add_permits(raise - paid);
        } else if size < current {
            // owed first: a slot given back meanwhile pays it instead of returning its permit
            let lower = current - size;
            self.0.owed.fetch_add(lower, AcqRel);
            let gone = self.0.permits.forget_permits(lower);
            // what slots paid meanwhile was forgotten twice: given back
            let paid = take_up_to(&self.0.owed, gone);
            self.0.permits.add_permits(gone - paid);
        }
        self.0.size.store(size, Release);
    }

    /// Waits for a place.
    pub async fn acquire(&self) -> Result<Slot, Closed> {
        // the slot gives the permit back itself (or not, while a lowering is owed one)
        self.0.permits.acquire().await.map_err(|_| Closed)?.forget();
        Ok(Slot(self.clone()))
    }

    /// A place if one is free now, without waiting.
    pub fn try_acquire(&self) -> Option<Slot> {
        self.0.permits.try_acquire().ok()?.forget();
        Some(Slot(self.clone()))
    }

    /// The number set last.
    pub fn size(&self) -> usize {
        self.0.size.load(Acquire)
    }

    /// How many slots are held now.
    pub fn taken(&self) -> usize {
        (self.size() + self.0.owed.load(Acquire)).saturating_sub(self.0.permits.available_permits())
    }

    /// No place is free now.
    pub fn is_full(&self) -> bool {
        self.0.permits.available_permits() == 0
    }

    /// Gives no more slots; those waiting get [`Closed`].
    pub fn close(&self) {
        self.0.permits.close();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let shared = &self.0 .0;
        if take_up_to(&shared.owed, 1) == 0 {
            shared.permits.add_permits(1);
        }
    }
}

/// Takes up to `most` from `count`; how much it took.
fn take_up_to(count: &AtomicUsize, most: usize) -> usize {
    // nearly always nothing is owed: no write then
    if count.load(Acquire) == 0 {
        return 0;
    }
    let mut taken = 0;
    let _ = count.fetch_update(AcqRel, Acquire, |c| {
        taken = c.min(most);
        Some(c - taken)
    });
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_acquire_takes_a_free_place_or_none() {
        let limit = Limit::new(1);
        let slot = limit.try_acquire();
        assert!(slot.is_some());
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.taken(), 1);
        drop(slot);
        assert!(limit.try_acquire().is_some());
    }

    #[tokio::test]
    async fn a_lowered_limit_admits_no_more_until_enough_have_closed() {
        let limit = Limit::new(3);
        let a = limit.acquire().await.unwrap();
        let b = limit.acquire().await.unwrap();
        let c = limit.acquire().await.unwrap();
        limit.resize(1);
        assert_eq!((limit.size(), limit.taken()), (1, 3));
        drop(a);
        drop(b);
        assert!(
            limit.is_full(),
            "two closed, one still held: the new limit of one is reached"
        );
        assert_eq!(limit.taken(), 1);
        drop(c);
        let d = limit.acquire().await.unwrap();
        assert!(limit.is_full());
        drop(d);
        assert_eq!(limit.taken(), 0);
    }

    #[tokio::test]
    async fn a_raised_limit_pays_what_a_lowering_still_owed_first() {
        let limit = Limit::new(2);
        let a = limit.acquire().await.unwrap();
        let b = limit.acquire().await.unwrap();
        limit.resize(0);
        limit.resize(3);
        assert_eq!((limit.size(), limit.taken()), (3, 2));
        let c = limit.acquire().await.unwrap();
        assert!(limit.is_full());
        drop((a, b, c));
        assert_eq!(limit.taken(), 0);
        let held: Vec<Slot> = vec![
            limit.acquire().await.unwrap(),
            limit.acquire().await.unwrap(),
            limit.acquire().await.unwrap(),
        ];
        assert!(limit.is_full());
        drop(held);
    }

    #[tokio::test]
    async fn a_waiter_gets_a_place_a_raise_makes() {
        let limit = Limit::new(1);
        let _a = limit.acquire().await.unwrap();
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "waits while the one place is held");
        limit.resize(2);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_same_size_again_changes_nothing() {
        let limit = Limit::new(2);
        let _a = limit.acquire().await.unwrap();
        let again = Limit::resized(Some(&limit), 2);
        assert_eq!((again.size(), again.taken()), (2, 1));
        let _b = again.acquire().await.unwrap();
        assert!(limit.is_full(), "one count, shared");
    }
}
