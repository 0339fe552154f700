//! Agent configuration in the shape of ngrok.yml version 3.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::proto::control::{EndpointProto, PolicySource};
use crate::proxy_protocol::ProxyVersion;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML does not match the schema.
    #[error("invalid configuration `{origin}`: {message}")]
    Parse {
        /// The file.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A value is not acceptable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Must be 3.
    pub version: u32,
    /// Connection settings.
    pub agent: AgentSection,
    /// Endpoints to serve.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// The `agent:` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// The authtoken presented to the edge.
    pub authtoken: String,
    /// The edge's tunnel address, `host:port` (a `tls://` prefix is accepted).
    pub connect_url: String,
    /// CA files trusted for the edge certificate; the system roots when empty.
    #[serde(default)]
    pub connect_cas: Vec<PathBuf>,
    /// Interval of heartbeats (HTTP/2 PINGs).
    #[serde(
        default = "default_heartbeat",
        deserialize_with = "crate::duration::deserialize"
    )]
    pub heartbeat_interval: Duration,
    /// The session is considered dead when a heartbeat is not answered within this.
    #[serde(
        default = "default_tolerance",
        deserialize_with = "crate::duration::deserialize"
    )]
    pub heartbeat_tolerance: Duration,
    /// Free-form metadata sent in the hello.
    #[serde(default)]
    pub metadata: Option<String>,
}

impl std::fmt::Debug for AgentSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSection")
            .field("authtoken", &"<redacted>")
            .field("connect_url", &self.connect_url)
            .field("connect_cas", &self.connect_cas)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_tolerance", &self.heartbeat_tolerance)
            .field("metadata", &self.metadata)
            .finish()
    }
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(10)
}
fn default_tolerance() -> Duration {
    Duration::from_secs(15)
}

/// One entry of `endpoints:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Name, unique in the file.
    pub name: String,
    /// Public URL (`https://app.example.test`, `tcp://host:port`, `tls://db.example.test`);
    /// an HTTPS URL with an edge-assigned name when absent.
    #[serde(default)]
    pub url: Option<String>,
    /// Where traffic goes.
    pub upstream: UpstreamConfig,
    /// Inline traffic policy.
    #[serde(default)]
    pub traffic_policy: Option<serde_json::Value>,
    /// Traffic policy file (YAML or JSON).
    #[serde(default)]
    pub traffic_policy_file: Option<PathBuf>,
    /// At most one of `public` and `internal`; inferred from the URL when absent
    /// (`*.internal` names are internal, reachable only through `forward-internal`).
    #[serde(default)]
    pub bindings: Vec<String>,
    /// Verify the upstream's certificate for `https://` upstreams (default true).
    #[serde(default = "yes")]
    pub verify_upstream_tls: bool,
    /// Free-form description.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Option<String>,
    /// `tls://` endpoints only: terminate TLS at the agent with its own certificate.
    #[serde(default)]
    pub agent_tls_termination: Option<super::tls_termination::AgentTlsTerminationConfig>,
}

fn yes() -> bool {
    true
}

/// The `upstream:` of an endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `8080`, `host:port`, `http://…`, `https://…` or `tcp://host:port`.
    pub url: String,
    /// `http1` (default) or `http2` (h2c for `http://`, ALPN for `https://`).
    #[serde(default)]
    pub protocol: Option<UpstreamProtocol>,
    /// PROXY protocol header sent to the upstream at the start of each connection, naming the
    /// public client. For `http`/`https` endpoints upstream connections are then pooled per
    /// public client connection, never shared between clients.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyVersionConfig>,
}

/// Upstream application protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
}

/// `proxy_protocol: 1` or `2` (numbers or strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyVersionConfig(pub ProxyVersion);

impl<'de> Deserialize<'de> for ProxyVersionConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u8),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(1) => Ok(Self(ProxyVersion::V1)),
            Raw::N(2) => Ok(Self(ProxyVersion::V2)),
            Raw::S(s) if s == "1" => Ok(Self(ProxyVersion::V1)),
            Raw::S(s) if s == "2" => Ok(Self(ProxyVersion::V2)),
            _ => Err(serde::de::Error::custom("proxy_protocol must be 1 or 2")),
        }
    }
}

/// A resolved endpoint, ready to bind.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    /// Name.
    pub name: String,
    /// Public protocol.
    pub proto: EndpointProto,
    /// Requested URL.
    pub url: Option<String>,
    /// Resolved upstream.
    pub upstream: Upstream,
    /// Policy text to send.
    pub policy: Option<PolicySource>,
    /// Policy file to watch for changes.
    pub policy_file: Option<PathBuf>,
    /// TLS terminated at the agent (`agent_tls_termination`, `tls://` endpoints).
    pub tls_termination: Option<super::tls_termination::AgentTls>,
}

/// A resolved upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http`, `https` or `tcp`.
    pub scheme: String,
    /// `host:port`.
    pub authority: String,
    /// Use HTTP/2 to the upstream.
    pub http2: bool,
    /// Verify the upstream certificate.
    pub verify_tls: bool,
    /// PROXY header version.
    pub proxy_protocol: Option<ProxyVersion>,
}

impl AgentConfig {
    /// Parses YAML (or JSON).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Validates the file and resolves every endpoint (reading policy files relative to
    /// `base_dir`).
    pub fn resolve(&self, base_dir: &Path) -> Result<Vec<EndpointSpec>, ConfigError> {
        if self.version != 3 {
            return Err(ConfigError::Invalid(format!(
                "unsupported config version {} (expected 3)",
                self.version
            )));
        }
        if self.agent.authtoken.is_empty() {
            return Err(ConfigError::Invalid("`agent.authtoken` is empty".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        self.endpoints
            .iter()
            .map(|e| {
                if !names.insert(e.name.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "duplicate endpoint name `{}`",
                        e.name
                    )));
                }
                e.resolve(base_dir)
            })
            .collect()
    }
}

impl EndpointConfig {
    fn resolve(&self, base_dir: &Path) -> Result<EndpointSpec, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(format!("endpoint `{}`: {m}", self.name));
        // The binding follows from the URL (spec §7.2): `*.internal` names are internal.
        let internal = self.url.as_deref().is_some_and(is_internal_url);
        if self.bindings.len() > 1 {
            return Err(invalid("an endpoint has at most one binding".into()));
        }
        if let Some(b) = self.bindings.first() {
            match (b.as_str(), internal) {
                ("public", false) | ("internal", true) => {}
                ("public", true) => {
                    return Err(invalid(
                        "binding `public` does not fit a `.internal` URL".into(),
                    ));
                }
                ("internal", false) => {
                    return Err(invalid(
                        "binding `internal` needs a URL ending in `.internal`".into(),
                    ));
                }
                (other, _) => {
                    return Err(invalid(format!(
                        "binding `{other}` is not supported (only `public` and `internal`)"
                    )));
                }
            }
        }
        let proto = match self
            .url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .map(|(s, _)| s)
        {
            None => EndpointProto::Https,
            Some(s) => match s.to_ascii_lowercase().as_str() {
                "http" => EndpointProto::Http,
                "https" => EndpointProto::Https,
                "tcp" => EndpointProto::Tcp,
                "tls" => EndpointProto::Tls,
                other => return Err(invalid(format!("unsupported url scheme `{other}`"))),
            },
        };
        let upstream =
            parse_upstream(&self.upstream, proto, self.verify_upstream_tls).map_err(invalid)?;
        let (policy, policy_file) = match (&self.traffic_policy, &self.traffic_policy_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "set `traffic_policy` or `traffic_policy_file`, not both".into(),
                ));
            }
            (Some(v), None) => (
                Some(PolicySource {
                    origin: format!("endpoint `{}` inline policy", self.name),
                    text: serde_json::to_string(v).map_err(|e| invalid(e.to_string()))?,
                }),
                None,
            ),
            (None, Some(f)) => {
                let path = base_dir.join(f);
                (Some(read_policy(&path)?), Some(path))
            }
            (None, None) => (None, None),
        };
        let tls_termination = match &self.agent_tls_termination {
            None => None,
            Some(_) if proto != EndpointProto::Tls => {
                return Err(invalid(
                    "`agent_tls_termination` applies to `tls://` endpoints only".into(),
                ));
            }
            Some(t) => Some(t.compile(base_dir).map_err(|e| invalid(e.to_string()))?),
        };
        Ok(EndpointSpec {
            name: self.name.clone(),
            proto,
            url: self.url.clone(),
            upstream,
            policy,
            policy_file,
            tls_termination,
        })
    }
}

/// True when `url` (`scheme://host[:port]` or a bare host) names an internal endpoint.
fn is_internal_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', ':']).next().unwrap_or(rest);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "internal" || host.ends_with(".internal")
}

/// Reads a policy file into a [`PolicySource`].
pub fn read_policy(path: &Path) -> Result<PolicySource, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(PolicySource {
        origin: path.display().to_string(),
        text,
    })
}

/// Resolves an upstream URL for an endpoint of protocol `proto`.
pub fn parse_upstream(
    cfg: &UpstreamConfig,
    proto: EndpointProto,
    verify_tls: bool,
) -> Result<Upstream, String> {
    let raw = cfg.url.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r.trim_end_matches('/')),
        None => (
            match proto {
                EndpointProto::Tcp | EndpointProto::Tls => "tcp".to_owned(),
                _ => "http".to_owned(),
            },
            raw,
        ),
    };
    if rest.contains('/') {
        return Err(format!("upstream url `{raw}` must not have a path"));
    }
    let authority = if rest.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty() {
        format!("localhost:{rest}")
    } else if rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        rest.to_owned()
    } else {
        match scheme.as_str() {
            "http" => format!("{rest}:80"),
            "https" => format!("{rest}:443"),
            _ => return Err(format!("upstream url `{raw}` needs a port")),
        }
    };
    let raw_proto = matches!(proto, EndpointProto::Tcp | EndpointProto::Tls);
    match (scheme.as_str(), raw_proto) {
        ("http" | "https", false) | ("tcp", true) => {}
        (s, _) => {
            return Err(format!(
                "upstream scheme `{s}` cannot serve a `{}` endpoint",
                proto.scheme()
            ));
        }
    }
    Ok(Upstream {
        scheme,
        authority,
        http2: cfg.protocol == Some(UpstreamProtocol::Http2),
        verify_tls,
        proxy_protocol: cfg.proxy_protocol.map(|p| p.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
version: 3
agent:
  authtoken: tok
  connect_url: edge.example.test:4443
  connect_cas: [ca.pem]
  heartbeat_interval: 5s
  metadata: "fleet=cams"
endpoints:
  - name: web
    url: https://cam-42.example.test
    upstream:
      url: 8080
      protocol: http2
  - name: ssh
    url: tcp://edge.example.test:20022
    upstream:
      url: 22
      proxy_protocol: 2
  - name: db
    url: tls://db.example.test
    upstream: { url: "localhost:5432" }
    bindings: [public]
"#;

    #[test]
    fn parses_ngrok_v3_shape() {
        let cfg = AgentConfig::from_yaml(SAMPLE, "agent.yml").unwrap();
        assert_eq!(cfg.agent.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(cfg.agent.heartbeat_tolerance, Duration::from_secs(15));
        assert!(!format!("{cfg:?}").contains("tok,"), "authtoken hidden");
        let eps = cfg.resolve(Path::new(".")).unwrap();
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].proto, EndpointProto::Https);
        assert_eq!(eps[0].upstream.authority, "localhost:8080");
        assert!(eps[0].upstream.http2);
        assert_eq!(eps[1].proto, EndpointProto::Tcp);
        assert_eq!(eps[1].upstream.proxy_protocol, Some(ProxyVersion::V2));
        assert_eq!(eps[2].upstream.scheme, "tcp");
    }

    #[test]
    fn bindings_follow_the_url() {
        let ep = |url: &str, bindings: &str| {
            let text = format!(
                "version: 3\nagent: {{authtoken: a, connect_url: b}}\nendpoints:\n  - name: e\n    url: {url}\n    upstream: {{url: 8080}}\n    bindings: {bindings}\n"
            );
            AgentConfig::from_yaml(&text, "x")
                .unwrap()
                .resolve(Path::new("."))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(ep("https://svc.internal", "[]").is_ok());
        assert!(ep("https://svc.internal", "[internal]").is_ok());
        assert!(ep("http://a.b.internal:8080", "[internal]").is_ok());
        assert!(ep("https://a.example.test", "[public]").is_ok());
        for (url, b, needle) in [
            ("https://svc.internal", "[public]", "`public`"),
            ("https://a.example.test", "[internal]", "`.internal`"),
            ("https://a.example.test", "[kubernetes]", "`kubernetes`"),
            ("https://svc.internal", "[internal, public]", "at most one"),
        ] {
            let e = ep(url, b).unwrap_err();
            assert!(e.contains(needle), "{url} {b}: {e}");
        }
        assert!(is_internal_url("svc.internal"));
        assert!(!is_internal_url("https://internal.example.test"));
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(
            AgentConfig::from_yaml(
                "version: 3\nagent: {authtoken: a, connect_url: b, nope: 1}",
                "x"
            )
            .is_err()
        );
        let cfg = AgentConfig::from_yaml("version: 2\nagent: {authtoken: a, connect_url: b}", "x")
            .unwrap();
        assert!(cfg.resolve(Path::new(".")).is_err());
        let up = |url: &str, proto| {
            parse_upstream(
                &UpstreamConfig {
                    url: url.into(),
                    protocol: None,
                    proxy_protocol: None,
                },
                proto,
                true,
            )
        };
        assert!(up("https://x.test/path", EndpointProto::Https).is_err());
        assert!(up("tcp://x:1", EndpointProto::Https).is_err());
        assert!(up("http://x", EndpointProto::Tcp).is_err());
        assert_eq!(
            up("https://x.test", EndpointProto::Https)
                .unwrap()
                .authority,
            "x.test:443"
        );
        assert!(up("x.test", EndpointProto::Tcp).is_err());
    }

    #[test]
    fn inline_policy_is_sent_as_json_and_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yml"), "on_http_request: []\n").unwrap();
        let text = "version: 3\nagent: {authtoken: a, connect_url: b}\nendpoints:\n  - name: a\n    upstream: {url: 1}\n    traffic_policy: {on_http_request: []}\n  - name: b\n    upstream: {url: 2}\n    traffic_policy_file: p.yml\n";
        let eps = AgentConfig::from_yaml(text, "x")
            .unwrap()
            .resolve(dir.path())
            .unwrap();
        assert_eq!(
            eps[0].policy.as_ref().unwrap().text,
            r#"{"on_http_request":[]}"#
        );
        assert_eq!(
            eps[1].policy.as_ref().unwrap().text,
            "on_http_request: []\n"
        );
    }
}
