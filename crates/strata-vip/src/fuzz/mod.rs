//! Entry point for the cargo-fuzz target `vrrp_advert` in `fuzz/` (feature "fuzz"), also run
//! by the unit tests on hostile packets: [`crate::advert`] checked against [`oracle`], a
//! second advert decoder written from the RFC text alone.

pub mod oracle;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

use crate::advert::{self, Advert, Checksum, Invalid, Received};
use oracle::{Reading, Sum};

/// The multicast group adverts go to, spelt out again rather than taken from `advert.rs`.
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// The fuzz target: `data` is a first byte choosing how to shape the packet (see [`shape`]),
/// then the packet, checked by [`advert_packet`]; all of `data` also gives the fields of the
/// advert [`roundtrip`] encodes.
pub fn vrrp_advert(data: &[u8]) {
    if let Some((&how, rest)) = data.split_first() {
        let mut packet = rest.to_vec();
        shape(how, &mut packet);
        advert_packet(&packet);
    }
    roundtrip(data);
}

/// Differential check of `advert::decode` on `packet`, any bytes:
///
/// - decode and the oracle both accept or both refuse, and when they accept they read the
///   same source, destination, VRID, priority, interval, addresses and checksum (the
///   pseudo-header one when both hold);
/// - decode's error names the TTL exactly when the TTL is not 255 and the packet with a TTL
///   of 255 is one the oracle accepts (the TTL is checked last, to tell a forwarded advert
///   from noise);
/// - when the buffer holds the whole datagram, the bytes after its total length change
///   nothing: the verdict on the datagram alone is the same (decode reads nothing past it,
///   or slicing would panic), and so is the verdict on the buffer with those bytes changed
///   and more appended. (Which error is named may differ: a buffer under 20 bytes is
///   truncated before its version is looked at.)
///
/// Decode must not panic on any of them.
pub fn advert_packet(packet: &[u8]) {
    let ours = advert::decode(packet);
    let theirs = oracle::decode(packet);
    match (&ours, &theirs) {
        (Ok(r), Ok(o)) => assert_eq!(*r, received(o), "{}", hex(packet)),
        (Err(_), Err(_)) => {}
        (Ok(r), Err(why)) => panic!(
            "decode accepts {r:?}, the RFC reading refuses it ({why:?}): {}",
            hex(packet)
        ),
        (Err(e), Ok(o)) => panic!(
            "decode refuses it ({e:?}), the RFC reading accepts {o:?}: {}",
            hex(packet)
        ),
    }

    let ttl_alone = packet.len() >= 20 && packet[8] != 255 && {
        let mut forwarded = packet.to_vec();
        forwarded[8] = 255;
        oracle::decode(&forwarded).is_ok()
    };
    match ours {
        Err(Invalid::Ttl(ttl)) => assert!(
            ttl_alone && ttl == packet[8],
            "decode names TTL {ttl} for a packet that is no advert with TTL 255: {}",
            hex(packet)
        ),
        _ => assert!(
            !ttl_alone,
            "an advert but for its TTL, refused as {ours:?}: {}",
            hex(packet)
        ),
    }

    let Some(total) = total_length(packet).filter(|&t| t <= packet.len()) else {
        return;
    };
    let alone = advert::decode(&packet[..total]);
    assert_eq!(
        alone.as_ref().ok(),
        ours.as_ref().ok(),
        "the datagram alone ({total} bytes) reads {alone:?}, the buffer {ours:?}: {}",
        hex(packet)
    );
    let mut changed = packet.to_vec();
    for b in &mut changed[total..] {
        *b = !*b;
    }
    changed.extend_from_slice(&[0x31, 0xff, 0, 0x45]);
    let after = advert::decode(&changed);
    assert_eq!(
        after.as_ref().ok(),
        ours.as_ref().ok(),
        "other bytes after the datagram change the verdict, {after:?} for {ours:?}: {}",
        hex(packet)
    );
}

/// Encoding then decoding gives the advert back: fields derived from `data` (vrid, priority,
/// interval 1-4095, 1-255 addresses, either checksum, source and destination, 0-10 words of
/// IP options), encoded, wrapped in the IPv4 header the kernel would add, decode to the same
/// advert from the same addresses, with the checksum it was encoded with (or the
/// pseudo-header one, when both readings hold); the oracle reads the same. The packet also
/// passes [`advert_packet`].
pub fn roundtrip(data: &[u8]) {
    let mut from = Fields { data, at: 0 };
    let flags = from.byte();
    let with = if flags & 1 == 0 {
        Checksum::PseudoHeader
    } else {
        Checksum::AdvertOnly
    };
    let options = usize::from(flags >> 1) % 11;
    let source = from.addr();
    let destination = from.addr();
    let vrid = from.byte();
    let priority = from.byte();
    let interval_cs = u16::from_be_bytes([from.byte(), from.byte()]) % 4095 + 1;
    let count = usize::from(from.byte()) % 255 + 1;
    let option_bytes: Vec<u8> = (0..4 * options).map(|_| from.byte()).collect();
    let advert = Advert {
        vrid,
        priority,
        interval_cs,
        addresses: (0..count).map(|_| from.addr()).collect(),
    };

    let message = advert.encode(source, destination, with);
    let packet = ip_packet(source, destination, 255, &option_bytes, &message);
    let read = oracle::decode(&packet).unwrap_or_else(|why| {
        panic!(
            "the RFC reading refuses the encoded {advert:?} ({why:?}): {}",
            hex(&packet)
        )
    });
    let checksum = match (read.sum, with) {
        (Sum::Either, _) => Checksum::PseudoHeader,
        (Sum::PseudoHeader, Checksum::PseudoHeader) | (Sum::AdvertOnly, Checksum::AdvertOnly) => {
            with
        }
        (sum, _) => panic!(
            "encoded with {with:?}, the RFC reading finds {sum:?}: {}",
            hex(&packet)
        ),
    };
    let expected = Received {
        source,
        destination,
        advert,
        checksum,
    };
    assert_eq!(received(&read), expected, "{}", hex(&packet));
    assert_eq!(advert::decode(&packet), Ok(expected), "{}", hex(&packet));
    advert_packet(&packet);
}

/// The fuzz input read as the fields of an advert: its bytes in turn, over again from the
/// start when they run out (zeros if there are none).
struct Fields<'a> {
    data: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    fn byte(&mut self) -> u8 {
        let b = match self.data {
            [] => 0,
            d => d[self.at % d.len()],
        };
        self.at += 1;
        b
    }

    fn addr(&mut self) -> Ipv4Addr {
        Ipv4Addr::new(self.byte(), self.byte(), self.byte(), self.byte())
    }
}

/// Shapes the fuzz input `packet` so that it reaches the checks past the ones random bytes
/// rarely pass. `how`: bit 2 makes it an IPv4 VRRP packet with TTL 255; bit 3 sets its total
/// length to the buffer's; bits 0-1 seal the VRRP checksum: not (0), with the pseudo-header
/// (1), over the message alone (2), with a pseudo-header naming the group as destination
/// whatever the packet's is (3: as some peers compute it on unicast; refused unless the
/// destination is the group).
pub fn shape(how: u8, packet: &mut [u8]) {
    if packet.len() < 20 {
        return;
    }
    if how & 4 != 0 {
        packet[0] = 0x40 | (packet[0] & 0x0f);
        packet[8] = 255;
        packet[9] = 112;
    }
    if how & 8 != 0 {
        let len = packet.len().min(usize::from(u16::MAX)) as u16;
        packet[2..4].copy_from_slice(&len.to_be_bytes());
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let Some(total) = total_length(packet) else {
        return;
    };
    if ihl < 20 || total < ihl || total > packet.len() {
        return;
    }
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let message = &mut packet[ihl..total];
    match how & 3 {
        0 => {}
        1 => oracle::seal(message, Some((source, destination))),
        2 => oracle::seal(message, None),
        _ => oracle::seal(message, Some((source, GROUP))),
    }
}

/// An IPv4 packet as the kernel hands it to a raw socket: a header with `options` (a multiple
/// of 4 bytes, at most 40), then `payload`; the header checksum is left 0.
pub fn ip_packet(
    source: Ipv4Addr,
    destination: Ipv4Addr,
    ttl: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let ihl = 20 + options.len();
    let total = u16::try_from(ihl + payload.len()).expect("an IPv4 packet fits 64 KiB");
    let mut p = Vec::with_capacity(usize::from(total));
    p.push(0x40 | (ihl / 4) as u8);
    p.push(0xc0); // DSCP CS6, as VRRP traffic is usually marked
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0x00]); // an identification, Don't Fragment
    p.extend_from_slice(&[ttl, 112, 0, 0]);
    p.extend_from_slice(&source.octets());
    p.extend_from_slice(&destination.octets());
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

/// The oracle's reading as decode's type.
fn received(o: &Reading) -> Received {
    Received {
        source: o.source,
        destination: o.destination,
        advert: Advert {
            vrid: o.vrid,
            priority: o.priority,
            interval_cs: o.max_adver_int,
            addresses: o.addresses.clone(),
        },
        checksum: match o.sum {
            Sum::PseudoHeader | Sum::Either => Checksum::PseudoHeader,
            Sum::AdvertOnly => Checksum::AdvertOnly,
        },
    }
}

/// The IPv4 total length `packet` states, if it is long enough to state one.
fn total_length(packet: &[u8]) -> Option<usize> {
    match packet {
        [_, _, high, low, ..] => Some(usize::from(u16::from_be_bytes([*high, *low]))),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
