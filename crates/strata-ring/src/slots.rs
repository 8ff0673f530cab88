//! The continuum of twemproxy's modula and random distributions: a row of slots, each server's
//! run of them in the order given (twemproxy's server order, see `Ring`), the owner of a hash
//! at slot `hash % slots`.

/// Each server's run of slots, kept as where the runs end rather than slot by slot.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    /// `ends[i]`: the slots held by servers `0..=i`.
    ends: Vec<u64>,
}

impl Slots {
    /// A continuum of `widths[i]` slots for server `i`, in order; a width of 0 holds none.
    pub(crate) fn new(widths: impl IntoIterator<Item = u64>) -> Slots {
        let ends = widths
            .into_iter()
            .scan(0u64, |end, width| {
                *end += width;
                Some(*end)
            })
            .collect();
        Slots { ends }
    }

    /// The owner of slot `hash % slots`, as `modula_dispatch` picks it; `None` with no slots.
    pub(crate) fn server(&self, hash: u32) -> Option<usize> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let slot = u64::from(hash) % total;
        Some(self.ends.partition_point(|&end| end <= slot))
    }

    /// The servers met walking the slots on from the owner of `hash`, wrapping, each once:
    /// as runs lie in order, the owner and then the servers after it, wrapping.
    pub(crate) fn walk(&self, hash: u32) -> impl Iterator<Item = usize> + '_ {
        let n = self.ends.len();
        self.server(hash)
            .into_iter()
            .flat_map(move |owner| (0..n).map(move |i| (owner + i) % n))
            .filter(move |&server| self.width(server) > 0)
    }

    /// Each server's slots over all slots (all 0 with no slots).
    pub(crate) fn shares(&self) -> Vec<f64> {
        let total = self.total();
        (0..self.ends.len())
            .map(|server| match total {
                0 => 0.0,
                total => self.width(server) as f64 / total as f64,
            })
            .collect()
    }

    fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    fn width(&self, server: usize) -> u64 {
        let start = server.checked_sub(1).map_or(0, |before| self.ends[before]);
        self.ends[server] - start
    }
}
