//! The policy engine behind the runtime's [`PolicyCompiler`] / [`EndpointPolicy`] hooks:
//! policies are linted and compiled with `wicket-policy` / `wicket-engine` at bind time and run
//! with `Program::eval` on every connection, request and response.
//!
//! Actions that need I/O (`Decision::External`) are compiled into handlers at bind time
//! ([`crate::actions::compile`]; a bad config refuses the bind). A request reaching one gets
//! [`ReqDecision::Pending`]: the edge awaits it, the handler runs, and the engine resumes the phase
//! over an owned copy of the scratch space with the handler's result recorded. A decision the
//! edge cannot carry out ends the request closed with a 500 naming the action; it is never
//! skipped.
//!
//! `circuit-breaker` admissions ride on a request that goes upstream (a request extension) and
//! are reported with the upstream's status in `on_http_response`; a request answered without
//! the upstream reports them as not sent.
//!
//! `terminate-tls` (in `on_tcp_connect`) is compiled at bind time too, into a TLS server
//! config; the phase stops with [`ConnDecision::TerminateTls`], the edge completes the handshake
//! and resumes the phase with the negotiated details visible as `conn.tls.*`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use wicket_engine::compile::ir::PolicyIr;
use wicket_engine::program::RequestView;
use wicket_engine::program::{BreakerToken, Resume, Upstream};
use wicket_engine::{Decision, Effect, Program, Scratch, Value};
use wicket_policy::Phase;
use wicket_policy::lint::{LintOptions, lint};
use wicket_policy::render::{Format, render};
use wicket_policy::source::SourceMap;

use crate::actions::terminate_tls::{self, TlsTermination};
use crate::actions::{self, ActionEnv, ActionOutcome, ExternalAction, RequestCx};
use crate::body::Body;
use crate::policy_hook::{
    ActionResponseHeaders, ConnContinuation, ConnDecision, ConnInfo, Continuation,
    ERR_POLICY_REFUSED, EndpointPolicy, LocalResponse, PendingRequest, PolicyCompiler, ReqDecision,
    ResDecision, TerminateTls,
};
use crate::proto::control::{EndpointProto, PolicySource, Refusal};
use crate::proto::meta;

/// The action type the edge carries out at connection level.
const TERMINATE_TLS: &str = "terminate-tls";

/// Error code of a request ended by a policy runtime error.
pub const ERR_POLICY_RUNTIME: &str = "ERR_WICKET_4310";
/// Error code of a request ended by an action this edge cannot carry out.
pub const ERR_POLICY_UNSUPPORTED: &str = "ERR_WICKET_4311";

/// Compiles policies with the engine; external actions get handlers over `env`.
#[derive(Debug, Clone)]
pub struct EngineCompiler {
    env: Arc<ActionEnv>,
}

impl EngineCompiler {
    /// A compiler whose external actions use `env`.
    pub fn new(env: Arc<ActionEnv>) -> Self {
        Self { env }
    }
}

impl PolicyCompiler for EngineCompiler {
    fn compile(
        &self,
        source: &PolicySource,
        proto: EndpointProto,
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
        let mut handlers = HashMap::new();
        for ext in program.external_actions() {
            let kind: &str = ext.kind;
            match ext.resume.phase {
                Phase::HttpRequest => {
                    let handler = actions::compile(kind, ext.config, &self.env).map_err(|m| {
                        refuse(
                            format!(
                                "traffic policy `{}`: rule `{}`: action `{kind}`: {m}",
                                source.origin, ext.rule
                            ),
                            Vec::new(),
                        )
                    })?;
                    handlers.insert(ext.resume, handler);
                }
                // Carried out by the TLS accept path.
                Phase::TcpConnect if kind == "terminate-tls" => {}
                phase => {
                    return Err(refuse(
                        format!(
                            "traffic policy `{}`: rule `{}`: the action `{kind}` in `{phase}` is \
                             not supported by this edge",
                            source.origin, ext.rule
                        ),
                        Vec::new(),
                    ));
                }
            }
        }
        let program = Arc::new(program);
        let tcp = TcpPhase::new(program.clone(), &source.origin, proto).map_err(|e| {
            refuse(
                format!("traffic policy `{}`: {e}", source.origin),
                Vec::new(),
            )
        })?;
        Ok(Arc::new(ProgramPolicy(Arc::new(Shared {
            program,
            origin: source.origin.clone(),
            handlers,
            env: self.env.clone(),
            tcp: Arc::new(tcp),
        }))))
    }
}

/// A compiled policy attached to an endpoint.
#[derive(Debug)]
pub struct ProgramPolicy(Arc<Shared>);

/// What an endpoint's requests share, also held by suspended evaluations.
#[derive(Debug)]
struct Shared {
    program: Arc<Program>,
    origin: String,
    /// The request phase's external actions, by the resume point their decision carries.
    handlers: HashMap<Resume, Arc<dyn ExternalAction>>,
    env: Arc<ActionEnv>,
    /// The connection phase, with its `terminate-tls` actions compiled.
    tcp: Arc<TcpPhase>,
}

/// The `on_tcp_connect` phase with its `terminate-tls` actions compiled at bind time, keyed by
/// the resume point their [`Decision::External`] carries.
#[derive(Debug)]
struct TcpPhase {
    program: Arc<Program>,
    origin: Arc<str>,
    tls: HashMap<Resume, Arc<TlsTermination>>,
}

impl TcpPhase {
    fn new(program: Arc<Program>, origin: &str, proto: EndpointProto) -> Result<Self, String> {
        let mut tls = HashMap::new();
        for a in program.external_actions() {
            if a.kind.as_ref() != TERMINATE_TLS {
                continue;
            }
            let compiled = terminate_tls::compile(a.config, proto)
                .map_err(|e| format!("rule `{}`: {e}", a.rule))?;
            tls.insert(a.resume, Arc::new(compiled));
        }
        Ok(Self {
            program,
            origin: Arc::from(origin),
            tls,
        })
    }

    /// Runs (`at: None`) or resumes the phase. A `terminate-tls` on a connection whose TLS an
    /// earlier policy of the chain already terminated closes it (two sets of TLS settings
    /// cannot both hold); on a plain `http`/`tcp` endpoint (an edge-wide policy) it does not
    /// apply and the phase goes on.
    fn run(
        self: &Arc<Self>,
        conn: &ConnInfo,
        scratch: &mut Scratch,
        at: Option<Resume>,
    ) -> ConnDecision {
        let mut at = at;
        loop {
            let view = HttpView::conn(conn);
            let out = match at {
                None => self.program.eval(Phase::TcpConnect, &view, scratch),
                Some(r) => self.program.resume(r, &view, scratch),
            };
            if let Decision::External { kind, resume, .. } = &out.decision {
                if kind.as_ref() == TERMINATE_TLS {
                    let resume = *resume;
                    if !matches!(conn.proto, EndpointProto::Https | EndpointProto::Tls) {
                        at = Some(resume);
                        continue;
                    }
                    if conn.tls.is_some() {
                        // An earlier policy of the chain (the edge-wide one) already chose the
                        // handshake settings: this one's cannot apply; fail closed.
                        tracing::error!(policy = %self.origin, endpoint = %conn.endpoint_url, "terminate-tls runs after tls was already terminated by another policy; connection closed");
                        return ConnDecision::Close;
                    }
                    let Some(config) = self.tls.get(&resume).cloned() else {
                        tracing::error!(policy = %self.origin, "terminate-tls was not compiled at bind time; connection closed");
                        return ConnDecision::Close;
                    };
                    return ConnDecision::TerminateTls(TerminateTls::new(
                        config,
                        Box::new(TcpResume {
                            phase: self.clone(),
                            at: resume,
                            scratch: std::mem::take(scratch),
                        }),
                    ));
                }
            }
            apply_header_effects(&mut HeaderMap::new(), out.effects, &self.origin);
            return match out.decision {
                Decision::Continue => ConnDecision::Allow,
                ref d => {
                    tracing::debug!(endpoint = %conn.endpoint_url, decision = ?d, "connection closed by policy");
                    ConnDecision::Close
                }
            };
        }
    }
}

/// `on_tcp_connect` suspended on `terminate-tls`, with its own scratch (the per-thread one
/// cannot wait for the handshake).
#[derive(Debug)]
struct TcpResume {
    phase: Arc<TcpPhase>,
    at: Resume,
    scratch: Scratch,
}

impl ConnContinuation for TcpResume {
    fn resume(self: Box<Self>, conn: &ConnInfo) -> ConnDecision {
        let TcpResume {
            phase,
            at,
            mut scratch,
        } = *self;
        phase.run(conn, &mut scratch, Some(at))
    }
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
    fn tls_version(&self) -> Option<&str> {
        self.conn.tls.as_ref().map(|t| t.version)
    }
    fn other(&self, name: &str) -> Option<Value> {
        let tls = self.conn.tls.as_deref()?;
        if let Some(rest) = name.strip_prefix("conn.tls.") {
            return tls.variable(rest);
        }
        // `terminate-tls` results describe the connection: readable in every later phase.
        let rest = name.strip_prefix("actions.ngrok.terminate_tls.")?;
        if !tls.by_action {
            return None;
        }
        match rest {
            "warnings" => Some(Value::list(Vec::new())),
            _ => tls.variable(rest),
        }
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
    error_page(StatusCode::INTERNAL_SERVER_ERROR, code, message)
}

/// A plain-text error response with the error-code header.
pub(crate) fn error_page(status: StatusCode, code: &'static str, message: &str) -> LocalResponse {
    let mut headers = HeaderMap::new();
    headers.insert(meta::ERROR_CODE, HeaderValue::from_static(code));
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    LocalResponse {
        status,
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
            r.body = crate::pages::denial_text(r.status, *code).into();
            if !r.headers.contains_key(http::header::CONTENT_TYPE) {
                r.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
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
            // Applied by the caller (`rewrite`) and the edge (`compress::record`).
            Effect::RewriteUrl { .. } | Effect::CompressResponse { .. } => {}
        }
    }
}

impl EndpointPolicy for ProgramPolicy {
    fn on_tcp_connect(&self, conn: &ConnInfo) -> ConnDecision {
        with_scratch(|scratch| self.0.tcp.run(conn, scratch, None))
    }

    fn on_http_request(&self, req: &mut http::request::Parts, conn: &ConnInfo) -> ReqDecision {
        with_scratch(|scratch| {
            let decision = {
                let view = HttpView::request(req, conn);
                self.0
                    .program
                    .eval(Phase::HttpRequest, &view, scratch)
                    .decision
            };
            self.0.settle(req, conn, scratch, decision, 0)
        })
    }

    fn on_http_response(
        &self,
        res: &mut http::response::Parts,
        req: &http::request::Parts,
        conn: &ConnInfo,
    ) -> ResDecision {
        if let Some(BreakerTokens(tokens)) = req.extensions.get::<BreakerTokens>() {
            for (program, token) in tokens {
                if Arc::ptr_eq(program, &self.0.program) {
                    self.0.program.report_response(*token, res.status.as_u16());
                }
            }
        }
        with_scratch(|scratch| {
            let out = {
                let mut view = HttpView::request(req, conn);
                view.res = Some(res);
                self.0.program.eval(Phase::HttpResponse, &view, scratch)
            };
            apply_header_effects(&mut res.headers, out.effects, &self.0.origin);
            // `compress-response` from the request phase, unless this phase has its own.
            if let Some(c) = req.extensions.get::<crate::compress::CompressResponse>() {
                if res
                    .extensions
                    .get::<crate::compress::CompressResponse>()
                    .is_none()
                {
                    res.extensions.insert(c.clone());
                }
            }
            crate::compress::record(&mut res.extensions, out.effects);
            match decision_response(&out.decision, &self.0.origin, &conn.endpoint_url) {
                None => ResDecision::Forward,
                Some(r) => ResDecision::Respond(r),
            }
        })
    }
}

impl Shared {
    /// Ends (or suspends) the request phase after an evaluation or a resumption that produced
    /// `decision`; the effects from index `applied` on are not applied to `req` yet.
    fn settle(
        self: &Arc<Self>,
        req: &mut http::request::Parts,
        conn: &ConnInfo,
        scratch: &mut Scratch,
        decision: Decision,
        applied: usize,
    ) -> ReqDecision {
        if let Decision::External { kind, resume, .. } = &decision {
            if let Some(handler) = self.handlers.get(resume) {
                // The evaluation continues after an await, possibly on another thread: it takes
                // this thread's scratch space with it (a fresh one is left in its place).
                return ReqDecision::Pending(PendingRequest::new(ExternalStep {
                    shared: self.clone(),
                    handler: handler.clone(),
                    resume: *resume,
                    scratch: std::mem::take(scratch),
                    applied,
                    kind: kind.clone(),
                }));
            }
        }
        self.settle_breakers(req, scratch, decision == Decision::Continue);
        let effects = scratch.effects().get(applied..).unwrap_or_default();
        apply_header_effects(&mut req.headers, effects, &self.origin);
        crate::compress::record(&mut req.extensions, effects);
        for e in effects {
            if let Effect::RewriteUrl { url } = e {
                rewrite(req, url);
            }
        }
        match decision {
            Decision::CloseConnection => ReqDecision::Close,
            Decision::Forward {
                url,
                resume_on_error,
            } => {
                let applied = scratch.effects().len();
                ReqDecision::ForwardInternal {
                    url: url.to_string(),
                    on_error: resume_on_error.map(|resume| {
                        PendingRequest::new(ResumeStep {
                            shared: self.clone(),
                            resume,
                            scratch: std::mem::take(scratch),
                            applied,
                        })
                    }),
                }
            }
            d => match decision_response(&d, &self.origin, &conn.endpoint_url) {
                None => ReqDecision::Forward,
                Some(r) => ReqDecision::Respond(r),
            },
        }
    }

    /// Hands the request's `circuit-breaker` admissions to its response phase when it goes
    /// upstream (a request extension), or reports them as not sent.
    fn settle_breakers(
        &self,
        req: &mut http::request::Parts,
        scratch: &mut Scratch,
        forwarded: bool,
    ) {
        if scratch.breaker_tokens().is_empty() {
            return;
        }
        if forwarded {
            let mut tokens = req
                .extensions
                .remove::<BreakerTokens>()
                .unwrap_or(BreakerTokens(Vec::new()));
            tokens.0.extend(
                scratch
                    .take_breaker_tokens()
                    .map(|t| (self.program.clone(), t)),
            );
            req.extensions.insert(tokens);
        } else {
            for t in scratch.take_breaker_tokens() {
                self.program.report(t, Upstream::NotSent);
            }
        }
    }

    /// Resumes the request phase at `resume` over `scratch`.
    fn resume(
        self: &Arc<Self>,
        req: &mut http::request::Parts,
        conn: &ConnInfo,
        mut scratch: Scratch,
        resume: Resume,
        applied: usize,
    ) -> ReqDecision {
        let decision = {
            let view = HttpView::request(req, conn);
            self.program.resume(resume, &view, &mut scratch).decision
        };
        self.settle(req, conn, &mut scratch, decision, applied)
    }
}

/// The `circuit-breaker` admissions of a request forwarded upstream, by program (an edge
/// policy and the endpoint's may both have some), reported when its response arrives.
#[derive(Clone, Debug)]
struct BreakerTokens(Vec<(Arc<Program>, BreakerToken)>);

/// A request phase suspended at an external action.
struct ExternalStep {
    shared: Arc<Shared>,
    handler: Arc<dyn ExternalAction>,
    resume: Resume,
    scratch: Scratch,
    applied: usize,
    kind: Arc<str>,
}

impl Continuation for ExternalStep {
    fn run<'a>(
        self: Box<Self>,
        req: &'a mut http::request::Parts,
        body: &'a mut Body,
        conn: &'a ConnInfo,
    ) -> BoxFuture<'a, ReqDecision> {
        Box::pin(async move {
            let ExternalStep {
                shared,
                handler,
                resume,
                mut scratch,
                applied,
                kind,
            } = *self;
            let state = if handler.reads_phase_state() {
                scratch.phase_state()
            } else {
                wicket_engine::program::PhaseState::default()
            };
            let cx = RequestCx {
                parts: req,
                body,
                conn,
                env: &shared.env,
                state: &state,
            };
            match handler.run(cx).await {
                Ok(ActionOutcome::Continue {
                    result,
                    response_headers,
                }) => {
                    if let Some((ns, value)) = result {
                        scratch.set_action_result(ns, value);
                    }
                    if !response_headers.is_empty() {
                        match req.extensions.get_mut::<ActionResponseHeaders>() {
                            Some(h) => h.0.extend(response_headers),
                            None => {
                                req.extensions
                                    .insert(ActionResponseHeaders(response_headers));
                            }
                        }
                    }
                    shared.resume(req, conn, scratch, resume, applied)
                }
                Ok(ActionOutcome::Respond(r)) => ReqDecision::Respond(r),
                Err(e) => {
                    tracing::warn!(policy = %shared.origin, endpoint = %conn.endpoint_url, action = %kind, error = %e, "policy action failed; request denied");
                    ReqDecision::Respond(e.response())
                }
            }
        })
    }
}

/// A request phase to resume after a failed `forward-internal` with `on_error: continue`.
struct ResumeStep {
    shared: Arc<Shared>,
    resume: Resume,
    scratch: Scratch,
    applied: usize,
}

impl Continuation for ResumeStep {
    fn run<'a>(
        self: Box<Self>,
        req: &'a mut http::request::Parts,
        _body: &'a mut Body,
        conn: &'a ConnInfo,
    ) -> BoxFuture<'a, ReqDecision> {
        let ResumeStep {
            shared,
            resume,
            mut scratch,
            applied,
        } = *self;
        if let Some(f) = req
            .extensions
            .remove::<crate::policy_hook::ForwardFailure>()
        {
            let result = serde_json::json!({
                "url": f.url,
                "error": {"code": f.code, "message": f.message},
            });
            scratch.set_action_result("forward_internal", wicket_engine::Value::from_json(&result));
        }
        let decision = shared.resume(req, conn, scratch, resume, applied);
        Box::pin(std::future::ready(decision))
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
            tls: None,
        }
    }

    fn compile(text: &str) -> Result<Arc<dyn EndpointPolicy>, Refusal> {
        EngineCompiler::new(Arc::new(ActionEnv::ephemeral().unwrap())).compile(
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

    fn tls_info(cn: Option<&str>, by_action: bool) -> Arc<crate::tls::TlsInfo> {
        let client = cn.map(|cn| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let der = p.self_signed(&key).unwrap().der().clone();
            Arc::new(crate::tls::PeerCert::new(der))
        });
        Arc::new(crate::tls::TlsInfo {
            version: "1.2",
            cipher_suite: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            alpn: None,
            sni: Some("a.example.test".into()),
            resumed: false,
            client,
            server: None,
            by_action,
            client_hello: None,
            ja4: std::sync::OnceLock::new(),
        })
    }

    const MTLS: &str = r#"
on_tcp_connect:
  - actions:
      - type: terminate-tls
        config:
          mutual_tls_verification_strategy: require-any
  - expressions: ["conn.tls.client.subject.common_name != 'device-1'"]
    actions: [{type: deny}]
on_http_request:
  - actions:
      - type: add-headers
        config:
          headers:
            x-cn: "${conn.tls.client.subject.common_name}"
            x-action-cn: "${actions.ngrok.terminate_tls.client.subject.common_name}"
            x-version: "${conn.tls.version}"
"#;

    #[test]
    fn terminate_tls_suspends_the_connection_phase_and_resumes_with_the_client_certificate() {
        let p = compile(MTLS).unwrap();
        for (cn, allowed) in [("device-1", true), ("device-2", false)] {
            let ConnDecision::TerminateTls(t) = p.on_tcp_connect(&conn()) else {
                panic!("expected terminate-tls");
            };
            assert!(t.config.strategy().is_some());
            let mut c = conn();
            c.tls = Some(tls_info(Some(cn), true));
            let d = t.resume(&c);
            assert_eq!(d == ConnDecision::Allow, allowed, "{cn}: {d:?}");
        }
        // Later phases read the connection's TLS details.
        let mut c = conn();
        c.tls = Some(tls_info(Some("device-1"), true));
        let mut r = request("/");
        assert!(matches!(
            p.on_http_request(&mut r, &c),
            ReqDecision::Forward
        ));
        assert_eq!(r.headers["x-cn"], "device-1");
        assert_eq!(r.headers["x-action-cn"], "device-1");
        assert_eq!(r.headers["x-version"], "1.2");
        // Without a `terminate-tls` action the results do not exist: the rule fails closed.
        c.tls = Some(tls_info(Some("device-1"), false));
        let mut r = request("/");
        assert!(
            matches!(p.on_http_request(&mut r, &c), ReqDecision::Respond(l) if l.status == 500)
        );
    }

    #[test]
    fn terminate_tls_after_another_policy_terminated_closes_and_plain_endpoints_skip_it() {
        let p = compile(MTLS).unwrap();
        let mut c = conn();
        c.tls = Some(tls_info(Some("device-1"), true));
        assert_eq!(p.on_tcp_connect(&c), ConnDecision::Close);
        // An edge-wide policy on a tcp endpoint: the action does not apply; the phase goes on
        // (and the rule reading the certificate fails closed).
        let mut c = conn();
        c.proto = EndpointProto::Tcp;
        assert_eq!(p.on_tcp_connect(&c), ConnDecision::Close);
        let plain =
            compile("on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n").unwrap();
        assert_eq!(plain.on_tcp_connect(&c), ConnDecision::Allow);
    }

    #[test]
    fn bad_terminate_tls_configs_refuse_the_bind() {
        let err = compile(
            "on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n        config:\n          server_certificate: nope\n          server_private_key: nope\n",
        )
        .unwrap_err();
        assert!(
            err.message.contains("server_certificate"),
            "{}",
            err.message
        );
        let err = EngineCompiler::new(Arc::new(ActionEnv::ephemeral().unwrap()))
            .compile(
                &PolicySource {
                    origin: "p.yml".into(),
                    text: "on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n".into(),
                },
                EndpointProto::Tcp,
            )
            .unwrap_err();
        assert!(err.message.contains("only applies"), "{}", err.message);
    }

    #[test]
    fn host_port_split() {
        assert_eq!(
            split_host_port("a.test:8443"),
            ("a.test".into(), Some(8443))
        );
        assert_eq!(split_host_port("A.test"), ("a.test".into(), None));
    }

    /// A stand-in external action: answers from a fixed identity and checks it sees the body.
    #[derive(Debug)]
    struct FakeIdentity(&'static str);

    impl ExternalAction for FakeIdentity {
        fn run<'a>(
            &'a self,
            cx: RequestCx<'a>,
        ) -> BoxFuture<'a, Result<ActionOutcome, crate::actions::ActionError>> {
            Box::pin(async move {
                let body = actions::buffer_body(cx.body, 1024).await?;
                if &body[..] == b"refuse" {
                    return Err(crate::actions::ActionError::failed("the provider is down"));
                }
                if cx.parts.uri.path() == "/login" {
                    return Ok(ActionOutcome::Respond(local(302, &[], Bytes::new())));
                }
                let identity = serde_json::json!({"identity": {"email": self.0}});
                Ok(ActionOutcome::proceed(
                    "oauth",
                    wicket_engine::Value::from_json(&identity),
                ))
            })
        }
    }

    fn with_fake(text: &str, email: &'static str) -> ProgramPolicy {
        let mut map = SourceMap::new();
        let id = map.add("p.yml".to_owned(), text.to_owned());
        let report = lint(&mut map, id, LintOptions::default());
        assert_eq!(report.errors(), 0);
        let program = wicket_engine::compile(&PolicyIr::from(&report.policies[0])).unwrap();
        let mut handlers: HashMap<Resume, Arc<dyn ExternalAction>> = HashMap::new();
        for ext in program.external_actions() {
            handlers.insert(ext.resume, Arc::new(FakeIdentity(email)));
        }
        let program = Arc::new(program);
        let tcp = TcpPhase::new(program.clone(), "p.yml", EndpointProto::Https).unwrap();
        ProgramPolicy(Arc::new(Shared {
            program,
            origin: "p.yml".into(),
            handlers,
            env: Arc::new(ActionEnv::ephemeral().unwrap()),
            tcp: Arc::new(tcp),
        }))
    }

    async fn settle(
        policy: &dyn EndpointPolicy,
        req: &mut http::request::Parts,
        body: &mut Body,
    ) -> ReqDecision {
        let c = conn();
        let mut d = policy.on_http_request(req, &c);
        while let ReqDecision::Pending(p) = d {
            d = p.run(req, body, &c).await;
        }
        d
    }

    const OAUTH_POLICY: &str = r#"
on_http_request:
  - actions:
      - type: add-headers
        config: { headers: { x-before: "1" } }
  - actions:
      - type: oauth
        config: { provider: google }
  - expressions: ["!actions.ngrok.oauth.identity.email.endsWith('@example.com')"]
    actions:
      - type: deny
        config: { status_code: 403 }
  - actions:
      - type: add-headers
        config: { headers: { x-email: "${actions.ngrok.oauth.identity.email}" } }
"#;

    #[tokio::test]
    async fn external_actions_suspend_and_resume_the_phase_with_their_result() {
        let policy = with_fake(OAUTH_POLICY, "ana@example.com");
        let mut req = request("/x");
        let mut body = crate::body::full("payload");
        let d = settle(&policy, &mut req, &mut body).await;
        assert!(matches!(d, ReqDecision::Forward), "{d:?}");
        // Effects from before and after the suspension are applied once each.
        assert_eq!(req.headers.get_all("x-before").iter().count(), 1);
        assert_eq!(req.headers["x-email"], "ana@example.com");
        // The body the handler read is still there for the upstream.
        let rest = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&rest[..], b"payload");

        let policy = with_fake(OAUTH_POLICY, "eve@evil.test");
        let mut req = request("/x");
        let d = settle(&policy, &mut req, &mut crate::body::empty()).await;
        assert!(
            matches!(d, ReqDecision::Respond(ref r) if r.status == 403),
            "{d:?}"
        );
    }

    #[tokio::test]
    async fn an_action_response_or_failure_ends_the_request_closed() {
        let policy = with_fake(OAUTH_POLICY, "ana@example.com");
        let mut req = request("/login");
        let d = settle(&policy, &mut req, &mut crate::body::empty()).await;
        assert!(
            matches!(d, ReqDecision::Respond(ref r) if r.status == 302),
            "{d:?}"
        );

        let mut req = request("/x");
        let d = settle(&policy, &mut req, &mut crate::body::full("refuse")).await;
        let ReqDecision::Respond(r) = d else {
            panic!("expected an error response, got {d:?}")
        };
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            r.headers[meta::ERROR_CODE],
            crate::actions::ERR_ACTION_FAILED
        );
        assert!(req.headers.get("x-email").is_none());
    }

    #[tokio::test]
    async fn a_chain_runs_the_second_policy_after_the_first_resumes() {
        let second = compile(
            "on_http_request:\n  - actions:\n      - type: add-headers\n        config: { headers: { x-second: \"2\" } }\n",
        )
        .unwrap();
        let chain =
            crate::edge::Chain(Arc::new(with_fake(OAUTH_POLICY, "ana@example.com")), second);
        let mut req = request("/x");
        let d = settle(&chain, &mut req, &mut crate::body::empty()).await;
        assert!(matches!(d, ReqDecision::Forward), "{d:?}");
        assert_eq!(req.headers["x-email"], "ana@example.com");
        assert_eq!(req.headers["x-second"], "2");
    }

    #[test]
    fn external_actions_without_a_handler_refuse_the_bind() {
        let e = compile(
            "on_http_request:\n  - actions:\n      - type: http-request\n        config: { url: \"https://auth.example.test/check\" }\n",
        )
        .unwrap_err();
        assert!(e.message.contains("http-request"), "{}", e.message);
    }
}
