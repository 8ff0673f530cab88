//! Routing Redis commands over a Redis Cluster backend: by the slot of their keys, split by
//! slot where a command's keys span several, to every node for DBSIZE and KEYS.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strata_config::ReadFrom;

use crate::answer::{combine, error, Answer, Combine};
use crate::cluster::{slot, Cluster};
use crate::command::{self, FanOut, Route, Split};
use crate::resp::{self, Command};

/// The answer to `cmd` from the cluster; a read-only command is read where `read_from` says.
pub(crate) fn route(
    cluster: &Arc<Cluster>,
    spec: &command::Spec,
    cmd: &Command,
    v3: bool,
    read_from: ReadFrom,
) -> Answer {
    let read = if spec.readonly() {
        read_from
    } else {
        ReadFrom::Master
    };
    match spec.route {
        Route::Keys { .. } | Route::NumKeys { .. } | Route::Publish => match one_slot(spec, cmd) {
            Ok(s) => Answer::Later(cluster.start(s, cmd.to_frame(), v3, read)),
            Err(refused) => refused,
        },
        Route::Split(split) => by_slot(cluster, split, cmd, v3, read),
        Route::FanOut(FanOut::Scan) => scan(cluster, cmd, v3),
        Route::FanOut(fan) => every_node(cluster, fan, cmd, v3),
        _ => error(&format!(
            "ERR strata: '{}' is not supported with backend = \"cluster\" yet",
            spec.name
        )),
    }
}

/// The node that serves the one slot of all `cmd`'s keys, for a command that runs on a
/// connection of the client's own (a blocking command).
pub(crate) fn node_of(
    cluster: &Arc<Cluster>,
    spec: &command::Spec,
    cmd: &Command,
) -> Result<std::net::SocketAddr, Answer> {
    let s = one_slot(spec, cmd)?;
    match cluster.node(s) {
        Some(node) => Ok(node.live.target.get().0),
        None => {
            cluster.refresh_soon();
            Err(error(&format!(
                "ERR strata: no node of the cluster is known to serve slot {s} yet; try again"
            )))
        }
    }
}

/// The one slot all of `cmd`'s keys are in (Redis Cluster refuses a command across slots).
pub(crate) fn one_slot(spec: &command::Spec, cmd: &Command) -> Result<u16, Answer> {
    let args: Vec<&[u8]> = (0..cmd.len()).map(|i| cmd.arg(i)).collect();
    let keys = command::key_positions(&spec.route, &args).unwrap_or_default();
    let mut slots = keys.iter().map(|&k| slot(cmd.arg(k)));
    let Some(first) = slots.next() else {
        return Err(error(&format!(
            "ERR strata: '{}' has no key to choose a node by",
            spec.name
        )));
    };
    if slots.any(|s| s != first) {
        return Err(error(
            "CROSSSLOT Keys in request don't hash to the same slot",
        ));
    }
    Ok(first)
}

/// MGET, MSET, DEL, ... with keys in several slots: one command per slot, the replies merged.
fn by_slot(
    cluster: &Arc<Cluster>,
    split: Split,
    cmd: &Command,
    v3: bool,
    read: ReadFrom,
) -> Answer {
    let step = if split == Split::Mset { 2 } else { 1 };
    if split == Split::Mset && cmd.len().is_multiple_of(2) {
        return error("ERR wrong number of arguments for 'mset' command");
    }
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for k in (1..cmd.len()).step_by(step) {
        let s = slot(cmd.arg(k));
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, positions)) => positions.push(k),
            None => groups.push((s, vec![k])),
        }
    }
    if let [(s, _)] = groups.as_slice() {
        return Answer::Later(cluster.start(*s, cmd.to_frame(), v3, read));
    }
    let keys = groups.iter().map(|(_, p)| p.len()).sum();
    let parts: Vec<(u16, Bytes, Vec<usize>)> = groups
        .into_iter()
        .map(|(s, positions)| {
            let frame = resp::sub_command(cmd, &positions, step);
            (s, frame, positions)
        })
        .collect();
    let how = match split {
        Split::Mget => Combine::Values,
        Split::Mset => Combine::Ok,
        Split::Sum => Combine::Sum,
    };
    // every part goes out now, in its place in the client's pipeline
    let sent: Vec<_> = parts
        .into_iter()
        .map(|(s, frame, positions)| (cluster.start(s, frame, v3, read), positions))
        .collect();
    Answer::Later(Box::pin(async move {
        let mut replies = Vec::with_capacity(sent.len());
        for (work, positions) in sent {
            replies.push((work.await?, positions));
        }
        Ok(merged(&how, keys, &replies))
    }))
}

/// SCAN over every node in turn, as over a pool's servers (`redis::scan`): the node's index
/// in the slot map folded into the cursor. A map that changes between two calls may skip or
/// repeat keys, as Redis Cluster's own SCAN does across a resharding.
fn scan(cluster: &Arc<Cluster>, cmd: &Command, v3: bool) -> Answer {
    let nodes = cluster.nodes();
    let (frame, node) = match crate::redis::scan_frame(cmd, nodes.len()) {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let servers = nodes.len();
    let rx = nodes[node].send(frame, v3);
    Answer::Later(Box::pin(async move {
        let reply = crate::server::received(rx.await)?;
        Ok(merged(
            &Combine::Scan {
                server: node,
                servers,
            },
            0,
            &[(reply, Vec::new())],
        ))
    }))
}

/// DBSIZE and KEYS: every node, combined.
fn every_node(cluster: &Arc<Cluster>, fan: FanOut, cmd: &Command, v3: bool) -> Answer {
    let frame = cmd.to_frame();
    let nodes = cluster.nodes();
    let how = match fan {
        FanOut::Dbsize => Combine::Sum,
        _ => Combine::Concat,
    };
    Answer::Later(Box::pin(async move {
        let sent: Vec<_> = nodes.iter().map(|n| n.send(frame.clone(), v3)).collect();
        let mut replies = Vec::with_capacity(sent.len());
        for rx in sent {
            replies.push((crate::server::received(rx.await)?, Vec::new()));
        }
        Ok(merged(&how, 0, &replies))
    }))
}

fn merged(how: &Combine, keys: usize, replies: &[(Bytes, Vec<usize>)]) -> Bytes {
    let mut out = BytesMut::new();
    combine(how, keys, replies, &mut out);
    out.freeze()
}
