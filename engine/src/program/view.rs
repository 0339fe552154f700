//! The borrowed request view the evaluator reads and the per-worker scratch space it reuses.
//!
//! The runtime implements [`RequestView`] over `http::request::Parts` plus connection
//! information; tests and the CLI use [`OwnedRequest`]. Every accessor borrows from the request,
//! so reading a built-in field never allocates.

use std::net::IpAddr;

/// A read-only view of one connection, request and (in the response phases) response.
///
/// Header names passed to the lookup methods are lower-case. Values are returned as they were
/// received. Methods returning `Option` return `None` when the phase or the connection has no
/// such datum (no TLS, no response yet, no explicit port, …).
pub trait RequestView {
    /// The HTTP method (`GET`).
    fn method(&self) -> &str;
    /// The URL scheme, `http` or `https`.
    fn scheme(&self) -> &str;
    /// The value of the `Host` header (`req.host`).
    fn host(&self) -> &str;
    /// The host name of the request URL, without port (`req.url.host`).
    fn url_host(&self) -> &str;
    /// The explicit port of the request URL, if any (`req.url.port`).
    fn url_port(&self) -> Option<u16>;
    /// The normalized path, with a leading `/` (`req.url.path`).
    fn path(&self) -> &str;
    /// The raw query string without `?`, empty when there is none (`req.url.query`).
    fn query(&self) -> &str;
    /// The HTTP protocol version (`HTTP/1.1`).
    fn version(&self) -> &str;
    /// The number of values of the request header `name`.
    fn header_count(&self, name: &str) -> usize;
    /// The `index`-th value of the request header `name`.
    fn header(&self, name: &str, index: usize) -> Option<&str>;
    /// Calls `f` with every request header (lower-case name, value) in order.
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &str));
    /// The layer-4 client address (`conn.client_ip`).
    fn client_ip(&self) -> Option<IpAddr>;
    /// The layer-4 client port (`conn.client_port`).
    fn client_port(&self) -> Option<u16>;
    /// The local address the connection arrived on (`conn.server_ip`).
    fn server_ip(&self) -> Option<IpAddr> {
        None
    }
    /// The local port the connection arrived on (`conn.server_port`).
    fn server_port(&self) -> Option<u16> {
        None
    }
    /// The TLS server name sent by the client (`conn.tls.sni`).
    fn tls_sni(&self) -> Option<&str> {
        None
    }
    /// The negotiated TLS version (`conn.tls.version`).
    fn tls_version(&self) -> Option<&str> {
        None
    }
    /// The response status (`res.status_code`), in the response phases.
    fn response_status(&self) -> Option<u16> {
        None
    }
    /// The number of values of the response header `name`.
    fn response_header_count(&self, _name: &str) -> usize {
        0
    }
    /// The `index`-th value of the response header `name`.
    fn response_header(&self, _name: &str, _index: usize) -> Option<&str> {
        None
    }
    /// Calls `f` with every response header (lower-case name, value) in order.
    fn for_each_response_header(&self, _f: &mut dyn FnMut(&str, &str)) {}
    /// Any other variable of the environment (IP intelligence, TLS certificate fields,
    /// endpoint data, time): `None` when the runtime does not provide it.
    fn other(&self, _name: &str) -> Option<crate::Value> {
        None
    }
}

/// A view that answers [`RequestView::other`] from `vars` first (variables a test or the CLI
/// injects: `conn.geo.country_code`, TLS details); every other accessor is `req`'s.
#[derive(Debug, Clone, Default)]
pub struct WithVariables<R> {
    /// The request.
    pub req: R,
    /// Extra variables by full name, answered before `req`'s own.
    pub vars: std::collections::HashMap<String, crate::Value>,
}

impl<R: RequestView> RequestView for WithVariables<R> {
    fn method(&self) -> &str {
        self.req.method()
    }
    fn scheme(&self) -> &str {
        self.req.scheme()
    }
    fn host(&self) -> &str {
        self.req.host()
    }
    fn url_host(&self) -> &str {
        self.req.url_host()
    }
    fn url_port(&self) -> Option<u16> {
        self.req.url_port()
    }
    fn path(&self) -> &str {
        self.req.path()
    }
    fn query(&self) -> &str {
        self.req.query()
    }
    fn version(&self) -> &str {
        self.req.version()
    }
    fn header_count(&self, name: &str) -> usize {
        self.req.header_count(name)
    }
    fn header(&self, name: &str, index: usize) -> Option<&str> {
        self.req.header(name, index)
    }
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &str)) {
        self.req.for_each_header(f);
    }
    fn client_ip(&self) -> Option<IpAddr> {
        self.req.client_ip()
    }
    fn client_port(&self) -> Option<u16> {
        self.req.client_port()
    }
    fn server_ip(&self) -> Option<IpAddr> {
        self.req.server_ip()
    }
    fn server_port(&self) -> Option<u16> {
        self.req.server_port()
    }
    fn tls_sni(&self) -> Option<&str> {
        self.req.tls_sni()
    }
    fn tls_version(&self) -> Option<&str> {
        self.req.tls_version()
    }
    fn response_status(&self) -> Option<u16> {
        self.req.response_status()
    }
    fn response_header_count(&self, name: &str) -> usize {
        self.req.response_header_count(name)
    }
    fn response_header(&self, name: &str, index: usize) -> Option<&str> {
        self.req.response_header(name, index)
    }
    fn for_each_response_header(&self, f: &mut dyn FnMut(&str, &str)) {
        self.req.for_each_response_header(f);
    }
    fn other(&self, name: &str) -> Option<crate::Value> {
        self.vars
            .get(name)
            .cloned()
            .or_else(|| self.req.other(name))
    }
}

/// An owned request, for tests, the CLI and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct OwnedRequest {
    /// `req.method`.
    pub method: String,
    /// `req.url.scheme`.
    pub scheme: String,
    /// `req.host` (the Host header).
    pub host: String,
    /// `req.url.host`.
    pub url_host: String,
    /// `req.url.port`.
    pub url_port: Option<u16>,
    /// `req.url.path`.
    pub path: String,
    /// `req.url.query`.
    pub query: String,
    /// `req.version`.
    pub version: String,
    /// Request headers, lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// `conn.client_ip`.
    pub client_ip: Option<IpAddr>,
    /// `conn.client_port`.
    pub client_port: Option<u16>,
    /// `conn.server_ip`.
    pub server_ip: Option<IpAddr>,
    /// `conn.server_port`.
    pub server_port: Option<u16>,
    /// `conn.tls.sni`.
    pub sni: Option<String>,
    /// `conn.tls.version`.
    pub tls_version: Option<String>,
    /// `res.status_code`.
    pub response_status: Option<u16>,
    /// Response headers, lower-case names, in order.
    pub response_headers: Vec<(String, String)>,
}

/// Why a request line could not be parsed by [`OwnedRequest::parse`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid request `{input}`: {reason}")]
pub struct RequestParseError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl OwnedRequest {
    /// A request from `METHOD URL`, for example `GET https://api.example.test:8443/v1/x?y=1`.
    /// The `Host` header is set from the URL authority.
    ///
    /// # Errors
    /// When the method or the absolute URL is missing or malformed.
    pub fn parse(line: &str) -> Result<Self, RequestParseError> {
        let error = |reason| RequestParseError {
            input: line.to_owned(),
            reason,
        };
        let (method, url) = line
            .trim()
            .split_once(' ')
            .ok_or_else(|| error("expected `METHOD URL`"))?;
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(error("the method must be letters only"));
        }
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| error("the URL must be absolute (`scheme://host/path`)"))?;
        if scheme != "http" && scheme != "https" {
            return Err(error("the scheme must be `http` or `https`"));
        }
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(pos) => rest.split_at(pos),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(error("the URL has no host"));
        }
        let (url_host, port_text) = match authority.strip_prefix('[') {
            // An IPv6 literal: `[::1]` or `[::1]:8080`; the host is given without brackets.
            Some(rest) => {
                let (host, after) = rest
                    .split_once(']')
                    .ok_or_else(|| error("unterminated IPv6 address"))?;
                match after {
                    "" => (host, None),
                    _ => (
                        host,
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| error("invalid port"))?,
                        ),
                    ),
                }
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let url_port = port_text
            .map(|p| p.parse::<u16>().map_err(|_| error("invalid port")))
            .transpose()?;
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path_query, ""),
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(OwnedRequest {
            method: method.to_ascii_uppercase(),
            scheme: scheme.to_owned(),
            host: authority.to_owned(),
            url_host: url_host.to_owned(),
            url_port,
            path: path.to_owned(),
            query: query.to_owned(),
            version: "HTTP/1.1".to_owned(),
            headers: vec![("host".to_owned(), authority.to_owned())],
            ..OwnedRequest::default()
        })
    }

    /// Adds a request header (the name is lower-cased).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Sets the client address.
    #[must_use]
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }
}

fn nth_header<'a>(headers: &'a [(String, String)], name: &str, index: usize) -> Option<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .nth(index)
        .map(|(_, v)| v.as_str())
}

impl RequestView for OwnedRequest {
    fn method(&self) -> &str {
        &self.method
    }
    fn scheme(&self) -> &str {
        &self.scheme
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn url_host(&self) -> &str {
        &self.url_host
    }
    fn url_port(&self) -> Option<u16> {
        self.url_port
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn query(&self) -> &str {
        &self.query
    }
    fn version(&self) -> &str {
        &self.version
    }
    fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
    fn header(&self, name: &str, index: usize) -> Option<&str> {
        nth_header(&self.headers, name, index)
    }
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &str)) {
        for (n, v) in &self.headers {
            f(n, v);
        }
    }
    fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
    fn client_port(&self) -> Option<u16> {
        self.client_port
    }
    fn server_ip(&self) -> Option<IpAddr> {
        self.server_ip
    }
    fn server_port(&self) -> Option<u16> {
        self.server_port
    }
    fn tls_sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }
    fn tls_version(&self) -> Option<&str> {
        self.tls_version.as_deref()
    }
    fn response_status(&self) -> Option<u16> {
        self.response_status
    }
    fn response_header_count(&self, name: &str) -> usize {
        self.response_headers
            .iter()
            .filter(|(n, _)| n == name)
            .count()
    }
    fn response_header(&self, name: &str, index: usize) -> Option<&str> {
        nth_header(&self.response_headers, name, index)
    }
    fn for_each_response_header(&self, f: &mut dyn FnMut(&str, &str)) {
        for (n, v) in &self.response_headers {
            f(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_line() {
        let r = OwnedRequest::parse("get https://api.example.test:8443/v1/x?y=1").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.url_host, "api.example.test");
        assert_eq!(r.url_port, Some(8443));
        assert_eq!(r.host, "api.example.test:8443");
        assert_eq!(r.path, "/v1/x");
        assert_eq!(r.query, "y=1");
        assert_eq!(r.header("host", 0), Some("api.example.test:8443"));
        let r = OwnedRequest::parse("GET http://h").unwrap();
        assert_eq!(r.path, "/");
        assert!(OwnedRequest::parse("GET /x").is_err());
        let r = OwnedRequest::parse("GET http://[::1]:8080/p").unwrap();
        assert_eq!((r.url_host.as_str(), r.url_port), ("::1", Some(8080)));
        let r = OwnedRequest::parse("GET http://[::1]/p").unwrap();
        assert_eq!((r.url_host.as_str(), r.url_port), ("::1", None));
        assert!(OwnedRequest::parse("GET http://[::1/p").is_err());
        assert!(OwnedRequest::parse("GET http://h:99999/p").is_err());
        assert!(OwnedRequest::parse("GET ftp://h/").is_err());
    }
}
