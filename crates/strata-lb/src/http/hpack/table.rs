//! The HPACK tables: the static table of RFC 7541 Appendix A, and the dynamic table of §4 that
//! the encoder and the decoder of a connection each keep in step.

use std::collections::VecDeque;

/// What an entry costs in the dynamic table beside its name and value (§4.1).
pub(crate) const ENTRY_OVERHEAD: usize = 32;

/// The static table (Appendix A): entry 1 first.
pub(crate) static STATIC: [(&[u8], &[u8]); 61] = ENTRIES;

const ENTRIES: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// How a field stands in the static table: its index (1-based, as HPACK counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StaticMatch {
    /// The entry holds this name and this value.
    Field(usize),
    /// The first entry with this name; none has this value.
    Name(usize),
}

/// Where `name` and `value` are in the static table, if anywhere.
pub(crate) fn find_static(name: &[u8], value: &[u8]) -> Option<StaticMatch> {
    let (order, starts) = &BY_LENGTH;
    let candidates = match (starts.get(name.len()), starts.get(name.len() + 1)) {
        (Some(&from), Some(&to)) => &order[usize::from(from)..usize::from(to)],
        _ => return None,
    };
    let first = usize::from(
        *candidates
            .iter()
            .find(|&&i| STATIC[usize::from(i) - 1].0 == name)?,
    );
    // the entries of one name are next to each other
    let same_name = STATIC[first - 1..].iter().take_while(|(n, _)| *n == name);
    match same_name.zip(first..).find(|((_, v), _)| *v == value) {
        Some((_, i)) => Some(StaticMatch::Field(i)),
        None => Some(StaticMatch::Name(first)),
    }
}

/// The length of the longest name in the static table (`access-control-allow-origin`).
const LONGEST_NAME: usize = 27;

/// The index of each name's first entry, by the name's length: the names of length `n` are at
/// `.0[.1[n]..(.1[n + 1])]`, so a lookup compares a handful of names, not 61.
static BY_LENGTH: ([u8; 61], [u8; LONGEST_NAME + 2]) = by_length();

const fn by_length() -> ([u8; 61], [u8; LONGEST_NAME + 2]) {
    let mut order = [0u8; 61];
    let mut starts = [0u8; LONGEST_NAME + 2];
    let mut placed = 0;
    let mut len = 0;
    while len <= LONGEST_NAME {
        starts[len] = placed as u8;
        let mut i = 0;
        while i < ENTRIES.len() {
            let name = ENTRIES[i].0;
            let first = i == 0 || !const_eq(name, ENTRIES[i - 1].0);
            if first && name.len() == len {
                order[placed] = (i + 1) as u8;
                placed += 1;
            }
            i += 1;
        }
        len += 1;
    }
    starts[LONGEST_NAME + 1] = placed as u8;
    (order, starts)
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The dynamic table (§4): entries newest first as HPACK counts them, evicted oldest first so
/// that the sum of `name + value + 32` over them stays within the table's size.
///
/// The names and values live one after the other in one buffer, oldest first; evicting an
/// entry only forgets where it was, and the bytes of evicted entries are dropped in one move
/// when the buffer would otherwise grow. The buffer never holds more than twice the table's
/// size, and nothing is allocated per entry.
#[derive(Debug)]
pub(crate) struct DynamicTable {
    bytes: Vec<u8>,
    /// Oldest first.
    entries: VecDeque<Slot>,
    /// The sum of the entries' sizes as §4.1 counts them.
    size: usize,
    max_size: usize,
}

/// Where one entry's name and value are in the buffer: `at..at + name` and then `value` bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: usize,
    name: usize,
    value: usize,
}

impl DynamicTable {
    pub(crate) fn new(max_size: usize) -> Self {
        DynamicTable {
            bytes: Vec::new(),
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    /// The sum of the entries' sizes (§4.1).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The most `size` may be, as the last size update set it.
    pub(crate) fn max_size(&self) -> usize {
        self.max_size
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entry `i`, counting from the newest (0): HPACK's index `62 + i`.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let newest_first = self.entries.len().checked_sub(i + 1)?;
        Some(self.slice(self.entries[newest_first]))
    }

    /// The entries, newest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().rev().map(|&s| self.slice(s))
    }

    /// The newest entry holding exactly `name` and `value`: its `i` for [`get`](Self::get).
    pub(crate) fn find(&self, name: &[u8], value: &[u8]) -> Option<usize> {
        self.iter().position(|(n, v)| n == name && v == value)
    }

    /// Adds an entry, evicting the oldest ones to make room; an entry larger than the whole
    /// table empties it and is not added (§4.4).
    pub(crate) fn insert(&mut self, name: &[u8], value: &[u8]) {
        let len = name.len() + value.len();
        let size = len + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.entries.clear();
            self.bytes.clear();
            self.size = 0;
            return;
        }
        while self.size + size > self.max_size {
            self.evict();
        }
        self.make_room(len);
        self.entries.push_back(Slot {
            at: self.bytes.len(),
            name: name.len(),
            value: value.len(),
        });
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.size += size;
    }

    /// Applies a dynamic table size update (§6.3), evicting what no longer fits.
    pub(crate) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        while self.size > max_size {
            self.evict();
        }
        if self.bytes.capacity() > 2 * max_size {
            self.compact();
            self.bytes.shrink_to(2 * max_size);
        }
    }

    fn slice(&self, s: Slot) -> (&[u8], &[u8]) {
        let name_end = s.at + s.name;
        (
            &self.bytes[s.at..name_end],
            &self.bytes[name_end..name_end + s.value],
        )
    }

    fn evict(&mut self) {
        if let Some(s) = self.entries.pop_front() {
            self.size -= s.name + s.value + ENTRY_OVERHEAD;
        }
        if self.entries.is_empty() {
            self.bytes.clear();
        }
    }

    /// Makes room at the end of the buffer for `len` more bytes, within twice the table's size:
    /// past that, more of the buffer belongs to evicted entries than to live ones (the live
    /// bytes and `len` fit in `max_size`), so dropping them moves less than was written since.
    fn make_room(&mut self, len: usize) {
        if self.bytes.len() + len <= self.bytes.capacity() {
            return;
        }
        let dead = self.entries.front().map_or(self.bytes.len(), |s| s.at);
        if dead >= self.bytes.len() - dead {
            self.compact();
        }
        let need = self.bytes.len() + len;
        if need > self.bytes.capacity() {
            let want = (2 * need).min(2 * self.max_size).max(need);
            self.bytes.reserve_exact(want - self.bytes.len());
        }
    }

    /// Drops the bytes of evicted entries.
    fn compact(&mut self) {
        let dead = self.entries.front().map_or(self.bytes.len(), |s| s.at);
        if dead == 0 {
            return;
        }
        self.bytes.drain(..dead);
        for s in &mut self.entries {
            s.at -= dead;
        }
    }

    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.bytes.capacity()
    }
}
