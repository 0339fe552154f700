//! The edge and the agent: configuration, start-up, waiting for endpoints, and [`Stack`].

use std::net::SocketAddr;
use std::time::Duration;

use wicket_runtime::agent::{
    Agent, AgentConfig, AgentHandle, AgentOptions, AgentStatus, EndpointState,
};
use wicket_runtime::edge::{
    Edge, EdgeAddrs, EdgeBuilder, EdgeConfig, EdgeHandle, NamedToken, PortRange,
};

use super::net::{T, within};
use super::tls::{Certs, certs};

/// The authtoken the edge of [`edge_config`] accepts (as `tester`).
pub const TOKEN: &str = "test-token-1";

/// An edge on 127.0.0.1 (tunnel, HTTP, HTTPS and metrics listeners on port 0) for the base
/// domain `example.test`, accepting [`TOKEN`], with its data in the certificates' directory,
/// TCP endpoints on ports 42000-42999, short heartbeats and drain, and a high per-IP
/// connection limit.
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

/// Starts `builder` with the edge certificate on the tunnel and the public TLS listener.
pub async fn start_edge_with(c: &Certs, builder: EdgeBuilder) -> EdgeHandle {
    within(
        "edge start",
        builder
            .tunnel_cert(c.pair.clone())
            .public_certs(vec![c.pair.clone()])
            .start(),
    )
    .await
    .unwrap()
}

/// Starts an edge with `cfg` and the edge certificate.
pub async fn start_edge(c: &Certs, cfg: EdgeConfig) -> EdgeHandle {
    start_edge_with(c, Edge::builder(cfg)).await
}

/// Starts an edge with `cfg` on the listeners of a stopped one (`addrs`), without a metrics
/// listener: an edge restart under a running agent.
pub async fn restart_edge(c: &Certs, mut cfg: EdgeConfig, addrs: &EdgeAddrs) -> EdgeHandle {
    cfg.tunnel_listen = addrs.tunnel;
    cfg.http_listen = addrs.http;
    cfg.https_listen = addrs.https;
    cfg.metrics_listen = None;
    start_edge(c, cfg).await
}

/// Agent YAML with the given endpoints block (already indented by two spaces).
pub fn agent_yaml(c: &Certs, edge: SocketAddr, token: &str, endpoints: &str) -> String {
    format!(
        "version: 3\nagent:\n  authtoken: {token}\n  connect_url: {edge}\n  connect_cas: [{ca}]\n  heartbeat_interval: 1s\n  heartbeat_tolerance: 3s\nendpoints:\n{endpoints}",
        ca = c.ca_path.display()
    )
}

/// One item of an agent's `endpoints` list forwarding `url` to `up`, with the policy file
/// `policy` (relative to the agent's directory) if given.
pub fn endpoint_yaml(
    name: &str,
    url: &str,
    up: impl std::fmt::Display,
    policy: Option<&str>,
) -> String {
    let mut s = format!("  - name: {name}\n    url: {url}\n    upstream: {{ url: '{up}' }}\n");
    if let Some(p) = policy {
        s.push_str(&format!("    traffic_policy_file: {p}\n"));
    }
    s
}

/// Starts an agent with [`TOKEN`] serving the `endpoints` items (YAML, indented by two
/// spaces), connecting to the edge's tunnel listener `tunnel`.
pub fn start_endpoints(c: &Certs, tunnel: SocketAddr, endpoints: &str) -> AgentHandle {
    start_agent(c, &agent_yaml(c, tunnel, TOKEN, endpoints))
}

/// Starts an agent from `yaml` in the certificates' directory, with a short reconnect backoff
/// and policy-file poll.
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

/// Waits until the agent is connected and every endpoint is bound (or refused); returns the
/// status.
pub async fn settled(agent: &AgentHandle) -> AgentStatus {
    let wait = agent.wait_for(|s| {
        s.connected
            && s.endpoints
                .values()
                .all(|e| !matches!(e, EndpointState::Pending))
    });
    match tokio::time::timeout(T, wait).await {
        Ok(s) => s,
        Err(_) => panic!("endpoints did not settle: {:?}", *agent.status().borrow()),
    }
}

/// Starts an edge with `cfg`, then an agent with [`TOKEN`] serving the `endpoints` items
/// (YAML, indented by two spaces), and waits for them to settle: the pieces, for tests that
/// stop, restart or inspect them one by one (see [`Stack`] for one value).
pub async fn edge_and_agent(
    c: &Certs,
    cfg: EdgeConfig,
    endpoints: &str,
) -> (EdgeHandle, AgentHandle, AgentStatus) {
    let edge = start_edge(c, cfg).await;
    let agent = start_endpoints(c, edge.addrs().tunnel, endpoints);
    let status = settled(&agent).await;
    (edge, agent, status)
}

/// [`edge_and_agent`] with one endpoint named `web` at `url`, forwarding to `up`, bound.
pub async fn edge_and_web_agent(
    c: &Certs,
    cfg: EdgeConfig,
    url: &str,
    up: impl std::fmt::Display,
) -> (EdgeHandle, AgentHandle) {
    let (edge, agent, status) = edge_and_agent(c, cfg, &endpoint_yaml("web", url, up, None)).await;
    bound_url(&status, "web");
    (edge, agent)
}

/// The URL endpoint `name` is bound at; panics when it is not bound.
pub fn bound_url(s: &AgentStatus, name: &str) -> String {
    match s.endpoints.get(name) {
        Some(EndpointState::Bound { url }) => url.clone(),
        other => panic!("endpoint `{name}` not bound: {other:?}"),
    }
}

/// Panics unless every endpoint in `names` is bound.
pub fn assert_bound(s: &AgentStatus, names: &[&str]) {
    for name in names {
        bound_url(s, name);
    }
}

// ---------------------------------------------------------------- the whole stack

/// An edge and one agent, started with [`Stack::builder`], the agent settled.
pub struct Stack {
    /// The certificates; their directory is the agent's.
    pub certs: Certs,
    /// The edge.
    pub edge: EdgeHandle,
    /// The agent.
    pub agent: AgentHandle,
    /// The agent's status once every endpoint was bound (or refused).
    pub status: AgentStatus,
}

type ConfigTweak = Box<dyn FnOnce(&mut EdgeConfig)>;
type BuilderTweak = Box<dyn FnOnce(EdgeBuilder) -> EdgeBuilder>;

/// Builds a [`Stack`]: the certificates (default [`certs`]), the edge (default
/// [`edge_config`] and the edge certificate, both open to changes), and the agent's endpoints,
/// with their policies written beside the agent.
#[must_use]
pub struct StackBuilder {
    certs: Option<Certs>,
    config: Vec<ConfigTweak>,
    builder: Vec<BuilderTweak>,
    endpoints: String,
    policies: Vec<(String, String)>,
    allow_refused: bool,
}

impl Stack {
    /// A builder with the defaults and no endpoints.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            certs: None,
            config: Vec::new(),
            builder: Vec::new(),
            endpoints: String::new(),
            policies: Vec::new(),
            allow_refused: false,
        }
    }

    /// The edge's plain HTTP listener.
    pub fn http(&self) -> SocketAddr {
        self.edge
            .addrs()
            .http
            .expect("the edge has an HTTP listener")
    }

    /// The edge's HTTPS listener.
    pub fn https(&self) -> SocketAddr {
        self.edge
            .addrs()
            .https
            .expect("the edge has an HTTPS listener")
    }

    /// Shuts the agent down, then the edge.
    pub async fn shutdown(self) {
        self.agent.shutdown().await;
        self.edge.shutdown().await;
    }
}

impl StackBuilder {
    /// Uses `c` instead of fresh [`certs`] (files the endpoints refer to can be put in its
    /// directory first).
    pub fn certs(mut self, c: Certs) -> Self {
        self.certs = Some(c);
        self
    }

    /// Changes the edge configuration (after [`edge_config`]).
    pub fn edge_config(mut self, f: impl FnOnce(&mut EdgeConfig) + 'static) -> Self {
        self.config.push(Box::new(f));
        self
    }

    /// Changes the edge builder (before the certificates are added), e.g. its action
    /// environment.
    pub fn edge_builder(mut self, f: impl FnOnce(EdgeBuilder) -> EdgeBuilder + 'static) -> Self {
        self.builder.push(Box::new(f));
        self
    }

    /// An endpoint `name` at `url` forwarding to `up` with `policy` (YAML or JSON), written to
    /// `<name>.yml` beside the agent.
    pub fn policy_endpoint(
        mut self,
        name: &str,
        url: &str,
        up: impl std::fmt::Display,
        policy: impl Into<String>,
    ) -> Self {
        let file = format!("{name}.yml");
        self.endpoints
            .push_str(&endpoint_yaml(name, url, up, Some(&file)));
        self.policies.push((file, policy.into()));
        self
    }

    /// Endpoint items as raw YAML (indented by two spaces), for settings the other methods do
    /// not cover.
    pub fn endpoints_yaml(mut self, yaml: &str) -> Self {
        self.endpoints.push_str(yaml);
        self
    }

    /// Accepts endpoints the edge refuses (by default every endpoint must be bound).
    pub fn allow_refused(mut self) -> Self {
        self.allow_refused = true;
        self
    }

    /// Starts the edge, writes the policies, starts the agent with [`TOKEN`] and waits for
    /// every endpoint to be bound (or refused, with [`StackBuilder::allow_refused`]).
    pub async fn start(self) -> Stack {
        let c = self.certs.unwrap_or_else(certs);
        let mut cfg = edge_config(&c);
        for f in self.config {
            f(&mut cfg);
        }
        let mut builder = Edge::builder(cfg);
        for f in self.builder {
            builder = f(builder);
        }
        let edge = start_edge_with(&c, builder).await;
        for (file, policy) in &self.policies {
            std::fs::write(c.dir.path().join(file), policy).unwrap();
        }
        let agent = start_endpoints(&c, edge.addrs().tunnel, &self.endpoints);
        let status = settled(&agent).await;
        if !self.allow_refused {
            for name in status.endpoints.keys() {
                bound_url(&status, name);
            }
        }
        Stack {
            certs: c,
            edge,
            agent,
            status,
        }
    }
}

/// A [`Stack`] serving the `(name, policy)` endpoints at `http://<name>.example.test`, all
/// forwarding to `up`, every one bound.
pub async fn policy_stack(up: SocketAddr, eps: &[(&str, String)]) -> Stack {
    let mut b = Stack::builder();
    for (name, policy) in eps {
        b = b.policy_endpoint(
            name,
            &format!("http://{name}.example.test"),
            format!("http://{up}"),
            policy.clone(),
        );
    }
    b.start().await
}
