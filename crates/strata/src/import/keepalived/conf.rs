//! The keepalived.conf syntax, read as keepalived's own parser reads it: a keyword and its words
//! on each line, a `{ }` block after a keyword, `#` and `!` comments, `"quoted strings"` (and
//! `'quoted'` ones in a command line). It builds the tree and nothing more: what a keyword means
//! is the translation's business. What keepalived could not read either (an unbalanced brace, a
//! quote left open) is refused with its line and column.

use crate::import::{Note, Pos};

/// The keywords whose value keepalived reads as a command line, where `'` quotes as `"` does
/// (its `install_keyword_quoted`).
const COMMAND_KEYWORDS: &[&str] = &[
    "script",
    "notify",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify_deleted",
    "notify_master_rx_lower_pri",
];

/// A word of a line, its quotes taken off, and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) at: Pos,
}

/// One line's keyword and words, and the block after them, if they have one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Statement {
    /// `@ID` (or `@^ID`) before the keyword: keepalived reads the line only where its config id
    /// is ID (or is not).
    pub(super) only_on: Option<Word>,
    /// The keyword, then its arguments; never empty once the line is read.
    pub(super) words: Vec<Word>,
    /// What its `{ }` holds, when it has one.
    pub(super) block: Option<Vec<Statement>>,
}

impl Statement {
    fn new(word: Word, conditional: bool) -> Statement {
        let (only_on, words) = if conditional {
            (Some(word), Vec::new())
        } else {
            (None, vec![word])
        };
        Statement {
            only_on,
            words,
            block: None,
        }
    }

    /// The keyword.
    pub(super) fn keyword(&self) -> &str {
        self.words.first().map_or("", |w| w.text.as_str())
    }

    /// Where the keyword is.
    pub(super) fn at(&self) -> Pos {
        match (self.words.first(), &self.only_on) {
            (Some(w), _) => w.at,
            (None, Some(c)) => c.at,
            (None, None) => Pos { line: 0, column: 0 },
        }
    }

    /// The words after the keyword.
    pub(super) fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The `i`th word after the keyword.
    pub(super) fn arg(&self, i: usize) -> Option<&Word> {
        self.words.get(i + 1)
    }

    /// The statements of its block (none when it has no block).
    pub(super) fn block(&self) -> &[Statement] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// The keyword and its words as keepalived would print them, quotes added where a word
    /// holds a space.
    pub(super) fn head(&self) -> String {
        self.words
            .iter()
            .map(|w| {
                if w.text.is_empty() || w.text.contains(char::is_whitespace) {
                    format!("\"{}\"", w.text)
                } else {
                    w.text.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A line that was only `@ID`: the condition is its keyword.
    fn settle(&mut self) {
        if self.words.is_empty() {
            self.words.extend(self.only_on.take());
        }
    }
}

/// Reads `source`; on failure, every place keepalived could not read either, with why.
pub(super) fn parse(source: &str) -> Result<Vec<Statement>, Vec<Note>> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut tree = Tree::new();
    for (i, raw) in source.lines().enumerate() {
        match tokens(i + 1, raw) {
            Ok(tokens) => tree.line(tokens),
            Err(e) => tree.errors.push(e),
        }
    }
    tree.finish()
}

/// What a line holds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(Word),
    Open(Pos),
    Close(Pos),
}

/// Splits a line into words and braces, as keepalived does: a comment starts at `#` or `!`
/// anywhere outside a `"` string (`\#` and `\!` are the characters themselves); `{` and `}`
/// outside one stand alone even when written against a word; quotes glue what they hold into
/// the word around them.
fn tokens(line: usize, raw: &str) -> Result<Vec<Token>, Note> {
    let mut split = Split::default();
    let mut quote: Option<(char, Pos)> = None;
    let mut chars = raw.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        let at = Pos {
            line,
            column: i + 1,
        };
        if let Some((q, _)) = quote {
            match c {
                _ if c == q => quote = None,
                // keepalived strips comments before it reads '-quoted strings
                '#' | '!' if q == '\'' => break,
                '\\' => {
                    split.push(c, at);
                    if let Some((_, e)) = chars.next() {
                        split.push(e, at);
                    }
                }
                _ => split.push(c, at),
            }
            continue;
        }
        match c {
            '#' | '!' => break,
            '{' => split.brace(Token::Open(at)),
            '}' => split.brace(Token::Close(at)),
            c if c.is_whitespace() => split.end(),
            '"' => {
                split.start(at);
                quote = Some((c, at));
            }
            '\'' if split.in_command() => {
                split.start(at);
                quote = Some((c, at));
            }
            '\\' => match chars.next_if(|(_, e)| matches!(e, '#' | '!')) {
                Some((_, e)) => split.push(e, at),
                None => split.push(c, at),
            },
            _ => split.push(c, at),
        }
    }
    if let Some((q, at)) = quote {
        return Err(Note::new(
            at,
            "",
            format!("the closing `{q}` is missing: a quoted string ends on its line"),
        ));
    }
    split.end();
    Ok(split.out)
}

/// The tokens of a line so far, and the word being read.
#[derive(Default)]
struct Split {
    out: Vec<Token>,
    word: Option<Word>,
    /// The keyword of the statement being read, once its first word has ended.
    keyword: Option<String>,
    /// Whether a token has ended on this line (an `@ID` counts only first).
    started: bool,
}

impl Split {
    fn start(&mut self, at: Pos) {
        self.word.get_or_insert_with(|| Word {
            text: String::new(),
            at,
        });
    }

    fn push(&mut self, c: char, at: Pos) {
        self.start(at);
        if let Some(w) = &mut self.word {
            w.text.push(c);
        }
    }

    fn end(&mut self) {
        if let Some(w) = self.word.take() {
            let condition = !self.started && w.text.starts_with('@');
            if self.keyword.is_none() && !condition {
                self.keyword = Some(w.text.clone());
            }
            self.started = true;
            self.out.push(Token::Word(w));
        }
    }

    fn brace(&mut self, brace: Token) {
        self.end();
        self.out.push(brace);
        self.keyword = None;
        self.started = true;
    }

    /// Whether the statement being read takes a command line.
    fn in_command(&self) -> bool {
        self.keyword
            .as_deref()
            .is_some_and(|k| COMMAND_KEYWORDS.contains(&k))
    }
}

/// A block being read: the statement that opened it, and what it holds so far.
struct Frame {
    /// `None` for the top level, and for a `{` that no keyword opened (an error).
    owner: Option<Statement>,
    open: Pos,
    statements: Vec<Statement>,
}

/// The blocks open between lines.
struct Tree {
    /// The top level first, then each open block.
    frames: Vec<Frame>,
    errors: Vec<Note>,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            frames: vec![Frame {
                owner: None,
                open: Pos { line: 1, column: 1 },
                statements: Vec::new(),
            }],
            errors: Vec::new(),
        }
    }

    fn statements(&mut self) -> &mut Vec<Statement> {
        // the top level is never popped (`close` keeps it), so there is always a last frame
        let last = self.frames.len() - 1;
        &mut self.frames[last].statements
    }

    fn line(&mut self, tokens: Vec<Token>) {
        // whether the last statement started on this line and takes more words
        let mut open = false;
        let mut first = true;
        for token in tokens {
            match token {
                Token::Word(w) => {
                    let statements = self.statements();
                    match statements.last_mut() {
                        Some(s) if open => s.words.push(w),
                        _ => {
                            let conditional = first && w.text.starts_with('@');
                            statements.push(Statement::new(w, conditional));
                            open = true;
                        }
                    }
                }
                Token::Open(at) => {
                    if let Some(s) = self.statements().last_mut().filter(|_| open) {
                        s.settle();
                    }
                    // the statement on this line, or the one above when its `{` is on the
                    // next line
                    let owner = match self.statements().last() {
                        Some(s) if s.block.is_none() => self.statements().pop(),
                        _ => {
                            self.errors.push(Note::new(
                                at,
                                "",
                                "a `{` with no keyword before it to open a block for",
                            ));
                            None
                        }
                    };
                    self.frames.push(Frame {
                        owner,
                        open: at,
                        statements: Vec::new(),
                    });
                    open = false;
                }
                Token::Close(at) => {
                    if let Some(s) = self.statements().last_mut().filter(|_| open) {
                        s.settle();
                    }
                    self.close(at);
                    open = false;
                }
            }
            first = false;
        }
        if let Some(s) = self.statements().last_mut().filter(|_| open) {
            s.settle();
        }
    }

    fn close(&mut self, at: Pos) {
        if self.frames.len() == 1 {
            self.errors.push(Note::new(
                at,
                "",
                "a `}` with no `{` open before it: the braces above are unbalanced",
            ));
            return;
        }
        let Some(frame) = self.frames.pop() else {
            return;
        };
        if let Some(mut owner) = frame.owner {
            owner.block = Some(frame.statements);
            self.statements().push(owner);
        }
    }

    fn finish(mut self) -> Result<Vec<Statement>, Vec<Note>> {
        while self.frames.len() > 1 {
            let Some(frame) = self.frames.pop() else {
                break;
            };
            let key = frame.owner.as_ref().map(block_name).unwrap_or_default();
            self.errors.push(Note::new(
                frame.open,
                &key,
                "this `{` is never closed: a `}` is missing below it",
            ));
        }
        if self.errors.is_empty() {
            Ok(self.frames.pop().map(|f| f.statements).unwrap_or_default())
        } else {
            self.errors.sort_by_key(|e| e.at);
            Err(self.errors)
        }
    }
}

/// A block's keyword and its name, when it has one: `vrrp_instance VI_1`.
fn block_name(s: &Statement) -> String {
    match s.arg(0) {
        Some(name) => format!("{} {}", s.keyword(), name.text),
        None => s.keyword().to_string(),
    }
}

#[cfg(test)]
mod tests;
