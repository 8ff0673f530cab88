//! Translating keepalived instances: the key mapping, keepalived's own defaults and resets,
//! what is dropped, kept or left out, and what keepalived itself would refuse.

use super::*;
use crate::import::check;
use crate::import::tests::{config, notes, passes_strata_check, problems, translated};

/// The translation of `source`, which must succeed.
fn ok(source: &str) -> Translation {
    translated(translate, source, "k.conf")
}

/// The problems of a refused `source` as `line:column key: message`.
fn refused(source: &str) -> Vec<String> {
    problems(translate(source, "k.conf"))
}

/// An instance `VI_1` on eth0 with vrid 51 and one address, `rest` inside it, speaking VRRPv3.
fn instance(rest: &str) -> String {
    format!("global_defs {{\n  vrrp_version 3\n}}\nvrrp_instance VI_1 {{\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {{\n    10.0.0.100/24\n  }}\n{rest}}}\n")
}

#[test]
fn import_keepalived_maps_every_key_it_can() {
    let t = ok(&instance(concat!(
        "  priority 150\n",
        "  advert_int 0.1\n",
        "  nopreempt\n",
        "  unicast_peer {\n    10.0.0.2\n    10.0.0.3\n  }\n",
        "  track_interface {\n    eth1\n    eth2 weight -20\n  }\n",
        "  track_script {\n    chk\n  }\n",
        "  notify /etc/keepalived/notify.sh\n",
        "  garp_master_repeat 3\n",
        "  garp_master_delay 0\n",
        "  garp_master_refresh 60\n",
        "  v3_checksum_as_v2\n",
    )))
    .toml;
    let with_script = ok(&format!(
        "vrrp_script chk {{\n  script \"killall -0 haproxy\"\n  interval 2\n  timeout 1.5\n  weight -30\n  fall 3\n  rise 2\n}}\n{}",
        instance("  track_script {\n    chk\n  }\n")
    ));
    assert!(
        config(&with_script).contains(
            &"    { command = \"killall -0 haproxy\", interval = \"2s\", timeout = \"1500ms\", weight = -30, fall = 3, rise = 2 },"
        ),
        "{}",
        with_script.toml
    );
    let lines: Vec<&str> = t
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        lines,
        vec![
            "[[vip]]",
            "name = \"VI_1\"",
            "interface = \"eth0\"",
            "vrid = 51",
            "priority = 150",
            "advert_interval = \"100ms\"",
            "addresses = [",
            "    \"10.0.0.100/24\",",
            "]",
            "unicast_peers = [",
            "    \"10.0.0.2\",",
            "    \"10.0.0.3\",",
            "]",
            "nopreempt = true",
            "track = [",
            "    \"interface:eth1\",",
            "    { interface = \"eth2\", weight = -20 },",
            "]",
            "notify = \"/etc/keepalived/notify.sh\"",
            "garp_count = 3",
            "garp_delay = \"0s\"",
            "garp_refresh = \"60s\"",
            "checksum = \"without-pseudo-header\"",
        ]
    );
}

#[test]
fn import_keepalived_fills_in_keepalived_defaults_where_strata_differs() {
    let t = ok(
        &instance("  state MASTER\n  track_script {\n    chk\n  }\n").replace(
            "vrrp_instance",
            "vrrp_script chk {\n  script /bin/check\n}\nvrrp_instance",
        ),
    );
    let config = config(&t);
    // no priority with `state MASTER`: the address owner, as keepalived makes it
    assert!(config.contains(&"priority = 255"), "{config:?}");
    assert!(config.contains(&"advert_interval = \"1s\""), "{config:?}");
    // keepalived runs a script every second unless told, Strata every 2s: always written
    assert!(
        config.contains(&"    { command = \"/bin/check\", interval = \"1s\" },"),
        "{config:?}"
    );
    assert!(notes(&t)[0].starts_with("13 VI_1.priority: no `priority` with `state MASTER`"));
    // and without vrrp_version, keepalived speaks VRRPv2: said once, for the file
    let v2 = ok(&instance("").replace("  vrrp_version 3\n", ""));
    assert!(
        notes(&v2)[0].starts_with("1 : no `vrrp_version`: keepalived speaks VRRPv2 unless told"),
        "{:?}",
        notes(&v2)
    );
    let explicit = ok(&instance("").replace("vrrp_version 3", "vrrp_version 2"));
    assert!(notes(&explicit)[0]
        .starts_with("2 global_defs.vrrp_version: not translated: Strata speaks VRRPv3 only"));
}

#[test]
fn import_keepalived_rounds_advert_int_as_keepalived_does_at_version_3() {
    let interval = |value: &str, v3: bool| {
        let mut source = instance(&format!("  advert_int {value}\n"));
        if !v3 {
            source = source.replace("  vrrp_version 3\n", "");
        }
        let t = ok(&source);
        let line = config(&t)
            .into_iter()
            .find(|l| l.starts_with("advert_interval"))
            .map(str::to_string);
        let note = t
            .notes
            .iter()
            .find(|n| n.key == "VI_1.advert_int")
            .map(|n| n.message.clone());
        (line.unwrap_or_default(), note)
    };
    assert_eq!(
        interval("1", true),
        ("advert_interval = \"1s\"".into(), None)
    );
    assert_eq!(
        interval("2.5", true),
        ("advert_interval = \"2500ms\"".into(), None)
    );
    assert_eq!(
        interval("0.015", true),
        (
            "advert_interval = \"20ms\"".into(),
            Some("0.015s made 20ms: VRRPv3 carries the interval in centiseconds (keepalived at `vrrp_version 3` rounds it too)".into())
        )
    );
    assert_eq!(interval("41", true).0, "advert_interval = \"40950ms\"");
    // keepalived at VRRPv2 sends whole seconds
    assert_eq!(
        interval("0.1", false),
        (
            "advert_interval = \"100ms\"".into(),
            Some("keepalived at VRRPv2 advertises every 1s (whole seconds); at VRRPv3, as Strata and keepalived at `vrrp_version 3` do, every 100ms".into())
        )
    );
    // what keepalived refuses, it replaces with its default
    let (line, note) = interval("fast", true);
    assert_eq!(line, "advert_interval = \"1s\"");
    assert!(note
        .unwrap()
        .starts_with("\"fast\" is not an interval keepalived takes"));
}

#[test]
fn import_keepalived_translates_addresses_as_keepalived_reads_them() {
    let t = ok(&instance(concat!(
        "  virtual_ipaddress {\n",
        "    10.0.0.101/24 dev eth0\n",
        "    10.0.0.102 dev eth1 label eth1:0\n",
        "    10.0.0.101\n",
        "    2001:db8::1\n",
        "    10.0.0.\n",
        "    127.0.0.1\n",
        "  }\n",
        "  virtual_ipaddress_excluded {\n    10.0.0.110/24\n    2001:db8::2\n  }\n",
    )));
    let addresses: Vec<&str> = config(&t)
        .into_iter()
        .skip_while(|l| *l != "addresses = [")
        .take_while(|l| *l != "]")
        .collect();
    assert_eq!(
        addresses,
        vec![
            "addresses = [",
            "    \"10.0.0.100/24\",",
            "    \"10.0.0.101/24\",",
            "    \"10.0.0.102\",",
            "    \"10.0.0.110/24\",",
        ]
    );
    let nt = "not translated";
    assert_eq!(
        notes(&t),
        vec![
            format!("12 VI_1.virtual_ipaddress: `dev eth1 label eth1:0` {nt}: Strata adds each address to \"eth0\" with its prefix length only, as `ip address add ADDRESS/PREFIX dev INTERFACE` would"),
            format!("13 VI_1.virtual_ipaddress: {nt}: 10.0.0.101 is on line 11 already, and keepalived ignores it the second time"),
            format!("14 VI_1.virtual_ipaddress: {nt}: keepalived ignores \"2001:db8::1\" in an IPv4 instance (\"address family must match\")"),
            format!("15 VI_1.virtual_ipaddress: {nt}: \"10.0.0.\" is not an address, and keepalived skips it too"),
            format!("16 VI_1.virtual_ipaddress: {nt}: 127.0.0.1 cannot be a virtual address"),
            "18 VI_1.virtual_ipaddress_excluded: its addresses are in `addresses`: Strata advertises them with the others, where keepalived leaves them out of its adverts (a keepalived peer logs that the count differs, and carries on)".to_string(),
            format!("20 VI_1.virtual_ipaddress_excluded: {nt}: \"2001:db8::2\" is IPv6, and Strata runs VRRP for IPv4 only"),
        ]
    );
    assert_eq!(check(&t.toml), Ok(()), "{}", t.toml);
}

#[test]
fn import_keepalived_notes_what_it_drops() {
    let t = ok(&instance(concat!(
        "  state BACKUP\n",
        "  authentication {\n    auth_type PASS\n    auth_pass 1111\n  }\n",
        "  virtual_routes {\n    0.0.0.0/0 via 10.0.0.1\n  }\n",
        "  use_vmac\n",
        "  unicast_src_ip 10.0.0.1\n",
        "  dont_track_primary\n",
        "  smtp_alert\n",
        "  notify_master \"/bin/master.sh\"\n",
        "  notify_stop /bin/stop.sh\n",
        "  lvs_sync_daemon_interface eth1\n",
        "  down_timer_adverts 5\n",
        "  frobnicate yes\n",
    )));
    let keys: Vec<(usize, &str)> = t
        .notes
        .iter()
        .map(|n| (n.at.line, n.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (10, "VI_1.state"),
            (11, "VI_1.authentication"),
            (15, "VI_1.virtual_routes"),
            (18, "VI_1.use_vmac"),
            (19, "VI_1.unicast_src_ip"),
            (20, "VI_1.dont_track_primary"),
            (21, "VI_1.smtp_alert"),
            (22, "VI_1.notify_master"),
            (23, "VI_1.notify_stop"),
            (24, "VI_1.lvs_sync_daemon_interface"),
            (25, "VI_1.down_timer_adverts"),
            (26, "VI_1.frobnicate"),
        ]
    );
    assert!(t
        .notes
        .iter()
        .all(|n| n.message.starts_with("not translated: ")));
    assert!(t.notes[7].message.contains("when the state ($3) is MASTER"));
    assert_eq!(
        t.notes[11].message,
        "not translated: keepalived has no such keyword in a vrrp_instance (it logs and skips it)"
    );
    // nothing of it is in the output, which Strata takes
    assert_eq!(check(&t.toml), Ok(()), "{}", t.toml);
}

#[test]
fn import_keepalived_notes_the_top_level_it_drops() {
    let source = format!(
        "include /etc/keepalived/other.conf\nglobal_defs {{\n  router_id lb1\n  notification_email {{\n    ops@example.com\n  }}\n}}\nstatic_routes {{\n  10.1.0.0/16 via 10.0.0.1\n}}\nvirtual_server 10.0.0.100 80 {{\n  lb_algo rr\n}}\n$PRIO=100\n{}",
        instance("  track_script {\n    chk_elsewhere\n  }\n")
    );
    let t = ok(&source);
    let keys: Vec<(usize, &str)> = t
        .notes
        .iter()
        .map(|n| (n.at.line, n.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (1, "include"),
            (3, "global_defs.router_id"),
            (4, "global_defs.notification_email"),
            (8, "static_routes"),
            (11, "virtual_server 10.0.0.100 80"),
            (14, "$PRIO=100"),
            (25, "VI_1.track_script"),
        ]
    );
    assert!(t.notes[0].message.starts_with("not followed: "));
    assert!(t.notes[6]
        .message
        .contains("in this file (the `include`d files are not read)"));
    // the file's notes head the output, as comments
    assert!(t
        .toml
        .contains("\n# line 11: `virtual_server 10.0.0.100 80`: not translated: "));
}

#[test]
fn import_keepalived_takes_weights_as_keepalived_does() {
    let scripts = "vrrp_script up {\n  script /bin/up\n  weight 10\n}\nvrrp_script plain {\n  script /bin/plain\n}\n";
    let tracks = "  track_interface {\n    eth1 weight -20\n    eth2 weight 254\n    eth3 weight 300\n    eth1\n  }\n  track_script {\n    up\n    plain weight -5\n    up weight 3\n  }\n";
    let track = |t: &Translation| -> Vec<String> {
        config(t)
            .into_iter()
            .skip_while(|l| *l != "track = [")
            .skip(1)
            .take_while(|l| *l != "]")
            .map(str::to_string)
            .collect()
    };
    let t = ok(&format!("{scripts}{}", instance(tracks)));
    assert_eq!(
        track(&t),
        vec![
            "    { interface = \"eth1\", weight = -20 },",
            // ±254 is ±253; beyond, keepalived ignores the weight
            "    { interface = \"eth2\", weight = 253 },",
            "    \"interface:eth3\",",
            "    { command = \"/bin/up\", interval = \"1s\", weight = 10 },",
            // the entry's own weight wins over the script's
            "    { command = \"/bin/plain\", interval = \"1s\", weight = -5 },",
        ]
    );
    let messages: Vec<String> = notes(&t);
    assert!(
        messages.contains(
            &"19 VI_1.track_interface: weight 254 made 253, as keepalived does".to_string()
        ),
        "{messages:?}"
    );
    assert!(messages.contains(&"21 VI_1.track_interface: not translated: \"eth1\" is tracked already, and keepalived ignores it the second time".to_string()), "{messages:?}");

    // the address owner: keepalived stops tracking anything weighted
    let owner = ok(&format!(
        "{scripts}{}",
        instance(&format!("  priority 255\n{tracks}"))
    ));
    assert_eq!(track(&owner), vec!["    \"interface:eth3\","]);
    assert_eq!(check(&owner.toml), Ok(()), "{}", owner.toml);

    // in a sync group: its weighted interfaces become Faults, its weighted scripts go; the
    // group's own tracking counts for each member
    let grouped = ok(&format!(
        "{scripts}vrrp_sync_group G {{\n  group {{\n    VI_1\n  }}\n  track_interface {{\n    bond0 weight -10\n  }}\n}}\n{}",
        instance(tracks)
    ));
    assert_eq!(
        track(&grouped),
        vec![
            "    \"interface:eth1\",",
            "    \"interface:eth2\",",
            "    \"interface:eth3\",",
            "    { interface = \"bond0\", weight = -10 },",
        ]
    );
    assert!(notes(&grouped)
        .iter()
        .any(|n| n.contains("VI_1.track_script: not translated: keepalived ignores a script tracked with a weight (10) in a vrrp_sync_group")));
    let with_weights = ok(&format!(
        "{scripts}vrrp_sync_group G {{\n  group {{\n    VI_1\n  }}\n  sync_group_tracking_weight\n}}\n{}",
        instance(tracks)
    ));
    assert_eq!(track(&with_weights), track(&t));
}

#[test]
fn import_keepalived_resets_what_keepalived_resets() {
    let t = ok(&instance(
        "  state MASTER\n  priority 200\n  nopreempt\n  preempt_delay 30\n",
    ));
    assert!(!config(&t)
        .iter()
        .any(|l| l.starts_with("nopreempt") || l.starts_with("preempt_delay")));
    let reasons: Vec<String> = notes(&t);
    assert!(
        reasons[1].starts_with(
            "12 VI_1.nopreempt: not translated: keepalived turns it off with `state MASTER`"
        ),
        "{reasons:?}"
    );
    assert!(
        reasons[2].starts_with(
            "13 VI_1.preempt_delay: not translated: keepalived turns it off with `state MASTER`"
        ),
        "{reasons:?}"
    );

    let t = ok(&instance("  preempt_delay 4.12\n  priority 300\n"));
    assert!(config(&t).contains(&"preempt_delay = \"4120ms\""));
    // a priority keepalived refuses is its default
    assert!(config(&t).contains(&"priority = 100"));
    assert!(notes(&t)[0].contains("\"300\" is not a priority (1 to 255): keepalived uses 100"));

    // `preempt` after `nopreempt` turns it back off
    let t = ok(&instance("  nopreempt\n  preempt\n"));
    assert!(!config(&t).contains(&"nopreempt = true"));
}

#[test]
fn import_keepalived_keeps_what_would_change_who_holds_the_addresses_for_strata_check_to_refuse() {
    let source = format!(
        "{}vrrp_instance VI_2 {{\n  interface eth0\n  virtual_router_id 51\n  unicast_peer {{\n    10.0.0.9\n  }}\n  virtual_ipaddress {{\n    10.0.0.200\n  }}\n  track_file {{\n    maintenance weight 5\n  }}\n  track_process {{\n    haproxy\n  }}\n  track_interface {{\n    eth4 weight 10 reverse\n  }}\n}}\n",
        instance("")
    );
    let t = ok(&source);
    let kept = "kept as written, so `strata check` refuses it until it is changed";
    let messages = notes(&t);
    assert!(
        messages[0].starts_with(&format!(
            "13 VI_2.virtual_router_id: {kept}: vrid 51 on eth0 is `VI_1`'s too"
        )),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with(&format!(
            "21 VI_2.track_file: {kept}: Strata does not track a file's contents"
        )),
        "{messages:?}"
    );
    assert!(
        messages[2].starts_with(&format!(
            "24 VI_2.track_process: {kept}: Strata does not track processes"
        )),
        "{messages:?}"
    );
    assert!(
        messages[3].starts_with(&format!(
            "27 VI_2.track_interface: {kept}: Strata has no `reverse` weights"
        )),
        "{messages:?}"
    );
    let config = config(&t);
    assert!(config.contains(&"vrid = 51 # kept as written: see line 13 above"));
    assert!(config.contains(
        &"    \"track_file maintenance weight 5\", # kept as written: see line 21 above"
    ));
    assert!(config.contains(&"    { interface = \"eth4\", weight = 10, reverse = true }, # kept as written: see line 27 above"));
    // Strata's own check refuses each kept line
    let problems = check(&config.join("\n")).unwrap_err();
    assert_eq!(problems.len(), 4, "{problems:?}");
}

#[test]
fn import_keepalived_leaves_out_instances_strata_cannot_run() {
    let t = ok(&format!(
        "{}vrrp_instance V6 {{\n  interface eth0\n  virtual_router_id 52\n  virtual_ipaddress {{\n    fe80::1\n    2001:db8::1/64\n  }}\n}}\nvrrp_instance CLOUD {{\n  virtual_router_id 53\n  unicast_src_ip 10.0.0.1\n  unicast_peer {{\n    10.0.0.2\n  }}\n  virtual_ipaddress {{\n    10.0.0.101\n  }}\n}}\nvrrp_instance NONE {{\n  interface eth0\n  virtual_router_id 54\n  version 2\n}}\n",
        instance("")
    ));
    assert_eq!((t.sections, t.left_out), (4, 3));
    let left_out: Vec<String> = notes(&t)
        .into_iter()
        .filter(|n| n.contains("instance left out"))
        .collect();
    assert_eq!(
        left_out,
        vec![
            "15 V6.virtual_ipaddress: instance left out (its translation is a comment in the output): its first virtual address is IPv6, which makes it an IPv6 instance, and Strata runs VRRP for IPv4 only",
            "19 CLOUD: instance left out (its translation is a comment in the output): no `interface` (keepalived sends by unicast from `unicast_src_ip`): Strata runs an instance on one interface, its adverts going out of it and its addresses going on it",
            "29 NONE: instance left out (its translation is a comment in the output): no IPv4 virtual address: Strata needs at least one",
        ]
    );
    // only VI_1 is configuration; the others are there as comments, to finish by hand
    assert_eq!(config(&t).iter().filter(|l| **l == "[[vip]]").count(), 1);
    assert!(
        t.toml.contains("\n# [[vip]]\n# name = \"CLOUD\"\n"),
        "{}",
        t.toml
    );
    assert_eq!(check(&t.toml), Ok(()), "{}", t.toml);
}

#[test]
fn import_keepalived_refuses_what_keepalived_refuses_all_at_once() {
    let source = "\
vrrp_instance A {
  interface eth0
  virtual_ipaddress {
    10.0.0.1
  }
}
vrrp_instance B {
  virtual_router_id 300
  virtual_ipaddress {
    10.0.0.2
  }
}
vrrp_instance C {
  interface eth0
  virtual_router_id 3
  version 3
}
vrrp_instance D {
  interface eth1
  virtual_router_id 4
  virtual_ipaddress {
    10.0.1.1
  }
}
vrrp_instance E {
  interface eth1
  virtual_router_id 4
  virtual_ipaddress {
    10.0.1.2
  }
}
";
    assert_eq!(
        refused(source),
        vec![
            "1:1 A: no `virtual_router_id`: keepalived refuses to run without one (\"the virtual router id must be set\")",
            "7:1 B: no `interface`: keepalived refuses to run without one when it sends by multicast (\"Unknown interface!\")",
            "8:3 B.virtual_router_id: \"300\" is not a vrid (1 to 255): keepalived ignores it, and then refuses to run without one",
            "13:1 C: no `virtual_ipaddress`: keepalived refuses a VRRPv3 instance without one (\"No VIP specified; at least one is required\")",
            "27:3 E.virtual_router_id: vrid 4 on eth1 is `D`'s too: keepalived refuses two instances with one vrid on an interface that send by multicast, or to the same peer (\"D and E both use VRID 4\")",
        ]
    );
    assert_eq!(
        refused("vrrp_instance A {\n  interface eth0\n"),
        vec!["1:17 vrrp_instance A: this `{` is never closed: a `}` is missing below it"]
    );
    assert_eq!(
        refused("! only LVS\nvirtual_server 10.0.0.1 80 {\n}\n"),
        vec!["1:1 : no `vrrp_instance`: nothing to translate into `[[vip]]` (keepalived's LVS part, `virtual_server`, is not translated)"]
    );
}

#[test]
fn import_keepalived_skips_instances_keepalived_skips() {
    let t = ok(&format!(
        "{}vrrp_instance VI_1 {{\n  interface eth9\n}}\nvrrp_instance {{\n}}\n",
        instance("")
    ));
    assert_eq!(t.sections, 1);
    assert_eq!(
        notes(&t),
        vec![
            "11 VI_1: not translated: keepalived skips a second instance named \"VI_1\" (the first is on line 4)",
            "14 vrrp_instance: not translated: keepalived skips a `vrrp_instance` without exactly one name (it logs \"vrrp_instance must have a name\")",
        ]
    );
}

#[test]
fn import_keepalived_notes_conditional_lines_for_one_node() {
    let t = ok(&instance("@lb1 priority 200\n@^lb1 priority 100\n"));
    assert_eq!(
        notes(&t),
        vec![
            "10 VI_1.priority: not translated: keepalived reads this line only where its config id is \"lb1\" (its `-i` option, or the host name): translate a copy of the file for that node with its lines' `@lb1` taken off and the other nodes' lines deleted",
            "11 VI_1.priority: not translated: keepalived reads this line only where its config id is not \"lb1\" (its `-i` option, or the host name): translate a copy of the file for that node with its lines' `@^lb1` taken off and the other nodes' lines deleted",
        ]
    );
}

#[test]
fn import_keepalived_reads_keepalived_numbers() {
    assert_eq!(decimal("1", 6), Some(1_000_000));
    assert_eq!(decimal("0.1", 6), Some(100_000));
    assert_eq!(decimal(".5", 3), Some(500));
    assert_eq!(decimal("2.", 3), Some(2000));
    // digits beyond the resolution round, as keepalived rounds them
    assert_eq!(decimal("0.0015", 3), Some(2));
    assert_eq!(decimal("0.0014", 3), Some(1));
    for bad in ["", ".", "-1", "1s", "1.2.3", "x"] {
        assert_eq!(decimal(bad, 3), None, "{bad}");
    }
    assert_eq!(integer("-20"), Some(-20));
    assert_eq!(integer("+5"), Some(5));
    assert_eq!(integer("5x"), None);
    assert_eq!(duration(2000), "2s");
    assert_eq!(duration(40950), "40950ms");
}

#[test]
fn import_keepalived_translations_of_the_fixture_configs_pass_strata_check() {
    for source in [
        include_str!("../../../tests/fixtures/keepalived/gateway.conf"),
        include_str!("../../../tests/fixtures/keepalived/cloud.conf"),
    ] {
        passes_strata_check(&ok(source));
    }
}

/// Asserts that one of the translation's notes says `text`.
fn assert_noted(t: &Translation, text: &str) {
    assert!(notes(t).iter().any(|n| n.contains(text)), "{:?}", notes(t));
}

/// Found by the `import` fuzz target: a word in `track_interface` that can't be an interface
/// name (a keyword after a missing brace) was written as one, a config `strata check` refuses.
#[test]
fn import_keepalived_tracks_only_what_can_be_an_interface() {
    let t = ok(&instance(
        "  track_interface {\n    eth1\n    enable_script_security\n  }\n",
    ));
    passes_strata_check(&t);
    assert!(t.toml.contains("\"interface:eth1\""), "{}", t.toml);
    assert_noted(&t, "\"enable_script_security\" is not an interface name");
}

/// Found by the `import` fuzz target: an address in two instances (keepalived takes it:
/// whichever is Master adds it) was written in both, a config `strata check` refuses.
#[test]
fn import_keepalived_keeps_an_address_of_two_instances_as_written() {
    let second = "vrrp_instance VI_2 {\n  interface eth1\n  virtual_router_id 52\n  virtual_ipaddress {\n    10.0.0.100/24\n    10.0.0.101/24\n  }\n}\n";
    let t = ok(&format!("{}{second}", instance("")));
    assert_noted(&t, &format!("{KEPT}: 10.0.0.100 is `VI_1`'s too"));
    assert!(t.toml.contains("\"10.0.0.101/24\","), "{}", t.toml);
    // once the kept line is given to one instance, the translation is a config
    let fixed = t.toml.replace(
        "    \"10.0.0.100/24\", # kept as written: see line 15 above\n",
        "",
    );
    assert_ne!(fixed, t.toml, "{}", t.toml);
    assert_eq!(check(&fixed), Ok(()), "{fixed}");
}

/// Found by the `import` fuzz target: an instance's interface that can't be an interface name
/// was written, a config `strata check` refuses.
#[test]
fn import_keepalived_leaves_out_an_instance_on_what_cannot_be_an_interface() {
    let t = ok(&instance("").replace("interface eth0", "interface ens5:"));
    assert_eq!(t.left_out, 1);
    assert_noted(&t, "\"ens5:\" is not an interface name");
    passes_strata_check(&t);
}
