use super::*;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|d| u8::from_str_radix(std::str::from_utf8(d).unwrap(), 16).unwrap())
        .collect()
}

fn owned(list: &[(&str, &str)]) -> Fields {
    list.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// The fields `decode` passes on, and its result.
fn decode_within(
    d: &mut Decoder,
    block: &[u8],
    max_list: usize,
) -> (Fields, Result<(), HpackError>) {
    let mut fields = Vec::new();
    let result = d.decode(block, max_list, |n, v| {
        fields.push((n.to_vec(), v.to_vec()))
    });
    (fields, result)
}

fn decode(d: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    let (fields, result) = decode_within(d, block, usize::MAX);
    result.map(|()| fields)
}

fn entries(t: &DynamicTable) -> Fields {
    t.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
}

fn encode(e: &mut Encoder, fields: &Fields) -> Vec<u8> {
    let mut out = Vec::new();
    e.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])), &mut out);
    out
}

/// An example of RFC 7541 Appendix C: a block, its fields, the dynamic table after it
/// (newest first) and the table's size.
struct Example {
    block: &'static str,
    fields: &'static [(&'static str, &'static str)],
    table: &'static [(&'static str, &'static str)],
    size: usize,
}

fn check_examples(mut d: Decoder, examples: &[Example]) {
    for (i, ex) in examples.iter().enumerate() {
        let got = decode(&mut d, &hex(ex.block)).unwrap_or_else(|e| panic!("block {i}: {e}"));
        assert_eq!(got, owned(ex.fields), "block {i}");
        assert_eq!(entries(&d.table), owned(ex.table), "block {i}");
        assert_eq!(d.table.size(), ex.size, "block {i}");
    }
}

const REQUEST_1: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const REQUEST_2: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQUEST_3: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];
const TABLE_1: &[(&str, &str)] = &[(":authority", "www.example.com")];
const TABLE_2: &[(&str, &str)] = &[
    ("cache-control", "no-cache"),
    (":authority", "www.example.com"),
];
const TABLE_3: &[(&str, &str)] = &[
    ("custom-key", "custom-value"),
    ("cache-control", "no-cache"),
    (":authority", "www.example.com"),
];

const DATE_1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE_2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const RESPONSE_1: &[(&str, &str)] = &[
    (":status", "302"),
    ("cache-control", "private"),
    ("date", DATE_1),
    ("location", LOCATION),
];
const RESPONSE_2: &[(&str, &str)] = &[
    (":status", "307"),
    ("cache-control", "private"),
    ("date", DATE_1),
    ("location", LOCATION),
];
const RESPONSE_3: &[(&str, &str)] = &[
    (":status", "200"),
    ("cache-control", "private"),
    ("date", DATE_2),
    ("location", LOCATION),
    ("content-encoding", "gzip"),
    ("set-cookie", COOKIE),
];
const RESPONSE_TABLE_1: &[(&str, &str)] = &[
    ("location", LOCATION),
    ("date", DATE_1),
    ("cache-control", "private"),
    (":status", "302"),
];
const RESPONSE_TABLE_2: &[(&str, &str)] = &[
    (":status", "307"),
    ("location", LOCATION),
    ("date", DATE_1),
    ("cache-control", "private"),
];
const RESPONSE_TABLE_3: &[(&str, &str)] = &[
    ("set-cookie", COOKIE),
    ("content-encoding", "gzip"),
    ("date", DATE_2),
];

/// The response examples' encoder keeps a 256-byte table, set before the first block without
/// a size update in it.
fn response_decoder() -> Decoder {
    let mut d = Decoder::new(4096);
    d.table.set_max_size(256);
    d
}

#[test]
fn c1_integers() {
    for (value, prefix, bytes) in [
        (10, 5, &[0x0a][..]),
        (1337, 5, &[0x1f, 0x9a, 0x0a]),
        (42, 8, &[0x2a]),
    ] {
        let mut out = Vec::new();
        integer(value, prefix, 0, &mut out);
        assert_eq!(out, bytes);
        let mut r = Reader {
            block: bytes,
            at: 0,
        };
        assert_eq!(r.integer(prefix), Ok(value));
        assert_eq!(r.at, bytes.len());
    }
}

#[test]
fn c2_literal_and_indexed_fields() {
    let examples = [
        Example {
            block: "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
            fields: &[("custom-key", "custom-header")],
            table: &[("custom-key", "custom-header")],
            size: 55,
        },
        Example {
            block: "040c 2f73 616d 706c 652f 7061 7468",
            fields: &[(":path", "/sample/path")],
            table: &[],
            size: 0,
        },
        Example {
            block: "1008 7061 7373 776f 7264 0673 6563 7265 74",
            fields: &[("password", "secret")],
            table: &[],
            size: 0,
        },
        Example {
            block: "82",
            fields: &[(":method", "GET")],
            table: &[],
            size: 0,
        },
    ];
    // each example starts from an empty table
    for ex in examples {
        check_examples(Decoder::new(4096), &[ex]);
    }
}

#[test]
fn c3_requests_without_huffman() {
    check_examples(
        Decoder::new(4096),
        &[
            Example {
                block: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                fields: REQUEST_1,
                table: TABLE_1,
                size: 57,
            },
            Example {
                block: "8286 84be 5808 6e6f 2d63 6163 6865",
                fields: REQUEST_2,
                table: TABLE_2,
                size: 110,
            },
            Example {
                block: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                fields: REQUEST_3,
                table: TABLE_3,
                size: 164,
            },
        ],
    );
}

#[test]
fn c4_requests_with_huffman() {
    check_examples(
        Decoder::new(4096),
        &[
            Example {
                block: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                fields: REQUEST_1,
                table: TABLE_1,
                size: 57,
            },
            Example {
                block: "8286 84be 5886 a8eb 1064 9cbf",
                fields: REQUEST_2,
                table: TABLE_2,
                size: 110,
            },
            Example {
                block: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                fields: REQUEST_3,
                table: TABLE_3,
                size: 164,
            },
        ],
    );
}

#[test]
fn c5_responses_without_huffman() {
    check_examples(
        response_decoder(),
        &[
            Example {
                block: "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 \
                        3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 \
                        7777 2e65 7861 6d70 6c65 2e63 6f6d",
                fields: RESPONSE_1,
                table: RESPONSE_TABLE_1,
                size: 222,
            },
            Example {
                block: "4803 3330 37c1 c0bf",
                fields: RESPONSE_2,
                table: RESPONSE_TABLE_2,
                size: 222,
            },
            Example {
                block: "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 \
                        3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a \
                        584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 \
                        3630 303b 2076 6572 7369 6f6e 3d31",
                fields: RESPONSE_3,
                table: RESPONSE_TABLE_3,
                size: 215,
            },
        ],
    );
}

#[test]
fn c6_responses_with_huffman() {
    check_examples(
        response_decoder(),
        &[
            Example {
                block: "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 \
                        66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                fields: RESPONSE_1,
                table: RESPONSE_TABLE_1,
                size: 222,
            },
            Example {
                block: "4883 640e ffc1 c0bf",
                fields: RESPONSE_2,
                table: RESPONSE_TABLE_2,
                size: 222,
            },
            Example {
                block: "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a \
                        839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 \
                        72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                fields: RESPONSE_3,
                table: RESPONSE_TABLE_3,
                size: 215,
            },
        ],
    );
}

#[test]
fn huffman_strings_of_the_examples() {
    for (text, coded) in [
        ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        ("no-cache", "a8eb 1064 9cbf"),
        ("custom-key", "25a8 49e9 5ba9 7d7f"),
        ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        ("302", "6402"),
        ("private", "aec3 771a 4b"),
        ("gzip", "9bd9 ab"),
    ] {
        let mut out = Vec::new();
        huffman::encode(text.as_bytes(), &mut out);
        assert_eq!(out, hex(coded), "{text}");
        assert_eq!(huffman::encoded_len(text.as_bytes()), out.len());
        let mut back = Vec::new();
        assert_eq!(huffman::decode(&out, &mut back), Ok(()));
        assert_eq!(back, text.as_bytes());
    }
}

#[test]
fn every_byte_goes_through_huffman_and_back() {
    let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
    for len in [0, 1, 2, 3, 7, 100, all.len()] {
        let mut coded = Vec::new();
        huffman::encode(&all[..len], &mut coded);
        assert_eq!(huffman::encoded_len(&all[..len]), coded.len());
        let mut back = Vec::new();
        assert_eq!(huffman::decode(&coded, &mut back), Ok(()));
        assert_eq!(back, &all[..len]);
    }
}

#[test]
fn huffman_padding_and_eos_follow_section_5_2() {
    let decode = |coded: &[u8]| huffman::decode(coded, &mut Vec::new());
    // "a" is 00011, then 3 bits of padding
    assert_eq!(decode(&[0b0001_1111]), Ok(()));
    // "a", " ", " " are 5 + 6 + 6 bits: 7 bits of padding, the most there may be
    assert_eq!(decode(&[0x1a, 0x8a, 0x7f]), Ok(()));
    // "0" then 11 bits of ones: a whole byte of padding too many
    assert_eq!(decode(&[0b0000_0111, 0xff]), Err(HuffmanError::Padding));
    assert_eq!(decode(&[0xff]), Err(HuffmanError::Padding));
    // padding that is not all ones
    assert_eq!(decode(&[0b0001_1000]), Err(HuffmanError::Padding));
    assert_eq!(decode(&[0b0001_1110]), Err(HuffmanError::Padding));
    // EOS (30 ones) inside the string, and as the padding itself
    assert_eq!(decode(&[0xff, 0xff, 0xff, 0xfc]), Err(HuffmanError::Eos));
    assert_eq!(
        decode(&[0x1f, 0xff, 0xff, 0xff, 0xff]),
        Err(HuffmanError::Eos)
    );
    // an empty string is no padding at all
    assert_eq!(decode(&[]), Ok(()));
}

#[test]
fn static_table_lookups() {
    use table::StaticMatch::{Field, Name};
    assert_eq!(find_static(b":authority", b""), Some(Field(1)));
    assert_eq!(find_static(b":authority", b"x"), Some(Name(1)));
    assert_eq!(find_static(b":method", b"POST"), Some(Field(3)));
    assert_eq!(find_static(b":method", b"PUT"), Some(Name(2)));
    assert_eq!(find_static(b":status", b"500"), Some(Field(14)));
    assert_eq!(
        find_static(b"accept-encoding", b"gzip, deflate"),
        Some(Field(16))
    );
    assert_eq!(
        find_static(b"access-control-allow-origin", b"*"),
        Some(Name(20))
    );
    assert_eq!(find_static(b"www-authenticate", b"x"), Some(Name(61)));
    assert_eq!(find_static(b"Host", b""), None);
    assert_eq!(find_static(b"x-custom", b""), None);
    assert_eq!(find_static(&[b'a'; 40], b""), None);
    assert_eq!(find_static(b"", b""), None);
    // every entry is found where it stands, and every name at its first entry
    for (i, (n, v)) in STATIC.iter().enumerate() {
        assert_eq!(find_static(n, v), Some(Field(i + 1)));
        let first = STATIC.iter().position(|(m, _)| m == n).unwrap() + 1;
        assert_eq!(find_static(n, b"\xffno such value"), Some(Name(first)));
    }
}

#[test]
fn the_encoder_uses_the_static_table() {
    let mut e = Encoder::new();
    let block = encode(
        &mut e,
        &owned(&[
            (":status", "200"),
            (":status", "404"),
            (":method", "GET"),
            (":status", "418"),
            ("content-length", "2"),
        ]),
    );
    // indexed 8, 13 and 2; :status and content-length by static name, values without
    // indexing, raw as Huffman would not be shorter
    assert_eq!(block, hex("888d 82 0803 3431 38 0f0d 0132"));
    assert_eq!(e.table().len(), 0);
}

#[test]
fn the_encoder_indexes_fields_that_repeat_and_huffman_codes_when_shorter() {
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    let fields = owned(&[
        (":status", "200"),
        ("server", "strata"),
        ("content-type", "application/json"),
        ("x-request-id", "abc"),
    ]);
    let first = encode(&mut e, &fields);
    // server (54) and content-type (31) with incremental indexing, Huffman values;
    // x-request-id without indexing, its name a raw literal
    assert_eq!(first[..2], [0x88, 0x40 | 54]);
    assert_eq!(decode(&mut d, &first), Ok(fields.clone()));
    assert_eq!(entries(e.table()), entries(d.table()));
    assert_eq!(e.table().len(), 2);
    let second = encode(&mut e, &fields);
    // indexed: content-type is 62, server 63
    assert_eq!(second[..3], [0x88, 0x80 | 63, 0x80 | 62]);
    assert!(second.len() < first.len());
    assert_eq!(decode(&mut d, &second), Ok(fields));
    assert_eq!(entries(e.table()), entries(d.table()));
}

#[test]
fn the_encoder_sends_credentials_and_cookies_never_indexed() {
    let mut e = Encoder::new();
    let block = encode(
        &mut e,
        &owned(&[("authorization", "Basic eA=="), ("cookie", "a=b")]),
    );
    // never indexed (0001) with static names 23 and 32 (4-bit prefixes: 15 + 8, 15 + 17)
    assert_eq!(block[..2], [0x1f, 23 - 15]);
    assert_eq!(e.table().len(), 0);
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &block).unwrap().len(), 2);
}

#[test]
fn the_encoder_announces_the_peers_table_size() {
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    let fields = owned(&[("server", "strata")]);
    decode(&mut d, &encode(&mut e, &fields)).unwrap();
    // the peer shrinks its table to nothing: the entry goes
    e.set_table_limit(0);
    let block = encode(&mut e, &fields);
    assert_eq!(block[0], 0x20);
    assert_eq!(decode(&mut d, &block), Ok(fields.clone()));
    assert_eq!((d.table().max_size(), d.table().len()), (0, 0));
    e.set_table_limit(4096);
    let block = encode(&mut e, &fields);
    assert_eq!(block[..3], [0x3f, 0xe1, 0x1f]);
    assert_eq!(decode(&mut d, &block), Ok(fields.clone()));
    assert_eq!(d.table().len(), 1);
    // down to 10 and back up between two blocks: the smallest, then the last (§4.2)
    e.set_table_limit(10);
    e.set_table_limit(4096);
    e.set_table_limit(100);
    e.set_table_limit(65536);
    let block = encode(&mut e, &fields);
    let mut expected = Vec::new();
    integer(10, 5, 0x20, &mut expected);
    integer(4096, 5, 0x20, &mut expected);
    // the entry was evicted: the field goes in again
    expected.push(0x40 | 54);
    assert_eq!(block[..expected.len()], expected);
    assert_eq!(decode(&mut d, &block), Ok(fields.clone()));
    assert_eq!(d.table().max_size(), 4096);
    // a limit above what it uses already changes nothing
    e.set_table_limit(1 << 20);
    let block = encode(&mut e, &fields);
    assert_eq!(block, [0x80 | 62]);
}

#[test]
fn the_encoders_blocks_decode_to_the_examples_fields() {
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    for list in [
        REQUEST_1, REQUEST_2, REQUEST_3, RESPONSE_1, RESPONSE_2, RESPONSE_3,
    ] {
        let fields = owned(list);
        let block = encode(&mut e, &fields);
        assert_eq!(decode(&mut d, &block), Ok(fields));
        assert_eq!(entries(e.table()), entries(d.table()));
        assert_eq!(e.table().size(), d.table().size());
    }
}

// Hostile blocks.

#[test]
fn integers_past_four_continuation_bytes_are_refused() {
    let mut d = Decoder::new(4096);
    // indexed field: 127 + 28 bits is the largest accepted, and names no entry
    assert_eq!(
        decode(&mut d, &[0xff, 0xff, 0xff, 0xff, 0x7f]),
        Err(HpackError::Index(127 + (1 << 28) - 1))
    );
    for block in [
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
        // zeros that add nothing still count
        &[0xff, 0x80, 0x80, 0x80, 0x80, 0x00],
        // past u32 and past u64
        &[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        // a string length and a size update
        &[0x40, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0x3f, 0xff, 0xff, 0xff, 0xff, 0x01],
    ] {
        assert_eq!(
            decode(&mut Decoder::new(4096), block),
            Err(HpackError::Integer)
        );
    }
    // cut short inside the integer
    assert_eq!(decode(&mut d, &[0xff, 0xff]), Err(HpackError::Truncated));
}

#[test]
fn index_0_and_indexes_past_the_tables_are_refused() {
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &[0x80]), Err(HpackError::Index(0)));
    assert_eq!(decode(&mut d, &[0xbe]), Err(HpackError::Index(62)));
    // a literal's name index too
    assert_eq!(
        decode(&mut d, &[0x0f, 0x2f, 0x00]),
        Err(HpackError::Index(62))
    );
    assert_eq!(decode(&mut d, &[0x7e, 0x00]), Err(HpackError::Index(62)));
    // one entry: 62 is it, 63 is past it
    decode(&mut d, &hex("400a 6375 7374 6f6d 2d6b 6579 0161")).unwrap();
    assert_eq!(decode(&mut d, &[0xbe]), Ok(owned(&[("custom-key", "a")])));
    assert_eq!(decode(&mut d, &[0xbf]), Err(HpackError::Index(63)));
}

#[test]
fn size_updates_above_the_limit_or_after_a_field_are_refused() {
    let update = |size| {
        let mut b = Vec::new();
        integer(size, 5, 0x20, &mut b);
        b
    };
    let mut d = Decoder::new(1000);
    assert_eq!(
        decode(&mut d, &update(1001)),
        Err(HpackError::TableSize {
            size: 1001,
            limit: 1000
        })
    );
    assert_eq!(
        decode(&mut d, &[&[0x82][..], &update(0)].concat()),
        Err(HpackError::LateTableSize)
    );
    // several at the start are fine: the smallest, then the last
    let mut d = Decoder::new(1000);
    let block = [update(0), update(1000), vec![0x82]].concat();
    assert_eq!(decode(&mut d, &block), Ok(owned(&[(":method", "GET")])));
    assert_eq!(d.table().max_size(), 1000);
    // a decoder that advertises more than 4096 still starts at 4096, and may be raised
    let mut d = Decoder::new(65536);
    assert_eq!(d.table().max_size(), 4096);
    decode(&mut d, &update(65536)).unwrap();
    assert_eq!(d.table().max_size(), 65536);
}

#[test]
fn strings_past_the_block_end_are_refused() {
    let mut d = Decoder::new(4096);
    assert_eq!(
        decode(&mut d, &[0x40, 0x0a, b'a']),
        Err(HpackError::Truncated)
    );
    assert_eq!(
        decode(&mut d, &[0x40, 0x01, b'a', 0x02, b'b']),
        Err(HpackError::Truncated)
    );
    assert_eq!(decode(&mut d, &[0x40]), Err(HpackError::Truncated));
    assert_eq!(decode(&mut d, &[0x04]), Err(HpackError::Truncated));
    // nothing was inserted
    assert_eq!(d.table().len(), 0);
}

#[test]
fn bad_huffman_is_refused() {
    for (coded, why) in [
        (&[0xff, 0xff, 0xff, 0xff][..], HuffmanError::Eos),
        (&[0x07, 0xff], HuffmanError::Padding),
        (&[0x18], HuffmanError::Padding),
    ] {
        // as a name, then as a value
        let mut block = vec![0x40, 0x80 | coded.len() as u8];
        block.extend_from_slice(coded);
        block.extend_from_slice(&[0x01, b'v']);
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &block), Err(HpackError::Huffman(why)));
        let mut block = vec![0x04, 0x80 | coded.len() as u8];
        block.extend_from_slice(coded);
        assert_eq!(decode(&mut d, &block), Err(HpackError::Huffman(why)));
    }
}

/// A 4064-byte value, inserted with a 1-byte name: one 4 KB entry.
fn bomb(references: usize) -> Vec<u8> {
    let mut block = vec![0x40, 0x01, b'x'];
    integer(4063, 7, 0, &mut block);
    block.extend(std::iter::repeat_n(b'a', 4063));
    block.extend(std::iter::repeat_n(0xbe, references));
    block
}

#[test]
fn a_bomb_is_oversize_with_nothing_emitted_past_the_limit() {
    let mut d = Decoder::new(4096);
    let started = std::time::Instant::now();
    let mut calls = 0;
    let mut bytes = 0;
    let result = d.decode(&bomb(10_000), 16 * 1024, |n, v| {
        calls += 1;
        bytes += n.len() + v.len() + 32;
    });
    assert_eq!(result, Err(HpackError::Oversize));
    // the inserted field and three references fit in 16 KiB, a fifth would not
    assert_eq!((calls, bytes), (4, 4 * 4096));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // the table holds the one entry, in a buffer of at most twice the table's size
    assert_eq!((d.table().len(), d.table().size()), (1, 4096));
    assert!(d.table().buffer_capacity() <= 2 * 4096);
    // the connection carries on: the next request uses the same table
    assert_eq!(decode_within(&mut d, &[0x82, 0xbe], 8192).1, Ok(()));
}

#[test]
fn a_huge_huffman_string_leaves_no_room_behind() {
    let mut d = Decoder::new(4096);
    let mut coded = Vec::new();
    huffman::encode(&[b'0'; 100_000], &mut coded);
    let mut block = vec![0x04];
    let mut head = Vec::new();
    integer(coded.len(), 7, 0x80, &mut head);
    block.extend_from_slice(&head);
    block.extend_from_slice(&coded);
    let (fields, result) = decode_within(&mut d, &block, usize::MAX);
    assert_eq!((fields[0].1.len(), result), (100_000, Ok(())));
    assert_eq!(d.scratch.capacity(), 0);
    // a usual one keeps its room for the next
    decode(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).unwrap();
    assert!(d.scratch.capacity() > 0);
}

#[test]
fn an_oversize_block_is_still_walked_to_its_end() {
    // an error after the limit is still a compression error: the walk went on
    let mut d = Decoder::new(4096);
    let block = [bomb(100), vec![0xff, 0x00]].concat();
    assert_eq!(
        decode_within(&mut d, &block, 100).1,
        Err(HpackError::Index(127))
    );
    // entries inserted after the limit are in the table, so the peer's next reference works
    let mut d = Decoder::new(4096);
    let block = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d 5808 6e6f 2d63 6163 6865");
    // room for :method GET (42) and :scheme http (43)
    let (fields, result) = decode_within(&mut d, &block, 85);
    assert_eq!((fields.len(), result), (2, Err(HpackError::Oversize)));
    assert_eq!(entries(d.table()), owned(TABLE_2));
    assert_eq!(decode(&mut d, &[0xbe, 0xbf]).unwrap(), owned(TABLE_2));
    // strings of fields not emitted and not indexed are stepped over unread: bad Huffman there
    // is not looked at
    let mut d = Decoder::new(4096);
    assert_eq!(
        decode_within(&mut d, &[0x82, 0x00, 0x81, 0x18, 0x81, 0x18], 0).1,
        Err(HpackError::Oversize)
    );
}

#[test]
fn entries_larger_than_the_table_empty_it() {
    let mut d = Decoder::new(4096);
    decode(&mut d, &hex("400a 6375 7374 6f6d 2d6b 6579 0161")).unwrap();
    assert_eq!(d.table().len(), 1);
    // name "x", 4064 bytes of value: 4097 with the overhead (§4.4)
    let mut block = vec![0x40, 0x01, b'x'];
    integer(4064, 7, 0, &mut block);
    block.extend(std::iter::repeat_n(b'a', 4064));
    let fields = decode(&mut d, &block).unwrap();
    assert_eq!(fields[0].1.len(), 4064, "still emitted");
    assert_eq!((d.table().len(), d.table().size()), (0, 0));
    assert_eq!(decode(&mut d, &[0xbe]), Err(HpackError::Index(62)));
}

#[test]
fn a_new_entry_may_name_the_entry_it_evicts() {
    let mut d = Decoder::new(4096);
    // a 100-byte table holding "aaaa: <30 bytes>" (66)
    let value = [b'v'; 30];
    let mut block = vec![0x3f, 100 - 31, 0x40, 0x04];
    block.extend_from_slice(b"aaaa");
    block.push(30);
    block.extend_from_slice(&value);
    decode(&mut d, &block).unwrap();
    // a second one named by index 62: the first is evicted before the second goes in
    let mut block = vec![0x40 | 62, 30];
    block.extend_from_slice(&[b'w'; 30]);
    let fields = decode(&mut d, &block).unwrap();
    assert_eq!(fields, vec![(b"aaaa".to_vec(), vec![b'w'; 30])]);
    assert_eq!(entries(d.table()), fields);
}

#[test]
fn uppercase_names_are_the_callers_business() {
    let mut d = Decoder::new(4096);
    let fields = decode(
        &mut d,
        &[0x40, 0x03, b'F', b'o', b'o', 0x03, b'b', b'a', b'r'],
    )
    .unwrap();
    assert_eq!(fields, owned(&[("Foo", "bar")]));
}

#[test]
fn the_dynamic_table_buffer_stays_within_twice_the_table() {
    let mut t = DynamicTable::new(4096);
    for i in 0..10_000usize {
        let value = vec![b'v'; i % 700];
        t.insert(format!("name-{i}").as_bytes(), &value);
        assert!(t.size() <= 4096);
        assert!(t.buffer_capacity() <= 2 * 4096, "{}", t.buffer_capacity());
        let (n, v) = t.get(0).unwrap();
        assert_eq!((n, v), (format!("name-{i}").as_bytes(), &value[..]));
    }
    t.set_max_size(100);
    assert!(t.buffer_capacity() <= 200);
    t.set_max_size(0);
    assert_eq!((t.len(), t.buffer_capacity()), (0, 0));
}

/// The fuzz target's input for `blocks` (shape byte, then each block with its control byte).
fn fuzz_input(shape: u8, blocks: &[(u8, &[u8])]) -> Vec<u8> {
    let mut data = vec![shape];
    for (control, block) in blocks {
        data.push(*control);
        data.extend_from_slice(&(block.len() as u16).to_be_bytes());
        data.extend_from_slice(block);
    }
    data
}

#[test]
fn the_fuzz_check_holds_on_the_examples_and_hostile_blocks() {
    let requests = [
        hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
        hex("8286 84be 5886 a8eb 1064 9cbf"),
        hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
    ];
    let hostile: [&[u8]; 9] = [
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0x80],
        &[0xbe],
        &[0x82, 0x20],
        &[0x40, 0x0a, b'a'],
        &[0x40, 0x84, 0xff, 0xff, 0xff, 0xff, 0x01, b'v'],
        &[0x04, 0x82, 0x07, 0xff],
        &[0x3f, 0xe1, 0x1f, 0x82],
        &[0x82, 0x00, 0x81, 0x18, 0x81, 0x18],
    ];
    let bomb = bomb(10_000);
    // every table limit and list limit the target picks
    for shape in 0..64 {
        let blocks: Vec<(u8, &[u8])> = requests
            .iter()
            .enumerate()
            .map(|(i, b)| (0x80 | i as u8, &b[..]))
            .collect();
        crate::fuzz::hpack(&fuzz_input(shape, &blocks));
        for block in hostile {
            crate::fuzz::hpack(&fuzz_input(shape, &[(0, &requests[0]), (0xc5, block)]));
        }
    }
    crate::fuzz::hpack(&fuzz_input(0o64, &[(0, &bomb)]));
}
