//! Which shard a query goes to: the keys PostgreSQL's parser finds it pins (strata-pgparse),
//! their values (constants in the text, parameters from Bind), and the rule of each sharded
//! table.
//!
//! The hash rule is PostgreSQL's own `PARTITION BY HASH`: with N shards, shard `i` holds
//! exactly the keys a partition `FOR VALUES WITH (MODULUS N, REMAINDER i)` would, so the
//! split can be checked (or rebuilt) inside PostgreSQL itself. Its pieces: Bob Jenkins'
//! lookup3 hash (`hash_bytes_extended` in PostgreSQL's `hashfn.c`) seeded with the partition
//! seed, integers folded to 32 bits as `hashint8extended` does (so `smallint`, `integer` and
//! `bigint` keys of equal value hash alike), and the one-column combine of
//! `compute_partition_hash_value`.

use std::sync::Arc;

use strata_config::{DatabaseListener, KeyType, ShardRule, ShardedTable};
use strata_pgparse::{KeyColumn, KeyValue, Keys};

/// `HASH_PARTITION_SEED`: the seed PostgreSQL gives the hash functions of partition keys.
const PARTITION_SEED: u64 = 0x7A5B_2236_7996_DCFD;

/// One step of lookup3's mixing.
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// lookup3's final mixing of (a, b, c).
fn finish(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// The little-endian word of up to 4 bytes (missing ones zero).
fn word(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .enumerate()
        .fold(0, |w, (i, b)| w | (u32::from(*b) << (8 * i)))
}

/// lookup3 over `key` with a 64-bit `seed`, both halves of the result (PostgreSQL's
/// `hash_bytes_extended` on a little-endian machine, which is what every PostgreSQL on
/// x86-64 and arm64 computes).
pub fn hash_bytes_extended(key: &[u8], seed: u64) -> u64 {
    let start = 0x9e37_79b9u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (start, start, start);
    if seed != 0 {
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        mix(&mut a, &mut b, &mut c);
    }
    let mut rest = key;
    while rest.len() >= 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    // the last 11 bytes at most: c's lowest byte is the length's, so c takes them from its
    // second byte up
    a = a.wrapping_add(word(&rest[..rest.len().min(4)]));
    if rest.len() > 4 {
        b = b.wrapping_add(word(&rest[4..rest.len().min(8)]));
    }
    if rest.len() > 8 {
        c = c.wrapping_add(word(&rest[8..]) << 8);
    }
    finish(&mut a, &mut b, &mut c);
    (u64::from(b) << 32) | u64::from(c)
}

/// lookup3 of one 32-bit value with a seed (`hash_bytes_uint32_extended`).
fn hash_u32_extended(k: u32, seed: u64) -> u64 {
    let start = 0x9e37_79b9u32.wrapping_add(4).wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (start, start, start);
    if seed != 0 {
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        mix(&mut a, &mut b, &mut c);
    }
    a = a.wrapping_add(k);
    finish(&mut a, &mut b, &mut c);
    (u64::from(b) << 32) | u64::from(c)
}

/// What an integer key hashes to as a partition key (`hashint8extended`: the high half
/// folded into the low one, so values that fit 32 bits hash as `integer` does).
pub fn hash_int(v: i64) -> u64 {
    hash_int_seeded(v, PARTITION_SEED)
}

fn hash_int_seeded(v: i64, seed: u64) -> u64 {
    let (lo, hi) = (v as u32, (v >> 32) as u32);
    let folded = if v >= 0 { lo ^ hi } else { lo ^ !hi };
    hash_u32_extended(folded, seed)
}

/// What a text key hashes to as a partition key (`hashtextextended` under a deterministic
/// collation: its bytes).
pub fn hash_text(v: &[u8]) -> u64 {
    hash_bytes_extended(v, PARTITION_SEED)
}

/// The remainder of a one-column partition key's hash by `modulus`
/// (`compute_partition_hash_value`'s combine from zero).
pub fn hash_partition(hash: u64, modulus: usize) -> usize {
    let combined = hash.wrapping_add(0x49a0_f4dd_15e5_a8e3);
    (combined % modulus as u64) as usize
}

/// A key's value, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Int(i64),
    Text(Vec<u8>),
}

/// The parameters of one Bind: their values (None for NULL) and whether each is binary.
#[derive(Debug, Default)]
pub struct Bound<'a> {
    values: Vec<Option<&'a [u8]>>,
    binary: Vec<bool>,
    /// The types the statement's Parse declared (OIDs; 0 or missing: left to the server).
    types: Vec<u32>,
}

/// `int8`, `int2`, `int4`: the binary integers an integer key may come as.
const INTEGER_OIDS: [u32; 3] = [20, 21, 23];
/// `text`, `varchar`: the binary strings a text key may come as.
const TEXT_OIDS: [u32; 2] = [25, 1043];

impl<'a> Bound<'a> {
    /// Reads a Bind message's body after its portal and statement names.
    pub fn read(mut rest: &'a [u8]) -> Option<Bound<'a>> {
        let mut take = |n: usize| -> Option<&'a [u8]> {
            let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
            rest = tail;
            Some(head)
        };
        let int16 = |b: &[u8]| i16::from_be_bytes([b[0], b[1]]);
        let formats = int16(take(2)?).max(0) as usize;
        let mut codes = Vec::with_capacity(formats);
        for _ in 0..formats {
            codes.push(int16(take(2)?) == 1);
        }
        let count = int16(take(2)?).max(0) as usize;
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            let len = take(4)?;
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            values.push(if len < 0 {
                None
            } else {
                Some(take(len as usize)?)
            });
        }
        let binary = (0..count)
            .map(|i| match codes.as_slice() {
                [] => false,
                [one] => *one,
                many => many.get(i).copied().unwrap_or(false),
            })
            .collect();
        Some(Bound {
            values,
            binary,
            types: Vec::new(),
        })
    }

    /// The parameters with the types their statement's Parse declared.
    pub fn with_types(mut self, types: Vec<u32>) -> Self {
        self.types = types;
        self
    }

    /// Each parameter's value (None for NULL) and whether it is binary.
    pub fn parts(&self) -> Vec<(Option<Vec<u8>>, bool)> {
        self.values
            .iter()
            .zip(&self.binary)
            .map(|(v, b)| (v.map(<[u8]>::to_vec), *b))
            .collect()
    }
}

/// Where a query goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Any shard can run it (it names no sharded table, or pins keys only through
    /// parameters not bound yet, or only to NULL).
    Any,
    /// This shard.
    Shard(usize),
    /// A lone BEGIN: the transaction's shard is its first statement's.
    Begin,
    /// A lone COMMIT or ROLLBACK.
    End {
        /// Whether it rolls back.
        rollback: bool,
    },
    /// No one shard can run it; why.
    Refused(String),
}

/// The sharded tables of a listener and its shard count.
#[derive(Debug)]
pub struct Sharding {
    tables: Vec<ShardedTable>,
    shards: usize,
}

impl Sharding {
    /// The sharding of `tables` over `shards` shards.
    pub fn for_tables(tables: Vec<ShardedTable>, shards: usize) -> Sharding {
        Sharding { tables, shards }
    }

    /// The sharding of `config`, if it has sharded tables.
    pub fn of(config: &DatabaseListener) -> Option<Arc<Sharding>> {
        (!config.sharded_tables.is_empty()).then(|| {
            Arc::new(Sharding::for_tables(
                config.sharded_tables.clone(),
                config.shards.len(),
            ))
        })
    }

    /// Where `sql` goes, with its parameters from a Bind, if one came.
    /// `text` is the query's bytes, as the client sent them; `plain` says the session reads
    /// text as the parser does (client_encoding UTF8, standard_conforming_strings on), so
    /// that the keys read are the values the server will store.
    pub fn route(&self, text: &[u8], bound: Option<&Bound<'_>>, plain: bool) -> Route {
        let columns: Vec<KeyColumn<'_>> = self
            .tables
            .iter()
            .map(|t| KeyColumn {
                table: &t.table,
                column: &t.column,
            })
            .collect();
        let keys = std::str::from_utf8(text)
            .map_err(|_| "it is not UTF-8".to_string())
            .and_then(|sql| {
                strata_pgparse::shard_keys(sql, &columns).map_err(|e| e.message.clone())
            });
        let keys = match keys {
            Ok(keys) => keys,
            // what can't be read goes to a server, which says what is wrong with it, unless
            // it may name a sharded table: then it could run on the wrong shard
            Err(why) if self.may_name(text) => {
                return Route::Refused(format!("the query's shard can't be told: {why}"))
            }
            Err(_) => return Route::Any,
        };
        let pins = match keys {
            Keys::Unsharded => return Route::Any,
            Keys::Begin => return Route::Begin,
            Keys::End { rollback } => return Route::End { rollback },
            _ if !plain => {
                return Route::Refused(
                    "sharded tables are read with client_encoding UTF8 and \
                     standard_conforming_strings on (the keys the pooler reads must be the \
                     values the server stores)"
                        .into(),
                )
            }
            Keys::Unpinned(why) => {
                return Route::Refused(format!("the query's shard can't be told: {why}"))
            }
            Keys::Pinned(pins) => pins,
        };
        let mut found: Option<usize> = None;
        for pin in pins {
            let table = &self.tables[pin.table];
            let key = match self.key(table, &pin.value, bound) {
                Ok(Some(k)) => k,
                Ok(None) => continue,
                Err(why) => return Route::Refused(why),
            };
            let shard = match self.shard_of(table, &key) {
                Ok(s) => s,
                Err(why) => return Route::Refused(why),
            };
            match found {
                Some(f) if f != shard => {
                    return Route::Refused(format!(
                        "the query's keys are on shards {} and {}: a query runs on one shard",
                        f.min(shard),
                        f.max(shard)
                    ))
                }
                _ => found = Some(shard),
            }
        }
        found.map_or(Route::Any, Route::Shard)
    }

    /// Whether `text` may name one of the sharded tables (any case, any quoting).
    fn may_name(&self, text: &[u8]) -> bool {
        let lower = text.to_ascii_lowercase();
        self.tables.iter().any(|t| {
            let name = t.table.to_ascii_lowercase();
            lower
                .windows(name.len().max(1))
                .any(|w| w == name.as_bytes())
        })
    }

    /// The typed value of a pin; None when it pins nothing known (NULL, or a parameter with
    /// no Bind yet).
    fn key(
        &self,
        table: &ShardedTable,
        value: &KeyValue,
        bound: Option<&Bound<'_>>,
    ) -> Result<Option<Key>, String> {
        let name = || format!("{}.{}", table.table, table.column);
        let (bytes, binary): (std::borrow::Cow<'_, [u8]>, bool) = match value {
            KeyValue::Null => return Ok(None),
            KeyValue::Int(i) => match table.key_type {
                KeyType::Integer => return Ok(Some(Key::Int(*i))),
                KeyType::Text => return Ok(Some(Key::Text(i.to_string().into_bytes()))),
            },
            KeyValue::Text(t) => (t.as_bytes().into(), false),
            KeyValue::Param(n) => {
                let Some(bound) = bound else {
                    return Ok(None);
                };
                match bound.values.get(n.wrapping_sub(1)) {
                    Some(Some(v)) if bound.binary[n - 1] => {
                        // a binary value is read by its declared type: one the key's type does
                        // not read alike (a float8 for an integer key) is refused
                        let declared = bound.types.get(n - 1).copied().unwrap_or(0);
                        let fits = match table.key_type {
                            KeyType::Integer => INTEGER_OIDS.contains(&declared),
                            KeyType::Text => TEXT_OIDS.contains(&declared),
                        };
                        if declared != 0 && !fits {
                            return Err(format!(
                                "the key {} came as a binary parameter of type {declared} (an OID), which it is not read as",
                                name()
                            ));
                        }
                        ((*v).into(), true)
                    }
                    Some(Some(v)) => ((*v).into(), false),
                    Some(None) => return Ok(None),
                    None => {
                        return Err(format!(
                            "the key {} is ${n}, which Bind did not give",
                            name()
                        ))
                    }
                }
            }
        };
        match table.key_type {
            KeyType::Text => Ok(Some(Key::Text(bytes.into_owned()))),
            KeyType::Integer if binary => match bytes.len() {
                2 => Ok(Some(Key::Int(i64::from(i16::from_be_bytes([
                    bytes[0], bytes[1],
                ]))))),
                4 => Ok(Some(Key::Int(i64::from(i32::from_be_bytes([
                    bytes[0], bytes[1], bytes[2], bytes[3],
                ]))))),
                8 => Ok(Some(Key::Int(i64::from_be_bytes(
                    bytes[..8].try_into().map_err(|_| name())?,
                )))),
                n => Err(format!(
                    "the key {} came as {n} binary bytes, not an integer",
                    name()
                )),
            },
            KeyType::Integer => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .map(|i| Some(Key::Int(i)))
                .ok_or_else(|| {
                    format!(
                        "the key {} is \"{}\", not an integer",
                        name(),
                        String::from_utf8_lossy(&bytes)
                    )
                }),
        }
    }

    /// The shard of `key` in `table`.
    fn shard_of(&self, table: &ShardedTable, key: &Key) -> Result<usize, String> {
        match (&table.rule, key) {
            (ShardRule::Hash, Key::Int(i)) => Ok(hash_partition(hash_int(*i), self.shards)),
            (ShardRule::Hash, Key::Text(t)) => Ok(hash_partition(hash_text(t), self.shards)),
            (ShardRule::Range(ranges), Key::Int(i)) => ranges
                .iter()
                .find(|r| r.from.is_none_or(|f| *i >= f) && r.to.is_none_or(|t| *i < t))
                .map(|r| r.shard)
                .ok_or_else(|| {
                    format!(
                        "no shard holds the key {i} of {}.{} (no range has it)",
                        table.table, table.column
                    )
                }),
            (ShardRule::Range(_), Key::Text(_)) => Err(format!(
                "{}.{} is split by integer ranges",
                table.table, table.column
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup3_matches_postgresql() {
        // what PostgreSQL 15 on x86-64 answers to: SELECT hashtextextended('', 0),
        // hashtextextended('hello world, this is long', 7), hashtextextended('abcdefghij', 0),
        // hashint8extended(42, 0), hashint8extended(-5000000000, 8816678312871386365),
        // hashint4extended(42, 0) (the end-to-end test checks placement against a real
        // partitioned table as well)
        let h = |v: u64| v as i64;
        assert_eq!(h(hash_bytes_extended(b"", 0)), -6939563903564495251);
        assert_eq!(
            h(hash_bytes_extended(b"hello world, this is long", 7)),
            -5594443004963368812
        );
        assert_eq!(
            h(hash_bytes_extended(b"abcdefghij", 0)),
            -3183301415634409076
        );
        assert_eq!(h(hash_int_seeded(42, 0)), 8010225493015854792);
        assert_eq!(h(hash_u32_extended(42, 0)), 8010225493015854792);
        assert_eq!(
            h(hash_int_seeded(-5_000_000_000, PARTITION_SEED)),
            -4482100988868492312
        );
    }

    #[test]
    fn a_binary_parameter_is_read_by_its_declared_type() {
        let sharding = Sharding::for_tables(
            vec![ShardedTable {
                table: "users".into(),
                column: "id".into(),
                key_type: KeyType::Integer,
                rule: ShardRule::Hash,
            }],
            2,
        );
        let mut body = vec![0, 1, 0, 1, 0, 1, 0, 0, 0, 8];
        body.extend_from_slice(&42.0f64.to_be_bytes());
        body.extend_from_slice(&[0, 0]);
        let sql = b"select * from users where id = $1";
        let route = |types: Vec<u32>| {
            let bound = Bound::read(&body).unwrap().with_types(types);
            sharding.route(sql, Some(&bound), true)
        };
        // declared float8: not read as an integer
        assert!(
            matches!(route(vec![701]), Route::Refused(_)),
            "{:?}",
            route(vec![701])
        );
        // declared int8, or left to the server (which reads 8 bytes for an int8 column)
        let as_int = hash_partition(hash_int(i64::from_be_bytes(42.0f64.to_be_bytes())), 2);
        assert_eq!(route(vec![20]), Route::Shard(as_int));
        assert_eq!(route(vec![]), Route::Shard(as_int));
    }

    #[test]
    fn bind_parameters_are_read_with_their_formats() {
        // no format codes, two parameters: "7" and NULL
        let body = [0, 0, 0, 2, 0, 0, 0, 1, b'7', 0xff, 0xff, 0xff, 0xff, 0, 0];
        let b = Bound::read(&body).unwrap();
        assert_eq!(b.values, [Some(&b"7"[..]), None]);
        assert_eq!(b.binary, [false, false]);
        // one binary format code for all: an int8
        let mut body = vec![0, 1, 0, 1, 0, 1, 0, 0, 0, 8];
        body.extend_from_slice(&300i64.to_be_bytes());
        let b = Bound::read(&body).unwrap();
        assert_eq!(b.binary, [true]);
        // cut short: nothing
        assert!(Bound::read(&body[..12]).is_none());
    }
}
