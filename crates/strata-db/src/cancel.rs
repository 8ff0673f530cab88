//! Cancel requests: each client gets a key of Strata's own; a cancel request with it goes,
//! on a new connection, to the server connection that client holds now, whichever worker
//! thread serves the client (PgBouncer is one thread; here the map is shared). A query
//! pipelined behind other clients' on a shared connection ([`crate::pipeline`]) is cancelled
//! only once it is the one running: before that, the request waits with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use strata_net::lock;

use crate::server::Dialer;

/// Where a client's queries run now.
#[derive(Clone, Default)]
pub enum Target {
    /// Nowhere.
    #[default]
    None,
    /// On a server connection the client holds.
    Held(CancelTo),
    /// On a shared connection, where it may wait behind other clients' queries.
    Queued(Arc<Turn>),
}

/// Where a cancel request goes: the server, its backend's key, and how the server is dialled
/// (on TLS where the query's connection is).
#[derive(Clone)]
pub struct CancelTo {
    /// The server.
    pub addr: SocketAddr,
    /// The backend's process id and secret.
    pub backend: (u32, u32),
    /// The listener's dialer.
    pub dialer: Arc<Dialer>,
    /// The `server_tls_*` settings the query's connection was made with.
    pub(crate) tls: Arc<crate::server::ServerTls>,
    /// Whether that connection is on TLS: then the cancel request must be too.
    pub on_tls: bool,
}

/// A query's turn on a shared connection.
#[derive(Default)]
pub struct Turn(Mutex<TurnState>);

#[derive(Default)]
struct TurnState {
    /// Where it runs, once it is the connection's oldest query, and the cancel requests sent
    /// to that backend.
    running: Option<(CancelTo, Sent)>,
    /// A cancel request came for it.
    asked: bool,
    /// Answered (or given up).
    over: bool,
    /// Its client did not take its answer in time: the rest of it was dropped.
    dropped: bool,
}

/// When cancel requests were sent to a backend, those no query has been found cancelled by
/// yet.
#[derive(Clone, Default)]
pub struct Sent(Arc<Mutex<std::collections::VecDeque<Instant>>>);

/// A cancel request not seen to cancel anything within this long did not (PostgreSQL ignores
/// one that reaches a backend between queries).
const LANDS_WITHIN: Duration = Duration::from_secs(1);

impl Sent {
    fn push(&self) {
        lock(&self.0).push_back(Instant::now());
    }

    /// A query was found cancelled: takes the cancel request that did it, if one was sent
    /// lately (else it was a statement timeout).
    pub fn take(&self) -> bool {
        let mut sent = lock(&self.0);
        while sent.front().is_some_and(|t| t.elapsed() > LANDS_WITHIN) {
            sent.pop_front();
        }
        sent.pop_front().is_some()
    }
}

impl Turn {
    /// The query is the one the server runs now (or next), where `to` says; a cancel
    /// request that came while it waited goes now, counted in `sent`.
    pub fn starts(&self, to: CancelTo, sent: &Sent) {
        let asked = {
            let mut state = lock(&self.0);
            state.running = Some((to.clone(), sent.clone()));
            state.asked && !state.over
        };
        if asked {
            sent.push();
            tokio::spawn(send(to));
        }
    }

    /// The query goes back to waiting (it is sent again, behind the others).
    pub fn waits(&self) {
        lock(&self.0).running = None;
    }

    /// The query is answered: a cancel request for it now has nothing to cancel.
    pub fn ends(&self) {
        lock(&self.0).over = true;
    }

    /// Whether a cancel request came for it.
    pub fn asked(&self) -> bool {
        lock(&self.0).asked
    }

    /// Its client did not take its answer in time: what is left of it is dropped.
    pub fn drop_answer(&self) {
        let mut state = lock(&self.0);
        state.dropped = true;
        state.over = true;
    }

    /// Whether its answer was dropped.
    pub fn dropped(&self) -> bool {
        lock(&self.0).dropped
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
    let to = match target {
        Target::Held(to) => to,
        Target::Queued(turn) => {
            let mut state = lock(&turn.0);
            if state.asked || state.over {
                return;
            }
            state.asked = true;
            match &state.running {
                Some((to, sent)) => {
                    sent.push();
                    to.clone()
                }
                None => {
                    tracing::debug!(
                        "cancel request for a query waiting its turn: sent when it runs"
                    );
                    return;
                }
            }
        }
        Target::None => {
            tracing::debug!("cancel request for no running query");
            return;
        }
    };
    send(to).await;
}

/// Sends a cancel request where `to` says.
async fn send(to: CancelTo) {
    match to
        .dialer
        .cancel(to.addr, to.backend, &to.tls, to.on_tls)
        .await
    {
        Ok(()) => tracing::info!(server = %to.addr, "cancel request passed on"),
        Err(e) => tracing::warn!(server = %to.addr, "cancel request not passed on: {e}"),
    }
}
