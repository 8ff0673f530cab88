//! A second HPACK decoder, written only to check the first (`http::hpack`): RFC 7541 read as
//! plainly as it is written, no shared code, no care for speed. Integers are summed in 64
//! bits; Huffman strings are read a bit at a time against codes rebuilt from the code lengths
//! of Appendix B (the code is canonical: the lengths are all it takes); the static table is
//! Appendix A as text; the dynamic table is a list of owned pairs, its size summed afresh.
//!
//! Where the RFC leaves room it decides as `http::hpack` documents: an integer may have at
//! most 4 continuation bytes; the table starts at 4096 bytes, and size updates may go up to
//! the limit given; once the list is past its limit, no further field is emitted, and the
//! strings of fields that do not go into the table are stepped over unread.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A field or a table entry: name, value.
pub type Field = (Vec<u8>, Vec<u8>);

/// How a block ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every field emitted.
    Whole,
    /// Read to its end, but the list went past its limit.
    Oversize,
    /// Not HPACK: the connection ends.
    Refused(Why),
}

/// Why a block is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The block ends inside an integer or a string.
    Truncated,
    /// An integer of more than 4 continuation bytes.
    Integer,
    /// An index that names no entry.
    Index(usize),
    /// EOS inside a Huffman string.
    Eos,
    /// Huffman padding longer than 7 bits, or not the start of EOS.
    Padding,
    /// A size update above the limit, to this size.
    TableSize(usize),
    /// A size update after a field.
    LateTableSize,
}

/// One connection's decoding context.
pub struct Decoder {
    /// Newest first.
    pub table: Vec<Field>,
    pub max_size: usize,
    limit: usize,
}

impl Decoder {
    /// `limit`: the SETTINGS_HEADER_TABLE_SIZE advertised.
    pub fn new(limit: usize) -> Self {
        Decoder {
            table: Vec::new(),
            max_size: 4096,
            limit,
        }
    }

    /// The table's size as §4.1 counts it.
    pub fn size(&self) -> usize {
        self.table.iter().map(|(n, v)| n.len() + v.len() + 32).sum()
    }

    /// The fields a block holds, in order, as far as they are emitted, and how it ended.
    pub fn decode(&mut self, block: &[u8], max_list: usize) -> (Vec<Field>, Outcome) {
        let mut list = List {
            fields: Vec::new(),
            size: 0,
            max: max_list as u128,
            over: false,
        };
        let outcome = match self.read(block, &mut list) {
            Err(why) => Outcome::Refused(why),
            Ok(()) if list.over => Outcome::Oversize,
            Ok(()) => Outcome::Whole,
        };
        (list.fields, outcome)
    }

    fn read(&mut self, block: &[u8], list: &mut List) -> Result<(), Why> {
        let mut at = 0;
        let mut after_a_field = false;
        while at < block.len() {
            let first = block[at];
            if first >> 7 == 1 {
                // 6.1
                let index = integer(block, &mut at, 7)?;
                let (name, value) = self.entry(index)?;
                list.emit(name, value);
                after_a_field = true;
            } else if first >> 6 == 1 {
                // 6.2.1
                let index = integer(block, &mut at, 6)?;
                let name = match index {
                    0 => string(block, &mut at, true)?.unwrap_or_default(),
                    _ => self.entry(index)?.0,
                };
                let value = string(block, &mut at, true)?.unwrap_or_default();
                self.add(name.clone(), value.clone());
                list.emit(name, value);
                after_a_field = true;
            } else if first >> 5 == 1 {
                // 6.3
                if after_a_field {
                    return Err(Why::LateTableSize);
                }
                let size = integer(block, &mut at, 5)?;
                if size > self.limit {
                    return Err(Why::TableSize(size));
                }
                self.max_size = size;
                while self.size() > self.max_size {
                    self.table.pop();
                }
            } else {
                // 6.2.2 and 6.2.3
                let index = integer(block, &mut at, 4)?;
                let read = !list.over;
                let name = match index {
                    0 => string(block, &mut at, read)?,
                    _ => Some(self.entry(index)?.0),
                };
                let value = string(block, &mut at, read)?;
                if let (Some(name), Some(value)) = (name, value) {
                    list.emit(name, value);
                }
                after_a_field = true;
            }
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<Field, Why> {
        if index == 0 {
            return Err(Why::Index(0));
        }
        if index <= 61 {
            let line = STATIC.lines().nth(index - 1).ok_or(Why::Index(index))?;
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            return Ok((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
        self.table.get(index - 62).cloned().ok_or(Why::Index(index))
    }

    /// §4.4: evict from the end until the new entry fits, or the table is empty; the entry
    /// goes in if it fits.
    fn add(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + 32;
        while !self.table.is_empty() && self.size() + size > self.max_size {
            self.table.pop();
        }
        if size <= self.max_size {
            self.table.insert(0, (name, value));
        }
    }
}

struct List {
    fields: Vec<Field>,
    size: u128,
    max: u128,
    over: bool,
}

impl List {
    fn emit(&mut self, name: Vec<u8>, value: Vec<u8>) {
        if self.over {
            return;
        }
        let size = (name.len() + value.len() + 32) as u128;
        if self.size + size > self.max {
            self.over = true;
        } else {
            self.size += size;
            self.fields.push((name, value));
        }
    }
}

/// §5.1, from the byte at `at` on.
fn integer(block: &[u8], at: &mut usize, prefix: u32) -> Result<usize, Why> {
    let all_ones = (1u64 << prefix) - 1;
    let mut value = u64::from(*block.get(*at).ok_or(Why::Truncated)?) & all_ones;
    *at += 1;
    if value < all_ones {
        return Ok(value as usize);
    }
    for k in 0..4 {
        let b = *block.get(*at).ok_or(Why::Truncated)?;
        *at += 1;
        value += u64::from(b & 127) << (7 * k);
        if b < 128 {
            return Ok(value as usize);
        }
    }
    Err(Why::Integer)
}

/// §5.2: the string's bytes, decoded when `read`; stepped over otherwise.
fn string(block: &[u8], at: &mut usize, read: bool) -> Result<Option<Vec<u8>>, Why> {
    let coded = *block.get(*at).ok_or(Why::Truncated)? >= 128;
    let len = integer(block, at, 7)?;
    if len > block.len() - *at {
        return Err(Why::Truncated);
    }
    let raw = &block[*at..*at + len];
    *at += len;
    if !read {
        return Ok(None);
    }
    if coded {
        huffman(raw).map(Some)
    } else {
        Ok(Some(raw.to_vec()))
    }
}

fn huffman(coded: &[u8]) -> Result<Vec<u8>, Why> {
    let codes = codes();
    let mut out = Vec::new();
    let mut code = 0u32;
    let mut len = 0u8;
    for i in 0..coded.len() * 8 {
        let bit = (coded[i / 8] >> (7 - i % 8)) & 1;
        code = (code << 1) | u32::from(bit);
        len += 1;
        match codes.get(&(len, code)) {
            Some(256) => return Err(Why::Eos),
            Some(&symbol) => {
                out.push(symbol as u8);
                code = 0;
                len = 0;
            }
            None => {}
        }
    }
    // more than 7 bits, or not the start of EOS
    if len > 7 || code != (1 << len) - 1 {
        return Err(Why::Padding);
    }
    Ok(out)
}

/// (length, code) to symbol. Appendix B's code is canonical: taking the symbols by length,
/// then by value, each code is the one before plus one, shifted left as the length grows.
fn codes() -> &'static HashMap<(u8, u32), u16> {
    static CODES: OnceLock<HashMap<(u8, u32), u16>> = OnceLock::new();
    CODES.get_or_init(|| {
        let mut symbols: Vec<u16> = (0..257).collect();
        symbols.sort_by_key(|&s| (LENGTHS[usize::from(s)], s));
        let mut codes = HashMap::new();
        let mut code = 0u32;
        let mut last_len = LENGTHS[usize::from(symbols[0])];
        for (k, &s) in symbols.iter().enumerate() {
            let len = LENGTHS[usize::from(s)];
            if k > 0 {
                code = (code + 1) << (len - last_len);
            }
            last_len = len;
            codes.insert((len, code), s);
        }
        codes
    })
}

/// Appendix B: each symbol's code length in bits, symbol 0 first, EOS (256) last.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

/// Appendix A, entry 1 first: the name, then the value after a space when it has one.
const STATIC: &str = "\
:authority
:method GET
:method POST
:path /
:path /index.html
:scheme http
:scheme https
:status 200
:status 204
:status 206
:status 304
:status 400
:status 404
:status 500
accept-charset
accept-encoding gzip, deflate
accept-language
accept-ranges
accept
access-control-allow-origin
age
allow
authorization
cache-control
content-disposition
content-encoding
content-language
content-length
content-location
content-range
content-type
cookie
date
etag
expect
expires
from
host
if-match
if-modified-since
if-none-match
if-range
if-unmodified-since
last-modified
link
location
max-forwards
proxy-authenticate
proxy-authorization
range
referer
refresh
retry-after
server
set-cookie
strict-transport-security
transfer-encoding
user-agent
vary
via
www-authenticate";
