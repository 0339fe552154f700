//! `wicket quickstart`: an edge, an agent and a small demo upstream in one process, with a
//! development CA and an example policy, plus the `curl` commands that show each rule at work.
//!
//! The library half lives here so that tests can start the same thing the command starts; the
//! command only prints [`Quickstart::banner`] and waits for Ctrl-C.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::agent::{
    Agent, AgentHandle, AgentOptions, AgentSection, EndpointSpec, EndpointState, Upstream,
};
use crate::edge::{Edge, EdgeConfig, EdgeHandle, NamedToken};
use crate::proto::control::{EndpointProto, PolicySource};
use crate::tls::DevCa;

/// The base domain of the quickstart edge (`.test` is reserved: it never resolves publicly).
pub const BASE_DOMAIN: &str = "wicket.test";
/// The host name of the demo endpoint.
pub const HOST: &str = "demo.wicket.test";
/// The basic-auth user of the example policy.
pub const DEMO_USER: &str = "demo";
/// The basic-auth password of the example policy.
pub const DEMO_PASSWORD: &str = "wicket-demo";
/// Requests per minute and client IP the example policy allows on `/api`.
pub const API_LIMIT: u32 = 5;
/// The file name of the policy inside the data directory.
pub const POLICY_FILE: &str = "quickstart-policy.yml";

/// How long the quickstart waits for its agent to bind the endpoints.
const BIND_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors starting the quickstart.
#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    /// The data directory or a file in it could not be written.
    #[error("cannot write `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The development CA could not be created or loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The edge did not start.
    #[error(transparent)]
    Edge(#[from] crate::edge::EdgeError),
    /// The agent did not start.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// The demo upstream could not listen.
    #[error("cannot start the demo upstream: {0}")]
    Upstream(std::io::Error),
    /// The edge refused an endpoint (for example because the policy has lint errors).
    #[error("the edge refused endpoint `{name}` ({code}): {message}{}", lines(.diagnostics))]
    Refused {
        /// Endpoint name.
        name: String,
        /// Error code.
        code: String,
        /// Message.
        message: String,
        /// Lint diagnostics, if any.
        diagnostics: Vec<String>,
    },
    /// The agent did not bind its endpoints in time.
    #[error("the agent did not bind its endpoints within {0:?}: {1}")]
    NotBound(Duration, String),
}

fn lines(d: &[String]) -> String {
    d.iter().fold(String::new(), |mut s, l| {
        s.push('\n');
        s.push_str(l);
        s
    })
}

/// What to start.
#[derive(Debug, Clone)]
pub struct QuickstartOptions {
    /// Data directory: development CA, certificates and the policy file are written here.
    pub data_dir: PathBuf,
    /// Preferred public HTTP port; `0` (or a busy port) lets the OS choose.
    pub http_port: u16,
    /// Preferred public HTTPS port; `0` (or a busy port) lets the OS choose.
    pub https_port: u16,
    /// The traffic policy (YAML) of the demo endpoints.
    pub policy: String,
}

/// One demonstration: a request (or a few), the statuses it gets and the `curl` that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demo {
    /// What the demonstration shows.
    pub title: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Request path.
    pub path: &'static str,
    /// Basic-auth credentials sent, if any.
    pub basic_auth: Option<(&'static str, &'static str)>,
    /// The statuses of consecutive requests, in order (one request per entry).
    pub expect: Vec<u16>,
}

/// The running quickstart.
#[derive(Debug)]
pub struct Quickstart {
    edge: EdgeHandle,
    agent: AgentHandle,
    upstream: tokio::task::JoinHandle<()>,
    data_dir: PathBuf,
    ca_path: PathBuf,
    policy_path: PathBuf,
    http: SocketAddr,
    https: SocketAddr,
}

impl Quickstart {
    /// Writes the data directory (development CA, edge certificate, policy), starts the demo
    /// upstream, the edge and the agent, and waits until the demo endpoints are bound.
    pub async fn start(opts: QuickstartOptions) -> Result<Self, QuickstartError> {
        let data_dir = opts.data_dir;
        std::fs::create_dir_all(&data_dir).map_err(io_err(&data_dir))?;
        let dev = DevCa::load_or_create(&data_dir, BASE_DOMAIN)?;
        let policy_path = data_dir.join(POLICY_FILE);
        std::fs::write(&policy_path, &opts.policy).map_err(io_err(&policy_path))?;

        let (upstream_addr, upstream) = demo_upstream().await?;

        let token = format!("quickstart-{:032x}", rand::random::<u128>());
        let mut cfg = EdgeConfig {
            tunnel_listen: loopback(0),
            http_listen: Some(loopback(free_or_any(opts.http_port))),
            https_listen: Some(loopback(free_or_any(opts.https_port))),
            metrics_listen: None,
            admin_listen: None,
            base_domain: BASE_DOMAIN.into(),
            data_dir: data_dir.clone(),
            authtokens: vec![NamedToken {
                name: "quickstart".into(),
                token: token.clone(),
            }],
            ..EdgeConfig::default()
        };
        cfg.limits.drain_timeout = Duration::from_secs(5);
        let edge = Edge::builder(cfg)
            .tunnel_cert(dev.leaf.clone())
            .public_certs(vec![dev.leaf.clone()])
            .start()
            .await;
        let edge = match edge {
            Ok(e) => e,
            Err(e) => {
                upstream.abort();
                return Err(e.into());
            }
        };
        let addrs = edge.addrs();
        let (Some(http), Some(https)) = (addrs.http, addrs.https) else {
            upstream.abort();
            return Err(QuickstartError::NotBound(
                Duration::ZERO,
                "the edge has no public listeners".into(),
            ));
        };

        let section = AgentSection {
            authtoken: token,
            connect_url: addrs.tunnel.to_string(),
            connect_cas: vec![dev.ca_path.clone()],
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_tolerance: Duration::from_secs(15),
            metadata: Some("wicket quickstart".into()),
        };
        let spec = |name: &str, proto: EndpointProto, scheme: &str| EndpointSpec {
            name: name.into(),
            proto,
            url: Some(format!("{scheme}://{HOST}")),
            upstream: Upstream {
                scheme: "http".into(),
                authority: upstream_addr.to_string(),
                http2: false,
                verify_tls: true,
                proxy_protocol: None,
            },
            policy: Some(PolicySource {
                origin: policy_path.display().to_string(),
                text: opts.policy.clone(),
            }),
            policy_file: Some(policy_path.clone()),
            tls_termination: None,
        };
        let agent = Agent::start_with(
            section,
            vec![
                spec("demo-http", EndpointProto::Http, "http"),
                spec("demo-https", EndpointProto::Https, "https"),
            ],
            AgentOptions::default(),
        );
        let agent = match agent {
            Ok(a) => a,
            Err(e) => {
                upstream.abort();
                edge.shutdown().await;
                return Err(e.into());
            }
        };
        let qs = Self {
            edge,
            agent,
            upstream,
            data_dir,
            ca_path: dev.ca_path,
            policy_path,
            http,
            https,
        };
        match qs.wait_bound().await {
            Ok(()) => Ok(qs),
            Err(e) => {
                qs.shutdown().await;
                Err(e)
            }
        }
    }

    async fn wait_bound(&self) -> Result<(), QuickstartError> {
        let settled = |s: &crate::agent::AgentStatus| {
            s.connected
                && s.endpoints
                    .values()
                    .all(|e| !matches!(e, EndpointState::Pending))
        };
        let status = tokio::time::timeout(BIND_TIMEOUT, self.agent.wait_for(settled))
            .await
            .map_err(|_| {
                let last = self.agent.status().borrow().last_error.clone();
                QuickstartError::NotBound(BIND_TIMEOUT, last.unwrap_or_else(|| "no session".into()))
            })?;
        if let Some(fatal) = status.fatal {
            return Err(QuickstartError::NotBound(BIND_TIMEOUT, fatal));
        }
        for (name, state) in status.endpoints {
            if let EndpointState::Refused(r) = state {
                return Err(QuickstartError::Refused {
                    name,
                    code: r.code,
                    message: r.message,
                    diagnostics: r.diagnostics,
                });
            }
        }
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The development CA certificate (give it to `curl --cacert`).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The policy file in the data directory (edits apply live).
    pub fn policy_path(&self) -> &Path {
        &self.policy_path
    }

    /// The public HTTP listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The public HTTPS listener.
    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    /// The demonstrations of the example policy, in the order they should be run.
    pub fn demos(&self) -> Vec<Demo> {
        demos()
    }

    /// The listener a demonstration talks to.
    pub fn addr_for(&self, demo: &Demo) -> SocketAddr {
        if demo.scheme == "https" {
            self.https
        } else {
            self.http
        }
    }

    /// The ready-to-paste `curl` command of a demonstration.
    pub fn curl(&self, demo: &Demo) -> String {
        let port = self.addr_for(demo).port();
        let mut flags = format!("--resolve {HOST}:{port}:127.0.0.1");
        if demo.scheme == "https" {
            let _ = write!(flags, " --cacert {}", shell_quote(&self.ca_path));
        }
        if let Some((u, p)) = demo.basic_auth {
            let _ = write!(flags, " -u {u}:{p}");
        }
        let url = format!("{}://{HOST}:{port}{}", demo.scheme, demo.path);
        if demo.expect.len() > 1 {
            format!(
                "for i in $(seq {}); do curl -s -o /dev/null -w '%{{http_code}}\\n' {flags} {url}; done",
                demo.expect.len()
            )
        } else {
            format!("curl -si {flags} {url}")
        }
    }

    /// The text the command prints: where things are and the `curl` commands to try.
    pub fn banner(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "wicket quickstart is running (Ctrl-C to stop)");
        let _ = writeln!(s);
        let _ = writeln!(s, "  data directory  {}", self.data_dir.display());
        let _ = writeln!(s, "  development CA  {}", self.ca_path.display());
        let _ = writeln!(
            s,
            "  policy          {} (edit it: changes apply live)",
            self.policy_path.display()
        );
        let _ = writeln!(s, "  endpoints       http://{HOST}:{}", self.http.port());
        let _ = writeln!(s, "                  https://{HOST}:{}", self.https.port());
        let _ = writeln!(
            s,
            "  (edge listeners: http {}, https {}; {HOST} needs no DNS: curl --resolve)",
            self.http, self.https
        );
        for d in self.demos() {
            let _ = writeln!(s);
            let _ = writeln!(s, "# {}", d.title);
            let _ = writeln!(s, "{}", self.curl(&d));
        }
        s
    }

    /// Graceful stop: the agent drains its streams, the edge drains and closes, then the demo
    /// upstream stops.
    pub async fn shutdown(self) {
        self.agent.shutdown().await;
        self.edge.shutdown().await;
        self.upstream.abort();
        let _ = self.upstream.await;
    }
}

/// The demonstrations of the example policy.
fn demos() -> Vec<Demo> {
    let d = |title: String, scheme, path, basic_auth, expect| Demo {
        title,
        scheme,
        path,
        basic_auth,
        expect,
    };
    let mut api = vec![200; API_LIMIT as usize];
    api.push(429);
    vec![
        d(
            "no rule: the demo upstream answers (200), over HTTPS with the development CA".into(),
            "https",
            "/",
            None,
            vec![200],
        ),
        d(
            "the same over plain HTTP (200)".into(),
            "http",
            "/",
            None,
            vec![200],
        ),
        d(
            "IP allow list: /admin admits only 10.0.0.0/8, so 127.0.0.1 gets 403".into(),
            "https",
            "/admin",
            None,
            vec![403],
        ),
        d(
            "basic auth: /private without credentials gets 401".into(),
            "https",
            "/private",
            None,
            vec![401],
        ),
        d(
            format!("basic auth: /private with `{DEMO_USER}:{DEMO_PASSWORD}` gets 200"),
            "https",
            "/private",
            Some((DEMO_USER, DEMO_PASSWORD)),
            vec![200],
        ),
        d(
            format!(
                "rate limit: {API_LIMIT} requests per minute per client IP on /api, the next gets 429 \
                 (wait a minute before running it again)"
            ),
            "https",
            "/api",
            None,
            api,
        ),
    ]
}

/// Single-quotes a path for a POSIX shell when it needs it.
fn shell_quote(p: &Path) -> String {
    let s = p.display().to_string();
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@,".contains(c));
    if plain && !s.is_empty() {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `port` when it can be bound on loopback right now, else `0` (the OS chooses).
fn free_or_any(port: u16) -> u16 {
    if port != 0 && std::net::TcpListener::bind(loopback(port)).is_ok() {
        port
    } else {
        0
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> QuickstartError + '_ {
    move |source| QuickstartError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Starts the demo upstream on an OS-chosen loopback port.
async fn demo_upstream() -> Result<(SocketAddr, tokio::task::JoinHandle<()>), QuickstartError> {
    let listener = TcpListener::bind(loopback(0))
        .await
        .map_err(QuickstartError::Upstream)?;
    let addr = listener.local_addr().map_err(QuickstartError::Upstream)?;
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            // Reap finished connections so the set stays small.
            while conns.try_join_next().is_some() {}
            conns.spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(demo_response(&req))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// The demo upstream's answer: a line naming the path and what reached it.
fn demo_response<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let client = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let what = if path.starts_with("/admin") {
        "the admin page"
    } else if path.starts_with("/private") {
        "the private page"
    } else if path.starts_with("/api") {
        "the api"
    } else {
        "the demo upstream"
    };
    let body = format!("hello from {what} (path {path}, client {client})\n");
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_paths_and_quotes_others() {
        assert_eq!(shell_quote(Path::new("/tmp/a.pem")), "/tmp/a.pem");
        assert_eq!(
            shell_quote(Path::new("/tmp/my dir/a.pem")),
            "'/tmp/my dir/a.pem'"
        );
        assert_eq!(shell_quote(Path::new("/tmp/it's")), r"'/tmp/it'\''s'");
    }

    #[test]
    fn demos_end_with_the_rate_limit() {
        let d = demos();
        let last = d.last().unwrap();
        assert_eq!(last.expect.len(), API_LIMIT as usize + 1);
        assert_eq!(last.expect.last(), Some(&429));
    }

    #[test]
    fn demo_upstream_names_the_page() {
        let req = Request::builder().uri("/admin/x").body(()).unwrap();
        assert_eq!(demo_response(&req).status(), StatusCode::OK);
    }
}
