//! Test harness: certificates, edge/agent start-up, upstream servers and clients.

// A harness: any failure here should fail the test loudly.
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wicket_runtime::agent::{
    Agent, AgentConfig, AgentHandle, AgentOptions, AgentStatus, EndpointState,
};
use wicket_runtime::edge::{Edge, EdgeConfig, EdgeHandle, NamedToken, PortRange};
use wicket_runtime::tls::{CertPair, generate_dev_ca};

/// Upper bound for any single await in these tests.
pub const T: Duration = Duration::from_secs(60);

/// Awaits `f` with the standard timeout, panicking with `what` when it expires.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

pub const TOKEN: &str = "test-token-1";

pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca_path: PathBuf,
    pub pair: CertPair,
    pub roots: rustls::RootCertStore,
}

pub fn certs() -> Certs {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = generate_dev_ca(&[
        "example.test".into(),
        "*.example.test".into(),
        "*.apps.example.test".into(),
        "localhost".into(),
        "127.0.0.1".into(),
    ])
    .unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca).unwrap();
    std::fs::write(dir.path().join("edge.pem"), &chain).unwrap();
    std::fs::write(dir.path().join("edge-key.pem"), &key).unwrap();
    let pair = CertPair::load(
        &dir.path().join("edge.pem"),
        &dir.path().join("edge-key.pem"),
    )
    .unwrap();
    let roots = wicket_runtime::tls::root_store(std::slice::from_ref(&ca_path)).unwrap();
    Certs {
        dir,
        ca_path,
        pair,
        roots,
    }
}

pub fn edge_config(c: &Certs) -> EdgeConfig {
    let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut cfg = EdgeConfig {
        tunnel_listen: lo(0),
        http_listen: Some(lo(0)),
        https_listen: Some(lo(0)),
        metrics_listen: Some(lo(0)),
        base_domain: "example.test".into(),
        data_dir: c.dir.path().join("data"),
        tcp_listen_host: [127, 0, 0, 1].into(),
        tcp_port_range: PortRange {
            start: 42000,
            end: 42999,
        },
        authtokens: vec![NamedToken {
            name: "tester".into(),
            token: TOKEN.into(),
        }],
        ..EdgeConfig::default()
    };
    cfg.limits.heartbeat_interval = Duration::from_secs(1);
    cfg.limits.heartbeat_timeout = Duration::from_secs(3);
    cfg.limits.drain_timeout = Duration::from_secs(3);
    cfg.limits.max_connections_per_ip = 4096;
    cfg
}

pub async fn start_edge(c: &Certs, cfg: EdgeConfig) -> EdgeHandle {
    within(
        "edge start",
        Edge::builder(cfg)
            .tunnel_cert(c.pair.clone())
            .public_certs(vec![c.pair.clone()])
            .start(),
    )
    .await
    .unwrap()
}

/// Agent YAML with the given endpoints block (already indented by two spaces).
pub fn agent_yaml(c: &Certs, edge: SocketAddr, token: &str, endpoints: &str) -> String {
    format!(
        "version: 3\nagent:\n  authtoken: {token}\n  connect_url: {edge}\n  connect_cas: [{ca}]\n  heartbeat_interval: 1s\n  heartbeat_tolerance: 3s\nendpoints:\n{endpoints}",
        ca = c.ca_path.display()
    )
}

/// Starts an agent with [`TOKEN`] serving one endpoint named `web` at `url`, forwarding to `up`.
pub fn start_web_agent(
    c: &Certs,
    edge: SocketAddr,
    url: &str,
    up: impl std::fmt::Display,
) -> AgentHandle {
    let endpoints = format!("  - name: web\n    url: {url}\n    upstream: {{ url: '{up}' }}\n");
    start_agent(c, &agent_yaml(c, edge, TOKEN, &endpoints))
}

pub fn start_agent(c: &Certs, yaml: &str) -> AgentHandle {
    let cfg = AgentConfig::from_yaml(yaml, "test").unwrap();
    Agent::start(
        cfg,
        c.dir.path().to_owned(),
        AgentOptions {
            backoff_cap: Duration::from_millis(500),
            policy_poll: Duration::from_millis(100),
            ..AgentOptions::default()
        },
    )
    .unwrap()
}

/// Waits until every endpoint is bound (or refused) and returns the status.
pub async fn settled(agent: &AgentHandle) -> AgentStatus {
    within(
        "endpoints settle",
        agent.wait_for(|s| {
            s.connected
                && s.endpoints
                    .values()
                    .all(|e| !matches!(e, EndpointState::Pending))
        }),
    )
    .await
}

pub fn bound_url(s: &AgentStatus, name: &str) -> String {
    match s.endpoints.get(name) {
        Some(EndpointState::Bound { url }) => url.clone(),
        other => panic!("endpoint `{name}` not bound: {other:?}"),
    }
}

// ---------------------------------------------------------------- upstreams

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A streaming body of `n` bytes following a fixed pattern, produced lazily.
pub fn pattern_body(
    n: u64,
    chunk: usize,
    produced: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> TestBody {
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let produced = produced.clone();
        async move {
            if sent >= n {
                return None;
            }
            let len = (n - sent).min(chunk as u64) as usize;
            let data: Vec<u8> = (0..len).map(|i| ((sent + i as u64) % 251) as u8).collect();
            if let Some(p) = &produced {
                p.fetch_add(len as u64, std::sync::atomic::Ordering::SeqCst);
            }
            Some((
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(
                    Bytes::from(data),
                )),
                sent + len as u64,
            ))
        }
    });
    BodyExt::boxed(http_body_util::StreamBody::new(stream))
}

/// The test upstream: `/hello` (reports what it saw in `x-seen-*` headers), `/echo`
/// (streams the request body back), `/big/<n>` (streams n pattern bytes), `/id/<x>`.
pub async fn upstream(tag: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(route(tag, req).await)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn route(tag: &str, req: Request<Incoming>) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    let mut res = if path == "/echo" {
        Response::new(BodyExt::boxed(req.into_body().map_err(Into::into)))
    } else if let Some(n) = path.strip_prefix("/big/") {
        Response::new(pattern_body(n.parse().unwrap_or(0), 64 * 1024, None))
    } else if let Some(id) = path.strip_prefix("/id/") {
        Response::new(full(id.to_owned()))
    } else {
        let h = req.headers();
        let seen = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let wicket: Vec<String> = h
            .keys()
            .filter(|k| k.as_str().starts_with("wicket-"))
            .map(|k| k.to_string())
            .collect();
        let mut r = Response::new(full(format!("hello from {tag}")));
        let hs = r.headers_mut();
        for (k, v) in [
            ("x-seen-host", seen("host")),
            ("x-seen-xff", seen("x-forwarded-for")),
            ("x-seen-forwarded-by", seen("x-forwarded-by")),
            ("x-seen-proto", seen("x-forwarded-proto")),
            ("x-seen-fwd-host", seen("x-forwarded-host")),
            ("x-seen-wicket", wicket.join(",")),
            ("x-seen-version", format!("{:?}", req.version())),
        ] {
            hs.insert(k, v.parse().unwrap());
        }
        r
    };
    res.headers_mut().insert("x-upstream", tag.parse().unwrap());
    *res.status_mut() = StatusCode::OK;
    res
}

/// A TCP echo server.
pub async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
pub async fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------- clients

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn header(&self, n: &str) -> &str {
        self.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection to an edge listener, HTTP/1.1 or HTTP/2, plain or TLS.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

pub async fn connect(addr: SocketAddr, tls: Option<(&Certs, &str)>, h2: bool) -> Conn {
    let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    match tls {
        None => handshake(TokioIo::new(tcp), h2).await,
        Some((c, host)) => {
            let mut cfg = rustls::ClientConfig::builder()
                .with_root_certificates(c.roots.clone())
                .with_no_client_auth();
            cfg.alpn_protocols = vec![if h2 {
                b"h2".to_vec()
            } else {
                b"http/1.1".to_vec()
            }];
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
            let stream = within(
                "tls connect",
                tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
            )
            .await
            .unwrap();
            assert_eq!(
                stream.get_ref().1.alpn_protocol(),
                Some(if h2 { &b"h2"[..] } else { &b"http/1.1"[..] })
            );
            handshake(TokioIo::new(stream), h2).await
        }
    }
}

async fn handshake<I>(io: TokioIo<I>, h2: bool) -> Conn
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        let (s, conn) = within(
            "h2 handshake",
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        Conn::H2(s)
    } else {
        let (s, conn) = within("h1 handshake", hyper::client::conn::http1::handshake(io))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        Conn::H1(s)
    }
}

impl Conn {
    pub async fn send(&mut self, req: Request<TestBody>) -> Response<Incoming> {
        match self {
            Conn::H1(s) => {
                within("h1 ready", s.ready()).await.unwrap();
                within("h1 response", s.send_request(req)).await.unwrap()
            }
            Conn::H2(s) => {
                let mut req = req;
                *req.version_mut() = http::Version::HTTP_2;
                within("h2 response", s.send_request(req)).await.unwrap()
            }
        }
    }

    pub async fn get(&mut self, scheme: &str, host: &str, path: &str) -> Reply {
        let req = request(self, scheme, host, path, "GET", full(Bytes::new()));
        let res = self.send(req).await;
        collect(res).await
    }
}

pub fn request(
    conn: &Conn,
    scheme: &str,
    host: &str,
    path: &str,
    method: &str,
    body: TestBody,
) -> Request<TestBody> {
    let mut b = Request::builder().method(method);
    b = match conn {
        Conn::H1(_) => b.uri(path).header("host", host),
        Conn::H2(_) => b.uri(format!("{scheme}://{host}{path}")),
    };
    b.body(body).unwrap()
}

pub async fn collect(res: Response<Incoming>) -> Reply {
    let (parts, body) = res.into_parts();
    let body = within("body", body.collect()).await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    }
}

/// One-shot GET over a fresh connection.
pub async fn get(
    addr: SocketAddr,
    tls: Option<(&Certs, &str)>,
    h2: bool,
    host: &str,
    path: &str,
) -> Reply {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut c = connect(addr, tls, h2).await;
    c.get(scheme, host, path).await
}

/// Reads a raw stream to its end.
pub async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut v = Vec::new();
    within("read to end", r.read_to_end(&mut v)).await.unwrap();
    v
}
