//! `wicket edge`: run the edge (tunnel listener, public HTTP/HTTPS/TCP listeners, metrics).
//! Every setting of `edge.yml` is also a flag; flags win over the file.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use wicket_runtime::admin::{self, AdminKey, AdminState};
use wicket_runtime::credentials::{CredentialService, SqliteStore, StoreAuthenticator};
use wicket_runtime::edge::{CertFiles, Edge, EdgeConfig, NamedToken, PortRange, ScopedPolicyFile};

/// Log output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging flags shared by `edge` and `agent`.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `wicket_runtime=debug`.
    #[arg(long, env = "WICKET_LOG", default_value = "info", global = true)]
    pub log: String,
}

impl LogArgs {
    /// Installs the global tracing subscriber.
    pub fn init(&self) -> Result<()> {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log)
            .with_context(|| format!("invalid log filter `{}`", self.log))?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(log_colors(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .with_writer(std::io::stderr);
        let r = match self.log_format {
            LogFormat::Pretty => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
        r.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
    }
}

/// Whether log lines get ANSI colours: only on a terminal, and not when `NO_COLOR` is set to a
/// non-empty value (<https://no-color.org>).
fn log_colors(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// A listener address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

/// Parses `off` as "disabled", anything else as a socket address.
fn listen_addr(s: &str) -> Result<Listen, String> {
    if s == "off" {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|e| format!("invalid address `{s}`: {e}"))
}

fn duration(s: &str) -> Result<Duration, String> {
    wicket_runtime::duration::parse(s)
        .ok_or_else(|| format!("invalid duration `{s}` (use e.g. `250ms`, `10s`, `5m`)"))
}

fn scoped_policy(s: &str) -> Result<ScopedPolicyFile, String> {
    let (patterns, file) = s
        .rsplit_once('=')
        .ok_or_else(|| "expected `PATTERN[,PATTERN…]=FILE`".to_owned())?;
    let endpoints: Vec<String> = patterns
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if endpoints.is_empty() || file.is_empty() {
        return Err("expected `PATTERN[,PATTERN…]=FILE`".into());
    }
    Ok(ScopedPolicyFile {
        file: file.into(),
        endpoints,
    })
}

fn named_token(s: &str) -> Result<NamedToken, String> {
    let (name, token) = s
        .split_once('=')
        .ok_or_else(|| "expected `NAME=TOKEN`".to_owned())?;
    if name.is_empty() || token.is_empty() {
        return Err("expected `NAME=TOKEN`".into());
    }
    Ok(NamedToken {
        name: name.into(),
        token: token.into(),
    })
}

/// Arguments of `wicket edge`.
#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// The configuration file (YAML).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Tunnel listener (agents connect here).
    #[arg(long, value_name = "ADDR")]
    pub tunnel_listen: Option<SocketAddr>,
    /// Public HTTP listener, or `off`.
    #[arg(long, value_name = "ADDR|off", value_parser = listen_addr)]
    pub http_listen: Option<Listen>,
    /// Public HTTPS and `tls://` listener, or `off`.
    #[arg(long, value_name = "ADDR|off", value_parser = listen_addr)]
    pub https_listen: Option<Listen>,
    /// Prometheus metrics listener, or `off`.
    #[arg(long, value_name = "ADDR|off", value_parser = listen_addr)]
    pub metrics_listen: Option<Listen>,
    /// Admin API listener, or `off` (served only with an admin key).
    #[arg(long, value_name = "ADDR|off", value_parser = listen_addr)]
    pub admin_listen: Option<Listen>,
    /// Bearer key of the admin API.
    #[arg(long, env = "WICKET_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Base domain for generated endpoint names and `tcp://` URLs.
    #[arg(long)]
    pub base_domain: Option<String>,
    /// Data directory (development CA, state).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Tunnel certificate chain (PEM); with `--tunnel-key`.
    #[arg(long, requires = "tunnel_key")]
    pub tunnel_cert: Option<PathBuf>,
    /// Tunnel private key (PEM).
    #[arg(long, requires = "tunnel_cert")]
    pub tunnel_key: Option<PathBuf>,
    /// Public certificate chain (PEM), repeatable, paired in order with `--key`.
    #[arg(long)]
    pub cert: Vec<PathBuf>,
    /// Public private key (PEM), repeatable.
    #[arg(long)]
    pub key: Vec<PathBuf>,
    /// Address `tcp://` endpoints listen on.
    #[arg(long)]
    pub tcp_listen_host: Option<IpAddr>,
    /// Port range for `tcp://` endpoints, `START-END`.
    #[arg(long)]
    pub tcp_port_range: Option<PortRange>,
    /// An accepted authtoken as `NAME=TOKEN` (repeatable; adds to the file's list).
    #[arg(long, value_parser = named_token, env = "WICKET_EDGE_AUTHTOKEN", hide_env_values = true)]
    pub authtoken: Vec<NamedToken>,
    /// Edge-wide policy file run before every endpoint's own policy.
    #[arg(long)]
    pub policy_file: Option<PathBuf>,
    /// Edge-wide policy for some endpoints only, as `PATTERN[,PATTERN…]=FILE`, e.g.
    /// `'*.fleet.example.test,tcp://*=fleet.yml'` (repeatable; adds to the file's `policies`).
    #[arg(long, value_parser = scoped_policy)]
    pub endpoint_policy: Vec<ScopedPolicyFile>,
    /// Extra root certificate (PEM) for the edge's outbound requests — JWKS, OpenID Connect,
    /// OAuth, `http-request` (repeatable; adds to the file's list).
    #[arg(long)]
    pub outbound_ca: Vec<PathBuf>,
    /// A destination the `http-request` policy action may reach, `[scheme://]target[:port]`
    /// (host, `*.suffix`, `*`, IP or CIDR; repeatable; adds to the file's
    /// `http_request_allow`). None by default.
    #[arg(long)]
    pub http_request_allow: Vec<String>,
    /// Largest public request header block, in bytes.
    #[arg(long)]
    pub max_header_bytes: Option<usize>,
    /// Concurrent public connections per client IP.
    #[arg(long)]
    pub max_connections_per_ip: Option<usize>,
    /// Concurrent streams per agent session.
    #[arg(long)]
    pub max_streams_per_session: Option<usize>,
    /// Tunnel handshake deadline (TLS + hello).
    #[arg(long, value_parser = duration)]
    pub handshake_timeout: Option<Duration>,
    /// Public request header deadline.
    #[arg(long, value_parser = duration)]
    pub header_timeout: Option<Duration>,
    /// Idle limit of TCP/TLS pipes.
    #[arg(long, value_parser = duration)]
    pub idle_timeout: Option<Duration>,
    /// Heartbeat interval on tunnel sessions.
    #[arg(long, value_parser = duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Heartbeat timeout on tunnel sessions.
    #[arg(long, value_parser = duration)]
    pub heartbeat_timeout: Option<Duration>,
    /// Drain time at shutdown.
    #[arg(long, value_parser = duration)]
    pub drain_timeout: Option<Duration>,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

impl EdgeArgs {
    /// The configuration: the file (if any) with the flags applied on top.
    pub fn config(&self) -> Result<EdgeConfig> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read `{}`", path.display()))?;
                EdgeConfig::from_yaml(&text).map_err(|e| {
                    anyhow::anyhow!("invalid edge configuration `{}`: {e}", path.display())
                })?
            }
            None => EdgeConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field.clone() { cfg.$field = v; }
            )*};
        }
        set!(
            tunnel_listen,
            base_domain,
            data_dir,
            tcp_listen_host,
            tcp_port_range
        );
        if let Some(Listen(a)) = self.http_listen {
            cfg.http_listen = a;
        }
        if let Some(Listen(a)) = self.https_listen {
            cfg.https_listen = a;
        }
        if let Some(Listen(a)) = self.metrics_listen {
            cfg.metrics_listen = a;
        }
        if let Some(Listen(a)) = self.admin_listen {
            cfg.admin_listen = a;
        }
        macro_rules! limit {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field { cfg.limits.$field = v; }
            )*};
        }
        limit!(
            max_header_bytes,
            max_connections_per_ip,
            max_streams_per_session,
            handshake_timeout,
            header_timeout,
            idle_timeout,
            heartbeat_interval,
            heartbeat_timeout,
            drain_timeout
        );
        if let (Some(cert), Some(key)) = (&self.tunnel_cert, &self.tunnel_key) {
            cfg.tunnel_certificate = Some(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        if self.cert.len() != self.key.len() {
            bail!("give one `--key` for every `--cert`");
        }
        if !self.cert.is_empty() {
            cfg.certificates = self
                .cert
                .iter()
                .zip(&self.key)
                .map(|(c, k)| CertFiles {
                    cert: c.clone(),
                    key: k.clone(),
                })
                .collect();
        }
        if self.policy_file.is_some() {
            cfg.policy_file = self.policy_file.clone();
        }
        cfg.authtokens.extend(self.authtoken.iter().cloned());
        cfg.outbound_cas.extend(self.outbound_ca.iter().cloned());
        cfg.http_request_allow
            .extend(self.http_request_allow.iter().cloned());
        cfg.policies.extend(self.endpoint_policy.iter().cloned());
        Ok(cfg)
    }
}

/// Runs the edge until Ctrl-C, then drains and stops.
///
/// Agents authenticate against the authtokens of the configuration when any are listed, else
/// against the credential store in the data directory (managed with `wicket tokens`), whose admin
/// API is served on `admin_listen` when an admin key is given.
pub fn run(args: &EdgeArgs) -> Result<()> {
    args.log.init()?;
    let cfg = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let using_dev_ca = cfg.tunnel_certificate.is_none() || cfg.certificates.is_empty();
        let ca_path = cfg.data_dir.join("dev-ca.pem");
        let mut builder = Edge::builder(cfg.clone());
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut admin_addr = None;
        let mut maintenance = None;
        if cfg.authtokens.is_empty() {
            std::fs::create_dir_all(&cfg.data_dir)
                .with_context(|| format!("cannot create `{}`", cfg.data_dir.display()))?;
            let store = Arc::new(SqliteStore::open(&cfg.data_dir).with_context(|| {
                format!(
                    "cannot open the credential store in `{}`",
                    cfg.data_dir.display()
                )
            })?);
            let service = CredentialService::new(store);
            maintenance = Some(service.spawn_maintenance(Duration::from_secs(1)));
            builder = builder.authenticator(Arc::new(StoreAuthenticator::for_service(&service)));
            match (&args.admin_key, cfg.admin_listen) {
                (Some(key), Some(addr)) => {
                    let key = AdminKey::new(key.clone()).context("invalid admin key")?;
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen on {addr}"))?;
                    admin_addr = Some(listener.local_addr().unwrap_or(addr));
                    tokio::spawn(admin::serve(
                        listener,
                        AdminState::new(service, key),
                        async move {
                            let _ = admin_stopped.await;
                        },
                    ));
                }
                (None, Some(_)) => tracing::warn!(
                    "no admin key (`--admin-key` or `WICKET_ADMIN_KEY`): the admin API is off; \
                     manage tokens with `wicket tokens --data-dir`"
                ),
                _ => {}
            }
        }
        let edge = builder.start().await?;
        let a = edge.addrs();
        eprintln!("wicket edge running");
        eprintln!("  tunnel   {}", a.tunnel);
        if let Some(h) = a.http {
            eprintln!("  http     {h}");
        }
        if let Some(h) = a.https {
            eprintln!("  https    {h}");
        }
        if let Some(m) = a.metrics {
            eprintln!("  metrics  http://{m}/metrics");
        }
        if let Some(m) = admin_addr {
            eprintln!("  admin    http://{m}");
        }
        if cfg.authtokens.is_empty() {
            eprintln!(
                "  agents authenticate against the credential store in {}",
                cfg.data_dir.display()
            );
        }
        if using_dev_ca {
            eprintln!(
                "  development CA: {} (give it to agents as `connect_cas`)",
                ca_path.display()
            );
        }
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        eprintln!("draining…");
        edge.shutdown().await;
        let _ = stop_admin.send(());
        if let Some(m) = maintenance {
            m.abort();
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        edge: EdgeArgs,
    }

    #[test]
    fn log_colours_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colors(true, None));
        assert!(log_colors(true, Some(OsStr::new(""))));
        assert!(!log_colors(true, Some(OsStr::new("1"))));
        assert!(!log_colors(false, None));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.yml");
        std::fs::write(
            &path,
            "base_domain: a.test\nhttp_listen: 127.0.0.1:1\nauthtokens: [{name: a, token: t}]\nlimits: {header_timeout: 3s}\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "edge",
            "--config",
            path.to_str().unwrap(),
            "--base-domain",
            "b.test",
            "--https-listen",
            "off",
            "--authtoken",
            "ops=secret",
            "--idle-timeout",
            "90s",
            "--tcp-port-range",
            "30000-30009",
            "--endpoint-policy",
            "*.fleet.test, tcp://*=fleet.yml",
        ])
        .unwrap();
        let cfg = cli.edge.config().unwrap();
        assert_eq!(cfg.base_domain, "b.test");
        assert_eq!(cfg.http_listen, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(cfg.https_listen, None);
        assert_eq!(cfg.authtokens.len(), 2);
        assert_eq!(cfg.limits.header_timeout, Duration::from_secs(3));
        assert_eq!(cfg.limits.idle_timeout, Duration::from_secs(90));
        assert_eq!(
            cfg.tcp_port_range,
            PortRange {
                start: 30000,
                end: 30009
            }
        );
        assert_eq!(cfg.policies[0].endpoints, ["*.fleet.test", "tcp://*"]);
        assert_eq!(cfg.policies[0].file, PathBuf::from("fleet.yml"));
        assert!(Cli::try_parse_from(["edge", "--endpoint-policy", "fleet.yml"]).is_err());
        assert!(Cli::try_parse_from(["edge", "--authtoken", "nope"]).is_err());
        assert!(Cli::try_parse_from(["edge", "--handshake-timeout", "soon"]).is_err());
    }
}
