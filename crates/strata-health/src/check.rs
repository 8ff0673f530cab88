//! Active health checks: a task per backend that connects (and for HTTP sends a GET) on an
//! interval, counting rise/fall before it changes the backend's state.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use strata_config::{CheckKind, HealthCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;

/// A check that the layer makes over its own protocol (HTTP/2 and gRPC checks, say), in place of
/// the built-in TCP and HTTP/1.1 ones: given a backend's address, Ok with what was seen or Err
/// with why it failed.
pub type Probe = Arc<
    dyn Fn(SocketAddr) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>
        + Send
        + Sync,
>;

/// Starts a checker for each backend; they stop when `cancel` fires. `owner` names the listener
/// in log lines ("http:web"). `probe`, when given, makes each check instead of the built-in one.
pub fn spawn_checks(
    owner: &str,
    backends: &[Arc<Backend>],
    check: &HealthCheck,
    cancel: CancellationToken,
    probe: Option<Probe>,
) {
    for backend in backends {
        let backend = backend.clone();
        let check = check.clone();
        let cancel = cancel.clone();
        let owner = owner.to_string();
        let probe = probe.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = run(&owner, &backend, &check, probe) => {}
            }
        });
    }
}

async fn run(owner: &str, backend: &Backend, check: &HealthCheck, custom: Option<Probe>) {
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        ticker.tick().await;
        let checked = async {
            match &custom {
                Some(custom) => custom(backend.addr).await,
                None => probe(backend, &check.kind).await,
            }
        };
        let result = match tokio::time::timeout(check.timeout, checked).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", check.timeout)),
        };
        let (Ok(detail) | Err(detail)) = &result;
        let ok = result.is_ok();
        if let Some(why) = backend.checked(ok, detail, check.rise, check.fall, first) {
            if ok {
                tracing::info!(listener = owner, backend = %backend.name, "{why}");
            } else {
                tracing::warn!(listener = owner, backend = %backend.name, "{why}");
            }
        }
        first = false;
    }
}

/// One check: Ok with what was seen, or Err with why it failed.
async fn probe(backend: &Backend, kind: &CheckKind) -> Result<String, String> {
    let mut stream = TcpStream::connect(backend.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (path, host, expect) = match kind {
        CheckKind::Connect => return Ok("connected".into()),
        CheckKind::Http { path, host, expect } => (path, host, expect),
        CheckKind::Grpc { .. } => return Err("a gRPC check needs the layer's HTTP/2 probe".into()),
    };
    let host = host.as_deref().unwrap_or(&backend.name);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: strata-health\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = read_status(&mut stream).await?;
    if (expect.0..=expect.1).contains(&status) {
        Ok(format!("HTTP {status}"))
    } else {
        Err(format!("HTTP {status}, expected {}-{}", expect.0, expect.1))
    }
}

/// Reads just the status line of a response.
async fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]);
            let mut words = line.split(' ');
            return match (
                words.next(),
                words.next().and_then(|s| s.parse::<u16>().ok()),
            ) {
                (Some(v), Some(status)) if v.starts_with("HTTP/1.") => Ok(status),
                _ => Err(format!(
                    "not an HTTP response: {:?}",
                    line.chars().take(40).collect::<String>()
                )),
            };
        }
        if buf.len() > 4096 {
            return Err("status line too long".into());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before a status line".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
