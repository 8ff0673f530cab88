//! Gratuitous ARP: the broadcast that tells a link's hosts and switches which MAC now answers
//! for a virtual address.

use std::io;
use std::net::Ipv4Addr;

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];

/// The Ethernet frame of a gratuitous ARP request for `addr` from `mac`: sender and target
/// address both `addr`, as keepalived and the Linux `arping -U` send it, padded to 60 bytes.
pub fn frame(mac: [u8; 6], addr: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // hardware Ethernet, protocol IPv4, lengths 6 and 4, operation 1 (request)
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&addr.octets());
    f[32..38].copy_from_slice(&BROADCAST);
    f[38..42].copy_from_slice(&addr.octets());
    f
}

/// A packet socket that sends whole Ethernet frames out of one interface and receives nothing
/// (protocol 0).
pub struct Sender {
    socket: Socket,
    to: SockAddr,
}

impl Sender {
    /// A sender on interface `index`.
    pub fn new(index: u32) -> io::Result<Sender> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.set_nonblocking(true)?;
        Ok(Sender {
            socket,
            to: link_address(index),
        })
    }

    /// Sends `frame`.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.socket.send_to(frame, &self.to).map(drop)
    }
}

/// The `sockaddr_ll` of the broadcast address on interface `index`, for ARP frames.
#[allow(unsafe_code)]
fn link_address(index: u32) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is one of this platform's socket address types, smaller than
    // `sockaddr_storage` (view_as asserts it), and every field is plain data.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_ARP.to_be();
    ll.sll_ifindex = index as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&BROADCAST);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an initialised `sockaddr_ll` of `len` bytes, with its family.
    unsafe { SockAddr::new(storage, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_a_gratuitous_request() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = frame(mac, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &f[38..42]);
    }
}
