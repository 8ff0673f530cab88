use super::*;
use crate::parse;

/// A directory of its own for token files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("strata-config-admin-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }

    fn problems(&self, src: &str) -> Vec<String> {
        match parse(src, "test.toml", &self.0) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const TOKEN: &str = "0123456789abcdef0123";

#[test]
fn defaults_are_loopback_without_a_token() {
    let c = parse("[admin]\n", "t.toml", Path::new(".")).expect("valid");
    let a = c.admin.expect("admin");
    assert_eq!(a.listen, SocketAddr::from(([127, 0, 0, 1], 9900)));
    assert_eq!(a.token, None);
    assert_eq!(a.max_connections, 64);
    assert_eq!(a.header_timeout, Duration::from_secs(10));
    assert_eq!(a.idle_timeout, Duration::from_secs(60));
}

#[test]
fn the_token_file_is_read_relative_to_the_config_and_trimmed() {
    let dir = Dir::new("read");
    dir.write("token", &format!("\n  {TOKEN}  \n"));
    let src = "[admin]\nlisten = \"0.0.0.0:9900\"\ntoken_file = \"token\"\nmax_connections = 2\n\
               header_timeout = \"300ms\"\nidle_timeout = \"5s\"\n";
    let c = parse(src, "t.toml", &dir.0).expect("valid");
    let a = c.admin.expect("admin");
    let token = a.token.as_ref().expect("token");
    assert_eq!(token.secret(), TOKEN);
    assert_eq!(token.file, dir.0.join("token"));
    assert!(!format!("{a:?}").contains(TOKEN), "Debug shows the token");
    assert_eq!(a.max_connections, 2);
    assert_eq!(a.header_timeout, Duration::from_millis(300));
    assert_eq!(a.idle_timeout, Duration::from_secs(5));
}

#[test]
fn a_token_file_that_cannot_serve_names_the_key_and_line() {
    let dir = Dir::new("bad");
    dir.write("empty", " \n\t\n");
    dir.write("short", "abc\n");
    dir.write("two-words", "0123456789 abcdef0123\n");
    let cases = [
        ("missing", "cannot read"),
        ("empty", "is empty"),
        ("short", "is shorter than 16 characters"),
        ("two-words", "must be one line of visible ASCII characters"),
    ];
    for (file, why) in cases {
        let p = dir.problems(&format!("[admin]\ntoken_file = \"{file}\"\n"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("test.toml:2:14: `admin.token_file`: ") && p[0].contains(why),
            "{p:#?}"
        );
        assert!(
            p[0].contains(&dir.0.join(file).display().to_string()),
            "{p:#?}"
        );
    }
}

#[test]
fn a_reachable_listener_without_a_token_is_refused() {
    let dir = Dir::new("reach");
    for listen in ["0.0.0.0:9900", "10.0.0.5:9900", "[::]:9900"] {
        let p = dir.problems(&format!("workers = 1\n[admin]\nlisten = \"{listen}\"\n"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("test.toml:3:10: `admin.listen`: "),
            "{p:#?}"
        );
        assert!(
            p[0].ends_with("(hint: add token_file, or listen on 127.0.0.1)"),
            "{p:#?}"
        );
    }
    for listen in [
        "127.0.0.1:0",
        "127.0.0.2:9900",
        "[::1]:9900",
        "localhost:9900",
    ] {
        let p = dir.problems(&format!("[admin]\nlisten = \"{listen}\"\n"));
        assert!(p.is_empty(), "{listen}: {p:#?}");
    }
    dir.write("token", TOKEN);
    assert!(dir
        .problems("[admin]\nlisten = \"0.0.0.0:9900\"\ntoken_file = \"token\"\n")
        .is_empty());
}

#[test]
fn limits_are_checked() {
    let dir = Dir::new("limits");
    let p = dir.problems(
        "[admin]\nmax_connections = 0\nheader_timeout = \"0s\"\nidle_timeout = 5\ntokenfile = \"x\"\n",
    );
    let expect = [
        "test.toml:2:19: `admin.max_connections`: 0 is out of range (1 to 10000)",
        "test.toml:3:18: `admin.header_timeout`: must be more than zero",
        "test.toml:4:16: `admin.idle_timeout`: a bare number (5) has no unit",
        "test.toml:5:1: `admin.tokenfile`: unknown key (hint: did you mean `token_file`?)",
    ];
    assert_eq!(p.len(), expect.len(), "{p:#?}");
    for (got, want) in p.iter().zip(expect) {
        assert!(got.starts_with(want), "{got:?} is not {want:?}");
    }
}
