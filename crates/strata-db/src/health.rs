//! Which server is the primary: each is asked `pg_is_in_recovery()` every `check_interval` on
//! a connection of its own; the one that answers false takes the writes. A server that fails a
//! check or a connect is banned for `ban_time`. When the primary moves (a replica promoted by
//! Patroni or by hand), the pools' idle connections to the old one are closed, so the next
//! transaction goes to the new one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use strata_net::lock;

use serde_json::{json, Value};
use strata_config::DatabaseListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Credential;
use crate::server::ServerConn;
use crate::DatabaseService;

/// What a server is, as last found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes writes (`pg_is_in_recovery()` is false).
    Primary,
    /// A standby.
    Replica,
    /// Not asked yet, or nobody to ask as (no `check_user`).
    Unknown,
    /// Failed its last check or a connect; banned until the time given.
    Down,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Unknown => "unknown",
            Role::Down => "down",
        }
    }
}

/// One server's state.
#[derive(Debug, Clone)]
pub struct ServerState {
    /// The server.
    pub addr: SocketAddr,
    /// Its shard (0 when the listener is not sharded).
    pub shard: usize,
    /// Its role.
    pub role: Role,
    /// Why it is what it is (the last error, for a server that is down).
    pub reason: String,
    /// Until when it is banned.
    pub banned_until: Option<Instant>,
    /// When the role last changed.
    pub since: SystemTime,
    /// Where its WAL is: the primary's written position, a replica's replayed one (bytes).
    pub lsn: Option<u64>,
    /// How far a replica's replay is behind the primary's WAL, in bytes, as last checked.
    pub lag_bytes: Option<u64>,
    /// Drained by an operator: takes no new reads (a primary can't be drained).
    pub drained: bool,
}

/// The servers of one listener and their roles.
pub struct Roles {
    servers: Mutex<Vec<ServerState>>,
}

impl Roles {
    /// The servers of `config`, their roles unknown; a server kept from `previous` keeps its
    /// state.
    pub fn new(config: &DatabaseListener, previous: Option<&Roles>) -> Roles {
        let old = previous
            .map(|p| lock(&p.servers).clone())
            .unwrap_or_default();
        let servers = config
            .shards
            .iter()
            .enumerate()
            .flat_map(|(shard, servers)| servers.iter().map(move |a| (shard, *a)))
            .map(|(shard, addr)| {
                old.iter()
                    .find(|s| s.addr == addr && s.shard == shard)
                    .cloned()
                    .unwrap_or(ServerState {
                        addr,
                        shard,
                        role: Role::Unknown,
                        reason: "not checked yet".into(),
                        banned_until: None,
                        since: SystemTime::now(),
                        lsn: None,
                        lag_bytes: None,
                        drained: false,
                    })
            })
            .collect();
        Roles {
            servers: Mutex::new(servers),
        }
    }

    /// Where the writes of `shard` go: its server found to be primary; with no checks
    /// possible (no `check_user`) and one server in the shard, that server.
    pub fn primary(&self, shard: usize) -> Option<SocketAddr> {
        primary_of(&lock(&self.servers), shard)
    }

    /// The primary of every shard that has one.
    pub fn primaries(&self) -> Vec<SocketAddr> {
        let servers = lock(&self.servers);
        let shards = servers.iter().map(|s| s.shard + 1).max().unwrap_or(0);
        (0..shards)
            .filter_map(|i| primary_of(&servers, i))
            .collect()
    }

    /// Records what a check (or a connect) found; true when a primary changed.
    pub fn set(&self, addr: SocketAddr, role: Role, reason: String, ban: Duration) -> bool {
        let mut servers = lock(&self.servers);
        let before: Vec<SocketAddr> = servers
            .iter()
            .filter(|s| s.role == Role::Primary)
            .map(|s| s.addr)
            .collect();
        if let Some(s) = servers.iter_mut().find(|s| s.addr == addr) {
            if s.role != role {
                tracing::info!(server = %addr, from = s.role.name(), to = role.name(), %reason, "server role changed");
                s.since = SystemTime::now();
            }
            if role == Role::Primary && s.drained {
                // promoted: its writes have nowhere else to go
                tracing::warn!(server = %addr, "a drained replica became the primary: restored");
                s.drained = false;
            }
            s.role = role;
            s.reason = reason;
            s.banned_until = (role == Role::Down).then(|| Instant::now() + ban);
        }
        let after: Vec<SocketAddr> = servers
            .iter()
            .filter(|s| s.role == Role::Primary)
            .map(|s| s.addr)
            .collect();
        before != after
    }

    /// Records a server's WAL position, and the lag of its shard's replicas behind the
    /// shard's primary.
    pub fn set_lsn(&self, addr: SocketAddr, lsn: Option<u64>) {
        let mut servers = lock(&self.servers);
        let Some(shard) = servers.iter_mut().find(|s| s.addr == addr).map(|s| {
            s.lsn = lsn;
            s.shard
        }) else {
            return;
        };
        let primary = servers
            .iter()
            .find(|s| s.shard == shard && s.role == Role::Primary)
            .and_then(|s| s.lsn);
        for s in servers.iter_mut().filter(|s| s.shard == shard) {
            s.lag_bytes = match (s.role, primary, s.lsn) {
                (Role::Replica, Some(p), Some(r)) => Some(p.saturating_sub(r)),
                _ => None,
            };
        }
    }

    /// The replicas of `shard` that may take reads: up, not drained, and with a lag known and
    /// within `max_lag` bytes.
    pub fn replicas(&self, shard: usize, max_lag: u64) -> Vec<SocketAddr> {
        let servers = lock(&self.servers);
        servers
            .iter()
            .filter(|s| {
                s.shard == shard
                    && s.role == Role::Replica
                    && !s.drained
                    && s.lag_bytes.is_some_and(|l| l <= max_lag)
            })
            .map(|s| s.addr)
            .collect()
    }

    /// Drains (`drain`) or restores a server: a drained one takes no new reads. Only a
    /// replica can be drained; the error says why another can't. `None`: no such server.
    pub fn set_drained(
        &self,
        addr: SocketAddr,
        drain: bool,
    ) -> Option<Result<ServerState, String>> {
        let mut servers = lock(&self.servers);
        let s = servers.iter_mut().find(|s| s.addr == addr)?;
        // only a replica's reads can go elsewhere; a server not known to be one (unchecked,
        // down) may be the primary the next check finds
        if drain && s.role != Role::Replica {
            return Some(Err(format!(
                "{addr} is {} (shard {}), not a replica: only a replica's reads can go elsewhere",
                match s.role {
                    Role::Primary => "the primary",
                    Role::Down => "down",
                    _ => "not checked as a replica",
                },
                s.shard
            )));
        }
        s.drained = drain;
        Some(Ok(s.clone()))
    }

    /// A server that is banned now is not asked again until its ban ends.
    fn banned(&self, addr: SocketAddr) -> bool {
        lock(&self.servers)
            .iter()
            .any(|s| s.addr == addr && s.banned_until.is_some_and(|t| Instant::now() < t))
    }

    /// Every server, for status.
    pub fn all(&self) -> Vec<ServerState> {
        lock(&self.servers).clone()
    }

    /// Every server as JSON.
    pub fn status(&self) -> Value {
        Value::Array(
            self.all()
                .iter()
                .map(|s| {
                    json!({
                        "address": s.addr.to_string(),
                        "shard": s.shard,
                        "role": s.role.name(),
                        "reason": s.reason,
                        "banned_for_ms": s.banned_until.map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                        "since": s.since.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
                        "lag_bytes": s.lag_bytes,
                        "drained": s.drained,
                    })
                })
                .collect(),
        )
    }
}

/// The primary of `shard` among `servers` (see [`Roles::primary`]).
fn primary_of(servers: &[ServerState], shard: usize) -> Option<SocketAddr> {
    let mine: Vec<&ServerState> = servers.iter().filter(|s| s.shard == shard).collect();
    // two servers that both say they are primary (an old primary back after a promotion):
    // the one that became primary last takes the writes
    if let Some(p) = mine
        .iter()
        .filter(|s| s.role == Role::Primary)
        .max_by_key(|s| s.since)
    {
        return Some(p.addr);
    }
    // with nobody to check as, the one server is the primary, unless it failed a connect
    // within its ban
    match mine.as_slice() {
        [only] if only.role == Role::Unknown => Some(only.addr),
        [only]
            if only.role == Role::Down && only.banned_until.is_none_or(|t| Instant::now() >= t) =>
        {
            Some(only.addr)
        }
        _ => None,
    }
}

/// Checks every server of `svc` at its interval until `stop`.
pub async fn run(svc: Arc<DatabaseService>, stop: CancellationToken) {
    let mut conns: Vec<(SocketAddr, ServerConn)> = Vec::new();
    loop {
        let config = svc.config();
        let Some(user) = config.check_user.clone() else {
            // nobody to log in as: roles stay unknown (one server is taken as primary) until a
            // reload names a check_user
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = svc.recheck.notified() => continue,
            }
        };
        let credential = config
            .users
            .iter()
            .find(|u| u.name == user)
            .map(|u| Credential::of(&u.secret));
        let roles = svc.roles();
        conns.retain(|(a, _)| config.servers.contains(a));
        for addr in config.servers.clone() {
            if roles.banned(addr) {
                continue;
            }
            let Some(credential) = &credential else { break };
            let found = check(
                &svc.dialer,
                &mut conns,
                addr,
                &user,
                credential,
                config.connect_timeout,
            )
            .await;
            let (role, reason, lsn) = match found {
                Ok((true, lsn)) => (
                    Role::Replica,
                    "pg_is_in_recovery() is true".to_string(),
                    lsn,
                ),
                Ok((false, lsn)) => (
                    Role::Primary,
                    "pg_is_in_recovery() is false".to_string(),
                    lsn,
                ),
                Err(e) => {
                    conns.retain(|(a, _)| *a != addr);
                    (Role::Down, e, None)
                }
            };
            let changed = roles.set(addr, role, reason, config.ban_time);
            roles.set_lsn(addr, lsn);
            if changed {
                let primaries = roles.primaries();
                tracing::warn!(listener = %svc.name, ?primaries, "a primary moved; closing idle connections to the old one");
                svc.close_idle_except(&primaries);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.check_interval) => {}
            _ = svc.recheck.notified() => {}
        }
    }
}

/// Asks `addr` whether it is in recovery, on its check connection (made if needed).
async fn check(
    dialer: &crate::server::Dialer,
    conns: &mut Vec<(SocketAddr, ServerConn)>,
    addr: SocketAddr,
    user: &str,
    credential: &Credential,
    timeout: Duration,
) -> Result<(bool, Option<u64>), String> {
    // a check connection made before a reload changed server_tls_* is made again
    conns.retain(|(a, c)| *a != addr || dialer.current(c));
    let at = match conns.iter().position(|(a, _)| *a == addr) {
        Some(at) => at,
        None => {
            let conn = dialer
                .connect(addr, user, "postgres", credential, timeout)
                .await
                .map_err(|e| e.to_string())?;
            conns.push((addr, conn));
            conns.len() - 1
        }
    };
    let conn = &mut conns[at].1;
    let sql = "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() \
               THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END";
    let answer = tokio::time::timeout(timeout, conn.run(sql)).await;
    match answer {
        Ok(Ok((rows, _))) => match rows.first().map(|r| r.as_slice()) {
            Some([Some(recovery), lsn, ..]) => {
                Ok((recovery == "t", lsn.as_deref().and_then(parse_lsn)))
            }
            _ => Err("pg_is_in_recovery() gave no answer".into()),
        },
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer to the check within {timeout:?}")),
    }
}

/// A WAL position as PostgreSQL prints it (`16/B374D848`), in bytes.
fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(servers: &[&str]) -> DatabaseListener {
        let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
        let text = format!(
            "[[database]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nservers = [{}]\n\
             check_user = \"u\"\n[[database.users]]\nname = \"u\"\npassword = \"p\"\n",
            list.join(", ")
        );
        strata_config::parse(&text, "t.toml", std::path::Path::new("."))
            .unwrap()
            .database
            .remove(0)
    }

    #[test]
    fn of_two_servers_claiming_primary_the_newer_takes_the_writes() {
        let (a, b) = ("10.0.0.1:5432", "10.0.0.2:5432");
        let roles = Roles::new(&listener(&[a, b]), None);
        let ban = Duration::from_secs(10);
        roles.set(a.parse().unwrap(), Role::Primary, "old".into(), ban);
        roles.set(b.parse().unwrap(), Role::Primary, "promoted".into(), ban);
        // a became primary a minute before b (no sleeping: the times are set)
        for s in lock(&roles.servers).iter_mut() {
            let ago = if s.addr == a.parse().unwrap() {
                120
            } else {
                60
            };
            s.since = SystemTime::now() - Duration::from_secs(ago);
        }
        assert_eq!(roles.primary(0), Some(b.parse().unwrap()));
        // a lone server with nobody to check as: used, banned after a failed connect, used
        // again once the ban is over
        let one = Roles::new(&listener(&[a]), None);
        assert_eq!(one.primary(0), Some(a.parse().unwrap()));
        one.set(
            a.parse().unwrap(),
            Role::Down,
            "refused".into(),
            Duration::ZERO,
        );
        assert_eq!(one.primary(0), Some(a.parse().unwrap()));
        one.set(a.parse().unwrap(), Role::Down, "refused".into(), ban);
        assert_eq!(one.primary(0), None);
    }
}
