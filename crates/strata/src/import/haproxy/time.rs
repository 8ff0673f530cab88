//! Times as HAProxy reads them (`parse_time_err`): a whole number and a unit, `us`, `ms`, `s`,
//! `m`, `h` or `d`, milliseconds when it has none; and the same time as Strata writes it.

use crate::import::duration;

/// The longest time HAProxy takes, in milliseconds (a C `int`).
const MAX_MS: u64 = i32::MAX as u64;

/// A unit HAProxy reads a time in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Us,
    Ms,
    S,
    M,
    H,
    D,
}

/// A time as a HAProxy file writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Time {
    pub(super) value: u64,
    /// `None` when the file writes none: milliseconds.
    pub(super) unit: Option<Unit>,
}

impl Time {
    /// `text` as HAProxy reads a time; the reason HAProxy refuses it, otherwise.
    pub(super) fn parse(text: &str) -> Result<Time, String> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{text:?} is not a time (a whole number and a unit: us, ms, s, m, h or d; none is milliseconds)"));
        }
        let value: u64 = text[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is too long a time"))?;
        let rest = &text[digits..];
        // HAProxy only warns about what follows the unit ("10sec" is 10s)
        let unit = if rest.is_empty() {
            None
        } else if rest.starts_with("us") {
            Some(Unit::Us)
        } else if rest.starts_with("ms") {
            Some(Unit::Ms)
        } else {
            match rest.as_bytes()[0] {
                b's' => Some(Unit::S),
                b'm' => Some(Unit::M),
                b'h' => Some(Unit::H),
                b'd' => Some(Unit::D),
                _ => {
                    return Err(format!(
                        "{text:?}: unexpected {:?} (the units are us, ms, s, m, h and d)",
                        rest.chars().next().unwrap_or_default()
                    ))
                }
            }
        };
        let time = Time { value, unit };
        let ms = time.ms();
        if ms > MAX_MS {
            return Err(format!(
                "{text:?} is longer than HAProxy takes (2147483647 ms, about 24.8 days)"
            ));
        }
        if ms == 0 && value != 0 {
            return Err(format!(
                "{text:?} is shorter than HAProxy takes (a millisecond)"
            ));
        }
        Ok(time)
    }

    /// In milliseconds, a fraction rounded up as HAProxy rounds it.
    pub(super) fn ms(self) -> u64 {
        let micros = match self.unit.unwrap_or(Unit::Ms) {
            Unit::Us => 1,
            Unit::Ms => 1_000,
            Unit::S => 1_000_000,
            Unit::M => 60_000_000,
            Unit::H => 3_600_000_000,
            Unit::D => 86_400_000_000,
        };
        self.value.saturating_mul(micros).div_ceil(1_000)
    }

    /// As Strata writes it: in the unit the file writes when Strata has it ("1m" stays "1m"),
    /// days as hours, and microseconds or no unit as milliseconds ("5000" is "5s").
    pub(super) fn strata(self) -> String {
        match self.unit {
            Some(Unit::Ms) => format!("{}ms", self.value),
            Some(Unit::S) => format!("{}s", self.value),
            Some(Unit::M) => format!("{}m", self.value),
            Some(Unit::H) => format!("{}h", self.value),
            Some(Unit::D) => format!("{}h", self.value * 24),
            Some(Unit::Us) | None => duration(self.ms()),
        }
    }

    /// Whether microseconds were rounded up to the millisecond Strata counts in.
    pub(super) fn rounded(self) -> bool {
        self.unit == Some(Unit::Us) && !self.value.is_multiple_of(1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Result<u64, String> {
        Time::parse(text).map(Time::ms)
    }

    #[test]
    fn import_haproxy_reads_each_time_unit_as_haproxy_does() {
        assert_eq!(ms("5000"), Ok(5_000));
        assert_eq!(ms("1500us"), Ok(2));
        assert_eq!(ms("1us"), Ok(1));
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("4h"), Ok(14_400_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("0"), Ok(0));
        // HAProxy warns about what follows a unit, and reads the unit
        assert_eq!(ms("10sec"), Ok(10_000));
    }

    #[test]
    fn import_haproxy_refuses_the_times_haproxy_refuses() {
        assert!(ms("").unwrap_err().contains("is not a time"));
        assert!(ms("s").unwrap_err().contains("is not a time"));
        assert!(ms("1.5s").unwrap_err().contains("unexpected '.'"));
        assert!(ms("10x").unwrap_err().contains("unexpected 'x'"));
        assert!(ms("25d").unwrap_err().contains("longer than HAProxy takes"));
        assert!(ms("2147483648").unwrap_err().contains("longer"));
        assert_eq!(ms("2147483647"), Ok(2_147_483_647));
    }

    #[test]
    fn import_haproxy_writes_times_in_the_unit_the_file_wrote() {
        let strata = |text: &str| Time::parse(text).unwrap().strata();
        assert_eq!(strata("1m"), "1m");
        assert_eq!(strata("4h"), "4h");
        assert_eq!(strata("30s"), "30s");
        assert_eq!(strata("100ms"), "100ms");
        assert_eq!(strata("5000"), "5s");
        assert_eq!(strata("1500"), "1500ms");
        assert_eq!(strata("2d"), "48h");
        assert_eq!(strata("1500us"), "2ms");
        assert!(Time::parse("1500us").unwrap().rounded());
        assert!(!Time::parse("2000us").unwrap().rounded());
        // each is a duration Strata reads
        for text in ["1m", "4h", "5000", "2d", "1500us", "100ms"] {
            let written = strata(text);
            assert!(strata_config::parse_duration(&written).is_ok(), "{written}");
        }
    }
}
