//! The haproxy.cfg syntax, read as HAProxy's own `parse_line` reads it: a statement a line, its
//! words split on unquoted spaces and tabs, a comment from an unquoted `#`, `"weak"` quotes (in
//! which `$VAR` and `${VAR}` are environment variables), `'strong'` quotes, backslash escapes;
//! a line whose first word names a section begins one. It builds the sections and nothing more:
//! what a keyword means is the translation's business. What HAProxy could not read either (a
//! quote left open, a bad escape or variable name, a statement before any section, an `.if`
//! never closed) is refused with its line and column.

use crate::import::{Note, Pos};

/// The sections HAProxy has besides global, defaults and the proxies: each is noted as a whole.
pub(super) const OTHER_SECTIONS: &[&str] = &[
    "userlist",
    "peers",
    "resolvers",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
    "log-forward",
    "crt-store",
    "traces",
    "acme",
];
/// The sections the translation reads.
const SECTIONS: &[&str] = &["global", "defaults", "frontend", "backend", "listen"];

/// An environment variable a word names, which HAProxy reads when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Env {
    pub(super) name: String,
    /// What `${NAME-default}` gives when the variable is not set.
    pub(super) default: Option<String>,
}

/// A word of a line, as HAProxy reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Word {
    /// Quotes and escapes resolved, and each environment variable as HAProxy reads it when its
    /// environment does not set it: its default, or nothing.
    pub(super) text: String,
    /// Where it starts (its opening quote, when it has one).
    pub(super) at: Pos,
    /// The word as the file writes it, quotes and all.
    pub(super) written: String,
    /// The environment variables in it.
    pub(super) env: Vec<Env>,
}

/// One line's words: a keyword, then its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Statement {
    /// Never empty.
    pub(super) words: Vec<Word>,
}

impl Statement {
    pub(super) fn keyword(&self) -> &str {
        &self.words[0].text
    }

    /// Where the keyword is.
    pub(super) fn at(&self) -> Pos {
        self.words[0].at
    }

    /// The words after the keyword.
    pub(super) fn args(&self) -> &[Word] {
        &self.words[1..]
    }

    /// The `i`th word after the keyword.
    pub(super) fn arg(&self, i: usize) -> Option<&Word> {
        self.words.get(i + 1)
    }

    /// The `i`th word after the keyword's text, or "".
    pub(super) fn text(&self, i: usize) -> &str {
        self.arg(i).map_or("", |w| w.text.as_str())
    }

    /// What the statement sets: its keyword, with the next word for `option`, `timeout` and
    /// `stats` (`timeout client`), and the next two for `no option`.
    pub(super) fn setting(&self) -> String {
        let words = match self.keyword() {
            "no" if self.text(0) == "option" => 3,
            "option" | "timeout" | "stats" => 2,
            _ => 1,
        };
        self.joined_range(0, words)
    }

    /// What the statement sets as notes name it: its setting, with the name of a server
    /// (`server web1`).
    pub(super) fn key(&self) -> String {
        match self.keyword() {
            "server" => self.joined_range(0, 2),
            _ => self.setting(),
        }
    }

    /// Words `from` to `to` (at most), joined by spaces.
    fn joined_range(&self, from: usize, to: usize) -> String {
        self.words[from.min(self.words.len())..to.min(self.words.len())]
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The words from `from` on as HAProxy joins them (for a condition): by one space.
    pub(super) fn joined(&self, from: usize) -> String {
        self.joined_range(from, self.words.len())
    }
}

/// A section: its line (`frontend www from web`) and the statements under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Section {
    pub(super) head: Statement,
    pub(super) statements: Vec<Statement>,
}

impl Section {
    /// `global`, `frontend`...
    pub(super) fn kind(&self) -> &str {
        self.head.keyword()
    }

    pub(super) fn at(&self) -> Pos {
        self.head.at()
    }
}

/// The file's sections, in order, and what the reading itself has to say.
#[derive(Debug)]
pub(super) struct Cfg {
    pub(super) sections: Vec<Section>,
    /// About `.if` blocks.
    pub(super) notes: Vec<Note>,
}

/// An `.if` being read.
struct Block {
    at: Pos,
    /// Whether its lines are read: those of its `.if` are, those of its `.elif` and `.else`
    /// are not (nor any inside a block that is not read).
    reading: bool,
    /// Where its `.else` is, once seen.
    otherwise: Option<Pos>,
}

/// Reads `source`, named `file` (for `.FILE`); on failure, every place HAProxy could not read
/// either, with why.
pub(super) fn parse(source: &str, file: &str) -> Result<Cfg, Vec<Note>> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut blocks: Vec<Block> = Vec::new();
    for (i, raw) in source.lines().enumerate() {
        let pseudo = Pseudo {
            file,
            line: i + 1,
            section: sections.last().map_or("", |s| {
                s.head.arg(0).map_or(s.kind(), |name| name.text.as_str())
            }),
        };
        let words = match words(raw, &pseudo) {
            Ok(words) if words.is_empty() => continue,
            Ok(words) => words,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let statement = Statement { words };
        let reading = blocks.last().is_none_or(|b| b.reading);
        if statement.keyword().starts_with('.') {
            if let Err(e) = directive(&statement, &mut blocks, &mut notes) {
                errors.push(e);
            }
            continue;
        }
        if !reading {
            continue;
        }
        let kind = statement.keyword();
        if SECTIONS.contains(&kind) || OTHER_SECTIONS.contains(&kind) {
            sections.push(Section {
                head: statement,
                statements: Vec::new(),
            });
        } else if let Some(section) = sections.last_mut() {
            section.statements.push(statement);
        } else {
            let why = format!(
                "`{kind}` before any section: HAProxy refuses it (\"unknown keyword out of section\")"
            );
            errors.push(Note::new(statement.at(), "", why));
        }
    }
    for block in blocks {
        errors.push(Note::new(
            block.at,
            ".if",
            "this `.if` has no `.endif` after it",
        ));
    }
    if errors.is_empty() {
        Ok(Cfg { sections, notes })
    } else {
        Err(errors)
    }
}

/// `.if`, `.elif`, `.else` and `.endif`; the messages (`.notice`...) are HAProxy's to print.
fn directive(s: &Statement, blocks: &mut Vec<Block>, notes: &mut Vec<Note>) -> Result<(), Note> {
    let reading = blocks.last().is_none_or(|b| b.reading);
    let fail = |why: &str| Err(Note::new(s.at(), s.keyword(), why));
    match s.keyword() {
        ".if" => {
            if reading {
                let why = format!("`.if {}`: HAProxy decides it when it starts; this translation reads the lines as if it held (those of its `.elif` and `.else`, if any, are left out)", s.joined(1));
                notes.push(Note::new(s.at(), ".if", why));
            }
            blocks.push(Block {
                at: s.at(),
                reading,
                otherwise: None,
            });
        }
        ".elif" | ".else" => {
            let Some(block) = blocks.last_mut() else {
                return fail("no `.if` before it");
            };
            if let Some(at) = block.otherwise {
                let why = format!("after the `.else` on line {}", at.line);
                return fail(&why);
            }
            if s.keyword() == ".else" {
                block.otherwise = Some(s.at());
            }
            block.reading = false;
        }
        ".endif" => {
            if blocks.pop().is_none() {
                return fail("no `.if` before it");
            }
        }
        ".diag" | ".notice" | ".warning" | ".alert" => {}
        _ => return fail("HAProxy has no such directive"),
    }
    Ok(())
}

/// What the pseudo-variables `.FILE`, `.LINE` and `.SECTION` stand for on a line.
struct Pseudo<'a> {
    file: &'a str,
    line: usize,
    /// The current section's name, or its kind when it has none.
    section: &'a str,
}

impl Pseudo<'_> {
    fn get(&self, name: &str) -> Option<String> {
        match name {
            ".FILE" => Some(self.file.to_string()),
            ".LINE" => Some(self.line.to_string()),
            ".SECTION" => Some(self.section.to_string()),
            _ => None,
        }
    }
}

/// The word being read.
struct Reading<'r> {
    raw: &'r str,
    line: usize,
    words: Vec<Word>,
    text: String,
    env: Vec<Env>,
    /// Where the word starts: its position, and its byte in the line.
    start: Option<(Pos, usize)>,
    /// Whether there is a word, even an empty one (`""`).
    in_word: bool,
}

impl Reading<'_> {
    /// Marks the character at `column` (from 1), byte `byte`, as part of a word.
    fn touch(&mut self, column: usize, byte: usize) {
        if self.start.is_none() {
            let at = Pos {
                line: self.line,
                column,
            };
            self.start = Some((at, byte));
        }
    }

    fn push(&mut self, c: char) {
        self.text.push(c);
        self.in_word = true;
    }

    /// Ends the word before byte `end`, if there is one.
    fn end(&mut self, end: usize) {
        if let (true, Some((at, start))) = (self.in_word, self.start) {
            self.words.push(Word {
                text: std::mem::take(&mut self.text),
                at,
                written: self.raw[start..end].to_string(),
                env: std::mem::take(&mut self.env),
            });
        }
        self.text.clear();
        self.env.clear();
        self.start = None;
        self.in_word = false;
    }
}

/// Splits a line into words as HAProxy's `parse_line` does.
fn words(raw: &str, pseudo: &Pseudo<'_>) -> Result<Vec<Word>, Note> {
    let chars: Vec<(usize, char)> = raw.char_indices().collect();
    let line = pseudo.line;
    let at = |i: usize| Pos {
        line,
        column: i + 1,
    };
    let byte = |i: usize| chars.get(i).map_or(raw.len(), |c| c.0);
    let mut r = Reading {
        raw,
        line,
        words: Vec::new(),
        text: String::new(),
        env: Vec::new(),
        start: None,
        in_word: false,
    };
    // the open quote, where it is, and whether nothing is inside it yet
    let mut quote: Option<(char, usize)> = None;
    let mut empty_quote = false;
    let mut i = 0;
    while let Some(&(b, c)) = chars.get(i) {
        let (single, double) = (
            quote.is_some_and(|q| q.0 == '\''),
            quote.is_some_and(|q| q.0 == '"'),
        );
        match c {
            '\r' | '\n' => break,
            '#' if quote.is_none() => break,
            '"' | '\'' if quote.is_none() => {
                r.touch(i + 1, b);
                quote = Some((c, i));
                empty_quote = true;
                i += 1;
            }
            '"' | '\'' if quote.is_some_and(|q| q.0 == c) => {
                if empty_quote {
                    r.in_word = true;
                }
                quote = None;
                i += 1;
            }
            '\\' if !single => {
                r.touch(i + 1, b);
                let next = chars.get(i + 1).map(|c| c.1);
                let (emit, used) = match next {
                    Some(' ') | Some('\\') | Some('#') | Some('\'') | Some('"') => {
                        (next.unwrap_or('\\'), 2)
                    }
                    Some('$') if double => ('$', 2),
                    Some('t') => ('\t', 2),
                    Some('n') => ('\n', 2),
                    Some('r') => ('\r', 2),
                    Some('x') => {
                        let hex: String = chars.iter().skip(i + 2).take(2).map(|c| c.1).collect();
                        match u8::from_str_radix(&hex, 16) {
                            Ok(v) if hex.len() == 2 => (char::from(v), 4),
                            _ => {
                                let why = "a truncated or invalid hexadecimal sequence (`\\x` takes two hex digits): HAProxy refuses it";
                                return Err(Note::new(at(i), "", why));
                            }
                        }
                    }
                    _ => ('\\', 1),
                };
                r.push(emit);
                empty_quote = false;
                i += used;
            }
            c if quote.is_none() && is_space(c) => {
                r.end(b);
                while chars.get(i).is_some_and(|c| is_space(c.1)) {
                    i += 1;
                }
            }
            '$' if double => {
                r.touch(i + 1, b);
                i = variable(&chars, i, pseudo, &mut r)?;
                empty_quote = false;
            }
            c => {
                r.touch(i + 1, b);
                r.push(c);
                empty_quote = false;
                i += 1;
            }
        }
    }
    if let Some((_, q)) = quote {
        return Err(Note::new(
            at(q),
            "",
            "this quote is never closed on its line: HAProxy refuses it (\"unmatched quote\")",
        ));
    }
    r.end(byte(i));
    Ok(r.words)
}

/// C's `isspace`, which separates words: a line feed or carriage return ends the line first.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}')
}

/// Reads the variable whose `$` is at `i` into `r` as HAProxy reads it when its environment does
/// not set it; returns where the line goes on.
fn variable(
    chars: &[(usize, char)],
    i: usize,
    pseudo: &Pseudo<'_>,
    r: &mut Reading<'_>,
) -> Result<usize, Note> {
    let at = |i: usize| Pos {
        line: pseudo.line,
        column: i + 1,
    };
    let get = |j: usize| chars.get(j).map_or('\0', |c| c.1);
    let mut j = i + 1;
    let brace = (get(j) == '{').then_some(j);
    if brace.is_some() {
        j += 1;
    }
    let first = get(j);
    if !(first.is_ascii_alphabetic() || first == '_' || first == '.') {
        let why = "a variable name starts with a letter, `_` or `.` (write `\\$` for a `$`): HAProxy refuses it";
        return Err(Note::new(at(j), "", why));
    }
    let name_start = j;
    if first == '.' {
        j += 1;
    }
    while get(j).is_ascii_alphanumeric() || get(j) == '_' {
        j += 1;
    }
    let name: String = chars[name_start..j].iter().map(|c| c.1).collect();
    let pseudo_value = if name.starts_with('.') {
        let Some(value) = pseudo.get(&name) else {
            let why = format!(
                "HAProxy has no pseudo-variable `{name}` (it has .FILE, .LINE and .SECTION)"
            );
            return Err(Note::new(at(name_start), "", why));
        };
        Some(value)
    } else {
        None
    };
    let mut expand = false;
    if let Some(brace) = brace {
        if get(j) == '[' {
            if get(j + 1) != '*' || get(j + 2) != ']' {
                let why = "a truncated or invalid word expansion (it is written `${NAME[*]}`): HAProxy refuses it";
                return Err(Note::new(at(j), "", why));
            }
            expand = true;
            j += 3;
        }
        let mut default = None;
        if get(j) == '-' {
            let end = (j..chars.len()).find(|&k| get(k) == '}');
            let Some(end) = end else {
                return Err(unmatched(at(brace)));
            };
            default = Some(chars[j + 1..end].iter().map(|c| c.1).collect::<String>());
            j = end;
        }
        if get(j) != '}' {
            return Err(unmatched(at(brace)));
        }
        j += 1;
        if pseudo_value.is_none() {
            r.env.push(Env {
                name: name.clone(),
                default: default.clone(),
            });
        }
        let value = pseudo_value.or(default);
        if expand {
            // `[*]`: each word of the value is an argument of its own, and none makes none;
            // each is written as the variable is
            let end = chars.get(j).map_or(r.raw.len(), |c| c.0);
            for c in value.unwrap_or_default().chars() {
                if is_space(c) {
                    r.end(end);
                } else {
                    r.touch(i + 1, chars[i].0);
                    r.push(c);
                }
            }
        } else {
            r.text.push_str(&value.unwrap_or_default());
            r.in_word = true;
        }
        return Ok(j);
    }
    match pseudo_value {
        Some(value) => r.text.push_str(&value),
        None => r.env.push(Env {
            name,
            default: None,
        }),
    }
    r.in_word = true;
    Ok(j)
}

fn unmatched(at: Pos) -> Note {
    Note::new(
        at,
        "",
        "this `{` is never closed: HAProxy refuses it (\"unmatched brace in environment variable name\")",
    )
}

#[cfg(test)]
mod tests;
