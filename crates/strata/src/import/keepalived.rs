//! keepalived's `vrrp_instance`s translated into `[[vip]]` instances, one each: the same virtual
//! router (interface, vrid, addresses, priority) and what decides who holds it.
//!
//! What can't be carried over is treated by what it would change:
//! - how VRRP runs, or what keepalived does besides (authentication, the initial state, mail,
//!   routes, LVS, process settings): dropped, with a note;
//! - what keepalived itself ignores or resets (a value it refuses, a weight in a sync group,
//!   `nopreempt` with `state MASTER`): translated as keepalived runs it, with a note;
//! - what decides whether this node keeps the addresses and Strata cannot watch (a tracked
//!   file, process or BFD session, a `reverse` weight), or a vrid used twice on an interface:
//!   kept as written and marked, so `strata check` refuses the output until someone decides;
//! - an instance Strata cannot run (an IPv6 one, one sending by unicast without `interface`,
//!   one without an IPv4 address): left out, its translation printed as a comment.
//!
//! A file keepalived would not run (a brace left open, an instance without `virtual_router_id`
//! or `interface`) is refused, every problem with its line, and nothing is printed.

mod blocks;
mod conf;
mod track;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    commented, duration, quoted, Item, Line, Note, Pos, Table, Translation, KEPT, NOT_TRANSLATED,
};
use blocks::{skipped, FileConf, InstanceConf};
use conf::Statement;
use track::{Entry, Ignored};

const LEFT_OUT: &str = "instance left out (its translation is a comment in the output)";

/// keepalived's default priority, and Strata's.
const DEFAULT_PRIORITY: u32 = 100;
/// The address owner's priority.
const OWNER: u32 = 255;
/// The most gratuitous ARPs `[[vip]]` sends in a burst.
const MAX_GARP_COUNT: u32 = 100;
/// The most `fall` or `rise` a `[[vip]]` track command takes.
const MAX_FALL_RISE: u64 = 100;
/// The largest tracking weight keepalived applies (it takes ±254 as ±253).
const MAX_WEIGHT: i64 = 253;
/// The longest advert interval VRRPv3 carries, in centiseconds.
const MAX_ADVERT_CS: u64 = 4095;
/// keepalived reads timers to the microsecond.
const MICROS: u64 = 1_000_000;

/// Translates the keepalived config `source`; `file` names it in the header comment.
pub(super) fn translate(source: &str, file: &str) -> Result<Translation, Vec<Note>> {
    let statements = conf::parse(source)?;
    if !statements.iter().any(|s| s.keyword() == "vrrp_instance") {
        return Err(vec![Note::new(
            Pos { line: 1, column: 1 },
            "",
            "no `vrrp_instance`: nothing to translate into `[[vip]]` (keepalived's LVS part, `virtual_server`, is not translated)",
        )]);
    }
    let mut top = FileConf::read(&statements);
    let mut confs: Vec<InstanceConf<'_>> = Vec::new();
    for s in &top.instances {
        let Some(name) = s.arg(0).filter(|_| s.args().len() == 1) else {
            let why = format!("{NOT_TRANSLATED}: keepalived skips a `vrrp_instance` without exactly one name (it logs \"vrrp_instance must have a name\")");
            top.notes.push(Note::new(s.at(), "vrrp_instance", why));
            continue;
        };
        if let Some(first) = confs.iter().find(|c| c.name.text == name.text) {
            let why = format!(
                "{NOT_TRANSLATED}: keepalived skips a second instance named {} (the first is on line {})",
                quoted(&name.text),
                first.name.at.line
            );
            top.notes.push(Note::new(s.at(), &name.text, why));
            continue;
        }
        confs.push(InstanceConf::read(s, name, &top));
    }
    let mut problems: Vec<Note> = confs.iter().flat_map(|c| c.problems(&top)).collect();
    let taken = shared_vrids(&confs, &mut problems);
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.at);
        return Err(problems);
    }

    let mut vips = Vec::new();
    let mut used_scripts = HashSet::new();
    let mut held = HashMap::new();
    for (conf, taken) in confs.iter().zip(taken) {
        let vip = Vip::translate(conf, &top, taken.as_deref(), &mut used_scripts, &mut held);
        vips.push(vip);
    }
    top.unused_scripts(&used_scripts);
    top.version_note(&confs);

    let mut toml = format!(
        "# Translated from {file} by `strata import keepalived`, one [[vip]] per\n\
         # vrrp_instance. What could not be translated is listed on stderr, and here: about the\n\
         # file as a whole below, about an instance above it.\n"
    );
    top.notes.sort_by_key(|n| n.at);
    if !top.notes.is_empty() {
        toml.push('\n');
    }
    toml.push_str(&commented(&top.notes));
    let mut translation = Translation::new(toml, top.notes, "vrrp_instance", vips);
    translation.notes.sort_by_key(|n| n.at);
    Ok(translation)
}

/// For each instance, the earlier instance whose vrid it shares on its interface, which Strata
/// refuses: a problem where keepalived refuses it too (both sending by multicast, or by unicast
/// to a common peer), otherwise the other's name, for the vrid to be kept as written.
fn shared_vrids(confs: &[InstanceConf<'_>], problems: &mut Vec<Note>) -> Vec<Option<String>> {
    let mut taken = Vec::new();
    for (i, conf) in confs.iter().enumerate() {
        let (Some(interface), Some(vrid)) = (conf.interface, conf.vrid()) else {
            taken.push(None);
            continue;
        };
        let first = confs[..i].iter().find(|c| {
            c.interface.is_some_and(|f| f.text == interface.text)
                && c.vrid() == Some(vrid)
                && !c.ipv6()
                && !conf.ipv6()
        });
        let Some(first) = first else {
            taken.push(None);
            continue;
        };
        let (peers, first_peers) = (conf.peers(), first.peers());
        let refused = (peers.is_empty() && first_peers.is_empty())
            || peers.iter().any(|p| first_peers.contains(p));
        if refused {
            let at = conf.vrid.map_or(conf.at, Statement::at);
            let why = format!("vrid {vrid} on {} is `{}`'s too: keepalived refuses two instances with one vrid on an interface that send by multicast, or to the same peer (\"{} and {} both use VRID {vrid}\")", interface.text, first.name.text, first.name.text, conf.name.text);
            problems.push(Note::new(
                at,
                &format!("{}.virtual_router_id", conf.name.text),
                why,
            ));
        }
        taken.push(Some(first.name.text.clone()));
    }
    taken
}

/// An instance's translation, as it is made.
struct Vip {
    table: Table,
}

impl Vip {
    /// The instance's `[[vip]]` table and the notes about it.
    fn translate(
        conf: &InstanceConf<'_>,
        top: &FileConf<'_>,
        vrid_taken: Option<&str>,
        used_scripts: &mut HashSet<String>,
        held: &mut HashMap<Ipv4Addr, String>,
    ) -> Table {
        let mut vip = Vip {
            table: Table::new("vip"),
        };
        vip.table.notes = conf.dropped.clone();
        let name = conf.name.text.as_str();
        let key = |k: &str| format!("{name}.{k}");
        vip.table.key("name", quoted(name));
        match conf.interface {
            Some(i) if !strata_config::is_interface_name(&i.text) => {
                vip.table.key("interface", quoted(&i.text));
                let why = format!("{} is not an interface name ({}), so keepalived finds no such interface", quoted(&i.text), strata_config::INTERFACE_NAME_RULE);
                vip.leave_out(i.at, &key("interface"), &why);
            }
            Some(i) => vip.table.key("interface", quoted(&i.text)),
            None => vip.leave_out(conf.at, name, "no `interface` (keepalived sends by unicast from `unicast_src_ip`): Strata runs an instance on one interface, its adverts going out of it and its addresses going on it"),
        }
        let vrid = conf.vrid().unwrap_or_default();
        match (vrid_taken, conf.interface) {
            (Some(first), Some(i)) => {
                let at = conf.vrid.map_or(conf.at, Statement::at);
                let why = format!("{KEPT}: vrid {vrid} on {} is `{first}`'s too, which keepalived takes (one sends by unicast and the other by multicast, or to other peers) and Strata does not: give each its own", i.text);
                vip.table.note(at, &key("virtual_router_id"), why);
                vip.table.items.push(Item::Key(Line {
                    text: format!("vrid = {vrid}"),
                    kept: Some(at.line),
                }));
            }
            _ => vip.table.key("vrid", vrid.to_string()),
        }
        let priority = vip.priority(conf);
        vip.advert_interval(conf, top);
        vip.addresses(conf, held);
        vip.peers(conf);
        vip.preempt(conf, priority);
        vip.track(conf, top, priority, used_scripts);
        vip.notify(conf);
        vip.garp(conf);
        if let Some(s) = conf.checksum {
            match s.arg(0).map(|w| boolean(&w.text)) {
                None | Some(Some(true)) => {
                    vip.table.key("checksum", quoted("without-pseudo-header"))
                }
                Some(Some(false)) => {}
                Some(None) => {
                    let why = format!("{NOT_TRANSLATED}: not on, off, true, false, yes or no, which keepalived ignores");
                    vip.table.note(s.at(), &key("v3_checksum_as_v2"), why);
                }
            }
        }
        if let Some(s) = conf.state {
            let why = if conf.master() && priority < OWNER {
                format!("{NOT_TRANSLATED}: `state MASTER` makes keepalived start as Master without waiting, but with priority {priority} (below 255) it does not decide who wins: a peer with a higher priority takes the addresses. Strata starts every instance as Backup and the election goes by priority")
            } else if conf.master() {
                format!("{NOT_TRANSLATED}: Strata starts every instance as Backup; at priority 255, the address owner, it takes the addresses at once, as keepalived does")
            } else if priority == OWNER {
                format!("{NOT_TRANSLATED}: at priority 255, the address owner, Strata takes the addresses at once, where keepalived with `state BACKUP` first waits for a Master for three advert intervals")
            } else {
                format!("{NOT_TRANSLATED}: Strata starts every instance as Backup, as `state BACKUP` does, and the election goes by priority")
            };
            vip.table.note(s.at(), &key("state"), why);
        }
        if let Some(s) = conf.version {
            let why = match s.arg(0).map(|w| w.text.as_str()) {
                Some("3") => None,
                Some("2") => Some(format!("{NOT_TRANSLATED}: Strata speaks VRRPv3 only, and a VRRPv2 router does not hear a VRRPv3 one (each would take the addresses): set `version 3` here on the keepalived peers")),
                _ => Some("keepalived ignores it (it takes 2 or 3); Strata speaks VRRPv3".to_string()),
            };
            if let Some(why) = why {
                vip.table.note(s.at(), &key("version"), why);
            }
        }
        vip.table.finish(name, conf.at)
    }

    /// `priority`, as keepalived takes it; returns it.
    fn priority(&mut self, conf: &InstanceConf<'_>) -> u32 {
        let key = format!("{}.priority", conf.name.text);
        let priority = match conf.priority {
            Some(s) => {
                let value = s.arg(0).map_or("", |w| w.text.as_str());
                match integer(value).filter(|p| (1..=255).contains(p)) {
                    Some(p) => p as u32,
                    None => {
                        let why = format!("{} is not a priority (1 to 255): keepalived uses {DEFAULT_PRIORITY}, and so does this translation", quoted(value));
                        self.table.note(s.at(), &key, why);
                        DEFAULT_PRIORITY
                    }
                }
            }
            None if conf.master() => {
                let at = conf.state.map_or(conf.at, Statement::at);
                let why = format!("no `priority` with `state MASTER`: keepalived makes the instance the address owner, priority {OWNER}, and so does this translation");
                self.table.note(at, &key, why);
                OWNER
            }
            None => DEFAULT_PRIORITY,
        };
        self.table.key("priority", priority.to_string());
        priority
    }

    /// `advert_interval`: keepalived's `advert_int` in seconds, rounded to the centisecond
    /// VRRPv3 carries as keepalived rounds it.
    fn advert_interval(&mut self, conf: &InstanceConf<'_>, top: &FileConf<'_>) {
        let Some(s) = conf.advert_int else {
            self.table.key("advert_interval", quoted("1s"));
            return;
        };
        let key = format!("{}.advert_int", conf.name.text);
        let value = s.arg(0).map_or("", |w| w.text.as_str());
        let micros = decimal(value, 6).filter(|us| (10_000..=255 * MICROS).contains(us));
        let Some(micros) = micros else {
            let why = format!("{} is not an interval keepalived takes (0.01 to 255 seconds): it advertises every second, and so does this translation", quoted(value));
            self.table.note(s.at(), &key, why);
            self.table.key("advert_interval", quoted("1s"));
            return;
        };
        let cs = ((micros + 5_000) / 10_000).clamp(1, MAX_ADVERT_CS);
        let ms = cs * 10;
        if cs * 10_000 != micros {
            let why = if cs == MAX_ADVERT_CS {
                format!("{value}s made 40.95s: the longest interval VRRPv3 carries (keepalived at `vrrp_version 3` takes 40.95s too)")
            } else {
                format!("{value}s made {}: VRRPv3 carries the interval in centiseconds (keepalived at `vrrp_version 3` rounds it too)", duration(ms))
            };
            self.table.note(s.at(), &key, why);
        } else if top.version_of(conf) == 2 && !micros.is_multiple_of(MICROS) {
            let whole = ((micros + MICROS / 2) / MICROS).max(1);
            let why = format!("keepalived at VRRPv2 advertises every {whole}s (whole seconds); at VRRPv3, as Strata and keepalived at `vrrp_version 3` do, every {}", duration(ms));
            self.table.note(s.at(), &key, why);
        }
        self.table.key("advert_interval", quoted(&duration(ms)));
    }

    /// `addresses`, from `virtual_ipaddress` and `virtual_ipaddress_excluded`, as keepalived
    /// reads them: the first virtual address sets the instance's family, and one of the other
    /// family, or listed twice, is ignored. `held` has the addresses of the instances before,
    /// by whose they are: one of them is kept as written (Strata gives an address to one).
    fn addresses(&mut self, conf: &InstanceConf<'_>, held: &mut HashMap<Ipv4Addr, String>) {
        let name = conf.name.text.as_str();
        let interface = conf.interface.map(|i| i.text.as_str());
        let mut lines = Vec::new();
        let mut seen: HashMap<Ipv4Addr, usize> = HashMap::new();
        // the instance's family (IPv6 or not), and where it was set
        let mut family: Option<(bool, Pos)> = None;
        let lists = conf
            .addresses
            .iter()
            .map(|s| (s, false))
            .chain(conf.excluded.iter().map(|s| (s, true)));
        for (list, excluded) in lists {
            let key = format!("{name}.{}", list.keyword());
            if excluded && !list.block().is_empty() {
                let why = "its addresses are in `addresses`: Strata advertises them with the others, where keepalived leaves them out of its adverts (a keepalived peer logs that the count differs, and carries on)";
                self.table.note(list.at(), &key, why.into());
            }
            for entry in list.block() {
                let at = entry.at();
                if let Some(note) = skipped(entry, name) {
                    self.table.notes.push(note);
                    continue;
                }
                let text = entry.keyword();
                let host = text.split('/').next().unwrap_or(text);
                let v6 = host.parse::<Ipv6Addr>().is_ok();
                if !v6 && host.parse::<Ipv4Addr>().is_err() {
                    let why = format!(
                        "{NOT_TRANSLATED}: {} is not an address, and keepalived skips it too",
                        quoted(text)
                    );
                    self.table.note(at, &key, why);
                    continue;
                }
                if !excluded {
                    match family {
                        None => family = Some((v6, at)),
                        Some((f, _)) if f != v6 => {
                            let why = format!("{NOT_TRANSLATED}: keepalived ignores {} in an IPv{} instance (\"address family must match\")", quoted(text), if f { 6 } else { 4 });
                            self.table.note(at, &key, why);
                            continue;
                        }
                        Some(_) => {}
                    }
                }
                if v6 {
                    if excluded {
                        let why = format!(
                            "{NOT_TRANSLATED}: {} is IPv6, and Strata runs VRRP for IPv4 only",
                            quoted(text)
                        );
                        self.table.note(at, &key, why);
                    }
                    continue;
                }
                let addr = match strata_config::parse_vip_address(text) {
                    Ok(a) => a,
                    Err(why) => {
                        self.table
                            .note(at, &key, format!("{NOT_TRANSLATED}: {why}"));
                        continue;
                    }
                };
                if let Some(first) = seen.get(&addr.addr) {
                    let why = format!("{NOT_TRANSLATED}: {} is on line {first} already, and keepalived ignores it the second time", addr.addr);
                    self.table.note(at, &key, why);
                    continue;
                }
                seen.insert(addr.addr, at.line);
                if let Some(other) = held.get(&addr.addr) {
                    let why = format!("{KEPT}: {} is `{other}`'s too, which keepalived takes (whichever instance is Master adds it) and Strata does not: give the address to one instance", addr.addr);
                    self.table.note(at, &key, why);
                    lines.push(Line {
                        text: quoted(text),
                        kept: Some(at.line),
                    });
                    continue;
                }
                if !self.table.left_out {
                    held.insert(addr.addr, name.to_string());
                }
                let options: Vec<&str> = entry.args().iter().map(|w| w.text.as_str()).collect();
                let same_dev = matches!(options[..], ["dev", dev] if Some(dev) == interface);
                if !options.is_empty() && !same_dev {
                    let on = interface.map_or("the instance's interface".to_string(), quoted);
                    let why = format!("`{}` {NOT_TRANSLATED}: Strata adds each address to {on} with its prefix length only, as `ip address add ADDRESS/PREFIX dev INTERFACE` would", options.join(" "));
                    self.table.note(at, &key, why);
                }
                lines.push(Line::new(quoted(text)));
            }
        }
        match family {
            Some((true, at)) => {
                let why = "its first virtual address is IPv6, which makes it an IPv6 instance, and Strata runs VRRP for IPv4 only";
                self.leave_out(at, &format!("{name}.virtual_ipaddress"), why);
            }
            _ if lines.is_empty() => {
                self.leave_out(
                    conf.at,
                    name,
                    "no IPv4 virtual address: Strata needs at least one",
                );
            }
            _ => {}
        }
        if !lines.is_empty() {
            self.table.items.push(Item::Array("addresses", lines));
        }
    }

    /// `unicast_peers`, from `unicast_peer`.
    fn peers(&mut self, conf: &InstanceConf<'_>) {
        let mut lines = Vec::new();
        let mut seen = HashSet::new();
        for list in &conf.peers {
            let key = format!("{}.unicast_peer", conf.name.text);
            for entry in list.block() {
                let at = entry.at();
                let text = entry.keyword();
                match text.parse::<Ipv4Addr>() {
                    Ok(a) if !seen.insert(a) => {
                        let why = format!("{NOT_TRANSLATED}: {a} is listed already, and keepalived ignores it the second time");
                        self.table.note(at, &key, why);
                        continue;
                    }
                    Ok(_) => lines.push(Line::new(quoted(text))),
                    Err(_) if text.parse::<Ipv6Addr>().is_ok() => {
                        let why = format!(
                            "{NOT_TRANSLATED}: {} is IPv6, and Strata runs VRRP for IPv4 only",
                            quoted(text)
                        );
                        self.table.note(at, &key, why);
                        continue;
                    }
                    Err(_) => {
                        let why = format!("{NOT_TRANSLATED}: {} is not an IPv4 address, which keepalived ignores too", quoted(text));
                        self.table.note(at, &key, why);
                        continue;
                    }
                }
                if !entry.args().is_empty() {
                    let options: Vec<&str> = entry.args().iter().map(|w| w.text.as_str()).collect();
                    let why = format!("`{}` {NOT_TRANSLATED}: Strata takes an advert only with the TTL of 255 RFC 5798 requires", options.join(" "));
                    self.table.note(at, &key, why);
                }
            }
        }
        if !lines.is_empty() {
            self.table.items.push(Item::Array("unicast_peers", lines));
        }
    }

    /// `nopreempt` and `preempt_delay`, reset where keepalived resets them.
    fn preempt(&mut self, conf: &InstanceConf<'_>, priority: u32) {
        let name = conf.name.text.as_str();
        let mut nopreempt = false;
        if let Some(s) = conf.nopreempt {
            let key = format!("{name}.nopreempt");
            if priority == OWNER {
                let why = format!("{NOT_TRANSLATED}: keepalived turns it off for the address owner (priority 255), which always takes the addresses");
                self.table.note(s.at(), &key, why);
            } else if conf.master() {
                let why = format!("{NOT_TRANSLATED}: keepalived turns it off with `state MASTER` (it logs \"nopreempt will not work with initial state MASTER\"), so the instance preempts under keepalived, and does here");
                self.table.note(s.at(), &key, why);
            } else {
                self.table.key("nopreempt", "true".into());
                nopreempt = true;
            }
        }
        let Some(s) = conf.preempt_delay else {
            return;
        };
        let key = format!("{name}.preempt_delay");
        let value = s.arg(0).map_or("", |w| w.text.as_str());
        let reset = if conf.master() {
            Some("with `state MASTER`")
        } else if nopreempt {
            Some("with `nopreempt`")
        } else {
            None
        };
        if let Some(with) = reset {
            let why = format!(
                "{NOT_TRANSLATED}: keepalived turns it off {with}, and so does this translation"
            );
            self.table.note(s.at(), &key, why);
            return;
        }
        match decimal(value, 6).filter(|us| *us <= 1000 * MICROS) {
            Some(0) => {}
            Some(us) => {
                let ms = (us + 500) / 1000;
                if ms * 1000 != us {
                    self.table.note(
                        s.at(),
                        &key,
                        format!("{value}s made {}: to the millisecond", duration(ms)),
                    );
                }
                self.table.key("preempt_delay", quoted(&duration(ms)));
            }
            None => {
                let why = format!("{NOT_TRANSLATED}: {} is not a delay keepalived takes (0 to 1000 seconds), so it has none", quoted(value));
                self.table.note(s.at(), &key, why);
            }
        }
    }

    /// `track`, from the instance's `track_*` blocks and its sync group's.
    fn track(
        &mut self,
        conf: &InstanceConf<'_>,
        top: &FileConf<'_>,
        priority: u32,
        used_scripts: &mut HashSet<String>,
    ) {
        let name = conf.name.text.as_str();
        let group = top.group(name);
        let blocks = conf.track.iter().map(|s| (*s, false)).chain(
            group
                .into_iter()
                .flat_map(|g| g.track.iter().map(|s| (*s, true))),
        );
        let mut lines = Vec::new();
        let mut tracked = HashSet::new();
        for (block, from_group) in blocks {
            let kw = block.keyword();
            let key = format!("{name}.{kw}");
            // keepalived ignores the weights an instance's own tracking has in a sync group
            // (without sync_group_tracking_weight), and every weight of the address owner
            let ignored = if priority == OWNER {
                Some(Ignored::Owner)
            } else if !from_group && group.is_some_and(|g| !g.tracking_weight) {
                Some(Ignored::SyncGroup)
            } else {
                None
            };
            for entry in block.block() {
                if let Some(note) = skipped(entry, name) {
                    self.table.notes.push(note);
                    continue;
                }
                let entry = Entry {
                    kw,
                    statement: entry,
                    ignored,
                };
                match entry.translate(top, &mut tracked, used_scripts) {
                    Ok((line, why)) => {
                        if let Some(why) = why {
                            self.table.note(entry.statement.at(), &key, why);
                        }
                        lines.push(line);
                    }
                    Err(why) => self.table.note(entry.statement.at(), &key, why),
                }
            }
        }
        if !lines.is_empty() {
            self.table.items.push(Item::Array("track", lines));
        }
    }

    /// `notify`, and notes on the one-state scripts Strata has no place for.
    fn notify(&mut self, conf: &InstanceConf<'_>) {
        let name = conf.name.text.as_str();
        if let Some(s) = conf.notify {
            let key = format!("{name}.notify");
            match s.arg(0) {
                Some(command) if !command.text.trim().is_empty() => {
                    self.table.key("notify", quoted(&command.text));
                    if s.args().len() > 1 {
                        let why = format!("the user and group after the command {NOT_TRANSLATED}: Strata runs it as the user it runs as");
                        self.table.note(s.at(), &key, why);
                    }
                }
                _ => {
                    let why = format!("{NOT_TRANSLATED}: no command, which keepalived ignores too");
                    self.table.note(s.at(), &key, why);
                }
            }
        }
        for s in &conf.notify_states {
            let state = match s.keyword() {
                "notify_master" => "MASTER",
                "notify_backup" => "BACKUP",
                "notify_fault" => "FAULT",
                _ => "STOP",
            };
            let why = format!("{NOT_TRANSLATED}: Strata runs one `notify` command on every change, with keepalived's four arguments (INSTANCE, the name, the state: MASTER, BACKUP, FAULT or STOP, and the priority): run this script from one that picks it when the state ($3) is {state}, and make that the `notify`");
            self.table
                .note(s.at(), &format!("{name}.{}", s.keyword()), why);
        }
    }

    /// `garp_count`, `garp_delay` and `garp_refresh`, from the instance's `garp_master_*` or
    /// `global_defs`' `vrrp_garp_master_*`.
    fn garp(&mut self, conf: &InstanceConf<'_>) {
        let name = conf.name.text.as_str();
        let read = |s: &Statement| {
            let value = s.arg(0).map_or("", |w| w.text.as_str());
            integer(value).filter(|n| *n >= 0).map(|n| n as u64)
        };
        let invalid = |s: &Statement| {
            let value = s.arg(0).map_or("", |w| w.text.as_str());
            format!(
                "{NOT_TRANSLATED}: {} is not a number, which keepalived ignores",
                quoted(value)
            )
        };
        if let Some(s) = conf.garp_repeat {
            let key = format!("{name}.{}", s.keyword());
            match read(s) {
                Some(n) => {
                    let count = n.clamp(1, u64::from(MAX_GARP_COUNT)) as u32;
                    if u64::from(count) != n {
                        let why = if n == 0 {
                            "0 made 1, as keepalived does".to_string()
                        } else {
                            format!("{n} made {count}: the most Strata sends in a burst")
                        };
                        self.table.note(s.at(), &key, why);
                    }
                    self.table.key("garp_count", count.to_string());
                }
                None => self.table.note(s.at(), &key, invalid(s)),
            }
        }
        if let Some(s) = conf.garp_delay {
            match read(s) {
                Some(n) => self.table.key("garp_delay", quoted(&format!("{n}s"))),
                None => self
                    .table
                    .note(s.at(), &format!("{name}.{}", s.keyword()), invalid(s)),
            }
        }
        if let Some(s) = conf.garp_refresh {
            match read(s) {
                Some(0) => {}
                Some(n) => self.table.key("garp_refresh", quoted(&format!("{n}s"))),
                None => self
                    .table
                    .note(s.at(), &format!("{name}.{}", s.keyword()), invalid(s)),
            }
        }
    }

    fn leave_out(&mut self, at: Pos, key: &str, why: &str) {
        self.table.left_out = true;
        self.table.note(at, key, format!("{LEFT_OUT}: {why}"));
    }
}

/// An integer as keepalived's `read_int` takes one: an optional sign and digits.
fn integer(text: &str) -> Option<i64> {
    let digits = text
        .strip_prefix('-')
        .or_else(|| text.strip_prefix('+'))
        .unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok()
}

/// A decimal number of seconds as keepalived's `read_decimal_unsigned` takes one, in units of
/// 10^-`places` seconds (digits beyond `places` round, as keepalived rounds them).
fn decimal(text: &str, places: u32) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    let scale = 10u64.pow(places);
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let kept: String = fraction.chars().take(places as usize).collect();
    let mut part: u64 = format!("{kept:0<width$}", width = places as usize)
        .parse()
        .unwrap_or(0);
    if fraction
        .as_bytes()
        .get(places as usize)
        .is_some_and(|d| *d >= b'5')
    {
        part += 1;
    }
    whole.checked_mul(scale)?.checked_add(part)
}

/// A boolean as keepalived's `check_true_false` takes one.
fn boolean(text: &str) -> Option<bool> {
    match text {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
