//! The policy engine behind the runtime's [`PolicyCompiler`] / [`EndpointPolicy`] hooks:
//! policies are linted and compiled with `wicket-policy` / `wicket-engine` at bind time and run
//! with `Program::eval` on every connection, request and response.
//!
//! Decisions the edge cannot carry out yet (`forward-internal` and the actions that need I/O:
//! `oauth`, `openid-connect`, `jwt-validation`, `verify-webhook`, `http-request`,
//! `terminate-tls`, `circuit-breaker`) end the request closed with a 500 naming the action; they
//! are never skipped.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use wicket_engine::compile::ir::PolicyIr;
use wicket_engine::program::OwnedRequest;
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

fn conn_view(conn: &ConnInfo) -> OwnedRequest {
    OwnedRequest {
        method: String::new(),
        scheme: conn.proto.scheme().to_owned(),
        host: String::new(),
        url_host: String::new(),
        url_port: None,
        path: String::new(),
        query: String::new(),
        version: String::new(),
        headers: Vec::new(),
        client_ip: Some(conn.client_addr.ip()),
        client_port: Some(conn.client_addr.port()),
        server_ip: Some(conn.local_addr.ip()),
        server_port: Some(conn.local_addr.port()),
        sni: conn.sni.clone(),
        tls_version: None,
        response_status: None,
        response_headers: Vec::new(),
    }
}

fn header_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| !meta::is_reserved(k.as_str()))
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn request_view(req: &http::request::Parts, conn: &ConnInfo) -> OwnedRequest {
    let mut v = conn_view(conn);
    v.method = req.method.as_str().to_owned();
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let (url_host, url_port) = split_host_port(&host);
    v.url_port = url_port.or(Some(conn.local_addr.port()));
    v.url_host = url_host;
    v.host = host;
    v.path = req.uri.path().to_owned();
    v.query = req.uri.query().unwrap_or("").to_owned();
    v.version = match req.version {
        http::Version::HTTP_2 => "HTTP/2".into(),
        http::Version::HTTP_10 => "HTTP/1.0".into(),
        _ => "HTTP/1.1".into(),
    };
    v.headers = header_pairs(&req.headers);
    v
}

fn split_host_port(authority: &str) -> (String, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse() {
            Ok(port) => (h.to_ascii_lowercase(), Some(port)),
            Err(_) => (authority.to_ascii_lowercase(), None),
        },
        _ => (authority.to_ascii_lowercase(), None),
    }
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
        let view = conn_view(conn);
        let mut scratch = Scratch::new();
        let out = self.program.eval(Phase::TcpConnect, &view, &mut scratch);
        apply_header_effects(&mut HeaderMap::new(), out.effects, &self.origin);
        match out.decision {
            Decision::Continue => ConnDecision::Allow,
            ref d => {
                tracing::debug!(endpoint = %conn.endpoint_url, decision = ?d, "connection closed by policy");
                ConnDecision::Close
            }
        }
    }

    fn on_http_request(&self, req: &mut http::request::Parts, conn: &ConnInfo) -> ReqDecision {
        let view = request_view(req, conn);
        let mut scratch = Scratch::new();
        let out = self.program.eval(Phase::HttpRequest, &view, &mut scratch);
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

    fn on_http_response(
        &self,
        res: &mut http::response::Parts,
        req: &http::request::Parts,
        conn: &ConnInfo,
    ) -> ResDecision {
        let mut view = request_view(req, conn);
        view.response_status = Some(res.status.as_u16());
        view.response_headers = header_pairs(&res.headers);
        let mut scratch = Scratch::new();
        let out = self.program.eval(Phase::HttpResponse, &view, &mut scratch);
        apply_header_effects(&mut res.headers, out.effects, &self.origin);
        match decision_response(&out.decision, &self.origin, &conn.endpoint_url) {
            None => ResDecision::Forward,
            Some(r) => ResDecision::Respond(r),
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
