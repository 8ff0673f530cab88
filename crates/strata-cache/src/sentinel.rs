//! Following Redis Sentinel: each server of a pool is a Sentinel master name. The watch asks a
//! Sentinel where each master and its replicas are, moves a server's connections when its
//! master changes, and asks again at once when Sentinel announces `+switch-master` (and every
//! second, in case an announcement was missed). Sentinels are tried in turn; one that fails is
//! left for the next.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strata_config::Passive;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::pool::Live;
use crate::resp::{self, Value};
use crate::server::LinkSettings;

/// How often the roles are asked for when no announcement came.
const REFRESH: Duration = Duration::from_secs(1);

/// Watches `sentinels` (logging in to each with `password`, when given) for the masters named
/// in `shards` until `stop`.
pub(crate) async fn watch(
    pool: String,
    sentinels: Vec<SocketAddr>,
    password: Option<String>,
    shards: Vec<(String, Arc<Live>)>,
    settings: Arc<LinkSettings>,
    passive: Passive,
    stop: CancellationToken,
) {
    // a Sentinel speaks RESP2 and takes AUTH as a server does, with its own password
    let to_sentinel = LinkSettings {
        password,
        protocol: strata_config::CacheProtocol::Redis,
        readonly: false,
        ..(*settings).clone()
    };
    let mut turn = 0;
    loop {
        let sentinel = sentinels[turn % sentinels.len()];
        turn += 1;
        let watched = async {
            let result = follow(sentinel, &to_sentinel, &shards, &settings, &passive).await;
            if let Err(why) = result {
                tracing::warn!(%pool, %sentinel, "sentinel: {why}; trying the next one");
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = watched => {}
        }
        // all sentinels failed in a row: a pause before the next round
        if turn % sentinels.len() == 0 {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// Follows one Sentinel until it fails.
async fn follow(
    sentinel: SocketAddr,
    to_sentinel: &LinkSettings,
    shards: &[(String, Arc<Live>)],
    settings: &Arc<LinkSettings>,
    passive: &Passive,
) -> Result<(), String> {
    let mut ask = connect(sentinel, to_sentinel).await?;
    let mut announcements = connect(sentinel, to_sentinel).await?;
    let mut buf = BytesMut::new();
    announcements
        .write_all(&command(&[b"SUBSCRIBE", b"+switch-master"]))
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    loop {
        for (name, live) in shards {
            learn(&mut ask, sentinel, name, live, settings, passive).await?;
        }
        // wait for an announcement (any frame on the subscription) or the next refresh
        let announced = tokio::time::timeout(REFRESH, announcements.read_buf(&mut buf)).await;
        match announced {
            Ok(Ok(0)) => return Err("the sentinel closed the subscription".into()),
            Ok(Err(e)) => return Err(format!("subscription: {e}")),
            Ok(Ok(_)) => {
                while let Ok(Some(len)) = resp::reply_len(&buf) {
                    let frame = buf.split_to(len);
                    if frame.windows(14).any(|w| w == b"+switch-master") {
                        tracing::info!(%sentinel, "sentinel: {}", String::from_utf8_lossy(&frame).replace("\r\n", " "));
                    }
                }
            }
            Err(_) => {}
        }
    }
}

/// Asks where `name`'s master and replicas are, and moves the shard there.
async fn learn(
    ask: &mut TcpStream,
    sentinel: SocketAddr,
    name: &str,
    live: &Live,
    settings: &Arc<LinkSettings>,
    passive: &Passive,
) -> Result<(), String> {
    let master = request(
        ask,
        &[b"SENTINEL", b"get-master-addr-by-name", name.as_bytes()],
        settings,
    )
    .await?;
    let mut v = resp::Values::new(&master);
    let addr = match (v.next(), v.next(), v.next()) {
        (
            Some(Value::Array(Some(2))),
            Some(Value::Bulk(Some(ip))),
            Some(Value::Bulk(Some(port))),
        ) => parse_addr(ip, port),
        _ => None,
    };
    let Some(addr) = addr else {
        return Err(format!(
            "no master named \"{name}\" (it answered {})",
            String::from_utf8_lossy(&master).trim_end()
        ));
    };
    if live.target.set(addr) {
        live.switches.inc();
        tracing::warn!(master = %name, %addr, %sentinel, "sentinel: the master moved; writes go there now");
    }
    let replicas = request(ask, &[b"SENTINEL", b"replicas", name.as_bytes()], settings).await?;
    live.set_replicas(&healthy_replicas(&replicas), settings, passive, &[]);
    if let Ok(mut source) = live.source.lock() {
        *source = format!("sentinel {sentinel}");
    }
    Ok(())
}

/// The replicas of a `SENTINEL replicas` answer (an array of flat field/value arrays) that
/// Sentinel does not see down or disconnected.
fn healthy_replicas(reply: &[u8]) -> Vec<SocketAddr> {
    let mut v = resp::Values::new(reply);
    let Some(Value::Array(Some(n))) = v.next() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let Some(Value::Array(Some(fields))) = v.next() else {
            return out;
        };
        let (mut ip, mut port, mut flags) = (None, None, None);
        let mut read = 0;
        while read < fields {
            let (Some(Value::Bulk(Some(k))), Some(Value::Bulk(Some(val)))) = (v.next(), v.next())
            else {
                return out;
            };
            read += 2;
            match k {
                b"ip" => ip = Some(val),
                b"port" => port = Some(val),
                b"flags" => flags = Some(val),
                _ => {}
            }
        }
        let down = flags.is_some_and(|f| {
            f.split(|&b| b == b',')
                .any(|f| f == b"s_down" || f == b"o_down" || f == b"disconnected")
        });
        if let (Some(ip), Some(port), false) = (ip, port, down) {
            out.extend(parse_addr(ip, port));
        }
    }
    out
}

fn parse_addr(ip: &[u8], port: &[u8]) -> Option<SocketAddr> {
    let ip: std::net::IpAddr = std::str::from_utf8(ip).ok()?.parse().ok()?;
    let port: u16 = std::str::from_utf8(port).ok()?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// A connection to a Sentinel, logged in when it has a password.
async fn connect(sentinel: SocketAddr, to_sentinel: &LinkSettings) -> Result<TcpStream, String> {
    crate::server::open(sentinel, to_sentinel, false)
        .await
        .map_err(|e| e.to_string())
}

fn command(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    resp::encode_command(&mut out, args.iter().copied());
    out.freeze()
}

/// One command and its reply, within the pool's timeout.
async fn request(
    stream: &mut TcpStream,
    args: &[&[u8]],
    settings: &LinkSettings,
) -> Result<Bytes, String> {
    crate::server::request(stream, &command(args), 1, Some(settings.timeout))
        .await
        .map_err(|e| e.to_string())
}
