//! The differential check and the roundtrip on hostile packets: lengths that lie, truncations,
//! counts and intervals at their limits, checksums under either reading or neither.

use super::*;

const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn sample(count: usize) -> Advert {
    Advert {
        vrid: 51,
        priority: 200,
        interval_cs: 100,
        addresses: (0..count)
            .map(|i| Ipv4Addr::new(192, 0, 2, i as u8))
            .collect(),
    }
}

/// A good advert of `count` addresses from SOURCE to the group, in its IPv4 header.
fn good(with: Checksum, count: usize) -> Vec<u8> {
    let message = sample(count).encode(SOURCE, GROUP, with);
    ip_packet(SOURCE, GROUP, 255, &[], &message)
}

/// `packet` with its VRRP checksum computed again, with the pseudo-header or without.
fn resealed(mut packet: Vec<u8>, with: Checksum) -> Vec<u8> {
    let how = match with {
        Checksum::PseudoHeader => 1,
        Checksum::AdvertOnly => 2,
    };
    shape(how, &mut packet);
    packet
}

fn set_total(packet: &mut [u8], total: usize) {
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
}

/// Runs the property on `packet` and says what decode read.
fn check(packet: &[u8]) -> Result<Received, Invalid> {
    advert_packet(packet);
    advert::decode(packet)
}

fn refused(packet: &[u8]) {
    let r = check(packet);
    assert!(r.is_err(), "accepted {r:?}: {}", hex(packet));
}

#[test]
fn good_adverts_are_read_alike() {
    for with in [Checksum::PseudoHeader, Checksum::AdvertOnly] {
        for count in [1, 2, 17, 255] {
            let r = check(&good(with, count)).unwrap();
            assert_eq!((r.advert, r.checksum), (sample(count), with));
        }
        // with IP options (a Router Alert, then No Operation padding), up to the most IHL
        // allows: skipped, and the pseudo-header's length is the VRRP message's alone
        let mut options = vec![0x94, 0x04, 0x00, 0x00];
        while options.len() <= 40 {
            let message = sample(2).encode(PEER, SOURCE, with);
            let r = check(&ip_packet(PEER, SOURCE, 255, &options, &message)).unwrap();
            assert_eq!((r.source, r.destination), (PEER, SOURCE));
            assert_eq!((r.advert, r.checksum), (sample(2), with));
            options.extend_from_slice(&[1, 1, 1, 1]);
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    for with in [Checksum::PseudoHeader, Checksum::AdvertOnly] {
        let whole = good(with, 3);
        for cut in 0..whole.len() {
            // a short read: the header states more than arrived
            refused(&whole[..cut]);
            if cut >= 4 {
                // the header states the cut length, the checksum holds
                let mut lying = whole[..cut].to_vec();
                set_total(&mut lying, cut);
                refused(&lying);
                refused(&resealed(lying, with));
            }
        }
        check(&whole).unwrap();
    }
}

#[test]
fn header_lengths_that_lie_are_refused() {
    let whole = good(Checksum::PseudoHeader, 2);
    for ihl in 0..16u8 {
        let mut p = whole.clone();
        p[0] = 0x40 | ihl;
        // 0-4 are too short; 6-15 take the advert for options and what is left is no advert
        if ihl != 5 {
            refused(&p);
            refused(&resealed(p.clone(), Checksum::PseudoHeader));
        }
        // larger than the whole packet
        let mut short = p[..28].to_vec();
        set_total(&mut short, 28);
        if ihl > 7 {
            refused(&short);
        }
        // larger than the total length the header states
        if ihl >= 5 {
            set_total(&mut p, usize::from(ihl) * 4 - 1);
            refused(&p);
        }
    }
}

#[test]
fn total_lengths_that_lie_are_refused() {
    let whole = good(Checksum::PseudoHeader, 2);
    let len = whole.len();
    for total in [
        0,
        1,
        19,
        20,
        21,
        27,
        28,
        29,
        len - 4,
        len - 1,
        len + 1,
        len + 4,
        0xffff,
    ] {
        let mut p = whole.clone();
        set_total(&mut p, total);
        refused(&p);
        refused(&resealed(p.clone(), Checksum::PseudoHeader));
        refused(&resealed(p, Checksum::AdvertOnly));
    }
    // a total length that ends after the first address, with a count and a checksum that
    // agree: an advert of one address, the second one past the datagram's end and not read
    let mut p = whole.clone();
    set_total(&mut p, len - 4);
    p[20 + 3] = 1;
    let r = check(&resealed(p, Checksum::PseudoHeader)).unwrap();
    assert_eq!(r.advert.addresses, sample(1).addresses);
}

#[test]
fn bytes_past_the_total_length_are_not_read() {
    for with in [Checksum::PseudoHeader, Checksum::AdvertOnly] {
        let whole = good(with, 2);
        let expected = check(&whole).unwrap();
        for tail in [&[0u8][..], &[0; 18], &[0xff; 4], &whole[..]] {
            let mut p = whole.clone();
            p.extend_from_slice(tail);
            assert_eq!(check(&p), Ok(expected.clone()));
        }
    }
}

#[test]
fn address_counts_must_fit_the_length_exactly() {
    for with in [Checksum::PseudoHeader, Checksum::AdvertOnly] {
        // count 0, no addresses: §5.2.5 says the minimum is 1
        let mut none = good(with, 1);
        none.truncate(28);
        set_total(&mut none, 28);
        none[23] = 0;
        let none = resealed(none, with);
        assert_eq!(check(&none), Err(Invalid::Count { count: 0, bytes: 0 }));
        // count 0 with addresses after it
        let mut zero = good(with, 2);
        zero[23] = 0;
        refused(&resealed(zero, with));
        // count 255, the most there can be
        assert_eq!(check(&good(with, 255)).unwrap().advert, sample(255));
        // counts one off either way, the checksum made to hold
        for (count, stated) in [(255, 254), (254, 255), (1, 2), (2, 1), (2, 255)] {
            let mut p = good(with, count);
            p[23] = stated;
            let p = resealed(p, with);
            assert_eq!(
                check(&p),
                Err(Invalid::Count {
                    count: stated,
                    bytes: 4 * count
                })
            );
        }
        // a VRRPv2-style trailer (8 bytes of authentication data) after the addresses
        let mut trailer = good(with, 2);
        trailer.extend_from_slice(&[0; 8]);
        let len = trailer.len();
        set_total(&mut trailer, len);
        refused(&resealed(trailer, with));
    }
}

#[test]
fn intervals_are_12_bits_and_not_zero() {
    for with in [Checksum::PseudoHeader, Checksum::AdvertOnly] {
        // (rsvd and Max Adver Int bytes, the interval read or none)
        for (bytes, interval) in [
            ([0x00, 0x00], None),
            ([0xf0, 0x00], None), // reserved bits alone
            ([0x00, 0x01], Some(1)),
            ([0x0f, 0xff], Some(4095)),
            ([0xff, 0xff], Some(4095)), // reserved bits ignored
            ([0xa0, 0x64], Some(100)),
        ] {
            let mut p = good(with, 2);
            p[24..26].copy_from_slice(&bytes);
            let r = check(&resealed(p, with));
            match interval {
                Some(cs) => assert_eq!(r.unwrap().advert.interval_cs, cs),
                None => assert_eq!(r, Err(Invalid::Interval)),
            }
        }
    }
}

#[test]
fn checksums_hold_under_one_reading_or_are_refused() {
    // each reading is told apart from the other
    for with in [Checksum::PseudoHeader, Checksum::AdvertOnly] {
        assert_eq!(check(&good(with, 2)).unwrap().checksum, with);
        // any one bit of the message flipped
        let whole = good(with, 2);
        for bit in 20 * 8..whole.len() * 8 {
            let mut p = whole.clone();
            p[bit / 8] ^= 0x80 >> (bit % 8);
            refused(&p);
        }
    }
    // summed with the group as destination, sent by unicast: holds only for another
    // pseudo-header, so neither reading holds here (keepalived before its unicast fix)
    let message = sample(2).encode(SOURCE, GROUP, Checksum::PseudoHeader);
    assert_eq!(
        check(&ip_packet(SOURCE, PEER, 255, &[], &message)),
        Err(Invalid::Checksum)
    );
    // the same from another source
    assert_eq!(
        check(&ip_packet(PEER, GROUP, 255, &[], &message)),
        Err(Invalid::Checksum)
    );
    // the message-only sum holds whatever the addresses
    let message = sample(2).encode(SOURCE, GROUP, Checksum::AdvertOnly);
    let r = check(&ip_packet(PEER, PEER, 255, &[], &message)).unwrap();
    assert_eq!(r.checksum, Checksum::AdvertOnly);
}

#[test]
fn when_both_readings_hold_the_pseudo_header_one_is_named() {
    // 0x1f6d + 0x0000 + 0xe000 + 0x0012 + 112 + 16 = 0xffff: the pseudo-header alone sums to
    // -0, so a message-only checksum holds with it too
    let source = Ipv4Addr::new(0x1f, 0x6d, 0, 0);
    for with in [Checksum::PseudoHeader, Checksum::AdvertOnly] {
        let message = sample(2).encode(source, GROUP, with);
        let p = ip_packet(source, GROUP, 255, &[], &message);
        assert_eq!(oracle::decode(&p).map(|r| r.sum), Ok(Sum::Either));
        assert_eq!(check(&p).unwrap().checksum, Checksum::PseudoHeader);
    }
}

#[test]
fn a_checksum_field_of_either_zero_verifies() {
    // in 1's complement 0x0000 and 0xffff are both zero: a sender may put either
    let mut found = 0;
    for vrid in 0..=255 {
        for priority in 0..=255 {
            let a = Advert {
                vrid,
                priority,
                ..sample(1)
            };
            let message = a.encode(SOURCE, GROUP, Checksum::AdvertOnly);
            if message[6..8] != [0, 0] {
                continue;
            }
            let mut other = message.clone();
            other[6..8].copy_from_slice(&[0xff, 0xff]);
            for m in [message, other] {
                let r = check(&ip_packet(SOURCE, GROUP, 255, &[], &m)).unwrap();
                assert_eq!(r.advert, a);
            }
            found += 1;
        }
    }
    assert!(found > 0);
}

#[test]
fn the_ttl_is_named_only_for_an_advert_that_crossed_a_router() {
    for ttl in [0, 1, 64, 128, 254] {
        let mut p = good(Checksum::PseudoHeader, 2);
        p[8] = ttl;
        assert_eq!(check(&p), Err(Invalid::Ttl(ttl)));
        // with a bad checksum too, it is noise
        p[30] ^= 1;
        assert_eq!(check(&p), Err(Invalid::Checksum));
    }
}

#[test]
fn fragments_are_refused_and_other_flags_ignored() {
    for (flags, whole) in [
        ([0x20, 0x00], false), // More Fragments: the first piece
        ([0x20, 0x01], false), // a middle piece
        ([0x00, 0x03], false), // the last piece, at offset 24
        ([0x1f, 0xff], false),
        ([0x40, 0x00], true), // Don't Fragment
        ([0x80, 0x00], true), // the reserved bit
        ([0x00, 0x00], true),
    ] {
        let mut p = good(Checksum::PseudoHeader, 2);
        p[6..8].copy_from_slice(&flags);
        let r = check(&p);
        assert_eq!(r.is_ok(), whole, "flags {flags:02x?}: {r:?}");
        if !whole {
            assert_eq!(r, Err(Invalid::Fragment));
        }
    }
}

#[test]
fn other_packets_are_refused() {
    let whole = good(Checksum::PseudoHeader, 2);
    // IP version 6 and 0, another protocol
    for (at, value) in [(0, 0x65), (0, 0x05), (9, 17), (9, 51)] {
        let mut p = whole.clone();
        p[at] = value;
        assert_eq!(check(&p), Err(Invalid::NotVrrp));
    }
    // VRRP version 2 and 4, types 0, 2 and 15, each with a checksum that holds
    for first in [0x21, 0x41, 0x30, 0x32, 0x3f, 0x00, 0xff] {
        let mut p = whole.clone();
        p[20] = first;
        let p = resealed(p, Checksum::PseudoHeader);
        let r = check(&p);
        assert!(
            matches!(r, Err(Invalid::Version(_) | Invalid::Type(_))),
            "{first:02x}: {r:?}"
        );
    }
    // a whole VRRPv2 advert (authentication type 0 and 8 bytes of authentication data)
    let mut v2 = vec![0x21, 51, 200, 1, 0, 1, 0, 0, 192, 0, 2, 1];
    v2.extend_from_slice(&[0; 8]);
    let p = ip_packet(SOURCE, GROUP, 255, &[], &v2);
    refused(&resealed(p, Checksum::AdvertOnly));
    // nothing, and noise
    for p in [
        &[][..],
        &[0x45],
        &[0x45; 20],
        &[0x45; 64],
        &[0xff; 64],
        &[0; 64],
    ] {
        refused(p);
    }
}

#[test]
fn any_single_bit_flip_keeps_decode_and_the_rfc_reading_agreed() {
    for with in [Checksum::PseudoHeader, Checksum::AdvertOnly] {
        let message = sample(2).encode(SOURCE, GROUP, with);
        let whole = ip_packet(SOURCE, GROUP, 255, &[0x94, 4, 0, 0], &message);
        for bit in 0..whole.len() * 8 {
            let mut p = whole.clone();
            p[bit / 8] ^= 0x80 >> (bit % 8);
            // as it is, and sealed every way, so that each flip reaches every check
            for how in 0..16 {
                let mut input = vec![how];
                input.extend_from_slice(&p);
                vrrp_advert(&input);
            }
        }
    }
}

#[test]
fn adverts_roundtrip() {
    // the limits, spelt out: flags, source, destination, vrid, priority, interval, count
    let mut most = vec![0x15, 10, 0, 0, 1, 224, 0, 0, 18, 255, 255, 0x0f, 0xfe, 254];
    most.extend_from_slice(&[0x01; 40]);
    for data in [
        &[][..],
        &[0],
        &[1],
        &[0xff; 3000],
        &most,
        &[0, 10, 0, 0, 1, 224, 0, 0, 18, 0, 0, 0, 0, 0],
        // a message-only checksum from a source whose pseudo-header sums to zero
        &[0x01, 0x1f, 0x6d, 0, 0, 224, 0, 0, 18, 1, 1, 0, 99, 1],
    ] {
        roundtrip(data);
    }
    // and a spread of inputs from an xorshift
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..2000 {
        let data: Vec<u8> = (0..len % 97)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        vrrp_advert(&data);
    }
}

/// The fuzz seeds: a first byte saying how to shape the packet (0: as it is), then the packet.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let with_options = |with| {
        let message = sample(3).encode(PEER, SOURCE, with);
        ip_packet(PEER, SOURCE, 255, &[0x94, 4, 0, 0], &message)
    };
    let seed = |how: u8, packet: Vec<u8>| [vec![how], packet].concat();
    vec![
        ("pseudo_header", seed(0, good(Checksum::PseudoHeader, 2))),
        ("advert_only", seed(0, good(Checksum::AdvertOnly, 1))),
        (
            "pseudo_header_options_unicast",
            seed(0, with_options(Checksum::PseudoHeader)),
        ),
        (
            "advert_only_options_unicast",
            seed(0, with_options(Checksum::AdvertOnly)),
        ),
        ("advert_only_255", seed(0, good(Checksum::AdvertOnly, 255))),
        // shaped: an IPv4 VRRP packet, its total length the buffer's, sealed with the
        // pseudo-header
        (
            "shaped_pseudo_header",
            seed(0x0d, good(Checksum::AdvertOnly, 2)),
        ),
    ]
}

fn seed_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/vrrp_advert")
}

#[test]
fn the_fuzz_seeds_are_good_adverts() {
    for (name, data) in seeds() {
        let mut packet = data[1..].to_vec();
        shape(data[0], &mut packet);
        check(&packet).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        vrrp_advert(&data);
        // the files in fuzz/, where the crate is built from the workspace
        if let Ok(on_disk) = std::fs::read(seed_dir().join(name)) {
            assert_eq!(
                on_disk, data,
                "fuzz/seeds/vrrp_advert/{name} is out of date"
            );
        }
    }
}

/// Writes the seeds: `cargo test -p strata-vip write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    std::fs::create_dir_all(seed_dir()).unwrap();
    for (name, data) in seeds() {
        std::fs::write(seed_dir().join(name), data).unwrap();
    }
}
