//! Config from etcd, for a fleet of nodes that must agree on one config (above all the cache
//! ring): `strata run --config etcd://HOST:PORT/KEY` reads the key and watches it. Each new
//! revision is handed to the node whole, which checks it as it checks a file and applies it or
//! refuses it; when etcd goes away the node keeps what it runs and reconnects with back-off.
//!
//! Spoken over etcd's JSON gateway (`/v3/kv/range` and `/v3/watch`, HTTP/1.1, etcd 3.4 and
//! later), so no gRPC stack is needed for two calls. A watch that goes quiet is not trusted: the
//! socket has TCP keepalive, etcd is asked to end the watch when its member loses the leader,
//! and the key is read again every [`RECHECK`] while the watch is open (a linearizable read,
//! which fails on a member cut off from the quorum).

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long one call to etcd may take to answer (a watch, once it answers, stays open).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before reconnecting, doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a watch must have stood before a failure starts the back-off from
/// [`FIRST_BACKOFF`] again: an etcd that accepts watches and drops them at once (its member
/// has no leader) is not retried at full speed by a whole fleet.
const STABLE: Duration = Duration::from_secs(10);
/// A watch line or range answer longer than this is not etcd's (a config of 16 MiB is far past
/// any real one).
const MAX_LINE: usize = 16 << 20;
/// How often the key is read again while a watch is open, in case the watch went quiet.
const RECHECK: Duration = Duration::from_secs(30);
/// How often a node that cannot reach etcd says so again at warn level.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Where a node's config lives in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSource {
    /// `host:port` of an etcd member's client URL.
    pub endpoint: String,
    /// The key, the URL's path with its leading slash (`etcd://h:2379/strata/prod` is
    /// `/strata/prod`).
    pub key: String,
}

/// One revision of the key: its text and the revision that last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// etcd's `mod_revision` of the key: the same on every node, so nodes can compare.
    pub revision: i64,
    /// The config, as written.
    pub text: String,
}

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No TCP connection to the endpoint.
    #[error("cannot connect to etcd at {endpoint}: {source}")]
    Connect {
        /// The endpoint tried.
        endpoint: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange broke.
    #[error("etcd at {endpoint}: {source}")]
    Http {
        /// The endpoint tried.
        endpoint: String,
        /// What broke.
        #[source]
        source: hyper::Error,
    },
    /// etcd took longer than [`CALL_TIMEOUT`] to answer.
    #[error("etcd at {0} did not answer within {CALL_TIMEOUT:?}")]
    Timeout(String),
    /// etcd answered with an HTTP error.
    #[error("etcd at {endpoint} answered {status}: {body}")]
    Status {
        /// The endpoint.
        endpoint: String,
        /// Its status code.
        status: StatusCode,
        /// The start of its answer.
        body: String,
    },
    /// etcd's answer was not what its API says.
    #[error("etcd at {endpoint} sent something unexpected: {what}")]
    Protocol {
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        what: String,
    },
    /// The watch ended (etcd restarting, compaction, a leader change).
    #[error("etcd at {0} ended the watch")]
    WatchEnded(String),
}

impl EtcdSource {
    /// Reads `etcd://HOST:PORT/KEY`; `None` when `url` is not an etcd URL at all, an error
    /// when it is one written wrong.
    pub fn parse(url: &str) -> Option<Result<EtcdSource, String>> {
        let rest = url.strip_prefix("etcd://")?;
        let Some(slash) = rest.find('/') else {
            return Some(Err(format!(
                "{url}: no key: write etcd://HOST:PORT/KEY, e.g. etcd://127.0.0.1:2379/strata/config"
            )));
        };
        let (endpoint, key) = rest.split_at(slash);
        if key.len() < 2 {
            return Some(Err(format!("{url}: the key is empty")));
        }
        let has_port = endpoint
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !has_port {
            return Some(Err(format!(
                "{url}: \"{endpoint}\" is not HOST:PORT (etcd's client port is usually 2379)"
            )));
        }
        Some(Ok(EtcdSource {
            endpoint: endpoint.to_string(),
            key: key.to_string(),
        }))
    }

    /// How the source is shown in logs, errors and `/status`.
    pub fn url(&self) -> String {
        format!("etcd://{}{}", self.endpoint, self.key)
    }

    async fn call(&self, path: &str, body: Value) -> Result<Response<Incoming>, EtcdError> {
        let endpoint = self.endpoint.clone();
        let http = |source| EtcdError::Http {
            endpoint: endpoint.clone(),
            source,
        };
        let exchange = async {
            let stream =
                TcpStream::connect(&self.endpoint)
                    .await
                    .map_err(|source| EtcdError::Connect {
                        endpoint: self.endpoint.clone(),
                        source,
                    })?;
            let _ = stream.set_nodelay(true);
            // a watch can stay silent for hours: find a peer that vanished (power, NAT, a
            // firewall dropping the flow) within about a minute
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(Duration::from_secs(30))
                .with_interval(Duration::from_secs(10))
                .with_retries(3);
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(http)?;
            tokio::spawn(conn);
            let req = Request::post(path)
                .header(hyper::header::HOST, self.endpoint.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                // the gateway's way of asking for WithRequireLeader: a member cut off from the
                // leader ends the watch instead of keeping it open and silent
                .header("grpc-metadata-hasleader", "true")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| self.protocol(format!("request: {e}")))?;
            send.send_request(req).await.map_err(http)
        };
        let resp = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| EtcdError::Timeout(self.endpoint.clone()))??;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            let body = body.map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned());
            return Err(EtcdError::Status {
                endpoint: self.endpoint.clone(),
                status,
                body: body.unwrap_or_default(),
            });
        }
        Ok(resp)
    }

    fn protocol(&self, what: String) -> EtcdError {
        EtcdError::Protocol {
            endpoint: self.endpoint.clone(),
            what,
        }
    }

    /// The key now: its revision and text (`None` when it does not exist), and the store's
    /// revision, from which a watch goes on.
    async fn get(&self) -> Result<(Option<Revision>, i64), EtcdError> {
        let resp = self
            .call(
                "/v3/kv/range",
                json!({ "key": strata_config::base64_encode(self.key.as_bytes()) }),
            )
            .await?;
        let limited = http_body_util::Limited::new(resp.into_body(), MAX_LINE);
        let body = tokio::time::timeout(CALL_TIMEOUT, limited.collect())
            .await
            .map_err(|_| EtcdError::Timeout(self.endpoint.clone()))?
            .map_err(|e| self.protocol(format!("range answer: {e}")))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| self.protocol(format!("range answer: {e}")))?;
        let store = number(&v["header"]["revision"])
            .ok_or_else(|| self.protocol("range answer without a header revision".into()))?;
        let kv = v["kvs"].as_array().and_then(|kvs| kvs.first());
        let revision = kv.map(|kv| self.revision(kv)).transpose()?;
        Ok((revision, store))
    }

    /// A key-value of etcd's answers as a [`Revision`].
    fn revision(&self, kv: &Value) -> Result<Revision, EtcdError> {
        let revision = number(&kv["mod_revision"])
            .ok_or_else(|| self.protocol("a key without mod_revision".into()))?;
        // a key written empty comes without "value"
        let value = kv["value"].as_str().unwrap_or("");
        let bytes = strata_config::base64_decode(value)
            .ok_or_else(|| self.protocol("a value that is not base64".into()))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            self.protocol(format!("revision {revision} of the key is not UTF-8 text"))
        })?;
        Ok(Revision { revision, text })
    }
}

/// etcd's JSON gateway writes 64-bit numbers as strings.
fn number(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
}

/// What [`follow`] keeps between connections.
struct Follower {
    source: EtcdSource,
    /// The newest revision handed on (applied or refused: a refused one is not offered again).
    seen: i64,
    /// The store's revision at the last read of the key: lower on a later read only when etcd
    /// itself went back (a new cluster, a restored snapshot).
    store: i64,
    tx: mpsc::Sender<Revision>,
    backoff: Duration,
    /// Since when the current watch has stood.
    watching: Option<Instant>,
    /// Since when etcd has not answered, and when that was last said at warn level.
    failing: Option<(Instant, Instant)>,
}

impl Follower {
    /// Hands `r` on when it is newer than what was seen. An older one is passed over (a watch
    /// event that a read of the key overtook), unless `went_back`: a read of the key found
    /// etcd's store itself older than before (etcd rebuilt, the config put again), and then
    /// it is taken as new, and said so. False when nobody listens.
    async fn offer(&mut self, r: Revision, went_back: bool) -> bool {
        if r.revision < self.seen && went_back {
            tracing::warn!(
                source = %self.source.url(),
                "the key's revision went back from {} to {} (a new etcd cluster?): taking it as the newest",
                self.seen,
                r.revision
            );
        } else if r.revision <= self.seen {
            return true;
        }
        self.seen = r.revision;
        self.tx.send(r).await.is_ok()
    }

    /// Reads the key and hands on what is new; the store's revision, from which to watch.
    async fn check(&mut self) -> Result<Option<i64>, EtcdError> {
        let (current, store) = self.source.get().await?;
        let went_back = store < self.store;
        self.store = store;
        let listening = match current {
            Some(r) => self.offer(r, went_back).await,
            None => {
                if self.seen == 0 {
                    tracing::warn!(source = %self.source.url(), "the config key does not exist yet; waiting for it to be written");
                }
                true
            }
        };
        if !listening {
            return Ok(None);
        }
        Ok(Some(store))
    }

    /// One connection: reads the key, then watches it from the store's revision, reading it
    /// again every [`RECHECK`], until the watch ends, etcd fails or `stop`.
    async fn connection(&mut self, stop: &CancellationToken) -> Result<(), EtcdError> {
        let Some(store) = self.check().await? else {
            return Ok(());
        };
        let key = strata_config::base64_encode(self.source.key.as_bytes());
        let resp = self
            .source
            .call(
                "/v3/watch",
                json!({ "create_request": { "key": key, "start_revision": (store + 1).to_string() } }),
            )
            .await?;
        let mut body = resp.into_body();
        let mut line = Vec::new();
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = recheck.tick() => {
                    if self.check().await?.is_none() {
                        return Ok(());
                    }
                    continue;
                }
                _ = stop.cancelled() => return Ok(()),
            };
            let Some(frame) = frame else {
                return Err(EtcdError::WatchEnded(self.source.endpoint.clone()));
            };
            let frame = frame.map_err(|source| EtcdError::Http {
                endpoint: self.source.endpoint.clone(),
                source,
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            // only the new bytes can end a line
            let from = line.len();
            line.extend_from_slice(&data);
            let mut scanned = from;
            while let Some(at) = line[scanned..].iter().position(|b| *b == b'\n') {
                let one: Vec<u8> = line.drain(..=scanned + at).collect();
                scanned = 0;
                if !self.watch_line(&one).await? {
                    return Ok(());
                }
            }
            if line.len() > MAX_LINE {
                return Err(self
                    .source
                    .protocol(format!("a watch message over {MAX_LINE} bytes")));
            }
        }
    }

    /// One message of the watch stream: its PUT events become revisions. False when nobody
    /// listens any more.
    async fn watch_line(&mut self, line: &[u8]) -> Result<bool, EtcdError> {
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| self.source.protocol(format!("watch message: {e}")))?;
        if v.get("error").is_some() {
            return Err(self.source.protocol(format!("watch error: {}", v["error"])));
        }
        let result = &v["result"];
        if result["canceled"].as_bool() == Some(true) {
            return Err(EtcdError::WatchEnded(self.source.endpoint.clone()));
        }
        if result["created"].as_bool() == Some(true) {
            // range and watch both answer: etcd is back
            if self.failing.take().is_some() {
                tracing::info!(source = %self.source.url(), "etcd answers again");
            }
            self.watching = Some(Instant::now());
        }
        for event in result["events"].as_array().into_iter().flatten() {
            if event["type"].as_str() == Some("DELETE") {
                tracing::warn!(source = %self.source.url(), "the config key was deleted; the running config stays");
                continue;
            }
            let revision = self.source.revision(&event["kv"])?;
            if !self.offer(revision, false).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn failed(&mut self, e: &EtcdError) {
        let now = Instant::now();
        let what = if self.seen == 0 {
            "nothing runs until the key holds a valid config"
        } else {
            "the running config stays"
        };
        match &mut self.failing {
            None => {
                tracing::warn!(source = %self.source.url(), "{e}; {what}; retrying");
                self.failing = Some((now, now));
            }
            Some((since, warned)) if now.duration_since(*warned) >= WARN_EVERY => {
                tracing::warn!(source = %self.source.url(), "{e}; {what}; retrying for {:?}", now.duration_since(*since));
                *warned = now;
            }
            Some(_) => {
                tracing::debug!(source = %self.source.url(), "{e}; retrying in {:?}", self.backoff)
            }
        }
    }
}

/// Follows `source` until `stop`: sends each revision of the key newer than `seen` to `tx`
/// (the current one first). When etcd can't be reached or the watch ends, it waits (from
/// 100 ms, doubling up to 5 s, each wait drawn between half and all of that; back to 100 ms
/// once a watch has stood for 10 s) and reads the key again, so nothing written meanwhile is
/// missed.
pub async fn follow(
    source: EtcdSource,
    seen: i64,
    tx: mpsc::Sender<Revision>,
    stop: CancellationToken,
) {
    let mut f = Follower {
        source,
        seen,
        store: 0,
        tx,
        backoff: FIRST_BACKOFF,
        watching: None,
        failing: None,
    };
    while !stop.is_cancelled() && !f.tx.is_closed() {
        if let Err(e) = f.connection(&stop).await {
            f.failed(&e);
        }
        if f.watching.take().is_some_and(|t| t.elapsed() >= STABLE) {
            f.backoff = FIRST_BACKOFF;
        }
        // between half the back-off and all of it: a fleet that lost etcd together does not
        // come back in step
        let wait = f.backoff / 2
            + f.backoff
                .mul_f64(f64::from(strata_ring::random_u32()) / 2f64.powi(33));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        f.backoff = (f.backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_an_endpoint_and_a_key() {
        assert_eq!(EtcdSource::parse("/etc/strata/strata.toml"), None);
        assert_eq!(
            EtcdSource::parse("etcd://10.0.0.5:2379/strata/prod"),
            Some(Ok(EtcdSource {
                endpoint: "10.0.0.5:2379".into(),
                key: "/strata/prod".into()
            }))
        );
        assert_eq!(
            EtcdSource::parse("etcd://[::1]:2379/k")
                .unwrap()
                .unwrap()
                .endpoint,
            "[::1]:2379"
        );
        for bad in [
            "etcd://10.0.0.5:2379",
            "etcd://10.0.0.5:2379/",
            "etcd://10.0.0.5/strata",
            "etcd://:2379/strata",
            "etcd://h:99999/strata",
        ] {
            assert!(
                matches!(EtcdSource::parse(bad), Some(Err(_))),
                "{bad} accepted"
            );
        }
        let s = EtcdSource::parse("etcd://h:2379/a/b").unwrap().unwrap();
        assert_eq!(s.url(), "etcd://h:2379/a/b");
    }

    #[test]
    fn revisions_are_read_from_the_gateways_json() {
        let s = EtcdSource::parse("etcd://h:2379/k").unwrap().unwrap();
        let kv = json!({"key": "L2s=", "mod_revision": "42", "value": strata_config::base64_encode(b"workers = 1\n")});
        assert_eq!(
            s.revision(&kv).unwrap(),
            Revision {
                revision: 42,
                text: "workers = 1\n".into()
            }
        );
        let empty = json!({"key": "L2s=", "mod_revision": "7"});
        assert_eq!(s.revision(&empty).unwrap().text, "");
        let not_text =
            json!({"mod_revision": "8", "value": strata_config::base64_encode(&[0xff, 0xfe])});
        assert!(s
            .revision(&not_text)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
        assert!(s.revision(&json!({"value": ""})).is_err());
    }

    /// The review's race: a read of the key (the 30 s recheck) hands on R2, then the watch,
    /// behind it, delivers R1: R1 is passed over, not applied on top of R2. Only a read that
    /// finds etcd's store older than before takes a lower revision.
    #[tokio::test]
    async fn an_older_revision_is_passed_over_unless_etcd_itself_went_back() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut f = Follower {
            source: EtcdSource::parse("etcd://h:2379/k").unwrap().unwrap(),
            seen: 0,
            store: 0,
            tx,
            backoff: FIRST_BACKOFF,
            watching: None,
            failing: None,
        };
        let r = |revision| Revision {
            revision,
            text: format!("# {revision}"),
        };
        assert!(f.offer(r(12), false).await);
        assert_eq!(rx.try_recv().unwrap().revision, 12);
        // the watch's event for 11 and 12, after the read that saw 12
        assert!(f.offer(r(11), false).await);
        assert!(f.offer(r(12), false).await);
        assert!(
            rx.try_recv().is_err(),
            "an older or the same revision was handed on"
        );
        assert!(f.offer(r(13), false).await);
        assert_eq!(rx.try_recv().unwrap().revision, 13);
        // a new etcd cluster with the config put again
        assert!(f.offer(r(2), true).await);
        assert_eq!(rx.try_recv().unwrap().revision, 2);
        assert_eq!(f.seen, 2);
    }
}
