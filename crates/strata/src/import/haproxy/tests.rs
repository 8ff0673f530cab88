//! Translating HAProxy proxies: the key mapping, defaults and their inheritance, what is dropped,
//! kept or left out, and what HAProxy itself would refuse.

use super::*;
use crate::import::check;
use crate::import::tests::{config, notes, passes_strata_check, problems, translated};

/// The translation of `source`, which must succeed.
fn ok(source: &str) -> Translation {
    translated(translate, source, "/etc/haproxy/h.cfg")
}

/// The problems of a refused `source` as `line:column key: message`.
fn refused(source: &str) -> Vec<String> {
    problems(translate(source, "/etc/haproxy/h.cfg"))
}

/// Whether a note about `key` says `text`.
fn says(t: &Translation, key: &str, text: &str) -> bool {
    t.notes
        .iter()
        .any(|n| n.key == key && n.message.contains(text))
}

/// The lines of the listener named `name`, its comments and blank lines left out (a left-out
/// listener's lines without their `# `).
fn listener<'t>(t: &'t Translation, name: &str) -> Vec<&'t str> {
    let lines: Vec<&str> = t
        .toml
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|l| !l.starts_with("line "))
                .unwrap_or(l)
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let start = lines
        .iter()
        .position(|l| *l == format!("name = {}", quoted(name)))
        .unwrap_or_else(|| panic!("no listener {name}:\n{}", t.toml));
    lines[start..]
        .iter()
        .take_while(|l| !l.starts_with("[["))
        .copied()
        .collect()
}

/// Timeouts that make HAProxy quiet about missing ones.
const TIMEOUTS: &str =
    "defaults\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n";

/// A frontend `www` on `bind` in `mode` in front of a backend `app` with `servers` and `rest`.
fn proxy(mode: &str, bind: &str, rest: &str, servers: &str) -> String {
    format!("{TIMEOUTS}  mode {mode}\nfrontend www\n  bind {bind}\n  default_backend app\nbackend app\n{rest}{servers}")
}

/// `proxy` in HTTP mode on :80, with one server and `rest` in the backend.
fn http(rest: &str) -> String {
    proxy("http", ":80", rest, "  server a 10.0.0.1:8080 check\n")
}

#[test]
fn import_haproxy_maps_every_key_it_can() {
    let t = ok(concat!(
        "global\n  nbthread 8\n  hard-stop-after 1m\n",
        "defaults\n  mode http\n  option httplog\n  option forwardfor\n  timeout connect 3s\n",
        "  timeout client 20s\n  timeout server 40s\n  timeout http-request 5s\n  timeout tunnel 1h\n",
        "frontend www\n  bind 10.0.0.5:443 ssl crt /etc/haproxy/site.pem\n  maxconn 5000\n",
        "  default_backend app\n",
        "backend app\n  balance leastconn\n  retries 4\n  option httpchk GET /health\n",
        "  http-check expect status 200-299\n  timeout check 500ms\n",
        "  server a 10.0.0.11:8080 check inter 1s rise 3 fall 4 slowstart 20s\n",
        "  server b 10.0.0.12:8080 check inter 1s rise 3 fall 4 slowstart 20s weight 3\n",
    ));
    assert_eq!(config(&t)[..2], ["workers = 8", "drain_timeout = \"1m\""]);
    // the certificate is not on this machine: where its key was taken to be is said
    assert!(says(
        &t,
        "www.bind",
        "\"/etc/haproxy/site.pem\" is not on this machine"
    ));
    assert_eq!(
        listener(&t, "www"),
        vec![
            "name = \"www\"",
            "listen = \"10.0.0.5:443\"",
            "tls = [",
            "    { cert = \"/etc/haproxy/site.pem\", key = \"/etc/haproxy/site.pem\" },",
            "]",
            "backends = [",
            "    \"10.0.0.11:8080\",",
            "    \"10.0.0.12:8080 weight=3\",",
            "]",
            "balance = \"least_conn\"",
            "health = { path = \"/health\", expect = \"200-299\", interval = \"1s\", timeout = \"500ms\", rise = 3, fall = 4 }",
            "passive = { failures = 0 }",
            "retries = 4",
            "slow_start = \"20s\"",
            "connect_timeout = \"3s\"",
            "header_timeout = \"5s\"",
            "response_timeout = \"40s\"",
            "idle_timeout = \"1h\"",
            "max_connections = 5000",
            "forwarded = \"x-forwarded\"",
            "access_log = true",
        ]
    );
    // (`strata check` loads the certificate too, which is not on this machine)
    passes_strata_check(&t);
    let plain = ok(&http(""));
    passes_strata_check(&plain);
    assert_eq!(
        listener(&plain, "www"),
        vec![
            "name = \"www\"",
            "listen = \"0.0.0.0:80\"",
            "backends = [",
            "    \"10.0.0.1:8080\",",
            "]",
            "balance = \"round_robin\"",
            "health = { interval = \"2s\", timeout = \"2s\", rise = 2, fall = 3 }",
            "passive = { failures = 0 }",
            "retries = 3",
            "slow_start = \"0s\"",
            "connect_timeout = \"5s\"",
            "header_timeout = \"30s\"",
            "response_timeout = \"30s\"",
            "idle_timeout = \"30s\"",
            "forwarded = \"none\"",
        ]
    );
}

#[test]
fn import_haproxy_takes_what_a_proxy_does_not_set_from_its_defaults() {
    let t = ok(concat!(
        "defaults web\n  mode http\n  timeout connect 1s\n  timeout client 2s\n  timeout server 3s\n",
        "  default-server inter 4s\n  option httpchk GET /web\n",
        "defaults tcp\n  mode tcp\n  timeout connect 5s\n  timeout client 6s\n  timeout server 7s\n",
        "frontend a from web\n  bind :81\n  default_backend web_app\n",
        "frontend b\n  bind :82\n  default_backend tcp_app\n",
        "backend web_app from web\n  default-server rise 5\n  server s 10.0.0.1:80 check fall 6\n",
        "backend tcp_app\n  server s 10.0.0.2:80 check\n",
        // a later defaults section starts anew: nothing of `tcp` is here
        "defaults\n  timeout client 9s\n",
        "listen c\n  bind :83\n  server s 10.0.0.3:80\n",
    ));
    let a = listener(&t, "a");
    assert!(a.contains(&"health = { path = \"/web\", interval = \"4s\", timeout = \"4s\", rise = 5, fall = 6 }"), "{a:?}");
    assert!(a.contains(&"connect_timeout = \"1s\""), "{a:?}");
    assert_eq!(t.toml.matches("\n[[http]]\n").count(), 1, "{}", t.toml);
    let b = listener(&t, "b");
    assert!(
        b.contains(&"health = { interval = \"2s\", timeout = \"2s\", rise = 2, fall = 3 }"),
        "{b:?}"
    );
    assert!(b.contains(&"idle_timeout = \"6s\""), "{b:?}");
    let c = listener(&t, "c");
    assert!(c.contains(&"idle_timeout = \"9s\""), "{c:?}");
    assert!(!c.iter().any(|l| l.starts_with("connect_timeout")), "{c:?}");
    assert!(says(
        &t,
        "c",
        "no `timeout connect`, `timeout server`: HAProxy waits without a limit there"
    ));
}

#[test]
fn import_haproxy_translates_each_balance_as_near_as_strata_goes() {
    let balance = |mode: &str, line: &str| {
        let t = ok(&proxy(
            mode,
            ":80",
            &format!("  balance {line}\n"),
            "  server a 10.0.0.1:80\n",
        ));
        let lines: Vec<String> = listener(&t, "www")
            .into_iter()
            .filter(|l| l.starts_with("balance") || l.starts_with("hash_key"))
            .map(str::to_string)
            .collect();
        (
            lines.join(", "),
            notes(&t).into_iter().find(|n| n.contains("app.balance")),
        )
    };
    let plain = |mode, line| balance(mode, line).0;
    assert_eq!(plain("http", "roundrobin"), "balance = \"round_robin\"");
    assert_eq!(plain("http", "static-rr"), "balance = \"round_robin\"");
    assert_eq!(plain("tcp", "leastconn"), "balance = \"least_conn\"");
    assert_eq!(plain("tcp", "source"), "balance = \"ip_hash\"");
    assert_eq!(balance("http", "random").0, "balance = \"random_two\"");
    assert_eq!(balance("http", "random").1, None);
    let (random3, note) = balance("http", "random(3)");
    assert_eq!(random3, "balance = \"random_two\"");
    assert!(note.unwrap().contains("where HAProxy draws 3"));
    assert_eq!(
        balance("http", "hdr(X-Tenant)"),
        (
            "balance = \"hash\", hash_key = \"header:X-Tenant\"".into(),
            None
        )
    );
    let (host, note) = balance("http", "hdr(host) use_domain_only");
    assert_eq!(host, "balance = \"hash\", hash_key = \"header:host\"");
    assert!(note.unwrap().contains("`use_domain_only` not translated"));
    let (tcp_hdr, note) = balance("tcp", "hdr(host)");
    assert_eq!(tcp_hdr, "balance = \"round_robin\"");
    assert!(note
        .unwrap()
        .contains("a TCP listener has no headers to hash"));
    for other in [
        "uri",
        "url_param userid",
        "first",
        "rdp-cookie",
        "hash path",
    ] {
        let (line, note) = balance("http", other);
        assert_eq!(line, "balance = \"round_robin\"", "{other}");
        assert!(
            note.unwrap().contains("not translated: Strata balances by"),
            "{other}"
        );
    }
}

#[test]
fn import_haproxy_makes_health_checks_from_check_httpchk_and_http_check() {
    let health = |rest: &str| {
        let t = ok(&http(rest));
        let line = listener(&t, "www")
            .into_iter()
            .find(|l| l.starts_with("health"))
            .map(str::to_string);
        (line.unwrap_or_default(), notes(&t))
    };
    let timing = "interval = \"2s\", timeout = \"2s\", rise = 2, fall = 3 }";
    assert_eq!(health("").0, format!("health = {{ {timing}"));
    // OPTIONS / by default: Strata's check is a GET
    let (line, notes) = health("  option httpchk\n");
    assert_eq!(line, format!("health = {{ path = \"/\", {timing}"));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("where HAProxy's is OPTIONS")),
        "{notes:?}"
    );
    assert_eq!(
        health("  option httpchk /ping\n").0,
        format!("health = {{ path = \"/ping\", {timing}")
    );
    let (line, notes) =
        health("  option httpchk GET /ping HTTP/1.1\\r\\nHost:\\ www.example.com\n");
    assert_eq!(
        line,
        format!("health = {{ path = \"/ping\", host = \"www.example.com\", {timing}")
    );
    assert!(!notes.iter().any(|n| n.contains("httpchk")), "{notes:?}");
    assert_eq!(
        health("  option httpchk GET /ping HTTP/1.1 api.example.com\n").0,
        format!("health = {{ path = \"/ping\", host = \"api.example.com\", {timing}")
    );
    let (line, notes) = health(concat!(
        "  option httpchk\n",
        "  http-check send meth GET uri /ready ver HTTP/1.1 hdr Host api.example.com hdr X-Check 1\n",
        "  http-check expect status 204\n",
        "  http-check expect string ok\n",
    ));
    assert_eq!(
        line,
        format!(
            "health = {{ path = \"/ready\", host = \"api.example.com\", expect = 204, {timing}"
        )
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("`hdr X-Check 1` not translated")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.starts_with(
            "13 app.http-check: not translated: Strata's HTTP check takes one status"
        )),
        "{notes:?}"
    );
    // servers checked alike, as the first one is; those without `check` are checked too
    let t = ok(&proxy(
        "http",
        ":80",
        "  timeout check 700\n",
        "  server a 10.0.0.1:80 check inter 3s fall 5\n  server b 10.0.0.2:80 check inter 9s\n  server c 10.0.0.3:80\n",
    ));
    assert!(listener(&t, "www")
        .contains(&"health = { interval = \"3s\", timeout = \"700ms\", rise = 2, fall = 5 }"));
    assert!(says(&t, "app.server b", "`inter 9s rise 2 fall 3` not translated: Strata checks every backend alike, as HAProxy checks `a`"));
    assert!(says(
        &t,
        "app",
        "HAProxy checks only the servers with `check` (not c)"
    ));
    // no `check`: no health, whatever `option httpchk` says
    let t = ok(&proxy(
        "http",
        ":80",
        "  option httpchk\n",
        "  server a 10.0.0.1:80\n",
    ));
    assert!(!listener(&t, "www").iter().any(|l| l.starts_with("health")));
    assert!(says(&t, "app.option httpchk", "no server has `check`"));
    // a TCP listener checks by connecting
    let t = ok(&proxy(
        "tcp",
        ":80",
        "  option httpchk GET /\n",
        "  server a 10.0.0.1:80 check\n",
    ));
    assert!(listener(&t, "www")
        .contains(&"health = { interval = \"2s\", timeout = \"2s\", rise = 2, fall = 3 }"));
    assert!(says(
        &t,
        "app.option httpchk",
        "checks the backends of a TCP listener by connecting"
    ));
}

#[test]
fn import_haproxy_writes_timeouts_in_strata_s_keys() {
    let timeouts = |mode: &str, lines: &str| {
        let t = ok(&format!(
            "defaults\n  mode {mode}\n{lines}frontend www\n  bind :80\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
        ));
        let keys: Vec<String> = listener(&t, "www")
            .into_iter()
            .filter(|l| l.contains("_timeout"))
            .map(str::to_string)
            .collect();
        (keys, t)
    };
    let (keys, _) = timeouts(
        "http",
        "  timeout connect 2500\n  timeout client 30s\n  timeout server 1m\n",
    );
    assert_eq!(
        keys,
        vec![
            "connect_timeout = \"2500ms\"",
            "header_timeout = \"30s\"",
            "response_timeout = \"1m\"",
            "idle_timeout = \"30s\"",
        ]
    );
    let (keys, t) = timeouts(
        "http",
        "  timeout connect 999us\n  timeout client 2d\n  timeout server 5s\n  timeout http-request 10s\n  timeout http-keep-alive 3s\n  timeout tunnel 1h\n",
    );
    assert_eq!(
        keys,
        vec![
            "connect_timeout = \"1ms\"",
            "header_timeout = \"10s\"",
            "response_timeout = \"5s\"",
            "idle_timeout = \"1h\"",
        ]
    );
    assert!(says(&t, "defaults.timeout connect", "999us made 1ms"));
    assert!(says(
        &t,
        "defaults.timeout http-keep-alive",
        "Strata waits `header_timeout` for the next request on a kept-alive connection, 10s here"
    ));
    assert!(says(&t, "defaults.timeout tunnel", "made `idle_timeout`"));
    // TCP: quiet both ways until the first of the client and server timeouts
    let (keys, t) = timeouts(
        "tcp",
        "  timeout connect 0\n  timeout client 10m\n  timeout server 5m\n  timeout http-request 5s\n",
    );
    assert_eq!(keys, vec!["idle_timeout = \"5m\""]);
    assert!(says(
        &t,
        "defaults.timeout connect",
        "0 sets no limit in HAProxy"
    ));
    assert!(says(&t, "www", "no `timeout connect`"));
    assert!(says(
        &t,
        "defaults.timeout http-request",
        "HAProxy uses it in HTTP mode only"
    ));
}

#[test]
fn import_haproxy_makes_a_listener_for_each_address_a_frontend_binds() {
    let t = ok(&proxy(
        "http",
        ":80,10.0.0.1:81\n  bind [::]:8000-8001 maxconn 50\n  bind ipv4@127.0.0.1:9000",
        "",
        "  server a 10.0.0.1:8080\n",
    ));
    let listens: Vec<(&str, &str)> = ["www-80", "www-81", "www-8000", "www-8001", "www-9000"]
        .iter()
        .map(|name| {
            let lines = listener(&t, name);
            (*name, lines[1])
        })
        .collect();
    assert_eq!(
        listens,
        vec![
            ("www-80", "listen = \"0.0.0.0:80\""),
            ("www-81", "listen = \"10.0.0.1:81\""),
            ("www-8000", "listen = \"[::]:8000\""),
            ("www-8001", "listen = \"[::]:8001\""),
            ("www-9000", "listen = \"127.0.0.1:9000\""),
        ]
    );
    // a `maxconn` on a bind bounds each of its listeners
    assert!(listener(&t, "www-8000").contains(&"max_connections = 50"));
    assert!(!listener(&t, "www-80")
        .iter()
        .any(|l| l.starts_with("max_connections")));
    // one port twice: by number; a name taken: a number after it
    let t = ok(&format!(
        "{TIMEOUTS}listen db\n  bind 10.0.0.1:5432,10.0.0.2:5432\n  server a 10.0.1.1:5432\nlisten db-1\n  bind :1\n  server a 10.0.1.1:1\n"
    ));
    let names: Vec<&str> = config(&t)
        .into_iter()
        .filter(|l| l.starts_with("name ="))
        .collect();
    assert_eq!(
        names,
        vec!["name = \"db-1\"", "name = \"db-2\"", "name = \"db-1-2\""]
    );
    passes_strata_check(&t);
    // a long range: the first 64 ports
    let t = ok(&proxy("tcp", ":1000-1099", "", "  server a 10.0.0.1\n"));
    assert_eq!(t.sections, 64);
    assert!(says(&t, "www.bind", "ports 1064-1099 not translated"));
    // a server with no port: the port the client came to, on each listener
    assert!(listener(&t, "www-1063").contains(&"    \"10.0.0.1:1063\","));
    assert!(says(&t, "app.server a", "HAProxy connects to the port the client connected to (or that far from it), 1000 on this listener"));
}

#[test]
fn import_haproxy_serves_tls_from_the_pem_file_haproxy_serves() {
    let dir = std::env::temp_dir().join(format!("strata-haproxy-tls-{}", std::process::id()));
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(
        certs.join("both.pem"),
        "-----BEGIN CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(certs.join("cert.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    let file = dir.join("haproxy.cfg");
    let file = file.to_str().unwrap();
    let tls = |global: &str, crt: &str| {
        let source = format!(
            "global\n{global}{}",
            proxy(
                "http",
                &format!(":443 ssl crt {crt}"),
                "",
                "  server a 10.0.0.1:80\n"
            )
        );
        let t = translated(translate, &source, file);
        let line = listener(&t, "www")[3].to_string();
        (line, t)
    };
    let d = dir.display();
    let entry = |cert: &str, key: &str| format!("    {{ cert = \"{cert}\", key = \"{key}\" }},");
    assert_eq!(
        tls("", "/etc/ssl/site.pem").0,
        entry("/etc/ssl/site.pem", "/etc/ssl/site.pem")
    );
    // relative: from the directory HAProxy was started in, taken to be the config's
    let (line, t) = tls("", "certs/both.pem");
    assert_eq!(
        line,
        entry(
            &format!("{d}/certs/both.pem"),
            &format!("{d}/certs/both.pem")
        )
    );
    assert!(says(
        &t,
        "www.bind",
        "\"certs/both.pem\" is relative, which HAProxy takes from the directory it was started in"
    ));
    // from the config's directory as HAProxy is told, or from crt-base; a key beside the cert
    let (line, t) = tls("  default-path config\n", "certs/cert.pem");
    assert_eq!(
        line,
        entry(
            &format!("{d}/certs/cert.pem"),
            &format!("{d}/certs/cert.pem.key")
        )
    );
    assert!(!says(&t, "www.bind", "is relative"));
    assert!(says(
        &t,
        "www.bind",
        "\"certs/cert.pem\" holds no private key: HAProxy takes it from"
    ));
    assert_eq!(
        tls("  default-path origin /srv\n  crt-base tls\n", "site.pem").0,
        entry("/srv/tls/site.pem", "/srv/tls/site.pem")
    );
    assert_eq!(
        tls("  default-path parent\n", "site.pem").0,
        entry(
            &format!("{}/site.pem", dir.parent().unwrap().display()),
            &format!("{}/site.pem", dir.parent().unwrap().display())
        )
    );
    assert_eq!(
        tls("  crt-base /etc/haproxy/certs\n", "site.pem").0,
        entry("/etc/haproxy/certs/site.pem", "/etc/haproxy/certs/site.pem")
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // a crt-list, and TLS on a TCP listener: kept as written
    let t = ok(&proxy(
        "http",
        ":443 ssl crt-list /etc/haproxy/list.txt",
        "",
        "  server a 10.0.0.1:80\n",
    ));
    assert!(listener(&t, "www")
        .contains(&"    \"crt-list /etc/haproxy/list.txt\", # kept as written: see line 7 above"));
    let t = ok(&proxy(
        "tcp",
        ":443 ssl crt /etc/ssl/site.pem",
        "",
        "  server a 10.0.0.1:80\n",
    ));
    assert!(listener(&t, "www").contains(&"    { cert = \"/etc/ssl/site.pem\", key = \"/etc/ssl/site.pem\" }, # kept as written: see line 7 above"));
    assert_eq!(check(&config(&t).join("\n")).unwrap_err().len(), 1);
}

#[test]
fn import_haproxy_sends_plain_http_to_https_where_a_redirect_rule_did() {
    let frontend = |rules: &str| {
        let t = ok(&format!(
            "{TIMEOUTS}  mode http\nfrontend www\n  bind :80\n  bind :443 ssl crt /etc/ssl/site.pem\n{rules}  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
        ));
        let redirects = |name| listener(&t, name).contains(&"redirect_https = true");
        (redirects("www-80"), redirects("www-443"), t)
    };
    for rule in [
        "http-request redirect scheme https code 301 if !{ ssl_fc }",
        "http-request redirect scheme https code 301 unless { ssl_fc }",
        "redirect scheme https code 301 if !{ ssl_fc }",
    ] {
        let (plain, tls, t) = frontend(&format!("  {rule}\n"));
        assert_eq!((plain, tls), (true, false), "{rule}");
        // a redirecting listener needs no backends
        assert!(!listener(&t, "www-80")
            .iter()
            .any(|l| l.starts_with("backends")));
        assert!(
            t.notes
                .iter()
                .all(|n| !n.key.ends_with("redirect") && !n.key.ends_with("http-request")),
            "{rule}: {:?}",
            t.notes
        );
    }
    let (plain, tls, t) = frontend("  redirect scheme https\n");
    assert_eq!((plain, tls), (true, true));
    assert!(says(
        &t,
        "www.redirect",
        "Strata redirects with 301 (Moved Permanently), where HAProxy's code here is 302"
    ));
    // any other condition is a rule Strata does not have
    let (plain, _, t) =
        frontend("  http-request redirect scheme https if { hdr(host) -i www.example.com }\n");
    assert!(!plain);
    assert!(says(
        &t,
        "www.http-request",
        "not translated: Strata has no request or response rules"
    ));
    // the first rule is the one HAProxy takes; each later one is noted
    let (plain, tls, t) = frontend(
        "  redirect scheme https code 301 if !{ ssl_fc }
  redirect scheme https code 301
",
    );
    assert_eq!((plain, tls), (true, false));
    assert!(says(
        &t,
        "www.redirect",
        "HAProxy sends requests that came over TLS to https again with it (a loop for a browser)"
    ));
    let (_, _, t) = frontend(
        "  redirect scheme https code 301
  redirect scheme https code 301 if !{ ssl_fc }
",
    );
    assert!(says(
        &t,
        "www.redirect",
        "the rule on line 9 redirects every request"
    ));
}

#[test]
fn import_haproxy_keeps_servers_strata_cannot_reach_as_haproxy_did() {
    let t = ok(&proxy(
        "http",
        ":80",
        "",
        concat!(
            "  server a 10.0.0.1:80 weight 2\n",
            "  server b app-2.internal:80 init-addr none\n",
            "  server c /run/app.sock\n",
            "  server d 0.0.0.0\n",
            "  server e \"${APP_HOST}:80\"\n",
            "  server f 10.0.0.6:443 ssl verify none\n",
            "  server g 10.0.0.7:80 send-proxy-v2\n",
            "  server h 10.0.0.1:80\n",
            "  server i [fe80::1]:80\n",
        ),
    ));
    let backends: Vec<&str> = listener(&t, "www")
        .into_iter()
        .skip_while(|l| *l != "backends = [")
        .take_while(|l| *l != "]")
        .collect();
    assert_eq!(
        backends,
        vec![
            "backends = [",
            "    \"10.0.0.1:80 weight=2\",",
            "    \"app-2.internal:80\", # kept as written: see line 11 above",
            "    \"/run/app.sock\", # kept as written: see line 12 above",
            "    \"0.0.0.0\", # kept as written: see line 13 above",
            "    \"${APP_HOST}:80\", # kept as written: see line 14 above",
            "    \"10.0.0.6:443 ssl\", # kept as written: see line 15 above",
            "    \"10.0.0.7:80 send-proxy-v2\", # kept as written: see line 16 above",
            "    \"10.0.0.1:80\", # kept as written: see line 17 above",
            "    \"[fe80::1]:80\",",
        ]
    );
    assert!(says(
        &t,
        "app.server b",
        "\"app-2.internal:80\" is a host name"
    ));
    assert!(says(
        &t,
        "app.server d",
        "makes HAProxy connect to the address the client connected to"
    ));
    assert!(says(
        &t,
        "app.server e",
        "`${APP_HOST}` is an environment variable HAProxy reads when it starts"
    ));
    assert!(says(&t, "app.server f", "HAProxy speaks ssl to it"));
    assert!(says(&t, "app.server f", "`verify none` not translated"));
    assert!(says(&t, "app.server h", "server `a` is at 10.0.0.1:80 too"));
    // each is what strata check refuses
    let refused = check(&config(&t).join("\n")).unwrap_err();
    assert_eq!(refused.len(), 7, "{refused:?}");
    // HTTP/2 to every server: h2c
    let t = ok(&proxy(
        "http",
        ":80",
        "",
        "  server a 10.0.0.1:80 proto h2\n  server b 10.0.0.2:80 proto h2\n",
    ));
    assert!(listener(&t, "www").contains(&"backend_protocol = \"h2c\""));
    passes_strata_check(&t);
    let t = ok(&proxy(
        "http",
        ":80",
        "",
        "  server a 10.0.0.1:80 proto h2\n  server b 10.0.0.2:80\n",
    ));
    assert!(says(
        &t,
        "app.server a",
        "not every server here speaks HTTP/2"
    ));
}

#[test]
fn import_haproxy_leaves_out_the_servers_haproxy_sends_nothing_while_others_are_up() {
    let t = ok(&proxy(
        "tcp",
        ":80",
        "  default-server backup\n",
        "  server a 10.0.0.1:80 no-backup\n  server b 10.0.0.2:80\n  server c 10.0.0.3:80 no-backup disabled\n  server d 10.0.0.4:80 no-backup weight 0\n",
    ));
    let lines = listener(&t, "www");
    assert!(lines.contains(&"    \"10.0.0.1:80\","), "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("10.0.0.")).count(),
        1,
        "{lines:?}"
    );
    assert!(says(
        &t,
        "app.server b",
        "`backup` not translated: Strata has no backup servers"
    ));
    assert!(says(&t, "app.server c", "`disabled` not translated"));
    assert!(says(&t, "app.server d", "`weight 0` not translated"));
    passes_strata_check(&t);
    // backups alone take the traffic, as in HAProxy
    let t = ok(&proxy("tcp", ":80", "", "  server a 10.0.0.1:80 backup\n"));
    assert!(listener(&t, "www").contains(&"    \"10.0.0.1:80\","));
    assert!(t.notes.is_empty(), "{:?}", t.notes);
    // the first of them only, unless `option allbackups`
    let two = "  server a 10.0.0.1:80 backup\n  server b 10.0.0.2:80 backup\n";
    let t = ok(&proxy("tcp", ":80", "", two));
    let lines = listener(&t, "www");
    assert!(lines.contains(&"    \"10.0.0.1:80\","), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("10.0.0.2")), "{lines:?}");
    assert!(says(&t, "app.server b", "without `option allbackups`"));
    passes_strata_check(&t);
    let t = ok(&proxy("tcp", ":80", "  option allbackups\n", two));
    let lines = listener(&t, "www");
    assert!(lines.contains(&"    \"10.0.0.2:80\","), "{lines:?}");
    assert!(t.notes.is_empty(), "{:?}", t.notes);
}

#[test]
fn import_haproxy_leaves_out_the_listeners_strata_cannot_run() {
    let t = ok(&format!(
        "{TIMEOUTS}  mode http\nfrontend www\n{}  default_backend app\nbackend app\n  server a 10.0.0.1:80\nfrontend idle\n  bind :90\nfrontend lost\n  bind :91\n  default_backend none\nbackend none\n  server a 10.0.0.1:80 disabled\nfrontend unbound\n  default_backend app\n",
        concat!(
            "  bind /run/haproxy/www.sock,unix@www2.sock,fd@3\n",
            "  bind quic4@:443 ssl crt /etc/ssl/site.pem\n",
            "  bind lb.internal:80\n",
            "  bind :81 accept-proxy\n",
            "  bind :82 ssl crt /etc/ssl/site.pem verify required ca-file /etc/ssl/ca.pem\n",
            "  bind :83 ssl\n",
            "  bind \"${LB_ADDR}:84\"\n",
            "  bind :85\n",
        ),
    ));
    assert_eq!((t.sections, t.left_out), (13, 12));
    for (key, why) in [
        ("www.bind", "\"/run/haproxy/www.sock\" is a unix socket"),
        ("www.bind", "\"unix@www2.sock\" is a unix socket"),
        ("www.bind", "\"fd@3\" is a unix socket (or one HAProxy inherits)"),
        ("www.bind", "\"quic4@:443\" is QUIC or UDP"),
        ("www.bind", "HAProxy resolved the host name in \"lb.internal:80\""),
        ("www.bind", "its clients send the PROXY protocol header first"),
        ("www.bind", "HAProxy asks its clients for a certificate (`verify required`)"),
        ("www.bind", "`ssl` with no `crt`"),
        ("www.bind", "`${LB_ADDR}` is an environment variable HAProxy reads when it starts: write the address"),
        ("idle", "no backend to send requests to"),
        ("none", "`none` has no server Strata can send requests to"),
        ("unbound", "no `bind`: HAProxy listens nowhere for it"),
    ] {
        assert!(says(&t, key, &format!("{LEFT_OUT}: {why}")), "{key}: {why}\n{:?}", notes(&t));
    }
    assert!(listener(&t, "www-10").contains(&"listen = \"0.0.0.0:85\""));
    // a proxy HAProxy does not start
    let t = ok(&proxy("tcp", ":80", "", "  server a 10.0.0.1:80\n")
        .replace("frontend www\n", "frontend www\n  disabled\n"));
    assert_eq!(t.left_out, 1);
    assert!(says(
        &t,
        "www.disabled",
        "`disabled`: HAProxy does not start the proxy"
    ));
    let t = ok(&proxy("tcp", ":80", "", "  server a 10.0.0.1:80\n")
        .replace("  mode tcp\n", "  mode tcp\n  disabled\n")
        .replace("frontend www\n", "frontend www\n  enabled\n"));
    assert_eq!(t.left_out, 0);
    passes_strata_check(&t);
}

#[test]
fn import_haproxy_notes_what_it_drops_with_why() {
    let t = ok(&format!(
        "global\n  daemon\n  maxconn 100\n  tune.bufsize 1\n  ssl-default-bind-options no-sslv3\n  crt-base /etc/ssl\npeers mesh\n  peer a 10.0.0.1:1024\n{}",
        proxy(
            "http",
            ":80 tfo ciphers X",
            "  balance roundrobin\n  stats enable\n  cookie S insert\n  timeout queue 5s\n",
            "  server a 10.0.0.1:80 check cookie a maxconn 5 fastinter 1s observe layer7\n",
        )
        .replace("  default_backend app\n", "  default_backend app\n  acl api path_beg /api\n  http-request deny if api\n  compression algo gzip\n  balance leastconn\n  option dontlognull\n")
    ));
    let said: Vec<String> = notes(&t);
    for want in [
        "2 global.daemon: not translated: Strata runs in the foreground",
        "3 global.maxconn: not translated: Strata bounds the connections of each listener",
        "4 global.tune.bufsize: not translated: Strata has no tuning settings",
        "5 global.ssl-default-bind-options: not translated: Strata's TLS is rustls'",
        "7 peers: the `peers` section not translated",
        "15 www.bind: `tfo`, `ciphers X` not translated: Strata's listeners have no such setting; Strata's TLS is rustls'",
        "17 www.acl: not translated: Strata has no ACLs",
        "18 www.http-request: not translated: Strata has no request or response rules",
        "19 www.compression: not translated: Strata does not compress responses",
        "20 www.balance: not translated: HAProxy reads it in a backend, not in a frontend",
        "21 www.option dontlognull: not translated: Strata logs to stderr",
        "24 app.stats enable: not translated: HAProxy's stats page is Strata's admin listener",
        "25 app.cookie: not translated: Strata keeps no client on a server",
        "27 app.server a: `cookie a`, `fastinter 1s`, `observe layer7` not translated: Strata keeps no client on a server; Strata checks at one interval whatever a backend's state; Strata ejects a backend after failures in real traffic by itself (`passive`)",
    ] {
        assert!(said.iter().any(|n| n.starts_with(want)), "{want}\n{said:#?}");
    }
    // a server's maxconn and the backend's queue timeout are Strata's own
    assert!(!said
        .iter()
        .any(|n| n.contains("maxconn 5") || n.contains("timeout queue")));
    let www = listener(&t, "www");
    assert!(www.contains(&"queue_timeout = \"5s\""), "{www:?}");
    assert!(
        www.iter()
            .any(|l| l.contains("\"10.0.0.1:80 max_conns=5\"")),
        "{www:?}"
    );
    // crt-base is read, not noted
    assert!(!said.iter().any(|n| n.contains("crt-base")));
    // a note about a defaults line is said once, however many listeners it is about
    let t = ok(&format!(
        "defaults\n  mode http\n  timeout tunnel 1h\n  option dontlognull\n{}",
        proxy("http", ":80,:81", "", "  server a 10.0.0.1:80\n").replace(TIMEOUTS, "")
    ));
    let tunnel: Vec<&Note> = t
        .notes
        .iter()
        .filter(|n| n.key == "defaults.timeout tunnel")
        .collect();
    assert_eq!(tunnel.len(), 1, "{:?}", t.notes);
    assert_eq!(
        t.toml.matches("line 3: `defaults.timeout tunnel`").count(),
        1,
        "{}",
        t.toml
    );
}

#[test]
fn import_haproxy_sends_requests_to_the_first_backend_without_a_condition() {
    let routes = |rules: &str| {
        let t = ok(&format!(
            "{TIMEOUTS}  mode http\nfrontend www\n  bind :80\n{rules}backend a\n  server a 10.0.0.1:80\nbackend b\n  server b 10.0.0.2:80\nbackend c\n  server c 10.0.0.3:80\n"
        ));
        let server = listener(&t, "www")
            .into_iter()
            .find(|l| l.starts_with("    \"10.0.0."))
            .map(str::to_string);
        (server, t)
    };
    let (server, t) = routes("  use_backend b if { path_beg /b }\n  default_backend a\n");
    assert_eq!(server.as_deref(), Some("    \"10.0.0.1:80\","));
    assert!(says(
        &t,
        "www.use_backend",
        "with no rules to choose another: they go to `a`"
    ));
    assert!(says(
        &t,
        "b",
        "backend not translated: no frontend sends it requests by default"
    ));
    assert!(says(&t, "c", "backend not translated"));
    let (server, t) = routes("  use_backend %[req.hdr(x-backend)]\n  use_backend c\n  use_backend b\n  default_backend a\n");
    assert_eq!(server.as_deref(), Some("    \"10.0.0.3:80\","));
    assert!(says(&t, "www.use_backend", "they go to `c`"));
    let (server, t) = routes("  use_backend b if { path_beg /b }\n");
    assert_eq!(server, None);
    assert!(says(
        &t,
        "www.use_backend",
        "and this frontend has no default backend"
    ));
    // a TCP frontend in front of an HTTP backend is an HTTP listener, as HAProxy upgrades it
    let t = ok(&format!("{TIMEOUTS}frontend www\n  bind :80\n  default_backend app\nbackend app\n  mode http\n  server a 10.0.0.1:80\n"));
    assert!(t.toml.contains("[[http]]"));
}

#[test]
fn import_haproxy_notes_the_environment_variables_it_takes_as_unset() {
    let t = ok(&format!(
        "global\n  setenv X 1\n{}",
        proxy(
            "http",
            "\"${ADDR-127.0.0.1}:80\"",
            "  timeout server \"${T-9s}\"\n  balance \"$B\"\n",
            "  server a 10.0.0.1:80\n"
        )
        .replace("balance \"$B\"", "balance roundrobin \"$B\"")
    ));
    assert!(listener(&t, "www").contains(&"listen = \"127.0.0.1:80\""));
    assert!(listener(&t, "www").contains(&"response_timeout = \"9s\""));
    assert!(says(
        &t,
        "www.bind",
        "`${ADDR}` as \"127.0.0.1\": HAProxy reads environment variables when it starts"
    ));
    assert!(says(&t, "app.timeout server", "`${T}` as \"9s\""));
    assert!(says(&t, "app.balance", "`${B}` as nothing"));
}

#[test]
fn import_haproxy_refuses_a_file_haproxy_would_not_start_with() {
    // what it can't read at all first, alone
    assert_eq!(
        refused("global\n  log \"127.0.0.1\n  user 'x\nbind :80\n"),
        vec![
            "2:7 : this quote is never closed on its line: HAProxy refuses it (\"unmatched quote\")",
            "3:8 : this quote is never closed on its line: HAProxy refuses it (\"unmatched quote\")",
        ]
    );
    assert_eq!(
        refused("global\n  daemon\n"),
        vec!["1:1 : no frontend or listen section: HAProxy has nothing to listen on (\"no listener\"), and there is nothing to translate"]
    );
    assert_eq!(
        refused(concat!(
            "defaults\n  mode https\n  timeout client 10x\n  timeout queue\n  timeout idle 5s\n  balance fastest\n  maxconn many\n",
            "frontend\n",
            "frontend www 10.0.0.1:80\n  mode http\n  bind 10.0.0.1\n  bind :80 fast\n  bind sctp@:80\n  default_backend nope\n  use_backend tcp\n  server s 10.0.0.1:80\n",
            "frontend www\n  bind :81\n",
            "frontend f from nothing\n  bind :82\n",
            "backend tcp\n  mode tcp\n  bind :83\n  server s\n  server a 10.0.0.1 check\n  server a 10.0.0.2:80 weight 300\n  server b 10.0.0.3:80 rise 0 inter 0\n  server c 10.0.0.4:x\n",
            "backend tcp\n  default-server cookie\n",
        )),
        vec![
            "2:8 defaults.mode: \"https\" is not a mode HAProxy has for a proxy (tcp or http)",
            "3:18 defaults.timeout client: \"10x\": unexpected 'x' (the units are us, ms, s, m, h and d)",
            "4:3 defaults.timeout queue: \"\" is not a time (a whole number and a unit: us, ms, s, m, h or d; none is milliseconds)",
            "5:3 defaults.timeout idle: HAProxy has no timeout \"idle\" (it has client, client-fin, client-hs, connect, check, http-keep-alive, http-request, queue, server, server-fin, tarpit, tunnel)",
            "6:11 defaults.balance: \"fastest\" is not a balance algorithm HAProxy has (roundrobin, static-rr, leastconn, first, hash, source, uri, url_param, hdr, random, rdp-cookie, log-hash, sticky)",
            "7:11 defaults.maxconn: \"many\" is not a whole number",
            "8:1 frontend: HAProxy needs a name after `frontend`",
            "9:14 frontend: HAProxy takes only a name, and `from` a defaults section, after `frontend`: an address goes on a `bind` line",
            "11:8 www.bind: \"10.0.0.1\" has no port (HAProxy refuses a `bind` without one)",
            "12:12 www.bind: HAProxy has no bind option `fast`, and refuses the line",
            "13:8 www.bind: `sctp@` is not an address family HAProxy has (such as ipv4@, ipv6@, unix@)",
            "14:19 www.default_backend: no backend or listen section is named \"nope\", which HAProxy refuses",
            "15:15 www.use_backend: an HTTP frontend can't use the TCP backend \"tcp\" (see `mode`), which HAProxy refuses",
            "16:3 www.server s: HAProxy takes `server` in a backend or listen section, not in frontend",
            "17:10 www: frontend \"www\" is on line 9 already, which HAProxy refuses",
            "19:17 frontend: no defaults section named \"nothing\" before it, which HAProxy refuses",
            "23:3 tcp.bind: HAProxy takes `bind` in a frontend or listen section, not in backend",
            "24:3 tcp.server s: `server` needs a name and an address",
            "25:12 tcp.server a: `check` on a server with no port of its own nor a `port` to check: HAProxy refuses it (\"has neither service port nor check port\")",
            // its weight stops HAProxy reading the second `a`, before it sees the name twice
            "26:31 tcp.server a: \"300\" is not a weight (0 to 256)",
            "27:29 tcp.server b: \"0\": `rise` is a whole number above 0",
            "28:12 tcp.server c: \"x\" in \"10.0.0.4:x\" is not a port",
            "29:9 tcp: backend \"tcp\" is on line 21 already, which HAProxy refuses",
            "30:18 tcp.default-server: `cookie` needs a value after it",
        ]
    );
    assert_eq!(
        refused(&proxy(
            "tcp",
            ":80",
            "",
            "  server a 10.0.0.1:80\n  server a 10.0.0.2:80\n"
        )),
        vec![
            "11:10 app.server a: a server named \"a\" is on line 10 already, which HAProxy refuses"
        ]
    );
}

#[test]
fn import_haproxy_gives_a_server_only_the_default_server_lines_before_it() {
    let t = ok(&format!(
        "{}  default-server inter 3s\n  mode http\nfrontend www\n  bind :80\n  default_backend app\nbackend app\n{}",
        TIMEOUTS,
        concat!(
            "  server a 10.0.0.1:80 check\n",
            "  default-server weight 5 fall 5\n",
            "  server b 10.0.0.2:80 check\n",
            "  default-server backup\n",
        ),
    ));
    let lines = listener(&t, "www");
    // `a` is read before the backend's `default-server` lines, after the defaults' one
    assert!(lines.contains(&"    \"10.0.0.1:80\","), "{lines:?}");
    assert!(
        lines.contains(&"    \"10.0.0.2:80 weight=5\","),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"health = { interval = \"3s\", timeout = \"3s\", rise = 2, fall = 3 }"),
        "{lines:?}"
    );
    assert!(says(
        &t,
        "app.server b",
        "`inter 3s rise 2 fall 5` not translated"
    ));
    assert!(!says(&t, "app.server a", "backup"));
    assert!(!says(&t, "app.server b", "backup"));
    passes_strata_check(&t);
}

#[test]
fn import_haproxy_writes_expect_rise_and_fall_as_checked_numbers() {
    let health = |rest: &str, servers: &str| {
        let t = ok(&proxy("http", ":80", rest, servers));
        let line = listener(&t, "www")
            .into_iter()
            .find(|l| l.starts_with("health"))
            .map(str::to_string)
            .unwrap_or_default();
        passes_strata_check(&t);
        (line, t)
    };
    let expect = |codes: &str| {
        health(
            &format!("  option httpchk\n  http-check expect status {codes}\n"),
            "  server a 10.0.0.1:80 check\n",
        )
    };
    let timing = "interval = \"2s\", timeout = \"2s\", rise = 2, fall = 3 }";
    assert_eq!(
        expect("0200").0,
        format!("health = {{ path = \"/\", expect = 200, {timing}")
    );
    assert_eq!(
        expect("200-0299").0,
        format!("health = {{ path = \"/\", expect = \"200-299\", {timing}")
    );
    for codes in [
        "2xx",
        "999",
        "200,301",
        "299-200",
        "+200",
        "\"200\\n[admin]\"",
    ] {
        let (line, t) = expect(codes);
        assert_eq!(
            line,
            format!("health = {{ path = \"/\", {timing}"),
            "{codes}"
        );
        assert!(
            says(
                &t,
                "app.http-check",
                "not translated: Strata's HTTP check takes one status or one range of statuses, from 100 to 599"
            ),
            "{codes}: {:?}",
            t.notes
        );
    }
    assert!(says(
        &expect("\"200\\n[admin]\"").1,
        "app.http-check",
        "status \"200\\n[admin]\" not translated"
    ));
    // rise and fall as numbers, at most Strata's 100, with a note on the line that set more
    let (line, t) = health(
        "  default-server fall 200\n",
        "  server a 10.0.0.1:80 check rise 02\n",
    );
    assert_eq!(
        line,
        "health = { interval = \"2s\", timeout = \"2s\", rise = 2, fall = 100 }"
    );
    assert!(says(
        &t,
        "app.default-server",
        "`fall 200` made 100: the most Strata takes"
    ));
    let fall = t.notes.iter().find(|n| n.message.contains("fall 200"));
    assert_eq!(fall.map(|n| n.at.line), Some(10), "{:?}", t.notes);
    // 02 is 2, as HAProxy reads it: checked alike
    let (_, t) = health(
        "",
        "  server a 10.0.0.1:80 check rise 02\n  server b 10.0.0.2:80 check rise 2\n",
    );
    assert!(!says(&t, "app.server b", "not translated"), "{:?}", t.notes);
}

#[test]
fn import_haproxy_escapes_what_the_file_spells_with_escapes_in_its_notes() {
    let injected = "\\n[admin]\\nlisten = \\\"0.0.0.0:9000\\\"";
    let t = ok(&format!(
        "{}.if streq(\"a{injected}\",\"b\")\n.endif\n",
        proxy(
            "http",
            ":80",
            &format!("  option \"x{injected}\"\n"),
            &format!("  server a 10.0.0.1:80 cookie \"c{injected}\"\n"),
        )
    ));
    passes_strata_check(&t);
    assert!(
        !t.toml
            .lines()
            .any(|l| l.starts_with("[admin]") || l.starts_with("listen = \"0.0.0.0:9000\"")),
        "{}",
        t.toml
    );
    // on stderr as in the output: each on its line
    let escaped = "\\n[admin]\\nlisten = \"0.0.0.0:9000\"";
    for (key, text) in [
        (
            format!("app.option x{escaped}"),
            "not translated".to_string(),
        ),
        (
            "app.server a".into(),
            format!("`cookie c{escaped}` not translated"),
        ),
        // HAProxy's quotes are read, and the words joined
        (".if".into(), format!("`.if streq(a{escaped},b)`")),
    ] {
        let note = t
            .notes
            .iter()
            .find(|n| n.to_string().contains(&key) && n.to_string().contains(&text));
        let note = note.unwrap_or_else(|| panic!("{key}: {text}\n{:?}", t.notes));
        assert!(!note.to_string().contains('\n'), "{note}");
        assert!(!note.located("h.cfg").to_string().contains('\n'), "{note}");
    }
}

#[test]
fn import_haproxy_keeps_a_crt_directory_and_reads_only_small_regular_files() {
    let dir = std::env::temp_dir().join(format!("strata-haproxy-crt-{}", std::process::id()));
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let big = dir.join("big.pem");
    // no key in the first 1 MiB, so read whole it would send HAProxy's key to big.pem.key
    std::fs::write(&big, "#".repeat((MAX_PEM + 1) as usize)).unwrap();
    let fifo = dir.join("fifo.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let file = dir.join("haproxy.cfg");
    let tls = |crt: &str| {
        let source = format!(
            "global\n  default-path config\n{}",
            proxy(
                "http",
                &format!(":443 ssl crt {crt}"),
                "",
                "  server a 10.0.0.1:80\n"
            )
        );
        let t = translated(translate, &source, file.to_str().unwrap());
        let line = listener(&t, "www")[3].to_string();
        (line, t)
    };
    for crt in ["certs/", &certs.display().to_string()] {
        let (line, t) = tls(crt);
        assert_eq!(
            line,
            format!("    \"crt {crt}\", # kept as written: see line 9 above"),
            "{crt}"
        );
        assert!(says(
            &t,
            "www.bind",
            &format!(
                "{KEPT}: \"{crt}\" is a directory, and HAProxy serves every certificate in it"
            )
        ));
        assert_eq!(check(&config(&t).join("\n")).unwrap_err().len(), 1);
    }
    let d = dir.display();
    // (the big file first: read whole, as it was, it fails the test before a pipe hangs it or
    // /dev/zero fills the memory)
    for (crt, what) in [
        (
            format!("{d}/big.pem"),
            "larger than a certificate chain (1 MiB)",
        ),
        (format!("{d}/fifo.pem"), "not a regular file"),
        ("/dev/zero".to_string(), "not a regular file"),
    ] {
        let (line, t) = tls(&crt);
        assert_eq!(
            line,
            format!("    {{ cert = \"{crt}\", key = \"{crt}\" }},"),
            "{crt}"
        );
        assert!(
            says(
                &t,
                "www.bind",
                &format!("\"{crt}\" is {what}, and was not read")
            ),
            "{crt}: {:?}",
            t.notes
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn import_haproxy_writes_haproxy_s_defaults_where_strata_s_differ() {
    let keys = |rest: &str, servers: &str| {
        let t = ok(&proxy("tcp", ":80", rest, servers));
        passes_strata_check(&t);
        let keys: Vec<String> = listener(&t, "www")
            .into_iter()
            .filter(|l| {
                ["passive", "retries", "slow_start"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .map(str::to_string)
            .collect();
        (keys, t)
    };
    // no ejection on errors, HAProxy's 3 retries, no ramp up
    let (plain, _) = keys("", "  server a 10.0.0.1:80\n");
    assert_eq!(
        plain,
        [
            "passive = { failures = 0 }",
            "retries = 3",
            "slow_start = \"0s\""
        ]
    );
    // as the file sets them: `observe` leaves Strata's ejection on (and is noted)
    let (set, t) = keys(
        "  retries 1\n",
        "  server a 10.0.0.1:80 observe layer4 slowstart 1m\n",
    );
    assert_eq!(set, ["retries = 1", "slow_start = \"1m\""]);
    assert!(says(&t, "app.server a", "`observe layer4` not translated"));
    // a `slowstart` on one server ramps every backend up
    let (one, t) = keys(
        "",
        "  server a 10.0.0.1:80\n  server b 10.0.0.2:80 slowstart 20s\n  server c 10.0.0.3:80\n  server d 10.0.0.4:80 backup\n",
    );
    assert!(one.contains(&"slow_start = \"20s\"".to_string()), "{one:?}");
    assert!(says(
        &t,
        "app",
        "Strata ramps every backend up over `slow_start`, as HAProxy does `b` (`slowstart 20s`), where HAProxy ramps up only the servers with `slowstart` (not a, c)"
    ));
}

#[test]
fn import_haproxy_keeps_the_servers_haproxy_sends_the_proxy_protocol() {
    let t = ok(&proxy(
        "tcp",
        ":80",
        "",
        concat!(
            "  server a 10.0.0.1:80 check check-send-proxy\n",
            "  server b 10.0.0.2:80 send-proxy no-send-proxy\n",
            "  server c 10.0.0.3:80 send-proxy-v2-ssl no-send-proxy-v2-ssl\n",
            "  default-server send-proxy\n",
            // v1 is still on
            "  server d 10.0.0.4:80 no-send-proxy-v2\n",
            // the -ssl flag is still on, and HAProxy sends version 1
            "  server e 10.0.0.5:80 no-send-proxy send-proxy-v2-ssl no-send-proxy-v2\n",
            "  server f 10.0.0.6:80 no-send-proxy send-proxy-v2-ssl-cn\n",
            "  server g 10.0.0.7:80 no-send-proxy\n",
        ),
    ));
    let backends: Vec<&str> = listener(&t, "www")
        .into_iter()
        .filter(|l| l.starts_with("    \"10."))
        .collect();
    assert_eq!(
        backends,
        vec![
            "    \"10.0.0.1:80\",",
            "    \"10.0.0.2:80\",",
            "    \"10.0.0.3:80\",",
            "    \"10.0.0.4:80 send-proxy\", # kept as written: see line 14 above",
            "    \"10.0.0.5:80 send-proxy\", # kept as written: see line 15 above",
            "    \"10.0.0.6:80 send-proxy-v2\", # kept as written: see line 16 above",
            "    \"10.0.0.7:80\",",
        ]
    );
    assert!(says(
        &t,
        "app.server a",
        "`check-send-proxy` not translated: Strata's checks are plain TCP or HTTP"
    ));
}

/// Found by the `import` fuzz target: `hard-stop-after` in two `global` sections was written
/// twice, and a key set twice is a config TOML refuses.
#[test]
fn import_haproxy_writes_a_global_setting_given_twice_once_the_last_one() {
    let t = ok(&format!(
        "global\n  nbthread 2\n  hard-stop-after 1m\nglobal\n  hard-stop-after 5m\n  nbthread 4\n{}",
        http("")
    ));
    assert_eq!(config(&t)[..2], ["workers = 4", "drain_timeout = \"5m\""]);
    passes_strata_check(&t);
    let notes = notes(&t);
    for (line, key, again) in [(2, "global.nbthread", 6), (3, "global.hard-stop-after", 5)] {
        let said = format!("{line} {key}: {NOT_TRANSLATED}: line {again} sets it again");
        assert!(notes.contains(&said), "{notes:?}");
    }
}

/// Found by the `import` fuzz target: two frontends binding one address (HAProxy binds both,
/// with SO_REUSEPORT) made two listeners on it, a config `strata check` refuses.
#[test]
fn import_haproxy_makes_one_listener_for_an_address_bound_twice() {
    let t = ok(&format!(
        "{TIMEOUTS}  mode tcp\nfrontend a\n  bind 10.0.0.10:5432\n  default_backend db\nfrontend b\n  bind 10.0.0.10:5432\n  default_backend db\nbackend db\n  server s 10.0.0.1:5432\n"
    ));
    assert_eq!(listener(&t, "a")[1], "listen = \"10.0.0.10:5432\"");
    assert!(says(
        &t,
        "b.bind",
        "\"10.0.0.10:5432\" is bound by the listener made from line 7 already"
    ));
    assert_eq!(t.left_out, 1);
    passes_strata_check(&t);
}

/// HAProxy's `busy-polling` never sleeps, Strata's `busy_poll` polls for a window and needs one
/// worker: not written, but the note names the setting.
#[test]
fn import_haproxy_points_busy_polling_at_busy_poll() {
    let t = ok(&format!("global\n  busy-polling\n{}", http("")));
    assert!(
        !config(&t).iter().any(|l| l.starts_with("busy_poll")),
        "{}",
        t.toml
    );
    assert!(
        says(&t, "global.busy-polling", "`busy_poll = \"50us\"`"),
        "{:?}",
        notes(&t)
    );
}
