//! `oauth` and `openid-connect` end to end: a real edge, agent and upstream, a small identity
//! provider on loopback, and a cookie-keeping HTTP client that follows the login like a browser.

// A harness: any failure here should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::signature::EcdsaKeyPair;
use serde_json::json;
use support::*;
use tokio::net::TcpStream;
use wicket_runtime::agent::EndpointState;

/// The header naming the error code of an edge-generated error.
const ERROR_HEADER: &str = wicket_runtime::proto::meta::ERROR_CODE;
const CLIENT_ID: &str = "wicket-test-client";
const CLIENT_SECRET: &str = "s3cret-value";

// ---------------------------------------------------------------- edge, agent, upstream

/// The device: answers with the path it was asked for and the identity headers the policy added.
async fn upstream() -> SocketAddr {
    serve(|req: Request<Incoming>| async move {
        let h = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let body = format!(
            "upstream path={} email={} name={} id={}",
            req.uri().path_and_query().map_or("", |p| p.as_str()),
            h("x-user-email"),
            h("x-user-name"),
            h("x-user-id"),
        );
        Response::new(full(body))
    })
    .await
}

// ---------------------------------------------------------------- the identity provider

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdTokenMode {
    Good,
    WrongNonce,
    ForeignKey,
}

struct Grant {
    challenge: String,
    redirect_uri: String,
    nonce: String,
    email: String,
    used: bool,
}

struct IdpState {
    addr: SocketAddr,
    key: EcdsaKeyPair,
    foreign: EcdsaKeyPair,
    grants: HashMap<String, Grant>,
    next: u64,
    /// Who logs in at `/authorize`.
    user_email: String,
    mode: IdTokenMode,
    token_requests: u64,
    userinfo_requests: u64,
    /// Access tokens are no longer accepted.
    revoked: bool,
    /// The kid of `key`.
    kid: String,
    /// `expires_in` of access tokens.
    expires_in: u64,
    /// Refresh tokens issued and not yet used, by token: the user's e-mail address.
    refresh_tokens: HashMap<String, String>,
    refresh_grants: u64,
}

#[derive(Clone)]
struct Idp(Arc<Mutex<IdpState>>);

impl Idp {
    async fn start() -> Idp {
        let idp = Idp(Arc::new(Mutex::new(IdpState {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            key: es256_key(),
            foreign: es256_key(),
            grants: HashMap::new(),
            next: 0,
            user_email: "alice@example.com".into(),
            mode: IdTokenMode::Good,
            token_requests: 0,
            userinfo_requests: 0,
            revoked: false,
            kid: "k1".into(),
            expires_in: 3600,
            refresh_tokens: HashMap::new(),
            refresh_grants: 0,
        })));
        let served = idp.clone();
        let addr = serve(move |req| {
            let idp = served.clone();
            async move { idp.handle(req).await }
        })
        .await;
        idp.0.lock().unwrap().addr = addr;
        idp
    }

    fn url(&self) -> String {
        format!("http://{}", self.0.lock().unwrap().addr)
    }

    fn set_user(&self, email: &str) {
        self.0.lock().unwrap().user_email = email.into();
    }

    fn set_mode(&self, mode: IdTokenMode) {
        self.0.lock().unwrap().mode = mode;
    }

    fn token_requests(&self) -> u64 {
        self.0.lock().unwrap().token_requests
    }

    fn userinfo_requests(&self) -> u64 {
        self.0.lock().unwrap().userinfo_requests
    }

    fn set_expires_in(&self, secs: u64) {
        self.0.lock().unwrap().expires_in = secs;
    }

    fn refresh_grants(&self) -> u64 {
        self.0.lock().unwrap().refresh_grants
    }

    /// Refresh tokens are no longer accepted.
    fn revoke_refresh_tokens(&self) {
        self.0.lock().unwrap().refresh_tokens.clear();
    }

    fn revoke(&self) {
        self.0.lock().unwrap().revoked = true;
    }

    /// A new signing key under a new kid; the JWKS serves only the new one.
    fn rotate(&self) {
        let mut s = self.0.lock().unwrap();
        s.key = es256_key();
        s.kid = "k2".into();
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<TestBody> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let issuer = self.url();
        match parts.uri.path() {
            "/.well-known/openid-configuration" => json_res(
                StatusCode::OK,
                &json!({
                    "issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/authorize"),
                    "token_endpoint": format!("{issuer}/token"),
                    "userinfo_endpoint": format!("{issuer}/api/user"),
                    "jwks_uri": format!("{issuer}/jwks"),
                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                }),
            ),
            "/jwks" => {
                let s = self.0.lock().unwrap();
                json_res(
                    StatusCode::OK,
                    &json!({"keys": [es256_jwk(&s.key, &s.kid)]}),
                )
            }
            "/authorize" => self.authorize(&parts.uri),
            "/token" => self.token(&parts.headers, &body),
            "/api/user" | "/api/user/emails" => self.userinfo(&parts),
            _ => text(StatusCode::NOT_FOUND, "no such IdP page"),
        }
    }

    /// Approves every login at once: back to `redirect_uri` with a fresh code and the state.
    fn authorize(&self, uri: &http::Uri) -> Response<TestBody> {
        let q = form(uri.query().unwrap_or("").as_bytes());
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        if get("client_id") != CLIENT_ID
            || get("response_type") != "code"
            || get("code_challenge_method") != "S256"
            || get("code_challenge").len() != 43
            || get("state").is_empty()
        {
            return text(
                StatusCode::BAD_REQUEST,
                format!("bad authorize request {q:?}"),
            );
        }
        let mut s = self.0.lock().unwrap();
        s.next += 1;
        let code = format!("code-{}", s.next);
        let email = s.user_email.clone();
        s.grants.insert(
            code.clone(),
            Grant {
                challenge: get("code_challenge"),
                redirect_uri: get("redirect_uri"),
                nonce: get("nonce"),
                email,
                used: false,
            },
        );
        let mut back = url::Url::parse(&get("redirect_uri")).unwrap();
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &get("state"));
        let mut r = text(StatusCode::FOUND, "");
        r.headers_mut()
            .insert("location", back.as_str().parse().unwrap());
        r
    }

    /// Checks the client's secret, the one-time code and the PKCE verifier.
    fn token(&self, headers: &http::HeaderMap, body: &[u8]) -> Response<TestBody> {
        let form = form(body);
        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
        let mut s = self.0.lock().unwrap();
        s.token_requests += 1;
        let (id, secret) = client_credentials(headers, &form);
        let deny = |e: &str| json_res(StatusCode::BAD_REQUEST, &json!({"error": e}));
        if id != CLIENT_ID || secret != CLIENT_SECRET {
            return deny("invalid_client");
        }
        if get("grant_type") == "refresh_token" {
            let Some(email) = s.refresh_tokens.remove(&get("refresh_token")) else {
                return deny("invalid_grant");
            };
            s.refresh_grants += 1;
            s.next += 1;
            let rt = format!("rt-{}", s.next);
            s.refresh_tokens.insert(rt.clone(), email.clone());
            return json_res(
                StatusCode::OK,
                &json!({"access_token": format!("at:{email}"), "token_type": "Bearer",
                    "expires_in": s.expires_in, "refresh_token": rt}),
            );
        }
        if get("grant_type") != "authorization_code" {
            return deny("unsupported_grant_type");
        }
        let code = get("code");
        let verifier = get("code_verifier");
        let redirect_uri = get("redirect_uri");
        let Some(grant) = s.grants.get_mut(&code) else {
            return deny("invalid_grant");
        };
        if grant.used {
            return deny("invalid_grant");
        }
        grant.used = true;
        let challenge = pkce_challenge(&verifier);
        if challenge != grant.challenge || redirect_uri != grant.redirect_uri {
            return deny("invalid_grant");
        }
        let email = grant.email.clone();
        let nonce = grant.nonce.clone();
        let issuer = format!("http://{}", s.addr);
        s.next += 1;
        let rt = format!("rt-{}", s.next);
        s.refresh_tokens.insert(rt.clone(), email.clone());
        let mut res = json!({
            "access_token": format!("at:{email}"),
            "token_type": "Bearer",
            "expires_in": s.expires_in,
            "refresh_token": rt,
        });
        if !nonce.is_empty() {
            let claims = json!({
                "iss": issuer, "aud": CLIENT_ID, "sub": format!("sub-{email}"),
                "exp": now() + 300, "iat": now(), "email": email, "name": "Test User",
                "nonce": if s.mode == IdTokenMode::WrongNonce { "other".to_owned() } else { nonce },
            });
            let key = if s.mode == IdTokenMode::ForeignKey {
                &s.foreign
            } else {
                &s.key
            };
            res["id_token"] = json!(sign_es256(key, &s.kid, &claims));
        }
        json_res(StatusCode::OK, &res)
    }

    /// GitHub-shaped user info: no public e-mail, the address comes from `/user/emails`.
    fn userinfo(&self, parts: &http::request::Parts) -> Response<TestBody> {
        let revoked = {
            let mut s = self.0.lock().unwrap();
            s.userinfo_requests += 1;
            s.revoked
        };
        if revoked {
            return text(StatusCode::UNAUTHORIZED, "token revoked");
        }
        let Some(email) = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer at:"))
        else {
            return text(StatusCode::UNAUTHORIZED, "no token");
        };
        if parts.uri.path().ends_with("/emails") {
            return json_res(
                StatusCode::OK,
                &json!([
                    {"email": "old@elsewhere.test", "primary": false, "verified": true},
                    {"email": email, "primary": true, "verified": true},
                ]),
            );
        }
        json_res(
            StatusCode::OK,
            &json!({"id": 4242, "login": "octo", "name": null, "email": null, "sub": format!("sub-{email}")}),
        )
    }
}

// ---------------------------------------------------------------- the browser

/// A cookie-keeping client: `https://*.example.test` goes to the edge, `http://127.0.0.1:…` to
/// the identity provider.
#[derive(Clone)]
struct Browser {
    edge_https: SocketAddr,
    roots: rustls::RootCertStore,
    /// host → cookie name → value.
    jar: CookieJar,
}

impl Browser {
    fn new(edge_https: SocketAddr, roots: &rustls::RootCertStore) -> Browser {
        Browser {
            edge_https,
            roots: roots.clone(),
            jar: CookieJar::new(),
        }
    }

    fn cookie(&self, host: &str, name_prefix: &str) -> Option<(String, String)> {
        self.jar
            .get(host)?
            .iter()
            .find(|(k, _)| k.starts_with(name_prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
    }

    fn set(&mut self, host: &str, name: &str, value: &str) {
        self.jar
            .entry(host.to_owned())
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    /// One GET, no redirects followed.
    async fn get(&mut self, url: &str) -> Reply {
        self.request("GET", url, &[]).await
    }

    /// One request, no redirects followed.
    async fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
        let u = url::Url::parse(url).unwrap();
        let (host, req) = browser_request(&self.jar, method, &u, headers);
        let res = if u.scheme() == "https" {
            assert!(host.ends_with(".example.test"), "{url}");
            let tcp = within("connect", TcpStream::connect(self.edge_https))
                .await
                .unwrap();
            let spec = ClientSpec {
                alpn_h1: false,
                ..ClientSpec::new(&self.roots)
            };
            let tls = tls_handshake(tcp, &host, spec.config()).await.unwrap();
            exchange(TokioIo::new(tls), req).await.unwrap()
        } else {
            assert_eq!(host, "127.0.0.1", "{url}");
            let addr: SocketAddr = format!("{host}:{}", u.port().unwrap()).parse().unwrap();
            let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
            exchange(TokioIo::new(tcp), req).await.unwrap()
        };
        store_cookies(&mut self.jar, &host, &res);
        res
    }

    /// Follows redirects (at most 10); the final reply and every URL visited.
    async fn navigate(&mut self, url: &str) -> (Reply, Vec<String>) {
        let mut visited = vec![url.to_owned()];
        let mut current = url::Url::parse(url).unwrap();
        for _ in 0..10 {
            let r = self.get(current.as_str()).await;
            if !r.status.is_redirection() {
                return (r, visited);
            }
            current = current.join(r.header("location")).unwrap();
            visited.push(current.to_string());
        }
        panic!("redirect loop: {visited:?}");
    }
}

// ---------------------------------------------------------------- the world

struct World {
    stack: Stack,
    idp: Idp,
    browser: Browser,
}

const IDENTITY_HEADERS: &str = "  - actions:\n      - type: add-headers\n        config:\n          headers:\n            x-user-email: ${actions.ngrok.NS.identity.email}\n            x-user-name: ${actions.ngrok.NS.identity.name}\n            x-user-id: ${actions.ngrok.NS.identity.id}\n";

const DOMAIN_RULE: &str = "  - expressions:\n      - \"!actions.ngrok.NS.identity.email.endsWith('@example.com')\"\n    actions:\n      - type: deny\n        config:\n          status_code: 403\n";

/// An edge with endpoints behind logins at one IdP: `gh.example.test` (`oauth`, the `github`
/// preset pointed at the IdP), `short` (the same with a 3 s session), `idle` (4 s idle timeout),
/// `refresh` (user info re-read every second), `cors` (preflights let through, no domain rule),
/// `oidc` (`openid-connect`), `nodisc` (an issuer without a discovery document); plus `broken`,
/// whose `oauth` lacks a client secret.
async fn world() -> World {
    let idp = Idp::start().await;
    let up = upstream().await;
    let i = idp.url();
    let oauth = |extra: &str| {
        format!(
            "on_http_request:\n  - actions:\n      - type: oauth\n        config:\n          provider: github\n          client_id: {CLIENT_ID}\n          client_secret: {CLIENT_SECRET}\n          authorization_url: {i}/authorize\n          token_url: {i}/token\n          userinfo_url: {i}/api/user\n{extra}{}{}",
            DOMAIN_RULE.replace("NS", "oauth"),
            IDENTITY_HEADERS.replace("NS", "oauth")
        )
    };
    let oidc = format!(
        "on_http_request:\n  - actions:\n      - type: openid-connect\n        config:\n          issuer_url: {i}\n          client_id: {CLIENT_ID}\n          client_secret: {CLIENT_SECRET}\n          scopes: [openid, email]\n{}{}",
        DOMAIN_RULE.replace("NS", "oidc"),
        IDENTITY_HEADERS.replace("NS", "oidc")
    );
    let cors = format!(
        "on_http_request:\n  - actions:\n      - type: oauth\n        config:\n          provider: github\n          client_id: {CLIENT_ID}\n          client_secret: {CLIENT_SECRET}\n          authorization_url: {i}/authorize\n          token_url: {i}/token\n          userinfo_url: {i}/api/user\n          allow_cors_preflight: true\n{}",
        IDENTITY_HEADERS.replace("NS", "oauth")
    );
    let nodisc = format!(
        "on_http_request:\n  - actions:\n      - type: openid-connect\n        config:\n          issuer_url: http://{up}\n          client_id: {CLIENT_ID}\n          client_secret: {CLIENT_SECRET}\n"
    );
    let broken = "on_http_request:\n  - actions:\n      - type: oauth\n        config:\n          provider: google\n          client_id: only-an-id\n";
    let mut b = Stack::builder();
    for (name, policy) in [
        ("gh", oauth("")),
        ("short", oauth("          max_session_duration: 3s\n")),
        ("idle", oauth("          idle_session_timeout: 4s\n")),
        (
            "refresh",
            oauth("          userinfo_refresh_interval: 1s\n"),
        ),
        ("cors", cors),
        ("oidc", oidc),
        ("nodisc", nodisc),
        ("broken", broken.to_owned()),
    ] {
        b = b.policy_endpoint(
            name,
            &format!("https://{name}.example.test"),
            format!("http://{up}"),
            policy,
        );
    }
    let stack = b
        .edge_config(|cfg| cfg.metrics_listen = None)
        .allow_refused()
        .start()
        .await;
    let status = &stack.status;
    assert_bound(
        status,
        &["gh", "short", "idle", "refresh", "cors", "oidc", "nodisc"],
    );
    let browser = Browser::new(stack.https(), &stack.certs.roots);
    World {
        stack,
        idp,
        browser,
    }
}

/// Logs in at `host` starting from `path`; the final reply.
async fn login(b: &mut Browser, host: &str, path: &str) -> (Reply, Vec<String>) {
    b.navigate(&format!("https://{host}{path}")).await
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_login_reaches_the_upstream_with_the_identity_and_logout_ends_it() {
    let mut w = world().await;
    let b = &mut w.browser;
    let (r, visited) = login(b, "gh.example.test", "/reports?year=2026").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.text(),
        "upstream path=/reports?year=2026 email=alice@example.com name=octo id=4242"
    );
    // app → IdP authorize → callback → back to the original URL.
    assert_eq!(visited.len(), 4, "{visited:?}");
    assert!(visited[1].starts_with(&format!("{}/authorize?", w.idp.url())));
    assert!(visited[2].starts_with("https://gh.example.test/ngrok/oauth2/callback?code="));
    assert_eq!(visited[3], "https://gh.example.test/reports?year=2026");
    let authorize = url::Url::parse(&visited[1]).unwrap();
    let q: BTreeMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(
        q["redirect_uri"],
        "https://gh.example.test/ngrok/oauth2/callback"
    );
    assert_eq!(q["scope"], "read:user user:email");
    assert_eq!(q["code_challenge_method"], "S256");

    // The session needs no further trip to the IdP.
    let before = w.idp.token_requests();
    let r = b.get("https://gh.example.test/again").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("email=alice@example.com"), "{}", r.text());
    assert_eq!(w.idp.token_requests(), before);

    // A logout for another login (`auth_id`) is not this action's: it reaches the upstream.
    let r = b
        .get("https://gh.example.test/ngrok/logout?auth_id=other")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text()
            .starts_with("upstream path=/ngrok/logout?auth_id=other"),
        "{}",
        r.text()
    );

    // Logout clears the cookie; the next request goes back to the IdP.
    let r = b.get("https://gh.example.test/ngrok/logout").await;
    assert_eq!(r.status, StatusCode::OK);
    let cleared = r.set_cookies();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("wicket_session_") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert!(b.cookie("gh.example.test", "wicket_session_").is_none());
    let r = b.get("https://gh.example.test/again").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.header("location").starts_with(&w.idp.url()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_sealed_secure_http_only_and_lax() {
    let mut w = world().await;
    let b = &mut w.browser;
    let r = b.get("https://gh.example.test/").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let flow = r.set_cookies();
    assert_eq!(flow.len(), 1, "{flow:?}");
    for attr in [
        "Path=/",
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Max-Age=600",
    ] {
        assert!(flow[0].contains(attr), "{attr}: {}", flow[0]);
    }
    assert_eq!(r.header("cache-control"), "no-store");
    let (_, visited) = b.navigate(r.header("location")).await;
    assert!(visited.len() >= 2);
    let (_, session) = b.cookie("gh.example.test", "wicket_session_").unwrap();
    assert!(session.starts_with("v1."));
    // Nothing readable inside: the e-mail address is not in the (decoded) cookie.
    let raw = URL_SAFE_NO_PAD.decode(&session[3..]).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_rule_denies_users_outside_the_domain() {
    let mut w = world().await;
    w.idp.set_user("mallory@evil.test");
    let (r, _) = login(&mut w.browser, "gh.example.test", "/").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.text().contains("upstream"), "{}", r.text());
    // The same deny for the OpenID Connect endpoint.
    let (r, _) = login(&mut w.browser, "oidc.example.test", "/").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A user of the domain gets through.
    w.idp.set_user("bob@example.com");
    w.browser.jar.clear();
    let (r, _) = login(&mut w.browser, "gh.example.test", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("email=bob@example.com"), "{}", r.text());
}

/// Runs a login up to the IdP's answer: the callback URL, not yet visited.
async fn callback_url(b: &mut Browser, host: &str) -> String {
    let r = b.get(&format!("https://{host}/private")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let r = b.get(r.header("location")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    r.header("location").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_mismatch_missing_login_and_replayed_codes_fail() {
    let mut w = world().await;
    let b = &mut w.browser;

    // A callback whose state is not the login's.
    let cb = callback_url(b, "gh.example.test").await;
    let mut forged = url::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = forged.query_pairs().into_owned().collect();
    forged.query_pairs_mut().clear();
    for (k, v) in pairs {
        let v = if k == "state" { format!("{v}x") } else { v };
        forged.query_pairs_mut().append_pair(&k, &v);
    }
    let r = b.get(forged.as_str()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.header(ERROR_HEADER), "ERR_WICKET_4340");

    // The genuine callback still works, once.
    let saved = b.clone();
    let r = b.get(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.header("location"), "/private");

    // Replaying it with the login cookie of the time: the IdP refuses the used code.
    let mut replay = saved.clone();
    let r = replay.get(&cb).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.text().contains("invalid_grant"), "{}", r.text());
    assert!(
        replay
            .cookie("gh.example.test", "wicket_session_")
            .is_none()
    );

    // Replaying it after the login finished: no login in progress.
    let r = b.get(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    // A callback with no login cookie at all (another browser).
    let mut stranger = Browser {
        jar: CookieJar::new(),
        ..saved
    };
    let r = stranger.get(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_foreign_cookies_go_back_to_the_login() {
    let mut w = world().await;
    let b = &mut w.browser;
    let (r, _) = login(b, "gh.example.test", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    let (name, value) = b.cookie("gh.example.test", "wicket_session_").unwrap();

    // Flip one byte of the sealed value.
    let mut raw = URL_SAFE_NO_PAD.decode(&value[3..]).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x20;
    b.set(
        "gh.example.test",
        &name,
        &format!("v1.{}", URL_SAFE_NO_PAD.encode(&raw)),
    );
    let r = b.get("https://gh.example.test/x").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.header("location").starts_with(&w.idp.url()));

    // Garbage.
    b.set("gh.example.test", &name, "not-a-session");
    let r = b.get("https://gh.example.test/x").await;
    assert_eq!(r.status, StatusCode::FOUND);

    // A valid session of another login (the OpenID Connect endpoint: another key) under this
    // name. (Endpoints with the same login — provider, client id, `auth_id` — share sessions,
    // which is what `auth_cookie_domain` is for.)
    let (r, _) = login(b, "oidc.example.test", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    let (_, other) = b.cookie("oidc.example.test", "wicket_session_").unwrap();
    b.set("gh.example.test", &name, &other);
    let r = b.get("https://gh.example.test/x").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.header("location").starts_with(&w.idp.url()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_logs_in_again() {
    let mut w = world().await;
    let b = &mut w.browser;
    let (r, _) = login(b, "short.example.test", "/a").await;
    assert_eq!(r.status, StatusCode::OK);
    let (_, cookie) = b.cookie("short.example.test", "wicket_session_").unwrap();
    let r = b.get("https://short.example.test/b").await;
    assert_eq!(r.status, StatusCode::OK);
    // Past max_session_duration (3 s; timestamps have second resolution).
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let r = b.get("https://short.example.test/c").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert!(r.header("location").starts_with(&w.idp.url()));
    // Following the login gives a new session.
    let (r, _) = b.navigate("https://short.example.test/c").await;
    assert_eq!(r.status, StatusCode::OK);
    let (_, renewed) = b.cookie("short.example.test", "wicket_session_").unwrap();
    assert_ne!(cookie, renewed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirect_attempts_stay_on_the_origin() {
    let mut w = world().await;
    let b = &mut w.browser;
    for (target, landing) in [
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("/%09/evil.example", "/%09/evil.example"),
        ("/inside?q=1", "/inside?q=1"),
    ] {
        b.jar.clear();
        let start = format!(
            "https://gh.example.test/ngrok/login?redirect_path={}",
            url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        );
        let (r, visited) = b.navigate(&start).await;
        assert_eq!(r.status, StatusCode::OK, "{target}: {}", r.text());
        let last = visited.last().unwrap();
        assert_eq!(
            last,
            &format!("https://gh.example.test{landing}"),
            "{target}: {visited:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_connect_verifies_the_id_token() {
    let mut w = world().await;
    let (r, visited) = login(&mut w.browser, "oidc.example.test", "/home").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.text(),
        "upstream path=/home email=alice@example.com name=Test User id=sub-alice@example.com"
    );
    let authorize = url::Url::parse(&visited[1]).unwrap();
    let q: BTreeMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(q["scope"], "openid email");
    assert_eq!(q["nonce"].len(), 43);

    for (mode, why) in [
        (IdTokenMode::WrongNonce, "`nonce`"),
        (IdTokenMode::ForeignKey, "signature"),
    ] {
        w.idp.set_mode(mode);
        w.browser.jar.clear();
        let (r, _) = login(&mut w.browser, "oidc.example.test", "/home").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{mode:?}: {}", r.text());
        assert!(r.text().contains(why), "{mode:?}: {}", r.text());
        assert!(
            w.browser
                .cookie("oidc.example.test", "wicket_session_")
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_error_refuses_the_endpoint_at_bind_time() {
    let w = world().await;
    match w.stack.status.endpoints.get("broken") {
        Some(EndpointState::Refused(refusal)) => {
            let all = format!("{refusal:?}");
            assert!(all.contains("client_secret"), "{all}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_stays_alive_while_used_and_ends_when_left_alone() {
    let mut w = world().await;
    let b = &mut w.browser;
    let (r, _) = login(b, "idle.example.test", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    // Used within the 4 s idle timeout (but past half of it): the request reaches the upstream
    // and the cookie's last-seen time is rewritten on the upstream's own response — for a `GET`
    // and for a `POST` alike.
    for method in ["GET", "POST"] {
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let r = b
            .request(method, "https://idle.example.test/p?q=1", &[])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{method}: {}", r.text());
        assert!(r.text().starts_with("upstream path=/p?q=1"), "{}", r.text());
        let cookies = r.set_cookies();
        assert_eq!(cookies.len(), 1, "{method}: {cookies:?}");
        assert!(cookies[0].starts_with("wicket_session_"), "{cookies:?}");
    }
    // Used again before half the timeout has passed: nothing to rewrite.
    let r = b.get("https://idle.example.test/p").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    // Left alone past the timeout: back to the IdP.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let r = b.get("https://idle.example.test/p").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.header("location").starts_with(&w.idp.url()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_info_is_refreshed_and_a_revoked_token_ends_the_session() {
    let mut w = world().await;
    let b = &mut w.browser;
    let (r, _) = login(b, "refresh.example.test", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = w.idp.userinfo_requests();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (r, visited) = b.navigate("https://refresh.example.test/r").await;
    assert_eq!(r.status, StatusCode::OK, "{visited:?}");
    assert!(r.text().contains("email=alice@example.com"), "{}", r.text());
    assert!(w.idp.userinfo_requests() > seen);
    // The provider stops accepting the access token: the next refresh sends the user to log in.
    w.idp.revoke();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = b.get("https://refresh.example.test/r").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert!(r.header("location").starts_with(&w.idp.url()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_provider_keys_are_fetched_again() {
    let mut w = world().await;
    let (r, _) = login(&mut w.browser, "oidc.example.test", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    // The JWKS is cached; the provider now signs with a key under a new kid.
    w.idp.rotate();
    w.browser.jar.clear();
    let (r, _) = login(&mut w.browser, "oidc.example.test", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_pass_only_where_allowed() {
    let mut w = world().await;
    let b = &mut w.browser;
    let preflight = [
        ("origin", "https://other.example.test"),
        ("access-control-request-method", "POST"),
    ];
    let r = b
        .request("OPTIONS", "https://cors.example.test/api", &preflight)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.text().starts_with("upstream path=/api email= "),
        "{}",
        r.text()
    );
    // Not a preflight (no requested method): login.
    let r = b
        .request("OPTIONS", "https://cors.example.test/api", &preflight[..1])
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    // An endpoint without `allow_cors_preflight`: login.
    let r = b
        .request("OPTIONS", "https://gh.example.test/api", &preflight)
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_without_discovery_fails_closed() {
    let mut w = world().await;
    let r = w.browser.get("https://nodisc.example.test/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert_eq!(r.header(ERROR_HEADER), "ERR_WICKET_4344");
    assert!(
        r.text().contains("no valid discovery document"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("upstream path"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_started_in_several_tabs_all_finish() {
    let mut w = world().await;
    let b = &mut w.browser;
    // Three tabs hit the endpoint before any login finishes.
    let mut at_idp = Vec::new();
    for tab in ["/one", "/two", "/three"] {
        let r = b.get(&format!("https://gh.example.test{tab}")).await;
        assert_eq!(r.status, StatusCode::FOUND);
        at_idp.push((tab, r.header("location").to_owned()));
    }
    let logins = b
        .jar
        .get("gh.example.test")
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("wicket_login_"))
        .count();
    assert_eq!(logins, 3);
    // They come back in another order; each lands where it started.
    at_idp.reverse();
    for (tab, idp_url) in at_idp {
        let r = b.get(&idp_url).await;
        let r = b.get(r.header("location")).await;
        assert_eq!(r.status, StatusCode::FOUND, "{tab}: {}", r.text());
        assert_eq!(r.header("location"), tab);
    }
    assert!(
        !b.jar["gh.example.test"]
            .keys()
            .any(|k| k.starts_with("wicket_login_")),
        "{:?}",
        b.jar
    );
    let r = b.get("https://gh.example.test/one").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_renewed_with_the_refresh_token() {
    let mut w = world().await;
    w.idp.set_expires_in(1);
    let b = &mut w.browser;
    let (r, _) = login(b, "gh.example.test", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    // Past the token's expiry: renewed on the way, the cookie rewritten on the upstream's
    // response (no redirect).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = b.get("https://gh.example.test/later").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("email=alice@example.com"), "{}", r.text());
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("wicket_session_")),
        "{:?}",
        r.set_cookies()
    );
    assert!(w.idp.refresh_grants() >= 1);
    // The provider no longer accepts the refresh token: log in again.
    w.idp.revoke_refresh_tokens();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = b.get("https://gh.example.test/later").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert!(r.header("location").starts_with(&w.idp.url()));
}
