//! The keepalived.conf reader: words, quotes, comments, blocks and their places, and the line
//! and column of what it refuses.

use super::*;
use crate::import::tests::{pos, problems};

/// Each statement as `keyword|word|word`, nested blocks in `{ }`, at any depth.
fn shape(statements: &[Statement]) -> Vec<String> {
    statements
        .iter()
        .map(|s| {
            let mut out = s
                .words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join("|");
            if let Some(c) = &s.only_on {
                out = format!("{}:{out}", c.text);
            }
            if let Some(block) = &s.block {
                out = format!("{out} {{ {} }}", shape(block).join(", "));
            }
            out
        })
        .collect()
}

/// The errors for `source` as `line:column key: message`.
fn errors(source: &str) -> Vec<String> {
    problems(parse(source))
}

#[test]
fn import_keepalived_conf_reads_nested_blocks_with_their_places() {
    let source = "vrrp_instance VI_1 {\n    state MASTER\n    virtual_ipaddress {\n        10.0.0.1/24 dev eth0\n    }\n}\n";
    let top = parse(source).unwrap();
    assert_eq!(
        shape(&top),
        vec!["vrrp_instance|VI_1 { state|MASTER, virtual_ipaddress { 10.0.0.1/24|dev|eth0 } }"]
    );
    let instance = &top[0];
    assert_eq!(
        (instance.keyword(), instance.at()),
        ("vrrp_instance", pos(1, 1))
    );
    assert_eq!(instance.arg(0).map(|w| w.at), Some(pos(1, 15)));
    let vips = &instance.block()[1];
    assert_eq!(vips.at(), pos(3, 5));
    let address = &vips.block()[0];
    assert_eq!(
        address.words,
        vec![
            Word {
                text: "10.0.0.1/24".into(),
                at: pos(4, 9)
            },
            Word {
                text: "dev".into(),
                at: pos(4, 21)
            },
            Word {
                text: "eth0".into(),
                at: pos(4, 25)
            },
        ]
    );
}

#[test]
fn import_keepalived_conf_reads_braces_wherever_keepalived_does() {
    // on the next line, against a word, a whole block on one line, closing after a word
    let source = "global_defs\n{\n  router_id a}\nvrrp_script chk{script \"x\"\ninterval 2 }\nunicast_peer { 10.0.0.2 10.0.0.3 }\n";
    assert_eq!(
        shape(&parse(source).unwrap()),
        vec![
            "global_defs { router_id|a }",
            "vrrp_script|chk { script|x, interval|2 }",
            "unicast_peer { 10.0.0.2|10.0.0.3 }",
        ]
    );
    // an empty block is a block
    assert_eq!(
        shape(&parse("track_script {\n}\n").unwrap()),
        vec!["track_script {  }"]
    );
}

#[test]
fn import_keepalived_conf_reads_quoted_strings_with_spaces() {
    let source = concat!(
        "script \"killall -0 sshd\"\n",
        "notify_master \"/usr/local/bin/vrrp.sh  MASTER  VI_1\" root\n",
        // quotes glue what they hold into the word around them
        "a abcd\" efg h \"jkl\n",
        // a quoted # or ! or brace is text, and so is an escaped quote inside
        "b \"x # y ! {z}\" \"say \\\"hi\\\"\"\n",
        // an empty string is a word
        "c \"\"\n",
        // ' quotes in a command line only
        "notify '/bin/notify arg' user\n",
        "auth_pass 'a b'\n",
        // inside \"...\", ' is text, left for the command's own parsing
        "script \"bash -c '</dev/tcp/127.0.0.1/80'\"\n",
    );
    let top = parse(source).unwrap();
    assert_eq!(
        shape(&top),
        vec![
            "script|killall -0 sshd",
            "notify_master|/usr/local/bin/vrrp.sh  MASTER  VI_1|root",
            "a|abcd efg h jkl",
            "b|x # y ! {z}|say \\\"hi\\\"",
            "c|",
            "notify|/bin/notify arg|user",
            "auth_pass|'a|b'",
            "script|bash -c '</dev/tcp/127.0.0.1/80'",
        ]
    );
    // a quoted word starts at its quote
    assert_eq!(top[0].arg(0).map(|w| w.at), Some(pos(1, 8)));
    assert_eq!(
        top[1].head(),
        "notify_master \"/usr/local/bin/vrrp.sh  MASTER  VI_1\" root"
    );
}

#[test]
fn import_keepalived_conf_drops_comments_after_hash_and_bang() {
    let source = concat!(
        "! Configuration File for keepalived\n",
        "# a comment\n",
        "   ! indented\n",
        "global_defs { # after a brace\n",
        "   router_id LVS_DEVEL   ! after a value\n",
        "   smtp_server 10.0.0.1#no space needed\n",
        "   notification_email_from a\\#b\\!c\n",
        "}\n",
        "\n",
        "vrrp_instance VI_1 {\t\t# tabs\n",
        "}\n",
    );
    assert_eq!(
        shape(&parse(source).unwrap()),
        vec![
            "global_defs { router_id|LVS_DEVEL, smtp_server|10.0.0.1, notification_email_from|a#b!c }",
            "vrrp_instance|VI_1 {  }",
        ]
    );
}

#[test]
fn import_keepalived_conf_reads_include_and_conditional_lines_as_statements() {
    let source = "include /etc/keepalived/conf.d/*.conf\nvrrp_instance VI_0 {\n@high\tpriority 170\n@^low priority 85\n  include \"more.conf\"\n}\n";
    let top = parse(source).unwrap();
    assert_eq!(
        shape(&top),
        vec![
            "include|/etc/keepalived/conf.d/*.conf",
            "vrrp_instance|VI_0 { @high:priority|170, @^low:priority|85, include|more.conf }",
        ]
    );
    let conditional = &top[1].block()[0];
    assert_eq!(conditional.keyword(), "priority");
    assert_eq!(conditional.at(), pos(3, 7));
    assert_eq!(conditional.only_on.as_ref().map(|w| w.at), Some(pos(3, 1)));
    // only the first word of a line is a condition
    assert_eq!(shape(&parse("a @b\n").unwrap()), vec!["a|@b"]);
}

#[test]
fn import_keepalived_conf_reads_a_bom_and_crlf_line_ends() {
    let source = "\u{feff}vrrp_instance A {\r\n  priority 1\r\n}\r\n";
    assert_eq!(
        shape(&parse(source).unwrap()),
        vec!["vrrp_instance|A { priority|1 }"]
    );
}

#[test]
fn import_keepalived_conf_refuses_unbalanced_braces_and_open_quotes() {
    assert_eq!(
        errors("vrrp_instance VI_1 {\n  state MASTER\n"),
        vec!["1:20 vrrp_instance VI_1: this `{` is never closed: a `}` is missing below it"]
    );
    assert_eq!(
        errors("global_defs {\n}\n}\n"),
        vec!["3:1 : a `}` with no `{` open before it: the braces above are unbalanced"]
    );
    assert_eq!(
        errors("a {\n}\n{\n}\n"),
        vec!["3:1 : a `{` with no keyword before it to open a block for"]
    );
    assert_eq!(
        errors("vrrp_script x {\n  script \"/bin/check\n}\n"),
        vec!["2:10 : the closing `\"` is missing: a quoted string ends on its line"]
    );
    assert_eq!(
        errors("notify '/bin/x # y'\n"),
        vec!["1:8 : the closing `'` is missing: a quoted string ends on its line"]
    );
    // every problem at once, in file order
    assert_eq!(errors("}\nvrrp_instance A {\n  b {\n}\n").len(), 2,);
}
