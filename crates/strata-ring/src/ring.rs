//! A pool's placement: which server owns a key hash under twemproxy's `distribution`, and the
//! order to fall back in.

use crate::slots::Slots;
use crate::Ketama;

/// How keys map to servers, by twemproxy's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// `ketama`: consistent hashing, 160 points per server split by weight.
    Ketama,
    /// `modula`: one slot per unit of weight, the owner at slot `hash % total weight`.
    Modula,
    /// `random`: one slot per server whatever its weight, the owner picked at random.
    Random,
}

impl Distribution {
    /// The distribution a config's `distribution:` value names (exact, lower case).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Ketama, Self::Modula, Self::Random]
            .into_iter()
            .find(|distribution| distribution.name() == name)
    }

    /// The distribution's name in twemproxy's config.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ketama => "ketama",
            Self::Modula => "modula",
            Self::Random => "random",
        }
    }
}

/// The servers' placement for one pool: built once from (name, weight) in config order.
///
/// Every server is on it for good: twemproxy rebuilds its continuum when it ejects a server
/// (`auto_eject_hosts`), Strata keeps the ring and [walks](Ring::walk) past the server
/// instead. For ketama with equal weights the walk's next server is the one twemproxy's
/// rebuilt ring would pick (the others keep their points); for modula a rebuild changes
/// `hash % total` and moves keys of live servers too, which the walk does not. A server of
/// weight 0 (twemproxy refuses one) owns no keys and is never walked to.
#[derive(Debug, Clone)]
pub struct Ring {
    distribution: Distribution,
    placement: Placement,
}

#[derive(Debug, Clone)]
enum Placement {
    Ketama {
        ring: Ketama,
        servers: usize,
    },
    /// The slots, laid out over the servers in twemproxy's order (`order[i]` is the config
    /// index of the server at position `i`).
    Slots {
        slots: Slots,
        order: Vec<usize>,
    },
}

impl Ring {
    /// Builds the placement of `servers`, `(name, weight)` in config order; indices returned
    /// are positions in that order. For ketama, `name` is what twemproxy hashes: the server's
    /// `name` if the config gives one, else `host:port`, or just `host` when the port is 11211.
    /// Modula gives each server `weight` slots; random gives each server one, as twemproxy's
    /// random ignores weights. The slots lie in twemproxy's server order, which is not the
    /// config's: it sorts a pool's servers by name (shorter names first, then byte by byte)
    /// when it validates the config.
    pub fn new<'a>(
        distribution: Distribution,
        servers: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Ring {
        let servers: Vec<(&str, u32)> = servers.into_iter().collect();
        let mut order: Vec<usize> = (0..servers.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (servers[a].0.as_bytes(), servers[b].0.as_bytes());
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        });
        let width = |i: &usize| {
            let w = servers[*i].1;
            u64::from(if distribution == Distribution::Random {
                u32::from(w > 0)
            } else {
                w
            })
        };
        let placement = match distribution {
            Distribution::Ketama => Placement::Ketama {
                ring: Ketama::new(servers.iter().copied()),
                servers: servers.len(),
            },
            Distribution::Modula | Distribution::Random => Placement::Slots {
                slots: Slots::new(order.iter().map(width)),
                order,
            },
        };
        Ring {
            distribution,
            placement,
        }
    }

    /// The owner of a key hash (see [`KeyHash::placement_hash`](crate::KeyHash::placement_hash)),
    /// or `None` when no server owns any key. For `Random` the caller passes a random u32
    /// instead of the key hash: twemproxy ignores the key and picks `random() % servers`.
    pub fn server(&self, hash: u32) -> Option<usize> {
        match &self.placement {
            Placement::Ketama { ring, .. } => ring.server(hash),
            Placement::Slots { slots, order } => slots.server(hash).map(|p| order[p]),
        }
    }

    /// Servers in the order to fall back to when the owner is unavailable: owner first, each
    /// once, the same order on every node. Ketama walks the ring on from the hash; modula and
    /// random walk the slots on from the owner's, which is the servers after it in
    /// twemproxy's (name) order, wrapping.
    pub fn walk(&self, hash: u32) -> impl Iterator<Item = usize> + '_ {
        match &self.placement {
            Placement::Ketama { ring, .. } => Walk::Ketama(ring.walk(hash)),
            Placement::Slots { slots, order } => Walk::Slots(slots.walk(hash).map(|p| order[p])),
        }
    }

    /// The share of keys (0..=1) each server owns, in config order, for status pages: for
    /// ketama the arcs its points own over 2^32, for modula its weight over the total, for
    /// random an equal share for each server of non-zero weight.
    pub fn shares(&self) -> Vec<f64> {
        match &self.placement {
            Placement::Ketama { ring, servers } => ring
                .arcs(*servers)
                .into_iter()
                .map(|arc| arc as f64 / (1u64 << 32) as f64)
                .collect(),
            Placement::Slots { slots, order } => {
                let mut shares = vec![0.0; order.len()];
                for (share, &i) in slots.shares().into_iter().zip(order) {
                    shares[i] = share;
                }
                shares
            }
        }
    }

    /// The distribution the ring was built for.
    pub fn distribution(&self) -> Distribution {
        self.distribution
    }
}

/// A walk over either kind of placement, without boxing.
enum Walk<K, S> {
    Ketama(K),
    Slots(S),
}

impl<K, S> Iterator for Walk<K, S>
where
    K: Iterator<Item = usize>,
    S: Iterator<Item = usize>,
{
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Walk::Ketama(walk) => walk.next(),
            Walk::Slots(walk) => walk.next(),
        }
    }
}

#[cfg(test)]
mod tests;
