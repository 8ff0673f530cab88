//! Config errors: each problem names the file, line, column, key, and why.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read at all.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file as it was asked for.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// The file was read and parsed: every problem found in it, all at once.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems, empty when the file could not be read at all.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(problems) => problems,
        }
    }
}

/// One thing wrong with a config, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as named to [`parse`](crate::parse) (for [`load`](crate::load), its path).
    pub file: String,
    /// Line of the offending value, from 1.
    pub line: usize,
    /// Column of the offending value in characters, from 1.
    pub column: usize,
    /// Dotted path of the key, such as `http[0].health.interval`.
    pub key: String,
    /// Why the value is refused.
    pub message: String,
    /// How to fix it, where there is one obvious way.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Collects problems while a config is walked, turning byte spans into lines.
pub(crate) struct Report<'s> {
    file: String,
    source: &'s str,
    pub(crate) problems: Vec<Problem>,
}

impl<'s> Report<'s> {
    pub(crate) fn new(file: &str, source: &'s str) -> Self {
        Report {
            file: file.to_string(),
            source,
            problems: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.add_hint(span, key, message, None::<String>);
    }

    pub(crate) fn add_hint(
        &mut self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
        hint: Option<impl Into<String>>,
    ) {
        let (line, column) = line_col(self.source, span.start);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
            hint: hint.map(Into::into),
        });
    }
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 4));
    }
}
