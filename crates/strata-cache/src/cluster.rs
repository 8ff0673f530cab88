//! Redis Cluster as a pool's backend (`backend = "cluster"`), so that clients that know
//! nothing of Cluster can use one: the slot of each key (CRC16 of its hash tag, as Redis
//! computes it) names the node that serves it, from the map `CLUSTER SLOTS` gives. A `MOVED`
//! reply moves that slot in the map, sends the command on to the node named, and asks for the
//! whole map again; an `ASK` reply sends it there once, behind `ASKING`; `TRYAGAIN` and
//! `CLUSTERDOWN` are tried again shortly. Each master's replicas (from the same map) serve
//! read-only commands as `read_from` says, on connections that said `READONLY`; a replica that
//! no longer serves the slot answers `MOVED`, and the command goes to the master named.

use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use strata_config::{Passive, ReadFrom};
use strata_health::{Backend, Group};

use crate::pool::Shard;
use crate::resp::{self, Value};
use crate::server::{LinkSettings, Target};
use strata_upstream::Retry;

/// A command's reply, worked out in steps.
pub type Later = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>> + Send>>;

/// Slots in a Redis Cluster.
pub const SLOTS: usize = 16384;
/// How often the slot map is asked for when nothing (a `MOVED`) said it changed.
pub const REFRESH: Duration = Duration::from_secs(5);
/// Redirections followed for one command before it fails.
pub(crate) const MAX_REDIRECTS: usize = 5;
/// No slot's node is known.
const NONE: u16 = u16::MAX;

/// The slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the first `{` and the
/// next `}`, when not empty) or of the whole key, modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let close = key[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &key[open + 1..open + 1 + close])
    });
    let crc = strata_ring::KeyHash::Crc16.hash(tagged.unwrap_or(key));
    (crc & 0x3fff) as u16
}

/// Which node serves each slot, and the nodes.
pub struct SlotMap {
    /// The masters, with their connections.
    pub nodes: Vec<Arc<Shard>>,
    /// For each slot, its node's index in `nodes` (or none).
    slots: Box<[u16]>,
}

/// A pool's view of its Redis Cluster.
pub struct Cluster {
    map: ArcSwap<SlotMap>,
    seeds: Vec<SocketAddr>,
    settings: Arc<LinkSettings>,
    /// The settings of replicas' connections (`READONLY` first).
    replica_settings: Arc<LinkSettings>,
    passive: Passive,
    refreshing: AtomicBool,
    /// Refreshes finished, and the turn to ask for one after a failure: commands that fail
    /// together wait for one refresh, not one each.
    refreshes: AtomicU64,
    asking: tokio::sync::Mutex<()>,
    /// What the last refresh said, for `/status`.
    pub last_refresh: Mutex<String>,
    /// Nodes `CLUSTER NODES` named that own no slot (yet), and when that was last asked: a
    /// redirection to an address the map does not name asks it at most once a second.
    members: Mutex<(Vec<SocketAddr>, Option<std::time::Instant>)>,
}

impl Cluster {
    /// Whether this cluster is the one `seeds`, `settings` and `passive` describe: a reload
    /// that leaves them as they were keeps it, its map and its nodes' connections.
    pub fn is(&self, seeds: &[SocketAddr], settings: &LinkSettings, passive: &Passive) -> bool {
        self.seeds == seeds && *self.settings == *settings && self.passive == *passive
    }

    /// A cluster known only by its seed nodes; call [`Cluster::refresh`] to learn the slots.
    pub fn new(seeds: Vec<SocketAddr>, settings: Arc<LinkSettings>, passive: Passive) -> Arc<Self> {
        Arc::new(Cluster {
            map: ArcSwap::from_pointee(SlotMap {
                nodes: Vec::new(),
                slots: vec![NONE; SLOTS].into_boxed_slice(),
            }),
            seeds,
            replica_settings: Arc::new(LinkSettings {
                readonly: true,
                ..(*settings).clone()
            }),
            settings,
            passive,
            refreshing: AtomicBool::new(false),
            refreshes: AtomicU64::new(0),
            asking: tokio::sync::Mutex::new(()),
            last_refresh: Mutex::new("not asked yet".into()),
            members: Mutex::new((Vec::new(), None)),
        })
    }

    /// The nodes now.
    pub fn nodes(&self) -> Vec<Arc<Shard>> {
        self.map.load().nodes.clone()
    }

    /// The node that serves `slot`, as far as the map knows.
    pub fn node(&self, slot: u16) -> Option<Arc<Shard>> {
        let map = self.map.load();
        let i = *map.slots.get(slot as usize)?;
        map.nodes.get(i as usize).cloned()
    }

    /// Whether `addr` is a seed or a master the map names. A redirection to any other address
    /// is not followed until a refresh of the map names it: a script can return any error,
    /// `MOVED` too, and following a forged one would send the command (and the pool's
    /// `server_password`) to an address the client chose.
    pub(crate) fn knows(&self, addr: SocketAddr) -> bool {
        self.seeds.contains(&addr)
            || self.map.load().nodes.iter().any(|n| {
                n.live.target.get().0 == addr
                    || n.live
                        .replicas
                        .load()
                        .iter()
                        .any(|r| r.backend.addr == addr)
            })
            || strata_net::lock(&self.members).0.contains(&addr)
    }

    /// Whether a redirection to `addr` is followed. When neither the seeds nor the map name
    /// it (a node just added, which owns no slot until its first one has moved), a node the
    /// map names is asked for `CLUSTER NODES`, at most once a second: a client's forged
    /// redirections can't make the proxy ask more often than that (the map is asked for
    /// again in the background).
    pub(crate) async fn vouch(self: &Arc<Self>, addr: SocketAddr) -> bool {
        if self.knows(addr) {
            return true;
        }
        self.refresh_soon();
        {
            let mut members = strata_net::lock(&self.members);
            let now = std::time::Instant::now();
            if members
                .1
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
            {
                return false;
            }
            members.1 = Some(now);
        }
        for node in self.to_ask() {
            if let Ok(found) = ask_members(node, &self.settings).await {
                let known = found.contains(&addr);
                strata_net::lock(&self.members).0 = found;
                return known;
            }
        }
        false
    }

    /// The node at `addr`, made if the map has none there yet.
    fn node_at(&self, addr: SocketAddr) -> Arc<Shard> {
        let map = self.map.load();
        if let Some(n) = map.nodes.iter().find(|n| n.live.target.get().0 == addr) {
            return n.clone();
        }
        new_node(addr, &self.settings, &self.passive)
    }

    /// Moves one slot to the node at `addr` (a `MOVED` reply), and asks for the whole map again.
    pub(crate) fn moved(self: &Arc<Self>, slot: u16, addr: SocketAddr) -> Arc<Shard> {
        let node = self.node_at(addr);
        let map = self.map.load();
        let mut nodes = map.nodes.clone();
        let index = match nodes.iter().position(|n| Arc::ptr_eq(n, &node)) {
            Some(i) => i,
            None => {
                nodes.push(node.clone());
                nodes.len() - 1
            }
        };
        let mut slots = map.slots.clone();
        slots[slot as usize] = index as u16;
        self.map.store(Arc::new(SlotMap { nodes, slots }));
        self.refresh_soon();
        node
    }

    /// Asks for the map in the background, unless that is under way already.
    pub fn refresh_soon(self: &Arc<Self>) {
        if !self.refreshing.swap(true, Relaxed) {
            let cluster = self.clone();
            tokio::spawn(async move {
                cluster.refresh().await;
                cluster.refreshing.store(false, Relaxed);
            });
        }
    }

    /// Asks the known nodes, then the seeds, for `CLUSTER SLOTS`, and takes the first answer.
    pub async fn refresh(&self) {
        if self.ask().await {
            self.refreshes.fetch_add(1, Release);
        }
    }

    /// A refresh after a command failed: none if one has taken a map since the command was
    /// sent (`seen`), else a new one; one at a time.
    async fn refresh_after(&self, seen: u64) {
        let _turn = self.asking.lock().await;
        if self.refreshes.load(Acquire) == seen {
            self.refresh().await;
        }
    }

    /// The nodes to ask about the cluster: the map's masters, then the seeds.
    fn to_ask(&self) -> Vec<SocketAddr> {
        self.map
            .load()
            .nodes
            .iter()
            .map(|n| n.live.target.get().0)
            .chain(self.seeds.iter().copied())
            .collect()
    }

    /// Whether a node told the map (and it was taken).
    async fn ask(&self) -> bool {
        let mut last_error = String::from("no node to ask");
        for addr in self.to_ask() {
            match ask_slots(addr, &self.settings).await {
                Ok(ranges) => {
                    self.take(&ranges);
                    if let Ok(mut l) = self.last_refresh.lock() {
                        *l = format!("slots from {addr}");
                    }
                    return true;
                }
                Err(e) => last_error = format!("{addr}: {e}"),
            }
        }
        tracing::warn!("cluster: no node told its slots: {last_error}");
        if let Ok(mut l) = self.last_refresh.lock() {
            *l = format!("failed: {last_error}");
        }
        false
    }

    /// Takes a `CLUSTER SLOTS` answer as the map; nodes that stay keep their connections,
    /// and each master takes the replicas the answer lists for it.
    fn take(&self, ranges: &[Range]) {
        let old = self.map.load();
        let mut nodes: Vec<Arc<Shard>> = Vec::new();
        let mut slots = vec![NONE; SLOTS].into_boxed_slice();
        for Range {
            start,
            end,
            master: addr,
            replicas,
        } in ranges
        {
            let (start, end, addr) = (*start, *end, *addr);
            let index = match nodes.iter().position(|n| n.live.target.get().0 == addr) {
                Some(i) => i,
                None => {
                    let node = old
                        .nodes
                        .iter()
                        .find(|n| n.live.target.get().0 == addr)
                        .cloned()
                        .unwrap_or_else(|| new_node(addr, &self.settings, &self.passive));
                    nodes.push(node);
                    nodes.len() - 1
                }
            };
            nodes[index]
                .live
                .set_replicas(replicas, &self.replica_settings, &self.passive, &[]);
            for s in start..=end.min(SLOTS as u16 - 1) {
                slots[s as usize] = index as u16;
            }
        }
        self.map.store(Arc::new(SlotMap { nodes, slots }));
    }

    /// Sends a command whose keys are all in `slot` now (so that it goes out in its place in
    /// the client's pipeline), and follows the cluster's redirections in the future returned.
    /// A read-only command goes where `read` says (a replica of the slot's master, or the
    /// fastest lately); redirections go to masters.
    pub fn start(self: &Arc<Self>, slot: u16, frame: Bytes, resp3: bool, read: ReadFrom) -> Later {
        // the maps taken so far, read as the command is sent: a refresh after that is one
        // its failure need not ask for again
        let seen = self.refreshes.load(Acquire);
        let first = self.node(slot).map(|n| {
            let rx = n.send_read(frame.clone(), resp3, read);
            (n, rx)
        });
        Box::pin(self.clone().follow(slot, frame, resp3, first, seen))
    }

    async fn follow(
        self: Arc<Self>,
        slot: u16,
        frame: Bytes,
        resp3: bool,
        first: Option<(
            Arc<Shard>,
            tokio::sync::oneshot::Receiver<crate::server::Reply>,
        )>,
        seen: u64,
    ) -> Result<Bytes, String> {
        let (mut node, mut sent) = match first {
            Some((node, rx)) => (node, Some(rx)),
            None => {
                Box::pin(self.refresh_after(seen)).await;
                let node = self
                    .node(slot)
                    .ok_or_else(|| format!("no node of the cluster serves slot {slot}"))?;
                (node, None)
            }
        };
        let mut asking = false;
        let mut tried_again = false;
        for _ in 0..MAX_REDIRECTS {
            let rx = if let Some(rx) = sent.take() {
                rx
            } else if asking {
                let mut both = BytesMut::from(&b"*1\r\n$6\r\nASKING\r\n"[..]);
                both.extend_from_slice(&frame);
                node.master.send_skipping(both.freeze(), 1, resp3)
            } else {
                node.send(frame.clone(), resp3)
            };
            let reply = match rx.await {
                // Nothing reached the node (down, or gone): a replica may have been promoted
                // in its place. Once, the map is asked for again (unless a refresh took one
                // since the command was sent), and the command goes where its slot is now,
                // as cluster clients do after a connection error; not to the same node.
                Ok(Err(failure)) if failure.retry == Retry::Always && !tried_again => {
                    tried_again = true;
                    Box::pin(self.refresh_after(seen)).await;
                    let now = self.node(slot);
                    match now {
                        Some(now) if !Arc::ptr_eq(&now, &node) => node = now,
                        _ => return Err(failure.kind.to_string()),
                    }
                    asking = false;
                    continue;
                }
                // the command may have run (or was sent again and failed again): it is not
                // sent again, but the map is asked for
                Ok(Err(failure)) => {
                    self.refresh_soon();
                    return Err(failure.kind.to_string());
                }
                other => crate::server::received(other)?,
            };
            asking = false;
            let to = redirect(&reply, b"-MOVED ").or_else(|| redirect(&reply, b"-ASK "));
            if let Some((_, addr)) = to {
                if !Box::pin(self.vouch(addr)).await {
                    tracing::warn!(%addr, "a redirection to an address that is no node of the cluster: not followed");
                    return Ok(reply);
                }
            }
            if let Some((moved_slot, addr)) = redirect(&reply, b"-MOVED ") {
                node = self.moved(moved_slot, addr);
            } else if let Some((_, addr)) = redirect(&reply, b"-ASK ") {
                node = self.node_at(addr);
                asking = true;
            } else if reply.starts_with(b"-TRYAGAIN") || reply.starts_with(b"-CLUSTERDOWN") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else {
                return Ok(reply);
            }
        }
        Err("the cluster kept redirecting the command".into())
    }
}

/// A node: one master and its connections (its replicas come with the map).
fn new_node(addr: SocketAddr, settings: &Arc<LinkSettings>, passive: &Passive) -> Arc<Shard> {
    let group = Arc::new(Group {
        backends: vec![Arc::new(Backend::new(addr, 1))],
        passive: passive.clone(),
    });
    Shard::start(&group, 0, settings, Target::new(addr), "cluster")
}

/// `-MOVED 3999 127.0.0.1:6381` (or `-ASK ...`): the slot and the node.
pub(crate) fn redirect(reply: &[u8], prefix: &[u8]) -> Option<(u16, SocketAddr)> {
    let rest = reply.strip_prefix(prefix)?;
    let line = std::str::from_utf8(rest).ok()?.trim_end();
    let (slot, addr) = line.split_once(' ')?;
    let slot: u16 = slot.parse().ok().filter(|s| (*s as usize) < SLOTS)?;
    Some((slot, addr.parse().ok()?))
}

/// One range of a `CLUSTER SLOTS` answer.
struct Range {
    start: u16,
    end: u16,
    master: SocketAddr,
    replicas: Vec<SocketAddr>,
}

/// Asks the node at `addr` one question (`CLUSTER SLOTS`, `CLUSTER NODES`) on a connection
/// of its own; an error reply is an error.
async fn ask_node(
    addr: SocketAddr,
    settings: &LinkSettings,
    question: &[u8],
) -> Result<Bytes, String> {
    let mut stream = crate::server::open(addr, settings, false)
        .await
        .map_err(|e| e.to_string())?;
    let reply = crate::server::request(&mut stream, question, 1, Some(settings.timeout))
        .await
        .map_err(|e| e.to_string())?;
    if reply.starts_with(b"-") {
        return Err(String::from_utf8_lossy(&reply).trim_end().to_string());
    }
    Ok(reply)
}

/// The nodes `CLUSTER NODES` from the node at `addr` names, each by its address.
async fn ask_members(addr: SocketAddr, settings: &LinkSettings) -> Result<Vec<SocketAddr>, String> {
    let reply = ask_node(addr, settings, b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n").await?;
    let mut v = resp::Values::new(&reply);
    let Some(Value::Bulk(Some(text))) = v.next() else {
        return Err("not a bulk string".into());
    };
    Ok(members(text))
}

/// The addresses of the nodes in a `CLUSTER NODES` text: the second field of each line,
/// `ip:port@cport` (and `,hostname` after it).
fn members(text: &[u8]) -> Vec<SocketAddr> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .filter_map(|field| field.split(['@', ',']).next()?.parse().ok())
        .collect()
}

/// `CLUSTER SLOTS` from one node: each range's slots, master and replicas.
async fn ask_slots(addr: SocketAddr, settings: &LinkSettings) -> Result<Vec<Range>, String> {
    let reply = ask_node(addr, settings, b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n").await?;
    let mut v = resp::Values::new(&reply);
    let Some(Value::Array(Some(n))) = v.next() else {
        return Err("not an array".into());
    };
    let mut ranges = Vec::with_capacity(n);
    for _ in 0..n {
        let Some(Value::Array(Some(fields))) = v.next() else {
            return Err("a range is not an array".into());
        };
        let (Some(Value::Int(start)), Some(Value::Int(end))) = (v.next(), v.next()) else {
            return Err("a range without its slots".into());
        };
        let Some(Value::Array(Some(master_fields))) = v.next() else {
            return Err("a range without its master".into());
        };
        let master = node_addr(&mut v, master_fields, addr)?;
        let mut replicas = Vec::new();
        for _ in 3..fields {
            let Some(Value::Array(Some(replica_fields))) = v.next() else {
                return Err("a replica is not an array".into());
            };
            replicas.push(node_addr(&mut v, replica_fields, addr)?);
        }
        ranges.push(Range {
            start: u16::try_from(start).map_err(|_| "a bad slot")?,
            end: u16::try_from(end).map_err(|_| "a bad slot")?,
            master,
            replicas,
        });
    }
    Ok(ranges)
}

/// A node's address from its `fields` in a `CLUSTER SLOTS` range (ip, port, id, ...); an ip
/// that is empty or not an address (a node that does not know its own) is the asked one's.
fn node_addr(
    v: &mut resp::Values<'_>,
    fields: usize,
    asked: SocketAddr,
) -> Result<SocketAddr, String> {
    let (Some(Value::Bulk(Some(ip))), Some(Value::Int(port))) = (v.next(), v.next()) else {
        return Err("a node without its address".into());
    };
    for _ in 2..fields {
        v.whole();
    }
    let ip: std::net::IpAddr = std::str::from_utf8(ip)
        .ok()
        .and_then(|i| i.parse().ok())
        .unwrap_or(asked.ip());
    Ok(SocketAddr::new(
        ip,
        u16::try_from(port).map_err(|_| "a bad port")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_name_their_addresses() {
        let text = b"07c37 127.0.0.1:30004@31004,node-4 slave e7d1e 0 1426238317239 4 connected\n\
67ed2 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922\n\
292f8 127.0.0.1:30007@31007 master - 0 1426238316232 7 connected\n";
        let found = members(text);
        let want: Vec<SocketAddr> = ["127.0.0.1:30004", "127.0.0.1:30002", "127.0.0.1:30007"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn slots_are_the_ones_redis_gives() {
        // CLUSTER KEYSLOT on a real Redis
        for (key, want) in [
            (&b"foo"[..], 12182),
            (b"bar", 5061),
            (b"hello", 866),
            (b"123456789", 12739),
            (b"{user1000}.following", slot(b"user1000")),
            (b"foo{}{bar}", slot(b"foo{}{bar}")),
            (b"foo{{bar}}zap", slot(b"{bar")),
        ] {
            assert_eq!(slot(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn redirections_are_read() {
        assert_eq!(
            redirect(b"-MOVED 3999 127.0.0.1:6381\r\n", b"-MOVED "),
            Some((3999, "127.0.0.1:6381".parse().unwrap()))
        );
        assert_eq!(redirect(b"-ERR x\r\n", b"-MOVED "), None);
        // a slot no cluster has is no redirection
        assert_eq!(redirect(b"-MOVED 16384 127.0.0.1:1\r\n", b"-MOVED "), None);
    }
}
