//! `jwt-validation` with keys fetched from JWKS URLs (`jws.keys.sources.additional_jkus`) or
//! tokens read from the request body.
//!
//! The engine compiles a `jwt-validation` that lists JWKS URLs (or a body token) into an external
//! action; this module fetches the key sets with [`ActionEnv::fetch`](super::ActionEnv::fetch), caches them
//! and validates the request's tokens with the engine's
//! [`JwtValidation::validate`] — the same checks, result variables and 401 response as the
//! engine's static-key path. Static keys (`static`, inline `jwks`) listed beside the URLs are
//! used too.
//!
//! The cache, per URL:
//! * a fetched set is fresh for its `Cache-Control: max-age` (less `Age`), else until its
//!   `Expires`, else 15 minutes — clamped to 30 s … 24 h ([`CachePolicy`]);
//! * a token naming a `kid` no key has triggers one refetch, at most once per 30 s per URL (a
//!   client sending random `kid`s cannot make the edge hammer the IdP);
//! * a failed fetch is retried after 5 s at the earliest; meanwhile, and for up to one hour
//!   after expiry, the last good set is used (the IdP being briefly down does not lock users
//!   out); with no usable set, a token that no other key verifies is answered 502
//!   `ERR_NGROK_3422` (fail closed, not 401: the client did nothing wrong);
//! * a response is at most 256 KiB and [`MAX_JWKS_KEYS`](wicket_engine::actions::jwt::MAX_JWKS_KEYS)
//!   keys, fetched within 5 s; concurrent misses share one fetch.
//!
//! Keys are fetched over `https://`; `http://` is accepted only for loopback hosts (a key set
//! fetched in clear could be replaced by anyone on the path).
//!
//! A token read from the request body (`method: body`) also makes the validation an external
//! action, whatever its keys: the body of a `POST`, `PUT` or `PATCH` with a JSON
//! (`application/json`, `*/*+json`) or form (`application/x-www-form-urlencoded`) content type is
//! buffered (at most [`MAX_TOKEN_BODY`]; larger is 413) and forwarded unchanged, and the token is
//! the top-level string field whose name matches case-insensitively. Any other request has no
//! body token: missing, 401.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{CACHE_CONTROL, COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use wicket_engine::actions::jwt::{
    self, JwtError, JwtValidation, Key, Location, cookie_value, query_value, token_kid,
};
use wicket_engine::compile::ir::ConfigValue;

use super::{ActionEnv, ActionError, ActionOutcome, ExternalAction, RequestCx, buffer_body};
use crate::body::Body;
use crate::policy_hook::LocalResponse;
use crate::proto::meta;

/// Error code of a request refused because no key set could be fetched.
pub const ERR_JWKS_FETCH: &str = "ERR_NGROK_3422";

/// Time allowed for one JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request body read for a body token.
pub const MAX_TOKEN_BODY: usize = 1024 * 1024;

/// The largest JWKS response accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// How long fetched key sets are used, and how often they may be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Freshness when the response has no cache headers.
    pub default_ttl: Duration,
    /// The shortest freshness, whatever the headers say (`no-store` included).
    pub min_ttl: Duration,
    /// The longest freshness.
    pub max_ttl: Duration,
    /// The least time between two refetches caused by an unknown `kid`.
    pub refetch_interval: Duration,
    /// The least time between a failed fetch and the next attempt.
    pub retry_interval: Duration,
    /// How long after expiry a set is still used while it cannot be refreshed.
    pub stale_grace: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(15 * 60),
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(24 * 3600),
            refetch_interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(5),
            stale_grace: Duration::from_secs(3600),
        }
    }
}

impl CachePolicy {
    /// The freshness of a response with these headers, received at `now`: `Cache-Control:
    /// max-age` less `Age`, else `Expires` less `Date` (or `now`), else the default; `no-store`
    /// and `no-cache` mean the minimum. Always within `min_ttl..=max_ttl`.
    #[must_use]
    pub fn ttl(&self, headers: &HeaderMap, now: SystemTime) -> Duration {
        let text = |name: http::header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let secs = |v: &str| v.trim().trim_matches('"').parse::<u64>().ok();
        let mut ttl = None;
        for value in headers.get_all(CACHE_CONTROL) {
            for directive in value.to_str().unwrap_or("").split(',') {
                let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
                match name.trim().to_ascii_lowercase().as_str() {
                    "no-store" | "no-cache" => ttl = Some(Duration::ZERO),
                    "max-age" if ttl.is_none() => {
                        // An unparsable max-age is stale (RFC 9111 §4.2.1).
                        let age = text(http::header::AGE).and_then(secs).unwrap_or(0);
                        ttl = Some(Duration::from_secs(
                            secs(arg).unwrap_or(0).saturating_sub(age),
                        ));
                    }
                    _ => {}
                }
            }
        }
        let ttl = ttl.or_else(|| {
            let expires = text(http::header::EXPIRES)?;
            let parser = jiff::fmt::rfc2822::DateTimeParser::new();
            // An invalid date (e.g. `0`) means already expired (RFC 9111 §5.3).
            let Ok(expires) = parser.parse_timestamp(expires) else {
                return Some(Duration::ZERO);
            };
            let date = text(http::header::DATE)
                .and_then(|d| parser.parse_timestamp(d).ok())
                .or_else(|| jiff::Timestamp::try_from(now).ok())?;
            let secs = expires.as_second().saturating_sub(date.as_second());
            Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
        });
        ttl.unwrap_or(self.default_ttl)
            .clamp(self.min_ttl, self.max_ttl)
    }
}

/// A key set in the cache.
#[derive(Debug)]
struct Cached {
    keys: Arc<[Key]>,
    fresh_until: Instant,
}

/// The cache state of one URL.
#[derive(Debug, Default)]
struct State {
    cached: Option<Cached>,
    /// When the last fetch started.
    last_attempt: Option<Instant>,
    /// Whether the last fetch failed.
    last_failed: bool,
    /// When the last refetch for an unknown `kid` started.
    last_forced: Option<Instant>,
}

/// What to do for a request.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Use what is cached (possibly nothing).
    Use,
    /// Fetch now; `forced` when the cached set is fresh but lacks a token's `kid`.
    Fetch {
        /// Counts against [`CachePolicy::refetch_interval`].
        forced: bool,
    },
}

fn within(at: Option<Instant>, now: Instant, span: Duration) -> bool {
    at.is_some_and(|at| now.saturating_duration_since(at) < span)
}

impl State {
    /// Whether a request at `now` fetches; `unknown_kid` when a token names a key the cached
    /// set does not have.
    fn plan(&self, now: Instant, unknown_kid: bool, p: &CachePolicy) -> Plan {
        if self.last_failed && within(self.last_attempt, now, p.retry_interval) {
            return Plan::Use;
        }
        let fresh = self.cached.as_ref().is_some_and(|c| now < c.fresh_until);
        if !fresh {
            return Plan::Fetch { forced: false };
        }
        if unknown_kid && !within(self.last_forced, now, p.refetch_interval) {
            return Plan::Fetch { forced: true };
        }
        Plan::Use
    }

    /// The keys usable at `now`: fresh, or expired less than `stale_grace` ago.
    fn usable(&self, now: Instant, p: &CachePolicy) -> Option<Arc<[Key]>> {
        self.cached
            .as_ref()
            .filter(|c| now < c.fresh_until + p.stale_grace)
            .map(|c| c.keys.clone())
    }
}

/// One JWKS URL and its cache.
#[derive(Debug)]
struct JwksSource {
    url: String,
    state: Mutex<State>,
    /// Held while fetching, so concurrent misses wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

/// Why a fetch failed (logged; the client sees [`ERR_JWKS_FETCH`]).
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error(transparent)]
    Fetch(#[from] super::FetchError),
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error(transparent)]
    Jwks(#[from] jwt::JwksError),
    #[error("no usable signature key")]
    Empty,
}

impl JwksSource {
    fn new(url: String) -> Self {
        Self {
            url,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The usable keys, fetching first when the plan says so.
    async fn keys(
        &self,
        env: &ActionEnv,
        unknown_kid: bool,
        p: &CachePolicy,
    ) -> Option<Arc<[Key]>> {
        if self.state().plan(Instant::now(), unknown_kid, p) != Plan::Use {
            let _one = self.fetching.lock().await;
            // Another request may have fetched while this one waited.
            let now = Instant::now();
            let go = {
                let mut st = self.state();
                let plan = st.plan(now, unknown_kid, p);
                if let Plan::Fetch { forced } = plan {
                    st.last_attempt = Some(now);
                    if forced {
                        st.last_forced = Some(now);
                    }
                }
                plan != Plan::Use
            };
            if go {
                let outcome = self.fetch(env, p).await;
                let mut st = self.state();
                match outcome {
                    Ok((keys, ttl)) => {
                        st.last_failed = false;
                        st.cached = Some(Cached {
                            keys,
                            fresh_until: Instant::now() + ttl,
                        });
                    }
                    Err(e) => {
                        st.last_failed = true;
                        tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed");
                    }
                }
            }
        }
        self.state().usable(Instant::now(), p)
    }

    async fn fetch(
        &self,
        env: &ActionEnv,
        p: &CachePolicy,
    ) -> Result<(Arc<[Key]>, Duration), SourceError> {
        let req = http::Request::get(self.url.as_str())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(crate::body::empty())
            .map_err(|e| super::FetchError::Request(e.to_string()))?;
        let res = env.fetch(req, FETCH_TIMEOUT, MAX_JWKS_BYTES).await?;
        if !res.status().is_success() {
            return Err(SourceError::Status(res.status()));
        }
        let body: &Bytes = res.body();
        let set = jwt::parse_jwks(body, false)?;
        for skipped in &set.skipped {
            tracing::debug!(url = %self.url, %skipped, "JWKS key skipped");
        }
        if set.keys.is_empty() {
            return Err(SourceError::Empty);
        }
        let ttl = p.ttl(res.headers(), SystemTime::now());
        tracing::debug!(url = %self.url, keys = set.keys.len(), ?ttl, "JWKS fetched");
        Ok((Arc::from(set.keys), ttl))
    }
}

/// A compiled `jwt-validation` with JWKS URLs.
#[derive(Debug)]
pub struct JwksAction {
    validation: JwtValidation,
    sources: Vec<JwksSource>,
    policy: CachePolicy,
    /// Whether a token is read from the request body.
    body_tokens: bool,
}

/// Compiles the action's config.
///
/// # Errors
/// The config is invalid, or a JWKS URL is not `https://` (or `http://` to a loopback host).
pub fn compile(
    _kind: &str,
    config: &ConfigValue,
    _env: &Arc<ActionEnv>,
) -> Result<Arc<dyn ExternalAction>, String> {
    Ok(Arc::new(JwksAction::new(config, CachePolicy::default())?))
}

/// Checks a JWKS URL: absolute, `https`, or `http` to a loopback host.
fn check_url(url: &str) -> Result<(), String> {
    let u = url::Url::parse(url).map_err(|e| format!("JWKS URL `{url}` is invalid: {e}"))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(format!("JWKS URL `{url}` has no host")),
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "JWKS URL `{url}` must use `https://` (plain `http://` is accepted only for loopback hosts)"
        )),
        other => Err(format!("JWKS URL `{url}` has unsupported scheme `{other}`")),
    }
}

impl JwksAction {
    /// Compiles the config with this cache policy.
    ///
    /// # Errors
    /// The config is invalid, or a JWKS URL is not acceptable.
    pub fn new(config: &ConfigValue, policy: CachePolicy) -> Result<Self, String> {
        let validation = JwtValidation::compile(config)?;
        for spec in validation.tokens() {
            if let Location::Header(name) = &spec.location {
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("`{name}` is not a valid header name"))?;
            }
        }
        let mut sources = Vec::new();
        for url in validation.jwks_urls() {
            check_url(url)?;
            sources.push(JwksSource::new(url.clone()));
        }
        let body_tokens = validation
            .tokens()
            .iter()
            .any(|t| matches!(t.location, Location::Body(_)));
        Ok(Self {
            validation,
            sources,
            policy,
            body_tokens,
        })
    }

    /// Validates the tokens of a request (reading its body first when a token is there).
    async fn check(
        &self,
        parts: &http::request::Parts,
        body: &mut Body,
        env: &ActionEnv,
    ) -> Result<ActionOutcome, ActionError> {
        let fields = if self.body_tokens {
            BodyFields::read(parts, body).await?
        } else {
            BodyFields::default()
        };
        let unknown_kid = self
            .validation
            .tokens()
            .iter()
            .filter_map(|spec| {
                let raw = token_at(parts, &fields, &spec.location)?;
                spec.token(&raw).and_then(token_kid)
            })
            .any(|kid| !self.validation.has_static_kid(&kid) && !self.cached_kid(&kid));
        let mut sets = Vec::with_capacity(self.sources.len());
        let mut unavailable = false;
        for source in &self.sources {
            match source.keys(env, unknown_kid, &self.policy).await {
                Some(keys) => sets.push(keys),
                None => unavailable = true,
            }
        }
        let keys: Cow<'_, [Key]> = match sets.as_slice() {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(&one[..]),
            many => Cow::Owned(many.iter().flat_map(|s| s.iter().cloned()).collect()),
        };
        let checked = self.validation.validate(
            &keys,
            |loc| token_at(parts, &fields, loc),
            SystemTime::now(),
        );
        match checked.failure {
            None => Ok(ActionOutcome::proceed("jwt_validation", checked.result)),
            // No key the fetch failure left out could have verified it: say so, not 401.
            Some(JwtError::Signature) if unavailable => Err(ActionError {
                status: StatusCode::BAD_GATEWAY,
                code: ERR_JWKS_FETCH,
                message: "the keys that verify this endpoint's tokens could not be fetched".into(),
            }),
            Some(e) => Ok(ActionOutcome::Respond(refusal(e.code()))),
        }
    }

    /// Whether a cached set has this `kid`.
    fn cached_kid(&self, kid: &str) -> bool {
        self.sources.iter().any(|s| {
            s.state()
                .cached
                .as_ref()
                .is_some_and(|c| c.keys.iter().any(|k| k.kid() == Some(kid)))
        })
    }
}

impl ExternalAction for JwksAction {
    fn run<'a>(&'a self, cx: RequestCx<'a>) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        Box::pin(self.check(cx.parts, cx.body, cx.env))
    }
}

/// The top-level string fields of a JSON or form-encoded request body.
#[derive(Debug, Default)]
struct BodyFields(Vec<(String, String)>);

impl BodyFields {
    /// Reads the fields of `body` when the request can carry a body token: `POST`, `PUT` or
    /// `PATCH` with a JSON or form content type; otherwise none. The body is put back for the
    /// upstream.
    async fn read(parts: &http::request::Parts, body: &mut Body) -> Result<Self, ActionError> {
        if !matches!(
            parts.method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        ) {
            return Ok(Self::default());
        }
        let Some(kind) = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(BodyKind::of)
        else {
            return Ok(Self::default());
        };
        let bytes = buffer_body(body, MAX_TOKEN_BODY).await?;
        Ok(Self::parse(kind, &bytes))
    }

    /// The fields of a body of this kind; a body that does not parse has none.
    fn parse(kind: BodyKind, bytes: &[u8]) -> Self {
        match kind {
            BodyKind::Json => match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(serde_json::Value::Object(map)) => Self(
                    map.into_iter()
                        .filter_map(|(k, v)| match v {
                            serde_json::Value::String(s) => Some((k, s)),
                            _ => None,
                        })
                        .collect(),
                ),
                _ => Self::default(),
            },
            BodyKind::Form => Self(
                url::form_urlencoded::parse(bytes)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            ),
        }
    }

    /// The first field named `name` (case-insensitively).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A body that can carry a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
}

impl BodyKind {
    /// The kind a `Content-Type` names: `application/json`, any `…/…+json`, or
    /// `application/x-www-form-urlencoded` (parameters such as `charset` ignored).
    fn of(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next()?.trim();
        let (ty, sub) = essence.split_once('/')?;
        if ty.eq_ignore_ascii_case("application")
            && sub.eq_ignore_ascii_case("x-www-form-urlencoded")
        {
            Some(Self::Form)
        } else if (ty.eq_ignore_ascii_case("application") && sub.eq_ignore_ascii_case("json"))
            || sub
                .rsplit_once('+')
                .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
        {
            Some(Self::Json)
        } else {
            None
        }
    }
}

/// The raw value at a token location: a header's first (text) value, a cookie, a decoded query
/// parameter — as the engine reads them — or a body field.
fn token_at<'p>(
    parts: &'p http::request::Parts,
    fields: &'p BodyFields,
    location: &Location,
) -> Option<Cow<'p, str>> {
    match location {
        Location::Body(name) => fields.get(name).map(Cow::Borrowed),
        Location::Header(name) => parts
            .headers
            .get_all(name.as_str())
            .iter()
            .find_map(|v| v.to_str().ok())
            .map(Cow::Borrowed),
        Location::Cookie(name) => cookie_value(
            parts
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            name,
        )
        .map(Cow::Borrowed),
        Location::Query(name) => query_value(parts.uri.query().unwrap_or(""), name),
    }
}

/// The 401 of a refused token: the engine's static path answers the same.
fn refusal(code: &'static str) -> LocalResponse {
    let mut headers = HeaderMap::new();
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(jwt::CHALLENGE));
    headers.insert(meta::ERROR_CODE, HeaderValue::from_static(code));
    LocalResponse {
        status: StatusCode::UNAUTHORIZED,
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn at(secs: i64) -> SystemTime {
        SystemTime::from(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn ttl_follows_cache_headers_within_bounds() {
        let p = CachePolicy::default();
        let now = at(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let ttl = |pairs: &[(&str, &str)]| p.ttl(&headers(pairs), now).as_secs();
        assert_eq!(ttl(&[]), 900, "default");
        assert_eq!(ttl(&[("cache-control", "public, max-age=600")]), 600);
        assert_eq!(
            ttl(&[("cache-control", "max-age=600"), ("age", "100")]),
            500
        );
        assert_eq!(
            ttl(&[("cache-control", "max-age=5")]),
            30,
            "raised to the minimum"
        );
        assert_eq!(
            ttl(&[("cache-control", "max-age=99999999")]),
            86_400,
            "capped"
        );
        assert_eq!(ttl(&[("cache-control", "no-store, max-age=600")]), 30);
        assert_eq!(ttl(&[("cache-control", "max-age=600, no-cache")]), 30);
        assert_eq!(
            ttl(&[("cache-control", "max-age=soon")]),
            30,
            "unparsable is stale"
        );
        assert_eq!(
            ttl(&[("expires", "Sun, 06 Nov 1994 09:49:37 GMT")]),
            3600,
            "expires less now"
        );
        assert_eq!(
            ttl(&[
                ("expires", "Sun, 06 Nov 1994 09:49:37 GMT"),
                ("date", "Sun, 06 Nov 1994 09:39:37 GMT")
            ]),
            600,
            "expires less date"
        );
        assert_eq!(
            ttl(&[
                ("cache-control", "max-age=120"),
                ("expires", "Sun, 06 Nov 1994 09:49:37 GMT")
            ]),
            120,
            "max-age wins"
        );
        assert_eq!(ttl(&[("expires", "0")]), 30, "invalid expires is expired");
        assert_eq!(ttl(&[("expires", "Sun, 06 Nov 1994 07:49:37 GMT")]), 30);
    }

    #[test]
    fn the_plan_refetches_on_expiry_and_unknown_kids_rate_limited() {
        let p = CachePolicy::default();
        let t0 = Instant::now();
        let mut st = State::default();
        assert_eq!(st.plan(t0, false, &p), Plan::Fetch { forced: false });
        assert_eq!(st.plan(t0, true, &p), Plan::Fetch { forced: false });
        st.last_attempt = Some(t0);
        st.cached = Some(Cached {
            keys: Arc::from(Vec::new()),
            fresh_until: t0 + Duration::from_secs(60),
        });
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(st.plan(t1, false, &p), Plan::Use, "fresh");
        assert_eq!(st.plan(t1, true, &p), Plan::Fetch { forced: true });
        st.last_forced = Some(t1);
        assert_eq!(st.plan(t1 + Duration::from_secs(29), true, &p), Plan::Use);
        assert_eq!(
            st.plan(t1 + Duration::from_secs(30), true, &p),
            Plan::Fetch { forced: true }
        );
        let expired = t0 + Duration::from_secs(61);
        assert_eq!(st.plan(expired, false, &p), Plan::Fetch { forced: false });
        // A failed fetch is not retried for 5 s; the expired set stays usable for an hour.
        st.last_attempt = Some(expired);
        st.last_failed = true;
        assert_eq!(
            st.plan(expired + Duration::from_secs(4), true, &p),
            Plan::Use
        );
        assert_eq!(
            st.plan(expired + Duration::from_secs(5), false, &p),
            Plan::Fetch { forced: false }
        );
        assert!(st.usable(expired, &p).is_some());
        assert!(st.usable(t0 + Duration::from_secs(60 + 3600), &p).is_none());
    }

    #[test]
    fn jwks_urls_must_be_https_or_loopback() {
        assert!(check_url("https://idp.example/.well-known/jwks.json").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://[::1]/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        let e = check_url("http://idp.example/jwks").unwrap_err();
        assert!(e.contains("https://"), "{e}");
        assert!(check_url("ftp://idp.example/jwks").is_err());
        assert!(check_url("/jwks").is_err());
    }

    #[test]
    fn tokens_are_read_as_the_engine_reads_them() {
        let req = http::Request::get("https://a.test/p?x=1&access_token=a%2Eb.c")
            .header("authorization", HeaderValue::from_bytes(b"\xff").unwrap())
            .header("authorization", "Bearer t")
            .header("cookie", "a=1")
            .header("cookie", "session=s.t.u; b=2")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let none = BodyFields::default();
        let get = |l: Location| token_at(&parts, &none, &l).map(Cow::into_owned);
        assert_eq!(
            get(Location::Header("authorization".into())).as_deref(),
            Some("Bearer t")
        );
        assert_eq!(
            get(Location::Cookie("session".into())).as_deref(),
            Some("s.t.u")
        );
        assert_eq!(
            get(Location::Query("access_token".into())).as_deref(),
            Some("a.b.c")
        );
        assert_eq!(get(Location::Header("x-none".into())), None);
    }

    #[test]
    fn body_kinds_follow_the_content_type() {
        assert_eq!(BodyKind::of("application/json"), Some(BodyKind::Json));
        assert_eq!(
            BodyKind::of("Application/JSON; charset=utf-8"),
            Some(BodyKind::Json)
        );
        assert_eq!(
            BodyKind::of("application/vnd.api+json"),
            Some(BodyKind::Json)
        );
        assert_eq!(
            BodyKind::of("application/x-www-form-urlencoded;charset=UTF-8"),
            Some(BodyKind::Form)
        );
        for other in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "json",
            "",
            "application/jsonx",
        ] {
            assert_eq!(BodyKind::of(other), None, "{other}");
        }
    }

    #[test]
    fn body_fields_are_top_level_strings_matched_case_insensitively() {
        let json = BodyFields::parse(
            BodyKind::Json,
            br#"{"ID_Token":"a.b.c","n":1,"nested":{"token":"x"},"token":["y"]}"#,
        );
        assert_eq!(json.get("id_token"), Some("a.b.c"));
        assert_eq!(json.get("n"), None, "not a string");
        assert_eq!(json.get("token"), None, "not top-level or not a string");
        let form = BodyFields::parse(BodyKind::Form, b"a=1&Access_Token=d%2Ee.f&a=2");
        assert_eq!(form.get("access_token"), Some("d.e.f"));
        assert_eq!(form.get("a"), Some("1"), "the first of repeated fields");
        assert!(BodyFields::parse(BodyKind::Json, b"[1,2]").0.is_empty());
        assert!(BodyFields::parse(BodyKind::Json, b"{not json").0.is_empty());
    }

    /// An HS256 token signed with `secret`.
    fn hs256(secret: &[u8], payload: &str) -> String {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let signing = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(payload.as_bytes())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&key, signing.as_bytes());
        format!("{signing}.{}", b64(tag.as_ref()))
    }

    async fn run_body(
        action: &JwksAction,
        env: &ActionEnv,
        method: &str,
        content_type: &str,
        body: Bytes,
    ) -> (Result<ActionOutcome, ActionError>, Bytes) {
        use http_body_util::BodyExt as _;
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri("https://api.test/login")
            .header("content-type", content_type)
            .body(())
            .unwrap()
            .into_parts();
        let mut b = crate::body::full(body);
        let out = action.check(&parts, &mut b, env).await;
        let left = b.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        (out, left)
    }

    #[tokio::test]
    async fn a_body_token_is_validated_and_the_body_forwarded_unchanged() {
        use base64::Engine as _;
        let secret = b"body-token-secret-of-32-bytes!!!";
        let jwk = serde_json::json!({"keys": [{
            "kty": "oct",
            "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        }]});
        let config = ConfigValue::from_json(&serde_json::json!({
            "issuer": {"allow_list": [{"value": "https://issuer.test"}]},
            "http": {"tokens": [{"type": "jwt", "method": "body", "name": "id_token"}]},
            "jws": {"allowed_algorithms": ["HS256"], "keys": {"sources": {"jwks": jwk.to_string()}}},
        }));
        let action = JwksAction::new(&config, CachePolicy::default()).unwrap();
        assert!(action.body_tokens && action.sources.is_empty());
        let env = ActionEnv::ephemeral().unwrap();
        let token = hs256(secret, r#"{"iss":"https://issuer.test","sub":"dev-7"}"#);

        // JSON and form bodies: valid, the result names the body field, the body goes on.
        let json = Bytes::from(format!(r#"{{"ID_TOKEN":"{token}","other":1}}"#));
        let (out, left) = run_body(&action, &env, "POST", "application/json", json.clone()).await;
        let Ok(ActionOutcome::Continue {
            result: Some((ns, v)),
            ..
        }) = out
        else {
            panic!("expected a pass: {out:?}");
        };
        assert_eq!(ns, "jwt_validation");
        let text = format!("{v:?}");
        assert!(
            text.contains("dev-7") && text.contains("\"body\""),
            "{text}"
        );
        assert_eq!(left, json, "the upstream gets the body as sent");
        let form = Bytes::from(format!("id_token={token}&x=1"));
        let (out, left) = run_body(
            &action,
            &env,
            "PUT",
            "application/x-www-form-urlencoded",
            form.clone(),
        )
        .await;
        assert!(matches!(out, Ok(ActionOutcome::Continue { .. })), "{out:?}");
        assert_eq!(left, form);

        // No body token: a GET, another content type, the field absent, a bad signature.
        let missing = |out: &Result<ActionOutcome, ActionError>| {
            matches!(out, Ok(ActionOutcome::Respond(r))
                if r.status == StatusCode::UNAUTHORIZED
                    && r.headers.get(meta::ERROR_CODE).is_some_and(|v| v == "ERR_NGROK_3406"))
        };
        let (out, _) = run_body(&action, &env, "GET", "application/json", json.clone()).await;
        assert!(missing(&out), "{out:?}");
        let (out, left) = run_body(&action, &env, "POST", "text/plain", json.clone()).await;
        assert!(missing(&out), "{out:?}");
        assert_eq!(left, json, "a body that is not read stays in place");
        let (out, _) = run_body(
            &action,
            &env,
            "POST",
            "application/json",
            Bytes::from_static(b"{}"),
        )
        .await;
        assert!(missing(&out), "{out:?}");
        let forged = hs256(
            b"another-secret-of-thirty-two-byt",
            r#"{"iss":"https://issuer.test"}"#,
        );
        let (out, _) = run_body(
            &action,
            &env,
            "POST",
            "application/json",
            Bytes::from(format!(r#"{{"id_token":"{forged}"}}"#)),
        )
        .await;
        assert!(
            matches!(&out, Ok(ActionOutcome::Respond(r)) if r.status == StatusCode::UNAUTHORIZED
                && r.headers.get(meta::ERROR_CODE).is_some_and(|v| v == "ERR_NGROK_3403")),
            "{out:?}"
        );

        // Too large a body: 413, closed.
        let big = Bytes::from(vec![b' '; MAX_TOKEN_BODY + 1]);
        let (out, _) = run_body(&action, &env, "POST", "application/json", big).await;
        assert!(
            matches!(&out, Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE),
            "{out:?}"
        );
    }
}
