//! A second VRRPv3 advert decoder, written only to check `advert.rs`, from the RFC text and
//! sharing no code with it: the IPv4 header as RFC 791 §3.1 lays it out, the advert as
//! RFC 5798 §5.1 and §5.2 lay it out, the receiver's checks of RFC 5798 §7.1, and the
//! Internet checksum as RFC 1071 §1 and §2 compute and verify it.
//!
//! The input is what a Linux raw `IPPROTO_VRRP` socket hands over: the IPv4 header as it
//! arrived, then the payload. Where the RFCs leave room, this reading decides (and
//! `advert::decode` must agree):
//!
//! - **Header length.** IHL under 5 words is refused (RFC 791: the minimum). IHL over 5 means
//!   IP options: they are skipped, not interpreted (RFC 5798 neither asks for nor forbids
//!   them; the kernel has already acted on them).
//! - **Total length.** It must cover the header (at least IHL words) and fit in the buffer;
//!   the VRRP message is the bytes between the two. Bytes in the buffer past the total length
//!   (padding, or a caller handing over a larger buffer) are not part of the datagram and
//!   never change the verdict. A total length past the buffer is a truncated read: refused.
//! - **Fragments.** A packet with More Fragments set or a non-zero fragment offset is refused:
//!   it is a piece of a datagram (RFC 791 §2.3), and a later piece starts with payload, not
//!   with a VRRP header. Linux reassembles before raw delivery (`ip_local_deliver` calls
//!   `ip_defrag`, which clears both fields), so no advert from the network is lost by this.
//!   Don't Fragment and the reserved flag bit are ignored.
//! - **Header checksum.** Not verified: the kernel drops a packet whose header checksum fails
//!   before any socket sees it, and it may rewrite header fields (reassembly, options) itself.
//! - **Addresses.** The source and destination are reported as they are, not judged: the
//!   destination is the group or, for unicast peers, this node; the source is the peer.
//! - **TTL.** Anything but 255 is refused (§5.1.1.3, §7.1). The verdict does not depend on
//!   the order of the checks; `advert::decode` checks the TTL last so that its error names the
//!   TTL only for a packet that would otherwise be a good advert, and the fuzz check holds it
//!   to that.
//! - **Version and type.** Version 3, type 1 (§5.2.1, §5.2.2); VRRPv2 is refused.
//! - **VRID and priority.** Any value: whether the VRID is ours and what a priority means is
//!   the state machine's to judge (§7.1's VRID check needs the configuration).
//! - **Count.** At least 1 (§5.2.5: "the minimum value is 1"), and the message is exactly the
//!   8 fixed bytes and the counted addresses: nothing follows them in v3 (no authentication
//!   data), and §7.1 asks for the complete packet.
//! - **Rsvd.** The 4 bits before Max Adver Int are ignored on reception (§5.2.6).
//! - **Max Adver Int.** 12 bits, in centiseconds; 0 is refused: Master_Down_Interval and
//!   Skew_Time (§6.1) would be 0, and a Backup would take over at once and keep flapping.
//! - **Checksum.** §5.2.8 sums the message with a pseudo-header; for IPv4 that is RFC 768's
//!   (source, destination, a zero byte, protocol 112, and the VRRP message's length in 16
//!   bits), with the header's own addresses. A sum over the message alone is accepted too
//!   (peers that compute it as VRRPv2 did). When both hold (the pseudo-header alone sums to
//!   zero), the reading is [`Sum::Either`], and `advert::decode` names the pseudo-header one.
//!   A checksum computed over another pseudo-header (say, with the group as destination on a
//!   unicast packet) is refused.
//! - **Addresses in the message.** Any values; matching them against the configuration is
//!   the instance's business (§7.1 says MAY).

use std::net::Ipv4Addr;

/// IP protocol number assigned to VRRP (RFC 5798 §5.1.1.4).
const PROTOCOL_VRRP: u8 = 112;
/// The smallest Internet Header Length, in 32-bit words (RFC 791 §3.1).
const MIN_IHL_WORDS: u8 = 5;
/// The fixed part of a VRRP message, before the IPvX addresses (RFC 5798 §5.1).
const FIXED_PART: usize = 8;

/// The fields of RFC 791's Internet Header this reading uses.
struct InternetHeader {
    version: u8,
    ihl_words: u8,
    total_length: u16,
    more_fragments: bool,
    fragment_offset: u16,
    time_to_live: u8,
    protocol: u8,
    source: Ipv4Addr,
    destination: Ipv4Addr,
}

/// The fields of RFC 5798 §5.1's VRRP packet format, addresses still as bytes.
struct VrrpMessage<'a> {
    version: u8,
    packet_type: u8,
    virtual_rtr_id: u8,
    priority: u8,
    count_ipvx_addrs: u8,
    max_adver_int: u16,
    addresses: &'a [u8],
}

/// Which checksum readings hold for an accepted advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sum {
    /// Only the sum with the IPv4 pseudo-header.
    PseudoHeader,
    /// Only the sum over the VRRP message alone.
    AdvertOnly,
    /// Both: the pseudo-header's own sum is zero.
    Either,
}

/// A packet this reading accepts as an advert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The IPv4 source address.
    pub source: Ipv4Addr,
    /// The IPv4 destination address.
    pub destination: Ipv4Addr,
    /// Virtual Rtr ID.
    pub vrid: u8,
    /// Priority.
    pub priority: u8,
    /// Max Adver Int, in centiseconds.
    pub max_adver_int: u16,
    /// The IPvX addresses, in order.
    pub addresses: Vec<Ipv4Addr>,
    /// Which checksum readings hold.
    pub sum: Sum,
}

/// Why this reading refuses a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer bytes than the 20 of a minimal Internet Header.
    ShorterThanAHeader,
    /// IP version other than 4.
    NotIpv4,
    /// IHL under 5 words.
    HeaderLength,
    /// Total Length shorter than the header, or longer than the bytes read.
    TotalLength,
    /// More Fragments set or a non-zero Fragment Offset.
    Fragment,
    /// Protocol other than 112.
    NotVrrp,
    /// Time to Live other than 255.
    TimeToLive,
    /// Fewer bytes than the VRRP message's fixed part.
    ShorterThanTheFixedPart,
    /// VRRP version other than 3.
    Version,
    /// VRRP type other than 1 (ADVERTISEMENT).
    Type,
    /// Count IPvX Addrs of 0.
    NoAddresses,
    /// The message is not exactly the fixed part and the counted addresses.
    Length,
    /// Max Adver Int of 0.
    ZeroInterval,
    /// Neither checksum reading holds.
    Checksum,
}

/// Reads `packet` (an IPv4 header and what follows) as RFC 5798 §7.1 has a receiver check it.
pub fn decode(packet: &[u8]) -> Result<Reading, Refusal> {
    let header = internet_header(packet)?;
    if header.version != 4 {
        return Err(Refusal::NotIpv4);
    }
    if header.ihl_words < MIN_IHL_WORDS {
        return Err(Refusal::HeaderLength);
    }
    let header_bytes = usize::from(header.ihl_words) * 4;
    let datagram_bytes = usize::from(header.total_length);
    if datagram_bytes < header_bytes || datagram_bytes > packet.len() {
        return Err(Refusal::TotalLength);
    }
    if header.more_fragments || header.fragment_offset != 0 {
        return Err(Refusal::Fragment);
    }
    if header.protocol != PROTOCOL_VRRP {
        return Err(Refusal::NotVrrp);
    }
    if header.time_to_live != 255 {
        return Err(Refusal::TimeToLive);
    }
    let message_bytes = &packet[header_bytes..datagram_bytes];
    let message = vrrp_message(message_bytes)?;
    if message.version != 3 {
        return Err(Refusal::Version);
    }
    if message.packet_type != 1 {
        return Err(Refusal::Type);
    }
    if message.count_ipvx_addrs == 0 {
        return Err(Refusal::NoAddresses);
    }
    if message.addresses.len() != 4 * usize::from(message.count_ipvx_addrs) {
        return Err(Refusal::Length);
    }
    if message.max_adver_int == 0 {
        return Err(Refusal::ZeroInterval);
    }
    let with_pseudo = verifies(&pseudo_header(
        header.source,
        header.destination,
        message_bytes,
    ));
    let alone = verifies(message_bytes);
    let sum = match (with_pseudo, alone) {
        (true, true) => Sum::Either,
        (true, false) => Sum::PseudoHeader,
        (false, true) => Sum::AdvertOnly,
        (false, false) => return Err(Refusal::Checksum),
    };
    let mut addresses = Vec::new();
    let mut rest = message.addresses;
    while let [a, b, c, d, tail @ ..] = rest {
        addresses.push(Ipv4Addr::new(*a, *b, *c, *d));
        rest = tail;
    }
    Ok(Reading {
        source: header.source,
        destination: header.destination,
        vrid: message.virtual_rtr_id,
        priority: message.priority,
        max_adver_int: message.max_adver_int,
        addresses,
        sum,
    })
}

/// RFC 791 §3.1, the fixed 20 bytes:
///
/// ```text
///  0      4      8              16    19                       31
/// |Version|  IHL |Type of Service|          Total Length         |
/// |         Identification       |Flags|      Fragment Offset    |
/// |  Time to Live |    Protocol   |         Header Checksum       |
/// |                       Source Address                         |
/// |                    Destination Address                       |
/// ```
fn internet_header(packet: &[u8]) -> Result<InternetHeader, Refusal> {
    let Some(fixed) = packet.get(..20) else {
        return Err(Refusal::ShorterThanAHeader);
    };
    let word = |at: usize| (u16::from(fixed[at]) << 8) | u16::from(fixed[at + 1]);
    let flags_and_offset = word(6);
    Ok(InternetHeader {
        version: fixed[0] / 16,
        ihl_words: fixed[0] % 16,
        total_length: word(2),
        // flags are bits 0-2 of the word: reserved, Don't Fragment, More Fragments
        more_fragments: flags_and_offset & (1 << 13) != 0,
        fragment_offset: flags_and_offset % (1 << 13),
        time_to_live: fixed[8],
        protocol: fixed[9],
        source: Ipv4Addr::from([fixed[12], fixed[13], fixed[14], fixed[15]]),
        destination: Ipv4Addr::from([fixed[16], fixed[17], fixed[18], fixed[19]]),
    })
}

/// RFC 5798 §5.1:
///
/// ```text
///  0      4      8              16              24              31
/// |Version| Type | Virtual Rtr ID|   Priority    |Count IPvX Addr|
/// |(rsvd) |     Max Adver Int    |          Checksum             |
/// |                     IPvX Address(es)                         |
/// ```
fn vrrp_message(bytes: &[u8]) -> Result<VrrpMessage<'_>, Refusal> {
    if bytes.len() < FIXED_PART {
        return Err(Refusal::ShorterThanTheFixedPart);
    }
    Ok(VrrpMessage {
        version: bytes[0] / 16,
        packet_type: bytes[0] % 16,
        virtual_rtr_id: bytes[1],
        priority: bytes[2],
        count_ipvx_addrs: bytes[3],
        // the 4 reserved bits are ignored on reception (§5.2.6)
        max_adver_int: (u16::from(bytes[4] % 16) << 8) | u16::from(bytes[5]),
        addresses: &bytes[FIXED_PART..],
    })
}

/// The bytes the pseudo-header checksum covers: RFC 768's IPv4 pseudo-header (source,
/// destination, zero, protocol, length of the upper-layer message), then the message.
fn pseudo_header(source: Ipv4Addr, destination: Ipv4Addr, message: &[u8]) -> Vec<u8> {
    let mut covered = Vec::with_capacity(12 + message.len());
    covered.extend_from_slice(&source.octets());
    covered.extend_from_slice(&destination.octets());
    covered.push(0);
    covered.push(PROTOCOL_VRRP);
    // the message is at most 65,535 - 20 bytes: its length fits the 16-bit field
    let length = message.len();
    covered.push((length >> 8) as u8);
    covered.push((length & 0xff) as u8);
    covered.extend_from_slice(message);
    covered
}

/// RFC 1071 §1: pair adjacent octets into 16-bit integers (an odd last octet padded on the
/// right with a zero) and form their 1's complement sum, carries wrapped around as they come.
fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u16 = 0;
    for pair in bytes.chunks(2) {
        let high = u16::from(pair[0]) << 8;
        let low = pair.get(1).copied().map_or(0, u16::from);
        let (added, carry) = sum.overflowing_add(high | low);
        sum = added + u16::from(carry);
    }
    sum
}

/// RFC 1071 §1: a checksum verifies when the sum over the covered octets, the checksum
/// field included, is all ones (-0).
fn verifies(covered: &[u8]) -> bool {
    ones_complement_sum(covered) == 0xffff
}

/// Writes the checksum field (bytes 6-7) of the VRRP message `message`, summed with the IPv4
/// pseudo-header of `addresses` (source, destination), or over the message alone for `None`;
/// for the fuzz target, which seals arbitrary bytes so that they reach the checks past the
/// checksum. Messages shorter than the fixed part are left alone.
pub fn seal(message: &mut [u8], addresses: Option<(Ipv4Addr, Ipv4Addr)>) {
    if message.len() < FIXED_PART {
        return;
    }
    message[6] = 0;
    message[7] = 0;
    let sum = match addresses {
        Some((source, destination)) => {
            ones_complement_sum(&pseudo_header(source, destination, message))
        }
        None => ones_complement_sum(message),
    };
    // the checksum is the 1's complement of the sum
    let checksum = !sum;
    message[6] = (checksum >> 8) as u8;
    message[7] = (checksum & 0xff) as u8;
}
