//! Tunnel load benchmark: the same load straight to an upstream and through edge + agent, in
//! one run, printing requests/s, p50/p99 latency, MB/s and CPU time per request for both and
//! their ratio.
//!
//! `cargo bench -p wicket-runtime --bench tunnel`. Environment:
//! - `WICKET_BENCH_SECS` (default 5): seconds per run;
//! - `WICKET_BENCH_WARMUP` (default 1): unmeasured seconds on the same path before each run;
//! - `WICKET_BENCH_CONNS` (default 50): concurrent connections;
//! - `WICKET_BENCH_ONLY`: run only the scenarios whose short name (`1k`, `1m`, `close`) is in
//!   this comma-separated list;
//! - `WICKET_BENCH_PATHS`: a comma-separated subset of `direct,tunnel,relay1,relay2` (the
//!   default: all four; direct always runs first, the others in the order listed), e.g.
//!   `tunnel` alone for profiling. `relay1`/`relay2` put one or two
//!   do-nothing TCP relays (no TLS, no HTTP, no multiplexing) in front of the upstream: the floor
//!   that the extra loopback hops alone set for any tunnel on this machine.
//!
//! Everything runs on 127.0.0.1 and stops by itself. The upstream, edge and agent share one
//! multi-thread tokio runtime (as many workers as cores); the load generator runs on its own
//! thread with a current-thread runtime and a minimal HTTP/1.1 client (in the manner of `wrk`:
//! a fixed request, a response read by `Content-Length` or chunked framing, no allocation per
//! request), so that it costs the same, and little, for the direct and the tunnel runs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wicket_runtime::agent::{Agent, AgentConfig, AgentOptions, EndpointState};
use wicket_runtime::edge::{Edge, EdgeConfig, NamedToken};
use wicket_runtime::tls::{CertPair, generate_dev_ca};

/// The allocator the `wicket` binary uses (see `src/main.rs`), so the figures are the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

/// A do-nothing TCP relay on 127.0.0.1: every accepted connection gets its own connection to
/// `to`, and bytes are copied both ways (`copy_bidirectional`, `TCP_NODELAY` on both sides) with
/// no TLS, no HTTP parsing and no multiplexing. Chained once or twice in front of the upstream it
/// measures the floor that the extra loopback hops alone put under any tunnel on this machine.
async fn relay(to: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(to).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// Load generator: a minimal HTTP/1.1 client.

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("bad response: {0}")]
    Bad(&'static str),
    #[error("status {0}")]
    Status(u16),
}

/// Reads more bytes into `buf`; an error at end of stream.
async fn fill(tcp: &mut TcpStream, buf: &mut BytesMut) -> Result<(), LoadError> {
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(64 * 1024);
    }
    if tcp.read_buf(buf).await? == 0 {
        return Err(LoadError::Bad("connection closed"));
    }
    Ok(())
}

/// Sends `req` and reads one response; returns the body length. `buf` is empty on entry and on
/// success (requests are not pipelined).
async fn one_request(
    tcp: &mut TcpStream,
    req: &[u8],
    buf: &mut BytesMut,
) -> Result<u64, LoadError> {
    tcp.write_all(req).await?;
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(LoadError::Bad("response head too large"));
        }
        fill(tcp, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| LoadError::Bad("head"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(LoadError::Bad("status line"))?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse::<u64>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.trim().eq_ignore_ascii_case("chunked");
        }
    }
    buf.advance(head_len);
    let n = if chunked {
        read_chunked(tcp, buf).await?
    } else {
        let n = length.ok_or(LoadError::Bad("no content-length"))?;
        skip(tcp, buf, n).await?;
        n
    };
    if !buf.is_empty() {
        return Err(LoadError::Bad("bytes after the response"));
    }
    if status != 200 {
        return Err(LoadError::Status(status));
    }
    Ok(n)
}

/// Consumes `n` bytes of the stream: those already in `buf`, then more as they arrive.
async fn skip(tcp: &mut TcpStream, buf: &mut BytesMut, n: u64) -> Result<(), LoadError> {
    let mut left = n;
    loop {
        let take = left.min(buf.len() as u64);
        buf.advance(take as usize);
        left -= take;
        if left == 0 {
            return Ok(());
        }
        fill(tcp, buf).await?;
    }
}

async fn read_chunked(tcp: &mut TcpStream, buf: &mut BytesMut) -> Result<u64, LoadError> {
    let mut total = 0;
    loop {
        let line = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if buf.len() > 1024 {
                return Err(LoadError::Bad("chunk size line"));
            }
            fill(tcp, buf).await?;
        };
        let size = std::str::from_utf8(&buf[..line])
            .ok()
            .map(|s| s.split(';').next().unwrap_or("").trim())
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or(LoadError::Bad("chunk size"))?;
        buf.advance(line + 2);
        if size == 0 {
            // No trailers from our servers: the final CRLF.
            while buf.len() < 2 {
                fill(tcp, buf).await?;
            }
            buf.advance(2);
            return Ok(total);
        }
        total += size;
        skip(tcp, buf, size + 2).await?;
    }
}

#[derive(Default)]
struct Sample {
    latencies_us: Vec<u32>,
    bytes: u64,
    errors: u64,
}

async fn connection(addr: SocketAddr, req: Bytes, close: bool, deadline: Instant) -> Sample {
    let mut s = Sample::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut tcp = None;
    while Instant::now() < deadline {
        if tcp.is_none() {
            match TcpStream::connect(addr).await {
                Ok(t) => {
                    let _ = t.set_nodelay(true);
                    tcp = Some(t);
                }
                Err(_) => {
                    s.errors += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            }
        }
        let Some(t) = tcp.as_mut() else { continue };
        let start = Instant::now();
        match tokio::time::timeout(Duration::from_secs(10), one_request(t, &req, &mut buf)).await {
            Ok(Ok(n)) => {
                s.latencies_us
                    .push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
                s.bytes += n;
                if close {
                    tcp = None;
                }
            }
            _ => {
                s.errors += 1;
                buf.clear();
                tcp = None;
            }
        }
    }
    s
}

/// One load run on the load generator's own thread and current-thread runtime. Returns the
/// merged sample, the wall time and the load generator's CPU time.
fn load(
    addr: SocketAddr,
    path: &str,
    close: bool,
    conns: usize,
    secs: u64,
) -> (Sample, Duration, Duration) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: bench.example.test\r\n");
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    let req = Bytes::from(req);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cpu0 = thread_cpu();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let all = rt.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..conns {
                tasks.spawn(connection(addr, req.clone(), close, deadline));
            }
            let mut all = Sample::default();
            while let Some(r) = tasks.join_next().await {
                let s = r.unwrap();
                all.latencies_us.extend(s.latencies_us);
                all.bytes += s.bytes;
                all.errors += s.errors;
            }
            all
        });
        (all, start.elapsed(), thread_cpu().saturating_sub(cpu0))
    })
    .join()
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc (Linux): the first field of `schedstat` is the time on CPU in ns.

fn schedstat(path: &std::path::Path) -> Duration {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    schedstat(std::path::Path::new("/proc/thread-self/schedstat"))
}

/// CPU time of every live thread of this process.
fn process_cpu() -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    dir.filter_map(Result::ok)
        .map(|e| schedstat(&e.path().join("schedstat")))
        .sum()
}

// ---------------------------------------------------------------------------------------------

struct Row {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    mbps: f64,
    errors: u64,
    /// Server-side (upstream, edge, agent) CPU µs per request.
    server_us: f64,
    /// Load generator CPU µs per request.
    client_us: f64,
}

fn run(addr: SocketAddr, path: &str, close: bool, conns: usize, secs: u64) -> Row {
    // One unmeasured second first: connections, pools, flow-control windows and allocator
    // arenas warm up, so that no path pays for its set-up inside the measurement.
    let warmup: u64 = env_or("WICKET_BENCH_WARMUP", 1);
    if warmup > 0 {
        let _ = load(addr, path, close, conns, warmup);
    }
    let cpu0 = process_cpu();
    let (mut s, elapsed, client_cpu) = load(addr, path, close, conns, secs);
    // The load generator's thread has exited: what remains is the servers' time.
    let server_cpu = process_cpu().saturating_sub(cpu0);
    s.latencies_us.sort_unstable();
    let pct = |p: f64| {
        if s.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((s.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(s.latencies_us[i]) / 1000.0
    };
    let secs = elapsed.as_secs_f64();
    let n = (s.latencies_us.len() as f64).max(1.0);
    Row {
        rps: s.latencies_us.len() as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        mbps: s.bytes as f64 / secs / 1e6,
        errors: s.errors,
        server_us: server_cpu.as_secs_f64() * 1e6 / n,
        client_us: client_cpu.as_secs_f64() * 1e6 / n,
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs: u64 = env_or("WICKET_BENCH_SECS", 5);
    let conns: usize = env_or("WICKET_BENCH_CONNS", 50);
    let only: Option<String> = std::env::var("WICKET_BENCH_ONLY").ok();
    let paths: String = env_or(
        "WICKET_BENCH_PATHS",
        "direct,tunnel,relay1,relay2".to_owned(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (edge, agent, up, tunnel, relay1, relay2, _dir) = rt.block_on(async move {
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
        let relay1 = relay(up).await;
        let relay2 = relay(relay(up).await).await;
        (edge, agent, up, tunnel, relay1, relay2, dir)
    });

    println!(
        "{conns} connections, {secs} s per run, loopback; servers on a {}-worker runtime, load generator on its own thread\n",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "| scenario | path | req/s | p50 ms | p99 ms | MB/s | errors | server CPU µs/req | client CPU µs/req | tunnel/direct req/s | added p99 ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let scenarios: [(&str, &str, &str, bool); 3] = [
        ("1k", "1 KiB keep-alive", "/1k", false),
        ("1m", "1 MiB keep-alive", "/1m", false),
        ("close", "1 KiB Connection: close", "/1k", true),
    ];
    for (short, name, path, close) in scenarios {
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|s| s == short))
        {
            continue;
        }
        let want = |p: &str| paths.split(',').any(|x| x == p);
        let d = want("direct").then(|| run(up, path, close, conns, secs));
        // The other paths run in the order `WICKET_BENCH_PATHS` lists them (default: the tunnel
        // right after direct — the relays' `Connection: close` runs leave thousands of sockets
        // in TIME_WAIT, three per request for two relays, which slows the connection set-up of
        // whatever runs next).
        let mut others: Vec<(&str, Row)> = Vec::new();
        for p in paths.split(',') {
            let (label, addr) = match p {
                "tunnel" => ("tunnel", tunnel),
                "relay1" => ("1 relay (floor)", relay1),
                "relay2" => ("2 relays (floor)", relay2),
                _ => continue,
            };
            others.push((label, run(addr, path, close, conns, secs)));
        }
        if let Some(d) = &d {
            println!(
                "| {name} | direct | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {:.1} |  |  |",
                d.rps, d.p50_ms, d.p99_ms, d.mbps, d.errors, d.server_us, d.client_us
            );
        }
        for (label, r) in &others {
            let (ratio, added) = match &d {
                Some(d) => (
                    format!("{:.2}×", r.rps / d.rps.max(f64::MIN_POSITIVE)),
                    format!("{:.2}", r.p99_ms - d.p99_ms),
                ),
                None => (String::new(), String::new()),
            };
            println!(
                "| {name} | {label} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {:.1} | {ratio} | {added} |",
                r.rps, r.p50_ms, r.p99_ms, r.mbps, r.errors, r.server_us, r.client_us
            );
        }
        if let Some(d) = &d {
            // On a machine with spare cores for nobody else, a CPU-bound run would reach this
            // ratio: the same cores serve (client + servers) CPU time per request.
            for (label, r) in &others {
                let projected = (d.server_us + d.client_us) / (r.server_us + r.client_us);
                println!(
                    "|  | CPU-bound projection, {label} |  |  |  |  |  |  |  | {projected:.2}× |  |"
                );
            }
        }
    }
    rt.block_on(async move {
        agent.shutdown().await;
        edge.shutdown().await;
    });
}
