//! VRRPv3 advertisements for IPv4 (RFC 5798 §5): encoding, and decoding from the IPv4 packet a
//! raw socket hands over, with every check §7.1 asks of a receiver.

use std::net::Ipv4Addr;

/// IP protocol number of VRRP.
pub const PROTO_VRRP: u8 = 112;
/// The IPv4 multicast group adverts go to.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Fixed part of an advert, before the addresses.
const HEADER: usize = 8;
/// The most addresses one IPv4 advert can carry: the count is one byte.
pub const MAX_ADDRESSES: usize = 255;

/// One advertisement, as sent by a Master (or by a Master stepping down, with priority 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Virtual Router ID, 1-255.
    pub vrid: u8,
    /// The sender's priority: 0 means it is giving up being Master.
    pub priority: u8,
    /// Max Adver Int in centiseconds (12 bits: at most 4095).
    pub interval_cs: u16,
    /// The virtual addresses.
    pub addresses: Vec<Ipv4Addr>,
}

/// Which checksum a received advert carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Over the IPv4 pseudo-header and the advert, as RFC 5798 and keepalived compute it.
    PseudoHeader,
    /// Over the advert alone, as some peers (Cisco's, RFC 9568 readings) compute it.
    AdvertOnly,
}

/// Why a received packet is not a valid advert; each one is counted by its
/// [`Invalid::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Shorter than an IPv4 header, or than the lengths it states.
    #[error("truncated packet ({0} bytes)")]
    Truncated(usize),
    /// Not an IPv4 packet carrying VRRP.
    #[error("not an IPv4 VRRP packet")]
    NotVrrp,
    /// A fragment (More Fragments set, or a fragment offset): a piece of a datagram, not a
    /// whole advert. The kernel reassembles before a raw socket sees a packet, so none arrives
    /// this way from the network.
    #[error("an IPv4 fragment, not a whole packet")]
    Fragment,
    /// A router forwarded it (RFC 5798 §7.1: TTL must be 255).
    #[error("TTL {0}, not 255: the advert crossed a router")]
    Ttl(u8),
    /// Version other than 3 (VRRPv2 is not spoken).
    #[error("VRRP version {0}, not 3")]
    Version(u8),
    /// Type other than 1 (ADVERTISEMENT).
    #[error("VRRP type {0}, not an advertisement")]
    Type(u8),
    /// Neither checksum reading holds.
    #[error("bad checksum")]
    Checksum,
    /// The address count does not match the packet's length, or is zero.
    #[error("address count {count} does not fit {bytes} bytes of addresses")]
    Count {
        /// The count the packet states.
        count: u8,
        /// The bytes that follow the fixed header.
        bytes: usize,
    },
    /// An advertisement interval of zero.
    #[error("advertisement interval of 0")]
    Interval,
}

impl Invalid {
    /// The label this kind of invalid packet is counted under in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Truncated(_) => "truncated",
            Invalid::NotVrrp => "not_vrrp",
            Invalid::Fragment => "fragment",
            Invalid::Ttl(_) => "ttl",
            Invalid::Version(_) => "version",
            Invalid::Type(_) => "type",
            Invalid::Checksum => "checksum",
            Invalid::Count { .. } => "count",
            Invalid::Interval => "interval",
        }
    }
}

/// A valid advert and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's address (its primary address on the link).
    pub source: Ipv4Addr,
    /// Where it was sent: the group, or this node by unicast.
    pub destination: Ipv4Addr,
    /// The advert.
    pub advert: Advert,
    /// Which checksum it carried: [`Checksum::PseudoHeader`] when both readings hold (the
    /// pseudo-header alone sums to zero, as for one address pair in 65,535).
    pub checksum: Checksum,
}

impl Advert {
    /// The advert as sent from `source` to `destination`, with the checksum `with`.
    pub fn encode(&self, source: Ipv4Addr, destination: Ipv4Addr, with: Checksum) -> Vec<u8> {
        let count = self.addresses.len().min(MAX_ADDRESSES);
        let mut out = Vec::with_capacity(HEADER + 4 * count);
        out.push(0x31); // version 3, type 1
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count as u8);
        out.extend_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in &self.addresses[..count] {
            out.extend_from_slice(&a.octets());
        }
        let sum = checksum(&out, pseudo(with, source, destination, out.len()));
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }
}

/// The pseudo-header's share of the sum, or none.
fn pseudo(with: Checksum, source: Ipv4Addr, destination: Ipv4Addr, len: usize) -> u32 {
    match with {
        Checksum::AdvertOnly => 0,
        Checksum::PseudoHeader => {
            let mut sum = 0u32;
            for pair in source
                .octets()
                .chunks(2)
                .chain(destination.octets().chunks(2))
            {
                sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
            }
            sum + u32::from(PROTO_VRRP) + len as u32
        }
    }
}

/// The Internet checksum (RFC 1071) of `data`, starting from `initial`.
fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Decodes the IPv4 packet a raw VRRP socket received: its header (a whole datagram, not a
/// fragment; options skipped; bytes past its total length ignored), then the advert, checked
/// as RFC 5798 §7.1 asks (TTL, version, type, checksum with or without the pseudo-header,
/// address count). The VRID and the priority are the state machine's to judge.
pub fn decode(packet: &[u8]) -> Result<Received, Invalid> {
    if packet.len() < 20 {
        return Err(Invalid::Truncated(packet.len()));
    }
    if packet[0] >> 4 != 4 {
        return Err(Invalid::NotVrrp);
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if ihl < 20 || total < ihl || packet.len() < total {
        return Err(Invalid::Truncated(packet.len()));
    }
    if packet[9] != PROTO_VRRP {
        return Err(Invalid::NotVrrp);
    }
    // RFC 791: with More Fragments set or an offset, this is a piece of a datagram, and a later
    // piece starts with payload, not with a VRRP header. Only a forged packet, or one fed by
    // something other than the kernel (which reassembles first), looks like this.
    if u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0 {
        return Err(Invalid::Fragment);
    }
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let ttl = packet[8];
    let vrrp = &packet[ihl..total];
    let (advert, checksum) = decode_advert(vrrp, source, destination)?;
    // the TTL is checked after the rest, so a forwarded packet that is otherwise a good advert
    // is told apart from noise
    if ttl != 255 {
        return Err(Invalid::Ttl(ttl));
    }
    Ok(Received {
        source,
        destination,
        advert,
        checksum,
    })
}

/// Decodes the VRRP part of a packet from `source` to `destination`.
pub fn decode_advert(
    vrrp: &[u8],
    source: Ipv4Addr,
    destination: Ipv4Addr,
) -> Result<(Advert, Checksum), Invalid> {
    if vrrp.len() < HEADER {
        return Err(Invalid::Truncated(vrrp.len()));
    }
    if vrrp[0] >> 4 != 3 {
        return Err(Invalid::Version(vrrp[0] >> 4));
    }
    if vrrp[0] & 0x0f != 1 {
        return Err(Invalid::Type(vrrp[0] & 0x0f));
    }
    let with = if checksum(
        vrrp,
        pseudo(Checksum::PseudoHeader, source, destination, vrrp.len()),
    ) == 0
    {
        Checksum::PseudoHeader
    } else if checksum(vrrp, 0) == 0 {
        Checksum::AdvertOnly
    } else {
        return Err(Invalid::Checksum);
    };
    let count = vrrp[3];
    let bytes = vrrp.len() - HEADER;
    // RFC 5798 allows nothing after the addresses but authentication-free padding in v2; in
    // v3 the length is exactly the addresses
    if count == 0 || bytes != 4 * usize::from(count) {
        return Err(Invalid::Count { count, bytes });
    }
    let interval_cs = u16::from_be_bytes([vrrp[4], vrrp[5]]) & 0x0fff;
    if interval_cs == 0 {
        return Err(Invalid::Interval);
    }
    let addresses = vrrp[HEADER..]
        .chunks_exact(4)
        .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        .collect();
    Ok((
        Advert {
            vrid: vrrp[1],
            priority: vrrp[2],
            interval_cs,
            addresses,
        },
        with,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip_packet(vrrp: &[u8], source: Ipv4Addr, ttl: u8) -> Vec<u8> {
        let total = 20 + vrrp.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            ttl,
            112,
            0,
            0,
        ];
        p.extend_from_slice(&source.octets());
        p.extend_from_slice(&GROUP.octets());
        p.extend_from_slice(vrrp);
        p
    }

    fn sample() -> Advert {
        Advert {
            vrid: 51,
            priority: 200,
            interval_cs: 100,
            addresses: vec![Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 101)],
        }
    }

    #[test]
    fn encodes_as_the_rfc_lays_it_out() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let bytes = sample().encode(src, GROUP, Checksum::PseudoHeader);
        assert_eq!(&bytes[..6], &[0x31, 51, 200, 2, 0, 100]);
        assert_eq!(&bytes[8..], &[10, 0, 0, 100, 10, 0, 0, 101]);
        // a known-good sum, computed by hand from RFC 1071 for this exact packet
        let mut sum: u32 = 0x0a00 + 0x0001 + 0xe000 + 0x0012 + 112 + 16;
        for w in [0x3133u32, 0xc802, 0x0064, 0x0a00, 0x0064, 0x0a00, 0x0065] {
            sum += w;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(u16::from_be_bytes([bytes[6], bytes[7]]), !(sum as u16));
    }

    #[test]
    fn decodes_both_checksums() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        for with in [Checksum::PseudoHeader, Checksum::AdvertOnly] {
            let p = ip_packet(&sample().encode(src, GROUP, with), src, 255);
            let r = decode(&p).unwrap();
            assert_eq!(r.advert, sample());
            assert_eq!(r.checksum, with);
            assert_eq!(r.source, src);
        }
    }

    #[test]
    fn refuses_what_rfc_5798_refuses() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let good = sample().encode(src, GROUP, Checksum::PseudoHeader);
        assert_eq!(decode(&ip_packet(&good, src, 254)), Err(Invalid::Ttl(254)));
        let mut v2 = good.clone();
        v2[0] = 0x21;
        assert_eq!(decode(&ip_packet(&v2, src, 255)), Err(Invalid::Version(2)));
        let mut bad = good.clone();
        bad[9] ^= 1;
        assert_eq!(decode(&ip_packet(&bad, src, 255)), Err(Invalid::Checksum));
        // a count that disagrees with the length, with a checksum that holds
        let mut a = sample();
        a.addresses.pop();
        let mut short = a.encode(src, GROUP, Checksum::AdvertOnly);
        short[3] = 2;
        short[6] = 0;
        short[7] = 0;
        let sum = checksum(&short, 0);
        short[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            decode(&ip_packet(&short, src, 255)),
            Err(Invalid::Count { count: 2, bytes: 4 })
        );
        assert_eq!(decode(&good[..5]), Err(Invalid::Truncated(5)));
    }

    #[test]
    fn fragments_are_refused() {
        // a fragment is not a whole advert: the first holds part of one, a later one starts
        // with payload; here a whole advert's bytes, so only the flags tell
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let good = ip_packet(
            &sample().encode(src, GROUP, Checksum::PseudoHeader),
            src,
            255,
        );
        for (flags, verdict) in [
            ([0x20, 0x00], Err(Invalid::Fragment)), // More Fragments
            ([0x00, 0x01], Err(Invalid::Fragment)), // offset 8
            ([0x1f, 0xff], Err(Invalid::Fragment)), // the highest offset
            ([0x40, 0x00], Ok(())),                 // Don't Fragment
            ([0x80, 0x00], Ok(())),                 // the reserved bit, ignored
        ] {
            let mut p = good.clone();
            p[6..8].copy_from_slice(&flags);
            assert_eq!(decode(&p).map(drop), verdict, "flags {flags:02x?}");
        }
    }
}
