//! ACL bindings: which endpoints a credential may bind.
//!
//! Rule grammar (every rule starts with `bind:`):
//!
//! | rule | allows |
//! |---|---|
//! | `bind:*` | anything |
//! | `bind:<host>` | `http`, `https` and `tls` endpoints named exactly `<host>`, any port |
//! | `bind:*.<suffix>` | `http`, `https` and `tls` endpoints whose name ends in `.<suffix>` (never `<suffix>` itself nor `evil<suffix>`); wildcard endpoints `*.<suffix>` and deeper are included |
//! | `bind:<scheme>://<host-or-wildcard>[:<ports>]` | that scheme only (`http`, `https`, `tls`); any port unless `<ports>` is given |
//! | `bind:tcp://<host-or-wildcard>:<ports>` | TCP endpoints at that host and port (the port is required) |
//! | `bind:<host>:<ports>` | shorthand for `bind:tcp://<host>:<ports>` (ngrok's `bind:1.tcp.ngrok.io:20002`) |
//!
//! `<ports>` is one port or an inclusive range `20000-20100`. An empty list of rules means
//! unrestricted. Host names in rules and in endpoints are normalised the same way: ASCII
//! lowercase, one trailing dot removed, internationalised names converted to punycode (UTS 46);
//! anything that does not normalise to letters, digits, `-` and `_` in non-empty labels (no
//! leading or trailing `-`) is rejected. Matching compares normalised names only, so there is
//! no way to smuggle a name past a rule with case, a trailing dot or a Unicode form.

use std::fmt;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest number of rules on one credential.
pub const MAX_ACL_RULES: usize = 256;

/// Longest accepted rule or endpoint text, in bytes.
const MAX_TEXT_LEN: usize = 512;

/// An endpoint protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS (TLS terminated at the edge).
    Https,
    /// Raw TCP.
    Tcp,
    /// TLS passthrough routed by SNI.
    Tls,
}

impl Scheme {
    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Self::Http),
            "https" => Some(Self::Https),
            "tcp" => Some(Self::Tcp),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }

    /// The scheme name as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }

    fn default_port(self) -> Option<u16> {
        match self {
            Self::Http => Some(80),
            Self::Https | Self::Tls => Some(443),
            Self::Tcp => None,
        }
    }
}

/// A normalised endpoint address that a bind request asks for: scheme, host (possibly a leading
/// `*.` wildcard) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointUrl {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl EndpointUrl {
    /// Parses `scheme://host[:port]` or a bare `host[:port]` (meaning `https`). `tcp` endpoints
    /// need a port; the others default to 80 (`http`) or 443 (`https`, `tls`). A trailing `/` is
    /// accepted; any other path, query, user info or IPv6 literal is rejected.
    pub fn parse(text: &str) -> Result<Self, AclError> {
        let invalid = |reason: &str| AclError::InvalidEndpoint {
            endpoint: truncate(text),
            reason: reason.to_owned(),
        };
        if text.len() > MAX_TEXT_LEN {
            return Err(invalid("too long"));
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (
                Scheme::parse(scheme).ok_or_else(|| invalid("unknown scheme"))?,
                rest,
            ),
            None => (Scheme::Https, text),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(rest).map_err(|reason| invalid(&reason))?;
        let port = match port {
            Some(PortSpec(lo, hi)) if lo == hi => lo,
            Some(_) => return Err(invalid("an endpoint has one port, not a range")),
            None => scheme
                .default_port()
                .ok_or_else(|| invalid("a `tcp` endpoint needs a port"))?,
        };
        let host = normalize_host(host, true).map_err(|reason| invalid(&reason))?;
        Ok(Self { scheme, host, port })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The normalised host name (ASCII, lowercase, punycode; may start with `*.`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (explicit or the scheme's default).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if self.scheme.default_port() != Some(self.port) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// A malformed ACL rule or endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// A rule could not be parsed.
    #[error("invalid ACL rule `{rule}`: {reason}")]
    InvalidRule {
        /// The rule as given (truncated if very long).
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An endpoint address could not be parsed.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given (truncated if very long).
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// More rules than [`MAX_ACL_RULES`].
    #[error("too many ACL rules ({count}; the limit is {MAX_ACL_RULES})")]
    TooManyRules {
        /// How many were given.
        count: usize,
    },
}

/// A bind refused by a credential's ACL. The message names the endpoint and the rule set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint `{endpoint}` is not allowed by this credential's ACL [{}]", .rules.join(", "))]
pub struct AclDenied {
    /// The endpoint that was asked for, normalised.
    pub endpoint: String,
    /// The credential's rules, in canonical form.
    pub rules: Vec<String>,
}

/// Which schemes a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemeMatch {
    /// `http`, `https` and `tls` (a rule without a scheme and without a port).
    Named,
    /// Exactly this scheme.
    Only(Scheme),
}

/// The host part of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// Any name ending in `.` + this suffix, with at least one label before it.
    Suffix(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Suffix(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortSpec(u16, u16);

impl PortSpec {
    fn contains(self, port: u16) -> bool {
        (self.0..=self.1).contains(&port)
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == self.1 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{}-{}", self.0, self.1)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleKind {
    Any,
    Endpoint {
        schemes: SchemeMatch,
        host: HostPattern,
        ports: Option<PortSpec>,
    },
}

/// One parsed `bind:` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    kind: RuleKind,
}

impl AclRule {
    /// Parses one rule (see the module documentation for the grammar).
    pub fn parse(text: &str) -> Result<Self, AclError> {
        let invalid = |reason: &str| AclError::InvalidRule {
            rule: truncate(text),
            reason: reason.to_owned(),
        };
        if text.len() > MAX_TEXT_LEN {
            return Err(invalid("too long"));
        }
        let body = text
            .strip_prefix("bind:")
            .ok_or_else(|| invalid("a rule must start with `bind:`"))?;
        if body == "*" {
            return Ok(Self {
                kind: RuleKind::Any,
            });
        }
        if body.contains('=') {
            return Err(invalid("labeled bindings (`key=value`) are not supported"));
        }
        let (scheme, rest) = match body.split_once("://") {
            Some((scheme, rest)) => (
                Some(Scheme::parse(scheme).ok_or_else(|| {
                    invalid("unknown scheme (expected `http`, `https`, `tls` or `tcp`)")
                })?),
                rest,
            ),
            None => (None, body),
        };
        let (host, ports) = split_host_port(rest).map_err(|reason| invalid(&reason))?;
        let host = if host == "*" {
            return Err(invalid(
                "a bare `*` host is only valid as the whole rule `bind:*`",
            ));
        } else {
            let normalized = normalize_host(host, true).map_err(|reason| invalid(&reason))?;
            match normalized.strip_prefix("*.") {
                Some(suffix) => HostPattern::Suffix(suffix.to_owned()),
                None => HostPattern::Exact(normalized),
            }
        };
        let schemes = match (scheme, ports) {
            (Some(Scheme::Tcp), None) => return Err(invalid("a `tcp` rule needs a port or range")),
            (Some(scheme), _) => SchemeMatch::Only(scheme),
            (None, Some(_)) => SchemeMatch::Only(Scheme::Tcp),
            (None, None) => SchemeMatch::Named,
        };
        Ok(Self {
            kind: RuleKind::Endpoint {
                schemes,
                host,
                ports,
            },
        })
    }

    /// Whether this rule allows binding `endpoint`.
    pub fn allows(&self, endpoint: &EndpointUrl) -> bool {
        match &self.kind {
            RuleKind::Any => true,
            RuleKind::Endpoint {
                schemes,
                host,
                ports,
            } => {
                let scheme_ok = match schemes {
                    SchemeMatch::Named => endpoint.scheme != Scheme::Tcp,
                    SchemeMatch::Only(scheme) => endpoint.scheme == *scheme,
                };
                scheme_ok
                    && ports.is_none_or(|ports| ports.contains(endpoint.port))
                    && host.matches(&endpoint.host)
            }
        }
    }
}

impl fmt::Display for AclRule {
    /// The canonical form, which [`AclRule::parse`] accepts and maps to an equal rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RuleKind::Any => f.write_str("bind:*"),
            RuleKind::Endpoint {
                schemes,
                host,
                ports,
            } => {
                f.write_str("bind:")?;
                if let SchemeMatch::Only(scheme) = schemes {
                    write!(f, "{}://", scheme.as_str())?;
                }
                write!(f, "{host}")?;
                if let Some(ports) = ports {
                    write!(f, ":{ports}")?;
                }
                Ok(())
            }
        }
    }
}

/// The ACL of a credential: a list of rules, any of which may allow a bind. Empty means
/// unrestricted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<AclRule>,
}

impl Acl {
    /// The unrestricted ACL (no rules).
    pub fn unrestricted() -> Self {
        Self::default()
    }

    /// Parses a list of rules.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Self, AclError> {
        if rules.len() > MAX_ACL_RULES {
            return Err(AclError::TooManyRules { count: rules.len() });
        }
        let rules = rules
            .iter()
            .map(|rule| AclRule::parse(rule.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules })
    }

    /// The rules.
    pub fn rules(&self) -> &[AclRule] {
        &self.rules
    }

    /// Whether there are no rules (unrestricted).
    pub fn is_unrestricted(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in canonical text form.
    pub fn to_strings(&self) -> Vec<String> {
        self.rules.iter().map(ToString::to_string).collect()
    }

    /// Checks a bind request: `Ok` when the ACL is empty or any rule allows `endpoint`.
    pub fn allows(&self, endpoint: &EndpointUrl) -> Result<(), AclDenied> {
        if self.rules.is_empty() || self.rules.iter().any(|rule| rule.allows(endpoint)) {
            Ok(())
        } else {
            Err(AclDenied {
                endpoint: endpoint.to_string(),
                rules: self.to_strings(),
            })
        }
    }
}

impl Serialize for Acl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.rules.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for Acl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rules = Vec::<String>::deserialize(deserializer)?;
        Acl::parse(&rules).map_err(serde::de::Error::custom)
    }
}

/// Splits `host[:ports]`; the host may not contain `:` (IPv6 literals are not supported).
fn split_host_port(text: &str) -> Result<(&str, Option<PortSpec>), String> {
    let Some((host, ports)) = text.split_once(':') else {
        return Ok((text, None));
    };
    if ports.contains(':') {
        return Err("IPv6 literals and extra `:` are not supported".to_owned());
    }
    let parse_port = |p: &str| -> Result<u16, String> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{p}` is not a port"));
        }
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("port `{p}` is outside 1-65535")),
            Ok(port) => Ok(port),
        }
    };
    let spec = match ports.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
            if lo > hi {
                return Err(format!("port range `{ports}` is reversed"));
            }
            PortSpec(lo, hi)
        }
        None => {
            let port = parse_port(ports)?;
            PortSpec(port, port)
        }
    };
    Ok((host, Some(spec)))
}

/// Normalises a host name: strips one trailing dot, maps through UTS 46 (lowercase, punycode),
/// and checks that every label is non-empty, at most 63 bytes, and made of `a-z`, `0-9`, `-`,
/// `_`. With `allow_wildcard`, a leading `*.` label is kept.
pub(crate) fn normalize_host(text: &str, allow_wildcard: bool) -> Result<String, String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let (wildcard, name) = match text.strip_prefix("*.") {
        Some(rest) if allow_wildcard => (true, rest),
        Some(_) => return Err("wildcard host names are not allowed here".to_owned()),
        None => (false, text),
    };
    if name.is_empty() {
        return Err("empty host name".to_owned());
    }
    if name.contains('*') {
        return Err("`*` is only allowed as the whole first label (`*.example.com`)".to_owned());
    }
    let ascii = Uts46::new()
        .to_ascii(
            name.as_bytes(),
            AsciiDenyList::URL,
            Hyphens::Allow,
            DnsLength::Verify,
        )
        .map_err(|_| "not a valid host name".to_owned())?;
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if ascii.len() > 253 || !ascii.split('.').all(valid_label) {
        return Err("not a valid host name".to_owned());
    }
    Ok(if wildcard {
        format!("*.{ascii}")
    } else {
        ascii.into_owned()
    })
}

/// User text for an error message, cut to a readable length on a character boundary.
fn truncate(text: &str) -> String {
    const LIMIT: usize = 120;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalisation() {
        assert_eq!(
            normalize_host("Foo.Example.COM.", false).unwrap(),
            "foo.example.com"
        );
        assert_eq!(
            normalize_host("bücher.example", false).unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize_host("*.Example.com", true).unwrap(),
            "*.example.com"
        );
        for bad in [
            "", ".", "a..b", "*.*.a", "a.*.b", "*a.b", "a b", "a/b", "a@b", "[::1]", "-.",
        ] {
            assert!(
                normalize_host(bad, true).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(normalize_host("*.a", false).is_err());
        assert!(normalize_host(&"a".repeat(64), false).is_err());
    }

    #[test]
    fn rules_have_a_canonical_form() {
        for (input, canonical) in [
            ("bind:*", "bind:*"),
            ("bind:Foo.Example.com.", "bind:foo.example.com"),
            ("bind:*.EXAMPLE.com", "bind:*.example.com"),
            (
                "bind:TCP://h.example:20000-20100",
                "bind:tcp://h.example:20000-20100",
            ),
            ("bind:1.tcp.example:20002", "bind:tcp://1.tcp.example:20002"),
            (
                "bind:https://bücher.example",
                "bind:https://xn--bcher-kva.example",
            ),
        ] {
            let rule = AclRule::parse(input).unwrap();
            assert_eq!(rule.to_string(), canonical);
            assert_eq!(AclRule::parse(canonical).unwrap(), rule);
        }
    }

    #[test]
    fn malformed_rules_are_rejected() {
        for bad in [
            "",
            "foo.example.com",
            "Bind:foo",
            "bind:",
            "bind:foo=bar",
            "bind:app=*",
            "bind:tcp://h.example",
            "bind:tcp://h.example:0",
            "bind:tcp://h.example:70000",
            "bind:tcp://h.example:20-10",
            "bind:h.example:x",
            "bind:ftp://h.example",
            "bind:https://*",
            "bind:**.example",
            "bind:a.*.example",
            "bind:https://h.example/path",
            "bind:[::1]:22",
        ] {
            assert!(AclRule::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn endpoints_parse_and_default_ports() {
        let e = EndpointUrl::parse("Foo.Example.com").unwrap();
        assert_eq!(
            (e.scheme(), e.host(), e.port()),
            (Scheme::Https, "foo.example.com", 443)
        );
        assert_eq!(e.to_string(), "https://foo.example.com");
        let e = EndpointUrl::parse("tcp://1.tcp.example:20002").unwrap();
        assert_eq!(e.to_string(), "tcp://1.tcp.example:20002");
        assert_eq!(EndpointUrl::parse("http://a.b:8080/").unwrap().port(), 8080);
        for bad in [
            "tcp://a.b",
            "https://a.b:1-2",
            "gopher://a.b",
            "https://a.b/x",
            "https://",
        ] {
            assert!(
                EndpointUrl::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn denial_names_endpoint_and_rules() {
        let acl = Acl::parse(&["bind:a.example", "bind:*.b.example"]).unwrap();
        let err = acl
            .allows(&EndpointUrl::parse("https://c.example").unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "endpoint `https://c.example` is not allowed by this credential's ACL \
             [bind:a.example, bind:*.b.example]"
        );
    }

    #[test]
    fn acl_serde_round_trips_and_validates() {
        let acl = Acl::parse(&["bind:*.Fleet.example"]).unwrap();
        let json = serde_json::to_string(&acl).unwrap();
        assert_eq!(json, r#"["bind:*.fleet.example"]"#);
        assert_eq!(serde_json::from_str::<Acl>(&json).unwrap(), acl);
        assert!(serde_json::from_str::<Acl>(r#"["nope"]"#).is_err());
    }

    #[test]
    fn too_many_rules_are_rejected() {
        let rules = vec!["bind:a.example"; MAX_ACL_RULES + 1];
        assert!(matches!(
            Acl::parse(&rules),
            Err(AclError::TooManyRules { .. })
        ));
    }
}
