//! Test harness shared by `internal.rs` and `http_request.rs` (adapted from
//! `tunnel/common.rs`): certificates, edge and agent start-up, upstreams and a client.

#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use wicket_runtime::agent::{
    Agent, AgentConfig, AgentHandle, AgentOptions, AgentStatus, EndpointState,
};
use wicket_runtime::edge::{EdgeConfig, EdgeHandle, NamedToken, PortRange};
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
}

pub fn certs() -> Certs {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = generate_dev_ca(&[
        "example.test".into(),
        "*.example.test".into(),
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
    Certs { dir, ca_path, pair }
}

pub fn edge_config(c: &Certs) -> EdgeConfig {
    let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut cfg = EdgeConfig {
        tunnel_listen: lo(0),
        http_listen: Some(lo(0)),
        https_listen: None,
        metrics_listen: None,
        admin_listen: None,
        base_domain: "example.test".into(),
        data_dir: c.dir.path().join("data"),
        tcp_listen_host: [127, 0, 0, 1].into(),
        tcp_port_range: PortRange {
            start: 43000,
            end: 43999,
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
    cfg
}

pub async fn start(c: &Certs, builder: wicket_runtime::edge::EdgeBuilder) -> EdgeHandle {
    within("edge start", builder.tunnel_cert(c.pair.clone()).start())
        .await
        .unwrap()
}

pub async fn start_edge(c: &Certs, cfg: EdgeConfig) -> EdgeHandle {
    start(c, wicket_runtime::edge::Edge::builder(cfg)).await
}

/// Agent YAML with the given endpoints block (already indented by two spaces).
pub fn agent_yaml(c: &Certs, edge: SocketAddr, token: &str, endpoints: &str) -> String {
    format!(
        "version: 3\nagent:\n  authtoken: {token}\n  connect_url: {edge}\n  connect_cas: [{ca}]\n  heartbeat_interval: 1s\n  heartbeat_tolerance: 3s\nendpoints:\n{endpoints}",
        ca = c.ca_path.display()
    )
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

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// Serves `handler` on 127.0.0.1:0 (HTTP/1.1 and HTTP/2).
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<TestBody>> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// An upstream that answers `hello from <tag>` and reports what it saw in `x-seen-*` headers.
pub async fn upstream(tag: &'static str) -> SocketAddr {
    serve(move |req: Request<Incoming>| async move {
        let h = req.headers();
        let seen = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let mut r = Response::new(full(format!("hello from {tag}")));
        let hs = r.headers_mut();
        for (k, v) in [
            ("x-seen-host", seen("host")),
            ("x-seen-xff", seen("x-forwarded-for")),
            ("x-seen-path", req.uri().path().to_owned()),
            ("x-upstream", tag.to_owned()),
        ] {
            hs.insert(k, v.parse().unwrap());
        }
        *r.status_mut() = StatusCode::OK;
        r
    })
    .await
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
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

/// One GET over a fresh HTTP/1.1 connection to `addr` with `Host: host`.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (mut s, conn) = within(
        "handshake",
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = within(
        "response",
        s.send_request(b.body(full(Bytes::new())).unwrap()),
    )
    .await
    .unwrap();
    let (parts, body) = res.into_parts();
    let body = within("body", body.collect()).await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}
