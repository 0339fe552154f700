//! The edge: accepts agent sessions on the tunnel listener and public traffic on the HTTP,
//! HTTPS/TLS and TCP listeners, and forwards each public connection or request through a
//! stream of the session that bound its endpoint.

mod config;
mod public;
mod registry;
mod scope;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use config::{CertFiles, EdgeConfig, Limits, NamedToken, PortRange, ScopedPolicyFile};

use crate::actions::ActionEnv;
use crate::auth::{Authenticator, StaticTokens};
use crate::engine_policy::EngineCompiler;
use crate::metrics::Metrics;
use crate::policy_hook::{
    ConnDecision, ConnInfo, EndpointPolicy, PolicyCompiler, ReqDecision, ResDecision,
};
use crate::proto::control::{BindRequest, EndpointProto, PolicySource, Refusal};
use crate::routing::HostPattern;
use crate::tls::{CertPair, DevCa, SniResolver, TlsError};
use registry::{AbortOnDrop, Endpoint, Registry, RouteKey, SessionLink};

/// Errors starting the edge.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificates could not be loaded or generated.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The edge-wide policy was refused.
    #[error("edge-wide policy `{origin}` refused: {message}")]
    Policy {
        /// The policy file.
        origin: String,
        /// Why.
        message: String,
    },
    /// The configuration is inconsistent.
    #[error("invalid edge configuration: {0}")]
    Config(String),
    /// The facilities of external actions could not be set up.
    #[error(transparent)]
    Actions(#[from] crate::actions::ActionEnvError),
}

/// Builds and starts an edge.
#[derive(Debug)]
pub struct EdgeBuilder {
    config: EdgeConfig,
    authenticator: Option<Arc<dyn Authenticator>>,
    compiler: Option<Arc<dyn PolicyCompiler>>,
    action_env: Option<Arc<ActionEnv>>,
    tunnel_cert: Option<CertPair>,
    public_certs: Vec<CertPair>,
}

impl EdgeBuilder {
    /// Replaces the authenticator (default: the config's `authtokens`).
    pub fn authenticator(mut self, a: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(a);
        self
    }

    /// Replaces the policy compiler (default: [`EngineCompiler`]).
    pub fn policy_compiler(mut self, c: Arc<dyn PolicyCompiler>) -> Self {
        self.compiler = Some(c);
        self
    }

    /// Replaces the facilities of external actions (default: built from the config, with the
    /// secret in the data directory and the system roots) — e.g. to trust a test CA.
    pub fn action_env(mut self, env: Arc<ActionEnv>) -> Self {
        self.action_env = Some(env);
        self
    }

    /// Uses this certificate for the tunnel listener instead of the configured/dev one.
    pub fn tunnel_cert(mut self, pair: CertPair) -> Self {
        self.tunnel_cert = Some(pair);
        self
    }

    /// Uses these certificates for public HTTPS instead of the configured/dev ones.
    pub fn public_certs(mut self, pairs: Vec<CertPair>) -> Self {
        self.public_certs = pairs;
        self
    }

    /// Binds every listener and starts serving.
    pub async fn start(self) -> Result<EdgeHandle, EdgeError> {
        let cfg = self.config;
        if cfg.tcp_port_range.end < cfg.tcp_port_range.start {
            return Err(EdgeError::Config("tcp_port_range is empty".into()));
        }
        let compiler: Arc<dyn PolicyCompiler> = match self.compiler {
            Some(c) => c,
            None => {
                let env = match self.action_env {
                    Some(env) => env,
                    None => Arc::new(ActionEnv::load(
                        &cfg.data_dir,
                        &cfg.outbound_cas,
                        cfg.http_request_allow.clone(),
                    )?),
                };
                Arc::new(EngineCompiler::new(env))
            }
        };
        let mut dev: Option<DevCa> = None;
        let mut dev_ca = |cfg: &EdgeConfig| -> Result<CertPair, TlsError> {
            if dev.is_none() {
                dev = Some(DevCa::load_or_create(&cfg.data_dir, &cfg.base_domain)?);
            }
            dev.as_ref()
                .map(|d| d.leaf.clone())
                .ok_or_else(|| TlsError::NoRoots("development certificate unavailable".into()))
        };
        let tunnel_cert = match (self.tunnel_cert, &cfg.tunnel_certificate) {
            (Some(p), _) => p,
            (None, Some(f)) => CertPair::load(&f.cert, &f.key)?,
            (None, None) => dev_ca(&cfg)?,
        };
        let public_certs = if !self.public_certs.is_empty() {
            self.public_certs
        } else if !cfg.certificates.is_empty() {
            cfg.certificates
                .iter()
                .map(|f| CertPair::load(&f.cert, &f.key))
                .collect::<Result<_, _>>()?
        } else if cfg.https_listen.is_some() {
            vec![dev_ca(&cfg)?]
        } else {
            Vec::new()
        };
        let edge_policy = match &cfg.policy_file {
            None => None,
            Some(path) => Some(load_edge_policy(compiler.as_ref(), path)?),
        };
        let scoped_policies = cfg
            .policies
            .iter()
            .map(|sp| {
                if sp.endpoints.is_empty() {
                    return Err(EdgeError::Config(format!(
                        "policy `{}` lists no endpoints (use `policy_file` for every endpoint)",
                        sp.file.display()
                    )));
                }
                let patterns = sp
                    .endpoints
                    .iter()
                    .map(|p| scope::EndpointPattern::parse(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(EdgeError::Config)?;
                Ok((patterns, load_edge_policy(compiler.as_ref(), &sp.file)?))
            })
            .collect::<Result<Vec<_>, EdgeError>>()?;
        let authenticator = self.authenticator.unwrap_or_else(|| {
            Arc::new(StaticTokens::new(
                cfg.authtokens
                    .iter()
                    .map(|t| (t.name.clone(), t.token.clone())),
            ))
        });

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| EdgeError::Listen { addr, source })
        };
        let tunnel = bind(cfg.tunnel_listen).await?;
        let http = match cfg.http_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let https = match cfg.https_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let metrics_l = match cfg.metrics_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let local = |l: &TcpListener, a: SocketAddr| {
            l.local_addr()
                .map_err(|source| EdgeError::Listen { addr: a, source })
        };
        let addrs = EdgeAddrs {
            tunnel: local(&tunnel, cfg.tunnel_listen)?,
            http: match (&http, cfg.http_listen) {
                (Some(l), Some(a)) => Some(local(l, a)?),
                _ => None,
            },
            https: match (&https, cfg.https_listen) {
                (Some(l), Some(a)) => Some(local(l, a)?),
                _ => None,
            },
            metrics: match (&metrics_l, cfg.metrics_listen) {
                (Some(l), Some(a)) => Some(local(l, a)?),
                _ => None,
            },
        };

        let tunnel_tls = Arc::new(crate::tls::tunnel_server_config(&tunnel_cert)?);
        let public_tls = if public_certs.is_empty() {
            None
        } else {
            let resolver = Arc::new(SniResolver::new(&public_certs)?);
            Some(Arc::new(crate::tls::public_server_config(resolver)?))
        };

        let (shutdown_tx, shutdown_rx) = watch::channel(RUNNING);
        let shared = Arc::new(Shared {
            cfg,
            registry: Mutex::new(Registry::default()),
            auth: authenticator,
            compiler,
            edge_policy,
            scoped_policies,
            metrics: Arc::new(Metrics::default()),
            per_ip: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            shutdown: shutdown_rx,
            public_tls,
        });

        let mut tasks = JoinSet::new();
        tasks.spawn(session::serve_tunnel(shared.clone(), tunnel, tunnel_tls));
        if let Some(l) = http {
            tasks.spawn(public::serve_http(shared.clone(), l));
        }
        if let Some(l) = https {
            tasks.spawn(public::serve_https(shared.clone(), l));
        }
        if let Some(l) = metrics_l {
            tasks.spawn(public::serve_metrics(shared.clone(), l));
        }
        tracing::info!(tunnel = %addrs.tunnel, http = ?addrs.http, https = ?addrs.https, "edge started");
        Ok(EdgeHandle {
            shared,
            addrs,
            shutdown_tx,
            tasks,
        })
    }
}

/// The edge.
#[derive(Debug)]
pub struct Edge;

impl Edge {
    /// Starts building an edge from `config`.
    pub fn builder(config: EdgeConfig) -> EdgeBuilder {
        EdgeBuilder {
            config,
            authenticator: None,
            compiler: None,
            action_env: None,
            tunnel_cert: None,
            public_certs: Vec::new(),
        }
    }
}

/// The addresses the edge actually listens on (useful with port 0).
#[derive(Debug, Clone, Copy)]
pub struct EdgeAddrs {
    /// Tunnel listener.
    pub tunnel: SocketAddr,
    /// Public HTTP listener.
    pub http: Option<SocketAddr>,
    /// Public HTTPS/TLS listener.
    pub https: Option<SocketAddr>,
    /// Metrics listener.
    pub metrics: Option<SocketAddr>,
}

/// A running edge. Dropping it without [`EdgeHandle::shutdown`] aborts everything.
#[derive(Debug)]
pub struct EdgeHandle {
    shared: Arc<Shared>,
    addrs: EdgeAddrs,
    shutdown_tx: watch::Sender<u8>,
    tasks: JoinSet<()>,
}

impl EdgeHandle {
    /// Listening addresses.
    pub fn addrs(&self) -> EdgeAddrs {
        self.addrs
    }

    /// Metrics of this edge.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Number of connected agent sessions.
    pub fn session_count(&self) -> i64 {
        self.shared.metrics.sessions_active.load(Ordering::Relaxed)
    }

    /// Graceful shutdown: stops accepting, asks every agent to drain (GOAWAY) and waits up to
    /// the drain timeout for sessions to close, then closes everything.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(DRAINING);
        let drain = self.shared.cfg.limits.drain_timeout;
        let metrics = self.shared.metrics.clone();
        let _ = tokio::time::timeout(drain, async {
            while metrics.sessions_active.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        let _ = self.shutdown_tx.send(STOPPED);
        self.tasks.abort_all();
        self.shared.registry().clear();
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("edge stopped");
    }
}

impl Drop for EdgeHandle {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(STOPPED);
        self.tasks.abort_all();
        if let Ok(mut r) = self.shared.registry.lock() {
            r.clear();
        }
    }
}

/// State shared by every task of one edge.
#[derive(Debug)]
pub(crate) struct Shared {
    cfg: EdgeConfig,
    registry: Mutex<Registry>,
    auth: Arc<dyn Authenticator>,
    compiler: Arc<dyn PolicyCompiler>,
    edge_policy: Option<Arc<dyn EndpointPolicy>>,
    /// Edge-wide policies for the endpoints matching their patterns, after `edge_policy`.
    scoped_policies: Vec<(Vec<scope::EndpointPattern>, Arc<dyn EndpointPolicy>)>,
    metrics: Arc<Metrics>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    next_id: AtomicU64,
    shutdown: watch::Receiver<u8>,
    public_tls: Option<Arc<rustls::ServerConfig>>,
}

/// Shutdown states broadcast to every task.
pub(crate) const RUNNING: u8 = 0;
/// Stop accepting; sessions drain.
pub(crate) const DRAINING: u8 = 1;
/// Close everything now.
pub(crate) const STOPPED: u8 = 2;

/// Refusal codes sent back on the control stream.
pub mod codes {
    /// The URL is malformed or does not match the protocol.
    pub const BAD_URL: &str = "ERR_WICKET_4200";
    /// Another agent owns the endpoint.
    pub const TAKEN: &str = "ERR_WICKET_4201";
    /// No free port in the TCP range, or the port is outside it.
    pub const NO_PORT: &str = "ERR_WICKET_4202";
    /// The authtoken may not bind this URL.
    pub const FORBIDDEN: &str = "ERR_WICKET_4203";
    /// Unknown endpoint id in unbind/update.
    pub const UNKNOWN: &str = "ERR_WICKET_4204";
    /// Authentication failed at the hello.
    pub const AUTH: &str = "ERR_WICKET_4100";
    /// Unsupported protocol version.
    pub const VERSION: &str = "ERR_WICKET_4101";
}

fn refusal(code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        code: code.into(),
        message: message.into(),
        diagnostics: Vec::new(),
    }
}

/// A session's identity as needed for binding.
#[derive(Debug, Clone)]
pub(crate) struct SessionCtx {
    pub link: SessionLink,
    pub owner: String,
    pub resume: String,
    pub lease: Arc<dyn crate::auth::SessionLease>,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the table half-updated in a way that
        // matters more than refusing all traffic would, so recover the guard.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connection from `ip`; `None` when over the limit. The guard un-counts it.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpGuard> {
        let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= self.cfg.limits.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(IpGuard {
            shared: self.clone(),
            ip,
        })
    }

    /// The policy chain of endpoint `url`: the edge-wide policy, the scoped edge-wide
    /// policies whose patterns match `url` (in configuration order), then its own `policy`.
    fn compile(
        &self,
        policy: Option<&PolicySource>,
        proto: EndpointProto,
        url: &str,
    ) -> Result<Arc<dyn EndpointPolicy>, Refusal> {
        let own: Option<Arc<dyn EndpointPolicy>> = match policy {
            Some(src) => Some(self.compiler.compile(src, proto)?),
            None => None,
        };
        let chain = self
            .edge_policy
            .iter()
            .chain(
                self.scoped_policies
                    .iter()
                    .filter(|(patterns, _)| patterns.iter().any(|p| p.matches(proto, url)))
                    .map(|(_, p)| p),
            )
            .chain(own.as_ref())
            .cloned()
            .rev()
            .reduce(|next, first| Arc::new(Chain(first, next)));
        Ok(chain.unwrap_or_else(|| Arc::new(crate::policy_hook::PassThrough)))
    }

    /// Handles a bind request from a session.
    fn bind(
        self: &Arc<Self>,
        sess: &SessionCtx,
        req: &BindRequest,
    ) -> Result<(String, String), Refusal> {
        let (key, url) = self.resolve_url(req)?;
        self.auth
            .authorize_bind(&crate::auth::Principal::named(sess.owner.clone()), &url)
            .map_err(|e| refusal(codes::FORBIDDEN, e.to_string()))?;
        let policy = self.compile(req.policy.as_ref(), req.proto, &url)?;
        let mut reg = self.registry();
        reg.expire(self.cfg.limits.offline_retention);
        if let Some(id) = reg.find(&key).map(str::to_owned) {
            let Some(ep) = reg.endpoints.get_mut(&id) else {
                return Err(refusal(codes::UNKNOWN, "endpoint table inconsistent"));
            };
            if ep.owner != sess.owner {
                return Err(refusal(
                    codes::TAKEN,
                    format!("`{url}` is bound by another agent"),
                ));
            }
            let live_elsewhere = ep.session.as_ref().is_some_and(|s| s.id != sess.link.id);
            if live_elsewhere && ep.resume != sess.resume {
                return Err(refusal(
                    codes::TAKEN,
                    format!("`{url}` is already bound by another session of this authtoken"),
                ));
            }
            ep.session = Some(sess.link.clone());
            ep.resume = sess.resume.clone();
            ep.policy = policy;
            ep.offline_since = None;
            tracing::info!(endpoint = %ep.url, id = %ep.id, "endpoint re-bound");
            return Ok((ep.id.clone(), ep.url.clone()));
        }
        let id = format!("ep_{:x}{:08x}", self.next_id(), rand::random::<u32>());
        let listener = match key {
            RouteKey::Port(port) => {
                let std_l =
                    std::net::TcpListener::bind(SocketAddr::new(self.cfg.tcp_listen_host, port))
                        .and_then(|l| l.set_nonblocking(true).map(|()| l))
                        .map_err(|e| {
                            refusal(codes::NO_PORT, format!("cannot listen on port {port}: {e}"))
                        })?;
                let l = TcpListener::from_std(std_l).map_err(|e| {
                    refusal(codes::NO_PORT, format!("cannot listen on port {port}: {e}"))
                })?;
                Some(AbortOnDrop(tokio::spawn(public::serve_tcp_endpoint(
                    self.clone(),
                    l,
                ))))
            }
            RouteKey::Host(..) | RouteKey::Internal(..) => None,
        };
        tracing::info!(endpoint = %url, id = %id, owner = %sess.owner, "endpoint bound");
        reg.insert(Endpoint {
            id: id.clone(),
            url: url.clone(),
            proto: req.proto,
            key,
            owner: sess.owner.clone(),
            resume: sess.resume.clone(),
            session: Some(sess.link.clone()),
            policy,
            offline_since: None,
            _listener: listener,
        });
        Ok((id, url))
    }

    /// Removes an endpoint bound by this session.
    fn unbind(&self, sess: &SessionCtx, id: &str) -> Result<(), Refusal> {
        let mut reg = self.registry();
        match reg.endpoints.get(id) {
            Some(ep) if ep.session.as_ref().is_some_and(|s| s.id == sess.link.id) => {
                reg.remove(id);
                Ok(())
            }
            _ => Err(refusal(
                codes::UNKNOWN,
                format!("no endpoint `{id}` in this session"),
            )),
        }
    }

    /// Replaces an endpoint's policy; in-flight requests keep the old one.
    fn update_policy(
        &self,
        sess: &SessionCtx,
        id: &str,
        policy: Option<&PolicySource>,
    ) -> Result<(), Refusal> {
        let (proto, url) = {
            let reg = self.registry();
            match reg.endpoints.get(id) {
                Some(ep) if ep.session.as_ref().is_some_and(|s| s.id == sess.link.id) => {
                    (ep.proto, ep.url.clone())
                }
                _ => {
                    return Err(refusal(
                        codes::UNKNOWN,
                        format!("no endpoint `{id}` in this session"),
                    ));
                }
            }
        };
        let compiled = self.compile(policy, proto, &url)?;
        if let Some(ep) = self.registry().endpoints.get_mut(id) {
            ep.policy = compiled;
        }
        Ok(())
    }

    /// Works out the route key and canonical URL of a bind.
    fn resolve_url(&self, req: &BindRequest) -> Result<(RouteKey, String), Refusal> {
        let scheme = req.proto.scheme();
        let rest = match &req.url {
            None => None,
            Some(u) => {
                let (s, rest) = u.split_once("://").unwrap_or((scheme, u.as_str()));
                if !s.eq_ignore_ascii_case(scheme) {
                    return Err(refusal(
                        codes::BAD_URL,
                        format!("url `{u}` does not match protocol `{scheme}`"),
                    ));
                }
                let rest = rest.trim_end_matches('/');
                if rest.contains('/') || rest.contains('?') || rest.contains('@') {
                    return Err(refusal(
                        codes::BAD_URL,
                        format!("url `{u}` must not have a path"),
                    ));
                }
                Some(rest.to_owned())
            }
        };
        if let Some(rest) = rest.as_deref()
            && let Some(internal) = self.resolve_internal(req.proto, rest)?
        {
            return Ok(internal);
        }
        match req.proto {
            EndpointProto::Tcp => {
                let port = match rest.as_deref().and_then(|r| r.rsplit_once(':')) {
                    Some((_, p)) => {
                        let port: u16 = p
                            .parse()
                            .map_err(|_| refusal(codes::BAD_URL, format!("invalid port `{p}`")))?;
                        let r = self.cfg.tcp_port_range;
                        if port < r.start || port > r.end {
                            return Err(refusal(
                                codes::NO_PORT,
                                format!(
                                    "port {port} is outside the edge's range {}-{}",
                                    r.start, r.end
                                ),
                            ));
                        }
                        port
                    }
                    None => self.free_port()?,
                };
                Ok((
                    RouteKey::Port(port),
                    format!("tcp://{}:{port}", self.cfg.base_domain),
                ))
            }
            proto => {
                let host = match rest {
                    Some(h) => {
                        if h.contains(':') {
                            return Err(refusal(
                                codes::BAD_URL,
                                format!(
                                    "url `{h}` must not carry a port (the edge's listeners decide)"
                                ),
                            ));
                        }
                        h
                    }
                    None => format!("{:08x}.{}", rand::random::<u32>(), self.cfg.base_domain),
                };
                let pattern = HostPattern::parse(&host)
                    .map_err(|e| refusal(codes::BAD_URL, e.to_string()))?;
                let url = format!("{scheme}://{pattern}");
                Ok((RouteKey::Host(proto, pattern), url))
            }
        }
    }

    /// The route key and URL of an internal endpoint (`scheme://name.internal[:port]`), or
    /// `None` when `rest` (the URL without its scheme) is not an internal name.
    fn resolve_internal(
        &self,
        proto: EndpointProto,
        rest: &str,
    ) -> Result<Option<(RouteKey, String)>, Refusal> {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let pattern = match HostPattern::parse(host) {
            Ok(p) if registry::is_internal_host(&p.to_string()) => p,
            _ => return Ok(None),
        };
        let default_port = match proto {
            EndpointProto::Http => 80,
            EndpointProto::Https => 443,
            EndpointProto::Tcp | EndpointProto::Tls => {
                return Err(refusal(
                    codes::BAD_URL,
                    format!(
                        "internal `{}` endpoints are not supported by this edge (only `http` and `https`)",
                        proto.scheme()
                    ),
                ));
            }
        };
        let name = pattern.to_string();
        let labels = name.split('.').count() - 1;
        if labels == 0 || labels > 5 {
            return Err(refusal(
                codes::BAD_URL,
                format!("internal endpoint `{name}` needs 1 to 5 labels before `.internal`"),
            ));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(refusal(codes::BAD_URL, format!("invalid port `{p}`"))),
            },
        };
        let scheme = proto.scheme();
        let url = if port == default_port {
            format!("{scheme}://{name}")
        } else {
            format!("{scheme}://{name}:{port}")
        };
        Ok(Some((RouteKey::Internal(proto, pattern, port), url)))
    }

    fn free_port(&self) -> Result<u16, Refusal> {
        let r = self.cfg.tcp_port_range;
        let reg = self.registry();
        let span = u32::from(r.end - r.start) + 1;
        let offset = rand::random::<u32>() % span;
        for i in 0..span {
            let Ok(port) = u16::try_from(u32::from(r.start) + (offset + i) % span) else {
                continue;
            };
            if reg.port_in_use(port) {
                continue;
            }
            if std::net::TcpListener::bind(SocketAddr::new(self.cfg.tcp_listen_host, port)).is_ok()
            {
                return Ok(port);
            }
        }
        Err(refusal(
            codes::NO_PORT,
            "no free port in the edge's tcp range",
        ))
    }
}

/// Reads and compiles an edge-wide policy file.
fn load_edge_policy(
    compiler: &dyn PolicyCompiler,
    path: &std::path::Path,
) -> Result<Arc<dyn EndpointPolicy>, EdgeError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| EdgeError::Policy {
        origin: origin.clone(),
        message: e.to_string(),
    })?;
    let src = PolicySource {
        origin: origin.clone(),
        text,
    };
    compiler
        .compile(&src, EndpointProto::Https)
        .map_err(|r| EdgeError::Policy {
            origin,
            message: std::iter::once(r.message)
                .chain(r.diagnostics)
                .collect::<Vec<_>>()
                .join("\n"),
        })
}

/// Un-counts a public connection when dropped.
#[derive(Debug)]
pub(crate) struct IpGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut m = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// The edge-wide policy followed by the endpoint's own.
#[derive(Debug)]
pub(crate) struct Chain(
    pub(crate) Arc<dyn EndpointPolicy>,
    pub(crate) Arc<dyn EndpointPolicy>,
);

impl EndpointPolicy for Chain {
    fn on_tcp_connect(&self, conn: &ConnInfo) -> ConnDecision {
        match self.0.on_tcp_connect(conn) {
            ConnDecision::Allow => self.1.on_tcp_connect(conn),
            // The endpoint's policy runs once the edge-wide one resumes after the handshake.
            ConnDecision::TerminateTls(t) => ConnDecision::TerminateTls(t.and_then(self.1.clone())),
            d => d,
        }
    }
    fn on_http_request(&self, req: &mut http::request::Parts, conn: &ConnInfo) -> ReqDecision {
        match self.0.on_http_request(req, conn) {
            ReqDecision::Forward => self.1.on_http_request(req, conn),
            ReqDecision::Pending(p) => ReqDecision::Pending(p.then(self.1.clone())),
            ReqDecision::ForwardInternal { url, on_error } => ReqDecision::ForwardInternal {
                url,
                on_error: on_error.map(|p| p.then(self.1.clone())),
            },
            d => d,
        }
    }
    fn on_http_response(
        &self,
        res: &mut http::response::Parts,
        req: &http::request::Parts,
        conn: &ConnInfo,
    ) -> ResDecision {
        // Responses unwind in reverse: the endpoint's policy first, then the edge's.
        match self.1.on_http_response(res, req, conn) {
            ResDecision::Forward => self.0.on_http_response(res, req, conn),
            d => d,
        }
    }
}

/// Keeps a stream-limit permit until dropped.
pub(crate) type StreamPermit = tokio::sync::OwnedSemaphorePermit;

pub(crate) fn new_stream_limit(n: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(n.max(1)))
}
