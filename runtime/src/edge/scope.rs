//! Endpoint patterns of scoped edge-wide policies (`policies: [{file, endpoints}]` in
//! `edge.yml`), IO-free.
//!
//! A pattern is `[scheme://]host[:port]`:
//! - `scheme` is `http`, `https`, `tcp`, `tls` or `*`; without one, any scheme matches;
//! - `host` is `*` (any), `*.suffix` (any name under `suffix`, at any depth; a wildcard endpoint
//!   `*.a.suffix` is under it too) or an exact name;
//! - `port` (only for `tcp`) is the edge port of a `tcp://` endpoint.
//!
//! Examples: `*.fleet.example.test`, `https://admin.example.test`, `tcp://*`, `tcp://*:22022`.

use crate::proto::control::EndpointProto;
use crate::routing::HostPattern;

/// A parsed endpoint pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointPattern {
    scheme: Option<EndpointProto>,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Under(String),
    Exact(String),
}

impl EndpointPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid endpoint pattern `{s}`: {why}");
        let (scheme, rest) = match s.split_once("://") {
            None => (None, s),
            Some(("*", rest)) => (None, rest),
            Some((sc, rest)) => (
                Some(match sc.to_ascii_lowercase().as_str() {
                    "http" => EndpointProto::Http,
                    "https" => EndpointProto::Https,
                    "tcp" => EndpointProto::Tcp,
                    "tls" => EndpointProto::Tls,
                    _ => return Err(bad("the scheme must be http, https, tcp, tls or *")),
                }),
                rest,
            ),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad("invalid port"))?)),
            None => (rest, None),
        };
        if port.is_some() && scheme != Some(EndpointProto::Tcp) {
            return Err(bad("a port is only meaningful for `tcp://` endpoints"));
        }
        let host = if host == "*" {
            HostMatch::Any
        } else {
            match HostPattern::parse(host).map_err(|_| bad("invalid host"))? {
                HostPattern::Exact(h) => HostMatch::Exact(h),
                HostPattern::Wildcard(suffix) => HostMatch::Under(suffix),
            }
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether the endpoint `url` (canonical, as bound: `https://a.example.test`,
    /// `https://*.example.test`, `tcp://example.test:20022`) of protocol `proto` matches.
    pub(crate) fn matches(&self, proto: EndpointProto, url: &str) -> bool {
        if self.scheme.is_some_and(|s| s != proto) {
            return false;
        }
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok()),
            None => (rest, None),
        };
        if self.port.is_some() && self.port != port {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => *h == host,
            HostMatch::Under(suffix) => {
                // A wildcard endpoint `*.x` serves the names under `x`: it is under `suffix`
                // when `x` is `suffix` or a name under it.
                let (name, wildcard) = match host.strip_prefix("*.") {
                    Some(n) => (n, true),
                    None => (host.as_str(), false),
                };
                (wildcard && name == suffix)
                    || name
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|label| label.len() > 1 && label.ends_with('.'))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, proto: EndpointProto, url: &str) -> bool {
        EndpointPattern::parse(p).unwrap().matches(proto, url)
    }

    #[test]
    fn host_patterns_match_any_scheme() {
        use EndpointProto::*;
        assert!(m(
            "*.fleet.example.test",
            Https,
            "https://cam-1.fleet.example.test"
        ));
        assert!(m(
            "*.fleet.example.test",
            Http,
            "http://a.b.fleet.example.test"
        ));
        assert!(m(
            "*.fleet.example.test",
            Tls,
            "tls://db.fleet.example.test"
        ));
        assert!(m(
            "*.fleet.example.test",
            Https,
            "https://*.fleet.example.test"
        ));
        assert!(m("*.example.test", Https, "https://*.fleet.example.test"));
        assert!(!m(
            "*.fleet.example.test",
            Https,
            "https://fleet.example.test"
        ));
        assert!(!m(
            "*.fleet.example.test",
            Https,
            "https://xfleet.example.test"
        ));
        assert!(!m("*.fleet.example.test", Https, "https://*.example.test"));
        assert!(m("Admin.Example.test", Https, "https://admin.example.test"));
        assert!(!m(
            "admin.example.test",
            Https,
            "https://x.admin.example.test"
        ));
    }

    #[test]
    fn schemes_and_ports() {
        use EndpointProto::*;
        assert!(m("tcp://*", Tcp, "tcp://example.test:20022"));
        assert!(!m("tcp://*", Https, "https://a.example.test"));
        assert!(m("tcp://*:20022", Tcp, "tcp://example.test:20022"));
        assert!(!m("tcp://*:20023", Tcp, "tcp://example.test:20022"));
        assert!(m("*://*", Http, "http://a.example.test"));
        assert!(m("*", Tcp, "tcp://example.test:1"));
        assert!(!m("https://*.example.test", Http, "http://a.example.test"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in [
            "ftp://*",
            "https://a.test:443",
            "tcp://*:x",
            "a..b",
            "*.",
            "a.*.b",
            "",
        ] {
            assert!(EndpointPattern::parse(p).is_err(), "{p}");
        }
    }
}
