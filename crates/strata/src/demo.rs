//! The built-in demo: three small upstream HTTP servers on loopback and a load balancer in
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

pub fn run(listen: &str, admin: &str) -> ExitCode {
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
    match runtime.block_on(demo(listen, admin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(listen: &str, admin: &str) -> Result<()> {
    let mut backends = Vec::new();
    for n in 1..=UPSTREAMS {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("demo upstream: cannot bind")?;
        backends.push(format!("\"{}\"", listener.local_addr()?));
        tokio::spawn(upstream(n, listener));
    }
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
"#,
        backends.join(", ")
    );
    let config = strata_config::parse(&text, "<built-in demo>", std::path::Path::new("."))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("strata demo: {UPSTREAMS} upstream servers behind a round-robin load balancer. Try:");
    println!("  curl http://{listen}/            # answered by each upstream in turn");
    println!("  curl http://{admin}/status       # every backend and its health");
    println!("  curl http://{admin}/metrics      # Prometheus metrics");
    println!(
        "  curl -X POST http://{admin}/backends/http/demo/{}/drain",
        backends[0].trim_matches('"')
    );
    println!("Stop with Ctrl-C.");
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    strata::node::serve(config, None, workers).await
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
