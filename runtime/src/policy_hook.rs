//! The integration point between the runtime and the policy engine.
//!
//! The edge asks an [`EndpointPolicy`] at each phase; endpoints without a policy use
//! [`PassThrough`]. A [`PolicyCompiler`] turns the policy text an agent sends at bind time into an
//! `EndpointPolicy`. Until the compiler/evaluator (`Program::eval`) is wired in, the only compiler
//! is [`Unavailable`], which refuses every policy: an endpoint that asks for a policy is never
//! served without it (fail closed).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, StatusCode};

use crate::proto::control::{EndpointProto, PolicySource, Refusal};

/// What is known about a public connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The public client's address.
    pub client_addr: SocketAddr,
    /// The edge address the client connected to.
    pub local_addr: SocketAddr,
    /// The endpoint's public protocol.
    pub proto: EndpointProto,
    /// The TLS server name, when the client sent one.
    pub sni: Option<String>,
    /// The endpoint id.
    pub endpoint_id: String,
    /// The endpoint URL.
    pub endpoint_url: String,
    /// What the edge negotiated when it terminated TLS (`conn.tls.*`); `None` for plain HTTP,
    /// TCP and TLS passed through to the agent.
    pub tls: Option<Arc<crate::tls::TlsInfo>>,
}

/// Decision for a new connection (`on_tcp_connect`).
#[derive(Debug)]
pub enum ConnDecision {
    /// Carry on.
    Allow,
    /// Close the connection immediately.
    Close,
    /// A `terminate-tls` action stopped the phase: the edge completes the handshake with these
    /// settings, then resumes the phase ([`TerminateTls::resume`]) with the TLS details in
    /// [`ConnInfo::tls`].
    TerminateTls(TerminateTls),
}

impl PartialEq for ConnDecision {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Allow, Self::Allow) | (Self::Close, Self::Close) => true,
            (Self::TerminateTls(a), Self::TerminateTls(b)) => Arc::ptr_eq(&a.config, &b.config),
            _ => false,
        }
    }
}

impl Eq for ConnDecision {}

/// The rest of an `on_tcp_connect` phase suspended on `terminate-tls`.
pub trait ConnContinuation: Send + std::fmt::Debug {
    /// Resumes the phase once the handshake is done (`conn.tls` is set).
    fn resume(self: Box<Self>, conn: &ConnInfo) -> ConnDecision;
}

/// A suspended `on_tcp_connect` waiting for the edge to terminate TLS.
#[derive(Debug)]
pub struct TerminateTls {
    /// The compiled action (server certificate, versions, client authentication).
    pub config: Arc<crate::actions::terminate_tls::TlsTermination>,
    next: Box<dyn ConnContinuation>,
}

impl TerminateTls {
    /// A suspension that continues with `next`.
    pub fn new(
        config: Arc<crate::actions::terminate_tls::TlsTermination>,
        next: Box<dyn ConnContinuation>,
    ) -> Self {
        Self { config, next }
    }

    /// Resumes the phase after the handshake. The decision is never `TerminateTls` again for
    /// the same connection: later `terminate-tls` actions see the connection already terminated.
    pub fn resume(self, conn: &ConnInfo) -> ConnDecision {
        self.next.resume(conn)
    }

    /// Runs `then` after this suspension's phase allows the connection (policy chains).
    pub fn and_then(self, then: Arc<dyn EndpointPolicy>) -> Self {
        Self {
            config: self.config,
            next: Box::new(AndThen {
                first: self.next,
                then,
            }),
        }
    }
}

#[derive(Debug)]
struct AndThen {
    first: Box<dyn ConnContinuation>,
    then: Arc<dyn EndpointPolicy>,
}

impl ConnContinuation for AndThen {
    fn resume(self: Box<Self>, conn: &ConnInfo) -> ConnDecision {
        match self.first.resume(conn) {
            ConnDecision::Allow => self.then.on_tcp_connect(conn),
            d => d,
        }
    }
}

/// A response generated at the edge instead of forwarding.
#[derive(Debug, Clone)]
pub struct LocalResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Decision for a request (`on_http_request`).
#[derive(Debug)]
pub enum ReqDecision {
    /// Forward the (possibly modified) request.
    Forward,
    /// Answer with this response and do not forward.
    Respond(LocalResponse),
    /// Close the client connection without a response.
    Close,
    /// The policy needs I/O to decide (an external action): the edge awaits
    /// [`PendingRequest::run`] and acts on the decision it returns (which may be pending again).
    Pending(PendingRequest),
    /// `forward-internal`: hand the request to the internal endpoint `url`.
    ForwardInternal {
        /// The internal endpoint URL.
        url: String,
        /// With `on_error: continue`: resumes the phase when the forward fails.
        on_error: Option<PendingRequest>,
    },
}

/// Headers external actions asked for on the response (an OAuth session cookie rewritten on the
/// way through), kept in the request's extensions until the edge answers: it appends them to the
/// final response — the upstream's or a local one — after every response phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionResponseHeaders(pub Vec<(http::HeaderName, http::HeaderValue)>);

impl ActionResponseHeaders {
    /// Appends the headers recorded in `req` (if any) to `res`.
    pub fn apply(req: &http::Extensions, res: &mut http::HeaderMap) {
        if let Some(h) = req.get::<Self>() {
            for (name, value) in &h.0 {
                res.append(name.clone(), value.clone());
            }
        }
    }
}

/// Why a `forward-internal` failed, handed to its `on_error: continue` continuation in the
/// request's extensions: the resumed phase records it as `actions.ngrok.forward_internal.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardFailure {
    /// The target URL.
    pub url: String,
    /// The error code (`ERR_WICKET_…`).
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

/// The rest of a request phase, after some I/O.
pub trait Continuation: Send {
    /// Carries on with the request; may read (and buffer) the body.
    fn run<'a>(
        self: Box<Self>,
        req: &'a mut http::request::Parts,
        body: &'a mut crate::body::Body,
        conn: &'a ConnInfo,
    ) -> BoxFuture<'a, ReqDecision>;
}

/// A request phase suspended until the edge runs it ([`ReqDecision::Pending`]).
pub struct PendingRequest(Box<dyn Continuation>);

impl std::fmt::Debug for PendingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingRequest")
    }
}

impl PendingRequest {
    /// Wraps a continuation.
    pub fn new(c: impl Continuation + 'static) -> Self {
        Self(Box::new(c))
    }

    /// Runs the rest of the phase.
    pub async fn run(
        self,
        req: &mut http::request::Parts,
        body: &mut crate::body::Body,
        conn: &ConnInfo,
    ) -> ReqDecision {
        self.0.run(req, body, conn).await
    }

    /// Runs `next`'s request phase after this one when this one forwards (policy chains).
    pub fn then(self, next: Arc<dyn EndpointPolicy>) -> Self {
        Self::new(Then { first: self, next })
    }
}

struct Then {
    first: PendingRequest,
    next: Arc<dyn EndpointPolicy>,
}

impl Continuation for Then {
    fn run<'a>(
        self: Box<Self>,
        req: &'a mut http::request::Parts,
        body: &'a mut crate::body::Body,
        conn: &'a ConnInfo,
    ) -> BoxFuture<'a, ReqDecision> {
        Box::pin(async move {
            let Then { first, next } = *self;
            match first.run(req, body, conn).await {
                ReqDecision::Forward => next.on_http_request(req, conn),
                ReqDecision::Pending(p) => ReqDecision::Pending(p.then(next)),
                ReqDecision::ForwardInternal { url, on_error } => ReqDecision::ForwardInternal {
                    url,
                    on_error: on_error.map(|p| p.then(next)),
                },
                d => d,
            }
        })
    }
}

/// Decision for a response (`on_http_response`).
#[derive(Debug, Clone)]
pub enum ResDecision {
    /// Send the (possibly modified) response.
    Forward,
    /// Replace the upstream response with this one.
    Respond(LocalResponse),
}

/// A compiled policy attached to an endpoint, asked at each phase.
pub trait EndpointPolicy: Send + Sync + std::fmt::Debug {
    /// Runs when a public connection is accepted.
    fn on_tcp_connect(&self, conn: &ConnInfo) -> ConnDecision;
    /// Runs for every HTTP request before it is forwarded; may edit the request head.
    fn on_http_request(&self, req: &mut http::request::Parts, conn: &ConnInfo) -> ReqDecision;
    /// Runs for every HTTP response before it is returned; may edit the response head.
    fn on_http_response(
        &self,
        res: &mut http::response::Parts,
        req: &http::request::Parts,
        conn: &ConnInfo,
    ) -> ResDecision;
}

/// The policy of endpoints that have none: everything passes unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

impl EndpointPolicy for PassThrough {
    fn on_tcp_connect(&self, _conn: &ConnInfo) -> ConnDecision {
        ConnDecision::Allow
    }
    fn on_http_request(&self, _req: &mut http::request::Parts, _conn: &ConnInfo) -> ReqDecision {
        ReqDecision::Forward
    }
    fn on_http_response(
        &self,
        _res: &mut http::response::Parts,
        _req: &http::request::Parts,
        _conn: &ConnInfo,
    ) -> ResDecision {
        ResDecision::Forward
    }
}

/// Error code for a refused policy.
pub const ERR_POLICY_REFUSED: &str = "ERR_WICKET_4300";

/// Turns policy text into an [`EndpointPolicy`], or refuses it with diagnostics.
pub trait PolicyCompiler: Send + Sync + std::fmt::Debug {
    /// Loads, lints and compiles `source` for an endpoint of protocol `proto`.
    fn compile(
        &self,
        source: &PolicySource,
        proto: EndpointProto,
    ) -> Result<Arc<dyn EndpointPolicy>, Refusal>;
}

/// The message every policy is refused with while no engine is linked in.
pub const UNAVAILABLE_MESSAGE: &str = "traffic policy enforcement is not available in this build";

/// The compiler used until the policy engine is wired in: refuses every policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unavailable;

impl PolicyCompiler for Unavailable {
    fn compile(
        &self,
        source: &PolicySource,
        _proto: EndpointProto,
    ) -> Result<Arc<dyn EndpointPolicy>, Refusal> {
        Err(Refusal {
            code: ERR_POLICY_REFUSED.into(),
            message: format!("{UNAVAILABLE_MESSAGE} (policy from `{}`)", source.origin),
            diagnostics: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_refuses_every_policy() {
        let src = PolicySource {
            origin: "p.yml".into(),
            text: "on_http_request: []".into(),
        };
        let err = Unavailable.compile(&src, EndpointProto::Https).unwrap_err();
        assert_eq!(err.code, ERR_POLICY_REFUSED);
        assert!(err.message.contains(UNAVAILABLE_MESSAGE), "{}", err.message);
    }

    #[test]
    fn pass_through_allows_everything() {
        let conn = ConnInfo {
            client_addr: "127.0.0.1:1".parse().unwrap(),
            local_addr: "127.0.0.1:2".parse().unwrap(),
            proto: EndpointProto::Http,
            sni: None,
            endpoint_id: "ep_1".into(),
            endpoint_url: "http://a.test".into(),
            tls: None,
        };
        assert_eq!(PassThrough.on_tcp_connect(&conn), ConnDecision::Allow);
        let (mut parts, ()) = http::Request::new(()).into_parts();
        assert!(matches!(
            PassThrough.on_http_request(&mut parts, &conn),
            ReqDecision::Forward
        ));
    }

    #[test]
    fn action_response_headers_are_appended_not_replaced() {
        let mut ext = http::Extensions::new();
        let mut res = http::HeaderMap::new();
        res.insert(http::header::SET_COOKIE, "upstream=1".parse().unwrap());
        // Nothing recorded: the response is left alone.
        ActionResponseHeaders::apply(&ext, &mut res);
        assert_eq!(res.len(), 1);
        ext.insert(ActionResponseHeaders(vec![
            (http::header::SET_COOKIE, "s=2".parse().unwrap()),
            (http::header::SET_COOKIE, "t=3".parse().unwrap()),
        ]));
        ActionResponseHeaders::apply(&ext, &mut res);
        let all: Vec<_> = res.get_all(http::header::SET_COOKIE).iter().collect();
        assert_eq!(all, ["upstream=1", "s=2", "t=3"]);
    }
}
