//! PgBouncer's connection strings, the values of `[databases]`, `[users]` and `[peers]`, read as
//! its loader reads them (`cstr_get_pair` in loader.c): `key=value` pairs apart by spaces (a tab
//! is part of a value), a value in single quotes with `''` for a quote, and no empty value.

use super::ini::Word;
use crate::import::Pos;

/// One `key=value` of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Param {
    pub(super) key: Word,
    /// Its quotes taken off.
    pub(super) value: Word,
}

/// The pairs of `line`, a value on one line of the file; on failure, where and why (PgBouncer
/// logs "syntax error in connection string").
pub(super) fn parse(line: &Word) -> Result<Vec<Param>, (Pos, String)> {
    let c: Vec<char> = line.text.chars().collect();
    let at = |i: usize| Pos {
        line: line.at.line,
        column: line.at.column + i,
    };
    let skip_spaces = |mut i: usize| {
        while c.get(i) == Some(&' ') {
            i += 1;
        }
        i
    };
    let mut params = Vec::new();
    let mut i = skip_spaces(0);
    while i < c.len() {
        let start = i;
        while i < c.len() && c[i] != '=' && c[i] != ' ' {
            i += 1;
        }
        let key: String = c[start..i].iter().collect();
        i = skip_spaces(i);
        if c.get(i) != Some(&'=') {
            return Err((at(start), format!("`{key}` has no `=` after it")));
        }
        if key.is_empty() {
            return Err((at(i), "a `=` with no key before it".into()));
        }
        i = skip_spaces(i + 1);
        let value_at = at(i);
        let mut value = String::new();
        if c.get(i) == Some(&'\'') {
            i += 1;
            loop {
                match c.get(i) {
                    None => {
                        let why = format!("the value of `{key}`: this `'` is never closed");
                        return Err((value_at, why));
                    }
                    Some('\'') if c.get(i + 1) == Some(&'\'') => {
                        value.push('\'');
                        i += 2;
                    }
                    Some('\'') => break,
                    Some(ch) => {
                        value.push(*ch);
                        i += 1;
                    }
                }
            }
            i += 1;
        } else {
            while i < c.len() && c[i] != ' ' {
                value.push(c[i]);
                i += 1;
            }
        }
        // PgBouncer ends the value by overwriting the character after it, whatever it is
        if i < c.len() {
            i += 1;
        }
        if value.is_empty() {
            return Err((value_at, format!("`{key}` has an empty value")));
        }
        params.push(Param {
            key: Word {
                text: key,
                at: at(start),
            },
            value: Word {
                text: value,
                at: value_at,
            },
        });
        i = skip_spaces(i);
    }
    Ok(params)
}

/// C's `atoi`: spaces, a sign and the digits that follow, 0 when there are none.
pub(super) fn atoi(text: &str) -> i64 {
    let t = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if negative {
        -n
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str) -> Word {
        Word {
            text: text.into(),
            at: Pos { line: 3, column: 8 },
        }
    }

    /// The pairs as `key=value@column`.
    fn pairs(text: &str) -> Vec<String> {
        parse(&word(text))
            .unwrap()
            .iter()
            .map(|p| format!("{}={}@{}", p.key.text, p.value.text, p.key.at.column))
            .collect()
    }

    fn refused(text: &str) -> String {
        let (at, why) = parse(&word(text)).unwrap_err();
        format!("{}:{} {why}", at.line, at.column)
    }

    #[test]
    fn import_pgbouncer_reads_connection_strings_as_pgbouncer_does() {
        assert_eq!(
            pairs("host=10.0.0.1  port = 5433 dbname='my ''db'''"),
            vec!["host=10.0.0.1@8", "port=5433@23", "dbname=my 'db'@35"]
        );
        // a tab is part of the value; the character after a quoted value is dropped
        assert_eq!(pairs("host=a\tport=1"), vec!["host=a\tport=1@8"]);
        assert_eq!(
            pairs("user='u'x password=p"),
            vec!["user=u@8", "password=p@18"]
        );
        assert_eq!(pairs(""), Vec::<String>::new());
        assert_eq!(pairs("   "), Vec::<String>::new());
    }

    #[test]
    fn import_pgbouncer_refuses_what_pgbouncer_refuses_in_a_connection_string() {
        assert_eq!(refused("host"), "3:8 `host` has no `=` after it");
        assert_eq!(refused("host=a port"), "3:15 `port` has no `=` after it");
        assert_eq!(refused("=a"), "3:8 a `=` with no key before it");
        assert_eq!(refused("host="), "3:13 `host` has an empty value");
        assert_eq!(refused("host=''"), "3:13 `host` has an empty value");
        assert_eq!(
            refused("host='a"),
            "3:13 the value of `host`: this `'` is never closed"
        );
    }

    #[test]
    fn import_pgbouncer_reads_numbers_as_atoi_does() {
        assert_eq!(atoi("5432"), 5432);
        assert_eq!(atoi(" 5432x"), 5432);
        assert_eq!(atoi("-1"), -1);
        assert_eq!(atoi("abc"), 0);
    }
}
