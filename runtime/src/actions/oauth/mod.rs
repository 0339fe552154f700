//! The `oauth` and `openid-connect` actions: a browser login with the authorization-code flow
//! (PKCE S256, `state`, and for OpenID Connect `nonce`, discovery and ID-token verification),
//! kept in an encrypted, authenticated session cookie.
//!
//! Everything happens inside the action's [`run`](ExternalAction::run), on the endpoint itself:
//!
//! * [`CALLBACK_PATH`] receives the provider's redirect (register
//!   `https://<endpoint host>/ngrok/oauth2/callback` as the app's redirect URI);
//! * [`LOGIN_PATH`] (`?auth_id=…&redirect_path=…`) starts a login;
//! * [`LOGOUT_PATH`] (`?auth_id=…`) clears the session;
//! * any other request continues when its session cookie is valid (the identity is the action's
//!   result, `actions.ngrok.oauth.*` / `actions.ngrok.oidc.*`), else it is redirected to the
//!   provider and, after the login, back to the same path.
//!
//! Cookies are sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the edge secret and
//! the action's identity (kind, provider or issuer, client id, `auth_id`); they are `HttpOnly`,
//! `SameSite=Lax`, `Path=/` and `Secure` (except on plain `http://` endpoints, where browsers
//! would drop them). The return path is a same-origin path kept inside the sealed flow cookie.

mod cookie;
mod flow;
mod oidc;
mod provider;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use url::Url;
use wicket_engine::Value;
use wicket_engine::compile::ir::ConfigValue;
use wicket_engine::value::{Key, MapValue};

use super::{ActionEnv, ActionError, ActionOutcome, ExternalAction, RequestCx};
use crate::policy_hook::LocalResponse;
use crate::proto::control::EndpointProto;

use cookie::{CookieAttrs, Sealer};
use flow::Flow;
use provider::{Fields, UserInfo};

/// Where the provider sends the browser back after a login.
pub const CALLBACK_PATH: &str = "/ngrok/oauth2/callback";
/// Starts a login (`?auth_id=…&redirect_path=…`).
pub const LOGIN_PATH: &str = "/ngrok/login";
/// Ends the session (`?auth_id=…`).
pub const LOGOUT_PATH: &str = "/ngrok/logout";

/// The login's `state` is missing, expired or does not match (400).
pub const ERR_OAUTH_STATE: &str = "ERR_WICKET_4340";
/// The provider answered the login with an error (403).
pub const ERR_OAUTH_DENIED: &str = "ERR_WICKET_4341";
/// The provider refused the authorization code (401) or the refresh token.
pub const ERR_OAUTH_CODE: &str = "ERR_WICKET_4342";
/// The ID token did not verify (401).
pub const ERR_OAUTH_ID_TOKEN: &str = "ERR_WICKET_4343";
/// The provider could not be reached or answered something unusable (502).
pub const ERR_OAUTH_PROVIDER: &str = "ERR_WICKET_4344";
/// The request cannot carry a login (bad `Host`, cookie domain outside the host) (400).
pub const ERR_OAUTH_REQUEST: &str = "ERR_WICKET_4345";

/// Time allowed for one exchange with the provider.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest provider response read (discovery, JWKS, token, user info).
const MAX_FETCH: usize = 256 * 1024;
/// How long a discovery document or JWKS is reused.
const META_TTL: Duration = Duration::from_secs(3600);
/// Sealed session cookies longer than this drop their tokens (browsers cap a cookie at 4 KiB).
const MAX_SESSION_COOKIE: usize = 3800;

/// Compiles an `oauth` or `openid-connect` action's config; `Err` is the bind-time refusal.
pub fn compile(
    kind: &str,
    config: &ConfigValue,
    env: &Arc<ActionEnv>,
) -> Result<Arc<dyn ExternalAction>, String> {
    let action = OAuthAction::compile(kind, config, &env.secret)?;
    Ok(Arc::new(action))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OAuth,
    Oidc,
}

impl Kind {
    fn namespace(self) -> &'static str {
        match self {
            Kind::OAuth => "oauth",
            Kind::Oidc => "oidc",
        }
    }
}

/// Where the provider's endpoints come from.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per compiled action, built once and never moved"
)]
enum Provider {
    /// A preset or a generic OAuth 2.0 provider.
    OAuth {
        name: String,
        authorization_url: Url,
        token_url: Url,
        userinfo_url: Url,
        emails_url: Option<Url>,
        fields: &'static Fields,
        client_id_header: bool,
    },
    /// OpenID Connect: endpoints and keys from the issuer's discovery document.
    Oidc {
        issuer: Url,
        cache: Mutex<OidcCache>,
    },
}

#[derive(Debug, Default)]
struct OidcCache {
    discovery: Option<(Arc<oidc::Discovery>, Instant)>,
    jwks: Option<(Arc<Vec<wicket_engine::actions::jwt::Key>>, Instant)>,
}

/// A compiled `oauth` / `openid-connect` action.
struct OAuthAction {
    kind: Kind,
    provider: Provider,
    client_id: String,
    client_secret: String,
    scopes: Vec<String>,
    authz_params: Vec<(String, String)>,
    auth_id: Option<String>,
    max_session: Option<u64>,
    idle_timeout: Option<u64>,
    userinfo_refresh: Option<u64>,
    allow_cors_preflight: bool,
    cookie_domain: Option<String>,
    /// Names this action's cookies and prefixes its `state` (`auth_id`, else a hash).
    suffix: String,
    session_cookie: String,
    /// The prefix of the login cookies' names.
    flow_cookie: String,
    sealer: Sealer,
}

impl std::fmt::Debug for OAuthAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthAction")
            .field("kind", &self.kind)
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("auth_id", &self.auth_id)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Bind time
// ---------------------------------------------------------------------------------------------

const COMMON_FIELDS: &[&str] = &[
    "auth_id",
    "client_id",
    "client_secret",
    "scopes",
    "authz_url_params",
    "max_session_duration",
    "userinfo_refresh_interval",
    "allow_cors_preflight",
    "auth_cookie_domain",
];
const OAUTH_FIELDS: &[&str] = &[
    "provider",
    "idle_session_timeout",
    "authorization_url",
    "token_url",
    "userinfo_url",
];
const OIDC_FIELDS: &[&str] = &["issuer_url", "idle_session_duration"];

fn literal<'a>(config: &'a ConfigValue, key: &str) -> Result<Option<&'a str>, String> {
    match config.get(key) {
        None | Some(ConfigValue::Null) => Ok(None),
        Some(v) => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("`{key}` must be a string"))?;
            if s.contains("${") {
                return Err(format!(
                    "`{key}` cannot interpolate `${{…}}` on this edge: write the value itself"
                ));
            }
            Ok(Some(s))
        }
    }
}

fn duration(config: &ConfigValue, key: &str) -> Result<Option<u64>, String> {
    let d = match config.get(key) {
        None | Some(ConfigValue::Null) => return Ok(None),
        Some(ConfigValue::Duration(d)) => *d,
        Some(ConfigValue::Int(n)) if *n > 0 => Duration::from_secs(n.unsigned_abs()),
        Some(v) => v
            .as_str()
            .and_then(crate::duration::parse)
            .ok_or_else(|| format!("`{key}` must be a duration such as `15m` or `1h`"))?,
    };
    if d.as_secs() == 0 {
        return Err(format!("`{key}` must be at least one second"));
    }
    Ok(Some(d.as_secs()))
}

/// An endpoint URL: `https://`, or `http://` to a loopback host (local development and tests).
fn endpoint_url(key: &str, text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{key}` is not a valid URL: {e}"))?;
    check_endpoint_url(&url).map_err(|e| format!("`{key}` {e}"))?;
    Ok(url)
}

fn check_endpoint_url(url: &Url) -> Result<(), String> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("`{url}` has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "`{url}` must use `https://` (plain `http://` is accepted for loopback hosts only)"
            ));
        }
        other => return Err(format!("`{url}` has the unsupported scheme `{other}`")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{url}` must not carry credentials"));
    }
    Ok(())
}

impl OAuthAction {
    fn compile(kind: &str, config: &ConfigValue, secret: &[u8; 32]) -> Result<Self, String> {
        let kind = match kind {
            "oauth" => Kind::OAuth,
            "openid-connect" => Kind::Oidc,
            other => return Err(format!("`{other}` is not an OAuth action")),
        };
        let ConfigValue::Map(entries) = config else {
            return Err("the config must be a map".to_owned());
        };
        let own = if kind == Kind::OAuth {
            OAUTH_FIELDS
        } else {
            OIDC_FIELDS
        };
        for (k, _) in entries {
            if !COMMON_FIELDS.contains(&k.as_str()) && !own.contains(&k.as_str()) {
                return Err(format!("unknown field `{k}`"));
            }
        }
        let client_id = literal(config, "client_id")?.unwrap_or("");
        let client_secret = literal(config, "client_secret")?.unwrap_or("");
        if client_id.is_empty() || client_secret.is_empty() {
            return Err(
                "`client_id` and `client_secret` are required: a self-hosted edge has no managed \
                 OAuth apps, register your own app with the provider"
                    .to_owned(),
            );
        }
        let scopes = match config.get("scopes") {
            None | Some(ConfigValue::Null) => None,
            Some(ConfigValue::List(items)) => Some(
                items
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                            .map(str::to_owned)
                            .ok_or_else(|| "`scopes` must be a list of single words".to_owned())
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err("`scopes` must be a list".to_owned()),
        };
        let mut authz_params = Vec::new();
        match config.get("authz_url_params") {
            None | Some(ConfigValue::Null) => {}
            Some(ConfigValue::Map(m)) => {
                for (k, v) in m {
                    const RESERVED: &[&str] = &[
                        "client_id",
                        "redirect_uri",
                        "response_type",
                        "state",
                        "nonce",
                        "code_challenge",
                        "code_challenge_method",
                        "scope",
                    ];
                    if RESERVED.contains(&k.as_str()) {
                        return Err(format!(
                            "`authz_url_params` cannot set `{k}`: the login sets it"
                        ));
                    }
                    let v = v
                        .as_str()
                        .ok_or_else(|| format!("`authz_url_params.{k}` must be a string"))?;
                    authz_params.push((k.clone(), v.to_owned()));
                }
            }
            Some(_) => return Err("`authz_url_params` must be a map".to_owned()),
        }
        let auth_id = literal(config, "auth_id")?.map(str::to_owned);
        if let Some(id) = &auth_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(format!(
                "`auth_id` `{id}` must be 1 to 64 letters, digits, `-` or `_`"
            ));
        }
        let cookie_domain = literal(config, "auth_cookie_domain")?
            .map(|d| d.trim_start_matches('.').to_ascii_lowercase());
        if let Some(d) = &cookie_domain
            && (d.is_empty()
                || !d.contains('.')
                || !d
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            return Err(format!("`auth_cookie_domain` `{d}` is not a domain name"));
        }
        let allow_cors_preflight = match config.get("allow_cors_preflight") {
            None | Some(ConfigValue::Null) => false,
            Some(ConfigValue::Bool(b)) => *b,
            Some(_) => return Err("`allow_cors_preflight` must be a boolean".to_owned()),
        };
        let idle_key = if kind == Kind::OAuth {
            "idle_session_timeout"
        } else {
            "idle_session_duration"
        };
        let idle_timeout = duration(config, idle_key)?;
        let max_session = duration(config, "max_session_duration")?;
        let userinfo_refresh = duration(config, "userinfo_refresh_interval")?;

        let (provider, scopes, label) = match kind {
            Kind::OAuth => {
                let name = literal(config, "provider")?.unwrap_or("");
                let url = |key: &str, preset: Option<&str>| -> Result<Url, String> {
                    match (literal(config, key)?, preset) {
                        (Some(text), _) => endpoint_url(key, text),
                        (None, Some(text)) => endpoint_url(key, text),
                        (None, None) => Err(format!(
                            "`{key}` is required for the generic provider `custom`"
                        )),
                    }
                };
                let (preset, fields, default_scopes, emails, client_id_header) = if name == "custom"
                {
                    (None, &provider::STANDARD, &[][..], None, false)
                } else {
                    let p = provider::preset(name).ok_or_else(|| {
                        if name.is_empty() {
                            "`provider` is required (a preset such as `google`, or `custom` with \
                             `authorization_url`, `token_url` and `userinfo_url`)"
                                .to_owned()
                        } else {
                            format!("unknown provider `{name}`")
                        }
                    })?;
                    (
                        Some(p),
                        p.fields,
                        p.default_scopes,
                        p.emails_url,
                        p.client_id_header,
                    )
                };
                let authorization_url =
                    url("authorization_url", preset.map(|p| p.authorization_url))?;
                let token_url = url("token_url", preset.map(|p| p.token_url))?;
                let userinfo_url = url("userinfo_url", preset.map(|p| p.userinfo_url))?;
                // GitHub's address list lives beside its user endpoint: follow an override.
                let emails_url = match emails {
                    Some(default) if literal(config, "userinfo_url")?.is_some() => Some(
                        userinfo_url
                            .join("user/emails")
                            .or_else(|_| Url::parse(default)),
                    ),
                    Some(default) => Some(Url::parse(default)),
                    None => None,
                }
                .transpose()
                .map_err(|e| format!("bad e-mail list URL: {e}"))?;
                let scopes = scopes
                    .unwrap_or_else(|| default_scopes.iter().map(|s| (*s).to_owned()).collect());
                let label = format!("oauth|{name}|{authorization_url}");
                (
                    Provider::OAuth {
                        name: name.to_owned(),
                        authorization_url,
                        token_url,
                        userinfo_url,
                        emails_url,
                        fields,
                        client_id_header,
                    },
                    scopes,
                    label,
                )
            }
            Kind::Oidc => {
                let issuer = literal(config, "issuer_url")?.ok_or("`issuer_url` is required")?;
                let issuer = endpoint_url("issuer_url", issuer)?;
                if issuer.query().is_some() || issuer.fragment().is_some() {
                    return Err("`issuer_url` must not have a query or fragment".to_owned());
                }
                let mut scopes = scopes
                    .unwrap_or_else(|| ["openid", "email", "profile"].map(str::to_owned).to_vec());
                if !scopes.iter().any(|s| s == "openid") {
                    scopes.insert(0, "openid".to_owned());
                }
                let label = format!("oidc|{issuer}");
                (
                    Provider::Oidc {
                        issuer,
                        cache: Mutex::new(OidcCache::default()),
                    },
                    scopes,
                    label,
                )
            }
        };
        let scope = format!(
            "{label}|{client_id}|{}",
            auth_id.as_deref().unwrap_or_default()
        );
        let suffix = match &auth_id {
            Some(id) => id.clone(),
            None => hex::encode(&Sha256::digest(scope.as_bytes())[..4]),
        };
        Ok(Self {
            kind,
            provider,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            scopes,
            authz_params,
            auth_id,
            max_session,
            idle_timeout,
            userinfo_refresh,
            allow_cors_preflight,
            cookie_domain,
            session_cookie: format!("wicket_session_{suffix}"),
            flow_cookie: format!("wicket_login_{suffix}"),
            suffix,
            sealer: Sealer::new(secret, &scope)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// What the session cookie holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Session {
    /// Session id (random).
    sid: String,
    /// The provider's user id.
    id: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    /// Issued at (Unix seconds).
    iat: u64,
    /// Last seen (Unix seconds; refreshed while the session is used).
    seen: u64,
    /// When the user info was last read.
    #[serde(default)]
    ui: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    rt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    idt: String,
    /// When the access token expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

/// How a session stands at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Valid; `touch` when its last-seen time should be written back.
    Valid { touch: bool },
    /// Idle for longer than the idle timeout.
    TimedOut,
    /// Older than the maximum session duration.
    MaxDurationReached,
    /// Issued in the future (clock trouble or forgery).
    Invalid,
}

fn standing(s: &Session, now: u64, max: Option<u64>, idle: Option<u64>) -> Standing {
    if s.iat > now.saturating_add(60) || s.seen < s.iat {
        return Standing::Invalid;
    }
    if max.is_some_and(|m| now >= s.iat.saturating_add(m)) {
        return Standing::MaxDurationReached;
    }
    if let Some(idle) = idle {
        let quiet = now.saturating_sub(s.seen);
        if quiet >= idle {
            return Standing::TimedOut;
        }
        return Standing::Valid {
            touch: quiet >= (idle / 2).max(1),
        };
    }
    Standing::Valid { touch: false }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn string_map(entries: Vec<(&str, Value)>) -> Value {
    let mut map = MapValue::new();
    for (k, v) in entries {
        map.upsert(Key::String(Arc::from(k)), v);
    }
    Value::map(map)
}

/// Where the request came from, as the login needs it.
#[derive(Debug)]
struct Site {
    /// `https://host[:port]`.
    origin: String,
    attrs: CookieAttrs,
}

/// What the token endpoint returned.
#[derive(Debug, Default)]
struct Tokens {
    access: String,
    refresh: String,
    id_token: String,
    expires_at: Option<u64>,
}

fn provider_error(message: impl Into<String>) -> ActionError {
    ActionError {
        status: StatusCode::BAD_GATEWAY,
        code: ERR_OAUTH_PROVIDER,
        message: message.into(),
    }
}

fn state_error(message: &str) -> ActionError {
    ActionError {
        status: StatusCode::BAD_REQUEST,
        code: ERR_OAUTH_STATE,
        message: message.to_owned(),
    }
}

/// A provider-supplied word (error codes) safe to echo: short, printable ASCII.
fn echo(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '`')
        .take(64)
        .collect()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn response(status: StatusCode, cookies: &[String], body: &'static str) -> LocalResponse {
    let mut headers = HeaderMap::new();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !body.is_empty() {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            headers.append(SET_COOKIE, v);
        }
    }
    LocalResponse {
        status,
        headers,
        body: Bytes::from_static(body.as_bytes()),
    }
}

fn redirect(status: StatusCode, location: &str, cookies: &[String]) -> LocalResponse {
    let mut r = response(status, cookies, "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers.insert(LOCATION, v);
    }
    r
}

const SIGNED_OUT_PAGE: &str =
    "<!doctype html><title>Signed out</title><p>You are signed out.</p>\n";

// ---------------------------------------------------------------------------------------------
// Request time
// ---------------------------------------------------------------------------------------------

impl ExternalAction for OAuthAction {
    fn run<'a>(&'a self, cx: RequestCx<'a>) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        Box::pin(self.handle(cx))
    }
}

impl OAuthAction {
    async fn handle(&self, cx: RequestCx<'_>) -> Result<ActionOutcome, ActionError> {
        let parts = cx.parts;
        let now = unix_now();
        let path = parts.uri.path();
        let query = parts.uri.query();
        let ours =
            || query_param(query, "auth_id").is_none_or(|id| Some(&id) == self.auth_id.as_ref());
        // A callback for another login action of the endpoint (its `state` names that action's
        // cookies) is not ours: treat it as any request, so a signed-in user passes on to it.
        let callback_of_ours = || {
            query_param(query, "state")
                .and_then(|s| s.split_once('.').map(|(p, _)| p == self.suffix))
                .unwrap_or(true)
        };
        if path == CALLBACK_PATH && callback_of_ours() {
            let site = self.site(cx.parts, cx.conn.proto)?;
            return self.callback(&cx, &site, now).await;
        }
        if path == LOGOUT_PATH && ours() {
            let site = self.site(cx.parts, cx.conn.proto)?;
            let clear = cookie::set_cookie(&self.session_cookie, "", &site.attrs, Some(0));
            return Ok(ActionOutcome::Respond(response(
                StatusCode::OK,
                &[clear],
                SIGNED_OUT_PAGE,
            )));
        }
        if path == LOGIN_PATH && ours() {
            let site = self.site(cx.parts, cx.conn.proto)?;
            let ret = flow::safe_return_path(
                query_param(query, "redirect_path")
                    .as_deref()
                    .unwrap_or("/"),
            );
            return self.start(cx.env, &site, ret, true, now).await;
        }
        if self.allow_cors_preflight
            && parts.method == Method::OPTIONS
            && parts.headers.contains_key(http::header::ORIGIN)
            && parts
                .headers
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Ok(self.continue_with(&Session::default(), false));
        }
        let site = self.site(cx.parts, cx.conn.proto)?;
        // A valid session continues (unless the provider revoked it at a user-info refresh);
        // anything else — none, tampered, timed out, too old — starts a new login.
        if let Some(mut session) = self.read_session(&parts.headers)
            && let Standing::Valid { touch } =
                standing(&session, now, self.max_session, self.idle_timeout)
            && let Some(renewed) = self.maybe_renew_tokens(cx.env, &mut session, now).await
            && let Some(refreshed) = self.maybe_refresh_userinfo(&cx, &mut session, now).await
        {
            if touch {
                session.seen = now;
            }
            let mut outcome = self.continue_with(&session, refreshed);
            // A touched, renewed or refreshed session is written back on the response the
            // request ends with (the upstream's, or a local one), whatever its method.
            if (touch || renewed || refreshed)
                && let Some(c) = self.session_set_cookie(&session, &site)
                && let Ok(v) = HeaderValue::from_str(&c)
                && let ActionOutcome::Continue {
                    response_headers, ..
                } = &mut outcome
            {
                response_headers.push((http::header::SET_COOKIE, v));
            }
            return Ok(outcome);
        }
        let ret = if parts.method == Method::GET || parts.method == Method::HEAD {
            flow::safe_return_path(parts.uri.path_and_query().map_or("/", |pq| pq.as_str()))
        } else {
            "/".to_owned()
        };
        self.start(cx.env, &site, ret, false, now).await
    }

    /// The origin and cookie attributes of the request.
    fn site(
        &self,
        parts: &http::request::Parts,
        proto: EndpointProto,
    ) -> Result<Site, ActionError> {
        let bad = |m: String| ActionError {
            status: StatusCode::BAD_REQUEST,
            code: ERR_OAUTH_REQUEST,
            message: m,
        };
        let authority = parts
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
            .ok_or_else(|| bad("the request has no host".to_owned()))?;
        let authority = authority.to_ascii_lowercase();
        let valid = !authority.is_empty()
            && authority.len() <= 260
            && authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c));
        if !valid {
            return Err(bad(format!("the host `{}` is not valid", echo(&authority))));
        }
        let host = match authority.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default().to_owned(),
            None => authority.split(':').next().unwrap_or_default().to_owned(),
        };
        let secure = proto != EndpointProto::Http;
        let scheme = if secure { "https" } else { "http" };
        if let Some(d) = &self.cookie_domain
            && host != *d
            && !host.ends_with(&format!(".{d}"))
        {
            return Err(ActionError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: ERR_OAUTH_REQUEST,
                message: format!("`auth_cookie_domain` `{d}` does not contain the host `{host}`"),
            });
        }
        Ok(Site {
            origin: format!("{scheme}://{authority}"),
            attrs: CookieAttrs {
                secure,
                domain: self.cookie_domain.clone(),
            },
        })
    }

    /// The login cookie of the login with `state`: one per login in progress, so that logins
    /// started in several tabs at once all finish.
    fn flow_cookie_name(&self, state: &str) -> String {
        let tag: String = state
            .split_once('.')
            .map_or("", |(_, r)| r)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(10)
            .collect();
        format!("{}_{tag}", self.flow_cookie)
    }

    fn read_session(&self, headers: &HeaderMap) -> Option<Session> {
        cookie::request_cookies(headers, &self.session_cookie)
            .find_map(|v| self.sealer.open::<Session>("session", v))
    }

    fn session_set_cookie(&self, session: &Session, site: &Site) -> Option<String> {
        let mut s = session.clone();
        let mut sealed = self.sealer.seal("session", &s)?;
        // Drop what is least needed until the cookie fits.
        for drop in [
            |s: &mut Session| s.rt.clear(),
            |s: &mut Session| s.idt.clear(),
            |s: &mut Session| s.at.clear(),
        ] {
            if sealed.len() <= MAX_SESSION_COOKIE {
                break;
            }
            drop(&mut s);
            sealed = self.sealer.seal("session", &s)?;
        }
        let max_age = self
            .max_session
            .map(|m| m.saturating_sub(unix_now().saturating_sub(s.iat)));
        Some(cookie::set_cookie(
            &self.session_cookie,
            &sealed,
            &site.attrs,
            max_age,
        ))
    }

    fn continue_with(&self, s: &Session, refreshed: bool) -> ActionOutcome {
        let str_v = |s: &str| Value::string(s);
        let session_key = match self.kind {
            Kind::OAuth => "current_provider_session_id",
            Kind::Oidc => "current_session_id",
        };
        let identity = string_map(vec![
            ("id", str_v(&s.id)),
            ("email", str_v(&s.email)),
            ("name", str_v(&s.name)),
            ("provider_user_id", str_v(&s.id)),
            (session_key, str_v(&s.sid)),
        ]);
        let expires_at = s
            .exp
            .and_then(|e| jiff::Timestamp::from_second(i64::try_from(e).ok()?).ok())
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut entries = vec![
            ("identity", identity),
            ("access_token", str_v(&s.at)),
            ("refresh_token", str_v(&s.rt)),
            ("expires_at", str_v(&expires_at)),
            ("session_timed_out", Value::Bool(false)),
            ("session_max_duration_reached", Value::Bool(false)),
            (
                "error",
                string_map(vec![("code", str_v("")), ("message", str_v(""))]),
            ),
        ];
        match self.kind {
            Kind::OAuth => entries.push(("userinfo_refreshed", Value::Bool(refreshed))),
            Kind::Oidc => {
                entries.push(("user_info_refreshed", Value::Bool(refreshed)));
                entries.push(("identity_token", str_v(&s.idt)));
            }
        }
        ActionOutcome::proceed(self.kind.namespace(), string_map(entries))
    }

    /// Redirects the browser to the provider.
    async fn start(
        &self,
        env: &ActionEnv,
        site: &Site,
        ret: String,
        force: bool,
        now: u64,
    ) -> Result<ActionOutcome, ActionError> {
        let random = |b: &mut [u8]| self.sealer.random(b);
        let (Some(state), Some(verifier), Some(nonce)) = (
            flow::token(random),
            flow::token(random),
            flow::token(random),
        ) else {
            return Err(ActionError::failed("no randomness available"));
        };
        let state = format!("{}.{state}", self.suffix);
        let nonce = if self.kind == Kind::Oidc {
            nonce
        } else {
            String::new()
        };
        let mut url = match &self.provider {
            Provider::OAuth {
                authorization_url, ..
            } => authorization_url.clone(),
            Provider::Oidc { .. } => {
                let d = self.discovery(env).await?;
                Url::parse(&d.authorization_endpoint)
                    .map_err(|e| provider_error(format!("bad authorization endpoint: {e}")))?
            }
        };
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &format!("{}{CALLBACK_PATH}", site.origin))
                .append_pair("state", &state)
                .append_pair("code_challenge", &flow::pkce_challenge(&verifier))
                .append_pair("code_challenge_method", "S256");
            if !self.scopes.is_empty() {
                q.append_pair("scope", &self.scopes.join(" "));
            }
            if !nonce.is_empty() {
                q.append_pair("nonce", &nonce);
            }
            if force
                && self.kind == Kind::Oidc
                && !self.authz_params.iter().any(|(k, _)| k == "prompt")
            {
                q.append_pair("prompt", "login");
            }
            for (k, v) in &self.authz_params {
                q.append_pair(k, v);
            }
        }
        let flow = Flow {
            state,
            verifier,
            nonce,
            ret,
            iat: now,
        };
        let sealed = self
            .sealer
            .seal("flow", &flow)
            .ok_or_else(|| ActionError::failed("cannot seal the login cookie"))?;
        let c = cookie::set_cookie(
            &self.flow_cookie_name(&flow.state),
            &sealed,
            &site.attrs,
            Some(flow::FLOW_TTL_SECS),
        );
        Ok(ActionOutcome::Respond(redirect(
            StatusCode::FOUND,
            url.as_str(),
            &[c],
        )))
    }

    /// Finishes a login: checks `state`, exchanges the code, reads the identity, sets the
    /// session and sends the browser back where it started.
    async fn callback(
        &self,
        cx: &RequestCx<'_>,
        site: &Site,
        now: u64,
    ) -> Result<ActionOutcome, ActionError> {
        let query = cx.parts.uri.query();
        let state = query_param(query, "state").unwrap_or_default();
        let flow_cookie = self.flow_cookie_name(&state);
        let flows: Vec<Flow> = cookie::request_cookies(&cx.parts.headers, &flow_cookie)
            .filter_map(|v| self.sealer.open::<Flow>("flow", v))
            .collect();
        if flows.is_empty() {
            return Err(state_error(
                "no login is in progress here (the login cookie is missing or invalid); start again",
            ));
        }
        let Some(flow) = flows.into_iter().find(|f| f.state_matches(&state)) else {
            return Err(state_error(
                "the login's `state` does not match; start again",
            ));
        };
        if flow.expired(now) {
            return Err(state_error("the login took too long; start again"));
        }
        if let Some(err) = query_param(query, "error") {
            return Err(ActionError {
                status: StatusCode::FORBIDDEN,
                code: ERR_OAUTH_DENIED,
                message: format!("the identity provider refused the login: `{}`", echo(&err)),
            });
        }
        let code = query_param(query, "code")
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| state_error("the callback has no authorization `code`"))?;
        let redirect_uri = format!("{}{CALLBACK_PATH}", site.origin);
        let tokens = self
            .exchange(cx.env, &code, &flow.verifier, &redirect_uri, now)
            .await?;
        let user = match &self.provider {
            Provider::OAuth { .. } => self.oauth_user(cx.env, &tokens.access).await?,
            Provider::Oidc { .. } => self.oidc_user(cx.env, &tokens, &flow.nonce, now).await?,
        };
        let mut sid = [0u8; 16];
        if !self.sealer.random(&mut sid) {
            return Err(ActionError::failed("no randomness available"));
        }
        let session = Session {
            sid: hex::encode(sid),
            id: user.id,
            email: user.email,
            name: user.name,
            iat: now,
            seen: now,
            ui: now,
            at: tokens.access,
            rt: tokens.refresh,
            idt: tokens.id_token,
            exp: tokens.expires_at,
        };
        let set = self
            .session_set_cookie(&session, site)
            .ok_or_else(|| ActionError::failed("cannot seal the session cookie"))?;
        let clear = cookie::set_cookie(&flow_cookie, "", &site.attrs, Some(0));
        Ok(ActionOutcome::Respond(redirect(
            StatusCode::FOUND,
            &flow::safe_return_path(&flow.ret),
            &[set, clear],
        )))
    }

    /// Trades the authorization code for tokens.
    async fn exchange(
        &self,
        env: &ActionEnv,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        now: u64,
    ) -> Result<Tokens, ActionError> {
        let grant = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        self.token_request(env, &grant, now).await
    }

    /// One request to the token endpoint with the client's credentials.
    async fn token_request(
        &self,
        env: &ActionEnv,
        grant: &[(&str, &str)],
        now: u64,
    ) -> Result<Tokens, ActionError> {
        let (token_url, basic) = match &self.provider {
            Provider::OAuth { token_url, .. } => (token_url.to_string(), false),
            Provider::Oidc { .. } => {
                let d = self.discovery(env).await?;
                (d.token_endpoint.clone(), d.uses_basic_auth())
            }
        };
        let mut pairs = grant.to_vec();
        let mut req = http::Request::post(token_url.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "wicket");
        if basic {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let creds = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&self.client_id),
                enc(&self.client_secret)
            ));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {creds}"));
        } else {
            pairs.push(("client_id", &self.client_id));
            pairs.push(("client_secret", &self.client_secret));
        }
        let body = form_body(&pairs);
        let req = req
            .body(crate::body::full(body))
            .map_err(|e| provider_error(format!("bad token request: {e}")))?;
        let res = env
            .fetch(req, FETCH_TIMEOUT, MAX_FETCH)
            .await
            .map_err(|e| provider_error(format!("the token endpoint failed: {e}")))?;
        let status = res.status();
        let doc: Option<Json> = serde_json::from_slice(res.body()).ok();
        let error = doc
            .as_ref()
            .and_then(|d| d.get("error"))
            .and_then(Json::as_str);
        if status.is_client_error() || error.is_some() {
            return Err(ActionError {
                status: StatusCode::UNAUTHORIZED,
                code: ERR_OAUTH_CODE,
                message: format!(
                    "the identity provider refused the {}: `{}`",
                    if grant.iter().any(|(_, v)| *v == "refresh_token") {
                        "refresh token"
                    } else {
                        "authorization code"
                    },
                    echo(error.unwrap_or(status.as_str()))
                ),
            });
        }
        if !status.is_success() {
            return Err(provider_error(format!(
                "the token endpoint answered {status}"
            )));
        }
        let doc = doc.ok_or_else(|| provider_error("the token endpoint did not answer JSON"))?;
        let s = |k: &str| doc.get(k).and_then(Json::as_str).unwrap_or("").to_owned();
        let access = s("access_token");
        if access.is_empty() {
            return Err(provider_error(
                "the token endpoint returned no access token",
            ));
        }
        let expires_in = match doc.get("expires_in") {
            Some(Json::Number(n)) => n.as_u64(),
            Some(Json::String(t)) => t.parse().ok(),
            _ => None,
        };
        Ok(Tokens {
            access,
            refresh: s("refresh_token"),
            id_token: s("id_token"),
            expires_at: expires_in.map(|e| now.saturating_add(e)),
        })
    }

    async fn get_json(&self, env: &ActionEnv, url: &str, bearer: &str) -> Result<Json, FetchFail> {
        let mut req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "wicket");
        if !bearer.is_empty() {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {bearer}"));
        }
        if let Provider::OAuth {
            client_id_header: true,
            ..
        } = self.provider
        {
            req = req.header("client-id", self.client_id.as_str());
        }
        let req = req
            .body(crate::body::empty())
            .map_err(|e| FetchFail::Other(format!("bad request to `{url}`: {e}")))?;
        let res = env
            .fetch(req, FETCH_TIMEOUT, MAX_FETCH)
            .await
            .map_err(|e| FetchFail::Other(format!("`{url}` failed: {e}")))?;
        if matches!(
            res.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(FetchFail::Refused);
        }
        if !res.status().is_success() {
            return Err(FetchFail::Other(format!(
                "`{url}` answered {}",
                res.status()
            )));
        }
        serde_json::from_slice(res.body())
            .map_err(|_| FetchFail::Other(format!("`{url}` did not answer JSON")))
    }

    /// The user of an OAuth 2.0 login, from the provider's user-info endpoint.
    async fn oauth_user(&self, env: &ActionEnv, access: &str) -> Result<UserInfo, ActionError> {
        let Provider::OAuth {
            name,
            userinfo_url,
            emails_url,
            fields,
            ..
        } = &self.provider
        else {
            return Err(ActionError::failed("not an OAuth 2.0 provider"));
        };
        let doc = self
            .get_json(env, userinfo_url.as_str(), access)
            .await
            .map_err(|e| provider_error(format!("reading the user info failed: {e}")))?;
        let mut user = provider::read_userinfo(&doc, fields);
        if user.email.is_empty()
            && let Some(emails) = emails_url
            && name == "github"
            && let Ok(list) = self.get_json(env, emails.as_str(), access).await
            && let Some(email) = provider::github_primary_email(&list)
        {
            user.email = email;
        }
        if user.id.is_empty() {
            return Err(provider_error("the user info names no user id"));
        }
        Ok(user)
    }

    /// The user of an OpenID Connect login: the verified ID token, completed from the user-info
    /// endpoint when it lacks the e-mail address or name.
    async fn oidc_user(
        &self,
        env: &ActionEnv,
        tokens: &Tokens,
        nonce: &str,
        now: u64,
    ) -> Result<UserInfo, ActionError> {
        if tokens.id_token.is_empty() {
            return Err(id_token_error(
                "the token endpoint returned no ID token".to_owned(),
            ));
        }
        let d = self.discovery(env).await?;
        let expect = oidc::Expect {
            issuer: &d.issuer,
            client_id: &self.client_id,
            nonce,
            now: i64::try_from(now).unwrap_or(i64::MAX),
        };
        let keys = self.jwks(env, &d, false).await?;
        let claims = match oidc::verify_id_token(&tokens.id_token, &keys, &expect) {
            Err(oidc::TokenError::UnknownKey(_)) => {
                // The provider may have rotated its keys: fetch them once more.
                let keys = self.jwks(env, &d, true).await?;
                oidc::verify_id_token(&tokens.id_token, &keys, &expect)
            }
            other => other,
        }
        .map_err(|e| id_token_error(e.to_string()))?;
        let claims = Json::Object(claims);
        let mut user = provider::read_userinfo(&claims, &provider::STANDARD);
        user.id = claims
            .get("sub")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        if (user.email.is_empty() || user.name.is_empty())
            && let Some(ui) = &d.userinfo_endpoint
        {
            let doc = self
                .get_json(env, ui, &tokens.access)
                .await
                .map_err(|e| provider_error(format!("reading the user info failed: {e}")))?;
            if doc.get("sub").and_then(Json::as_str) != Some(user.id.as_str()) {
                return Err(provider_error("the user info is about another user"));
            }
            let more = provider::read_userinfo(&doc, &provider::STANDARD);
            if user.email.is_empty() {
                user.email = more.email;
            }
            if user.name.is_empty() {
                user.name = more.name;
            }
        }
        Ok(user)
    }

    /// Renews an expired access token with the refresh token. `Some(renewed)`, or `None` when
    /// the provider refuses the refresh token (the user logs in again).
    async fn maybe_renew_tokens(
        &self,
        env: &ActionEnv,
        session: &mut Session,
        now: u64,
    ) -> Option<bool> {
        let expired = session.exp.is_some_and(|exp| now >= exp);
        if !expired || session.rt.is_empty() {
            return Some(false);
        }
        let rt = session.rt.clone();
        let grant = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ];
        match self.token_request(env, &grant, now).await {
            Ok(t) => {
                session.at = t.access;
                if !t.refresh.is_empty() {
                    session.rt = t.refresh;
                }
                session.exp = t.expires_at;
                Some(true)
            }
            Err(e) if e.code == ERR_OAUTH_CODE => None,
            Err(e) => {
                // The provider is unreachable: keep the session and retry next time.
                tracing::warn!(error = %e, "access token renewal failed");
                Some(false)
            }
        }
    }

    /// Re-reads the user info when `userinfo_refresh_interval` has passed. `Some(refreshed)`,
    /// or `None` when the provider no longer accepts the session's access token.
    async fn maybe_refresh_userinfo(
        &self,
        cx: &RequestCx<'_>,
        session: &mut Session,
        now: u64,
    ) -> Option<bool> {
        let Some(every) = self.userinfo_refresh else {
            return Some(false);
        };
        if now.saturating_sub(session.ui) < every {
            return Some(false);
        }
        if session.at.is_empty() {
            // The token did not fit in the cookie: nothing to refresh with; log in again.
            return None;
        }
        let (url, fields) = match &self.provider {
            Provider::OAuth {
                userinfo_url,
                fields,
                ..
            } => (userinfo_url.to_string(), *fields),
            Provider::Oidc { .. } => match self.discovery(cx.env).await {
                Ok(d) => (d.userinfo_endpoint.clone()?, &provider::STANDARD),
                Err(_) => return Some(false),
            },
        };
        match self.get_json(cx.env, &url, &session.at).await {
            Ok(doc) => {
                let user = provider::read_userinfo(&doc, fields);
                if user.id != session.id {
                    return None;
                }
                if !user.email.is_empty() {
                    session.email = user.email;
                }
                if !user.name.is_empty() {
                    session.name = user.name;
                }
                session.ui = now;
                Some(true)
            }
            Err(FetchFail::Refused) => None,
            Err(FetchFail::Other(e)) => {
                // The provider is unreachable: keep the known identity and retry next time.
                tracing::warn!(error = %e, "user info refresh failed");
                Some(false)
            }
        }
    }

    /// The issuer's discovery document (cached for [`META_TTL`]).
    async fn discovery(&self, env: &ActionEnv) -> Result<Arc<oidc::Discovery>, ActionError> {
        let Provider::Oidc { issuer, cache } = &self.provider else {
            return Err(ActionError::failed("not an OpenID Connect provider"));
        };
        if let Ok(c) = cache.lock()
            && let Some((d, at)) = &c.discovery
            && at.elapsed() < META_TTL
        {
            return Ok(d.clone());
        }
        let base = issuer.as_str().trim_end_matches('/');
        let url = format!("{base}/.well-known/openid-configuration");
        let no_doc = |why: String| {
            provider_error(format!(
                "the issuer `{issuer}` has no valid discovery document: {why}"
            ))
        };
        let doc = self
            .get_json(env, &url, "")
            .await
            .map_err(|e| no_doc(e.to_string()))?;
        let d: oidc::Discovery = serde_json::from_value(doc).map_err(|e| no_doc(e.to_string()))?;
        if !oidc::same_issuer(&d.issuer, issuer.as_str()) {
            return Err(no_doc(format!("it names the issuer `{}`", echo(&d.issuer))));
        }
        let endpoints = [
            Some(&d.authorization_endpoint),
            Some(&d.token_endpoint),
            Some(&d.jwks_uri),
            d.userinfo_endpoint.as_ref(),
        ];
        for e in endpoints.into_iter().flatten() {
            let url = Url::parse(e).map_err(|err| no_doc(format!("`{}`: {err}", echo(e))))?;
            check_endpoint_url(&url).map_err(no_doc)?;
        }
        let d = Arc::new(d);
        if let Ok(mut c) = cache.lock() {
            c.discovery = Some((d.clone(), Instant::now()));
        }
        Ok(d)
    }

    /// The provider's signing keys (cached for [`META_TTL`]; `refresh` fetches them anew).
    async fn jwks(
        &self,
        env: &ActionEnv,
        d: &oidc::Discovery,
        refresh: bool,
    ) -> Result<Arc<Vec<wicket_engine::actions::jwt::Key>>, ActionError> {
        let Provider::Oidc { cache, .. } = &self.provider else {
            return Err(ActionError::failed("not an OpenID Connect provider"));
        };
        if !refresh
            && let Ok(c) = cache.lock()
            && let Some((k, at)) = &c.jwks
            && at.elapsed() < META_TTL
        {
            return Ok(k.clone());
        }
        let doc = self
            .get_json(env, &d.jwks_uri, "")
            .await
            .map_err(|e| provider_error(format!("fetching the provider's JWKS failed: {e}")))?;
        let keys = Arc::new(
            oidc::parse_jwks(&doc)
                .map_err(|e| provider_error(format!("the provider's JWKS is not usable: {e}")))?,
        );
        if let Ok(mut c) = cache.lock() {
            c.jwks = Some((keys.clone(), Instant::now()));
        }
        Ok(keys)
    }
}

/// Why a provider GET failed.
#[derive(Debug)]
enum FetchFail {
    /// 401 or 403: the access token is no longer accepted.
    Refused,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for FetchFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchFail::Refused => f.write_str("the provider refused the access token"),
            FetchFail::Other(m) => f.write_str(m),
        }
    }
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn id_token_error(message: String) -> ActionError {
    ActionError {
        status: StatusCode::UNAUTHORIZED,
        code: ERR_OAUTH_ID_TOKEN,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Json) -> ConfigValue {
        ConfigValue::from_json(&v)
    }

    fn compile_err(kind: &str, v: Json) -> String {
        OAuthAction::compile(kind, &cfg(v), &[7; 32]).unwrap_err()
    }

    #[test]
    fn compiles_presets_generic_and_oidc() {
        let a = OAuthAction::compile(
            "oauth",
            &cfg(json!({"provider": "github", "client_id": "c", "client_secret": "s"})),
            &[7; 32],
        )
        .unwrap();
        assert_eq!(a.scopes, ["read:user", "user:email"]);
        let Provider::OAuth { emails_url, .. } = &a.provider else {
            panic!()
        };
        assert_eq!(
            emails_url.as_ref().unwrap().as_str(),
            "https://api.github.com/user/emails"
        );
        assert!(a.session_cookie.starts_with("wicket_session_"));

        let a = OAuthAction::compile(
            "oauth",
            &cfg(json!({"provider": "github", "client_id": "c", "client_secret": "s",
                "auth_id": "corp", "userinfo_url": "http://127.0.0.1:9/api/user",
                "scopes": ["read:user"], "idle_session_timeout": "15m", "max_session_duration": "1h"})),
            &[7; 32],
        )
        .unwrap();
        assert_eq!(a.session_cookie, "wicket_session_corp");
        assert_eq!(a.flow_cookie, "wicket_login_corp");
        assert_eq!((a.idle_timeout, a.max_session), (Some(900), Some(3600)));
        let Provider::OAuth { emails_url, .. } = &a.provider else {
            panic!()
        };
        assert_eq!(
            emails_url.as_ref().unwrap().as_str(),
            "http://127.0.0.1:9/api/user/emails"
        );

        let a = OAuthAction::compile(
            "oauth",
            &cfg(
                json!({"provider": "custom", "client_id": "c", "client_secret": "s",
                "authorization_url": "https://idp.example/authorize",
                "token_url": "https://idp.example/token",
                "userinfo_url": "https://idp.example/userinfo"}),
            ),
            &[7; 32],
        )
        .unwrap();
        assert!(a.scopes.is_empty());

        let a = OAuthAction::compile(
            "openid-connect",
            &cfg(
                json!({"issuer_url": "https://idp.example", "client_id": "c",
                "client_secret": "s", "scopes": ["email"], "idle_session_duration": 60}),
            ),
            &[7; 32],
        )
        .unwrap();
        assert_eq!(a.scopes, ["openid", "email"]);
        assert_eq!(a.idle_timeout, Some(60));
        assert_eq!(a.kind.namespace(), "oidc");
    }

    #[test]
    fn refuses_bad_configs_with_clear_messages() {
        let base = || json!({"provider": "google", "client_id": "c", "client_secret": "s"});
        let with = |k: &str, v: Json| {
            let mut c = base();
            c[k] = v;
            c
        };
        let cases: Vec<(&str, Json, &str)> = vec![
            (
                "oauth",
                json!({"provider": "google"}),
                "`client_id` and `client_secret` are required",
            ),
            ("oauth", with("client_secret", json!("")), "are required"),
            (
                "oauth",
                with("provider", json!("myspace")),
                "unknown provider `myspace`",
            ),
            (
                "oauth",
                json!({"client_id": "c", "client_secret": "s"}),
                "`provider` is required",
            ),
            (
                "oauth",
                with("provider", json!("custom")),
                "`authorization_url` is required",
            ),
            (
                "oauth",
                with("token_url", json!("not a url")),
                "`token_url` is not a valid URL",
            ),
            (
                "oauth",
                with("token_url", json!("http://idp.example/t")),
                "must use `https://`",
            ),
            (
                "oauth",
                with("token_url", json!("ftp://idp.example/t")),
                "unsupported scheme",
            ),
            (
                "oauth",
                with("token_url", json!("https://u:p@idp.example/t")),
                "credentials",
            ),
            (
                "oauth",
                with("client_id", json!("${secrets.get('a','b')}")),
                "cannot interpolate",
            ),
            ("oauth", with("auth_id", json!("a b")), "`auth_id` `a b`"),
            (
                "oauth",
                with("scopes", json!("email")),
                "`scopes` must be a list",
            ),
            ("oauth", with("scopes", json!(["a b"])), "single words"),
            (
                "oauth",
                with("authz_url_params", json!({"state": "x"})),
                "cannot set `state`",
            ),
            (
                "oauth",
                with("idle_session_timeout", json!("soon")),
                "must be a duration",
            ),
            (
                "oauth",
                with("max_session_duration", json!("0s")),
                "at least one second",
            ),
            (
                "oauth",
                with("auth_cookie_domain", json!("localhost")),
                "not a domain name",
            ),
            (
                "oauth",
                with("allow_cors_preflight", json!("yes")),
                "must be a boolean",
            ),
            (
                "oauth",
                with("issuer_url", json!("https://i")),
                "unknown field `issuer_url`",
            ),
            (
                "openid-connect",
                json!({"client_id": "c", "client_secret": "s"}),
                "`issuer_url` is required",
            ),
            (
                "openid-connect",
                json!({"issuer_url": "https://i?x=1", "client_id": "c", "client_secret": "s"}),
                "query",
            ),
            (
                "openid-connect",
                json!({"issuer_url": "https://i", "client_id": "c", "client_secret": "s", "provider": "google"}),
                "unknown field `provider`",
            ),
            ("saml", base(), "not an OAuth action"),
        ];
        for (kind, c, want) in cases {
            let got = compile_err(kind, c.clone());
            assert!(got.contains(want), "{c}: {got}");
        }
        assert!(OAuthAction::compile("oauth", &ConfigValue::Null, &[0; 32]).is_err());
    }

    #[test]
    fn sessions_expire_by_age_and_idleness() {
        let s = Session {
            iat: 1000,
            seen: 1000,
            ..Session::default()
        };
        assert_eq!(
            standing(&s, 1000, None, None),
            Standing::Valid { touch: false }
        );
        assert_eq!(
            standing(&s, 1099, Some(100), None),
            Standing::Valid { touch: false }
        );
        assert_eq!(
            standing(&s, 1100, Some(100), None),
            Standing::MaxDurationReached
        );
        assert_eq!(
            standing(&s, 1029, None, Some(60)),
            Standing::Valid { touch: false }
        );
        assert_eq!(
            standing(&s, 1030, None, Some(60)),
            Standing::Valid { touch: true }
        );
        assert_eq!(standing(&s, 1060, None, Some(60)), Standing::TimedOut);
        let seen = Session {
            seen: 1050,
            ..s.clone()
        };
        assert_eq!(
            standing(&seen, 1100, None, Some(60)),
            Standing::Valid { touch: true }
        );
        assert_eq!(standing(&s, 900, None, None), Standing::Invalid);
        let backwards = Session { seen: 999, ..s };
        assert_eq!(standing(&backwards, 1000, None, None), Standing::Invalid);
    }

    fn action() -> OAuthAction {
        OAuthAction::compile(
            "openid-connect",
            &cfg(json!({"issuer_url": "https://idp.example", "client_id": "c", "client_secret": "s"})),
            &[7; 32],
        )
        .unwrap()
    }

    #[test]
    fn big_sessions_drop_tokens_to_fit_a_cookie() {
        let a = action();
        let site = Site {
            origin: "https://app.example".into(),
            attrs: CookieAttrs {
                secure: true,
                domain: None,
            },
        };
        let s = Session {
            sid: "s".into(),
            id: "u".into(),
            email: "a@example.com".into(),
            iat: unix_now(),
            seen: unix_now(),
            at: "a".repeat(1500),
            rt: "r".repeat(1500),
            idt: "i".repeat(1500),
            ..Session::default()
        };
        let c = a.session_set_cookie(&s, &site).unwrap();
        assert!(c.len() < 4096, "{}", c.len());
        let value = c.split(';').next().unwrap().split_once('=').unwrap().1;
        let back: Session = a.sealer.open("session", value).unwrap();
        assert_eq!((back.at.len(), back.rt.len(), back.idt.len()), (1500, 0, 0));
        assert_eq!(back.email, "a@example.com");
    }

    #[test]
    fn the_result_has_the_documented_variables() {
        let a = action();
        let s = Session {
            sid: "sid1".into(),
            id: "u1".into(),
            email: "a@example.com".into(),
            name: "Ann".into(),
            idt: "x.y.z".into(),
            exp: Some(1_719_243_000),
            ..Session::default()
        };
        let ActionOutcome::Continue {
            result: Some((ns, Value::Map(m))),
            ..
        } = a.continue_with(&s, false)
        else {
            panic!()
        };
        assert_eq!(ns, "oidc");
        let get = |k: &str| m.get(&Value::string(k)).cloned().unwrap();
        let Value::Map(id) = get("identity") else {
            panic!()
        };
        let field = |k: &str| match id.get(&Value::string(k)) {
            Some(Value::String(s)) => s.to_string(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(field("email"), "a@example.com");
        assert_eq!(field("current_session_id"), "sid1");
        assert_eq!(field("provider_user_id"), "u1");
        assert!(matches!(get("identity_token"), Value::String(t) if &*t == "x.y.z"));
        assert!(matches!(get("expires_at"), Value::String(t) if &*t == "2024-06-24T15:30:00Z"));
        assert!(matches!(get("user_info_refreshed"), Value::Bool(false)));
    }

    #[test]
    fn the_site_comes_from_the_host_and_the_endpoint_protocol() {
        let parts = |host: Option<&str>| {
            let mut b = http::Request::get("/p");
            if let Some(h) = host {
                b = b.header("host", h);
            }
            b.body(()).unwrap().into_parts().0
        };
        let a = action();
        let s = a
            .site(&parts(Some("App.Example:8443")), EndpointProto::Https)
            .unwrap();
        assert_eq!(s.origin, "https://app.example:8443");
        assert!(s.attrs.secure && s.attrs.domain.is_none());
        let s = a
            .site(&parts(Some("[::1]:80")), EndpointProto::Http)
            .unwrap();
        assert_eq!(s.origin, "http://[::1]:80");
        assert!(!s.attrs.secure);
        for bad in [None, Some("evil.example/x"), Some("a@b"), Some("")] {
            let e = a.site(&parts(bad), EndpointProto::Https).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, ERR_OAUTH_REQUEST),
                "{bad:?}"
            );
        }
        let shared = OAuthAction::compile(
            "openid-connect",
            &cfg(
                json!({"issuer_url": "https://idp.example", "client_id": "c",
                "client_secret": "s", "auth_cookie_domain": ".Example.com"}),
            ),
            &[7; 32],
        )
        .unwrap();
        for host in ["example.com", "a.example.com", "b.a.example.com:444"] {
            let s = shared
                .site(&parts(Some(host)), EndpointProto::Https)
                .unwrap();
            assert_eq!(s.attrs.domain.as_deref(), Some("example.com"), "{host}");
        }
        for host in ["badexample.com", "example.com.evil"] {
            let e = shared
                .site(&parts(Some(host)), EndpointProto::Https)
                .unwrap_err();
            assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR, "{host}");
            assert!(e.message.contains("`auth_cookie_domain`"), "{}", e.message);
        }
    }

    #[test]
    fn echoed_provider_words_are_tame() {
        assert_eq!(echo("access_denied"), "access_denied");
        assert_eq!(echo("a`b <script>\n"), "ab<script>");
        assert_eq!(echo(&"x".repeat(100)).len(), 64);
    }
}
