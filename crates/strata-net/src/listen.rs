//! Listening sockets, bound the same way for every layer and the admin listener.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel queues for a listener before they are accepted.
const BACKLOG: u32 = 4096;

/// Binds and listens on `addr` (SO_REUSEADDR, so a restart does not wait out TIME_WAIT). Call
/// inside the runtime.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
