//! The interface side of the entry layer: its index, MAC and link state (from sysfs), and its
//! IPv4 addresses, read, added and removed over rtnetlink (no shelling out to `ip`).

use std::io;
use std::io::Read;
use std::net::Ipv4Addr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

fn sysfs(interface: &str, file: &str) -> io::Result<String> {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/{file}"))
        .map(|s| s.trim().to_string())
}

/// The interface's index, or an error naming it when it does not exist.
pub fn index(interface: &str) -> io::Result<u32> {
    sysfs(interface, "ifindex")?
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "unreadable ifindex"))
}

/// The interface's hardware address.
pub fn mac(interface: &str) -> io::Result<[u8; 6]> {
    let text = sysfs(interface, "address")?;
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut out {
        *b = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an Ethernet address"))?;
    }
    Ok(out)
}

/// Whether the interface is up with a carrier (a cable, or a veth whose peer is up).
pub fn is_up(interface: &str) -> bool {
    // `carrier` cannot be read while the interface is administratively down
    sysfs(interface, "carrier").is_ok_and(|c| c == "1")
}

/// One IPv4 address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The address.
    pub addr: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// Secondary: another address of the same subnet came first.
    pub secondary: bool,
}

/// A request/answer rtnetlink socket.
struct Netlink {
    socket: Socket,
    seq: u32,
}

const NLMSG_HDR: usize = 16;
const IFADDRMSG: usize = 8;

fn push_attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(libc::NETLINK_ROUTE)),
        )?;
        // the kernel answers at once; a bound on the wait keeps a wedged kernel from hanging
        // the instance
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one address message and returns the kernel's answers until the ack or the end of
    /// the dump, each as (type, payload).
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(NLMSG_HDR + body.len());
        msg.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // an unbound netlink socket sends to the kernel (port 0)
        self.socket.send(&msg)?;
        let mut answers = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = (&self.socket).read(&mut buf)?;
            let data = &buf[..n];
            let mut at = 0;
            while at + NLMSG_HDR <= data.len() {
                let len =
                    u32::from_ne_bytes(data[at..at + 4].try_into().unwrap_or_default()) as usize;
                let t = u16::from_ne_bytes([data[at + 4], data[at + 5]]);
                let seq = u32::from_ne_bytes(data[at + 8..at + 12].try_into().unwrap_or_default());
                if len < NLMSG_HDR || at + len > data.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "short netlink message",
                    ));
                }
                let payload = &data[at + NLMSG_HDR..at + len];
                at += (len + 3) & !3;
                if seq != self.seq {
                    continue;
                }
                match t as i32 {
                    libc::NLMSG_DONE => return Ok(answers),
                    libc::NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or_default()));
                        return if code == 0 {
                            Ok(answers)
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    _ => answers.push((t, payload.to_vec())),
                }
            }
        }
    }
}

fn addr_message(index: u32, addr: Ipv4Addr, prefix: u8, lifetime: Option<u32>) -> Vec<u8> {
    let mut body = vec![libc::AF_INET as u8, prefix, 0, libc::RT_SCOPE_UNIVERSE];
    body.extend_from_slice(&index.to_ne_bytes());
    push_attr(&mut body, libc::IFA_LOCAL, &addr.octets());
    push_attr(&mut body, libc::IFA_ADDRESS, &addr.octets());
    if let Some(secs) = lifetime {
        // struct ifa_cacheinfo: preferred and valid lifetimes, then two timestamps the kernel
        // fills in
        let mut info = Vec::with_capacity(16);
        for v in [secs, secs, 0, 0] {
            info.extend_from_slice(&v.to_ne_bytes());
        }
        push_attr(&mut body, libc::IFA_CACHEINFO, &info);
    }
    body
}

/// The IPv4 addresses of interface `index`, primary ones first as the kernel lists them.
pub fn addresses(index: u32) -> io::Result<Vec<Address>> {
    let mut nl = Netlink::open()?;
    let mut body = vec![libc::AF_INET as u8, 0, 0, 0];
    body.extend_from_slice(&0u32.to_ne_bytes());
    let answers = nl.request(libc::RTM_GETADDR, libc::NLM_F_DUMP as u16, &body)?;
    let mut out = Vec::new();
    for (t, payload) in answers {
        if t != libc::RTM_NEWADDR || payload.len() < IFADDRMSG {
            continue;
        }
        let family = payload[0];
        let prefix = payload[1];
        let flags = payload[2];
        let ifindex = u32::from_ne_bytes(payload[4..8].try_into().unwrap_or_default());
        if i32::from(family) != libc::AF_INET || ifindex != index {
            continue;
        }
        let mut local = None;
        let mut address = None;
        let mut at = IFADDRMSG;
        while at + 4 <= payload.len() {
            let len = usize::from(u16::from_ne_bytes([payload[at], payload[at + 1]]));
            let kind = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]);
            if len < 4 || at + len > payload.len() {
                break;
            }
            let data = &payload[at + 4..at + len];
            if data.len() == 4 {
                let a = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
                match kind {
                    libc::IFA_LOCAL => local = Some(a),
                    libc::IFA_ADDRESS => address = Some(a),
                    _ => {}
                }
            }
            at += (len + 3) & !3;
        }
        if let Some(addr) = local.or(address) {
            out.push(Address {
                addr,
                prefix,
                secondary: u32::from(flags) & libc::IFA_F_SECONDARY != 0,
            });
        }
    }
    Ok(out)
}

/// Adds `addr/prefix` to interface `index` for `lifetime` seconds, or renews it when it is
/// there already.
pub fn add(index: u32, addr: Ipv4Addr, prefix: u8, lifetime: u32) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let flags = (libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
    let message = addr_message(index, addr, prefix, Some(lifetime));
    nl.request(libc::RTM_NEWADDR, flags, &message).map(drop)
}

/// Removes `addr/prefix` from interface `index`; already gone is fine.
pub fn remove(index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let flags = libc::NLM_F_ACK as u16;
    match nl.request(
        libc::RTM_DELADDR,
        flags,
        &addr_message(index, addr, prefix, None),
    ) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EADDRNOTAVAIL) | Some(libc::ENOENT) | Some(libc::ENODEV)
            ) =>
        {
            Ok(())
        }
        r => r.map(drop),
    }
}
