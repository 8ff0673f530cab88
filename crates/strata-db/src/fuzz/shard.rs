//! The fuzz target `pg_shard`: sharding's readers checked against second readings written
//! apart from them.
//!
//! The first byte picks the check:
//! - 0: a Bind's parameters ([`Bound::read`]) against [`bind_oracle`], a reader written from
//!   the protocol's documentation with explicit offsets;
//! - 1: the lookup3 hash ([`hash_bytes_extended`]) against [`lookup3_oracle`], which pads the
//!   key into whole 12-byte blocks first;
//! - 2: a key value written three ways (a constant in the text, `$1` bound as text, `$1` bound
//!   as a binary int8) must be routed alike, to the shard computed here from the hash, and
//!   anything ANDed after the pinning conjunct may refuse the query but never send it to
//!   another shard;
//! - 4: a query's text (up to a NUL, where a Query message's text ends) that the pooler's own
//!   reading (`client::bracket`) finds a plain transaction start or end, which it answers for
//!   the server, must be one to PostgreSQL's parser too: one `TransactionStmt` of that kind,
//!   with no options and no `AND CHAIN`;
//! - anything else: arbitrary SQL, routed without a panic, only to shards that exist.

use strata_config::{KeyType, ShardRule, ShardedTable};

use crate::client::{bracket, Bracket};
use crate::shard::{hash_bytes_extended, hash_int, hash_partition, Bound, Route, Sharding};

/// The shards of the fuzzed listener.
const SHARDS: usize = 3;

fn sharding() -> Sharding {
    Sharding::for_tables(
        vec![
            ShardedTable {
                table: "users".into(),
                column: "id".into(),
                key_type: KeyType::Integer,
                rule: ShardRule::Hash,
            },
            ShardedTable {
                table: "tags".into(),
                column: "k".into(),
                key_type: KeyType::Text,
                rule: ShardRule::Hash,
            },
        ],
        SHARDS,
    )
}

/// The `pg_shard` fuzz target (see the module's doc).
pub fn pg_shard(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which {
        0 => {
            let ours = Bound::read(rest).map(|b| b.parts());
            assert_eq!(ours, bind_oracle(rest), "Bind parameters of {rest:?}");
        }
        1 => {
            let (seed, key) = match rest.split_first_chunk::<8>() {
                Some((s, k)) => (u64::from_le_bytes(*s), k),
                None => (0, rest),
            };
            assert_eq!(
                hash_bytes_extended(key, seed),
                lookup3_oracle(key, seed),
                "lookup3 of {key:?} with seed {seed}"
            );
        }
        2 => {
            let Some((v, junk)) = rest.split_first_chunk::<8>() else {
                return;
            };
            let v = i64::from_le_bytes(*v);
            pinned_alike(v, &String::from_utf8_lossy(junk));
        }
        4 => {
            // a query's text ends at its NUL: the text before one, read alone and as the
            // Query message's body (with the NUL), alike
            let text = rest.split(|b| *b == 0).next().unwrap_or(rest);
            let said = bracket(text);
            assert_eq!(said, bracket(&[text, &[0]].concat()), "{text:?}");
            if let (Some(said), Ok(sql)) = (said, std::str::from_utf8(text)) {
                bracket_alike(sql, said);
            }
        }
        _ => {
            let sql = String::from_utf8_lossy(rest);
            if let Route::Shard(s) = sharding().route(sql.as_bytes(), None, true) {
                assert!(s < SHARDS, "{sql}: shard {s}");
            }
        }
    }
}

/// What PostgreSQL's parser makes of `sql`, which the pooler read as `said`.
fn bracket_alike(sql: &str, said: Bracket) {
    let json = strata_pgparse::parse_json(sql)
        .unwrap_or_else(|e| panic!("{sql:?} read as {said:?}; PostgreSQL's parser: {e}"));
    let kind = match said {
        Bracket::Begin { start: false } => "TRANS_STMT_BEGIN",
        Bracket::Begin { start: true } => "TRANS_STMT_START",
        Bracket::End { rollback: false } => "TRANS_STMT_COMMIT",
        Bracket::End { rollback: true } => "TRANS_STMT_ROLLBACK",
    };
    let one = format!("{{\"stmt\":{{\"TransactionStmt\":{{\"kind\":\"{kind}\"");
    assert!(
        json.matches("{\"stmt\":").count() == 1
            && json.contains(&one)
            && !json.contains("\"options\"")
            && !json.contains("\"chain\":true"),
        "{sql:?} read as {said:?}; PostgreSQL's parser: {json}"
    );
}

/// One key value, three ways, and with `junk` ANDed after it.
fn pinned_alike(v: i64, junk: &str) {
    let s = sharding();
    let want = Route::Shard(hash_partition(hash_int(v), SHARDS));
    let text = v.to_string();
    let binary = v.to_be_bytes();
    let as_text = bind_body(&[Some(text.as_bytes())], false);
    let as_binary = bind_body(&[Some(&binary)], true);
    let routes = [
        s.route(
            format!("select * from users where id = {v}").as_bytes(),
            None,
            true,
        ),
        s.route(
            b"select * from users where id = $1",
            Bound::read(&as_text).as_ref(),
            true,
        ),
        s.route(
            b"select * from users where id = $1",
            Bound::read(&as_binary).as_ref(),
            true,
        ),
        s.route(
            format!("update users set name = 'x' where {v} = id").as_bytes(),
            None,
            true,
        ),
    ];
    for r in &routes {
        assert_eq!(r, &want, "key {v}");
    }
    // whatever follows, the first conjunct pins the query: it goes there or nowhere
    let sql = format!("select * from users where id = {v} and ({junk})");
    match s.route(sql.as_bytes(), None, true) {
        r if r == want => {}
        Route::Refused(_) => {}
        other => panic!("{sql}: {other:?}, not {want:?}"),
    }
}

/// A Bind body after its names: no format codes, or one for all.
fn bind_body(values: &[Option<&[u8]>], binary: bool) -> Vec<u8> {
    let mut b = Vec::new();
    if binary {
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
    } else {
        b.extend_from_slice(&0u16.to_be_bytes());
    }
    b.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        match v {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    b
}

/// Parameters as the protocol documents Bind after its two names: Int16 C format codes, C
/// Int16s; Int16 N values, each an Int32 length (-1 for NULL) then its bytes. One code
/// applies to all; none means text; with C codes otherwise, code i is value i's. Returns
/// (value or NULL, binary) for each, None when the bytes run out.
pub fn bind_oracle(b: &[u8]) -> Option<Vec<(Option<Vec<u8>>, bool)>> {
    fn int16(b: &[u8], at: usize) -> Option<i16> {
        Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }
    let mut at = 0;
    let c = int16(b, at)?;
    at += 2;
    let mut codes = Vec::new();
    for _ in 0..c.max(0) {
        codes.push(int16(b, at)?);
        at += 2;
    }
    let n = int16(b, at)?;
    at += 2;
    let mut out = Vec::new();
    for i in 0..n.max(0) as usize {
        let len = i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        let value = if len == -1 || len < 0 {
            None
        } else {
            let v = b.get(at..at + len as usize)?.to_vec();
            at += len as usize;
            Some(v)
        };
        let code = match codes.len() {
            0 => 0,
            1 => codes[0],
            _ => codes.get(i).copied().unwrap_or(0),
        };
        out.push((value, code == 1));
    }
    Some(out)
}

/// lookup3 as PostgreSQL's `hash_bytes_extended` computes it, read another way: the seed as a
/// first block when not zero, the key zero-padded to whole 12-byte blocks whose last one (the
/// remainder, or a full 12 bytes, or nothing) is added with its third word shifted past the
/// length byte, then the final mix.
pub fn lookup3_oracle(key: &[u8], seed: u64) -> u64 {
    fn rot(x: u32, k: u32) -> u32 {
        x.rotate_left(k)
    }
    let mut s = [0x9e37_79b9u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(3_923_095); 3];
    let mix = |s: &mut [u32; 3]| {
        let [mut a, mut b, mut c] = *s;
        for (x, y, z, k) in [
            (0, 2, 1, 4),
            (1, 0, 2, 6),
            (2, 1, 0, 8),
            (0, 2, 1, 16),
            (1, 0, 2, 19),
            (2, 1, 0, 4),
        ] {
            let mut v = [a, b, c];
            v[x] = v[x].wrapping_sub(v[y]);
            v[x] ^= rot(v[y], k);
            v[y] = v[y].wrapping_add(v[z]);
            [a, b, c] = v;
        }
        *s = [a, b, c];
    };
    if seed != 0 {
        s[0] = s[0].wrapping_add((seed >> 32) as u32);
        s[1] = s[1].wrapping_add(seed as u32);
        mix(&mut s);
    }
    let full = key.len() / 12;
    for block in key.chunks_exact(12).take(full) {
        for (i, w) in block.chunks_exact(4).enumerate() {
            s[i] = s[i].wrapping_add(u32::from_le_bytes(w.try_into().unwrap_or([0; 4])));
        }
        mix(&mut s);
    }
    let mut tail = [0u8; 12];
    let rest = &key[full * 12..];
    tail[..rest.len()].copy_from_slice(rest);
    let word = |i: usize| u32::from_le_bytes([tail[i], tail[i + 1], tail[i + 2], tail[i + 3]]);
    s[0] = s[0].wrapping_add(word(0));
    s[1] = s[1].wrapping_add(word(4));
    s[2] = s[2].wrapping_add(word(8) << 8);
    let [mut a, mut b, mut c] = s;
    for (x, y, k) in [
        (2, 1, 14),
        (0, 2, 11),
        (1, 0, 25),
        (2, 1, 16),
        (0, 2, 4),
        (1, 0, 14),
        (2, 1, 24),
    ] {
        let mut v = [a, b, c];
        v[x] ^= v[y];
        v[x] = v[x].wrapping_sub(rot(v[y], k));
        [a, b, c] = v;
    }
    (u64::from(b) << 32) | u64::from(c)
}
