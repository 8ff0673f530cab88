//! Routing Redis commands: to the server of their key, whole to the one server all their keys
//! share, split by server and merged, to every server, or answered by the proxy itself.

use bytes::{Bytes, BytesMut};

use crate::answer::{error, Answer, Combine, Merge};
use crate::command::{self, FanOut, Local, Route, Split, Transaction};
use crate::dedicated::{Dedicated, Own, Then};
use crate::pool::Pool;
use crate::resp::{self, Command};
use crate::CacheService;

/// What the proxy says in HELLO and INFO: the Redis version whose commands it routes.
const REDIS_VERSION: &str = "7.0.0";

/// A Redis client's state between commands.
pub(crate) struct Session {
    pub(crate) authenticated: bool,
    pub(crate) name: Option<Box<[u8]>>,
    pub(crate) id: u64,
    /// Commands queued since MULTI.
    pub(crate) tx: Option<Box<Queued>>,
    /// The client's own server connection, once blocking commands or transactions used one.
    pub(crate) dedicated: Option<Box<Dedicated>>,
    /// The connection that held this client's WATCH was lost: the next EXEC answers as a
    /// transaction whose watched keys changed.
    pub(crate) watch_lost: bool,
    /// The client said HELLO 3: its commands go on RESP3 connections, whose replies it gets
    /// as they are.
    pub(crate) resp3: bool,
}

impl Session {
    /// A new client's, authenticated when the pool has no password.
    pub(crate) fn new(authenticated: bool, id: u64) -> Session {
        Session {
            authenticated,
            name: None,
            id,
            tx: None,
            dedicated: None,
            watch_lost: false,
            resp3: false,
        }
    }
}

/// A transaction being queued: its commands, the one server they all live on, and whether
/// one was refused (EXEC then aborts, as in Redis).
pub(crate) struct Queued {
    frames: Vec<Bytes>,
    /// The bytes of `frames`, which the pool's `max_bulk_size` bounds.
    bytes: usize,
    server: Option<usize>,
    failed: bool,
    /// Keys moved by the last reload that a queued write keeps part of (INCR, HSET, ...):
    /// brought to their new server before EXEC sends the transaction, as outside one.
    moved: Vec<Bytes>,
}

/// What became of a command.
pub(crate) enum Dispatched {
    /// Its answer, now or owed.
    Answer(Answer),
    /// Its answer, then the connection closes (QUIT).
    Quit(Answer),
    /// It runs on the client's own connection, in turn.
    Own(Own),
    /// The client subscribes: subscribed mode from here.
    Subscribe(Command),
    /// A write that keeps part of a key that may still be on its server from before the last
    /// reload (INCR, HSET, APPEND, ...): the key is copied to its new server first, and the
    /// command routed then (with [`dispatch_copied`]); the client's later commands wait.
    CopyFirst(crate::migrate::Copying, Command),
}

/// Routes one command.
pub(crate) fn dispatch(
    svc: &CacheService,
    pool: &Pool,
    session: &mut Session,
    cmd: Command,
) -> Dispatched {
    route_command(svc, pool, session, cmd, false)
}

/// Routes a command whose moved keys [`Dispatched::CopyFirst`] has copied.
pub(crate) fn dispatch_copied(
    svc: &CacheService,
    pool: &Pool,
    session: &mut Session,
    cmd: Command,
) -> Dispatched {
    route_command(svc, pool, session, cmd, true)
}

/// Commands that write a key whole (or delete it): its old copy is deleted, not copied.
const OVERWRITES: &[&str] = &["del", "mset", "psetex", "set", "setex", "unlink"];
/// Commands that delete their keys.
const DELETES: &[&str] = &["del", "getdel", "unlink"];

fn route_command(
    svc: &CacheService,
    pool: &Pool,
    session: &mut Session,
    cmd: Command,
    copied: bool,
) -> Dispatched {
    let mut upper = [0u8; 24];
    let name = cmd.name(&mut upper);
    let spec = command::lookup(name);
    let refused = match spec {
        None => Some(unknown_command(&cmd)),
        Some(spec) if !spec.arity_ok(cmd.len()) => Some(error(&format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        ))),
        Some(_) => None,
    };
    if let Some(refused) = refused {
        if let Some(tx) = &mut session.tx {
            tx.failed = true;
        }
        return Dispatched::Answer(refused);
    }
    let Some(spec) = spec else {
        unreachable!("refused above")
    };
    if !session.authenticated
        && !matches!(
            spec.route,
            Route::Local(Local::Auth | Local::Hello | Local::Quit)
        )
    {
        return Dispatched::Answer(error("NOAUTH Authentication required."));
    }
    if session.tx.is_some()
        && !matches!(
            spec.route,
            Route::Transaction(_) | Route::Local(Local::Quit)
        )
    {
        return Dispatched::Answer(queue(pool, session, spec, &cmd));
    }
    let v3 = session.resp3;
    if let (Some(cluster), false) = (
        &pool.cluster,
        matches!(
            spec.route,
            Route::Local(_) | Route::Unsupported(_) | Route::Unsubscribe
        ),
    ) {
        if let Route::Transaction(t) = spec.route {
            return transaction(pool, session, t, spec, &cmd, copied);
        }
        // publish/subscribe is broadcast across a cluster: any node serves a subscriber
        if spec.route == Route::Subscribe {
            return Dispatched::Subscribe(cmd);
        }
        if let Route::Blocking(_) = spec.route {
            return match crate::redis_cluster::node_of(cluster, spec, &cmd) {
                Ok(addr) => Dispatched::Own(Own {
                    server: 0,
                    at: Some(addr),
                    frames: vec![cmd.to_frame()],
                    blocking: true,
                    then: Then::Nothing,
                }),
                Err(refused) => Dispatched::Answer(refused),
            };
        }
        let read_from = pool.config.read_from;
        return Dispatched::Answer(crate::redis_cluster::route(
            cluster, spec, &cmd, v3, read_from,
        ));
    }
    // a write that keeps part of a moved key (INCR, HSET, APPEND, EXPIRE, a blocking pop...)
    // works on the key's value: it is brought to the new server before the write, or the
    // write would start from nothing there
    if !copied
        && pool.old.is_some()
        && !spec.readonly()
        && !OVERWRITES.contains(&spec.name)
        && matches!(
            spec.route,
            Route::Keys { .. } | Route::NumKeys { .. } | Route::Blocking(_)
        )
    {
        let args: Vec<&[u8]> = (0..cmd.len()).map(|i| cmd.arg(i)).collect();
        let keys: Vec<&[u8]> = command::key_positions(&spec.route, &args)
            .unwrap_or_default()
            .into_iter()
            .map(|k| cmd.arg(k))
            .collect();
        if let Some(copying) = crate::migrate::copy_moved(pool, &keys) {
            return Dispatched::CopyFirst(copying, cmd);
        }
    }
    let answer = match spec.route {
        Route::Local(local) => {
            let (answer, quit) = local_command(svc, pool, session, local, &cmd);
            return if quit {
                Dispatched::Quit(answer)
            } else {
                Dispatched::Answer(answer)
            };
        }
        Route::Unsupported(why) => error(&format!(
            "ERR strata: '{}' is not supported by the proxy: {why}",
            spec.name
        )),
        Route::Keys { .. } | Route::NumKeys { .. } => same_shard(pool, spec, &cmd, v3),
        Route::Split(split) => split_by_shard(pool, split, &cmd, v3),
        Route::FanOut(fan) => fan_out(pool, fan, &cmd, v3),
        Route::Blocking(_) => match one_server(pool, spec, &cmd) {
            Ok(server) => {
                return Dispatched::Own(Own {
                    server,
                    frames: vec![cmd.to_frame()],
                    blocking: true,
                    at: None,
                    then: Then::Nothing,
                })
            }
            Err(refused) => refused,
        },
        Route::Transaction(t) => return transaction(pool, session, t, spec, &cmd, copied),
        Route::Publish => same_shard(pool, spec, &cmd, v3),
        Route::Subscribe => return Dispatched::Subscribe(cmd),
        Route::Unsubscribe => Answer::Ready(crate::pubsub::unsubscribed_reply(&cmd, v3)),
    };
    Dispatched::Answer(answer)
}

/// The one server every key of `cmd` lives on, or the answer that refuses it.
fn one_server(pool: &Pool, spec: &command::Spec, cmd: &Command) -> Result<usize, Answer> {
    route_keys(pool, spec, cmd, true)
}

/// [`one_server`]; a write deletes its keys' old copies (read-through) only when `forget`,
/// else the caller does once it has copied them.
fn route_keys(
    pool: &Pool,
    spec: &command::Spec,
    cmd: &Command,
    forget: bool,
) -> Result<usize, Answer> {
    // a channel named like a key is not that key
    let forget = forget && spec.route != Route::Publish;
    let deletes = DELETES.contains(&spec.name);
    let forget_old = |key: &[u8]| {
        if forget {
            crate::migrate::forget_old(pool, key, deletes);
        }
    };
    // with a cluster backend, what a transaction keeps together is a slot
    if pool.cluster.is_some() {
        return crate::redis_cluster::one_slot(spec, cmd).map(usize::from);
    }
    // most commands have one key, the first argument: no lists to build for them
    if spec.route
        == (Route::Keys {
            first: 1,
            last: 1,
            step: 1,
        })
    {
        let route = if spec.readonly() {
            pool.server_for(cmd.arg(1))
        } else {
            forget_old(cmd.arg(1));
            pool.server_for_write(cmd.arg(1))
        };
        return route.map_err(unavailable);
    }
    let args: Vec<&[u8]> = (0..cmd.len()).map(|i| cmd.arg(i)).collect();
    let Some(keys) = command::key_positions(&spec.route, &args) else {
        return Err(error(&format!(
            "ERR strata: '{}' needs at least one key, and a key count that matches its arguments",
            spec.name
        )));
    };
    let mut target = None;
    for k in keys {
        let server = if spec.readonly() {
            pool.server_for(cmd.arg(k))
        } else {
            forget_old(cmd.arg(k));
            pool.server_for_write(cmd.arg(k))
        };
        match server {
            Ok(s) if target.is_none() || target == Some(s) => target = Some(s),
            Ok(_) => return Err(crossslot(pool)),
            Err(e) => return Err(unavailable(e)),
        }
    }
    target.ok_or_else(|| {
        error(&format!(
            "ERR strata: '{}' has no key to choose a server by",
            spec.name
        ))
    })
}

/// A command inside MULTI: checked and queued (`+QUEUED`), or refused, which makes EXEC abort.
fn queue(pool: &Pool, session: &mut Session, spec: &command::Spec, cmd: &Command) -> Answer {
    let Some(tx) = session.tx.as_mut() else {
        return error("ERR strata: no transaction");
    };
    // a write that keeps part of a moved key is copied first, at EXEC: its old copy stays
    // until then
    let partial = pool.old.is_some()
        && !spec.readonly()
        && !OVERWRITES.contains(&spec.name)
        && matches!(spec.route, Route::Keys { .. } | Route::NumKeys { .. });
    let server = match spec.route {
        Route::Keys { .. } | Route::NumKeys { .. } | Route::Split(_) | Route::Publish => {
            route_keys(pool, spec, cmd, !partial).map(Some)
        }
        Route::Local(Local::Ping | Local::Echo) => Ok(None),
        _ => Err(error(&format!(
            "ERR strata: '{}' can't be part of a transaction through the proxy",
            spec.name
        ))),
    };
    match server {
        Ok(Some(s)) if tx.server.is_some_and(|t| t != s) => {
            tx.failed = true;
            crossslot(pool)
        }
        // a refused command aborts EXEC: what comes after it is answered but not kept
        Ok(_) if tx.failed => Answer::Ready(Bytes::from_static(b"+QUEUED\r\n")),
        Ok(server) => {
            let frame = cmd.to_frame();
            tx.bytes = tx.bytes.saturating_add(frame.len());
            if tx.bytes as u64 > pool.config.max_bulk_size {
                // the proxy holds a transaction until EXEC: one client can't make it hold
                // more than one command may be
                tx.failed = true;
                tx.frames = Vec::new();
                tx.moved = Vec::new();
                return error(&format!(
                    "ERR strata: the transaction's queued commands are over max_bulk_size ({} bytes); EXEC will abort",
                    pool.config.max_bulk_size
                ));
            }
            tx.server = tx.server.or(server);
            tx.frames.push(frame);
            if partial {
                let args: Vec<&[u8]> = (0..cmd.len()).map(|i| cmd.arg(i)).collect();
                for k in command::key_positions(&spec.route, &args).unwrap_or_default() {
                    let key = cmd.arg(k);
                    if crate::migrate::has_moved(pool, key) && !tx.moved.iter().any(|m| m == key) {
                        tx.moved.push(Bytes::copy_from_slice(key));
                    }
                }
            }
            Answer::Ready(Bytes::from_static(b"+QUEUED\r\n"))
        }
        Err(refused) => {
            tx.failed = true;
            refused
        }
    }
}

/// Where commands for the client's own connection go: server `i` of the pool, or with a
/// cluster backend, the node of slot `i` (`None`: a node is not known for it yet).
fn own_at(pool: &Pool, i: usize) -> Option<(usize, Option<std::net::SocketAddr>)> {
    match &pool.cluster {
        None => Some((i, None)),
        Some(cluster) => {
            let node = u16::try_from(i).ok().and_then(|slot| cluster.node(slot));
            let node = node.or_else(|| cluster.nodes().into_iter().next())?;
            Some((0, Some(node.live.target.get().0)))
        }
    }
}

fn multibulk(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    resp::encode_command(&mut out, args.iter().copied());
    out.freeze()
}

/// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
fn transaction(
    pool: &Pool,
    session: &mut Session,
    t: Transaction,
    spec: &command::Spec,
    cmd: &Command,
    copied: bool,
) -> Dispatched {
    // EXEC of writes that keep part of moved keys: the keys come over first, then EXEC is
    // routed again
    if let (Transaction::Exec, false, Some(tx)) = (t, copied, &session.tx) {
        if !tx.failed {
            let keys: Vec<&[u8]> = tx.moved.iter().map(|k| &k[..]).collect();
            if let Some(copying) = crate::migrate::copy_moved(pool, &keys) {
                return Dispatched::CopyFirst(copying, cmd.clone());
            }
        }
    }
    // WATCH of moved keys: they come over first, so that no copy made later (at EXEC) changes
    // a watched key and aborts the transaction
    if let (Transaction::Watch, false, true) = (t, copied, pool.old.is_some()) {
        let keys: Vec<&[u8]> = (1..cmd.len()).map(|i| cmd.arg(i)).collect();
        if let Some(copying) = crate::migrate::copy_moved(pool, &keys) {
            return Dispatched::CopyFirst(copying, cmd.clone());
        }
    }
    // the server of the client's own connection, if it has one (by address with a cluster)
    let watched: Option<(usize, Option<std::net::SocketAddr>)> = session
        .dedicated
        .as_ref()
        .and_then(|d| match &pool.cluster {
            Some(_) => Some((0, Some(d.addr()))),
            None => d.server_index(pool).map(|i| (i, None)),
        });
    let answer = match t {
        Transaction::Multi if session.tx.is_some() => error("ERR MULTI calls can not be nested"),
        Transaction::Multi => {
            session.tx = Some(Box::new(Queued {
                frames: Vec::new(),
                bytes: 0,
                server: None,
                failed: false,
                moved: Vec::new(),
            }));
            Answer::Ready(Bytes::from_static(b"+OK\r\n"))
        }
        Transaction::Exec => match session.tx.take() {
            None => error("ERR EXEC without MULTI"),
            Some(tx) if tx.failed => match watched {
                // Redis drops the watches at any EXEC, an aborted one too
                Some((server, at)) => {
                    return Dispatched::Own(Own {
                        server,
                        frames: vec![multibulk(&[b"UNWATCH"])],
                        blocking: false,
                        at,
                        then: Then::Abort,
                    })
                }
                None => error(crate::dedicated::EXECABORT),
            },
            Some(_) if std::mem::take(&mut session.watch_lost) => {
                // the watch is gone with its connection: abort, as a changed key would
                session.dedicated = None;
                Answer::Ready(Bytes::from_static(if session.resp3 {
                    b"_\r\n"
                } else {
                    b"*-1\r\n"
                }))
            }
            Some(tx) => {
                let target = match tx.server {
                    Some(i) => own_at(pool, i),
                    None => watched.or_else(|| {
                        let now = strata_net::now_ms();
                        (0..pool.servers.len())
                            .find(|&i| pool.group.backends[i].is_available_at(now))
                            .and_then(|i| own_at(pool, i))
                    }),
                };
                let Some((server, at)) = target else {
                    return Dispatched::Answer(error(
                        "ERR strata: no server of the pool is available",
                    ));
                };
                // copied (or nothing to copy): their old copies go now, as for any write
                for key in &tx.moved {
                    crate::migrate::forget_old(pool, key, false);
                }
                let mut frames = Vec::with_capacity(tx.frames.len() + 2);
                frames.push(multibulk(&[b"MULTI"]));
                frames.extend(tx.frames);
                frames.push(multibulk(&[b"EXEC"]));
                return Dispatched::Own(Own {
                    server,
                    frames,
                    blocking: false,
                    at,
                    then: Then::Unwatch,
                });
            }
        },
        Transaction::Discard => match session.tx.take() {
            None => error("ERR DISCARD without MULTI"),
            Some(_) => match watched {
                Some((server, at)) => {
                    return Dispatched::Own(Own {
                        server,
                        frames: vec![multibulk(&[b"UNWATCH"])],
                        blocking: false,
                        at,
                        then: Then::Discard,
                    })
                }
                None => Answer::Ready(Bytes::from_static(b"+OK\r\n")),
            },
        },
        Transaction::Watch if session.tx.is_some() => {
            error("ERR WATCH inside MULTI is not allowed")
        }
        // WATCH reads nothing and writes nothing: the keys' old copies stay
        Transaction::Watch => match route_keys(pool, spec, cmd, false).map(|i| own_at(pool, i)) {
            Ok(Some((server, at))) => {
                return Dispatched::Own(Own {
                    server,
                    frames: vec![cmd.to_frame()],
                    blocking: false,
                    at,
                    then: Then::Watch,
                })
            }
            Ok(None) => error("ERR strata: no node of the cluster is known for these keys yet"),
            Err(refused) => refused,
        },
        Transaction::Unwatch => match watched {
            Some((server, at)) => {
                return Dispatched::Own(Own {
                    server,
                    frames: vec![cmd.to_frame()],
                    blocking: false,
                    at,
                    then: Then::Unwatch,
                })
            }
            None => {
                session.watch_lost = false;
                Answer::Ready(Bytes::from_static(b"+OK\r\n"))
            }
        },
    };
    Dispatched::Answer(answer)
}

fn unknown_command(cmd: &Command) -> Answer {
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(cmd.arg(0))
    );
    for i in 1..cmd.len().min(4) {
        text.push_str(&format!("'{}' ", String::from_utf8_lossy(cmd.arg(i))));
    }
    error(&text)
}

fn unavailable(e: crate::pool::Unavailable) -> Answer {
    error(&format!("ERR strata: {e}"))
}

/// A command whose keys must all live on one server: sent there whole, or refused.
fn same_shard(pool: &Pool, spec: &command::Spec, cmd: &Command, v3: bool) -> Answer {
    // a read of one key that may still be on its server from before the last reload
    let one_key = spec.route
        == (Route::Keys {
            first: 1,
            last: 1,
            step: 1,
        });
    if spec.readonly() && one_key && pool.old.is_some() {
        if let Some(answer) = crate::migrate::read(pool, cmd.arg(1), cmd.to_frame(), v3) {
            return answer;
        }
    }
    match one_server(pool, spec, cmd) {
        Ok(s) if spec.readonly() => {
            Answer::One(pool.servers[s].send_read(cmd.to_frame(), v3, pool.config.read_from))
        }
        Ok(s) => Answer::One(pool.servers[s].send(cmd.to_frame(), v3)),
        Err(refused) => refused,
    }
}

fn crossslot(pool: &Pool) -> Answer {
    let hint = match pool.config.hash_tag {
        Some([open, close]) => format!(
            " (keys that share a hash tag, such as {}user1{}.a and {}user1{}.b, live together)",
            open as char, close as char, open as char, close as char
        ),
        None => " (set hash_tag on the pool to keep related keys together)".into(),
    };
    error(&format!(
        "CROSSSLOT Keys in request don't hash to the same server{hint}"
    ))
}

/// MGET, MSET, DEL, UNLINK, EXISTS, TOUCH: one command per server holding some of the keys,
/// the replies combined in the order of the keys.
fn split_by_shard(pool: &Pool, split: Split, cmd: &Command, v3: bool) -> Answer {
    if split == Split::Mget {
        if let Some(answer) = crate::migrate::mget(pool, cmd, v3) {
            return answer;
        }
    }
    let step = if split == Split::Mset { 2 } else { 1 };
    if split == Split::Mset && cmd.len().is_multiple_of(2) {
        return error("ERR wrong number of arguments for 'mset' command");
    }
    // (server, positions of its keys)
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for k in (1..cmd.len()).step_by(step) {
        let writes = matches!(split, Split::Mset)
            || cmd.arg(0).eq_ignore_ascii_case(b"DEL")
            || cmd.arg(0).eq_ignore_ascii_case(b"UNLINK");
        let server = match if writes {
            crate::migrate::forget_old(pool, cmd.arg(k), !matches!(split, Split::Mset));
            pool.server_for_write(cmd.arg(k))
        } else {
            pool.server_for(cmd.arg(k))
        } {
            Ok(s) => s,
            Err(e) => return unavailable(e),
        };
        match groups.iter_mut().find(|(s, _)| *s == server) {
            Some((_, positions)) => positions.push(k),
            None => groups.push((server, vec![k])),
        }
    }
    let read = |s: usize, frame: Bytes| match split {
        Split::Mget => pool.servers[s].send_read(frame, v3, pool.config.read_from),
        _ => pool.servers[s].send(frame, v3),
    };
    if let [(server, _)] = groups.as_slice() {
        return Answer::One(read(*server, cmd.to_frame()));
    }
    let keys = groups.iter().map(|(_, p)| p.len()).sum();
    let parts = groups
        .into_iter()
        .map(|(server, positions)| {
            let frame = resp::sub_command(cmd, &positions, step);
            (read(server, frame), positions)
        })
        .collect();
    let how = match split {
        Split::Mget => Combine::Values,
        Split::Mset => Combine::Ok,
        Split::Sum => Combine::Sum,
    };
    Answer::Merge(Box::new(Merge { how, parts, keys }))
}

/// DBSIZE and KEYS: every server, combined.
fn fan_out(pool: &Pool, fan: FanOut, cmd: &Command, v3: bool) -> Answer {
    let now = strata_net::now_ms();
    if let Some(out) = pool.group.backends.iter().find(|b| !b.is_available_at(now)) {
        // a partial count or key list would look complete
        return error(&format!(
            "ERR strata: a server of the pool is out ({}), so the answer would be incomplete",
            out.state().as_str()
        ));
    }
    if fan == FanOut::Scan {
        return scan(pool, cmd, v3);
    }
    let frame = cmd.to_frame();
    let parts = pool
        .servers
        .iter()
        .map(|s| (s.send(frame.clone(), v3), Vec::new()))
        .collect();
    let how = match fan {
        FanOut::Dbsize => Combine::Sum,
        FanOut::Keys => Combine::Concat,
        FanOut::Scan => unreachable!("scanned above"),
    };
    Answer::Merge(Box::new(Merge {
        how,
        parts,
        keys: 0,
    }))
}

/// SCAN over every server in turn. The client's cursor is `server cursor x servers + server`:
/// 0 starts at the first server, and a server's end moves on to the next one's start (a cursor
/// that is not 0, as Redis says "more to come"), until the last server's end answers 0.
fn scan(pool: &Pool, cmd: &Command, v3: bool) -> Answer {
    let (frame, server) = match scan_frame(cmd, pool.servers.len()) {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let rx = pool.servers[server].send(frame, v3);
    Answer::Merge(Box::new(Merge {
        how: Combine::Scan {
            server,
            servers: pool.servers.len(),
        },
        parts: vec![(rx, Vec::new())],
        keys: 0,
    }))
}

/// The SCAN to send for the client's cursor over `servers` servers, and which server it goes
/// to (see [`scan`]).
pub(crate) fn scan_frame(cmd: &Command, servers: usize) -> Result<(Bytes, usize), Answer> {
    let n = servers as u128;
    let Some(cursor) = std::str::from_utf8(cmd.arg(1))
        .ok()
        .and_then(|c| c.parse::<u128>().ok())
        .filter(|c| n > 0 && *c % n < n)
    else {
        return Err(error("ERR invalid cursor"));
    };
    let (server_cursor, server) = (cursor / n, (cursor % n) as usize);
    if server_cursor > u128::from(u64::MAX) {
        return Err(error("ERR invalid cursor"));
    }
    let mut frame = BytesMut::new();
    resp::array_header(&mut frame, cmd.len());
    resp::bulk(&mut frame, Some(cmd.arg(0)));
    resp::bulk(&mut frame, Some(server_cursor.to_string().as_bytes()));
    for i in 2..cmd.len() {
        resp::bulk(&mut frame, Some(cmd.arg(i)));
    }
    Ok((frame.freeze(), server))
}

/// Commands the proxy answers itself.
fn local_command(
    svc: &CacheService,
    pool: &Pool,
    session: &mut Session,
    local: Local,
    cmd: &Command,
) -> (Answer, bool) {
    let mut out = BytesMut::new();
    let arg_upper = |i: usize| cmd.arg(i).to_ascii_uppercase();
    match local {
        Local::Ping if cmd.len() == 1 => resp::simple(&mut out, "PONG"),
        Local::Ping if cmd.len() == 2 => resp::bulk(&mut out, Some(cmd.arg(1))),
        Local::Ping => {
            return (
                error("ERR wrong number of arguments for 'ping' command"),
                false,
            )
        }
        Local::Echo => resp::bulk(&mut out, Some(cmd.arg(1))),
        Local::Quit => {
            resp::simple(&mut out, "OK");
            return (Answer::Ready(out.freeze()), true);
        }
        Local::Select if cmd.arg(1) == b"0" => resp::simple(&mut out, "OK"),
        Local::Select => {
            return (
                error("ERR strata: only database 0 is served through the proxy"),
                false,
            )
        }
        Local::Auth => {
            let (user, password) = match cmd.len() {
                2 => (&b"default"[..], cmd.arg(1)),
                3 => (cmd.arg(1), cmd.arg(2)),
                _ => return (error("ERR syntax error"), false),
            };
            return (authenticate(pool, session, user, password), false);
        }
        Local::Hello => return (hello(pool, session, cmd), false),
        Local::Command => return (command_info(cmd), false),
        Local::Client => {
            let sub = arg_upper(1);
            match sub.as_slice() {
                b"SETNAME" if cmd.len() == 3 => {
                    session.name = Some(cmd.arg(2).into());
                    resp::simple(&mut out, "OK");
                }
                b"SETINFO" if cmd.len() == 4 => resp::simple(&mut out, "OK"),
                b"GETNAME" if session.resp3 && session.name.is_none() => {
                    out.extend_from_slice(b"_\r\n")
                }
                b"GETNAME" => resp::bulk(&mut out, session.name.as_deref()),
                b"ID" => resp::integer(&mut out, session.id as i64),
                _ => {
                    return (
                        error(&format!(
                            "ERR strata: 'CLIENT {}' is not supported by the proxy",
                            String::from_utf8_lossy(&sub)
                        )),
                        false,
                    )
                }
            }
        }
        Local::Info => {
            let text = format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nstrata_version:{}\r\nstrata_pool:{}\r\nservers:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                svc.name,
                pool.servers.len()
            );
            resp::bulk(&mut out, Some(text.as_bytes()));
        }
    }
    (Answer::Ready(out.freeze()), false)
}

fn authenticate(pool: &Pool, session: &mut Session, user: &[u8], password: &[u8]) -> Answer {
    let Some(expected) = &pool.config.password else {
        return error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
    };
    if user == b"default" && constant_time_eq(password, expected.as_bytes()) {
        session.authenticated = true;
        Answer::Ready(Bytes::from_static(b"+OK\r\n"))
    } else {
        error("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]: 2 and 3 are spoken; any other version
/// gets `-NOPROTO`.
fn hello(pool: &Pool, session: &mut Session, cmd: &Command) -> Answer {
    let mut i = 1;
    let mut resp3 = session.resp3;
    if cmd.len() > 1 {
        match cmd.arg(1) {
            b"2" => resp3 = false,
            b"3" => resp3 = true,
            v if v.iter().all(u8::is_ascii_digit) && !v.is_empty() => {
                return error("NOPROTO sorry, this protocol version is not supported.")
            }
            _ => return error("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    while i < cmd.len() {
        let opt = cmd.arg(i).to_ascii_uppercase();
        match opt.as_slice() {
            b"AUTH" if i + 2 < cmd.len() => {
                if let Answer::Ready(e) =
                    authenticate(pool, session, cmd.arg(i + 1), cmd.arg(i + 2))
                {
                    if e.starts_with(b"-") {
                        return Answer::Ready(e);
                    }
                }
                i += 3;
            }
            b"SETNAME" if i + 1 < cmd.len() => {
                session.name = Some(cmd.arg(i + 1).into());
                i += 2;
            }
            _ => {
                return error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(cmd.arg(i))
                ))
            }
        }
    }
    if !session.authenticated {
        return error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    session.resp3 = resp3;
    // what Redis 7 answers, and who answers
    let mut out = BytesMut::new();
    if resp3 {
        out.extend_from_slice(b"%8\r\n");
    } else {
        resp::array_header(&mut out, 16);
    }
    for (k, v) in [("server", "redis"), ("version", REDIS_VERSION)] {
        resp::bulk(&mut out, Some(k.as_bytes()));
        resp::bulk(&mut out, Some(v.as_bytes()));
    }
    resp::bulk(&mut out, Some(b"proto"));
    resp::integer(&mut out, if resp3 { 3 } else { 2 });
    resp::bulk(&mut out, Some(b"id"));
    resp::integer(&mut out, session.id as i64);
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        resp::bulk(&mut out, Some(k.as_bytes()));
        resp::bulk(&mut out, Some(v.as_bytes()));
    }
    resp::bulk(&mut out, Some(b"modules"));
    resp::array_header(&mut out, 0);
    resp::bulk(&mut out, Some(b"proxy"));
    resp::bulk(&mut out, Some(b"strata"));
    Answer::Ready(out.freeze())
}

/// COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS: what the proxy routes.
fn command_info(cmd: &Command) -> Answer {
    let routed = || {
        command::COMMANDS
            .iter()
            .filter(|s| !matches!(s.route, Route::Unsupported(_)))
    };
    let mut out = BytesMut::new();
    let sub = if cmd.len() > 1 {
        cmd.arg(1).to_ascii_uppercase()
    } else {
        Vec::new()
    };
    match sub.as_slice() {
        b"" => {
            let all: Vec<_> = routed().collect();
            resp::array_header(&mut out, all.len());
            for spec in all {
                spec_entry(&mut out, spec);
            }
        }
        b"COUNT" => resp::integer(&mut out, routed().count() as i64),
        b"DOCS" => resp::array_header(&mut out, 0),
        b"INFO" => {
            resp::array_header(&mut out, cmd.len() - 2);
            for i in 2..cmd.len() {
                let name = cmd.arg(i).to_ascii_uppercase();
                match command::lookup(&name).filter(|s| !matches!(s.route, Route::Unsupported(_))) {
                    Some(spec) => spec_entry(&mut out, spec),
                    None => out.extend_from_slice(b"*-1\r\n"),
                }
            }
        }
        _ => {
            return error(&format!(
                "ERR strata: 'COMMAND {}' is not supported by the proxy",
                String::from_utf8_lossy(&sub)
            ))
        }
    }
    Answer::Ready(out.freeze())
}

/// One command's entry as COMMAND gives it: name, arity, flags, first key, last key, step.
fn spec_entry(out: &mut BytesMut, spec: &command::Spec) {
    let (first, last, step) = match spec.route {
        Route::Keys { first, last, step } => (first as i64, last as i64, step as i64),
        Route::Split(Split::Mset) => (1, -1, 2),
        Route::Split(_) => (1, -1, 1),
        _ => (0, 0, 0),
    };
    resp::array_header(out, 6);
    resp::bulk(out, Some(spec.name.as_bytes()));
    resp::integer(out, spec.arity as i64);
    resp::array_header(out, 0);
    resp::integer(out, first);
    resp::integer(out, last);
    resp::integer(out, step);
}
