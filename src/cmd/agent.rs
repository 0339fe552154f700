//! `wicket agent`: connect to an edge and serve endpoints, from an ngrok.yml-v3-shaped config
//! (`wicket agent --config agent.yml`) or a quick command (`wicket agent http 8080 --url …`,
//! `wicket agent tcp 22`, `wicket agent tls 443 --url tls://…`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use wicket_runtime::agent::{
    Agent, AgentConfig, AgentOptions, AgentSection, EndpointSpec, EndpointState,
    ProxyVersionConfig, UpstreamConfig, UpstreamProtocol, parse_upstream, read_policy,
};
use wicket_runtime::proto::control::EndpointProto;
use wicket_runtime::proxy_protocol::ProxyVersion;

use super::edge::LogArgs;

/// Arguments of `wicket agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// A quick single-endpoint command; without one, serve the endpoints of `--config`.
    #[command(subcommand)]
    pub quick: Option<Quick>,
    /// Agent configuration (ngrok.yml version 3 shape).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Authtoken (overrides the file).
    #[arg(long, env = "WICKET_AUTHTOKEN", hide_env_values = true, global = true)]
    pub authtoken: Option<String>,
    /// Edge tunnel address `host:port` (overrides the file).
    #[arg(long, env = "WICKET_CONNECT_URL", global = true)]
    pub connect_url: Option<String>,
    /// CA file trusted for the edge certificate (repeatable; overrides the file).
    #[arg(long = "connect-ca", global = true)]
    pub connect_cas: Vec<PathBuf>,
    /// Name to verify on the edge certificate instead of the `connect_url` host.
    #[arg(long, global = true)]
    pub server_name: Option<String>,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Quick commands.
#[derive(Debug, Subcommand)]
pub enum Quick {
    /// Serve a local HTTP service on an HTTP(S) endpoint.
    Http(QuickArgs),
    /// Serve a local TCP service on a `tcp://` endpoint.
    Tcp(QuickArgs),
    /// Serve a local TLS service on a `tls://` endpoint (passed through, SNI-routed).
    Tls(QuickArgs),
}

/// Upstream protocols for the quick commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UpstreamProto {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 (h2c for `http://`).
    Http2,
}

/// Arguments of a quick command.
#[derive(Debug, Args)]
pub struct QuickArgs {
    /// The upstream: a port, `host:port` or a URL (`https://localhost:8443`).
    pub upstream: String,
    /// The public URL (`https://cam-42.example.test`, `tcp://edge:20022`, `tls://db.example.test`).
    #[arg(long)]
    pub url: Option<String>,
    /// Traffic policy file for the endpoint.
    #[arg(long)]
    pub traffic_policy_file: Option<PathBuf>,
    /// Upstream application protocol.
    #[arg(long, value_enum)]
    pub upstream_protocol: Option<UpstreamProto>,
    /// Send a PROXY protocol header (1 or 2) to the upstream at the start of each connection.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub proxy_protocol: Option<u8>,
    /// Do not verify the certificate of an `https://` upstream.
    #[arg(long)]
    pub upstream_tls_insecure: bool,
    /// Endpoint name (for logs).
    #[arg(long, default_value = "default")]
    pub name: String,
}

impl AgentArgs {
    fn section(&self, file: Option<&AgentConfig>) -> Result<AgentSection> {
        let mut section = match file {
            Some(f) => f.agent.clone(),
            None => AgentSection {
                authtoken: String::new(),
                connect_url: String::new(),
                connect_cas: Vec::new(),
                heartbeat_interval: Duration::from_secs(10),
                heartbeat_tolerance: Duration::from_secs(15),
                metadata: None,
            },
        };
        if let Some(t) = &self.authtoken {
            section.authtoken.clone_from(t);
        }
        if let Some(u) = &self.connect_url {
            section.connect_url.clone_from(u);
        }
        if !self.connect_cas.is_empty() {
            section.connect_cas.clone_from(&self.connect_cas);
        }
        if section.authtoken.is_empty() {
            bail!("no authtoken: pass `--authtoken`, set `WICKET_AUTHTOKEN` or `agent.authtoken`");
        }
        if section.connect_url.is_empty() {
            bail!(
                "no edge address: pass `--connect-url`, set `WICKET_CONNECT_URL` or `agent.connect_url`"
            );
        }
        Ok(section)
    }

    /// The connection settings and endpoints to serve.
    pub fn plan(&self) -> Result<(AgentSection, Vec<EndpointSpec>)> {
        let file = match &self.config {
            Some(p) => Some(AgentConfig::load(p)?),
            None => None,
        };
        let base_dir = self
            .config
            .as_deref()
            .and_then(|p| p.parent())
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let section = self.section(file.as_ref())?;
        let specs = match (&self.quick, &file) {
            (Some(q), _) => vec![quick_spec(q)?],
            (None, Some(f)) => {
                let specs = f.resolve(&base_dir)?;
                if specs.is_empty() {
                    bail!("the agent configuration has no endpoints");
                }
                specs
            }
            (None, None) => {
                bail!("give `--config agent.yml` or a quick command (`http`, `tcp`, `tls`)")
            }
        };
        Ok((section, specs))
    }
}

fn quick_spec(q: &Quick) -> Result<EndpointSpec> {
    let (args, default_proto) = match q {
        Quick::Http(a) => (a, EndpointProto::Https),
        Quick::Tcp(a) => (a, EndpointProto::Tcp),
        Quick::Tls(a) => (a, EndpointProto::Tls),
    };
    let proto = match args
        .url
        .as_deref()
        .and_then(|u| u.split_once("://"))
        .map(|(s, _)| s)
    {
        None => default_proto,
        Some(s) => match (q, s) {
            (Quick::Http(_), "http") => EndpointProto::Http,
            (Quick::Http(_), "https") => EndpointProto::Https,
            (Quick::Tcp(_), "tcp") => EndpointProto::Tcp,
            (Quick::Tls(_), "tls") => EndpointProto::Tls,
            (_, s) => bail!("url scheme `{s}` does not fit this command"),
        },
    };
    let upstream = parse_upstream(
        &UpstreamConfig {
            url: args.upstream.clone(),
            protocol: args.upstream_protocol.map(|p| match p {
                UpstreamProto::Http1 => UpstreamProtocol::Http1,
                UpstreamProto::Http2 => UpstreamProtocol::Http2,
            }),
            proxy_protocol: args.proxy_protocol.map(|v| {
                ProxyVersionConfig(if v == 1 {
                    ProxyVersion::V1
                } else {
                    ProxyVersion::V2
                })
            }),
        },
        proto,
        !args.upstream_tls_insecure,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let policy = match &args.traffic_policy_file {
        Some(p) => Some(read_policy(p)?),
        None => None,
    };
    Ok(EndpointSpec {
        name: args.name.clone(),
        proto,
        url: args.url.clone(),
        upstream,
        policy,
        policy_file: args.traffic_policy_file.clone(),
        tls_termination: None,
    })
}

/// Runs the agent until Ctrl-C. Fails when the edge refuses the agent or any endpoint.
pub fn run(args: &AgentArgs) -> Result<bool> {
    args.log.init()?;
    let (section, specs) = args.plan()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let options = AgentOptions {
            server_name: args.server_name.clone(),
            // A changed `agent.authtoken` in the config file rotates the token in place.
            config_path: args.config.clone(),
            ..AgentOptions::default()
        };
        let agent = Agent::start_with(section, specs, options)?;
        let mut status = agent.status();
        let mut reported = std::collections::BTreeMap::new();
        loop {
            let s = status.borrow_and_update().clone();
            let mut refused = false;
            for (name, state) in &s.endpoints {
                if reported.get(name) == Some(state) {
                    continue;
                }
                match state {
                    EndpointState::Bound { url } => eprintln!("endpoint `{name}` online at {url}"),
                    EndpointState::Refused(r) => {
                        refused = true;
                        eprintln!(
                            "endpoint `{name}` refused by the edge: {} ({})",
                            r.message, r.code
                        );
                        for d in &r.diagnostics {
                            eprintln!("{d}");
                        }
                    }
                    EndpointState::Pending => {}
                }
                reported.insert(name.clone(), state.clone());
            }
            if let Some(fatal) = &s.fatal {
                eprintln!("error: {fatal}");
                agent.shutdown().await;
                return Ok(false);
            }
            if refused {
                agent.shutdown().await;
                return Ok(false);
            }
            tokio::select! {
                r = status.changed() => if r.is_err() { return Ok(false) },
                r = tokio::signal::ctrl_c() => {
                    r.context("cannot wait for Ctrl-C")?;
                    eprintln!("draining…");
                    agent.shutdown().await;
                    return Ok(true);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn plan(args: &[&str]) -> Result<(AgentSection, Vec<EndpointSpec>)> {
        let mut v = vec![
            "agent",
            "--authtoken",
            "t",
            "--connect-url",
            "edge.test:4443",
        ];
        v.extend_from_slice(args);
        Cli::try_parse_from(v)?.agent.plan()
    }

    #[test]
    fn quick_commands() {
        let (s, e) = plan(&["http", "8080", "--url", "https://cam-42.example.test"]).unwrap();
        assert_eq!(s.connect_url, "edge.test:4443");
        assert_eq!(e[0].proto, EndpointProto::Https);
        assert_eq!(e[0].upstream.authority, "localhost:8080");
        let (_, e) = plan(&["tcp", "22"]).unwrap();
        assert_eq!(e[0].proto, EndpointProto::Tcp);
        assert_eq!(e[0].upstream.scheme, "tcp");
        let (_, e) = plan(&[
            "tls",
            "443",
            "--url",
            "tls://db.example.test",
            "--proxy-protocol",
            "2",
        ])
        .unwrap();
        assert_eq!(e[0].proto, EndpointProto::Tls);
        assert_eq!(e[0].upstream.proxy_protocol, Some(ProxyVersion::V2));
        assert!(plan(&["tcp", "22", "--url", "https://x.test"]).is_err());
        let (_, e) = plan(&["http", "8080", "--proxy-protocol", "1"]).unwrap();
        assert_eq!(e[0].upstream.proxy_protocol, Some(ProxyVersion::V1));
        assert!(plan(&[]).is_err());
    }

    #[test]
    fn a_policy_file_is_read_and_sent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yml");
        std::fs::write(&p, "on_http_request: []\n").unwrap();
        let (_, e) = plan(&["http", "8080", "--traffic-policy-file", p.to_str().unwrap()]).unwrap();
        assert_eq!(e[0].policy.as_ref().unwrap().text, "on_http_request: []\n");
    }

    #[test]
    fn config_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.yml");
        std::fs::write(
            &p,
            "version: 3\nagent: {authtoken: file-token, connect_url: a.test:1}\nendpoints:\n  - name: web\n    url: https://w.example.test\n    upstream: {url: 8080}\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from(["agent", "--config", p.to_str().unwrap()]).unwrap();
        let (s, e) = cli.agent.plan().unwrap();
        assert_eq!(s.authtoken, "file-token");
        assert_eq!(e[0].name, "web");
        let cli = Cli::try_parse_from([
            "agent",
            "--config",
            p.to_str().unwrap(),
            "--connect-url",
            "b.test:2",
        ])
        .unwrap();
        assert_eq!(cli.agent.plan().unwrap().0.connect_url, "b.test:2");
    }
}
