//! Which server is the primary: each is asked `pg_is_in_recovery()` every `check_interval` on
//! a connection of its own; the one that answers false takes the writes. A server that fails a
//! check or a connect is banned for `ban_time`. When the primary moves (a replica promoted by
//! Patroni or by hand), the pools' idle connections to the old one are closed, so the next
//! transaction goes to the new one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Its role.
    pub role: Role,
    /// Why it is what it is (the last error, for a server that is down).
    pub reason: String,
    /// Until when it is banned.
    pub banned_until: Option<Instant>,
    /// When the role last changed.
    pub since: SystemTime,
}

/// The servers of one listener and their roles.
pub struct Roles {
    servers: Mutex<Vec<ServerState>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Roles {
    /// The servers of `config`, their roles unknown; a server kept from `previous` keeps its
    /// state.
    pub fn new(config: &DatabaseListener, previous: Option<&Roles>) -> Roles {
        let old = previous
            .map(|p| lock(&p.servers).clone())
            .unwrap_or_default();
        let servers = config
            .servers
            .iter()
            .map(|addr| {
                old.iter()
                    .find(|s| s.addr == *addr)
                    .cloned()
                    .unwrap_or(ServerState {
                        addr: *addr,
                        role: Role::Unknown,
                        reason: "not checked yet".into(),
                        banned_until: None,
                        since: SystemTime::now(),
                    })
            })
            .collect();
        Roles {
            servers: Mutex::new(servers),
        }
    }

    /// Where writes go: the server found to be primary; with no checks possible (no
    /// `check_user`) and one server, that server.
    pub fn primary(&self) -> Option<SocketAddr> {
        let servers = lock(&self.servers);
        if let Some(p) = servers.iter().find(|s| s.role == Role::Primary) {
            return Some(p.addr);
        }
        match servers.as_slice() {
            [only] if only.role == Role::Unknown => Some(only.addr),
            _ => None,
        }
    }

    /// Records what a check (or a connect) found; true when the primary changed.
    pub fn set(&self, addr: SocketAddr, role: Role, reason: String, ban: Duration) -> bool {
        let mut servers = lock(&self.servers);
        let before = servers
            .iter()
            .find(|s| s.role == Role::Primary)
            .map(|s| s.addr);
        if let Some(s) = servers.iter_mut().find(|s| s.addr == addr) {
            if s.role != role {
                tracing::info!(server = %addr, from = s.role.name(), to = role.name(), %reason, "server role changed");
                s.since = SystemTime::now();
            }
            s.role = role;
            s.reason = reason;
            s.banned_until = (role == Role::Down).then(|| Instant::now() + ban);
        }
        let after = servers
            .iter()
            .find(|s| s.role == Role::Primary)
            .map(|s| s.addr);
        before != after
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
                        "role": s.role.name(),
                        "reason": s.reason,
                        "banned_for_ms": s.banned_until.map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                        "since": s.since.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
                    })
                })
                .collect(),
        )
    }
}

/// Checks every server of `svc` at its interval until `stop`.
pub async fn run(svc: Arc<DatabaseService>, stop: CancellationToken) {
    let mut conns: Vec<(SocketAddr, ServerConn)> = Vec::new();
    loop {
        let config = svc.config();
        let Some(user) = config.check_user.clone() else {
            return; // nobody to log in as: roles stay unknown (one server is taken as primary)
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
            let found = check(&mut conns, addr, &user, credential, config.connect_timeout).await;
            let changed = match found {
                Ok(true) => roles.set(
                    addr,
                    Role::Replica,
                    "pg_is_in_recovery() is true".into(),
                    config.ban_time,
                ),
                Ok(false) => roles.set(
                    addr,
                    Role::Primary,
                    "pg_is_in_recovery() is false".into(),
                    config.ban_time,
                ),
                Err(e) => {
                    conns.retain(|(a, _)| *a != addr);
                    roles.set(addr, Role::Down, e, config.ban_time)
                }
            };
            if changed {
                tracing::warn!(listener = %svc.name, primary = ?roles.primary(), "the primary moved; closing idle connections to the old one");
                svc.close_idle_except(roles.primary());
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.check_interval) => {}
        }
    }
}

/// Asks `addr` whether it is in recovery, on its check connection (made if needed).
async fn check(
    conns: &mut Vec<(SocketAddr, ServerConn)>,
    addr: SocketAddr,
    user: &str,
    credential: &Credential,
    timeout: Duration,
) -> Result<bool, String> {
    if !conns.iter().any(|(a, _)| *a == addr) {
        let conn = ServerConn::connect(addr, user, "postgres", credential, timeout)
            .await
            .map_err(|e| e.to_string())?;
        conns.push((addr, conn));
    }
    let conn = &mut conns
        .iter_mut()
        .find(|(a, _)| *a == addr)
        .expect("just made")
        .1;
    let answer = tokio::time::timeout(timeout, conn.run("SELECT pg_is_in_recovery()")).await;
    match answer {
        Ok(Ok((rows, _))) => match rows.first() {
            Some(Some(v)) => Ok(v == "t"),
            _ => Err("pg_is_in_recovery() gave no answer".into()),
        },
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer to the check within {timeout:?}")),
    }
}
