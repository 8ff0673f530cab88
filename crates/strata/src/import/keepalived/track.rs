//! One entry of a `track_interface` or `track_script` block (or `track_file`, `track_process`,
//! `track_bfd`) made a line of `[[vip]]`'s `track`, with keepalived's rules for its weight.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::blocks::FileConf;
use super::conf::Statement;
use super::{duration, integer, quoted, Line, KEPT, MAX_WEIGHT, NOT_TRANSLATED};

/// Why keepalived ignores a track entry's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ignored {
    /// The instance is the address owner (priority 255), whose priority never moves.
    Owner,
    /// The instance is in a vrrp_sync_group (without `sync_group_tracking_weight`).
    SyncGroup,
}

/// One entry of a `track_*` block.
pub(super) struct Entry<'a> {
    /// The block's keyword: `track_interface`, `track_script`...
    pub(super) kw: &'a str,
    pub(super) statement: &'a Statement,
    pub(super) ignored: Option<Ignored>,
}

impl Entry<'_> {
    /// The entry's line of `track`, and a note when it is not quite as written; an error
    /// (the note) for an entry with no line.
    pub(super) fn translate(
        &self,
        top: &FileConf<'_>,
        tracked: &mut HashSet<(String, String)>,
        used_scripts: &mut HashSet<String>,
    ) -> Result<(Line, Option<String>), String> {
        let name = self.statement.keyword();
        let at = self.statement.at();
        let what = match self.kw {
            "track_interface" => "an interface's link",
            "track_script" => "a script",
            "track_file" => "a file's contents",
            "track_process" => "processes",
            _ => "BFD sessions",
        };
        if !matches!(self.kw, "track_interface" | "track_script") {
            let why = format!("{KEPT}: Strata does not track {what}: write a `{{ command = \"...\" }}` entry that checks the same thing, or delete this line");
            let text = quoted(&format!("{} {}", self.kw, self.statement.head()));
            return Ok((
                Line {
                    text,
                    kept: Some(at.line),
                },
                Some(why),
            ));
        }
        let script = if self.kw == "track_script" {
            let Some(script) = top.script(name).filter(|s| s.command.is_some()) else {
                let also = if top.includes {
                    " in this file (the `include`d files are not read)"
                } else {
                    ""
                };
                return Err(format!("{NOT_TRANSLATED}: no vrrp_script {} with a `script`{also}, and keepalived ignores tracking one it does not have", quoted(name)));
            };
            used_scripts.insert(script.name.to_string());
            Some(script)
        } else {
            None
        };
        if script.is_none() && !strata_config::is_interface_name(name) {
            return Err(format!("{NOT_TRANSLATED}: {} is not an interface name ({}), so keepalived finds no such interface to track", quoted(name), strata_config::INTERFACE_NAME_RULE));
        }
        if !tracked.insert((self.kw.to_string(), name.to_string())) {
            return Err(format!("{NOT_TRANSLATED}: {} is tracked already, and keepalived ignores it the second time", quoted(name)));
        }
        let weight = Weight::read(self.statement)?;
        let mut notes = Vec::new();
        notes.extend(weight.clamped);
        let (mut w, reverse) = match script {
            Some(s) => (
                weight.value.unwrap_or(s.weight),
                weight.reverse.unwrap_or(s.reverse),
            ),
            None => (weight.value.unwrap_or(0), weight.reverse.unwrap_or(false)),
        };
        match self.ignored.filter(|_| w != 0) {
            Some(Ignored::Owner) => return Err(format!("{NOT_TRANSLATED}: keepalived ignores {what} tracked with a weight ({w}) for the address owner (priority 255), whose priority never moves")),
            Some(Ignored::SyncGroup) if script.is_some() => return Err(format!("{NOT_TRANSLATED}: keepalived ignores a script tracked with a weight ({w}) in a vrrp_sync_group")),
            Some(Ignored::SyncGroup) => {
                notes.push(format!("weight {w} dropped: keepalived sets it to 0 in a vrrp_sync_group, so the link going down is a Fault"));
                w = 0;
            }
            None => {}
        }
        let mut table = match script {
            Some(s) => {
                let mut t = format!(
                    "{{ command = {}, interval = {}",
                    quoted(s.command.map_or("", |c| c.text.as_str())),
                    quoted(&duration(s.interval))
                );
                if let Some(timeout) = s.timeout {
                    let _ = write!(t, ", timeout = {}", quoted(&duration(timeout)));
                }
                if w != 0 {
                    let _ = write!(t, ", weight = {w}");
                }
                if s.fall != 1 {
                    let _ = write!(t, ", fall = {}", s.fall);
                }
                if s.rise != 1 {
                    let _ = write!(t, ", rise = {}", s.rise);
                }
                t
            }
            None if w == 0 && !reverse => {
                let line = Line::new(quoted(&format!("interface:{name}")));
                return Ok((line, join(notes)));
            }
            None => format!("{{ interface = {}, weight = {w}", quoted(name)),
        };
        if reverse {
            notes.push(format!("{KEPT}: Strata has no `reverse` weights (keepalived's weight counting the other way round): write the weight with the sign it should have while the check fails or succeeds, or delete this line"));
            table.push_str(", reverse = true }");
            let line = Line {
                text: table,
                kept: Some(at.line),
            };
            return Ok((line, join(notes)));
        }
        table.push_str(" }");
        Ok((Line::new(table), join(notes)))
    }
}

/// Notes on one place, as one.
pub(super) fn join(notes: Vec<String>) -> Option<String> {
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// A track entry's `weight W [reverse|noreverse]`, as keepalived reads it.
pub(super) struct Weight {
    /// `None`: none given, or one keepalived ignores.
    pub(super) value: Option<i64>,
    /// The note when keepalived changes or ignores the weight given.
    pub(super) clamped: Option<String>,
    /// `reverse` or `noreverse`, when given.
    pub(super) reverse: Option<bool>,
}

impl Weight {
    /// The weight of `entry` (`NAME [weight W [reverse]]`); an error for an entry keepalived
    /// ignores.
    pub(super) fn read(entry: &Statement) -> Result<Weight, String> {
        let mut weight = Weight {
            value: None,
            clamped: None,
            reverse: None,
        };
        let args = entry.args();
        let Some(first) = args.first() else {
            return Ok(weight);
        };
        if first.text != "weight" {
            return Err(format!(
                "{NOT_TRANSLATED}: keepalived ignores an entry with {} where `weight` should be",
                quoted(&first.text)
            ));
        }
        let Some(value) = args.get(1) else {
            return Err(format!(
                "{NOT_TRANSLATED}: keepalived ignores `weight` without a value"
            ));
        };
        match integer(&value.text) {
            Some(w) if w.abs() > MAX_WEIGHT + 1 => {
                weight.clamped = Some(format!(
                    "weight {w} ignored, as keepalived does (it takes -253 to 253)"
                ));
            }
            Some(w) if w.abs() == MAX_WEIGHT + 1 => {
                let to = w.signum() * MAX_WEIGHT;
                weight.clamped = Some(format!("weight {w} made {to}, as keepalived does"));
                weight.value = Some(to);
            }
            Some(w) => weight.value = Some(w),
            None => {
                return Err(format!(
                    "{NOT_TRANSLATED}: the weight {} is not a number, which keepalived ignores",
                    quoted(&value.text)
                ))
            }
        }
        weight.reverse = match args.get(2).map(|w| w.text.as_str()) {
            Some("reverse") => Some(true),
            Some("noreverse") => Some(false),
            _ => None,
        };
        Ok(weight)
    }
}
