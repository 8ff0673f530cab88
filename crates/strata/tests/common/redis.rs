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

/// Waits until something accepts connections at `addr` and answers PING.
async fn wait_ping(addr: SocketAddr, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = Resp::connect(addr).await {
            if let Ok(r) = c.try_cmd(&[b"PING"]).await {
                if &r[..] == b"+PONG\r\n" {
                    return;
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
        let bin = program(&["/usr/bin/redis-server"], "redis-server");
        let dir = TempDir::new();
        let port = free_port();
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
        wait_ping(addr, "redis-server", &log).await;
        Redis { addr, child, dir }
    }

    pub async fn client(&self) -> Resp {
        Resp::connect(self.addr).await.expect("connect to redis")
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
}

impl Nutcracker {
    /// Starts it and waits until each of `listens` answers PING.
    pub async fn start(yaml: &str, listens: &[SocketAddr]) -> Nutcracker {
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
        let nutcracker = Nutcracker { child, dir };
        for addr in listens {
            wait_ping(*addr, "nutcracker", &log).await;
        }
        nutcracker
    }
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
        Ok(Resp {
            stream: TcpStream::connect(addr).await?,
            buf: BytesMut::new(),
        })
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
