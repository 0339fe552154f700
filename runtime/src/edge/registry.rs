//! The edge's table of bound endpoints and the routes to them.
//!
//! Public endpoints are found by the host (and protocol) of a public connection; internal
//! endpoints (`*.internal`, spec §7.1–7.2) live in a separate table keyed by scheme, host and
//! port that only `forward-internal` consults, so no public listener can ever reach them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::client::conn::http2::SendRequest;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::body::Body;
use crate::policy_hook::EndpointPolicy;
use crate::proto::control::EndpointProto;
use crate::routing::{HostPattern, HostTable};

/// A live session an endpoint is served by.
#[derive(Clone, Debug)]
pub(crate) struct SessionLink {
    pub id: u64,
    pub sender: SendRequest<Body>,
    pub streams: Arc<Semaphore>,
}

/// Where an endpoint is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteKey {
    /// A public HTTP, HTTPS or TLS endpoint, by host.
    Host(EndpointProto, HostPattern),
    /// A public TCP endpoint, by edge port.
    Port(u16),
    /// An internal endpoint (`scheme://name.internal[:port]`), reachable only through
    /// `forward-internal`; the port is the URL's (or the scheme's default).
    Internal(EndpointProto, HostPattern, u16),
}

/// The top-level domain of internal endpoints.
pub(crate) const INTERNAL_TLD: &str = "internal";

/// True when `host` (normalised, possibly `*.`-prefixed) names an internal endpoint.
pub(crate) fn is_internal_host(host: &str) -> bool {
    host == INTERNAL_TLD
        || host
            .strip_suffix(INTERNAL_TLD)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Aborts a task when dropped (TCP endpoint listeners live as long as their endpoint).
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
pub(crate) struct Endpoint {
    pub id: String,
    pub url: String,
    pub proto: EndpointProto,
    pub key: RouteKey,
    pub owner: String,
    pub resume: String,
    pub session: Option<SessionLink>,
    pub policy: Arc<dyn EndpointPolicy>,
    pub offline_since: Option<Instant>,
    pub _listener: Option<AbortOnDrop>,
}

/// What a public connection needs to know, cloned out of the table.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub id: String,
    pub url: String,
    pub proto: EndpointProto,
    pub session: Option<SessionLink>,
    pub policy: Arc<dyn EndpointPolicy>,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    http: HostTable<String>,
    https: HostTable<String>,
    tls: HostTable<String>,
    tcp: HashMap<u16, String>,
    internal: HashMap<(EndpointProto, u16), HostTable<String>>,
    pub endpoints: HashMap<String, Endpoint>,
}

impl Registry {
    fn table(&self, proto: EndpointProto) -> Option<&HostTable<String>> {
        match proto {
            EndpointProto::Http => Some(&self.http),
            EndpointProto::Https => Some(&self.https),
            EndpointProto::Tls => Some(&self.tls),
            EndpointProto::Tcp => None,
        }
    }

    fn table_mut(&mut self, proto: EndpointProto) -> Option<&mut HostTable<String>> {
        match proto {
            EndpointProto::Http => Some(&mut self.http),
            EndpointProto::Https => Some(&mut self.https),
            EndpointProto::Tls => Some(&mut self.tls),
            EndpointProto::Tcp => None,
        }
    }

    fn route_of(&self, id: &str) -> Option<Route> {
        self.endpoints.get(id).map(|e| Route {
            id: e.id.clone(),
            url: e.url.clone(),
            proto: e.proto,
            session: e.session.clone(),
            policy: e.policy.clone(),
        })
    }

    /// The endpoint serving `host` over `proto`.
    pub fn lookup_host(&self, proto: EndpointProto, host: &str) -> Option<Route> {
        let id = self.table(proto)?.lookup(host)?;
        self.route_of(id)
    }

    /// The internal endpoint serving `scheme://host:port` (`host` normalised). Exact names win
    /// over wildcards, the longest wildcard suffix wins, as for public hosts.
    pub fn lookup_internal(&self, proto: EndpointProto, host: &str, port: u16) -> Option<Route> {
        let id = self.internal.get(&(proto, port))?.lookup(host)?;
        self.route_of(id)
    }

    /// The session serving endpoint `id` now, if it is online.
    pub fn session_of(&self, id: &str) -> Option<SessionLink> {
        self.endpoints.get(id)?.session.clone()
    }

    /// The endpoint on edge port `port`.
    pub fn lookup_port(&self, port: u16) -> Option<Route> {
        self.route_of(self.tcp.get(&port)?)
    }

    /// The id of the endpoint bound at `key`, if any.
    pub fn find(&self, key: &RouteKey) -> Option<&str> {
        match key {
            RouteKey::Host(proto, p) => self.table(*proto)?.get(p).map(String::as_str),
            RouteKey::Port(port) => self.tcp.get(port).map(String::as_str),
            RouteKey::Internal(proto, p, port) => self
                .internal
                .get(&(*proto, *port))?
                .get(p)
                .map(String::as_str),
        }
    }

    /// True when `port` is taken by an endpoint.
    pub fn port_in_use(&self, port: u16) -> bool {
        self.tcp.contains_key(&port)
    }

    /// Adds an endpoint and its route.
    pub fn insert(&mut self, ep: Endpoint) {
        match &ep.key {
            RouteKey::Host(proto, p) => {
                if let Some(t) = self.table_mut(*proto) {
                    t.insert(p, ep.id.clone());
                }
            }
            RouteKey::Port(port) => {
                self.tcp.insert(*port, ep.id.clone());
            }
            RouteKey::Internal(proto, p, port) => {
                self.internal
                    .entry((*proto, *port))
                    .or_default()
                    .insert(p, ep.id.clone());
            }
        }
        self.endpoints.insert(ep.id.clone(), ep);
    }

    /// Removes an endpoint and its route.
    pub fn remove(&mut self, id: &str) -> Option<Endpoint> {
        let ep = self.endpoints.remove(id)?;
        match &ep.key {
            RouteKey::Host(proto, p) => {
                if let Some(t) = self.table_mut(*proto) {
                    t.remove(p);
                }
            }
            RouteKey::Port(port) => {
                self.tcp.remove(port);
            }
            RouteKey::Internal(proto, p, port) => {
                if let Some(t) = self.internal.get_mut(&(*proto, *port)) {
                    t.remove(p);
                    if t.is_empty() {
                        self.internal.remove(&(*proto, *port));
                    }
                }
            }
        }
        Some(ep)
    }

    /// Marks every endpoint of session `sid` offline; returns how many.
    pub fn session_gone(&mut self, sid: u64) -> usize {
        let now = Instant::now();
        let mut n = 0;
        for ep in self.endpoints.values_mut() {
            if ep.session.as_ref().is_some_and(|s| s.id == sid) {
                ep.session = None;
                ep.offline_since = Some(now);
                n += 1;
            }
        }
        n
    }

    /// URLs of the endpoints served by session `sid`, sorted.
    pub fn urls_of(&self, sid: u64) -> Vec<String> {
        let mut v: Vec<String> = self
            .endpoints
            .values()
            .filter(|e| e.session.as_ref().is_some_and(|s| s.id == sid))
            .map(|e| e.url.clone())
            .collect();
        v.sort();
        v
    }

    /// Drops endpoints offline for longer than `retention`.
    pub fn expire(&mut self, retention: Duration) {
        let now = Instant::now();
        let stale: Vec<String> = self
            .endpoints
            .values()
            .filter(|e| {
                e.offline_since
                    .is_some_and(|t| now.duration_since(t) > retention)
            })
            .map(|e| e.id.clone())
            .collect();
        for id in stale {
            self.remove(&id);
        }
    }

    /// Removes everything (shutdown): closes TCP endpoint listeners.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, key: RouteKey) -> Endpoint {
        Endpoint {
            id: id.into(),
            url: format!("url-of-{id}"),
            proto: EndpointProto::Https,
            key,
            owner: "o".into(),
            resume: "r".into(),
            session: None,
            policy: Arc::new(crate::policy_hook::PassThrough),
            offline_since: None,
            _listener: None,
        }
    }

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn internal_endpoints_are_only_found_by_internal_lookups() {
        let mut r = Registry::default();
        let https = EndpointProto::Https;
        r.insert(endpoint(
            "a",
            RouteKey::Internal(https, p("cam-1.site.internal"), 443),
        ));
        r.insert(endpoint(
            "b",
            RouteKey::Internal(https, p("*.site.internal"), 443),
        ));
        r.insert(endpoint(
            "c",
            RouteKey::Internal(EndpointProto::Http, p("cam-1.site.internal"), 8080),
        ));
        assert!(r.lookup_host(https, "cam-1.site.internal").is_none());
        let id = |r: Option<Route>| r.map(|r| r.id);
        assert_eq!(
            id(r.lookup_internal(https, "cam-1.site.internal", 443)),
            Some("a".into())
        );
        assert_eq!(
            id(r.lookup_internal(https, "cam-2.site.internal", 443)),
            Some("b".into())
        );
        assert_eq!(
            id(r.lookup_internal(https, "cam-1.site.internal", 8080)),
            None
        );
        assert_eq!(
            id(r.lookup_internal(EndpointProto::Http, "cam-1.site.internal", 8080)),
            Some("c".into())
        );
        assert_eq!(
            r.find(&RouteKey::Internal(https, p("*.site.internal"), 443)),
            Some("b")
        );
        r.remove("b");
        assert_eq!(
            id(r.lookup_internal(https, "cam-2.site.internal", 443)),
            None
        );
        r.remove("a");
        r.remove("c");
        assert!(r.internal.is_empty());
    }

    #[test]
    fn internal_host_names() {
        assert!(is_internal_host("a.internal"));
        assert!(is_internal_host("*.b.internal"));
        assert!(!is_internal_host("a.internal.example.com"));
        assert!(!is_internal_host("myinternal"));
        assert!(!is_internal_host("a.xinternal"));
    }
}
