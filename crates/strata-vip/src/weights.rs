//! Whether a tracked weight can move the Master at all, given the priorities of the peers that
//! `strata check` is shown: a weight smaller than the gap between the Master and the next
//! router fails silently (keepalived's most common track_script mistake).

use strata_config::VipInstance;

/// The priority an instance advertises with every check healthy.
fn healthy_priority(i: &VipInstance) -> i32 {
    if i.priority == 255 {
        return 255;
    }
    let up: i32 = i
        .track
        .iter()
        .filter_map(|t| t.weight)
        .filter(|w| *w > 0)
        .sum();
    (i32::from(i.priority) + up).clamp(1, 254)
}

/// One instance of a virtual router as `strata check` read it: which file, and the instance.
pub struct Peer<'a> {
    /// The config file it came from.
    pub file: &'a str,
    /// The instance.
    pub instance: &'a VipInstance,
}

/// For the instances of one virtual router (the same vrid, in the configs of its peers), what
/// cannot work: a weighted check of the Master whose failure leaves it at or above the next
/// router's priority, so the Backup never takes over. Empty when there are fewer than two.
pub fn weights_that_cannot_move(peers: &[Peer<'_>]) -> Vec<String> {
    if peers.len() < 2 {
        return Vec::new();
    }
    let mut by_priority: Vec<&Peer<'_>> = peers.iter().collect();
    by_priority.sort_by_key(|p| std::cmp::Reverse(healthy_priority(p.instance)));
    let (master, next) = (by_priority[0], by_priority[1]);
    let m = master.instance;
    if m.priority == 255 {
        return Vec::new(); // the owner's weights are refused by the config check itself
    }
    let m_healthy = healthy_priority(m);
    if !next.instance.preempt && m.track.iter().any(|t| t.weight.is_some()) {
        return vec![format!(
            "{}: vip \"{}\" (vrid {}): \"{}\" in {} has nopreempt, so no weight can move the \
             address to it while this node is up: track without a weight (Fault) to give it away",
            master.file, m.name, m.vrid, next.instance.name, next.file
        )];
    }
    let n_healthy = healthy_priority(next.instance);
    let mut out = Vec::new();
    let mut all_drop = 0;
    for t in &m.track {
        let Some(w) = t.weight else { continue };
        let drop = w.abs();
        all_drop += drop;
        let after = (m_healthy - drop).max(1);
        if after >= n_healthy {
            out.push(format!(
                "{}: vip \"{}\" (vrid {}): when {} fails its priority goes from {m_healthy} to {after}, \
                 not below {n_healthy} of \"{}\" in {}, so the address stays: use a weight below -{} \
                 or track it without a weight (Fault)",
                master.file,
                m.name,
                m.vrid,
                t.what.label(),
                next.instance.name,
                next.file,
                m_healthy - n_healthy,
            ));
        }
    }
    let after_all = (m_healthy - all_drop).max(1);
    if out.len() > 1 && after_all >= n_healthy {
        out.push(format!(
            "{}: vip \"{}\" (vrid {}): even with every weighted check failing its priority stays at \
             {after_all}, not below {n_healthy}",
            master.file, m.name, m.vrid
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_config::{Track, Tracked};

    fn inst(priority: u8, weights: &[i32]) -> VipInstance {
        let config = format!(
            "[[vip]]\nname = \"front\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\naddresses = [\"10.0.0.100/24\"]\n"
        );
        let mut i = strata_config::parse(&config, "t.toml", std::path::Path::new("."))
            .unwrap()
            .vip
            .remove(0);
        i.track = weights
            .iter()
            .map(|w| Track {
                what: Tracked::Interface("eth1".into()),
                weight: Some(*w),
            })
            .collect();
        i
    }

    #[test]
    fn a_weight_smaller_than_the_gap_is_reported() {
        let (m, b) = (inst(200, &[-50, -120]), inst(100, &[]));
        let peers = [
            Peer {
                file: "a.toml",
                instance: &m,
            },
            Peer {
                file: "b.toml",
                instance: &b,
            },
        ];
        let out = weights_that_cannot_move(&peers);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("from 200 to 150, not below 100"), "{out:?}");
    }

    #[test]
    fn equal_after_the_drop_cannot_move_either() {
        // a Backup only takes over from a lower priority, not an equal one
        let (m, b) = (inst(200, &[-100]), inst(100, &[]));
        let peers = [
            Peer {
                file: "a.toml",
                instance: &m,
            },
            Peer {
                file: "b.toml",
                instance: &b,
            },
        ];
        assert_eq!(weights_that_cannot_move(&peers).len(), 1);
        let m = inst(200, &[-101]);
        let peers = [
            Peer {
                file: "a.toml",
                instance: &m,
            },
            Peer {
                file: "b.toml",
                instance: &b,
            },
        ];
        assert!(weights_that_cannot_move(&peers).is_empty());
    }
}
