//! Edge configuration (`edge.yml`). Every field has a default; the CLI can override each one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The edge configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Where agents connect (TLS).
    pub tunnel_listen: SocketAddr,
    /// Public plain-HTTP listener; `None` disables it.
    pub http_listen: Option<SocketAddr>,
    /// Public HTTPS (and `tls://` passthrough) listener; `None` disables it.
    pub https_listen: Option<SocketAddr>,
    /// Prometheus metrics listener (`GET /metrics`); `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// Admin API listener (credentials, sessions, audit), served by `wicket edge` when an admin
    /// key is given; loopback by default.
    pub admin_listen: Option<SocketAddr>,
    /// Domain under which endpoints without an explicit URL are given a name, and the name
    /// of `tcp://` endpoint URLs.
    pub base_domain: String,
    /// Directory for generated certificates and other state.
    pub data_dir: PathBuf,
    /// Certificate for the tunnel listener; the development certificate when absent.
    pub tunnel_certificate: Option<CertFiles>,
    /// Certificates for public HTTPS, selected by SNI; the development certificate when empty.
    pub certificates: Vec<CertFiles>,
    /// Address `tcp://` endpoint listeners bind to.
    pub tcp_listen_host: IpAddr,
    /// Port range for `tcp://` endpoints, inclusive.
    pub tcp_port_range: PortRange,
    /// Authtokens accepted from agents. When empty, `wicket edge` authenticates agents against
    /// the credential store in `data_dir` instead (`wicket tokens create`).
    pub authtokens: Vec<NamedToken>,
    /// Edge-wide policy file, run before every endpoint's own policy.
    pub policy_file: Option<PathBuf>,
    /// Edge-wide policies for some endpoints only (e.g. mandatory auth on `*.fleet.example.test`):
    /// each runs, in the order listed, after `policy_file` and before the endpoint's own policy
    /// on the endpoints matching one of its patterns (`docs/edge-config.md`).
    pub policies: Vec<ScopedPolicyFile>,
    /// PEM files of extra root certificates trusted by the edge's own outbound requests (JWKS,
    /// OpenID Connect discovery, OAuth token exchange, `http-request`), besides the system roots.
    pub outbound_cas: Vec<PathBuf>,
    /// Destinations the `http-request` policy action may reach: `[scheme://]target[:port]` with a
    /// host name, `*.suffix`, `*` (any name), an IP address or a CIDR range; empty (the default)
    /// allows none. Names must resolve to public addresses unless an IP/CIDR entry covers them
    /// (`wicket_runtime::actions::http_request::allow`).
    pub http_request_allow: Vec<String>,
    /// Limits and timeouts.
    pub limits: Limits,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Self {
            tunnel_listen: SocketAddr::new(any, 4443),
            http_listen: Some(SocketAddr::new(any, 8080)),
            https_listen: Some(SocketAddr::new(any, 8443)),
            metrics_listen: None,
            admin_listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4041)),
            base_domain: "wicket.localhost".into(),
            data_dir: PathBuf::from("wicket-data"),
            tunnel_certificate: None,
            certificates: Vec::new(),
            tcp_listen_host: any,
            tcp_port_range: PortRange {
                start: 20000,
                end: 20999,
            },
            authtokens: Vec::new(),
            policy_file: None,
            policies: Vec::new(),
            outbound_cas: Vec::new(),
            http_request_allow: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// An edge-wide policy file applied to the endpoints matching `endpoints`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedPolicyFile {
    /// The policy file (YAML or JSON, the phase map at the top level).
    pub file: PathBuf,
    /// Endpoint patterns, `[scheme://]host[:port]`: `*.fleet.example.test`, `tcp://*`,
    /// `https://admin.example.test`, `tcp://*:20022`. At least one.
    pub endpoints: Vec<String>,
}

/// A certificate chain and key as PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertFiles {
    /// Chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("invalid port range `{s}` (expected `start-end`)"))?;
        let start = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid port `{a}`"))?;
        let end = b
            .trim()
            .parse()
            .map_err(|_| format!("invalid port `{b}`"))?;
        if start == 0 || end < start {
            return Err(format!("invalid port range `{s}`"));
        }
        Ok(Self { start, end })
    }
}

/// An authtoken with its name.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    /// Name used in logs and for endpoint ownership.
    pub name: String,
    /// The secret.
    pub token: String,
}

impl std::fmt::Debug for NamedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedToken")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request header block accepted from public clients, in bytes.
    pub max_header_bytes: usize,
    /// Concurrent public connections per client IP.
    pub max_connections_per_ip: usize,
    /// Concurrent streams per agent session.
    pub max_streams_per_session: usize,
    /// Tunnel TLS handshake plus hello.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub handshake_timeout: Duration,
    /// Public request headers (and TLS ClientHello): a client that has not sent a complete
    /// HTTP/1.1 request head this long after the server started waiting for one (a new
    /// connection, or the next request on a keep-alive connection) is disconnected.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub header_timeout: Duration,
    /// Public connections (HTTP, HTTPS, upgraded, TCP/TLS pipes) are closed after this long
    /// without a byte moving either way.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub idle_timeout: Duration,
    /// Interval of PINGs on tunnel sessions.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub heartbeat_interval: Duration,
    /// A session whose PING is not answered within this is closed.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub heartbeat_timeout: Duration,
    /// How long sessions may drain at shutdown.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub drain_timeout: Duration,
    /// How long an endpoint whose agent disconnected stays reserved (answering 503).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub offline_retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_connections_per_ip: 256,
            max_streams_per_session: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(600),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(10),
            offline_retention: Duration::from_secs(3600),
        }
    }
}

impl EdgeConfig {
    /// Parses a YAML (or JSON) configuration.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let cfg = EdgeConfig::from_yaml(
            r#"
tunnel_listen: 127.0.0.1:4443
http_listen: 127.0.0.1:8080
https_listen: null
base_domain: fleet.example.test
tcp_port_range: { start: 30000, end: 30010 }
authtokens:
  - { name: cam, token: abc }
policies:
  - file: fleet-auth.yml
    endpoints: ["*.fleet.example.test", "tcp://*"]
limits:
  handshake_timeout: 5s
  max_streams_per_session: 100
"#,
        )
        .unwrap();
        assert_eq!(cfg.https_listen, None);
        assert_eq!(cfg.limits.handshake_timeout, Duration::from_secs(5));
        assert_eq!(cfg.limits.max_streams_per_session, 100);
        assert_eq!(cfg.limits.header_timeout, Duration::from_secs(15));
        assert_eq!(cfg.authtokens[0].name, "cam");
        assert_eq!(
            cfg.policies[0].endpoints,
            ["*.fleet.example.test", "tcp://*"]
        );
        assert!(!format!("{:?}", cfg.authtokens).contains("abc"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(EdgeConfig::from_yaml("tunel_listen: 1").is_err());
        assert!(EdgeConfig::from_yaml("limits: { handshake_timeout: soon }").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            "1-2".parse::<PortRange>(),
            Ok(PortRange { start: 1, end: 2 })
        );
        assert!("2-1".parse::<PortRange>().is_err());
        assert!("x".parse::<PortRange>().is_err());
    }
}
