//! Cancel requests: each client gets a key of Strata's own; a cancel request with it goes,
//! on a new connection, to the server connection that client holds now, whichever worker
//! thread serves the client (PgBouncer is one thread; here the map is shared). A query
//! pipelined behind other clients' on a shared connection ([`crate::pipeline`]) is cancelled
//! only once it is the one running: before that, the request waits with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use strata_net::lock;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::proto;

/// Where a client's queries run now.
#[derive(Clone, Default)]
pub enum Target {
    /// Nowhere.
    #[default]
    None,
    /// On a server connection the client holds: the server and its backend's key.
    Held(SocketAddr, (u32, u32)),
    /// On a shared connection, where it may wait behind other clients' queries.
    Queued(Arc<Turn>),
}

/// A query's turn on a shared connection.
#[derive(Default)]
pub struct Turn(Mutex<TurnState>);

#[derive(Default)]
enum TurnState {
    /// Behind other queries.
    #[default]
    Waiting,
    /// Behind other queries, and a cancel request came for it.
    Wanted,
    /// Running on this server's backend.
    Running(SocketAddr, (u32, u32)),
    /// Answered.
    Over,
}

impl Turn {
    /// The query is the one the server runs now, on `backend` at `addr`; a cancel request that
    /// came while it waited goes now.
    pub fn starts(&self, addr: SocketAddr, backend: (u32, u32)) {
        let wanted = {
            let mut state = lock(&self.0);
            let wanted = matches!(*state, TurnState::Wanted);
            *state = TurnState::Running(addr, backend);
            wanted
        };
        if wanted {
            tokio::spawn(send(addr, backend));
        }
    }

    /// The query is answered: a cancel request for it now has nothing to cancel.
    pub fn ends(&self) {
        *lock(&self.0) = TurnState::Over;
    }
}

/// A client's cancel key.
pub struct CancelKey {
    /// What the client was told is its backend process id.
    pub pid: u32,
    /// Its secret.
    pub secret: u32,
    target: Arc<Mutex<Target>>,
}

/// Every logged-in client's key and where its queries run.
type Keys = HashMap<(u32, u32), Arc<Mutex<Target>>>;

fn map() -> MutexGuard<'static, Keys> {
    static MAP: OnceLock<Mutex<Keys>> = OnceLock::new();
    lock(MAP.get_or_init(Default::default))
}

/// A new, unique key for a client.
pub fn register() -> CancelKey {
    let target = Arc::new(Mutex::new(Target::None));
    let mut m = map();
    loop {
        let r = crate::auth::random::<8>();
        let pid = u32::from_be_bytes([r[0], r[1], r[2], r[3]]) | 1;
        let secret = u32::from_be_bytes([r[4], r[5], r[6], r[7]]);
        if let std::collections::hash_map::Entry::Vacant(e) = m.entry((pid, secret)) {
            e.insert(target.clone());
            return CancelKey {
                pid,
                secret,
                target,
            };
        }
    }
}

/// Points the key at the server connection the client holds now (or at none).
pub fn point(key: &CancelKey, target: Target) {
    *lock(&key.target) = target;
}

/// Forgets a key (its client is gone).
pub fn unregister(key: &CancelKey) {
    map().remove(&(key.pid, key.secret));
}

/// Passes a cancel request on to the server connection its key points at, if any.
pub async fn forward(pid: u32, secret: u32) {
    let target = map()
        .get(&(pid, secret))
        .map(|t| lock(t).clone())
        .unwrap_or_default();
    let (addr, backend) = match target {
        Target::Held(addr, backend) => (addr, backend),
        Target::Queued(turn) => {
            let mut state = lock(&turn.0);
            match *state {
                TurnState::Running(addr, backend) => (addr, backend),
                TurnState::Waiting => {
                    tracing::debug!(
                        "cancel request for a query waiting its turn: sent when it runs"
                    );
                    *state = TurnState::Wanted;
                    return;
                }
                TurnState::Wanted | TurnState::Over => return,
            }
        }
        Target::None => {
            tracing::debug!("cancel request for no running query");
            return;
        }
    };
    send(addr, backend).await;
}

/// Sends a cancel request for `backend`'s query to `addr`.
async fn send(addr: SocketAddr, (server_pid, server_secret): (u32, u32)) {
    match TcpStream::connect(addr).await {
        Ok(mut s) => {
            let _ = s
                .write_all(&proto::cancel_packet(server_pid, server_secret))
                .await;
            tracing::info!(server = %addr, "cancel request passed on");
        }
        Err(e) => tracing::warn!(server = %addr, "cancel request not passed on: {e}"),
    }
}
