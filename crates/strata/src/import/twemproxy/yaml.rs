//! The part of YAML that nutcracker configs are written in, read strictly: pool names at the
//! top level, each pool's indented `key: value` lines, and `- item` lines under a `key:`.
//! Anything else is refused with its line and column rather than guessed at.

use crate::import::{Note, Pos};

/// A scalar value and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scalar {
    pub(super) text: String,
    pub(super) at: Pos,
}

/// What follows a `key:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// `key: value`.
    Scalar(Scalar),
    /// `key:` and `- item` lines under it.
    List(Vec<Scalar>),
    /// `key:` with nothing after it.
    Empty,
}

/// One `key: value` of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) at: Pos,
    pub(super) value: Value,
}

/// A top-level `name:` and the keys under it, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pool {
    pub(super) name: String,
    pub(super) at: Pos,
    pub(super) entries: Vec<Entry>,
}

/// Reads `source`; on failure, every line that could not be read, with why.
pub(super) fn parse(source: &str) -> Result<Vec<Pool>, Vec<Note>> {
    let mut reader = Reader::default();
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    for (i, raw) in source.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        reader.line(i + 1, raw);
    }
    if reader.errors.is_empty() {
        Ok(reader.pools)
    } else {
        Err(reader.errors)
    }
}

/// The state between lines.
#[derive(Default)]
struct Reader {
    pools: Vec<Pool>,
    errors: Vec<Note>,
    /// Whether anything but comments and blank lines was seen (for `---`).
    started: bool,
    /// The last top-level line was refused: the indented lines under it are skipped rather
    /// than read into the pool above it.
    skipping: bool,
    /// The indentation of the current pool's keys, set by its first key.
    key_indent: Option<usize>,
    /// The indentation of the current list's items, set by its first item.
    item_indent: Option<usize>,
}

impl Reader {
    fn line(&mut self, n: usize, raw: &str) {
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        let rest = &raw[indent..];
        let at = |byte: usize| Pos {
            line: n,
            column: raw[..byte].chars().count() + 1,
        };
        if rest.starts_with('\t') {
            return self.error(
                at(indent),
                "",
                "a tab in the indentation (YAML indents with spaces only)",
            );
        }
        if rest.trim().is_empty() || rest.starts_with('#') {
            return;
        }
        if indent == 0 && rest.trim_end() == "---" && !self.started {
            return;
        }
        self.started = true;
        if indent == 0 {
            let count = self.errors.len();
            self.pool(at(0), rest);
            self.skipping = self.errors.len() > count;
            return;
        }
        if self.skipping {
            return;
        }
        let Some(pool) = self.pools.last() else {
            return self.error(
                at(indent),
                "",
                "an indented line before any pool name (a pool starts with `name:` at the start of a line)",
            );
        };
        let pool_name = pool.name.clone();
        if rest == "-" || rest.starts_with("- ") {
            let value = rest[1..].trim_start();
            let value_at = at(raw.len() - value.len());
            return self.item(&pool_name, at(indent), indent, value, value_at);
        }
        self.item_indent = None;
        match self.key_indent {
            None => self.key_indent = Some(indent),
            Some(want) if want == indent => {}
            Some(want) => {
                let why = if indent > want && self.open_list().is_some() {
                    format!(
                        "indented {}, more than the pool's keys ({want}), but not a `- item`",
                        spaces(indent)
                    )
                } else if indent > want {
                    format!(
                        "indented {}, more than the pool's keys ({want}): a value continued on a second line is not read; keep each value on one line",
                        spaces(indent)
                    )
                } else {
                    format!(
                        "indented {} where the pool's keys are indented {want}",
                        spaces(indent)
                    )
                };
                return self.error(at(indent), &pool_name, &why);
            }
        }
        let Some((key, value)) = split_key(rest) else {
            return self.error(
                at(indent),
                &pool_name,
                "expected `key: value` (or `key:` followed by `- item` lines)",
            );
        };
        let value_at = at(raw.len() - value.len());
        let value = match scalar(value, value_at) {
            Ok(None) => Value::Empty,
            Ok(Some(text)) => Value::Scalar(Scalar { text, at: value_at }),
            Err(e) => return self.errors.push(e.about(&format!("{pool_name}.{key}"))),
        };
        let key_at = at(indent);
        if let Some(pool) = self.pools.last_mut() {
            if let Some(first) = pool.entries.iter().find(|e| e.key == key) {
                let why = format!("`{key}` is already set on line {}", first.at.line);
                let subject = format!("{pool_name}.{key}");
                return self.error(key_at, &subject, &why);
            }
            pool.entries.push(Entry {
                key: key.to_string(),
                at: key_at,
                value,
            });
        }
    }

    /// A line at the top level: `name:`.
    fn pool(&mut self, at: Pos, rest: &str) {
        self.key_indent = None;
        self.item_indent = None;
        if rest.starts_with("- ") || rest == "-" {
            return self.error(
                at,
                "",
                "a list at the top level: twemproxy's top level holds pool names, each followed by its indented keys",
            );
        }
        let Some((name, value)) = split_key(rest) else {
            return self.error(at, "", "expected a pool name: `name:` alone on its line");
        };
        match scalar(value, at) {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => {
                let why = format!(
                    "`{name}: ...` at the top level: twemproxy's top level holds pool names, each followed by its indented keys"
                );
                return self.error(at, name, &why);
            }
        }
        if let Some(first) = self.pools.iter().find(|p| p.name == name) {
            let why = format!("a pool named `{name}` is already on line {}", first.at.line);
            return self.error(at, name, &why);
        }
        self.pools.push(Pool {
            name: name.to_string(),
            at,
            entries: Vec::new(),
        });
    }

    /// A `- item` line.
    fn item(&mut self, pool: &str, dash: Pos, indent: usize, value: &str, value_at: Pos) {
        let Some(key) = self.open_list() else {
            return self.error(
                dash,
                pool,
                "a `- item` line with no `key:` right above it to belong to",
            );
        };
        let subject = format!("{pool}.{key}");
        if self.key_indent.is_some_and(|k| indent < k) {
            return self.error(dash, &subject, "a `- item` indented less than the keys");
        }
        match self.item_indent {
            None => self.item_indent = Some(indent),
            Some(want) if want == indent => {}
            Some(want) => {
                let why = format!(
                    "indented {} where the items above are at {want}",
                    spaces(indent)
                );
                return self.error(dash, &subject, &why);
            }
        }
        if value.starts_with("- ") || value == "-" {
            return self.error(value_at, &subject, "a list inside a list is not read");
        }
        let text = match scalar(value, value_at) {
            Ok(Some(text)) => text,
            Ok(None) => return self.error(dash, &subject, "an empty list item"),
            Err(e) => return self.errors.push(e.about(&subject)),
        };
        if let Some(Entry { value, .. }) = self.pools.last_mut().and_then(|p| p.entries.last_mut())
        {
            let item = Scalar { text, at: value_at };
            match value {
                Value::List(items) => items.push(item),
                _ => *value = Value::List(vec![item]),
            }
        }
    }

    /// The key whose `- item` lines are being read: the pool's last key, when it had no value
    /// of its own.
    fn open_list(&self) -> Option<String> {
        let entry = self.pools.last()?.entries.last()?;
        matches!(entry.value, Value::Empty | Value::List(_)).then(|| entry.key.clone())
    }

    fn error(&mut self, at: Pos, key: &str, message: &str) {
        self.errors.push(Note::new(at, key, message));
    }
}

/// "1 space", "3 spaces".
fn spaces(n: usize) -> String {
    format!("{n} space{}", if n == 1 { "" } else { "s" })
}

/// A value that could not be read, before the key it belongs to is known.
struct BadScalar {
    at: Pos,
    message: String,
}

impl BadScalar {
    fn about(self, key: &str) -> Note {
        Note::new(self.at, key, self.message)
    }
}

/// Splits `key: rest` (or `key:`) at the first colon followed by a space or the end of the
/// line; the key must be a plain word.
fn split_key(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let colon = (0..bytes.len())
        .find(|&i| bytes[i] == b':' && matches!(bytes.get(i + 1), None | Some(b' ' | b'\t')))?;
    let key = &line[..colon];
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    plain.then(|| (key, line[colon + 1..].trim_start()))
}

/// Reads one scalar (the text after `key: ` or `- `, comment included): `None` when there is
/// none.
fn scalar(text: &str, at: Pos) -> Result<Option<String>, BadScalar> {
    let bad = |message: String| BadScalar { at, message };
    let Some(first) = text.chars().next() else {
        return Ok(None);
    };
    let (value, rest) = match first {
        '#' => return Ok(None),
        '"' => double_quoted(&text[1..]).map_err(bad)?,
        '\'' => single_quoted(&text[1..]).map_err(bad)?,
        '[' | '{' => {
            return Err(bad(
                "flow style ([...] or {...}) is not read; write one `- item` per line".into(),
            ))
        }
        '|' | '>' => {
            return Err(bad(
                "a block scalar (| or >) is not read; keep each value on one line".into(),
            ))
        }
        '&' | '*' | '!' => {
            return Err(bad(
                "anchors, aliases and tags (&, *, !) are not read; write the value itself".into(),
            ))
        }
        '%' | '@' | '`' | '?' => {
            return Err(bad(format!(
                "a value may not start with `{first}` unless it is quoted"
            )))
        }
        _ => {
            let end = comment_start(text).unwrap_or(text.len());
            let value = text[..end].trim_end();
            if value.contains(": ") || value.ends_with(':') {
                return Err(bad(format!(
                    "\"{value}\" holds `: `, which makes it a mapping; quote it if it is one value"
                )));
            }
            return Ok(Some(value.to_string()));
        }
    };
    let rest = rest.trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(bad(format!("`{rest}` after the closing quote")));
    }
    Ok(Some(value))
}

/// Where a comment starts in plain text: a `#` at the start or after a space.
fn comment_start(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t')))
}

/// Reads a double-quoted string after its opening quote: the value and what follows the
/// closing quote.
fn double_quoted(text: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &text[i + 1..])),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                let decoded = match e {
                    '\\' => '\\',
                    '"' => '"',
                    '/' => '/',
                    ' ' => ' ',
                    '0' => '\0',
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    't' | '\t' => '\t',
                    'n' => '\n',
                    'v' => '\u{b}',
                    'f' => '\u{c}',
                    'r' => '\r',
                    'e' => '\u{1b}',
                    'x' | 'u' | 'U' => {
                        let len = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars.by_ref().take(len).map(|(_, h)| h).collect();
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == len)
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("`\\{e}{hex}` is not a character"))?
                    }
                    other => return Err(format!("`\\{other}` is not a YAML escape")),
                };
                out.push(decoded);
            }
            c => out.push(c),
        }
    }
    Err("the closing `\"` is missing (a quoted value must end on its line)".into())
}

/// Reads a single-quoted string after its opening quote (`''` is one quote).
fn single_quoted(text: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            out.push(c);
        } else if chars.peek().is_some_and(|(_, n)| *n == '\'') {
            chars.next();
            out.push('\'');
        } else {
            return Ok((out, &text[i + 1..]));
        }
    }
    Err("the closing `'` is missing (a quoted value must end on its line)".into())
}

#[cfg(test)]
mod tests;
