//! HPACK (RFC 7541), the header compression of HTTP/2, as a pure codec: a header block in, the
//! fields out, and back. No I/O here: the framing layer joins HEADERS and CONTINUATION frames
//! into one block first, and keeps one [`Decoder`] and one [`Encoder`] per connection.

mod huffman;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use huffman::HuffmanError;
pub(crate) use table::DynamicTable;

use table::{find_static, StaticMatch, ENTRY_OVERHEAD, STATIC};

/// SETTINGS_HEADER_TABLE_SIZE until a peer says otherwise (RFC 9113 §6.5.2): the size both
/// ends' dynamic tables start at.
pub(crate) const DEFAULT_TABLE_SIZE: usize = 4096;

/// The most continuation bytes an integer may have: 28 bits on top of the prefix, more than any
/// index, length or table size a block can carry. RFC 7541 §5.1 lets a decoder refuse integers
/// past its limits; refusing by length means no arithmetic can wrap.
const MAX_CONTINUATION: usize = 4;

/// The most room a decoder keeps for Huffman-decoded strings between blocks: more than usual
/// fields take, while a block with a huge string does not leave its connection holding as much.
const SCRATCH_KEPT: usize = 16 * 1024;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HpackError {
    /// The fields add up to more than the list limit. The whole block was read and the dynamic
    /// table is in step with the peer's: refuse the request (431) and carry on with the
    /// connection.
    #[error("header list larger than the limit")]
    Oversize,
    /// The block ends inside a field.
    #[error("header block cut short")]
    Truncated,
    /// An integer runs on past the most continuation bytes accepted.
    #[error("integer of more than {MAX_CONTINUATION} continuation bytes")]
    Integer,
    /// An index is 0, or past the end of the dynamic table.
    #[error("index {0} names no table entry")]
    Index(usize),
    #[error("{0}")]
    Huffman(#[from] HuffmanError),
    /// A dynamic table size update above the SETTINGS_HEADER_TABLE_SIZE we advertised.
    #[error("dynamic table size update to {size}, above the {limit} advertised")]
    TableSize { size: usize, limit: usize },
    /// A dynamic table size update after a field: §4.2 allows them only at a block's start.
    #[error("dynamic table size update after a field")]
    LateTableSize,
}

impl HpackError {
    /// Whether the connection must be closed with COMPRESSION_ERROR (RFC 9113 §4.3): every
    /// error but [`Oversize`](Self::Oversize), as the decoder is out of step with the peer.
    pub(crate) fn is_compression_error(self) -> bool {
        self != HpackError::Oversize
    }
}

/// The decoding half of a connection's HPACK context: the peer's encoder and this dynamic table
/// change together, block after block.
#[derive(Debug)]
pub(crate) struct Decoder {
    table: DynamicTable,
    /// The SETTINGS_HEADER_TABLE_SIZE we advertise.
    limit: usize,
    /// The Huffman-decoded strings (and copied names) of the field being read; its room is kept
    /// from field to field and block to block.
    scratch: Vec<u8>,
}

/// The kind of literal field representation being read (§6.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Literal {
    /// With incremental indexing: the field goes into the dynamic table.
    Indexed,
    /// Without indexing, or never indexed: to the caller they are the same.
    NotIndexed,
}

impl Decoder {
    /// `table_limit`: the SETTINGS_HEADER_TABLE_SIZE we advertise; dynamic table size updates
    /// above it are errors.
    ///
    /// The table itself starts at the protocol's 4096 bytes, as the peer's encoder does: a
    /// client sends its first requests before our SETTINGS reach it. A peer must announce a
    /// smaller limit with a size update in its first block after acknowledging our SETTINGS
    /// (§4.2), so until then the table may hold `max(table_limit, 4096)` bytes.
    pub(crate) fn new(table_limit: usize) -> Self {
        Decoder {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE),
            limit: table_limit,
            scratch: Vec::new(),
        }
    }

    /// The dynamic table as the blocks decoded so far left it.
    pub(crate) fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Decodes one complete header block (after CONTINUATION frames are joined), calling
    /// `field(name, value)` for each field in order. Names and values are passed as sent:
    /// judging them (uppercase, pseudo-fields, connection-specific fields) is the caller's work.
    ///
    /// `max_list`: the most the decoded list may hold, counted as RFC 9113 §6.5.2 does (name +
    /// value + 32 per field). Past it, fields are no longer passed to `field`, nor
    /// Huffman-decoded unless they go into the dynamic table, but the whole block is still
    /// walked so that the table stays in step with the peer's encoder, and the result is
    /// [`HpackError::Oversize`]. Any other error leaves the decoder out of step: the connection
    /// must close with COMPRESSION_ERROR, after `field` may have seen the fields before it.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        max_list: usize,
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut r = Reader { block, at: 0 };
        let mut list = List {
            held: 0,
            max: max_list,
            over: false,
        };
        let mut fields_seen = false;
        while let Some(&first) = block.get(r.at) {
            if first & 0x80 != 0 {
                // indexed field (§6.1)
                let index = r.integer(7)?;
                let (name, value) = entry(&self.table, index)?;
                if list.admits(name, value) {
                    field(name, value);
                }
                fields_seen = true;
            } else if first & 0x40 != 0 {
                self.literal(&mut r, 6, Literal::Indexed, &mut list, &mut field)?;
                fields_seen = true;
            } else if first & 0x20 != 0 {
                // dynamic table size update (§6.3)
                if fields_seen {
                    return Err(HpackError::LateTableSize);
                }
                let size = r.integer(5)?;
                if size > self.limit {
                    return Err(HpackError::TableSize {
                        size,
                        limit: self.limit,
                    });
                }
                self.table.set_max_size(size);
            } else {
                // without indexing (§6.2.2) or never indexed (§6.2.3)
                self.literal(&mut r, 4, Literal::NotIndexed, &mut list, &mut field)?;
                fields_seen = true;
            }
        }
        if self.scratch.capacity() > SCRATCH_KEPT {
            self.scratch = Vec::new();
        }
        if list.over {
            Err(HpackError::Oversize)
        } else {
            Ok(())
        }
    }

    /// Reads one literal field representation (§6.2) whose index has a `prefix`-bit prefix.
    fn literal(
        &mut self,
        r: &mut Reader<'_>,
        prefix: u8,
        kind: Literal,
        list: &mut List,
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let index = r.integer(prefix)?;
        if kind == Literal::NotIndexed && list.over {
            // neither emitted nor kept: check the index, step over the strings unread
            if index == 0 {
                r.skip_string()?;
            } else {
                entry(&self.table, index)?;
            }
            return r.skip_string();
        }
        let Decoder { table, scratch, .. } = self;
        scratch.clear();
        let name = match index {
            0 => r.string(scratch)?,
            1..=61 => Text::Static(STATIC[index - 1].0),
            _ => {
                // copied: the entry may be evicted to make room for this one (§4.4)
                let (name, _) = entry(table, index)?;
                scratch.extend_from_slice(name);
                Text::Scratch(0, name.len())
            }
        };
        let value = r.string(scratch)?;
        let block = r.block;
        let text = |t: Text| match t {
            Text::Block(from, to) => &block[from..to],
            Text::Scratch(from, to) => &scratch[from..to],
            Text::Static(s) => s,
        };
        let (name, value) = (text(name), text(value));
        if kind == Literal::Indexed {
            table.insert(name, value);
        }
        if list.admits(name, value) {
            field(name, value);
        }
        Ok(())
    }
}

/// The entry at HPACK index `index`: the static table's 1 to 61, then the dynamic table's.
fn entry(table: &DynamicTable, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
    match index {
        0 => Err(HpackError::Index(0)),
        1..=61 => Ok(STATIC[index - 1]),
        _ => table.get(index - 62).ok_or(HpackError::Index(index)),
    }
}

/// Where a string of the field being read is, without borrowing it yet.
#[derive(Clone, Copy)]
enum Text {
    /// Sent raw: a range of the block.
    Block(usize, usize),
    /// Huffman-decoded, or a dynamic entry's name: a range of the decoder's scratch buffer.
    Scratch(usize, usize),
    Static(&'static [u8]),
}

/// The size of the fields passed on so far, and whether one was held back.
struct List {
    held: usize,
    max: usize,
    over: bool,
}

impl List {
    /// Counts the field in, or notes that the list is over its limit from here on.
    fn admits(&mut self, name: &[u8], value: &[u8]) -> bool {
        if self.over {
            return false;
        }
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max - self.held {
            self.over = true;
            return false;
        }
        self.held += size;
        true
    }
}

/// A cursor over a header block.
struct Reader<'a> {
    block: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, HpackError> {
        let b = *self.block.get(self.at).ok_or(HpackError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    /// An integer with a `prefix`-bit prefix (§5.1), from the current byte on.
    fn integer(&mut self, prefix: u8) -> Result<usize, HpackError> {
        let max = (1usize << prefix) - 1;
        let value = usize::from(self.byte()?) & max;
        if value < max {
            return Ok(value);
        }
        let mut rest = 0usize;
        for shift in (0..MAX_CONTINUATION).map(|k| 7 * k) {
            let b = self.byte()?;
            rest |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(max + rest);
            }
        }
        Err(HpackError::Integer)
    }

    /// The H bit and the length of a string literal (§5.2), checked against the block's end:
    /// where its bytes are.
    fn string_head(&mut self) -> Result<(bool, usize, usize), HpackError> {
        let huffman = self.block.get(self.at).is_some_and(|b| b & 0x80 != 0);
        let len = self.integer(7)?;
        let from = self.at;
        if len > self.block.len() - from {
            return Err(HpackError::Truncated);
        }
        self.at += len;
        Ok((huffman, from, from + len))
    }

    /// A string literal; Huffman-decoded into `scratch` when coded.
    fn string(&mut self, scratch: &mut Vec<u8>) -> Result<Text, HpackError> {
        let (huffman, from, to) = self.string_head()?;
        if !huffman {
            return Ok(Text::Block(from, to));
        }
        let start = scratch.len();
        huffman::decode(&self.block[from..to], scratch)?;
        Ok(Text::Scratch(start, scratch.len()))
    }

    fn skip_string(&mut self) -> Result<(), HpackError> {
        self.string_head().map(|_| ())
    }
}

/// The largest dynamic table the encoder uses, whatever the peer allows: 4096 bytes hold the
/// fields that repeat on a connection, and a peer's larger SETTINGS_HEADER_TABLE_SIZE would
/// otherwise be ours to keep in memory too.
const ENCODER_TABLE_SIZE: usize = DEFAULT_TABLE_SIZE;

/// The encoding half of a connection's HPACK context.
///
/// Fields in the static table go as one index, other names from the static table as its index
/// with a literal value, strings Huffman-coded when that is shorter. Only fields whose values
/// tend to repeat on a connection ([`repeats`]) enter the dynamic table, so that values which
/// change per message do not churn it out; credentials and cookies go never indexed (§7.1.3).
#[derive(Debug)]
pub(crate) struct Encoder {
    table: DynamicTable,
    /// The size the table takes from the next block on.
    target: usize,
    /// The smallest size asked for since the last block, while a change waits to be announced.
    smallest: Option<usize>,
}

impl Encoder {
    /// An encoder at the protocol's initial table size, 4096.
    pub(crate) fn new() -> Self {
        Encoder {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE),
            target: DEFAULT_TABLE_SIZE,
            smallest: None,
        }
    }

    /// The dynamic table as the blocks encoded so far left it.
    pub(crate) fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Applies the peer's SETTINGS_HEADER_TABLE_SIZE: the next block starts with the size
    /// updates the change needs (§4.2: the smallest size since the last block, then the new
    /// one). The table never grows past 4096 bytes, whatever the peer allows.
    pub(crate) fn set_table_limit(&mut self, limit: usize) {
        self.target = limit.min(ENCODER_TABLE_SIZE);
        self.smallest = Some(self.smallest.map_or(self.target, |s| s.min(self.target)));
    }

    /// Appends one header block holding `fields`, in order, to `out`.
    pub(crate) fn encode<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        out: &mut Vec<u8>,
    ) {
        if let Some(smallest) = self.smallest.take() {
            if smallest < self.table.max_size() {
                integer(smallest, 5, 0x20, out);
                self.table.set_max_size(smallest);
            }
            if self.target != self.table.max_size() {
                integer(self.target, 5, 0x20, out);
                self.table.set_max_size(self.target);
            }
        }
        for (name, value) in fields {
            self.field(name, value, out);
        }
    }

    fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let name_index = if name == b":status" {
            // the answer to almost every request
            match value {
                b"200" => return out.push(0x80 | 8),
                b"204" => return out.push(0x80 | 9),
                b"206" => return out.push(0x80 | 10),
                b"304" => return out.push(0x80 | 11),
                b"400" => return out.push(0x80 | 12),
                b"404" => return out.push(0x80 | 13),
                b"500" => return out.push(0x80 | 14),
                _ => 8,
            }
        } else {
            match find_static(name, value) {
                Some(StaticMatch::Field(i)) => return integer(i, 7, 0x80, out),
                Some(StaticMatch::Name(i)) => i,
                None => 0,
            }
        };
        if sensitive(name) {
            return literal(0x10, 4, name_index, name, value, out);
        }
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        // a field that would flush most of the table does not pay for its place
        if !repeats(name) || size > self.table.max_size() / 4 * 3 {
            return literal(0x00, 4, name_index, name, value, out);
        }
        match self.table.find(name, value) {
            Some(i) => integer(62 + i, 7, 0x80, out),
            None => {
                literal(0x40, 6, name_index, name, value, out);
                self.table.insert(name, value);
            }
        }
    }
}

/// Fields whose values tend to be the same from one message to the next on a connection: the
/// ones worth a place in the dynamic table. Others (lengths, dates of resources, paths, ids)
/// would evict these for entries never used again.
fn repeats(name: &[u8]) -> bool {
    matches!(
        name,
        b":authority"
            | b"accept"
            | b"accept-encoding"
            | b"accept-language"
            | b"accept-ranges"
            | b"access-control-allow-credentials"
            | b"access-control-allow-headers"
            | b"access-control-allow-methods"
            | b"access-control-allow-origin"
            | b"access-control-expose-headers"
            | b"alt-svc"
            | b"cache-control"
            | b"content-encoding"
            | b"content-language"
            | b"content-security-policy"
            | b"content-type"
            // the same for every answer within a second
            | b"date"
            | b"grpc-accept-encoding"
            | b"grpc-encoding"
            | b"origin"
            | b"referrer-policy"
            | b"server"
            | b"strict-transport-security"
            | b"te"
            | b"user-agent"
            | b"vary"
            | b"via"
            | b"x-content-type-options"
            | b"x-forwarded-proto"
            | b"x-frame-options"
            | b"x-xss-protection"
    )
}

/// Fields that go never indexed (§7.1.3), so that no intermediary compresses them either and
/// their values can't be guessed from compressed lengths.
fn sensitive(name: &[u8]) -> bool {
    matches!(
        name,
        b"authorization" | b"proxy-authorization" | b"cookie" | b"set-cookie"
    )
}

/// A literal field representation (§6.2): `flags` and the name's static index in a
/// `prefix`-bit prefix (0: the name follows as a string), then the value.
fn literal(flags: u8, prefix: u8, name_index: usize, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    integer(name_index, prefix, flags, out);
    if name_index == 0 {
        string(name, out);
    }
    string(value, out);
}

/// A string literal (§5.2), Huffman-coded when that is shorter.
fn string(s: &[u8], out: &mut Vec<u8>) {
    let coded = huffman::encoded_len(s);
    if coded < s.len() {
        integer(coded, 7, 0x80, out);
        huffman::encode(s, out);
    } else {
        integer(s.len(), 7, 0, out);
        out.extend_from_slice(s);
    }
}

/// An integer with a `prefix`-bit prefix (§5.1), the first byte's other bits being `flags`.
fn integer(value: usize, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}
