//! The built-in demo: three small upstream HTTP servers on loopback and a load balancer in
//! front of them, and (when redis-server is installed) two redis-servers with a cache pool in
//! front of them, configured through the same parser and wiring as `strata run`.

use std::convert::Infallible;
use std::process::ExitCode;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const UPSTREAMS: usize = 3;

pub fn run(listen: &str, admin: &str, cache_listen: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(listen, admin, cache_listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(listen: &str, admin: &str, cache_listen: &str) -> Result<()> {
    let mut backends = Vec::new();
    for n in 1..=UPSTREAMS {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("demo upstream: cannot bind")?;
        backends.push(format!("\"{}\"", listener.local_addr()?));
        tokio::spawn(upstream(n, listener));
    }
    let (cache, _redis) = cache_pool(cache_listen).await;
    let text = format!(
        r#"# the built-in demo config
[admin]
listen = "{admin}"

[[http]]
name = "demo"
listen = "{listen}"
balance = "round_robin"
backends = [{}]
health = {{ path = "/healthz", interval = "1s", rise = 2, fall = 2 }}
access_log = true
{cache}"#,
        backends.join(", ")
    );
    let config = strata_config::parse(&text, "<built-in demo>", std::path::Path::new("."))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("strata demo: {UPSTREAMS} upstream servers behind a round-robin load balancer. Try:");
    println!("  curl http://{listen}/            # answered by each upstream in turn");
    println!("  open http://{admin}/               # the dashboard: every layer, live");
    println!("  curl http://{admin}/status       # every backend and its health");
    println!("  curl http://{admin}/metrics      # Prometheus metrics");
    println!(
        "  curl -X POST http://{admin}/backends/http/demo/{}/drain",
        backends[0].trim_matches('"')
    );
    if cache.is_empty() {
        println!(
            "(no redis-server found: install it (Debian: apt-get install redis-server) and the \
             demo adds a cache pool over two of them)"
        );
    } else {
        println!(
            "  redis-cli -p {} SET greeting hello  # a cache pool over two redis-servers",
            port_of(cache_listen)
        );
    }
    println!("Stop with Ctrl-C.");
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    strata::node::serve(config, strata::node::ConfigSource::Builtin, workers).await
}

/// Two redis-servers on free loopback ports and the `[[cache]]` section over them, when
/// redis-server is installed (else nothing); the servers stop with the demo.
async fn cache_pool(listen: &str) -> (String, Children) {
    let Some(bin) = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        return (String::new(), Children(Vec::new()));
    };
    let mut children = Children(Vec::new());
    let mut servers = Vec::new();
    for _ in 0..2 {
        let Ok(port) = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
        else {
            return (String::new(), children);
        };
        let mut command = std::process::Command::new(bin);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        stop_with_parent(&mut command);
        let child = command.spawn();
        let Ok(child) = child else {
            return (String::new(), children);
        };
        children.0.push(child);
        servers.push(format!("\"127.0.0.1:{port}:1\""));
        // ready when it accepts a connection
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let section = format!(
        "\n[[cache]]\nname = \"demo\"\nlisten = \"{listen}\"\nservers = [{}]\n",
        servers.join(", ")
    );
    (section, children)
}

/// Asks the kernel to stop the child when the demo dies, even by SIGKILL (its `Drop` does
/// not run then).
#[allow(unsafe_code)] // prctl(2) in the child between fork and exec
fn stop_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe; it touches no memory of the parent's.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// The demo's redis-servers, stopped when the demo stops.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or(addr)
}

/// A tiny app server: says which upstream answered; /healthz says ok.
async fn upstream(n: usize, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path() == "/healthz" {
                        "ok\n".to_string()
                    } else {
                        format!(
                            "hello from demo upstream {n}: {} {}\n",
                            req.method(),
                            req.uri()
                        )
                    };
                    Ok::<_, Infallible>(text_response(body))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text_response(body: String) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    resp
}
