//! Listening sockets, bound the same way for every layer and the admin listener.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};
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

/// Like [`listen`], on an address this node may not hold yet: a virtual address that the entry
/// layer adds when it becomes Master (IP_FREEBIND), so a Backup's listeners are ready the
/// instant it takes over, with no `ip_nonlocal_bind` sysctl and no wildcard listener.
pub fn listen_freebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG as i32)?;
    TcpListener::from_std(socket.into())
}
