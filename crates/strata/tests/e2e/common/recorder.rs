//! A raw-socket backend that records every byte it receives, per connection, and answers each
//! request it can frame: the test's own witness of what a proxy really sends.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// One request as the recorder framed it from the bytes it got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// Every value of header `name` (case-insensitive).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The bytes one connection carried so far.
type ConnLog = Arc<Mutex<Vec<u8>>>;

pub struct Recorder {
    pub addr: SocketAddr,
    /// The bytes of each connection, in the order they were accepted.
    conns: Arc<Mutex<Vec<ConnLog>>>,
    /// Requests framed so far, over all connections, in order.
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: AbortHandle,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// Listens on a free loopback port. Answers by target: `/resp/conn-cl` names its
    /// Content-Length in Connection, `/resp/cl-te` sends both Content-Length and chunked,
    /// `/resp/conn-te` names Transfer-Encoding in Connection, `/resp/304` a 304 with a length,
    /// `/resp/h2c` switches to h2c, `/resp/403` refuses (with a body); anything else (a CONNECT
    /// too) gets its own request line back as the body, so each client can tell its answer from
    /// another's.
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns: Arc<Mutex<Vec<ConnLog>>> = Arc::default();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (c, r) = (conns.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::new(Mutex::new(Vec::new()));
                c.lock().unwrap().push(log.clone());
                let requests = r.clone();
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        log.lock().unwrap().extend_from_slice(&chunk[..n]);
                        pending.extend_from_slice(&chunk[..n]);
                        while let Some((req, used)) = frame(&pending) {
                            pending.drain(..used);
                            let answer = answer(&req);
                            requests.lock().unwrap().push(req);
                            if stream.write_all(&answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        })
        .abort_handle();
        Recorder {
            addr,
            conns,
            requests,
            task,
        }
    }

    /// The bytes each connection carried, in accept order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().clone())
            .collect()
    }

    /// Every request framed so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn answer(req: &Recorded) -> Vec<u8> {
    let target = req.line.split(' ').nth(1).unwrap_or("");
    if req.line.starts_with("CONNECT ") {
        return b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno".to_vec();
    }
    match target {
        "/resp/conn-cl" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length\r\n\r\nok".to_vec()
        }
        "/resp/cl-te" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(),
        "/resp/conn-te" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(),
        "/resp/304" => b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n".to_vec(),
        "/resp/h2c" => b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec(),
        "/resp/403" => b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno".to_vec(),
        _ => {
            let body = req.line.trim_end_matches(" HTTP/1.1").to_string();
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
        }
    }
}

/// One complete request at the front of `buf` (Content-Length or chunked), or None.
fn frame(buf: &[u8]) -> Option<(Recorded, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let mut req = Recorded {
        line,
        headers,
        body: Vec::new(),
    };
    let mut at = end + 4;
    if req
        .values("transfer-encoding")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let eol = buf[at..].windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[at..at + eol]).ok()?, 16).ok()?;
            at += eol + 2;
            if size == 0 {
                if buf.len() < at + 2 || &buf[at..at + 2] != b"\r\n" {
                    return None;
                }
                at += 2;
                break;
            }
            if buf.len() < at + size + 2 {
                return None;
            }
            req.body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    } else if let Some(len) = req.values("content-length").first() {
        let n: usize = len.parse().ok()?;
        if buf.len() < at + n {
            return None;
        }
        req.body = buf[at..at + n].to_vec();
        at += n;
    }
    Some((req, at))
}
