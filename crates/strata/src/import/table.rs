//! One section's translation (a pool, an instance) as a Strata table, `[[cache]]` or `[[vip]]`,
//! with the notes about it, and how it is printed.

use std::fmt::Write as _;

use super::{check, Note, Pos};

/// One line of a table: a `key = value`, or an element of an array.
pub struct Line {
    pub text: String,
    /// Set on a line kept as written: the line of the note that says why.
    pub kept: Option<usize>,
}

impl Line {
    pub fn new(text: String) -> Line {
        Line { text, kept: None }
    }
}

/// What a table holds, in order.
pub enum Item {
    Key(Line),
    /// `key = [`, one element a line, `]`.
    Array(&'static str, Vec<Line>),
}

/// A section's translation: its table's lines and the notes about it.
pub struct Table {
    /// The table's name: `cache` for `[[cache]]`.
    name: &'static str,
    pub items: Vec<Item>,
    pub notes: Vec<Note>,
    /// Strata can't run the section as it was: its translation is printed as a comment.
    pub left_out: bool,
}

impl Table {
    /// An empty `[[name]]`.
    pub fn new(name: &'static str) -> Table {
        Table {
            name,
            items: Vec::new(),
            notes: Vec::new(),
            left_out: false,
        }
    }

    pub fn key(&mut self, key: &str, value: String) {
        self.items
            .push(Item::Key(Line::new(format!("{key} = {value}"))));
    }

    pub fn note(&mut self, at: Pos, key: &str, message: String) {
        self.notes.push(Note::new(at, key, message));
    }

    /// The table once every line and note is in: checked, when it is printed as config and
    /// nothing in it is kept as written, and its notes in file order.
    ///
    /// Strata's own check runs on it there: a problem it finds is this importer's bug, said in
    /// a note at `at` about `key` (the section) rather than printed silently.
    pub fn finish(mut self, key: &str, at: Pos) -> Table {
        if !self.left_out && !self.keeps_any() {
            if let Err(problems) = check(&self.lines().join("\n")) {
                for why in problems {
                    let why = format!("`strata check` refuses this translation, a bug of `strata import` (please report it): {why}");
                    self.note(at, key, why);
                }
            }
        }
        self.notes.sort_by_key(|n| n.at);
        self
    }

    /// Whether a line is kept as written.
    fn keeps_any(&self) -> bool {
        self.items.iter().any(|item| match item {
            Item::Key(line) => line.kept.is_some(),
            Item::Array(_, lines) => lines.iter().any(|l| l.kept.is_some()),
        })
    }

    /// The table.
    fn lines(&self) -> Vec<String> {
        let marked = |text: String, kept: Option<usize>| match kept {
            Some(line) => format!("{text} # kept as written: see line {line} above"),
            None => text,
        };
        let mut lines = vec![format!("[[{}]]", self.name)];
        for item in &self.items {
            match item {
                Item::Key(line) => lines.push(marked(line.text.clone(), line.kept)),
                Item::Array(key, items) => {
                    lines.push(format!("{key} = ["));
                    lines.extend(
                        items
                            .iter()
                            .map(|l| marked(format!("    {},", l.text), l.kept)),
                    );
                    lines.push("]".into());
                }
            }
        }
        lines
    }

    /// The notes as comments, then the table (itself a comment when the section is left out).
    pub fn render(&self) -> String {
        let mut out = commented(&self.notes);
        for line in self.lines() {
            if self.left_out {
                out.push_str("# ");
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// Each note as a comment line of the output: `# line N: `key`: message`.
pub fn commented(notes: &[Note]) -> String {
    let mut out = String::new();
    for note in notes {
        let _ = writeln!(out, "# line {}: {note}", note.at.line);
    }
    out
}
