//! A walker over the spanned TOML tree: typed getters that record a located problem instead of
//! stopping, so `strata check` can list every mistake in one run.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::Report;

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// One TOML table being read: remembers which keys were taken so the rest can be reported.
pub(crate) struct Section<'a, 'i> {
    pub(crate) path: String,
    pub(crate) span: Range<usize>,
    table: &'a DeTable<'i>,
    known: &'static [&'static str],
}

impl<'a, 'i> Section<'a, 'i> {
    /// Reads `value` as a table at `path`; reports keys outside `known`.
    pub(crate) fn new(
        report: &mut Report<'_>,
        path: String,
        value: &'a Value<'i>,
        known: &'static [&'static str],
    ) -> Option<Self> {
        let Some(table) = value.get_ref().as_table() else {
            report.add(
                value.span(),
                &path,
                format!("expected a table, found {}", value.get_ref().type_str()),
            );
            return None;
        };
        let section = Section {
            path,
            span: value.span(),
            table,
            known,
        };
        section.check_unknown(report);
        Some(section)
    }

    pub(crate) fn root(table: &'a Spanned<DeTable<'i>>, known: &'static [&'static str]) -> Self {
        Section {
            path: String::new(),
            span: table.span(),
            table: table.get_ref(),
            known,
        }
    }

    pub(crate) fn check_unknown(&self, report: &mut Report<'_>) {
        for (key, _) in self.table.iter() {
            let name: &str = key.get_ref();
            if !self.known.contains(&name) {
                let hint = closest(name, self.known)
                    .map(|k| format!("did you mean `{k}`?"))
                    .or_else(|| Some(format!("known keys here: {}", self.known.join(", "))));
                report.add_hint(key.span(), &self.key(name), "unknown key", hint);
            }
        }
    }

    pub(crate) fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a Value<'i>> {
        debug_assert!(self.known.contains(&name), "{name} missing from known keys");
        self.table.get(name)
    }

    pub(crate) fn required(&self, report: &mut Report<'_>, name: &str) -> Option<&'a Value<'i>> {
        let value = self.get(name);
        if value.is_none() {
            report.add(
                self.span.clone(),
                &self.key(name),
                "required key is missing",
            );
        }
        value
    }

    pub(crate) fn string(&self, report: &mut Report<'_>, name: &str) -> Option<&'a str> {
        self.get(name)
            .and_then(|v| as_str(report, &self.key(name), v))
    }

    pub(crate) fn bool(&self, report: &mut Report<'_>, name: &str, default: bool) -> bool {
        let Some(v) = self.get(name) else {
            return default;
        };
        match v.get_ref().as_bool() {
            Some(b) => b,
            None => {
                wrong_type(report, &self.key(name), v, "a boolean (true or false)");
                default
            }
        }
    }

    /// An integer within `range`, or `default` when absent.
    pub(crate) fn int(
        &self,
        report: &mut Report<'_>,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> i64 {
        let Some(v) = self.get(name) else {
            return default;
        };
        as_int(report, &self.key(name), v, range).unwrap_or(default)
    }

    pub(crate) fn float(
        &self,
        report: &mut Report<'_>,
        name: &str,
        range: std::ops::RangeInclusive<f64>,
        default: f64,
    ) -> f64 {
        let Some(v) = self.get(name) else {
            return default;
        };
        let parsed = match v.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(i) => i.as_str().replace('_', "").parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(f) if range.contains(&f) => f,
            Some(f) => {
                report.add(
                    v.span(),
                    &self.key(name),
                    format!("{f} is out of range ({} to {})", range.start(), range.end()),
                );
                default
            }
            None => {
                wrong_type(report, &self.key(name), v, "a number");
                default
            }
        }
    }

    pub(crate) fn duration(
        &self,
        report: &mut Report<'_>,
        name: &str,
        default: Duration,
    ) -> Duration {
        let Some(v) = self.get(name) else {
            return default;
        };
        as_duration(report, &self.key(name), v).unwrap_or(default)
    }

    /// A duration where `"0s"` means none: `None` then, `default` when absent.
    pub(crate) fn limit(
        &self,
        report: &mut Report<'_>,
        name: &str,
        default: Duration,
    ) -> Option<Duration> {
        Some(self.duration(report, name, default)).filter(|t| !t.is_zero())
    }

    /// A size in bytes up to `most`, or `default` when absent.
    pub(crate) fn size(&self, report: &mut Report<'_>, name: &str, default: u64, most: u64) -> u64 {
        let Some(v) = self.get(name) else {
            return default;
        };
        let key = self.key(name);
        let n = self.any_size(report, name, default);
        if n > most {
            report.add(
                v.span(),
                &key,
                format!(
                    "{} is more than the most it can be, {}",
                    bytes(n),
                    bytes(most)
                ),
            );
            return default;
        }
        n
    }

    /// Any size, or `default` when absent.
    fn any_size(&self, report: &mut Report<'_>, name: &str, default: u64) -> u64 {
        let Some(v) = self.get(name) else {
            return default;
        };
        let key = self.key(name);
        match v.get_ref() {
            DeValue::Integer(_) => {
                as_int(report, &key, v, 0..=i64::MAX).map_or(default, |n| n as u64)
            }
            DeValue::String(s) => match parse_size(s) {
                Ok(n) => n,
                Err(why) => {
                    report.add_hint(
                        v.span(),
                        &key,
                        why,
                        Some("write a size like \"16KiB\", \"10MiB\" or a number of bytes"),
                    );
                    default
                }
            },
            _ => {
                wrong_type(report, &key, v, "a size such as \"10MiB\"");
                default
            }
        }
    }

    /// A listener's required `name` and `listen` address.
    pub(crate) fn name_and_listen(
        &self,
        report: &mut Report<'_>,
    ) -> (Option<&'a str>, Option<SocketAddr>) {
        let name = self
            .required(report, "name")
            .and_then(|_| self.string(report, "name"));
        let listen = self.required(report, "listen").and_then(|v| {
            self.string(report, "listen")
                .and_then(|t| as_addr(report, &self.key("listen"), v, t))
        });
        (name, listen)
    }

    /// A string that must be one of `choices`.
    pub(crate) fn choice(
        &self,
        report: &mut Report<'_>,
        name: &str,
        choices: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        let Some(v) = self.get(name) else {
            return default;
        };
        let key = self.key(name);
        let Some(s) = as_str(report, &key, v) else {
            return default;
        };
        match choices.iter().find(|c| **c == s) {
            Some(c) => c,
            None => {
                report.add_hint(
                    v.span(),
                    &key,
                    format!("unknown value \"{s}\""),
                    Some(format!("one of: {}", choices.join(", "))),
                );
                default
            }
        }
    }

    /// An array of tables (or a single table) under `name`, each checked against `known`.
    pub(crate) fn tables(
        &self,
        report: &mut Report<'_>,
        name: &str,
        known: &'static [&'static str],
    ) -> Vec<Section<'a, 'i>> {
        let Some(v) = self.get(name) else {
            return Vec::new();
        };
        tables_of(report, &self.key(name), v, known)
    }
}

pub(crate) fn tables_of<'a, 'i>(
    report: &mut Report<'_>,
    key: &str,
    v: &'a Value<'i>,
    known: &'static [&'static str],
) -> Vec<Section<'a, 'i>> {
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| Section::new(report, format!("{key}[{i}]"), item, known))
            .collect(),
        DeValue::Table(_) => Section::new(report, format!("{key}[0]"), v, known)
            .into_iter()
            .collect(),
        _ => {
            wrong_type(report, key, v, &format!("an array of tables ([[{key}]])"));
            Vec::new()
        }
    }
}

pub(crate) fn wrong_type(report: &mut Report<'_>, key: &str, v: &Value<'_>, expected: &str) {
    report.add(
        v.span(),
        key,
        format!("expected {expected}, found {}", v.get_ref().type_str()),
    );
}

pub(crate) fn as_str<'a>(report: &mut Report<'_>, key: &str, v: &'a Value<'_>) -> Option<&'a str> {
    let s = v.get_ref().as_str();
    if s.is_none() {
        wrong_type(report, key, v, "a string");
    }
    s
}

pub(crate) fn as_int(
    report: &mut Report<'_>,
    key: &str,
    v: &Value<'_>,
    range: std::ops::RangeInclusive<i64>,
) -> Option<i64> {
    let Some(i) = v.get_ref().as_integer() else {
        wrong_type(report, key, v, "an integer");
        return None;
    };
    let parsed = i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok();
    match parsed {
        Some(n) if range.contains(&n) => Some(n),
        _ => {
            report.add(
                v.span(),
                key,
                format!(
                    "{} is out of range ({} to {})",
                    i.as_str(),
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

pub(crate) fn as_duration(report: &mut Report<'_>, key: &str, v: &Value<'_>) -> Option<Duration> {
    let hint = Some("write a duration like \"100ms\", \"2s\", \"5m\" or \"1h30m\"");
    match v.get_ref() {
        DeValue::String(s) => match parse_duration(s) {
            Ok(d) => Some(d),
            Err(why) => {
                report.add_hint(v.span(), key, why, hint);
                None
            }
        },
        DeValue::Integer(i) => {
            report.add_hint(
                v.span(),
                key,
                format!("a bare number ({}) has no unit", i.as_str()),
                Some(format!("write \"{}s\" or \"{}ms\"", i.as_str(), i.as_str())),
            );
            None
        }
        _ => {
            wrong_type(report, key, v, "a duration string such as \"2s\"");
            None
        }
    }
}

/// Parses `ip:port`, `[v6]:port` or `localhost:port`.
pub(crate) fn as_addr(
    report: &mut Report<'_>,
    key: &str,
    v: &Value<'_>,
    s: &str,
) -> Option<SocketAddr> {
    match parse_addr(s) {
        Ok(addr) => Some(addr),
        Err(why) => {
            report.add_hint(
                v.span(),
                key,
                why,
                Some("write an address like \"127.0.0.1:8080\" or \"[::1]:8080\""),
            );
            None
        }
    }
}

/// Addresses are IP literals (or `localhost`): checking a config never queries DNS, and a
/// backend's address can't change under a running node without a reload.
pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("\"{s}\" has no port"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("\"{port}\" is not a port number (0 to 65535)"));
    };
    match host {
        "" => Err(format!("\"{s}\" has no host")),
        "localhost" => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        _ => Err(format!(
            "\"{host}\" is not an IP address; host names are not resolved in this version"
        )),
    }
}

/// Parses durations such as `50us`, `250ms`, `2s`, `5m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("\"{s}\" is not a duration"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("\"{}\" is not a number", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let seconds = match unit {
            // the micro sign, and the Greek letter mu that looks the same
            "us" | "\u{b5}s" | "\u{3bc}s" => number / 1e6,
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "" => return Err(format!("\"{s}\" has no unit")),
            other => {
                return Err(format!(
                    "unknown duration unit \"{other}\" (use us, ms, s, m or h)"
                ))
            }
        };
        total += Duration::from_secs_f64(seconds);
    }
    Ok(total)
}

/// `n` bytes as a config would write it: `"512MiB"`, or the bare number when no unit divides it.
fn bytes(n: u64) -> String {
    match [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .into_iter()
        .find(|(shift, _)| n >= 1 << shift && n.is_multiple_of(1 << shift))
    {
        Some((shift, unit)) => format!("\"{}{unit}\"", n >> shift),
        None => n.to_string(),
    }
}

/// Parses sizes such as `512`, `16KiB`, `10MiB`, `1G` (K, M, G count in 1024s, as nginx does).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!("\"{s}\" is not a size"));
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("\"{s}\" is too large"))?;
    let unit = s[digits..].trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size unit \"{unit}\" (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("\"{s}\" is too large"))
}

/// The known key nearest to `name` by edit distance, if it is close enough to be a typo.
fn closest(name: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("50us"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_duration("50\u{b5}s"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_duration("50\u{3bc}s"), Ok(Duration::from_micros(50)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1TB").is_err());
    }

    #[test]
    fn typo_hints() {
        assert_eq!(
            closest("backend", &["backends", "listen"]),
            Some("backends")
        );
        assert_eq!(closest("zzzzzz", &["backends", "listen"]), None);
    }
}
