//! Test harness: the real `strata` binary as a subprocess, small HTTP backends on port 0, and
//! clients that speak raw bytes, HTTP/1.1 and HTTP/2.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub mod etcd;
pub mod netns;
pub mod postgres;
pub mod recorder;
pub mod redis;

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// A directory of its own under the system temp dir, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("strata-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `strata run -c FILE`, killed when dropped.
pub struct Strata {
    pub child: Child,
    pub dir: TempDir,
    pub config: PathBuf,
    /// "http:web" -> bound address, from the "listening on" lines.
    pub addrs: HashMap<String, SocketAddr>,
    pub stderr: Arc<Mutex<String>>,
    stdout_lines: Arc<Mutex<Vec<String>>>,
}

impl Strata {
    /// Starts strata with `config` and waits until every listener it names says where it is.
    pub fn start(config: &str) -> Strata {
        let dir = TempDir::new();
        Self::start_in(dir, config)
    }

    pub fn start_in(dir: TempDir, config: &str) -> Strata {
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, config).expect("write config");
        let expected = listeners_in(config);
        let args = [
            "run".to_string(),
            "-c".to_string(),
            path.display().to_string(),
        ];
        Self::spawn(dir, path, &args, expected)
    }

    /// Runs `strata ARGS` and waits for `expected` "listening on" lines.
    pub fn spawn(dir: TempDir, path: PathBuf, args: &[String], expected: usize) -> Strata {
        let mut command = Command::new(STRATA);
        command.args(args);
        Self::spawn_command(dir, path, command, expected)
    }

    /// Starts strata with `config` inside `host`'s namespace of `lab`.
    pub fn start_on(lab: &netns::Lab, host: &str, config: &str) -> Strata {
        let dir = TempDir::new();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, config).expect("write config");
        let expected = listeners_in(config);
        let mut command = lab.command(host, STRATA);
        command.args(["run", "-c", &path.display().to_string()]);
        Self::spawn_command(dir, path, command, expected)
    }

    /// Runs `command` (strata, perhaps through a wrapper) and waits for `expected`
    /// "listening on" lines.
    pub fn spawn_command(
        dir: TempDir,
        path: PathBuf,
        mut command: Command,
        expected: usize,
    ) -> Strata {
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("STRATA_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let stderr = stderr.clone();
            let pipe = child.stderr.take().expect("stderr");
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        {
            let lines = lines.clone();
            let pipe = child.stdout.take().expect("stdout");
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut strata = Strata {
            child,
            dir,
            config: path,
            addrs: HashMap::new(),
            stderr,
            stdout_lines: lines,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while strata.addrs.len() < expected {
            if let Ok(Some(status)) = strata.child.try_wait() {
                panic!(
                    "strata exited with {status} before listening:\n{}",
                    strata.stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "strata did not listen in time:\n{}",
                strata.stderr.lock().unwrap()
            );
            strata.addrs = parse_listening(&strata.stdout_lines.lock().unwrap());
            std::thread::yield_now();
            std::thread::park_timeout(Duration::from_millis(10));
        }
        strata
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        *self
            .addrs
            .get(listener)
            .unwrap_or_else(|| panic!("no listener {listener} in {:?}", self.addrs))
    }

    #[allow(unsafe_code)] // kill(2) through libc
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "strata did not exit:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Writes `config` over the config file, sends SIGHUP, and waits until it is applied.
    pub async fn reload_to(&self, config: &str) {
        let before = self.logs().matches("SIGHUP: reloaded").count();
        std::fs::write(&self.config, config).unwrap();
        self.signal(libc::SIGHUP);
        self.wait_logs("SIGHUP: reloaded", before + 1, Duration::from_secs(5))
            .await;
    }

    /// Waits until the logs contain `needle`.
    pub async fn wait_log(&self, needle: &str, limit: Duration) {
        self.wait_logs(needle, 1, limit).await;
    }

    /// Waits until the logs contain `needle` `n` times (the `n`th reload applied, say).
    pub async fn wait_logs(&self, needle: &str, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.logs().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "not {n} times {needle:?} in logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many "listening on" lines a config makes strata print.
fn listeners_in(config: &str) -> usize {
    [
        "[[http]]",
        "[[tcp]]",
        "[[cache]]",
        "[[database]]",
        "[admin]",
    ]
    .iter()
    .map(|t| config.matches(t).count())
    .sum()
}

fn parse_listening(lines: &[String]) -> HashMap<String, SocketAddr> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("strata: ")?;
            let (name, url) = rest.split_once(" listening on ")?;
            let addr = url.split("://").nth(1)?.parse().ok()?;
            Some((name.to_string(), addr))
        })
        .collect()
}

/// Runs `strata` with `args` to completion: (exit code, stdout, stderr).
pub fn strata_cmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(STRATA)
        .args(args)
        .output()
        .expect("run strata");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a blocking client call (psql, pgbench) off the test's runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// The workspace's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python that scripts/test.sh makes in target/py with the clients from PyPI (redis-py,
/// grpcio, h2, psycopg).
pub fn python() -> PathBuf {
    let python = root().join("target/py/bin/python");
    assert!(
        python.exists(),
        "the Python clients are not installed in target/py: run ./scripts/test.sh, which installs them"
    );
    python
}

/// A command that runs the client script `name` (in crates/strata/tests/clients) with `args`.
pub fn python_client(name: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(python());
    command
        .arg(root().join("crates/strata/tests/clients").join(name))
        .args(args)
        .kill_on_drop(true);
    command
}

/// Runs the client script `name` with `args` to its end: its output, once it has printed
/// `ok` last and exited 0; otherwise the test fails with what it printed.
pub async fn python_ok(name: &str, args: &[&str]) -> String {
    let out = python_client(name, args)
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.into_owned()
}

/// A small app server on 127.0.0.1:0. Paths: /healthz (200, or 503 when unhealthy),
/// /slow/MS, /status/CODE, /echo (returns the body), /headers (returns request headers),
/// /big (8 MiB), /trailers (a body, then trailers), /trailers-in (the request's trailers),
/// anything else: "backend NAME". Upgrade requests get 101 and an echo of raw bytes.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    pub hits: Arc<AtomicU64>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    goaway: Arc<tokio::sync::Notify>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        Self::serve(name, listener)
    }

    /// Serves again on the address of a backend that was killed.
    pub async fn restart_on(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("rebind backend");
        Self::serve(name, listener)
    }

    /// The same app server speaking HTTP/2 only (h2c, prior knowledge), as gRPC servers do.
    pub async fn start_h2(name: &str) -> Backend {
        Self::start_h2_limited(name, 0).await
    }

    /// An HTTP/2 app server that allows `streams` at once on a connection (0: hyper's
    /// default) and refuses more with REFUSED_STREAM.
    pub async fn start_h2_limited(name: &str, streams: u32) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        Self::serve_as(name, listener, Some(streams))
    }

    /// Serves on `listener` (one made in a test host's namespace, say).
    pub fn serve(name: &str, listener: TcpListener) -> Backend {
        Self::serve_as(name, listener, None)
    }

    /// `h2`: HTTP/2 only, with that stream limit (0: hyper's default); `None`: HTTP/1.1.
    fn serve_as(name: &str, listener: TcpListener, h2: Option<u32>) -> Backend {
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicU64::new(0));
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let goaway = Arc::new(tokio::sync::Notify::new());
        let accept = {
            let (name, healthy, hits, tasks, goaway) = (
                name.to_string(),
                healthy.clone(),
                hits.clone(),
                tasks.clone(),
                goaway.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (name, healthy, hits) = (name.clone(), healthy.clone(), hits.clone());
                    let goaway = goaway.clone();
                    let conn = tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            respond(name.clone(), healthy.clone(), hits.clone(), req)
                        });
                        if let Some(streams) = h2 {
                            let mut builder = hyper::server::conn::http2::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            );
                            if streams > 0 {
                                builder.max_concurrent_streams(streams);
                            }
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            tokio::pin!(conn);
                            tokio::select! {
                                _ = conn.as_mut() => {}
                                _ = goaway.notified() => {
                                    conn.as_mut().graceful_shutdown();
                                    let _ = conn.await;
                                }
                            }
                        } else {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        }
                    });
                    tasks.lock().unwrap().push(conn.abort_handle());
                }
            })
        };
        tasks.lock().unwrap().push(accept.abort_handle());
        Backend {
            name: name.to_string(),
            addr,
            healthy,
            hits,
            tasks,
            goaway,
        }
    }

    /// HTTP/2 backends: sends GOAWAY on every open connection and closes each once its
    /// streams are done (as a server that restarts gracefully does); new connections are
    /// still taken.
    pub fn go_away(&self) {
        self.goaway.notify_waiters();
    }

    /// Stops listening and drops every open connection, as a crashed server would.
    pub fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The body type of the test backends' responses.
type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn respond(
    name: String,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        let ok = healthy.load(Ordering::SeqCst);
        return Ok(text(
            if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            if ok { "ok" } else { "sick" },
        ));
    }
    hits.fetch_add(1, Ordering::SeqCst);
    if req.headers().contains_key(hyper::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 4096];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()).boxed());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return Ok(resp);
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(100))).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        return Ok(text(
            code,
            &format!("backend {name} says {}", code.as_u16()),
        ));
    }
    if path == "/echo" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(Response::new(Full::new(body).boxed()));
    }
    if path == "/stall" {
        // one chunk, then silence: a backend hung in the middle of a response
        let queue = [Bytes::from_static(b"partial")].into();
        return Ok(Response::new(Frames { queue, stall: true }.boxed()));
    }
    if path == "/chunked" {
        // no length known up front: hyper sends it chunked
        let frames =
            ["first,", "second,", "third"].map(|s: &'static str| Bytes::from_static(s.as_bytes()));
        let queue = frames.into_iter().collect();
        return Ok(Response::new(
            Frames {
                queue,
                stall: false,
            }
            .boxed(),
        ));
    }
    if path == "/big" {
        return Ok(text(StatusCode::OK, &"x".repeat(8 << 20)));
    }
    if path == "/trailers-in" {
        // the request's trailers, as "name=value" lines
        let collected = req.into_body().collect().await;
        let mut lines: Vec<String> = collected
            .ok()
            .and_then(|c| c.trailers().cloned())
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?")))
            .collect();
        lines.sort();
        return Ok(text(StatusCode::OK, &lines.join("\n")));
    }
    if path == "/trailers" {
        // data, then trailers (HTTP/2, or chunked HTTP/1.1)
        let mut t = hyper::HeaderMap::new();
        t.insert("x-checksum", hyper::header::HeaderValue::from_static("abc"));
        let body = WithTrailers(Some(Bytes::from_static(b"with trailers")), Some(t));
        let mut resp = Response::new(body.boxed());
        // hyper's HTTP/1.1 server writes only the trailers its response announced
        resp.headers_mut().insert(
            hyper::header::TRAILER,
            hyper::header::HeaderValue::from_static("x-checksum"),
        );
        return Ok(resp);
    }
    if path == "/headers" {
        let mut lines: Vec<String> = req
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
            .collect();
        lines.sort();
        return Ok(text(StatusCode::OK, &lines.join("\n")));
    }
    Ok(text(StatusCode::OK, &format!("backend {name}")))
}

/// Some data, then trailers.
struct WithTrailers(Option<Bytes>, Option<hyper::HeaderMap>);

impl hyper::body::Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let frame = match self.0.take() {
            Some(d) => Some(hyper::body::Frame::data(d)),
            None => self.1.take().map(hyper::body::Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }
}

fn text(status: StatusCode, body: &str) -> Response<TestBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *resp.status_mut() = status;
    resp
}

/// A body of several frames with no length known up front, so hyper sends it chunked; with
/// `stall`, after the last frame it neither ends nor sends more (a backend hung mid-response).
struct Frames {
    queue: std::collections::VecDeque<Bytes>,
    stall: bool,
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.queue.pop_front() {
            Some(b) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(b)))),
            None if self.stall => std::task::Poll::Pending,
            None => std::task::Poll::Ready(None),
        }
    }
}

/// An HTTP/1.1 keep-alive client over one connection.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

/// What a test looks at in a response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to strata");
        Client::over(stream).await
    }

    /// A client over a stream already open (TLS, say).
    pub async fn over<I>(io: I) -> Client
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Client { sender }
    }

    pub async fn request(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply, hyper::Error> {
        self.request(get(path)).await
    }
}

/// The request body type of the HTTP/2 test clients: any body, streamed or whole.
pub type H2Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// An HTTP/2 client over `io`: h2c on a plain TCP stream, or TLS after ALPN chose h2.
pub async fn h2_handshake<I>(io: I) -> hyper::client::conn::http2::SendRequest<H2Body>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(io),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    sender
}

/// Sends `req` over HTTP/2 and reads the whole answer.
pub async fn h2_send(
    sender: &mut hyper::client::conn::http2::SendRequest<H2Body>,
    req: Request<H2Body>,
) -> Reply {
    sender.ready().await.expect("connection ready");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// An HTTP/2 GET with no body.
pub fn h2_get(uri: &str) -> Request<H2Body> {
    Request::get(uri)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

/// A GET with `Host: localhost`: the admin listener answers only names of this machine when it
/// has no token file.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// One GET on a new connection.
pub async fn get_once(addr: SocketAddr, path: &str) -> Reply {
    Client::connect(addr)
        .await
        .get(path)
        .await
        .expect("request")
}

/// Strata's `/status`, as JSON.
pub async fn admin_status(strata: &Strata) -> serde_json::Value {
    serde_json::from_str(&admin_get(strata, "/status").await.body).expect("/status is JSON")
}

/// A GET on strata's admin listener: /status, /metrics.
pub async fn admin_get(strata: &Strata, path: &str) -> Reply {
    admin_call(strata, hyper::Method::GET, path).await
}

/// A POST on strata's admin listener: drain, restore.
pub async fn admin_post(strata: &Strata, path: &str) -> Reply {
    admin_call(strata, hyper::Method::POST, path).await
}

/// A request on a new connection to a loopback admin listener without a token, so with an IP
/// address as Host, as the admin API asks of such calls.
async fn admin_call(strata: &Strata, method: hyper::Method, path: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    Client::connect(strata.addr("admin"))
        .await
        .request(req)
        .await
        .unwrap()
}

/// Polls `check` until it holds, failing after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of one sample in /metrics text, matched by name and label substring (`""`
/// matches a sample without labels too).
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| {
            let rest = l.strip_prefix(name).unwrap_or("");
            (rest.starts_with('{') && l.contains(labels))
                || (labels.is_empty() && rest.starts_with(' '))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Sends raw bytes and reads until the server closes or `limit` passes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

/// A real nginx serving a fixed answer, as one app server; killed (SIGKILL) when dropped.
pub struct Nginx {
    pub addr: SocketAddr,
    pub child: Child,
    pub dir: TempDir,
}

impl Nginx {
    /// Starts `nginx` (from Debian's nginx-light; scripts/test.sh installs it) on a free port
    /// and waits until it accepts connections.
    pub async fn start(name: &str) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: run ./scripts/test.sh, which installs it");
        let dir = TempDir::new();
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               keepalive_requests 100000;\n\
               server {{\n    listen 127.0.0.1:{port};\n    location = /healthz {{ return 200 \"ok\\n\"; }}\n\
                 location / {{ return 200 \"nginx {name}\\n\"; }}\n  }}\n}}\n"
        );
        let conf_path = write_file(dir.path(), "nginx.conf", &conf);
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Nginx { addr, child, dir }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` different ports that were free a moment ago: all held at once while they are chosen,
/// so none comes back twice. They are picked at random below the kernel's ephemeral range
/// (`ip_local_port_range`), so that no outgoing connection of another test takes one as its
/// local port before the program told to listen there binds it; 10,000 below it, so that a
/// Redis Cluster node's bus port (its port + 10,000) is below it too. Where the range starts
/// too low for that, the kernel picks (port 0).
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let mut held: Vec<std::net::TcpListener> = Vec::with_capacity(n);
    let mut tries = 0u32;
    while held.len() < n {
        tries += 1;
        let port = if ephemeral >= 23_000 && tries < 10_000 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(tries);
            (ephemeral - 22_000 + (h.finish() % 12_000) as u32) as u16
        } else {
            0
        };
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A port that was free a moment ago (for programs that can't be told to take port 0); see
/// [`free_ports`].
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// The open descriptors of process `pid`.
pub fn open_descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc")
        .count() as u64
}

/// A TLS client that trusts `roots` (only), offering `alpn`.
pub fn tls_connector(
    roots: &[rustls_pki_types::CertificateDer<'static>],
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// A self-signed certificate for `names` (its own CA) written to `dir` as STEM.pem and
/// STEM.key; its DER for a client's trust store.
pub fn self_signed(
    dir: &Path,
    stem: &str,
    names: &[&str],
) -> rustls_pki_types::CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    write_file(dir, &format!("{stem}.pem"), &cert.pem());
    write_file(dir, &format!("{stem}.key"), &key.serialize_pem());
    cert.der().clone()
}
