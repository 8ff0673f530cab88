//! The raw VRRP sockets of one instance: one that receives every advert on the interface, one
//! that sends from the node's primary address (multicast to 224.0.0.18, or to unicast peers).

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::advert::{GROUP, PROTO_VRRP};

/// A raw VRRP socket tied to interface `name`.
fn vrrp_socket(name: &str) -> io::Result<Socket> {
    let proto = Protocol::from(i32::from(PROTO_VRRP));
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(proto))?;
    socket.bind_device(Some(name.as_bytes()))?;
    Ok(socket)
}

/// Receives the adverts that reach one interface.
pub struct Receiver {
    fd: AsyncFd<Socket>,
}

impl Receiver {
    /// Listens for VRRP on interface `name` (index `index`), joined to 224.0.0.18 there.
    #[allow(unsafe_code)]
    pub fn new(name: &str, index: u32) -> io::Result<Receiver> {
        let socket = vrrp_socket(name)?;
        socket.join_multicast_v4_n(&GROUP, &InterfaceIndexOrAddress::Index(index))?;
        socket.set_nonblocking(true)?;
        // SAFETY: the socket owns its descriptor, and nothing replaces or closes it while the
        // AsyncFd holds it (the AsyncFd owns the socket and drops it last).
        let fd = unsafe { AsyncFd::register(socket)? };
        Ok(Receiver { fd })
    }

    /// Waits for the next packet (its IPv4 header included) and copies it into `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| s.get_ref().read(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Sends adverts from this node's primary address with TTL 255.
pub struct Sender {
    socket: Socket,
}

impl Sender {
    /// A sender on interface `name` from `source`.
    pub fn new(name: &str, source: Ipv4Addr) -> io::Result<Sender> {
        let socket = vrrp_socket(name)?;
        socket.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
        socket.set_ttl_v4(255)?;
        socket.set_multicast_ttl_v4(255)?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_multicast_if_v4(&source)?;
        // this socket only sends: a small receive buffer keeps the copies the kernel queues on
        // it (every VRRP packet to the source address) from taking memory
        socket.set_recv_buffer_size(1)?;
        socket.set_nonblocking(true)?;
        Ok(Sender { socket })
    }

    /// Sends `advert` (already encoded for `to`) to `to`.
    pub fn send(&self, advert: &[u8], to: Ipv4Addr) -> io::Result<()> {
        self.socket
            .send_to(advert, &SockAddr::from(SocketAddrV4::new(to, 0)))
            .map(drop)
    }
}
