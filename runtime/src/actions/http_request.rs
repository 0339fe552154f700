//! `http-request` (spec §5.10): a sub-request from a policy whose response later rules read as
//! `actions.ngrok.http_request.*`.
//!
//! Only destinations in the edge operator's allow list ([`AllowList`], edge setting
//! `http_request_allow`, empty by default) are reached, so a policy cannot be used for
//! server-side request forgery: a constant `url` outside the list refuses the bind; an
//! interpolated one is checked per request; every redirect hop is checked again; host names are
//! resolved by the edge and each address re-checked before connecting (see [`allow`]).
//!
//! Behaviour: `timeout` (default 3 s, 1–30 s) bounds the whole exchange, retries and redirects
//! included; `retry_condition` (a CEL expression over `attempts` and `last_attempt.{req,res,error}`)
//! is evaluated after each failed attempt (no response, or a status of 400 or more) and allows at
//! most 3 retries; at most `max_redirects` redirects (default 10) are followed; the response body
//! is capped at 256 KiB. Failures follow `on_error`: `continue` (the default) records
//! `actions.ngrok.http_request.error.{code,message}` and goes on, `halt` ends the request with a
//! 502 (504 on timeout) and the error code.
//!
//! Interpolation (`${…}` in `url`, `query_params` values, `headers` values, `body`) sees the
//! request and connection (`req.*`, `conn.*`) and what the phase has set before this action
//! (`vars.*`, earlier actions' `actions.ngrok.*`).
//! `http-request` runs in `on_http_request` only on this edge; internal (`*.internal`)
//! destinations are not supported.

pub mod allow;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use wicket_engine::compile::ir::ConfigValue;
use wicket_engine::program::OwnedRequest;
use wicket_engine::value::{Key, MapValue};
use wicket_engine::{Scratch, Value};
use wicket_grammar::Expr;
use wicket_grammar::template::{TemplatePart, parse_template};

pub use allow::{AllowError, AllowList, Destination, SETTING};

use super::{ActionEnv, ActionError, ActionOutcome, ExternalAction, RequestCx};
use crate::body::{Body, empty, full};
use crate::policy_hook::ConnInfo;

/// The response body limit (spec: 256 KB).
pub const MAX_RESPONSE_BODY: usize = 256 * 1024;
/// The most retries `retry_condition` can ask for.
pub const MAX_RETRIES: u32 = 3;
/// The default `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// The default `max_redirects`.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// The request failed (connection refused, TLS, protocol error).
pub const ERR_FAILED: &str = "ERR_WICKET_3600";
/// The response body is over [`MAX_RESPONSE_BODY`].
pub const ERR_TOO_LARGE: &str = "ERR_WICKET_3601";
/// No response within `timeout`.
pub const ERR_TIMEOUT: &str = "ERR_WICKET_3602";
/// The destination (or a redirect target, or a resolved address) is not in the allow list.
pub const ERR_NOT_ALLOWED: &str = "ERR_WICKET_3605";
/// More redirects than `max_redirects`.
pub const ERR_TOO_MANY_REDIRECTS: &str = "ERR_WICKET_3214";
/// A template or the retry condition failed to evaluate.
pub const ERR_EVAL: &str = "ERR_WICKET_3900";

const NAMESPACE: &str = "http_request";
const METHODS: [&str; 6] = ["GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"];

/// Compiles an `http-request` config; `Err` refuses the bind.
pub fn compile(
    kind: &str,
    config: &ConfigValue,
    env: &Arc<ActionEnv>,
) -> Result<Arc<dyn ExternalAction>, String> {
    debug_assert_eq!(kind, "http-request");
    Ok(Arc::new(HttpRequest::compile(config, env)?))
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>, Body>;

/// A compiled `http-request` action.
struct HttpRequest {
    url: Tmpl,
    method: Method,
    query: Vec<(String, Tmpl)>,
    headers: Vec<(HeaderName, Tmpl)>,
    body: Option<Tmpl>,
    max_redirects: u32,
    timeout: Duration,
    retry: Option<Expr>,
    halt: bool,
    allow: Arc<AllowList>,
    client: HttpsClient,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("url", &self.url.src)
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Shortens user text quoted in messages.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn not_allowed_message(what: &str) -> String {
    format!(
        "`{}` is not an allowed http-request destination: the edge operator allows destinations \
         with the edge setting `{SETTING}` (nothing by default)",
        truncate(what)
    )
}

/// Checks a URL (after interpolation, or a redirect's) against the allow list.
fn check_url(allow: &AllowList, url: &url::Url) -> Result<(), String> {
    let dest = Destination::of(url)?;
    if let allow::Host::Name(n) = &dest.host
        && (n == "internal" || n.ends_with(".internal"))
    {
        return Err(format!(
            "`{}`: http-request to internal endpoints is not supported by this edge",
            truncate(url.as_str())
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{}`: credentials in the URL are not allowed (use `headers`)",
            truncate(url.as_str())
        ));
    }
    if allow.allows(&dest) {
        Ok(())
    } else {
        Err(not_allowed_message(&dest.to_string()))
    }
}

fn field_str<'c>(c: &'c ConfigValue, key: &str) -> Result<Option<&'c str>, String> {
    match c.get(key) {
        None | Some(ConfigValue::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a string")),
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

impl HttpRequest {
    fn compile(c: &ConfigValue, env: &Arc<ActionEnv>) -> Result<Self, String> {
        if !matches!(c, ConfigValue::Map(_)) {
            return Err("the config must be a mapping with at least `url`".into());
        }
        let allow = Arc::new(env.http_request_allow.clone());
        let url_src = field_str(c, "url")?.ok_or("`url` is required")?;
        let url = Tmpl::parse(url_src, "url")?;
        if let Some(lit) = url.literal() {
            let parsed = url::Url::parse(&lit)
                .map_err(|e| format!("`url` `{}` is not a valid URL: {e}", truncate(&lit)))?;
            check_url(&allow, &parsed)?;
        }
        let method_src = field_str(c, "method")?.unwrap_or("GET");
        let upper = method_src.to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return Err(format!(
                "`method` must be one of {}, not `{}`",
                METHODS.join(", "),
                truncate(method_src)
            ));
        }
        let method = Method::from_bytes(upper.as_bytes()).map_err(|e| e.to_string())?;
        let mut query = Vec::new();
        match c.get("query_params") {
            None | Some(ConfigValue::Null) => {}
            Some(ConfigValue::List(items)) => {
                if items.len() > 32 {
                    return Err("`query_params` has more than 32 entries".into());
                }
                for item in items {
                    let key = field_str(item, "key")?.ok_or("`query_params[].key` is required")?;
                    if key.is_empty() || key.len() > 128 {
                        return Err("`query_params[].key` must be 1-128 characters".into());
                    }
                    let value =
                        field_str(item, "value")?.ok_or("`query_params[].value` is required")?;
                    if value.len() > 8192 {
                        return Err("`query_params[].value` is over 8192 characters".into());
                    }
                    query.push((key.to_owned(), Tmpl::parse(value, "query_params")?));
                }
            }
            Some(_) => return Err("`query_params` must be a list of `{key, value}`".into()),
        }
        let mut headers = Vec::new();
        match c.get("headers") {
            None | Some(ConfigValue::Null) => {}
            Some(ConfigValue::Map(entries)) => {
                if entries.len() > 10 {
                    return Err("`headers` has more than 10 entries".into());
                }
                for (name, value) in entries {
                    let lower = name.to_ascii_lowercase();
                    let hn = HeaderName::from_bytes(lower.as_bytes())
                        .map_err(|_| format!("`{}` is not a valid header name", truncate(name)))?;
                    if hn == http::header::HOST
                        || hn == http::header::CONTENT_LENGTH
                        || crate::body::HOP_BY_HOP.contains(&hn.as_str())
                    {
                        return Err(format!(
                            "the header `{lower}` is set by the edge (the host comes from `url`)"
                        ));
                    }
                    let v = value
                        .as_str()
                        .ok_or_else(|| format!("the value of header `{lower}` must be a string"))?;
                    headers.push((hn, Tmpl::parse(v, "headers")?));
                }
            }
            Some(_) => return Err("`headers` must be a mapping of names to values".into()),
        }
        let body = match field_str(c, "body")? {
            None => None,
            Some(b) => {
                if !matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                    return Err(format!(
                        "`body` is only sent with POST, PUT or PATCH, not {method}"
                    ));
                }
                Some(Tmpl::parse(b, "body")?)
            }
        };
        let max_redirects = match c.get("max_redirects") {
            None | Some(ConfigValue::Null) => DEFAULT_MAX_REDIRECTS,
            Some(ConfigValue::Int(n)) if (0..=100).contains(n) => u32::try_from(*n).unwrap_or(0),
            Some(_) => return Err("`max_redirects` must be an integer from 0 to 100".into()),
        };
        let timeout = match c.get("timeout") {
            None | Some(ConfigValue::Null) => DEFAULT_TIMEOUT,
            Some(ConfigValue::Duration(d)) => *d,
            Some(ConfigValue::Int(n)) => Duration::from_secs(u64::try_from(*n).unwrap_or(0)),
            Some(v) => v
                .as_str()
                .and_then(parse_duration)
                .ok_or("`timeout` must be a duration such as `3s`")?,
        };
        if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(30) {
            return Err(format!(
                "`timeout` must be between 1s and 30s, not {timeout:?}"
            ));
        }
        let retry = match field_str(c, "retry_condition")? {
            None => None,
            Some(src) => {
                let mut e = wicket_grammar::parse(src).map_err(|e| {
                    format!("`retry_condition` `{}` does not parse: {e}", truncate(src))
                })?;
                wicket_engine::compile::expr::desugar(&mut e);
                Some(e)
            }
        };
        let halt = match field_str(c, "on_error")?.unwrap_or("continue") {
            "continue" => false,
            "halt" => true,
            other => {
                return Err(format!(
                    "`on_error` must be `halt` or `continue`, not `{}`",
                    truncate(other)
                ));
            }
        };
        let client = build_client(env, allow.clone());
        Ok(Self {
            url,
            method,
            query,
            headers,
            body,
            max_redirects,
            timeout,
            retry,
            halt,
            allow,
            client,
        })
    }
}

fn build_client(env: &ActionEnv, allow: Arc<AllowList>) -> HttpsClient {
    let mut http = HttpConnector::new_with_resolver(CheckedResolver { allow });
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*env.tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(4)
        .build(connector)
}

/// Resolves host names and keeps only the addresses the allow list accepts, so the connection
/// goes to a checked address (no second lookup an attacker's DNS could answer differently).
#[derive(Clone, Debug)]
struct CheckedResolver {
    allow: Arc<AllowList>,
}

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .take(32)
                .collect();
            let ok: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allow.allows_resolved(a.ip()))
                .collect();
            if ok.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    NotAllowedAddr {
                        host,
                        addrs: addrs.iter().map(|a| a.ip().to_string()).collect(),
                    },
                ));
            }
            Ok(ok.into_iter())
        })
    }
}

/// A host name that resolved only to addresses the allow list refuses.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{host}` resolves to {} which the edge setting `http_request_allow` does not allow \
     (private and loopback addresses need an IP or CIDR entry)",
    if addrs.is_empty() { "no address".to_owned() } else { addrs.join(", ") }
)]
struct NotAllowedAddr {
    host: String,
    addrs: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// A `${…}` template over the request and connection.
#[derive(Debug)]
struct Tmpl {
    src: String,
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Expr(Expr),
}

impl Tmpl {
    fn parse(src: &str, field: &str) -> Result<Self, String> {
        let t = parse_template(src)
            .map_err(|e| format!("`{field}` template `{}` does not parse: {e}", truncate(src)))?;
        let mut parts = Vec::new();
        for p in t.into_parts() {
            match p {
                TemplatePart::Text { text, .. } => parts.push(Part::Text(text)),
                TemplatePart::Expr { mut expr, .. } => {
                    wicket_engine::compile::expr::desugar(&mut expr);
                    parts.push(Part::Expr(expr));
                }
            }
        }
        Ok(Self {
            src: src.to_owned(),
            parts,
        })
    }

    /// The text when there is no interpolation.
    fn literal(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => s.push_str(t),
                Part::Expr(_) => return None,
            }
        }
        Some(s)
    }

    fn render(&self, view: &OwnedRequest, scratch: &Scratch) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => {
                    let v = wicket_engine::eval::eval_value(e, view, scratch).map_err(|err| {
                        format!("interpolation in `{}` failed: {err}", truncate(&self.src))
                    })?;
                    to_text(&v, &mut out);
                }
            }
        }
        Ok(out)
    }
}

fn to_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Bytes(b) => out.push_str(&String::from_utf8_lossy(b)),
        other => match wicket_engine::program::json::value_to_json(other) {
            serde_json::Value::String(s) => out.push_str(&s),
            j => out.push_str(&j.to_string()),
        },
    }
}

/// The request and connection as the engine's owned view.
fn owned_view(parts: &http::request::Parts, conn: &ConnInfo) -> OwnedRequest {
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let (url_host, url_port) = match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_ascii_lowercase(), p.parse().ok())
        }
        _ => (host.to_ascii_lowercase(), None),
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(k, _)| !crate::proto::meta::is_reserved(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    OwnedRequest {
        method: parts.method.as_str().to_owned(),
        scheme: conn.proto.scheme().to_owned(),
        host,
        url_host,
        url_port: url_port.or(Some(conn.local_addr.port())),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        version: match parts.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
        .to_owned(),
        headers,
        client_ip: Some(conn.client_addr.ip()),
        client_port: Some(conn.client_addr.port()),
        server_ip: Some(conn.local_addr.ip()),
        server_port: Some(conn.local_addr.port()),
        sni: conn.sni.clone(),
        ..OwnedRequest::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

/// A failure with its code.
#[derive(Debug, Clone)]
struct Failure {
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The prepared sub-request.
struct Prepared {
    url: url::Url,
    headers: HeaderMap,
    body: Bytes,
}

/// A response that arrived.
struct Received {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    resolved_ip: String,
    elapsed: Duration,
}

fn s(v: &str) -> Value {
    Value::String(Arc::from(v))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = MapValue::new();
    for (k, v) in entries {
        m.upsert(Key::String(Arc::from(k)), v);
    }
    Value::map(m)
}

fn header_value(h: &HeaderMap) -> Value {
    let mut grouped: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in h {
        let v = s(&String::from_utf8_lossy(v.as_bytes()));
        match grouped.iter_mut().find(|(n, _)| n == k.as_str()) {
            Some((_, vs)) => vs.push(v),
            None => grouped.push((k.as_str().to_owned(), vec![v])),
        }
    }
    let mut m = MapValue::new();
    for (k, vs) in grouped {
        m.upsert(Key::String(Arc::from(k)), Value::list(vs));
    }
    Value::map(m)
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

fn error_value(f: &Failure) -> Value {
    map(vec![("code", s(f.code)), ("message", s(&f.message))])
}

impl Received {
    fn res_value(&self) -> Value {
        let status = Value::Int(i64::from(self.status.as_u16()));
        map(vec![
            ("status_code", status.clone()),
            // The docs' retry_condition example spells it in camelCase.
            ("statusCode", status),
            ("header", header_value(&self.headers)),
            ("body", s(&String::from_utf8_lossy(&self.body))),
            ("resolved_ip", s(&self.resolved_ip)),
            ("time_ms", s(&ms(self.elapsed))),
        ])
    }

    fn attempt_value(&self) -> Value {
        map(vec![
            ("resolved_ip", s(&self.resolved_ip)),
            ("response_header", header_value(&self.headers)),
            (
                "response_status_code",
                Value::Int(i64::from(self.status.as_u16())),
            ),
            ("response_time_ms", s(&ms(self.elapsed))),
        ])
    }
}

impl HttpRequest {
    fn prepare(&self, cx: &RequestCx<'_>) -> Result<Prepared, Failure> {
        let needs_view = self.url.literal().is_none()
            || self.query.iter().any(|(_, t)| t.literal().is_none())
            || self.headers.iter().any(|(_, t)| t.literal().is_none())
            || self.body.as_ref().is_some_and(|t| t.literal().is_none());
        let view = if needs_view {
            owned_view(cx.parts, cx.conn)
        } else {
            OwnedRequest::default()
        };
        // What the phase set before this action: `vars.*`, earlier `actions.ngrok.*`.
        let scratch = Scratch::from_phase_state(cx.state);
        let eval = |t: &Tmpl| {
            t.render(&view, &scratch)
                .map_err(|m| Failure::new(ERR_EVAL, m))
        };
        let url_text = eval(&self.url)?;
        let mut url = url::Url::parse(&url_text).map_err(|e| {
            Failure::new(
                ERR_EVAL,
                format!("`url` `{}` is not a valid URL: {e}", truncate(&url_text)),
            )
        })?;
        check_url(&self.allow, &url).map_err(|m| Failure::new(ERR_NOT_ALLOWED, m))?;
        if !self.query.is_empty() {
            let mut values = Vec::with_capacity(self.query.len());
            for (k, t) in &self.query {
                values.push((k, eval(t)?));
            }
            let mut q = url.query_pairs_mut();
            for (k, v) in &values {
                q.append_pair(k, v);
            }
        }
        let mut headers = HeaderMap::new();
        for (name, t) in &self.headers {
            let v = eval(t)?;
            let hv = HeaderValue::from_str(&v).map_err(|_| {
                Failure::new(
                    ERR_EVAL,
                    format!("the value of header `{name}` is not a valid header value"),
                )
            })?;
            headers.append(name.clone(), hv);
        }
        if !headers.contains_key(http::header::USER_AGENT) {
            headers.insert(
                http::header::USER_AGENT,
                HeaderValue::from_static("wicket-http-request"),
            );
        }
        if let Ok(v) = HeaderValue::from_str(&cx.conn.client_addr.ip().to_string()) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        headers.insert(
            HeaderName::from_static("wicket-req-type"),
            HeaderValue::from_static("http-request"),
        );
        let body = match &self.body {
            Some(t) => Bytes::from(eval(t)?),
            None => Bytes::new(),
        };
        Ok(Prepared { url, headers, body })
    }

    /// One attempt: the request and its redirects, until `deadline`.
    async fn attempt(
        &self,
        p: &Prepared,
        deadline: tokio::time::Instant,
    ) -> Result<Received, Failure> {
        let mut url = p.url.clone();
        let mut method = self.method.clone();
        let mut body = p.body.clone();
        let mut headers = p.headers.clone();
        let mut redirects = 0u32;
        let start = Instant::now();
        loop {
            let received = self
                .send(&url, &method, &headers, body.clone(), deadline)
                .await?;
            let location = received
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            let redirect = matches!(received.status.as_u16(), 301 | 302 | 303 | 307 | 308);
            let (true, Some(location)) = (redirect, location) else {
                return Ok(Received {
                    elapsed: start.elapsed(),
                    ..received
                });
            };
            if redirects >= self.max_redirects {
                if self.max_redirects == 0 {
                    return Ok(received);
                }
                return Err(Failure::new(
                    ERR_TOO_MANY_REDIRECTS,
                    format!("more than {} redirects", self.max_redirects),
                ));
            }
            redirects += 1;
            let next = url.join(location).map_err(|e| {
                Failure::new(
                    ERR_FAILED,
                    format!("invalid redirect location `{}`: {e}", truncate(location)),
                )
            })?;
            check_url(&self.allow, &next)
                .map_err(|m| Failure::new(ERR_NOT_ALLOWED, format!("redirect refused: {m}")))?;
            if next.origin() != url.origin() {
                headers.remove(http::header::AUTHORIZATION);
                headers.remove(http::header::COOKIE);
            }
            let status = received.status.as_u16();
            if status == 303 || ((status == 301 || status == 302) && method == Method::POST) {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                body = Bytes::new();
                headers.remove(http::header::CONTENT_TYPE);
            }
            url = next;
        }
    }

    async fn send(
        &self,
        url: &url::Url,
        method: &Method,
        headers: &HeaderMap,
        body: Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<Received, Failure> {
        let start = Instant::now();
        let uri: http::Uri = url
            .as_str()
            .parse()
            .map_err(|e| Failure::new(ERR_FAILED, format!("invalid URL `{url}`: {e}")))?;
        let mut req = http::Request::new(if body.is_empty() { empty() } else { full(body) });
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers.clone();
        let exchange = async {
            let res = self.client.request(req).await.map_err(|e| {
                let not_allowed = error_chain_has::<NotAllowedAddr>(&e);
                let text = super_error_chain(&e);
                if not_allowed {
                    Failure::new(ERR_NOT_ALLOWED, text)
                } else {
                    Failure::new(ERR_FAILED, format!("request to `{url}` failed: {text}"))
                }
            })?;
            let resolved_ip = res
                .extensions()
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                .map(|i| i.remote_addr().ip().to_string())
                .unwrap_or_default();
            let (parts, mut body) = res.into_parts();
            let mut buf = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    Failure::new(ERR_FAILED, format!("reading the response failed: {e}"))
                })?;
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > MAX_RESPONSE_BODY {
                        return Err(Failure::new(
                            ERR_TOO_LARGE,
                            format!("the response body is over {MAX_RESPONSE_BODY} bytes"),
                        ));
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Ok(Received {
                status: parts.status,
                headers: parts.headers,
                body: buf.freeze(),
                resolved_ip,
                elapsed: start.elapsed(),
            })
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                ERR_TIMEOUT,
                format!("no response within {:?}", self.timeout),
            )),
        }
    }

    /// Whether `retry_condition` asks for another attempt.
    fn should_retry(
        &self,
        attempts: u32,
        req: &Value,
        last: &Result<Received, Failure>,
    ) -> Result<bool, Failure> {
        let Some(cond) = &self.retry else {
            return Ok(false);
        };
        let failed = match last {
            Ok(r) => r.status.as_u16() >= 400,
            Err(f) => f.code != ERR_NOT_ALLOWED && f.code != ERR_TIMEOUT,
        };
        if !failed || attempts > MAX_RETRIES {
            return Ok(false);
        }
        let last_attempt = map(vec![
            ("req", req.clone()),
            (
                "res",
                match last {
                    Ok(r) => r.res_value(),
                    Err(_) => Value::Null,
                },
            ),
            (
                "error",
                match last {
                    Ok(_) => Value::Null,
                    Err(f) => error_value(f),
                },
            ),
        ]);
        let mut act: HashMap<String, Value> = HashMap::new();
        act.insert("attempts".into(), Value::Int(i64::from(attempts)));
        act.insert("last_attempt".into(), last_attempt);
        match wicket_engine::interp::eval(cond, &act) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(Failure::new(
                ERR_EVAL,
                format!("`retry_condition` gave {other}, not a bool"),
            )),
            Err(e) => Err(Failure::new(
                ERR_EVAL,
                format!("`retry_condition` failed: {e}"),
            )),
        }
    }

    async fn execute(&self, cx: &RequestCx<'_>) -> Result<Value, ActionError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let prepared = match self.prepare(cx) {
            Ok(p) => p,
            Err(f) => {
                return self.finish(
                    map(vec![
                        ("method", s(self.method.as_str())),
                        ("url", s(&self.url.src)),
                    ]),
                    Vec::new(),
                    Err(f),
                );
            }
        };
        let req_value = map(vec![
            ("method", s(self.method.as_str())),
            ("url", s(prepared.url.as_str())),
            ("header", header_value(&prepared.headers)),
            ("body", s(&String::from_utf8_lossy(&prepared.body))),
        ]);
        let mut attempts = Vec::new();
        let mut n = 0u32;
        loop {
            n += 1;
            let last = self.attempt(&prepared, deadline).await;
            attempts.push(match &last {
                Ok(r) => r.attempt_value(),
                Err(f) => map(vec![("error", error_value(f))]),
            });
            match self.should_retry(n, &req_value, &last) {
                Ok(true) => continue,
                Ok(false) => return self.finish(req_value, attempts, last),
                Err(f) => return self.finish(req_value, attempts, Err(f)),
            }
        }
    }

    fn finish(
        &self,
        req: Value,
        attempts: Vec<Value>,
        last: Result<Received, Failure>,
    ) -> Result<Value, ActionError> {
        let mut entries = vec![("req", req), ("attempts", Value::list(attempts))];
        match last {
            Ok(r) => entries.push(("res", r.res_value())),
            Err(f) => {
                if self.halt {
                    return Err(ActionError {
                        status: if f.code == ERR_TIMEOUT {
                            StatusCode::GATEWAY_TIMEOUT
                        } else {
                            StatusCode::BAD_GATEWAY
                        },
                        code: f.code,
                        message: format!("http-request failed: {}", f.message),
                    });
                }
                tracing::debug!(code = f.code, error = %f.message, "http-request failed; policy continues");
                entries.push(("error", error_value(&f)));
            }
        }
        Ok(map(entries))
    }
}

fn super_error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn error_chain_has<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<E>() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<E>())
        {
            return true;
        }
        cur = c.source();
    }
    false
}

impl ExternalAction for HttpRequest {
    fn run<'a>(&'a self, cx: RequestCx<'a>) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        Box::pin(async move {
            let value = self.execute(&cx).await?;
            Ok(ActionOutcome::proceed(NAMESPACE, value))
        })
    }

    fn reads_phase_state(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(allow: &[&str]) -> Arc<ActionEnv> {
        let mut e = ActionEnv::ephemeral().unwrap();
        e.http_request_allow = AllowList::parse(allow).unwrap();
        Arc::new(e)
    }

    fn config(yaml: &str) -> ConfigValue {
        let json: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        ConfigValue::from_json(&json)
    }

    fn compile_err(allow: &[&str], yaml: &str) -> String {
        compile("http-request", &config(yaml), &env(allow)).unwrap_err()
    }

    #[test]
    fn constant_destinations_are_checked_at_bind_time() {
        let e = compile_err(&[], "url: https://api.example.com/check");
        assert!(e.contains("`http_request_allow`"), "{e}");
        assert!(e.contains("https://api.example.com:443"), "{e}");
        compile(
            "http-request",
            &config("url: https://api.example.com/check"),
            &env(&["https://api.example.com"]),
        )
        .unwrap();
        let e = compile_err(&["*"], "url: https://id.internal/user");
        assert!(e.contains("internal endpoints"), "{e}");
        let e = compile_err(&["*"], "url: ftp://a.test/");
        assert!(e.contains("not an http or https URL"), "{e}");
        let e = compile_err(&["*"], "url: https://u:p@a.test/");
        assert!(e.contains("credentials"), "{e}");
        // Interpolated: checked per request.
        compile(
            "http-request",
            &config("url: \"https://${req.host}/x\""),
            &env(&[]),
        )
        .unwrap();
    }

    #[test]
    fn config_errors_refuse_the_bind() {
        let allow = ["*"];
        for (yaml, needle) in [
            ("method: GET", "`url` is required"),
            ("{url: 'https://a.test', method: TRACE}", "`method`"),
            ("{url: 'https://a.test', timeout: 45s}", "`timeout`"),
            ("{url: 'https://a.test', timeout: 0s}", "`timeout`"),
            (
                "{url: 'https://a.test', max_redirects: 101}",
                "`max_redirects`",
            ),
            ("{url: 'https://a.test', on_error: skip}", "`on_error`"),
            ("{url: 'https://a.test', body: x}", "`body` is only sent"),
            ("{url: 'https://a.test', headers: {host: x}}", "`host`"),
            (
                "{url: 'https://a.test', headers: {'bad name': x}}",
                "header name",
            ),
            (
                "{url: 'https://a.test', retry_condition: 'attempts <'}",
                "does not parse",
            ),
            ("{url: 'https://a.test', query_params: [{key: k}]}", "value"),
        ] {
            let e = compile_err(&allow, yaml);
            assert!(e.contains(needle), "{yaml}: {e}");
        }
    }

    #[test]
    fn templates_read_the_vars_and_results_the_phase_set_before() {
        let mut vars = wicket_engine::value::MapValue::new();
        vars.upsert(Key::String("user".into()), Value::string("ann"));
        let mut identity = wicket_engine::value::MapValue::new();
        identity.upsert(
            Key::String("email".into()),
            Value::string("ann@example.test"),
        );
        let mut oauth = wicket_engine::value::MapValue::new();
        oauth.upsert(Key::String("identity".into()), Value::map(identity));
        let state = wicket_engine::program::PhaseState {
            vars,
            results: vec![("oauth", Value::map(oauth))],
        };
        let scratch = Scratch::from_phase_state(&state);
        let v = OwnedRequest::default();
        let t = Tmpl::parse(
            "u=${vars.user} e=${actions.ngrok.oauth.identity.email}",
            "body",
        )
        .unwrap();
        assert_eq!(t.render(&v, &scratch).unwrap(), "u=ann e=ann@example.test");
        // Without them, the template fails (closed), it does not render empty.
        assert!(t.render(&v, &Scratch::new()).is_err());
    }

    #[test]
    fn templates_render_request_fields() {
        let (parts, ()) = http::Request::builder()
            .uri("https://a.example.test/p/q?x=1")
            .header("x-user", "ann")
            .body(())
            .unwrap()
            .into_parts();
        let conn = ConnInfo {
            client_addr: "192.0.2.7:5000".parse().unwrap(),
            local_addr: "127.0.0.1:443".parse().unwrap(),
            proto: crate::proto::control::EndpointProto::Https,
            sni: None,
            endpoint_id: "ep".into(),
            endpoint_url: "https://a.example.test".into(),
            tls: None,
        };
        let v = owned_view(&parts, &conn);
        let t = Tmpl::parse(
            "u=${req.headers['x-user'][0]} p=${req.url.path} ip=${conn.client_ip} n=${1 + 2} l=${req.headers['x-user']}",
            "body",
        )
        .unwrap();
        assert_eq!(
            t.render(&v, &Scratch::new()).unwrap(),
            "u=ann p=/p/q ip=192.0.2.7 n=3 l=[\"ann\"]"
        );
        let missing = Tmpl::parse("${req.headers['nope'][0]}", "body").unwrap();
        assert!(missing.render(&v, &Scratch::new()).is_err());
        assert_eq!(
            Tmpl::parse("a $${b}", "url").unwrap().literal().as_deref(),
            Some("a ${b}")
        );
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_allowed_addresses() {
        use tower_service::Service;
        let name: Name = "localhost".parse().unwrap();
        let mut strict = CheckedResolver {
            allow: Arc::new(AllowList::parse(&["http://localhost:*"]).unwrap()),
        };
        let e = strict.call(name.clone()).await.unwrap_err();
        assert!(e.to_string().contains("`http_request_allow`"), "{e}");
        let mut open = CheckedResolver {
            allow: Arc::new(AllowList::parse(&["127.0.0.0/8", "[::1]"]).unwrap()),
        };
        let addrs: Vec<SocketAddr> = open.call(name).await.unwrap().collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("3x"), None);
    }
}
