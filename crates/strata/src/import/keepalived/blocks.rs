//! The blocks of a keepalived.conf read into what keepalived makes of them: `global_defs`,
//! `vrrp_script`, `vrrp_sync_group` and `vrrp_instance`, each value taken, ignored or reset as
//! keepalived does, with notes on what has no `[[vip]]` equivalent.

use std::collections::HashSet;

use super::conf::{Statement, Word};
use super::{decimal, integer, quoted, Note, Pos, MAX_FALL_RISE, MAX_WEIGHT, NOT_TRANSLATED};

/// The keywords of a `vrrp_instance` block (keepalived's `vrrp_parser.c`), for telling one
/// that has no `[[vip]]` equivalent from one keepalived does not know.
const INSTANCE_KEYWORDS: &[&str] = &[
    "use_vmac",
    "use_vmac_addr",
    "vmac_xmit_base",
    "use_ipvlan",
    "unicast_peer",
    "unicast_fault_no_peer",
    "check_unicast_src",
    "old_unicast_checksum",
    "native_ipv6",
    "state",
    "interface",
    "vrf",
    "dont_track_primary",
    "track_interface",
    "track_script",
    "track_file",
    "track_process",
    "track_bfd",
    "mcast_src_ip",
    "unicast_src_ip",
    "mcast_dst_ip",
    "track_src_ip",
    "virtual_router_id",
    "unicast_ttl",
    "version",
    "priority",
    "advert_int",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "no_virtual_ipaddress",
    "promote_secondaries",
    "linkbeat_use_polling",
    "v3_checksum_as_v2",
    "virtual_routes",
    "virtual_rules",
    "accept",
    "no_accept",
    "skip_check_adv_addr",
    "strict_mode",
    "preempt",
    "nopreempt",
    "preempt_delay",
    "debug",
    "notify_backup",
    "notify_master",
    "notify_fault",
    "notify_stop",
    "notify_deleted",
    "notify",
    "notify_master_rx_lower_pri",
    "smtp_alert",
    "notify_priority_changes",
    "lvs_sync_daemon_interface",
    "garp_master_delay",
    "garp_master_refresh",
    "garp_master_repeat",
    "garp_master_refresh_repeat",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "down_timer_adverts",
    "timer_expired_backup",
    "thread_timer_expired",
    "garp_extra_if",
    "vmac_garp_intvl",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "owner_ignore_adverts",
    "kernel_rx_buf_size",
    "authentication",
    "auth_hmac",
];

/// The `global_defs` keywords about mail.
const MAIL_KEYWORDS: &[&str] = &[
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "no_email_faults",
];

/// The top level of the file: what the instances draw on, and the notes on the rest.
pub(super) struct FileConf<'a> {
    pub(super) instances: Vec<&'a Statement>,
    pub(super) scripts: Vec<Script<'a>>,
    pub(super) groups: Vec<SyncGroup<'a>>,
    /// `global_defs`' `vrrp_version`.
    pub(super) version: Option<&'a Statement>,
    /// `global_defs`' defaults for the instances' `garp_master_*` and `v3_checksum_as_v2`.
    pub(super) garp_delay: Option<&'a Statement>,
    pub(super) garp_repeat: Option<&'a Statement>,
    pub(super) garp_refresh: Option<&'a Statement>,
    pub(super) checksum: Option<&'a Statement>,
    /// Whether the file has an `include` (not followed).
    pub(super) includes: bool,
    pub(super) notes: Vec<Note>,
}

impl<'a> FileConf<'a> {
    pub(super) fn read(statements: &'a [Statement]) -> FileConf<'a> {
        let mut top = FileConf {
            instances: Vec::new(),
            scripts: Vec::new(),
            groups: Vec::new(),
            version: None,
            garp_delay: None,
            garp_repeat: None,
            garp_refresh: None,
            checksum: None,
            includes: has_include(statements),
            notes: Vec::new(),
        };
        for s in statements {
            if let Some(note) = skipped(s, "") {
                top.notes.push(note);
                continue;
            }
            let key = s.head();
            let why = match s.keyword() {
                "vrrp_instance" => {
                    top.instances.push(s);
                    continue;
                }
                "global_defs" => {
                    top.global_defs(s);
                    continue;
                }
                "vrrp_script" => {
                    let script = Script::read(s, &mut top.notes);
                    top.scripts.extend(script);
                    continue;
                }
                "vrrp_sync_group" => {
                    let group = SyncGroup::read(s, &mut top);
                    top.groups.extend(group);
                    continue;
                }
                "virtual_server" | "virtual_server_group" => "LVS (kernel) load balancing is not Strata's: write a `[[tcp]]` listener for it, with its real servers as `backends`".to_string(),
                "static_ipaddress" | "static_routes" | "static_rules" => "Strata adds and removes only the virtual addresses: set these up with the system's network configuration".to_string(),
                "vrrp_track_process" | "track_file" | "vrrp_track_file" | "bfd_instance" => "Strata tracks interfaces, its own listeners and commands only".to_string(),
                k if k.starts_with('$') => "keepalived's parameters are not expanded here: where a `$NAME` is used, the translation has it as written".to_string(),
                _ => "no Strata equivalent".to_string(),
            };
            top.notes
                .push(Note::new(s.at(), &key, format!("{NOT_TRANSLATED}: {why}")));
        }
        top
    }

    fn global_defs(&mut self, defs: &'a Statement) {
        for s in defs.block() {
            if let Some(note) = skipped(s, "global_defs") {
                self.notes.push(note);
                continue;
            }
            let kw = s.keyword();
            let why = match kw {
                "vrrp_version" => {
                    self.version = Some(s);
                    continue;
                }
                "vrrp_garp_master_delay" => {
                    self.garp_delay = Some(s);
                    continue;
                }
                "vrrp_garp_master_repeat" => {
                    self.garp_repeat = Some(s);
                    continue;
                }
                "vrrp_garp_master_refresh" => {
                    self.garp_refresh = Some(s);
                    continue;
                }
                "v3_checksum_as_v2" => {
                    self.checksum = Some(s);
                    continue;
                }
                k if MAIL_KEYWORDS.contains(&k) => "Strata sends no mail; a `notify` command can",
                "router_id" => "keepalived names this node by it in its mail, and Strata sends none",
                "script_user" | "enable_script_security" => {
                    "Strata runs track and notify commands as the user it runs as"
                }
                "vrrp_mcast_group4" => {
                    "Strata sends adverts to 224.0.0.18 (or to `unicast_peers`), and so must its peers"
                }
                "vrrp_strict" => {
                    "Strata has no strict mode (keepalived refusing its own additions to RFC 5798, such as unicast and authentication)"
                }
                "default_interface" => {
                    "Strata puts every address on its instance's `interface`, which each instance names"
                }
                "vrrp_garp_master_refresh_repeat" => {
                    "Strata sends `garp_count` gratuitous ARPs at each refresh"
                }
                _ => "no Strata equivalent",
            };
            self.notes.push(Note::new(
                s.at(),
                &format!("global_defs.{kw}"),
                format!("{NOT_TRANSLATED}: {why}"),
            ));
        }
    }

    pub(super) fn script(&self, name: &str) -> Option<&Script<'a>> {
        self.scripts.iter().find(|s| s.name == name)
    }

    /// The sync group `instance` is in, if any.
    pub(super) fn group(&self, instance: &str) -> Option<&SyncGroup<'a>> {
        self.groups
            .iter()
            .find(|g| g.members.iter().any(|m| m.text == instance))
    }

    /// A note on each script no instance tracks.
    pub(super) fn unused_scripts(&mut self, used: &HashSet<String>) {
        for script in &self.scripts {
            if script.command.is_some() && !used.contains(script.name) {
                let why = format!("{NOT_TRANSLATED}: no vrrp_instance tracks it, so keepalived does not run it either");
                self.notes.push(Note::new(script.at, script.name, why));
            }
        }
    }

    /// The note on VRRPv2, when an instance would speak it under keepalived without saying so
    /// itself.
    pub(super) fn version_note(&mut self, confs: &[InstanceConf<'a>]) {
        let fix = "Strata speaks VRRPv3 only, and a VRRPv2 router does not hear a VRRPv3 one (each would take the addresses): set `vrrp_version 3` in `global_defs` on the keepalived peers that share these instances";
        // an instance's own `version` wins
        let defaulted = confs.iter().any(|c| {
            c.version
                .and_then(|v| v.arg(0))
                .is_none_or(|w| !matches!(w.text.as_str(), "2" | "3"))
        });
        match self.version {
            _ if !defaulted => {}
            Some(s) => match s.arg(0).map(|w| w.text.as_str()) {
                Some("3") => {}
                Some("2") => {
                    let why = format!("{NOT_TRANSLATED}: {fix}");
                    self.notes
                        .push(Note::new(s.at(), "global_defs.vrrp_version", why));
                }
                _ => {
                    let why =
                        format!("keepalived ignores it (it takes 2 or 3) and speaks VRRPv2: {fix}");
                    self.notes
                        .push(Note::new(s.at(), "global_defs.vrrp_version", why));
                }
            },
            None => {
                let why = format!("no `vrrp_version`: keepalived speaks VRRPv2 unless told; {fix}");
                self.notes
                    .push(Note::new(Pos { line: 1, column: 1 }, "", why));
            }
        }
    }

    /// The VRRP version keepalived runs `conf` at.
    pub(super) fn version_of(&self, conf: &InstanceConf<'_>) -> u8 {
        let read = |s: Option<&Statement>| match s.and_then(|s| s.arg(0)).map(|w| w.text.as_str()) {
            Some("3") => Some(3),
            Some("2") => Some(2),
            _ => None,
        };
        read(conf.version).or(read(self.version)).unwrap_or(2)
    }
}

/// A note for a line keepalived reads only on some nodes (`@ID`), or an `include`; `None` for
/// any other line.
pub(super) fn skipped(s: &Statement, scope: &str) -> Option<Note> {
    let key = |k: &str| {
        if scope.is_empty() {
            k.to_string()
        } else {
            format!("{scope}.{k}")
        }
    };
    if let Some(id) = &s.only_on {
        let (not, id_text) = match id.text.strip_prefix("@^") {
            Some(rest) => ("is not", rest),
            None => ("is", id.text.trim_start_matches('@')),
        };
        let why = format!("{NOT_TRANSLATED}: keepalived reads this line only where its config id {not} {} (its `-i` option, or the host name): translate a copy of the file for that node with its lines' `{}` taken off and the other nodes' lines deleted", quoted(id_text), id.text);
        return Some(Note::new(id.at, &key(s.keyword()), why));
    }
    if s.keyword() == "include" {
        let what = s.args().first().map_or("", |w| w.text.as_str());
        let why = format!("not followed: translate {} on its own, and use the `[[vip]]` tables of both (a `vrrp_script` it defines is unknown here)", quoted(what));
        return Some(Note::new(s.at(), &key("include"), why));
    }
    None
}

/// Whether an `include` is anywhere in `statements`.
pub(super) fn has_include(statements: &[Statement]) -> bool {
    statements
        .iter()
        .any(|s| s.keyword() == "include" || has_include(s.block()))
}

/// A `vrrp_script` block, read as keepalived reads it.
pub(super) struct Script<'a> {
    pub(super) name: &'a str,
    pub(super) at: Pos,
    /// `None`: keepalived drops the script, and ignores tracking it.
    pub(super) command: Option<&'a Word>,
    /// Milliseconds.
    pub(super) interval: u64,
    pub(super) timeout: Option<u64>,
    pub(super) weight: i64,
    pub(super) reverse: bool,
    pub(super) fall: u64,
    pub(super) rise: u64,
}

impl<'a> Script<'a> {
    pub(super) fn read(block: &'a Statement, notes: &mut Vec<Note>) -> Option<Script<'a>> {
        let Some(name) = block.arg(0) else {
            let why = format!("{NOT_TRANSLATED}: a `vrrp_script` without a name");
            notes.push(Note::new(block.at(), "vrrp_script", why));
            return None;
        };
        let mut script = Script {
            name: &name.text,
            at: block.at(),
            command: None,
            interval: 1000,
            timeout: None,
            weight: 0,
            reverse: false,
            fall: 1,
            rise: 1,
        };
        let note = |s: &Statement, why: String| {
            Note::new(s.at(), &format!("{}.{}", name.text, s.keyword()), why)
        };
        for s in block.block() {
            if let Some(skip) = skipped(s, &name.text) {
                notes.push(skip);
                continue;
            }
            let value = s.arg(0).map_or("", |w| w.text.as_str());
            match s.keyword() {
                "script" => script.command = s.arg(0),
                "interval" | "timeout" => {
                    let ms = match decimal(value, 3) {
                        Some(0) => {
                            notes.push(note(s, "0 made 1s, as keepalived does".into()));
                            1000
                        }
                        Some(ms) if ms < 10 => {
                            notes.push(note(
                                s,
                                format!("{ms}ms made 10ms: the shortest Strata runs a check at"),
                            ));
                            10
                        }
                        Some(ms) => ms,
                        None => {
                            notes.push(note(s, format!("{NOT_TRANSLATED}: {} is not a number of seconds, which keepalived ignores", quoted(value))));
                            continue;
                        }
                    };
                    if s.keyword() == "interval" {
                        script.interval = ms;
                    } else {
                        script.timeout = Some(ms);
                    }
                }
                "weight" => {
                    match integer(value) {
                        Some(w) if w.abs() <= MAX_WEIGHT => script.weight = w,
                        Some(w) => {
                            script.weight = w.clamp(-MAX_WEIGHT, MAX_WEIGHT);
                            notes.push(note(s, format!("{w} made {}: keepalived's weights are -253 to 253", script.weight)));
                        }
                        None => {
                            script.weight = 0;
                            notes.push(note(s, format!("{} is not a number: keepalived takes it as 0, so the script's failure is a Fault", quoted(value))));
                        }
                    }
                    script.reverse = s.arg(1).is_some_and(|w| w.text == "reverse");
                }
                "fall" | "rise" => {
                    let n = match integer(value).filter(|n| *n >= 1) {
                        Some(n) if n as u64 > MAX_FALL_RISE => {
                            notes.push(note(s, format!("{n} made {MAX_FALL_RISE}: the most Strata takes")));
                            MAX_FALL_RISE
                        }
                        Some(n) => n as u64,
                        None => {
                            notes.push(note(s, format!("{} made 1, as keepalived does with a value it refuses", quoted(value))));
                            1
                        }
                    };
                    if s.keyword() == "fall" {
                        script.fall = n;
                    } else {
                        script.rise = n;
                    }
                }
                "user" => notes.push(note(
                    s,
                    format!("{NOT_TRANSLATED}: Strata runs the command as the user it runs as"),
                )),
                "init_fail" => notes.push(note(
                    s,
                    format!("{NOT_TRANSLATED}: Strata counts a command healthy until it has failed `fall` times"),
                )),
                _ => notes.push(note(
                    s,
                    format!("{NOT_TRANSLATED}: keepalived has no such keyword in a vrrp_script"),
                )),
            }
        }
        if script.command.is_none() {
            let conditional = block
                .block()
                .iter()
                .any(|s| s.only_on.is_some() && s.keyword() == "script");
            let why = if conditional {
                format!("{NOT_TRANSLATED}: its only `script` lines are conditional (`@ID`), which are not read")
            } else {
                format!("{NOT_TRANSLATED}: no `script`, so keepalived drops it (and ignores tracking it)")
            };
            notes.push(Note::new(block.at(), script.name, why));
        }
        Some(script)
    }
}

/// A `vrrp_sync_group`: its members, and the tracking it gives each of them.
pub(super) struct SyncGroup<'a> {
    pub(super) name: &'a str,
    pub(super) members: Vec<&'a Word>,
    /// Its `track_*` blocks, which count for every member.
    pub(super) track: Vec<&'a Statement>,
    /// `sync_group_tracking_weight`: the members' weights count.
    pub(super) tracking_weight: bool,
}

impl<'a> SyncGroup<'a> {
    pub(super) fn read(block: &'a Statement, top: &mut FileConf<'a>) -> Option<SyncGroup<'a>> {
        let Some(name) = block.arg(0) else {
            let why = format!("{NOT_TRANSLATED}: a `vrrp_sync_group` without a name");
            top.notes
                .push(Note::new(block.at(), "vrrp_sync_group", why));
            return None;
        };
        let mut group = SyncGroup {
            name: &name.text,
            members: Vec::new(),
            track: Vec::new(),
            tracking_weight: false,
        };
        for s in block.block() {
            if let Some(note) = skipped(s, group.name) {
                top.notes.push(note);
                continue;
            }
            let why = match s.keyword() {
                "group" => {
                    group.members.extend(s.block().iter().filter_map(|m| m.words.first()));
                    continue;
                }
                "track_interface" | "track_script" | "track_file" | "track_process"
                | "track_bfd" => {
                    group.track.push(s);
                    continue;
                }
                "sync_group_tracking_weight" => {
                    group.tracking_weight = true;
                    continue;
                }
                "notify" | "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => {
                    "Strata has no groups to notify about: each instance runs its own `notify` (with INSTANCE, its name, the state and the priority)".to_string()
                }
                "smtp_alert" => "Strata sends no mail; a `notify` command can".to_string(),
                "global_tracking" | "notify_priority_changes" => "no Strata equivalent".to_string(),
                _ => "keepalived has no such keyword in a vrrp_sync_group (its members go in a `group { }` block)".to_string(),
            };
            top.notes.push(Note::new(
                s.at(),
                &format!("{}.{}", group.name, s.keyword()),
                format!("{NOT_TRANSLATED}: {why}"),
            ));
        }
        if group.members.is_empty() {
            let why =
                format!("{NOT_TRANSLATED}: no `group {{ }}` of members, so keepalived drops it");
            top.notes.push(Note::new(block.at(), group.name, why));
            return None;
        }
        let names: Vec<&str> = group.members.iter().map(|m| m.text.as_str()).collect();
        let tracking = if group.track.is_empty() {
            ""
        } else {
            "; what it tracks, each of them tracks"
        };
        let why = format!("{NOT_TRANSLATED}: Strata runs each instance on its own, so {} no longer change state together (keepalived moves them all when one of them changes){tracking}", names.join(", "));
        top.notes.push(Note::new(block.at(), group.name, why));
        Some(group)
    }
}

/// One `vrrp_instance`, the statements that count read into place (keepalived: a value set
/// twice counts the second time).
pub(super) struct InstanceConf<'a> {
    pub(super) name: &'a Word,
    pub(super) at: Pos,
    pub(super) state: Option<&'a Statement>,
    pub(super) interface: Option<&'a Word>,
    pub(super) vrid: Option<&'a Statement>,
    pub(super) priority: Option<&'a Statement>,
    pub(super) advert_int: Option<&'a Statement>,
    pub(super) version: Option<&'a Statement>,
    pub(super) addresses: Vec<&'a Statement>,
    pub(super) excluded: Vec<&'a Statement>,
    /// `no_virtual_ipaddress`: no address, knowingly.
    pub(super) no_addresses: bool,
    pub(super) peers: Vec<&'a Statement>,
    /// `unicast_src_ip`: with unicast peers, keepalived runs without `interface`.
    pub(super) unicast_src: Option<&'a Statement>,
    pub(super) nopreempt: Option<&'a Statement>,
    pub(super) preempt_delay: Option<&'a Statement>,
    pub(super) track: Vec<&'a Statement>,
    pub(super) notify: Option<&'a Statement>,
    /// `notify_master` and the other one-state scripts.
    pub(super) notify_states: Vec<&'a Statement>,
    pub(super) garp_delay: Option<&'a Statement>,
    pub(super) garp_repeat: Option<&'a Statement>,
    pub(super) garp_refresh: Option<&'a Statement>,
    pub(super) checksum: Option<&'a Statement>,
    /// What has no `[[vip]]` equivalent, and why.
    pub(super) dropped: Vec<Note>,
}

impl<'a> InstanceConf<'a> {
    pub(super) fn read(
        block: &'a Statement,
        name: &'a Word,
        top: &FileConf<'a>,
    ) -> InstanceConf<'a> {
        let mut conf = InstanceConf {
            name,
            at: block.at(),
            state: None,
            interface: None,
            vrid: None,
            priority: None,
            advert_int: None,
            version: None,
            addresses: Vec::new(),
            excluded: Vec::new(),
            no_addresses: false,
            peers: Vec::new(),
            unicast_src: None,
            nopreempt: None,
            preempt_delay: None,
            track: Vec::new(),
            notify: None,
            notify_states: Vec::new(),
            garp_delay: top.garp_delay,
            garp_repeat: top.garp_repeat,
            garp_refresh: top.garp_refresh,
            checksum: top.checksum,
            dropped: Vec::new(),
        };
        let scope = name.text.as_str();
        for s in block.block() {
            let kw = s.keyword();
            let key = format!("{scope}.{kw}");
            if let Some(note) = skipped(s, scope) {
                conf.dropped.push(note);
                continue;
            }
            let why = match kw {
                "interface" => {
                    conf.interface = s.arg(0);
                    continue;
                }
                "virtual_router_id" => {
                    conf.vrid = Some(s);
                    continue;
                }
                "priority" => {
                    conf.priority = Some(s);
                    continue;
                }
                "advert_int" => {
                    conf.advert_int = Some(s);
                    continue;
                }
                "version" => {
                    conf.version = Some(s);
                    continue;
                }
                "state" => {
                    // keepalived keeps MASTER once set
                    if !conf.master() {
                        conf.state = Some(s);
                    }
                    continue;
                }
                "virtual_ipaddress" => {
                    conf.addresses.push(s);
                    continue;
                }
                "virtual_ipaddress_excluded" => {
                    conf.excluded.push(s);
                    continue;
                }
                "no_virtual_ipaddress" => {
                    conf.no_addresses = true;
                    "Strata needs at least one virtual address".to_string()
                }
                "unicast_peer" => {
                    conf.peers.push(s);
                    continue;
                }
                "nopreempt" => {
                    conf.nopreempt = Some(s);
                    continue;
                }
                "preempt" => {
                    conf.nopreempt = None;
                    continue;
                }
                "preempt_delay" => {
                    conf.preempt_delay = Some(s);
                    continue;
                }
                "track_interface" | "track_script" | "track_file" | "track_process"
                | "track_bfd" => {
                    conf.track.push(s);
                    continue;
                }
                "notify" if conf.notify.is_none() => {
                    conf.notify = Some(s);
                    continue;
                }
                "notify" => "keepalived keeps the first `notify` and ignores this one".to_string(),
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => {
                    conf.notify_states.push(s);
                    continue;
                }
                "garp_master_delay" => {
                    conf.garp_delay = Some(s);
                    continue;
                }
                "garp_master_repeat" => {
                    conf.garp_repeat = Some(s);
                    continue;
                }
                "garp_master_refresh" => {
                    conf.garp_refresh = Some(s);
                    continue;
                }
                "v3_checksum_as_v2" => {
                    conf.checksum = Some(s);
                    continue;
                }
                "authentication" => "VRRPv3, which Strata speaks, has no authentication (keepalived ignores it at `vrrp_version 3` too), so Strata's adverts carry none".to_string(),
                "auth_hmac" => "Strata's adverts carry no HMAC trailer: the keepalived peers must drop `auth_hmac` to hear them".to_string(),
                "virtual_routes" | "virtual_rules" => "Strata adds and removes only the addresses: add these from `notify` when the state is MASTER, or set them up for good".to_string(),
                "use_vmac" | "use_vmac_addr" | "vmac_xmit_base" | "use_ipvlan" => "Strata adds the addresses to `interface` itself and announces them from its own MAC, with gratuitous ARPs on every takeover".to_string(),
                "unicast_src_ip" | "mcast_src_ip" => {
                    if kw == "unicast_src_ip" {
                        conf.unicast_src = Some(s);
                    }
                    match s.arg(0) {
                        Some(a) => format!("Strata sends adverts from the interface's primary address: where that is not {}, the peers' `unicast_peer` must name the one it is", a.text),
                        None => "Strata sends adverts from the interface's primary address".to_string(),
                    }
                }
                "mcast_dst_ip" => "Strata sends adverts to 224.0.0.18 (or to `unicast_peers`), and so must its peers".to_string(),
                "dont_track_primary" => "Strata always tracks the instance's own interface: with its link down the instance is in Fault".to_string(),
                "smtp_alert" => "Strata sends no mail; a `notify` command can".to_string(),
                "lvs_sync_daemon_interface" => "LVS (kernel) load balancing is not Strata's".to_string(),
                "accept" | "no_accept" => "Strata takes traffic for the addresses it holds (VRRPv3's Accept Mode)".to_string(),
                "notify_deleted" | "notify_master_rx_lower_pri" => "Strata has no such event to notify about".to_string(),
                "garp_master_refresh_repeat" => "Strata sends `garp_count` gratuitous ARPs at each refresh".to_string(),
                k if INSTANCE_KEYWORDS.contains(&k) => "no `[[vip]]` equivalent".to_string(),
                _ => "keepalived has no such keyword in a vrrp_instance (it logs and skips it)".to_string(),
            };
            conf.dropped
                .push(Note::new(s.at(), &key, format!("{NOT_TRANSLATED}: {why}")));
        }
        conf
    }

    /// What makes keepalived refuse to run its VRRP part (`chk_min_cfg`, and a VRRPv3
    /// instance without an address).
    pub(super) fn problems(&self, top: &FileConf<'_>) -> Vec<Note> {
        let name = self.name.text.as_str();
        let mut problems = Vec::new();
        match self.vrid {
            None => problems.push(Note::new(self.at, name, "no `virtual_router_id`: keepalived refuses to run without one (\"the virtual router id must be set\")")),
            Some(s) if self.vrid().is_none() => {
                let value = s.arg(0).map_or("", |w| w.text.as_str());
                let why = format!("{} is not a vrid (1 to 255): keepalived ignores it, and then refuses to run without one", quoted(value));
                problems.push(Note::new(s.at(), &format!("{name}.virtual_router_id"), why));
            }
            Some(_) => {}
        }
        // any `unicast_peer` keyword, even an empty one, makes keepalived take it for unicast
        let unicast = !self.peers.is_empty();
        if self.interface.is_none() && !unicast {
            problems.push(Note::new(self.at, name, "no `interface`: keepalived refuses to run without one when it sends by multicast (\"Unknown interface!\")"));
        } else if self.interface.is_none() && self.unicast_src.is_none() {
            problems.push(Note::new(self.at, name, "no `interface` or `unicast_src_ip`: keepalived refuses to run without one (\"Unicast instances must have unicast_src_ip or interface\")"));
        }
        let addresses = self.addresses.iter().any(|a| !a.block().is_empty());
        if !addresses && !self.no_addresses && top.version_of(self) == 3 {
            problems.push(Note::new(self.at, name, "no `virtual_ipaddress`: keepalived refuses a VRRPv3 instance without one (\"No VIP specified; at least one is required\")"));
        }
        problems
    }

    /// Whether its first virtual address is IPv6, which makes it an IPv6 instance.
    pub(super) fn ipv6(&self) -> bool {
        let first = self.addresses.iter().flat_map(|a| a.block()).next();
        first.is_some_and(|a| {
            let host = a.keyword().split('/').next().unwrap_or_default();
            host.parse::<std::net::Ipv6Addr>().is_ok()
        })
    }

    /// Its unicast peers, as written.
    pub(super) fn peers(&self) -> Vec<&str> {
        self.peers
            .iter()
            .flat_map(|p| p.block())
            .map(Statement::keyword)
            .collect()
    }

    /// The vrid keepalived runs with, if it takes the one given.
    pub(super) fn vrid(&self) -> Option<u8> {
        let text = self.vrid?.arg(0)?.text.as_str();
        integer(text)
            .filter(|v| (1..=255).contains(v))
            .map(|v| v as u8)
    }

    /// Whether the initial state is MASTER.
    pub(super) fn master(&self) -> bool {
        self.state
            .and_then(|s| s.arg(0))
            .is_some_and(|w| w.text == "MASTER")
    }
}
