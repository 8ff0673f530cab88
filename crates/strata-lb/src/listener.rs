//! The accept loop both layers share: a connection limit, back-off on accept errors, and a
//! tracked task per connection so shutdown can wait for them all.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts on `listener` until `shutdown`, running `handle` for each connection while holding a
/// permit of the current `limit`; then stops accepting and returns once every connection ended.
pub(crate) async fn accept_loop<L, H, F>(
    name: &str,
    listener: TcpListener,
    shutdown: &CancellationToken,
    limit: L,
    handle: H,
) where
    L: Fn() -> Arc<Semaphore>,
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, client) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors and the like: back off instead of spinning
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = handle(stream, client);
        connections.spawn(async move {
            let _permit = permit;
            conn.await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
