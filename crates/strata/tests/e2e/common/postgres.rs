//! A real PostgreSQL from Debian's packages, made in a temp dir by initdb (as the `postgres`
//! system user: it refuses to run as root) and started on a free port; stopped when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{free_port, TempDir};

/// The superuser's password in every test cluster.
pub const SUPERUSER_PASSWORD: &str = "pg-test-super";

/// The directory of PostgreSQL's programs (the newest installed).
pub fn bin(program: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian's postgresql package)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(program)
}

fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("the postgres system user (from Debian's postgresql package)");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// A running cluster.
pub struct Postgres {
    pub addr: SocketAddr,
    child: Child,
    pub dir: TempDir,
}

impl Postgres {
    /// initdb (SCRAM for every login) and start.
    pub fn start() -> Postgres {
        let dir = TempDir::new();
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, SUPERUSER_PASSWORD).unwrap();
        std::os::unix::fs::chown(&pw, Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        let out = Command::new(bin("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pw.display()))
            .uid(uid)
            .gid(gid)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Postgres::run(dir, data)
    }

    /// Starts the server of `data` on a free port and waits until it answers.
    fn run(dir: TempDir, data: PathBuf) -> Postgres {
        let (uid, gid) = postgres_ids();
        let port = free_port();
        let child = Command::new(bin("postgres"))
            .args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
            .args([
                "-k",
                dir.path().to_str().unwrap(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            // dynamic shared memory in the data directory, which goes with it, not in /dev/shm
            .args(["-c", "dynamic_shared_memory_type=mmap"])
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let pg = Postgres {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        pg
    }

    /// Stops the server at once (SIGKILL), as a crash would; the shared memory segment it
    /// leaves behind is removed (as its next start on the same data would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_segments_of(self.child.id());
    }

    /// A streaming replica of this server (pg_basebackup -R), started on a free port.
    pub fn replica(&self) -> Postgres {
        let dir = TempDir::new();
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        let out = Command::new(bin("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.addr.port().to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .uid(uid)
            .gid(gid)
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Postgres::run(dir, data)
    }

    /// Runs `sql` as the superuser, straight to the server.
    pub fn admin(&self, sql: &str) -> String {
        psql(self.addr, "postgres", SUPERUSER_PASSWORD, "postgres", sql).expect("admin SQL")
    }

    /// A login role with a password, and a database it owns of the same name.
    pub fn user_and_database(&self, name: &str, password: &str) {
        self.admin(&format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"));
        self.admin(&format!("CREATE DATABASE {name} OWNER {name}"));
    }

    /// Turns TLS on with the certificate `cert` and its key `key` (PEM files), and refuses
    /// every connection over TCP in clear (pg_hba.conf: `hostssl` only, as cloud databases
    /// are set up); returns once the running server does both.
    pub fn tls_only(&self, cert: &std::path::Path, key: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        let (uid, gid) = postgres_ids();
        let data = self.dir.path().join("data");
        for (from, name, mode) in [(cert, "server.crt", 0o644), (key, "server.key", 0o600)] {
            let to = data.join(name);
            std::fs::copy(from, &to).unwrap();
            std::os::unix::fs::chown(&to, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        self.admin("ALTER SYSTEM SET ssl = on");
        self.admin("SELECT pg_reload_conf()");
        let login = |mode: &str| {
            psql_command(self.addr, "postgres", SUPERUSER_PASSWORD, "postgres")
                .env("PGSSLMODE", mode)
                .args(["-c", "select 1"])
                .output()
                .expect("run psql")
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let clear = login("disable");
            let refused = String::from_utf8_lossy(&clear.stderr).contains("no encryption");
            if refused && login("require").status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "postgres did not take TLS only");
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    #[allow(unsafe_code)] // kill(2) through libc
    fn drop(&mut self) {
        // SIGQUIT, PostgreSQL's immediate shutdown: nothing to keep, and unlike SIGKILL the
        // postmaster still removes its shared memory segment (killed ones are left behind,
        // and the kernel's 4096 run out after enough test runs on one machine)
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_segments_of(self.child.id());
    }
}

/// Removes the SysV shared memory segments process `pid` made (`ipcs -m -p`: shmid, owner,
/// creator pid, last pid), once it is gone.
fn remove_segments_of(pid: u32) {
    let Ok(out) = Command::new("ipcs").args(["-m", "-p"]).output() else {
        return;
    };
    let pid = pid.to_string();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 3 && fields[2] == pid {
            let _ = Command::new("ipcrm").args(["-m", fields[0]]).status();
        }
    }
}

/// `psql -At -c SQL` against `addr`: its output, or its error text.
pub fn psql(
    addr: SocketAddr,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    let out = psql_command(addr, user, password, db)
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `program` (psql, pgbench) pointed at `addr` as `user` with `password`.
fn client(program: &str, addr: SocketAddr, user: &str, password: &str) -> Command {
    let mut c = Command::new(bin(program));
    c.args(["-h", &addr.ip().to_string()])
        .args(["-p", &addr.port().to_string()])
        .args(["-U", user])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5");
    c
}

/// A psql command line for `addr`, quiet and unaligned.
pub fn psql_command(addr: SocketAddr, user: &str, password: &str, db: &str) -> Command {
    let mut c = client("psql", addr, user, password);
    c.args(["-d", db, "-X", "-At", "-q"]).stdin(Stdio::null());
    c
}

/// One psql kept open: statements in, one line of answer out each.
pub struct PsqlSession {
    pub child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl PsqlSession {
    pub fn open(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: &str,
        env: &[(&str, &str)],
    ) -> PsqlSession {
        let mut c = psql_command(addr, user, password, db);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        PsqlSession {
            child,
            stdin,
            lines,
        }
    }

    /// Sends `sql` (one statement) and waits for its one line of output.
    pub fn line(&mut self, sql: &str) -> String {
        writeln!(self.stdin, "{sql};").unwrap();
        self.stdin.flush().unwrap();
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no answer to {sql}"))
    }

    /// Sends `sql` without waiting for output (a statement that prints nothing).
    pub fn send(&mut self, sql: &str) {
        writeln!(self.stdin, "{sql};").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for PsqlSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs pgbench with `args` against `addr`: its output.
pub fn pgbench(addr: SocketAddr, user: &str, password: &str, db: &str, args: &[&str]) -> String {
    let out = client("pgbench", addr, user, password)
        .args(args)
        .arg(db)
        .output()
        .expect("run pgbench");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until the first `[[database]]` listener of `strata` knows `replica`'s lag: from then
/// on the replica may take reads.
pub async fn replica_known(strata: &super::Strata, replica: &str) {
    super::eventually(
        Duration::from_secs(10),
        "the replica's lag is known",
        || async {
            let body = super::admin_get(strata, "/status").await.body;
            let s: serde_json::Value = serde_json::from_str(&body).unwrap();
            s["database"][0]["servers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["address"] == replica && x["lag_bytes"].is_u64())
        },
    )
    .await;
}

// Raw PostgreSQL protocol, for clients that send exactly the bytes a test wants.

/// How long an answer or a close may take.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A StartupMessage of protocol 3.0 with `pairs`, written out by hand.
pub fn startup(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut contents = vec![0, 3, 0, 0];
    for (name, value) in pairs {
        for s in [name, value] {
            contents.extend_from_slice(s.as_bytes());
            contents.push(0);
        }
    }
    contents.push(0);
    let mut packet = ((contents.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&contents);
    packet
}

/// A tagged message.
pub fn message(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((contents.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(contents);
    m
}

/// Reads everything until the peer closes; fails if it does not within LIMIT.
pub async fn until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut out))
        .await
        .unwrap_or_else(|_| panic!("not closed; read so far: {}", out.escape_ascii()))
        .expect("read");
    out
}

/// Reads whole tagged messages until a ReadyForQuery (included).
pub async fn until_ready(stream: &mut (impl AsyncRead + Unpin)) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let mut head = [0u8; 5];
        tokio::time::timeout(LIMIT, stream.read_exact(&mut head))
            .await
            .expect("a message in time")
            .unwrap_or_else(|e| panic!("read a header after {out:?}: {e}"));
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut contents = vec![0u8; len - 4];
        tokio::time::timeout(LIMIT, stream.read_exact(&mut contents))
            .await
            .expect("a message in time")
            .expect("read contents");
        out.push((head[0], contents));
        if head[0] == b'Z' {
            return out;
        }
    }
}

/// Logs in as app (trust) with `extra` parameters; the welcome as it came.
pub async fn log_in(addr: SocketAddr, extra: &[(&str, &str)]) -> (TcpStream, Vec<(u8, Vec<u8>)>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut pairs = vec![("user", "app"), ("database", "app")];
    pairs.extend_from_slice(extra);
    s.write_all(&startup(&pairs)).await.unwrap();
    let welcome = until_ready(&mut s).await;
    (s, welcome)
}

/// Sends a simple Query and reads its answer to the ReadyForQuery.
pub async fn query(s: &mut (impl AsyncRead + AsyncWrite + Unpin), sql: &str) -> Vec<(u8, Vec<u8>)> {
    let mut text = sql.as_bytes().to_vec();
    text.push(0);
    s.write_all(&message(b'Q', &text)).await.unwrap();
    until_ready(s).await
}

/// An ErrorResponse with `severity` (ERROR, FATAL), SQLSTATE `code` and `text`, its fields in
/// the order Strata writes them.
pub fn error_response(severity: &str, code: &str, text: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        fields.push(field);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    message(b'E', &fields)
}

/// An extended-protocol batch on the unnamed statement: Parse of `sql`, Bind with `params` (the
/// Bind body after its two names: format codes, values, result formats), Execute, and a Sync
/// when `sync`.
pub fn unnamed_batch(sql: &str, params: &[u8], sync: bool) -> Vec<u8> {
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(params);
    let mut out = [
        message(b'P', format!("\0{sql}\0\0\0").as_bytes()),
        message(b'B', &bind),
        message(b'E', b"\0\0\0\0\0"),
    ]
    .concat();
    if sync {
        out.extend(message(b'S', b""));
    }
    out
}

/// The Bind parameters of a statement that takes none.
pub const NO_PARAMETERS: &[u8] = b"\0\0\0\0\0\0";

/// A tagged message, whole.
pub async fn read_message(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut m = head.to_vec();
    m.resize(1 + len.max(4), 0);
    s.read_exact(&mut m[5..]).await.ok()?;
    Some(m)
}
