//! The edge + agent set-up shared by the policy-action tests (`jwt_jwks.rs`, `webhook.rs`):
//! generated certificates, an edge with a plain-HTTP public listener, and an agent serving
//! `http://<name>.example.test` endpoints with the given policies.

// Test code: failures should be loud.
#![allow(clippy::unwrap_used, dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wicket_runtime::agent::{
    Agent, AgentConfig, AgentHandle, AgentOptions, AgentStatus, EndpointState,
};
use wicket_runtime::edge::{Edge, EdgeConfig, EdgeHandle, NamedToken, PortRange};
use wicket_runtime::tls::{CertPair, generate_dev_ca};

pub const T: Duration = Duration::from_secs(60);
pub const TOKEN: &str = "test-token-1";

pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

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

pub async fn start_edge(c: &Certs) -> EdgeHandle {
    let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut cfg = EdgeConfig {
        tunnel_listen: lo(0),
        http_listen: Some(lo(0)),
        https_listen: None,
        metrics_listen: None,
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
    within(
        "edge start",
        Edge::builder(cfg).tunnel_cert(c.pair.clone()).start(),
    )
    .await
    .unwrap()
}

/// Starts an agent serving `(name, policy)` endpoints at `http://<name>.example.test`, all
/// forwarding to `up`; each policy is written to `<name>.yml`.
pub async fn start_agent(
    c: &Certs,
    edge: SocketAddr,
    up: SocketAddr,
    eps: &[(&str, String)],
) -> AgentHandle {
    let mut endpoints = String::new();
    for (name, policy) in eps {
        std::fs::write(c.dir.path().join(format!("{name}.yml")), policy).unwrap();
        endpoints.push_str(&format!(
            "  - name: {name}\n    url: http://{name}.example.test\n    upstream: {{ url: 'http://{up}' }}\n    traffic_policy_file: {name}.yml\n"
        ));
    }
    let yaml = format!(
        "version: 3\nagent:\n  authtoken: {TOKEN}\n  connect_url: {edge}\n  connect_cas: [{ca}]\n  heartbeat_interval: 1s\n  heartbeat_tolerance: 3s\nendpoints:\n{endpoints}",
        ca = c.ca_path.display()
    );
    let agent = Agent::start(
        AgentConfig::from_yaml(&yaml, "test").unwrap(),
        c.dir.path().to_owned(),
        AgentOptions {
            backoff_cap: Duration::from_millis(500),
            ..AgentOptions::default()
        },
    )
    .unwrap();
    let st: AgentStatus = within(
        "endpoints settle",
        agent.wait_for(|s| {
            s.connected
                && s.endpoints
                    .values()
                    .all(|e| !matches!(e, EndpointState::Pending))
        }),
    )
    .await;
    for (name, _) in eps {
        assert!(
            matches!(st.endpoints.get(*name), Some(EndpointState::Bound { .. })),
            "endpoint `{name}` not bound: {:?}",
            st.endpoints.get(*name)
        );
    }
    agent
}

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}
