//! Tunnel load benchmark: the same load straight to an upstream and through edge + agent, in
//! one run, printing requests/s, p50/p99 latency and MB/s for both and their ratio.
//!
//! `cargo bench -p wicket-runtime --bench tunnel` (set `WICKET_BENCH_SECS`, default 5 s per
//! scenario, and `WICKET_BENCH_CONNS`, default 50). Everything runs in this process on
//! 127.0.0.1 and stops by itself.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use wicket_runtime::agent::{Agent, AgentConfig, AgentOptions, EndpointState};
use wicket_runtime::edge::{Edge, EdgeConfig, NamedToken};
use wicket_runtime::tls::{CertPair, generate_dev_ca};

const KIB: Bytes = Bytes::from_static(&[b'x'; 1024]);

async fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let mib = Bytes::from(vec![b'y'; 1024 * 1024]);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let mib = mib.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let body = if req.uri().path() == "/1m" {
                        mib.clone()
                    } else {
                        KIB
                    };
                    async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[derive(Default)]
struct Sample {
    latencies_us: Vec<u32>,
    bytes: u64,
    errors: u64,
}

async fn one_request(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
    close: bool,
) -> Result<u64, hyper::Error> {
    let mut req = hyper::Request::builder().uri(path).header("host", host);
    if close {
        req = req.header("connection", "close");
    }
    let res = sender.send_request(req.body(Empty::new()).unwrap()).await?;
    let mut body = res.into_body();
    let mut n = 0;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f?.into_data() {
            n += d.len() as u64;
        }
    }
    Ok(n)
}

async fn connect(
    addr: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    tcp.set_nodelay(true).ok()?;
    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(s)
}

async fn load(
    addr: SocketAddr,
    host: &'static str,
    path: &'static str,
    close: bool,
    conns: usize,
    secs: u64,
) -> (Sample, Duration) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        tasks.spawn(async move {
            let mut s = Sample::default();
            let mut sender = None;
            while Instant::now() < deadline {
                if sender.is_none() {
                    sender = connect(addr).await;
                    if sender.is_none() {
                        s.errors += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                }
                let Some(snd) = sender.as_mut() else { continue };
                let t = Instant::now();
                match tokio::time::timeout(
                    Duration::from_secs(10),
                    one_request(snd, host, path, close),
                )
                .await
                {
                    Ok(Ok(n)) => {
                        s.latencies_us
                            .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                        s.bytes += n;
                    }
                    _ => {
                        s.errors += 1;
                        sender = None;
                    }
                }
                if close {
                    sender = None;
                }
            }
            s
        });
    }
    let mut all = Sample::default();
    while let Some(r) = tasks.join_next().await {
        let s = r.unwrap();
        all.latencies_us.extend(s.latencies_us);
        all.bytes += s.bytes;
        all.errors += s.errors;
    }
    (all, start.elapsed())
}

struct Row {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    mbps: f64,
    errors: u64,
}

fn summarize(mut s: Sample, elapsed: Duration) -> Row {
    s.latencies_us.sort_unstable();
    let pct = |p: f64| {
        if s.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((s.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(s.latencies_us[i]) / 1000.0
    };
    let secs = elapsed.as_secs_f64();
    Row {
        rps: s.latencies_us.len() as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        mbps: s.bytes as f64 / secs / 1e6,
        errors: s.errors,
    }
}

fn main() {
    let secs: u64 = std::env::var("WICKET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let conns: usize = std::env::var("WICKET_BENCH_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (ca, chain, key) = generate_dev_ca(&["127.0.0.1".into(), "bench.example.test".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
        std::fs::write(dir.path().join("c.pem"), chain).unwrap();
        std::fs::write(dir.path().join("k.pem"), key).unwrap();
        let pair = CertPair::load(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap();
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut cfg = EdgeConfig {
            tunnel_listen: lo,
            http_listen: Some(lo),
            https_listen: None,
            metrics_listen: None,
            base_domain: "example.test".into(),
            data_dir: dir.path().join("data"),
            authtokens: vec![NamedToken { name: "bench".into(), token: "bench-token".into() }],
            ..EdgeConfig::default()
        };
        cfg.limits.max_connections_per_ip = 100_000;
        let edge = Edge::builder(cfg).tunnel_cert(pair).start().await.unwrap();
        let up = upstream().await;
        let yaml = format!(
            "version: 3\nagent:\n  authtoken: bench-token\n  connect_url: {}\n  connect_cas: [{}]\nendpoints:\n  - name: b\n    url: http://bench.example.test\n    upstream: {{ url: '{up}' }}\n",
            edge.addrs().tunnel,
            dir.path().join("ca.pem").display()
        );
        let agent = Agent::start(AgentConfig::from_yaml(&yaml, "bench").unwrap(), dir.path().to_owned(), AgentOptions::default()).unwrap();
        let st = tokio::time::timeout(
            Duration::from_secs(30),
            agent.wait_for(|s| matches!(s.endpoints.get("b"), Some(EndpointState::Bound { .. }))),
        )
        .await
        .expect("agent bound");
        assert!(st.fatal.is_none(), "{:?}", st.fatal);
        let tunnel = edge.addrs().http.unwrap();

        println!("{conns} connections, {secs} s per run, loopback, everything in one process\n");
        println!("| scenario | path | req/s | p50 ms | p99 ms | MB/s | errors | tunnel/direct req/s | added p99 ms |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        let scenarios: [(&str, &'static str, bool); 3] = [
            ("1 KiB keep-alive", "/1k", false),
            ("1 MiB keep-alive", "/1m", false),
            ("1 KiB Connection: close", "/1k", true),
        ];
        for (name, path, close) in scenarios {
            let (d, de) = load(up, "bench.example.test", path, close, conns, secs).await;
            let d = summarize(d, de);
            let (t, te) = load(tunnel, "bench.example.test", path, close, conns, secs).await;
            let t = summarize(t, te);
            for (label, r) in [("direct", &d), ("tunnel", &t)] {
                let (ratio, added) = if label == "tunnel" {
                    (format!("{:.2}×", t.rps / d.rps.max(f64::MIN_POSITIVE)), format!("{:.2}", t.p99_ms - d.p99_ms))
                } else {
                    (String::new(), String::new())
                };
                println!(
                    "| {name} | {label} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {ratio} | {added} |",
                    r.rps, r.p50_ms, r.p99_ms, r.mbps, r.errors
                );
            }
        }
        agent.shutdown().await;
        edge.shutdown().await;
    });
}
