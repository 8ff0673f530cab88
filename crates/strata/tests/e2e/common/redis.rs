//! Real redis-server and nutcracker (twemproxy) processes on free ports, and a small RESP
//! client that speaks raw bytes and reads replies with the proxy's own reply scanner.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use strata_cache::resp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{free_port, write_file, TempDir};

fn program(names: &[&str], package: &str) -> String {
    names
        .iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("{package} is not installed: run ./scripts/test.sh, which installs it")
        })
        .to_string()
}

/// Waits until something accepts connections at `addr` and answers PING; false when `child`
/// exits first (another process took its port).
async fn wait_ping(addr: SocketAddr, what: &str, log: &Path, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if let Ok(mut c) = Resp::connect(addr).await {
            if let Ok(r) = c.try_cmd(&[b"PING"]).await {
                // one that asks for a password is up too
                if &r[..] == b"+PONG\r\n" || r.starts_with(b"-NOAUTH") {
                    return true;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A real redis-server with no persistence, killed (SIGKILL) when dropped.
pub struct Redis {
    pub addr: SocketAddr,
    pub child: Child,
    pub dir: TempDir,
}

impl Redis {
    pub async fn start() -> Redis {
        Self::start_with(&[]).await
    }

    /// Starts one with extra `--option value` arguments.
    pub async fn start_with(extra: &[&str]) -> Redis {
        Self::on_a_free_port("redis-server", || Self::launch(free_port(), extra)).await
    }

    /// The first of up to five servers `launch` starts that listens on its own port: a port
    /// free a moment ago can be taken by another test's server before this one binds it, and
    /// then this one exits while the server answering there is someone else's.
    async fn on_a_free_port<F: std::future::Future<Output = Redis>>(
        what: &str,
        mut launch: impl FnMut() -> F,
    ) -> Redis {
        for _ in 0..5 {
            let mut redis = launch().await;
            if listens_on(&mut redis.child, &[redis.addr.port()]) {
                return redis;
            }
            redis.kill();
        }
        panic!("no free port for {what} after 5 tries");
    }

    /// Starts one on `port` (again, after one there was killed).
    pub async fn start_at(port: u16, extra: &[&str]) -> Redis {
        let mut redis = Self::launch(port, extra).await;
        assert!(
            listens_on(&mut redis.child, &[port]),
            "redis-server did not start on {port}: {}",
            std::fs::read_to_string(redis.dir.path().join("redis.log")).unwrap_or_default()
        );
        redis
    }

    /// Spawns one on `port` and waits until something answers there.
    async fn launch(port: u16, extra: &[&str]) -> Redis {
        let bin = program(&["/usr/bin/redis-server"], "redis-server");
        let dir = TempDir::new();
        let log = dir.path().join("redis.log");
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--dir", &dir.path().display().to_string()])
            .args(["--logfile", &log.display().to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut redis = Redis { addr, child, dir };
        // one that exited is found out by `listens_on`
        wait_ping(addr, "redis-server", &log, &mut redis.child).await;
        redis
    }

    /// A Sentinel (redis-server --sentinel) watching `master` as `name`, quorum 1, that
    /// finds it down after 500 ms.
    pub async fn start_sentinel(master: SocketAddr, name: &str) -> Redis {
        Redis::start_sentinel_with(master, name, "").await
    }

    /// [`Redis::start_sentinel`] with `extra` lines in its config.
    pub async fn start_sentinel_with(master: SocketAddr, name: &str, extra: &str) -> Redis {
        Self::on_a_free_port("redis sentinel", || {
            Self::launch_sentinel(master, name, extra)
        })
        .await
    }

    async fn launch_sentinel(master: SocketAddr, name: &str, extra: &str) -> Redis {
        let bin = program(&["/usr/bin/redis-server"], "redis-server");
        let dir = TempDir::new();
        let port = free_port();
        let log = dir.path().join("sentinel.log");
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
             sentinel monitor {name} {} {} 1\n\
             sentinel down-after-milliseconds {name} 500\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 1\n{extra}\n",
            dir.path().display(),
            log.display(),
            master.ip(),
            master.port()
        );
        let path = write_file(dir.path(), "sentinel.conf", &conf);
        let child = Command::new(bin)
            .arg(&path)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut sentinel = Redis { addr, child, dir };
        // one that exited is found out by `listens_on`
        wait_ping(addr, "redis sentinel", &log, &mut sentinel.child).await;
        sentinel
    }

    pub async fn client(&self) -> Resp {
        Resp::connect(self.addr).await.expect("connect to redis")
    }

    /// A cluster node's id (`CLUSTER MYID`).
    pub async fn node_id(&self) -> String {
        let reply = self.client().await.cmd(&[b"CLUSTER", b"MYID"]).await;
        let text = String::from_utf8_lossy(&reply).into_owned();
        text.lines().nth(1).expect("a bulk reply").to_string()
    }

    /// Every key this server holds.
    pub async fn keys(&self) -> Vec<Vec<u8>> {
        let reply = self.client().await.cmd(&[b"KEYS", b"*"]).await;
        let mut values = resp::Values::new(&reply);
        let Some(resp::Value::Array(Some(n))) = values.next() else {
            panic!("KEYS answered {reply:?}");
        };
        (0..n)
            .map(|_| match values.next() {
                Some(resp::Value::Bulk(Some(k))) => k.to_vec(),
                other => panic!("KEYS element {other:?}"),
            })
            .collect()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real nutcracker (Debian's twemproxy) with the pools of `yaml`; killed when dropped.
pub struct Nutcracker {
    pub child: Child,
    pub dir: TempDir,
    /// Where its pools listen: the `listens` it was started with, or free ports put in their
    /// place when another process took one of those first.
    pub listens: Vec<SocketAddr>,
}

impl Nutcracker {
    /// Starts it and waits until each of `listens` (addresses written in `yaml`) answers PING.
    /// A port free a moment ago can be taken by another test's server before nutcracker binds
    /// it: then nutcracker exits and someone else answers there, so each listen is checked to
    /// be nutcracker's own socket, and on a clash it starts again on other free ports.
    pub async fn start(yaml: &str, listens: &[SocketAddr]) -> Nutcracker {
        let mut yaml = yaml.to_string();
        let mut listens = listens.to_vec();
        let mut log = String::new();
        for _ in 0..5 {
            let mut nutcracker = Self::start_once(&yaml, listens.clone()).await;
            if nutcracker.owns_its_listens() {
                return nutcracker;
            }
            let _ = nutcracker.child.kill();
            let _ = nutcracker.child.wait();
            log = std::fs::read_to_string(nutcracker.dir.path().join("nutcracker.log"))
                .unwrap_or_default();
            // through placeholders: a new port may be another listen's old one
            let ports = super::free_ports(listens.len());
            for (i, addr) in listens.iter().enumerate() {
                yaml = yaml.replace(&addr.to_string(), &format!("@listen{i}@"));
            }
            for (i, (addr, port)) in listens.iter_mut().zip(ports).enumerate() {
                *addr = SocketAddr::new(addr.ip(), port);
                yaml = yaml.replace(&format!("@listen{i}@"), &addr.to_string());
            }
        }
        panic!("nutcracker did not start on free ports in 5 tries; its last log:\n{log}");
    }

    async fn start_once(yaml: &str, listens: Vec<SocketAddr>) -> Nutcracker {
        let bin = program(
            &["/usr/sbin/nutcracker", "/usr/bin/nutcracker"],
            "nutcracker",
        );
        let dir = TempDir::new();
        let conf = write_file(dir.path(), "nutcracker.yml", yaml);
        let log = dir.path().join("nutcracker.log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .args(["-s", &free_port().to_string(), "-a", "127.0.0.1"])
            .arg("-o")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nutcracker");
        let mut nutcracker = Nutcracker {
            child,
            dir,
            listens,
        };
        for addr in nutcracker.listens.clone() {
            // one that exits (a port taken) is found out by `owns_its_listens`
            if !wait_ping(addr, "nutcracker", &log, &mut nutcracker.child).await {
                break;
            }
        }
        nutcracker
    }

    /// Whether the process is running and listens on every one of its ports.
    fn owns_its_listens(&mut self) -> bool {
        let ports: Vec<u16> = self.listens.iter().map(|a| a.port()).collect();
        listens_on(&mut self.child, &ports)
    }
}

/// Whether `child` is running and every listening TCP socket on `ports` is its own (not
/// another test's server that took a port free a moment ago).
fn listens_on(child: &mut Child, ports: &[u16]) -> bool {
    if !matches!(child.try_wait(), Ok(None)) {
        return false;
    }
    let fds = format!("/proc/{}/fd", child.id());
    let sockets: Vec<String> = std::fs::read_dir(&fds)
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|l| l.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    ports.iter().all(|port| {
        let port = format!(":{port:04X}");
        let mut listening = table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 9 && f[1].ends_with(&port) && f[3] == "0A")
            .peekable();
        listening.peek().is_some()
            && listening.all(|f| sockets.contains(&format!("socket:[{}]", f[9])))
    })
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A RESP connection: commands out as multibulks, replies in whole.
pub struct Resp {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Resp {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Resp> {
        Ok(Resp::from_stream(TcpStream::connect(addr).await?))
    }

    /// A connection made elsewhere (with a small receive buffer, say).
    pub fn from_stream(stream: TcpStream) -> Resp {
        Resp {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Sends one command and returns its reply's bytes.
    pub async fn cmd(&mut self, args: &[&[u8]]) -> Bytes {
        self.try_cmd(args).await.expect("redis command")
    }

    pub async fn try_cmd(&mut self, args: &[&[u8]]) -> std::io::Result<Bytes> {
        let mut out = BytesMut::new();
        resp::encode_command(&mut out, args.iter().copied());
        self.stream.write_all(&out).await?;
        self.reply().await
    }

    /// Sends every command at once and reads their replies in order.
    pub async fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Vec<Bytes> {
        let mut out = BytesMut::new();
        for c in commands {
            resp::encode_command(&mut out, c.iter().map(|a| a.as_slice()));
        }
        self.stream.write_all(&out).await.expect("write pipeline");
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.reply().await.expect("pipeline reply"));
        }
        replies
    }

    /// [`Resp::pipeline`], each reply as text.
    pub async fn pipeline_text(&mut self, commands: &[Vec<Vec<u8>>]) -> Vec<String> {
        let replies = self.pipeline(commands).await;
        replies.iter().map(|r| text(r)).collect()
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads the next whole reply.
    pub async fn reply(&mut self) -> std::io::Result<Bytes> {
        loop {
            if let Ok(Some(n)) = resp::reply_len(&self.buf) {
                return Ok(self.buf.split_to(n).freeze());
            }
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await
                    .map_err(|_| std::io::Error::other("no reply within 10s"))??;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// A raw-socket Redis stand-in that records every byte it receives, per connection, and
/// answers each command it frames: `GET k` with `k` as a bulk (so each client can tell its
/// answer), anything else with `+OK`. Its framer is the test's own, strict and written apart
/// from the proxy's codec: the witness of what the proxy really sends a server.
pub struct RespRecorder {
    pub addr: SocketAddr,
    conns: Conns,
    task: tokio::task::AbortHandle,
}

/// The bytes of each connection a recorder accepted, in order.
type Conns = std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>>>;

impl Drop for RespRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Frames one multibulk command off the front of `buf`: its arguments and length; `None`
/// while incomplete; panics on anything that is not a well-formed multibulk (a proxy must
/// never send one).
pub fn frame_multibulk(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    if buf.is_empty() {
        return None;
    }
    assert_eq!(
        buf[0],
        b'*',
        "not a multibulk: {:?}",
        String::from_utf8_lossy(buf)
    );
    let (n, mut at) = line(buf, 1)?;
    let n: usize = std::str::from_utf8(n).unwrap().parse().expect("count");
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        if at >= buf.len() {
            return None;
        }
        assert_eq!(
            buf[at],
            b'$',
            "not a bulk at {at}: {:?}",
            String::from_utf8_lossy(buf)
        );
        let (len, data) = line(buf, at + 1)?;
        let len: usize = std::str::from_utf8(len)
            .unwrap()
            .parse()
            .expect("bulk length");
        if buf.len() < data + len + 2 {
            return None;
        }
        assert_eq!(
            &buf[data + len..data + len + 2],
            b"\r\n",
            "bulk not ended by CRLF"
        );
        args.push(buf[data..data + len].to_vec());
        at = data + len + 2;
    }
    Some((args, at))
}

impl RespRecorder {
    pub async fn start() -> RespRecorder {
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let conns: Conns = Arc::default();
        let c = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let log: Arc<Mutex<Vec<u8>>> = Arc::default();
                c.lock().unwrap().push(log.clone());
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut chunk = [0u8; 65536];
                    loop {
                        let n = match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        log.lock().unwrap().extend_from_slice(&chunk[..n]);
                        pending.extend_from_slice(&chunk[..n]);
                        let mut out = Vec::new();
                        while let Some((args, used)) = frame_multibulk(&pending) {
                            pending.drain(..used);
                            if args[0].eq_ignore_ascii_case(b"GET") && args.len() == 2 {
                                out.extend_from_slice(format!("${}\r\n", args[1].len()).as_bytes());
                                out.extend_from_slice(&args[1]);
                                out.extend_from_slice(b"\r\n");
                            } else {
                                out.extend_from_slice(b"+OK\r\n");
                            }
                        }
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        })
        .abort_handle();
        RespRecorder { addr, conns, task }
    }

    /// Every command received so far, over all connections, each connection's in order.
    pub fn commands(&self) -> Vec<Vec<Vec<u8>>> {
        let mut all = Vec::new();
        for log in self.conns.lock().unwrap().iter() {
            let bytes = log.lock().unwrap().clone();
            let mut at = 0;
            while let Some((args, used)) = frame_multibulk(&bytes[at..]) {
                all.push(args);
                at += used;
            }
            assert_eq!(
                at,
                bytes.len(),
                "a partial command was left at the end of a connection"
            );
        }
        all
    }
}

/// A real memcached on a free port, killed when dropped.
pub struct Memcached {
    pub addr: SocketAddr,
    pub child: Child,
}

impl Memcached {
    pub async fn start() -> Memcached {
        let bin = program(&["/usr/bin/memcached"], "memcached");
        let port = free_port();
        let child = Command::new(bin)
            .args([
                "-p",
                &port.to_string(),
                "-l",
                "127.0.0.1",
                "-U",
                "0",
                "-m",
                "64",
            ])
            .args(["-u", "root"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn memcached");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(addr).await {
                if s.write_all(b"version\r\n").await.is_ok() {
                    let mut b = [0u8; 64];
                    if matches!(s.read(&mut b).await, Ok(n) if b[..n].starts_with(b"VERSION")) {
                        break;
                    }
                }
            }
            assert!(Instant::now() < deadline, "memcached did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Memcached { addr, child }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reply as text, for assertions and messages.
pub fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// Writes `request` and reads until `want` bytes came or the peer goes quiet.
pub async fn text_exchange(stream: &mut TcpStream, request: &[u8], until: &[u8]) -> String {
    stream.write_all(request).await.expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    while !got.ends_with(until) {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A raw-socket memcached stand-in that records every byte it receives and answers each
/// command it frames (`STORED` for storage commands, `END` for gets, `DELETED` otherwise). Its
/// framer is the test's own, strict: a storage command's data block must be exactly as long as
/// its line says and end in CRLF, or the test fails.
pub struct McRecorder {
    pub addr: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::AbortHandle,
}

impl Drop for McRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One memcached text command as framed: its line's words, its data block if any.
pub type McFramed = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// Frames one memcached text command: the command and the bytes it used.
pub fn frame_memcache(buf: &[u8]) -> Option<(McFramed, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = &buf[..end];
    assert!(
        line.iter().all(|&b| b >= b' ' && b != 0x7f),
        "a control character in a command line: {:?}",
        String::from_utf8_lossy(line)
    );
    let words: Vec<Vec<u8>> = line
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_vec())
        .collect();
    let storage = [
        &b"set"[..],
        b"add",
        b"replace",
        b"append",
        b"prepend",
        b"cas",
    ];
    if storage.contains(&words[0].as_slice()) {
        let len: usize = std::str::from_utf8(&words[4])
            .unwrap()
            .parse()
            .expect("a data length");
        let data = end + 2;
        if buf.len() < data + len + 2 {
            return None;
        }
        assert_eq!(
            &buf[data + len..data + len + 2],
            b"\r\n",
            "a data block not ended by CRLF"
        );
        return Some((
            (words, Some(buf[data..data + len].to_vec())),
            data + len + 2,
        ));
    }
    Some(((words, None), end + 2))
}

impl McRecorder {
    pub async fn start() -> McRecorder {
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<u8>>> = Arc::default();
        let l = log.clone();
        let task = tokio::spawn(async move {
            // one connection (the pool's one server connection) is all a test needs
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut pending = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                l.lock().unwrap().extend_from_slice(&chunk[..n]);
                pending.extend_from_slice(&chunk[..n]);
                let mut out = Vec::new();
                while let Some(((words, data), used)) = frame_memcache(&pending) {
                    pending.drain(..used);
                    out.extend_from_slice(match (words[0].as_slice(), data) {
                        (_, Some(_)) => b"STORED\r\n".as_slice(),
                        (b"get" | b"gets", None) => b"END\r\n",
                        _ => b"DELETED\r\n",
                    });
                }
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        })
        .abort_handle();
        McRecorder { addr, log, task }
    }

    /// Every command received so far: line words and data block.
    pub fn commands(&self) -> Vec<McFramed> {
        let bytes = self.log.lock().unwrap().clone();
        let mut all = Vec::new();
        let mut at = 0;
        while let Some(((words, data), used)) = frame_memcache(&bytes[at..]) {
            all.push((words, data));
            at += used;
        }
        assert_eq!(
            at,
            bytes.len(),
            "a partial command was left at the end of the connection"
        );
        all
    }
}

/// A real Redis Cluster on loopback, its slots spread by `redis-cli --cluster create`; killed
/// when dropped.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    /// `n` masters, no replicas.
    pub async fn start(n: usize) -> RedisCluster {
        RedisCluster::start_with_replicas(n, 0).await
    }

    /// `masters` masters with `replicas` replicas each, every replica in sync before this
    /// returns.
    pub async fn start_with_replicas(masters: usize, replicas: usize) -> RedisCluster {
        let n = masters * (1 + replicas);
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(
                // a replica's first sync starts at once, not after the default 5 s wait
                Redis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    "--repl-diskless-sync-delay",
                    "0",
                ])
                .await,
            );
        }
        let addrs: Vec<String> = nodes.iter().map(|r| r.addr.to_string()).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli is not installed: run ./scripts/test.sh, which installs it");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // every node sees the cluster up, and every replica has its master's data
            let mut ok = 0;
            let mut synced = 0;
            for node in &cluster.nodes {
                let info = node.client().await.cmd(&[b"CLUSTER", b"INFO"]).await;
                ok += usize::from(String::from_utf8_lossy(&info).contains("cluster_state:ok"));
                let role = String::from_utf8_lossy(&node.client().await.cmd(&[b"ROLE"]).await)
                    .into_owned();
                synced += usize::from(role.contains("slave") && role.contains("connected"));
            }
            // and the first node's slot map names every node (gossip has caught up)
            let slots = cluster.nodes[0]
                .client()
                .await
                .cmd(&[b"CLUSTER", b"SLOTS"])
                .await;
            let slots = String::from_utf8_lossy(&slots).into_owned();
            let named = cluster
                .nodes
                .iter()
                .all(|r| slots.contains(&format!(":{}\r\n", r.addr.port())));
            if ok == n && synced == masters * replicas && named {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster
    }

    /// Gives an empty `slot` to node `to` at once (`CLUSTER SETSLOT .. NODE` on every node,
    /// the new owner first), so a client's map of the cluster is out of date.
    pub async fn give_slot(&self, slot: u16, to: usize) {
        let id = self.nodes[to].node_id().await;
        let order = std::iter::once(to).chain((0..self.nodes.len()).filter(|&i| i != to));
        for i in order {
            let reply = self.nodes[i]
                .client()
                .await
                .cmd(&[
                    b"CLUSTER",
                    b"SETSLOT",
                    slot.to_string().as_bytes(),
                    b"NODE",
                    id.as_bytes(),
                ])
                .await;
            assert_eq!(text(&reply), "+OK\r\n", "SETSLOT {slot} on node {i}");
        }
    }

    /// Moves `slots` slots, with their keys, from the first node to the second.
    pub fn reshard(&self, slots: usize) {
        let id = |r: &Redis| {
            let out = Command::new("redis-cli")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &r.addr.port().to_string(),
                    "CLUSTER",
                    "MYID",
                ])
                .output()
                .expect("redis-cli");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &self.nodes[0].addr.to_string()])
            .args([
                "--cluster-from",
                &id(&self.nodes[0]),
                "--cluster-to",
                &id(&self.nodes[1]),
            ])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "reshard: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

impl RedisCluster {
    /// The nodes that are replicas now (`ROLE` says so).
    pub async fn replicas(&self) -> Vec<&Redis> {
        let mut out = Vec::new();
        for node in &self.nodes {
            let role = node.client().await.cmd(&[b"ROLE"]).await;
            if String::from_utf8_lossy(&role).contains("slave") {
                out.push(node);
            }
        }
        out
    }

    /// How many times each node ran `command` (INFO commandstats), in node order.
    pub async fn calls(&self, command: &str) -> Vec<u64> {
        let mut out = Vec::new();
        for node in &self.nodes {
            let info = node.client().await.cmd(&[b"INFO", b"commandstats"]).await;
            let text = String::from_utf8_lossy(&info).into_owned();
            let calls = text
                .lines()
                .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            out.push(calls);
        }
        out
    }
}
