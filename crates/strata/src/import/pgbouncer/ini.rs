//! The pgbouncer.ini syntax, read as PgBouncer's own parser (libusual's `cfparser.c`) reads it:
//! `[section]` headers, `key = value` lines, `;` and `#` comments at the start of a line only
//! (later on a line they are part of the value), `%include FILE`, a key in single quotes. It
//! lists what the file holds and nothing more: what a section or key means is the translation's
//! business. What PgBouncer could not read either is refused with its line and column.

use crate::import::{Note, Pos};

/// A piece of the file as written, and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) at: Pos,
}

/// What the file holds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item {
    /// `[name]`: the name as written between the brackets, nothing trimmed (as PgBouncer reads
    /// it).
    Section(Word),
    /// `key = value`: the value runs to the end of its line, less the spaces that end it.
    Pair { key: Word, value: Word },
    /// `%include FILE`: where the directive is, and the file.
    Include { at: Pos, file: Word },
}

/// Reads `source`; on failure, every place PgBouncer could not read, with why (PgBouncer stops
/// at the first: "syntax error in configuration").
pub(super) fn parse(source: &str) -> Result<Vec<Item>, Vec<Note>> {
    let mut reader = Reader::new(source);
    let mut items = Vec::new();
    let mut errors = Vec::new();
    loop {
        match reader.item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => break,
            Err((note, go_on)) => {
                errors.push(note);
                if !go_on {
                    break;
                }
                reader.skip_line();
            }
        }
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(errors)
    }
}

/// C's `isspace` in the "C" locale.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// C's `isblank`.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// What an unquoted key is made of.
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-*".contains(c)
}

/// The file's characters, each with its place, and how far it is read.
struct Reader {
    chars: Vec<(char, Pos)>,
    /// Where the file ends.
    end: Pos,
    i: usize,
}

/// A problem, and whether reading can go on at the next line.
type Failure = (Note, bool);

impl Reader {
    fn new(source: &str) -> Reader {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        let mut chars = Vec::with_capacity(source.len());
        let (mut line, mut column) = (1, 1);
        for c in source.chars() {
            chars.push((c, Pos { line, column }));
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Reader {
            chars,
            end: Pos { line, column },
            i: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).map(|c| c.0)
    }

    fn at(&self) -> Pos {
        self.chars.get(self.i).map_or(self.end, |c| c.1)
    }

    fn skip_while(&mut self, f: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn skip_line(&mut self) {
        self.skip_while(|c| c != '\n');
    }

    fn text(&self, from: usize, to: usize) -> String {
        self.chars[from..to].iter().map(|c| c.0).collect()
    }

    /// The rest of the line from here, less the spaces that end it.
    fn rest_of_line(&mut self) -> Word {
        let (start, at) = (self.i, self.at());
        self.skip_line();
        let mut end = self.i;
        while end > start && is_space(self.chars[end - 1].0) {
            end -= 1;
        }
        Word {
            text: self.text(start, end),
            at,
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        (self.i..)
            .zip(s.chars())
            .all(|(i, c)| self.chars.get(i).map(|c| c.0) == Some(c))
    }

    /// The next item, `None` at the end of the file.
    fn item(&mut self) -> Result<Option<Item>, Failure> {
        loop {
            self.skip_while(is_space);
            let Some(c) = self.peek() else {
                return Ok(None);
            };
            let at = self.at();
            let include = self.starts_with("%include")
                && self
                    .chars
                    .get(self.i + 8)
                    .is_some_and(|(c, _)| is_blank(*c));
            if include {
                self.i += 8;
                self.skip_while(is_blank);
                let file = self.rest_of_line();
                return Ok(Some(Item::Include { at, file }));
            }
            match c {
                '#' | ';' => self.skip_line(),
                '[' => return self.section().map(Some),
                _ => return self.pair().map(Some),
            }
        }
    }

    /// `[name]`, the `[` next.
    fn section(&mut self) -> Result<Item, Failure> {
        let open = self.at();
        self.i += 1;
        let (start, at) = (self.i, self.at());
        self.skip_while(|c| c != ']' && c != '\n');
        if self.peek() != Some(']') {
            let why = "this `[` has no `]` after it on its line";
            return Err((Note::new(open, "", why), true));
        }
        let name = Word {
            text: self.text(start, self.i),
            at,
        };
        // what follows the `]` on its line is read as the next line would be
        self.i += 1;
        Ok(Item::Section(name))
    }

    /// `key = value`, the key next.
    fn pair(&mut self) -> Result<Item, Failure> {
        let at = self.at();
        let key = if self.peek() == Some('\'') {
            self.i += 1;
            let start = self.i;
            self.skip_while(|c| c != '\'');
            if self.peek().is_none() {
                let why = "this `'` is never closed: a quoted key ends at the next `'`";
                return Err((Note::new(at, "", why), false));
            }
            let text = self.text(start, self.i);
            self.i += 1;
            if text.is_empty() {
                return Err((Note::new(at, "", "an empty quoted key"), true));
            }
            text
        } else {
            let start = self.i;
            self.skip_while(is_key_char);
            self.text(start, self.i)
        };
        self.skip_while(is_blank);
        if self.peek() != Some('=') {
            let why = match self.peek() {
                Some(c) if key.is_empty() => format!("`{c}` does not begin a key: PgBouncer reads a key of letters, digits and `_.-*`, or one in single quotes ('my db')"),
                _ => format!("`{key}` has no `=` after it"),
            };
            return Err((Note::new(self.at(), "", why), true));
        }
        self.i += 1;
        self.skip_while(is_blank);
        let value = self.rest_of_line();
        Ok(Item::Pair {
            key: Word { text: key, at },
            value,
        })
    }
}

#[cfg(test)]
mod tests;
