//! The policy engine behind the runtime's [`PolicyCompiler`] / [`EndpointPolicy`] hooks:
//! policies are linted and compiled with `wicket-policy` / `wicket-engine` at bind time and run
//! with `Program::eval` on every connection, request and response.
//!
//! Decisions the edge cannot carry out yet (`forward-internal` and the actions that need I/O:
//! `oauth`, `openid-connect`, `jwt-validation`, `verify-webhook`, `http-request`,
//! `terminate-tls`, `circuit-breaker`) end the request closed with a 500 naming the action; they
//! are never skipped.

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use wicket_engine::compile::ir::PolicyIr;
use wicket_engine::program::RequestView;
use wicket_engine::{Decision, Effect, Program, Scratch};
use wicket_policy::Phase;
use wicket_policy::lint::{LintOptions, lint};
use wicket_policy::render::{Format, render};
use wicket_policy::source::SourceMap;

use crate::policy_hook::{
    ConnDecision, ConnInfo, ERR_POLICY_REFUSED, EndpointPolicy, LocalResponse, PolicyCompiler,
    ReqDecision, ResDecision,
};
use crate::proto::control::{EndpointProto, PolicySource, Refusal};
use crate::proto::meta;

/// Error code of a request ended by a policy runtime error.
pub const ERR_POLICY_RUNTIME: &str = "ERR_WICKET_4310";
/// Error code of a request ended by an action this edge cannot carry out.
pub const ERR_POLICY_UNSUPPORTED: &str = "ERR_WICKET_4311";

/// Compiles policies with the engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineCompiler;

impl PolicyCompiler for EngineCompiler {
    fn compile(
        &self,
        source: &PolicySource,
        _proto: EndpointProto,
    ) -> Result<Arc<dyn EndpointPolicy>, Refusal> {
        let mut map = SourceMap::new();
        let id = map.add(source.origin.clone(), source.text.clone());
        let report = lint(&mut map, id, LintOptions::default());
        let refuse = |message: String, diagnostics: Vec<String>| Refusal {
            code: ERR_POLICY_REFUSED.into(),
            message,
            diagnostics,
        };
        if report.errors() > 0 {
            let text = render(&map, &report.diagnostics, Format::Human, false);
            return Err(refuse(
                format!(
                    "traffic policy `{}` has {} error(s)",
                    source.origin,
                    report.errors()
                ),
                vec![text],
            ));
        }
        let Some(policy) = report.policies.first() else {
            return Err(refuse(
                format!("`{}` holds no traffic policy", source.origin),
                Vec::new(),
            ));
        };
        let program = wicket_engine::compile(&PolicyIr::from(policy)).map_err(|e| {
            refuse(
                format!("cannot compile traffic policy `{}`: {e}", source.origin),
                Vec::new(),
            )
        })?;
        Ok(Arc::new(ProgramPolicy {
            program: Arc::new(program),
            origin: source.origin.clone(),
        }))
    }
}

/// A compiled policy attached to an endpoint.
#[derive(Debug)]
pub struct ProgramPolicy {
    program: Arc<Program>,
    origin: String,
}

/// The engine's view of a connection, request and response, borrowed from the hyper parts
/// (no per-request copy of headers or URL parts). Reserved `wicket-*` headers are invisible,
/// and header values that are not valid UTF-8 are skipped.
struct HttpView<'a> {
    conn: &'a ConnInfo,
    req: Option<&'a http::request::Parts>,
    res: Option<&'a http::response::Parts>,
    host: &'a str,
    url_host: Cow<'a, str>,
    url_port: Option<u16>,
}

impl<'a> HttpView<'a> {
    fn conn(conn: &'a ConnInfo) -> Self {
        Self {
            conn,
            req: None,
            res: None,
            host: "",
            url_host: Cow::Borrowed(""),
            url_port: None,
        }
    }

    fn request(req: &'a http::request::Parts, conn: &'a ConnInfo) -> Self {
        let host = req
            .uri
            .authority()
            .map(http::uri::Authority::as_str)
            .or_else(|| {
                req.headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or_default();
        let (url_host, url_port) = split_host_port(host);
        Self {
            conn,
            req: Some(req),
            res: None,
            host,
            url_host,
            url_port: url_port.or(Some(conn.local_addr.port())),
        }
    }
}

fn header_values<'h>(h: &'h HeaderMap, name: &str) -> impl Iterator<Item = &'h str> {
    // Header maps are keyed by lower-case names (`req.headers['User-Agent']` finds nothing),
    // while `HeaderMap` lookups ignore case: keep the exact-key semantics.
    let visible = !meta::is_reserved(name) && !name.bytes().any(|b| b.is_ascii_uppercase());
    h.get_all(name)
        .iter()
        .filter(move |_| visible)
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
}

fn each_header(h: &HeaderMap, f: &mut dyn FnMut(&str, &str)) {
    for (k, v) in h {
        if meta::is_reserved(k.as_str()) {
            continue;
        }
        if let Ok(v) = std::str::from_utf8(v.as_bytes()) {
            f(k.as_str(), v);
        }
    }
}

impl RequestView for HttpView<'_> {
    fn method(&self) -> &str {
        self.req.map_or("", |r| r.method.as_str())
    }
    fn scheme(&self) -> &str {
        self.conn.proto.scheme()
    }
    fn host(&self) -> &str {
        self.host
    }
    fn url_host(&self) -> &str {
        &self.url_host
    }
    fn url_port(&self) -> Option<u16> {
        self.url_port
    }
    fn path(&self) -> &str {
        self.req.map_or("", |r| r.uri.path())
    }
    fn query(&self) -> &str {
        self.req.and_then(|r| r.uri.query()).unwrap_or("")
    }
    fn version(&self) -> &str {
        match self.req.map(|r| r.version) {
            None => "",
            Some(http::Version::HTTP_2) => "HTTP/2",
            Some(http::Version::HTTP_10) => "HTTP/1.0",
            Some(_) => "HTTP/1.1",
        }
    }
    fn header_count(&self, name: &str) -> usize {
        self.req
            .map_or(0, |r| header_values(&r.headers, name).count())
    }
    fn header(&self, name: &str, index: usize) -> Option<&str> {
        header_values(&self.req?.headers, name).nth(index)
    }
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &str)) {
        if let Some(r) = self.req {
            each_header(&r.headers, f);
        }
    }
    fn client_ip(&self) -> Option<IpAddr> {
        Some(self.conn.client_addr.ip())
    }
    fn client_port(&self) -> Option<u16> {
        Some(self.conn.client_addr.port())
    }
    fn server_ip(&self) -> Option<IpAddr> {
        Some(self.conn.local_addr.ip())
    }
    fn server_port(&self) -> Option<u16> {
        Some(self.conn.local_addr.port())
    }
    fn tls_sni(&self) -> Option<&str> {
        self.conn.sni.as_deref()
    }
    fn response_status(&self) -> Option<u16> {
        self.res.map(|r| r.status.as_u16())
    }
    fn response_header_count(&self, name: &str) -> usize {
        self.res
            .map_or(0, |r| header_values(&r.headers, name).count())
    }
    fn response_header(&self, name: &str, index: usize) -> Option<&str> {
        header_values(&self.res?.headers, name).nth(index)
    }
    fn for_each_response_header(&self, f: &mut dyn FnMut(&str, &str)) {
        if let Some(r) = self.res {
            each_header(&r.headers, f);
        }
    }
}

thread_local! {
    /// Evaluation scratch space, reused by every evaluation on this thread.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Runs `f` with this thread's scratch space.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        // Re-entered from inside an evaluation (not done today): use a fresh one.
        Err(_) => f(&mut Scratch::new()),
    })
}

fn split_host_port(authority: &str) -> (Cow<'_, str>, Option<u16>) {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    };
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    (host, port)
}

fn local(
    status: u16,
    headers: &[(std::sync::Arc<str>, std::sync::Arc<str>)],
    body: Bytes,
) -> LocalResponse {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.append(k, v);
        }
    }
    LocalResponse {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers: map,
        body,
    }
}

fn error_response(code: &'static str, message: &str) -> LocalResponse {
    let mut headers = HeaderMap::new();
    headers.insert(meta::ERROR_CODE, HeaderValue::from_static(code));
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    LocalResponse {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers,
        body: Bytes::from(format!("{message}\n")),
    }
}

/// What a terminating decision means as a local response (`None` for `Continue` and
/// `CloseConnection`).
fn decision_response(d: &Decision, origin: &str, url: &str) -> Option<LocalResponse> {
    Some(match d {
        Decision::Continue | Decision::CloseConnection => return None,
        Decision::Deny { status } => local(*status, &[], Bytes::new()),
        Decision::Respond {
            status,
            headers,
            body,
        } => local(*status, headers, Bytes::from(body.to_string())),
        Decision::Redirect {
            status,
            location,
            headers,
        } => {
            let mut r = local(*status, headers, Bytes::new());
            if let Ok(v) = HeaderValue::from_str(location) {
                r.headers.insert(http::header::LOCATION, v);
            }
            r
        }
        Decision::Reject {
            status,
            headers,
            code,
        } => {
            let mut r = local(*status, headers, Bytes::new());
            if let Some(code) = code {
                r.headers
                    .insert(meta::ERROR_CODE, HeaderValue::from_static(code));
            }
            r
        }
        Decision::Forward { .. } => {
            tracing::error!(policy = %origin, endpoint = %url, "forward-internal is not supported by this edge");
            error_response(
                ERR_POLICY_UNSUPPORTED,
                "the policy forwards to an internal endpoint, which this edge does not support",
            )
        }
        Decision::External { kind, .. } => {
            tracing::error!(policy = %origin, endpoint = %url, action = %kind, "policy action not supported by this edge");
            error_response(
                ERR_POLICY_UNSUPPORTED,
                &format!("the policy action `{kind}` is not supported by this edge"),
            )
        }
        Decision::Error { rule, message } => {
            tracing::warn!(policy = %origin, endpoint = %url, %rule, %message, "policy evaluation failed; request denied");
            error_response(
                ERR_POLICY_RUNTIME,
                "the traffic policy failed for this request",
            )
        }
    })
}

fn apply_header_effects(headers: &mut HeaderMap, effects: &[Effect], origin: &str) {
    for e in effects {
        match e {
            Effect::AddHeader { name, value } => {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    if k == http::header::HOST {
                        headers.insert(k, v);
                    } else {
                        headers.append(k, v);
                    }
                }
            }
            Effect::RemoveHeader { name } => {
                headers.remove(name.as_ref());
            }
            Effect::Log { metadata } => {
                tracing::info!(target: "wicket::policy_log", policy = %origin, metadata = %metadata, "policy log");
            }
            Effect::RewriteUrl { .. } | Effect::CompressResponse { .. } => {}
        }
    }
}

impl EndpointPolicy for ProgramPolicy {
    fn on_tcp_connect(&self, conn: &ConnInfo) -> ConnDecision {
        let view = HttpView::conn(conn);
        with_scratch(|scratch| {
            let out = self.program.eval(Phase::TcpConnect, &view, scratch);
            apply_header_effects(&mut HeaderMap::new(), out.effects, &self.origin);
            match out.decision {
                Decision::Continue => ConnDecision::Allow,
                ref d => {
                    tracing::debug!(endpoint = %conn.endpoint_url, decision = ?d, "connection closed by policy");
                    ConnDecision::Close
                }
            }
        })
    }

    fn on_http_request(&self, req: &mut http::request::Parts, conn: &ConnInfo) -> ReqDecision {
        with_scratch(|scratch| self.request_phase(req, conn, scratch))
    }

    fn on_http_response(
        &self,
        res: &mut http::response::Parts,
        req: &http::request::Parts,
        conn: &ConnInfo,
    ) -> ResDecision {
        with_scratch(|scratch| {
            let out = {
                let mut view = HttpView::request(req, conn);
                view.res = Some(res);
                self.program.eval(Phase::HttpResponse, &view, scratch)
            };
            apply_header_effects(&mut res.headers, out.effects, &self.origin);
            match decision_response(&out.decision, &self.origin, &conn.endpoint_url) {
                None => ResDecision::Forward,
                Some(r) => ResDecision::Respond(r),
            }
        })
    }
}

impl ProgramPolicy {
    fn request_phase(
        &self,
        req: &mut http::request::Parts,
        conn: &ConnInfo,
        scratch: &mut Scratch,
    ) -> ReqDecision {
        // The view borrows `req` only for the evaluation; the outcome borrows the scratch.
        let out = {
            let view = HttpView::request(req, conn);
            self.program.eval(Phase::HttpRequest, &view, scratch)
        };
        apply_header_effects(&mut req.headers, out.effects, &self.origin);
        for e in out.effects {
            if let Effect::RewriteUrl { url } = e {
                rewrite(req, url);
            }
        }
        if out.decision == Decision::CloseConnection {
            return ReqDecision::Close;
        }
        match decision_response(&out.decision, &self.origin, &conn.endpoint_url) {
            None => ReqDecision::Forward,
            Some(r) => ReqDecision::Respond(r),
        }
    }
}

/// Applies a `url-rewrite`: path and query always; the host when it changes.
fn rewrite(req: &mut http::request::Parts, url: &str) {
    let Ok(uri) = url.parse::<http::Uri>() else {
        tracing::warn!(%url, "url-rewrite produced an invalid url; request left unchanged");
        return;
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = uri.path_and_query().cloned();
    if let Some(a) = uri.authority() {
        if req.uri.authority().is_some() {
            parts.authority = Some(a.clone());
        }
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            req.headers.insert(http::header::HOST, v);
        }
    }
    if let Ok(u) = http::Uri::from_parts(parts) {
        req.uri = u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_view_borrows_the_parts_with_exact_key_semantics() {
        let (mut parts, ()) = http::Request::builder()
            .uri("/v1/x?y=1")
            .header("host", "API.Example.test:8443")
            .header("user-agent", "curl")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .header("wicket-endpoint", "ep_1")
            .body(())
            .unwrap()
            .into_parts();
        parts.version = http::Version::HTTP_2;
        let c = conn();
        let v = HttpView::request(&parts, &c);
        assert_eq!(v.url_host(), "api.example.test");
        assert_eq!(v.url_port(), Some(8443));
        assert_eq!(
            (v.path(), v.query(), v.version()),
            ("/v1/x", "y=1", "HTTP/2")
        );
        assert_eq!(v.header("user-agent", 0), Some("curl"));
        assert_eq!(v.header_count("User-Agent"), 0);
        assert_eq!(v.header_count("x-multi"), 2);
        assert_eq!(v.header("x-multi", 1), Some("b"));
        assert_eq!(v.header_count("wicket-endpoint"), 0);
        let mut seen = Vec::new();
        v.for_each_header(&mut |n, _| seen.push(n.to_owned()));
        assert!(!seen.iter().any(|n| n.starts_with("wicket-")), "{seen:?}");
        let bare = HttpView::conn(&c);
        assert_eq!((bare.method(), bare.url_port()), ("", None));
        assert_eq!(bare.client_ip(), Some("192.0.2.7".parse().unwrap()));
    }

    fn conn() -> ConnInfo {
        ConnInfo {
            client_addr: "192.0.2.7:5000".parse().unwrap(),
            local_addr: "127.0.0.1:443".parse().unwrap(),
            proto: EndpointProto::Https,
            sni: Some("a.example.test".into()),
            endpoint_id: "ep_1".into(),
            endpoint_url: "https://a.example.test".into(),
        }
    }

    fn compile(text: &str) -> Result<Arc<dyn EndpointPolicy>, Refusal> {
        EngineCompiler.compile(
            &PolicySource {
                origin: "p.yml".into(),
                text: text.into(),
            },
            EndpointProto::Https,
        )
    }

    fn request(path: &str) -> http::request::Parts {
        http::Request::builder()
            .uri(format!("https://a.example.test{path}"))
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn invalid_policies_are_refused_with_diagnostics() {
        let err = compile(
            "on_http_request:\n  - expressions: ['req.nope == 1']\n    actions: [{type: deny}]\n",
        )
        .unwrap_err();
        assert_eq!(err.code, ERR_POLICY_REFUSED);
        assert!(!err.diagnostics.is_empty(), "{err:?}");
    }

    #[test]
    fn deny_headers_and_custom_responses_are_applied() {
        let p = compile(
            r#"
on_http_request:
  - expressions: ["req.url.path.startsWith('/admin')"]
    actions: [{type: deny, config: {status_code: 403}}]
  - expressions: ["req.url.path == '/hi'"]
    actions:
      - type: custom-response
        config: {status_code: 200, body: "hi there", headers: {content-type: text/plain}}
  - actions:
      - type: add-headers
        config: {headers: {x-from-policy: "yes"}}
on_http_response:
  - actions:
      - type: add-headers
        config: {headers: {x-res: "1"}}
"#,
        )
        .unwrap();
        let mut r = request("/admin/x");
        match p.on_http_request(&mut r, &conn()) {
            ReqDecision::Respond(l) => assert_eq!(l.status, 403),
            d => panic!("{d:?}"),
        }
        let mut r = request("/hi");
        match p.on_http_request(&mut r, &conn()) {
            ReqDecision::Respond(l) => {
                assert_eq!(l.status, 200);
                assert_eq!(&l.body[..], b"hi there");
                assert_eq!(l.headers["content-type"], "text/plain");
            }
            d => panic!("{d:?}"),
        }
        let mut r = request("/other");
        assert!(matches!(
            p.on_http_request(&mut r, &conn()),
            ReqDecision::Forward
        ));
        assert_eq!(r.headers["x-from-policy"], "yes");
        let (mut res, ()) = http::Response::new(()).into_parts();
        assert!(matches!(
            p.on_http_response(&mut res, &r, &conn()),
            ResDecision::Forward
        ));
        assert_eq!(res.headers["x-res"], "1");
        assert_eq!(p.on_tcp_connect(&conn()), ConnDecision::Allow);
    }

    #[test]
    fn host_port_split() {
        assert_eq!(
            split_host_port("a.test:8443"),
            ("a.test".into(), Some(8443))
        );
        assert_eq!(split_host_port("A.test"), ("a.test".into(), None));
    }
}
