//! `jwt-validation` with JWKS URLs: a JWKS server on loopback serving ring-generated RSA, EC
//! and Ed25519 keys, tokens signed in the tests, checked through the real edge, agent and
//! upstream, and at the action level for what the policy schema does not expose (tokens in
//! cookies and query strings, short cache lifetimes).

// Test code: failures should be loud.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use tokio::net::TcpListener;
use wicket_engine::compile::ir::ConfigValue;
use wicket_runtime::actions::jwks::{CachePolicy, JwksAction};
use wicket_runtime::actions::{ActionEnv, ActionOutcome, ExternalAction, RequestCx};
use wicket_runtime::policy_hook::ConnInfo;
use wicket_runtime::proto::control::EndpointProto;

mod support;
use support::*;

/// Serves a synchronous `handler` on 127.0.0.1:0.
async fn serve_fn<F>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Response<TestBody> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    serve(move |req| {
        let res = handler(req);
        async move { res }
    })
    .await
}

/// The upstream: counts requests, echoes `x-jwt-sub`.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let addr = serve_fn(move |req| {
        h.fetch_add(1, Ordering::SeqCst);
        let sub = req.headers().get("x-jwt-sub").cloned();
        let mut res = Response::new(full("upstream"));
        if let Some(sub) = sub {
            res.headers_mut().insert("x-jwt-sub", sub);
        }
        res
    })
    .await;
    (addr, hits)
}

/// A JWKS server whose key set and `Cache-Control` the test changes; counts fetches.
struct JwksServer {
    addr: SocketAddr,
    keys: Arc<Mutex<serde_json::Value>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: serde_json::Value, cache_control: &'static str) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (k, f) = (keys.clone(), fetches.clone());
        let addr = serve_fn(move |_req| {
            f.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({"keys": *k.lock().unwrap()}).to_string();
            Response::builder()
                .header("content-type", "application/jwk-set+json")
                .header("cache-control", cache_control)
                .body(full(body))
                .unwrap()
        })
        .await;
        Self {
            addr,
            keys,
            fetches,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

// ------------------------------------------------------------------ keys and tokens

/// A 2048-bit RSA test key (PKCS#8 DER, base64), generated once with OpenSSL for these tests
/// (ring does not generate RSA keys).
const RSA_PKCS8: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDemk0Dgnd9H5P2f2PQ6GWKOdlhrBlzWLjF74vsSFOKZiqSmci1ZS9JInGfYuZuqu0tcorVzflIhtDl5nyGn+rSHyoFvHb1fPFv9S0r0U67SWDae/XOV1s/GgQ+LSTup3xO0SHUUq4PwTi9QVGrBxYklSmhAswi/yeOeUVX3NcCm60ZHQo8evizhKZ7BihI6hY2nab+8ieMIGpFoIzj0QcpiKX2+GgIXS4itBAsth4b56URilx2Cf0y94A7FIQRXVWtR9UZmyqE35kr1pbBSA9enm1qp9nbChF/r3uAtuW83n44i3jwB91MXohQITVaJKxxAryHfR95NFm6KRQvh7+bAgMBAAECggEAbtbk/xjhF2/4VHZlBLobCUM5zw0LFSi5xHE9OldfJZwumZWyX0Q1UdSxP9xWggdhFs6ge8pWVHswnDDyk3QgUCUNXxLTJvRiIc2ygs1zRwVIETJFGEveFuME9tKyv5Ss7G/syNSscBLVhkL2f9ME/w04z7/dVpW3JBWVZiUD+HsOz90iCYfCjTXbFfvCwZWQ9oaGOUE0kRode9WKiGxMGUaDErbI8PW++sW6BiIcaLwUShYqJV2ZQerQg7q47sB/CG6mY3Jmxan3bZmEgWzqIjTXpEXc5BEYmJkH7PevXO9CyQ00bpXuzcrdFaNULf7dlLCYuyL+AJRg44p7XnnV6QKBgQD2otLPHQ0S0caYZ2570Pnb4lOGKZ14Y3V2CjeDUhh55Bg6KMdDOb1KnappTi9Ox6GKnJN/YTMf4A42Rhy0FEbPqr0SsY8SDtO71QeVNzN2/c6vwJU4RSUgJe1zRx4HfazcsNtJ4jegGYdxh4V/Nd2r4nzWZwqBKGDI3bX3DhSi6QKBgQDnDeLR2alywe6Q1lYinFAWtmcD6ijgI+eMNGOOCAQeOLzA6dWwrzVBwsOVGf9/AIx+7P0DIA0+pObwm0tpKUl0Wv8H2V15K0pAMlN+lI/ZvMIfjXdW3fA7+l7NIgu3KZSAwV5DXbwdHW0V0JRSr1ggiELqYHr03U2DA/Qw84QT4wKBgQCwPVOkul6wNwTRvP9fLMqOzKDguvYSpAe4jL50cYKZ/1ssnB0fta/FFPtD+qGlitOtiAuCN4Pf4CxnrhwutlqPZLNtG0JgJgY5L5YWk3aMLfu27Uf0CLzpxxBxkr0rnyuaHCrnFean2fZGMxA7AdPgUpzgXItOFftrLbssynwGmQKBgDEJdGsfK+RMHmqk4rEDxcecPK7LApPXauwJrltVfjI/zmeO+Sg/dykWwdWiJ+R3ZFoHyAbixYzXCKBmBRIzjgBg06GB02HE+0Q2qhvCQelvMy/pITvRbIv+LiKRKDVeYMMWxv+7JBJ1zVIE64XE6wo0gScnBNF1Kl809p1xAUYLAoGAdpjsD8GAhN0Sv0J2tJJm4Xe15So9Scns0jWzVyxUQawtzA6oJHFnO91qYZDZGb2PE4jYFzHbyEA+gWF1Ti7zb2JUS39u4Wd7N4YXAG6IWcVsLXevHDAjc6R+ywlzfcgQ7YZBawCFDaSs1M0IOr3tBVhyOn9pRtAj5taOqUvGAOc=";
/// A second one, for rotation.
const RSA2_PKCS8: &str = "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCuEeAns+h2KhbfMGHA7fFMrkkTAXjow5wkmkcxNtFTKcqLrI/IGqldjW/3WiIVDhILC3CucaV7xetj2GfVx1cezP84mDc3rf6C2eXNAg925i/r3jZ9yU5moW5TzXMzc9zfm/s0UtpdN6/3y1hGKhVTtTdqOluhxuvPxs+cqkWb1VpdJSFsT6ud39twUfGsi8FLsfn39ARP7Uzpf8N4tp42l5ram/CSrvJv8zKgATiKgKU7QWG7N5DEWETsyN6AdyMdM0T5g4hde9RVzSgsD6kj93seFIvcLndRoHAceQq3/0ZcJ05i7LYCwixsbeIbOs57kNhWXWEnG9ygTZpUFv5dAgMBAAECggEAAxTyI1HPzLPFduS45L0LUVO7aHiiTUcVTx9juxVtrFH1Mfbd25zMbdZKURZ8u8mySRUseAvI2PTYMr4K/8gJNoewZxSboA+jdDaeZAkXmmYytM0/QrsOX8ow4ii+uhgti2nydYRkzrl+X8RvLVxv+mzr0vFYj15hudDnx3rLEIC1gO4SjV5A5jP/uOS8IP0+h+f4/bnrfYAgzVSk/SAfYuG+4ctTX8k7xMnVDpaG1o3FgoAcFKSOtynsvGbEbMcd1VzNooSXBrI9MQvlvlopUwnPpVHntx+8YbIbeBCIA8NIx9ycuEQXF/359YX5G3ht9l/eRy9a0t1LUCdZSPl98wKBgQDk434daulK8r0OjrPHzFiPPeVy5JCsXLRqbn5XIhhw3h4fdCHtzrMfdVI2UkU/FHYzh2EPmAz3n74GbrUiWFUgr1OEA3ypfaEwJJDXKEENnPRibS+2PwRPfnfIsGd+tPliKtBMy0qSdENlywLtW5covbViwtrsoBV+yJ8PCiTeHwKBgQDCsCHB6sMBoSnr0NCpVHUMxybPpF0B/LSSHPYwT5PCvCY5KFhC0AdOmDn7994fZGNYVglzcPmggeYvmBEgLn//Gi4UM3exQCr59JYMyMln4Jpo5/l/+uDLQzLPlV7zDGwUK4+UmslEFO7pgzpo/YTAakwDsiuXGKkWi6kFDQMcAwKBgAVTedrLYxRYY6fUEEDk82aZ5R3wTaGFIrmbSptScsklkgPfWu7CsY5Y14nmDjBylHGMg+it/BdDA1P4/YQIFCsHiWT4A82Z28dYAnrPN/xOG62yprqR6tLCuZzU5gOfyHHNVz2COYEA7ZSPzciiKflLuM3MhPWeoAFsP69E6Ci3AoGBAKjB1AErZe27rYLjdnvQ4cU5u8KxTo2yZzNgN2aZFBPw05EoD5maiTrvaROoP7omYpbnvTl77GXdM5J91hp3NCwEnXyVQGM8pAQWpxpd0XdhkXbt3a+537FRhnG5oJw9YFH7kHHX2i5RluaDAdaQKso/WbS6dF582dTZKqFeLhvRAoGBANNTav8yaMUd+UC5Du4KTmQ6GmK04q2h/6Ts5C+UXELg77b65oeoNAZ5VFdmtiNX3XUonhQS3xyZqQT2QGXPGMYje+1jJVmD5vrraTkW3pptwRxubCXJTz+5lRmhm4dYMJfr3hR67D/x3vgi2FD2TjTWSwqp15gly4pvtxl2/auU";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Keys {
    rsa: RsaKeyPair,
    rsa2: RsaKeyPair,
    ec: EcdsaKeyPair,
    ed: Ed25519KeyPair,
}

impl Keys {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let der = |t: &str| base64::engine::general_purpose::STANDARD.decode(t).unwrap();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
            .unwrap();
        Self {
            rsa: RsaKeyPair::from_pkcs8(&der(RSA_PKCS8)).unwrap(),
            rsa2: RsaKeyPair::from_pkcs8(&der(RSA2_PKCS8)).unwrap(),
            ec,
            ed,
        }
    }

    fn rsa_jwk(pair: &RsaKeyPair, kid: &str) -> serde_json::Value {
        let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&c.n), "e": b64(&c.e)})
    }

    /// The published set: RSA `r1`, EC `e1`, Ed25519 `d1`.
    fn jwks(&self) -> serde_json::Value {
        let p = self.ec.public_key().as_ref();
        serde_json::json!([
            Self::rsa_jwk(&self.rsa, "r1"),
            {"kty": "EC", "crv": "P-256", "kid": "e1", "x": b64(&p[1..33]), "y": b64(&p[33..])},
            {"kty": "OKP", "crv": "Ed25519", "kid": "d1", "x": b64(self.ed.public_key().as_ref())},
        ])
    }

    fn sign(&self, alg: &str, kid: &str, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": alg, "typ": "JWT", "kid": kid});
        let signing = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match (alg, kid) {
            ("RS256", _) => {
                let pair = if kid == "r2" { &self.rsa2 } else { &self.rsa };
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    signing.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
            ("ES256", _) => self
                .ec
                .sign(&rng, signing.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            ("EdDSA", _) => self.ed.sign(signing.as_bytes()).as_ref().to_vec(),
            ("HS256", _) => {
                // Keyed with the RSA public key's bytes: the algorithm-confusion attack.
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.rsa.public().as_ref());
                ring::hmac::sign(&key, signing.as_bytes()).as_ref().to_vec()
            }
            ("none", _) => Vec::new(),
            other => panic!("no signer for {other:?}"),
        };
        format!("{signing}.{}", b64(&sig))
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Valid claims, with `extra` merged in.
fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({
        "iss": "https://issuer.test", "aud": ["other", "api"], "sub": "alice",
        "iat": now(), "exp": now() + 300,
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn policy(jwks_url: &str) -> String {
    format!(
        r#"on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer:
            allow_list:
              - value: https://issuer.test
          audience:
            allow_list:
              - value: api
          http:
            tokens:
              - type: jwt
                method: header
                name: Authorization
                prefix: "Bearer "
          jws:
            allowed_algorithms: [RS256, ES256, EdDSA, HS256]
            keys:
              sources:
                additional_jkus:
                  - {jwks_url}
      - type: add-headers
        config:
          headers:
            x-jwt-sub: "${{actions.ngrok.jwt_validation.tokens[0].payload.sub}}"
"#
    )
}

fn assert_refused(r: &Reply, code: &str, case: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{case}");
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer error=\"invalid_token\"",
        "{case}"
    );
    assert_eq!(r.header("wicket-error-code"), code, "{case}");
}

// ------------------------------------------------------------------ through the edge

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_validation_through_the_edge() {
    let keys = Keys::new();
    let jwks = JwksServer::start(keys.jwks(), "public, max-age=300").await;
    let rotating = JwksServer::start(
        serde_json::json!([Keys::rsa_jwk(&keys.rsa, "r1")]),
        "max-age=300",
    )
    .await;
    let dead = dead_port().await;
    let (up, hits) = upstream().await;
    let stack = policy_stack(
        up,
        &[
            ("api", policy(&jwks.url())),
            ("rot", policy(&rotating.url())),
            ("down", policy(&format!("http://{dead}/jwks"))),
        ],
    )
    .await;
    let http = stack.http();
    let bearer = |t: &str| format!("Bearer {t}");
    let api = |token: String| async move {
        http_get(http, "api.example.test", "/", &[("authorization", &token)]).await
    };

    // Valid tokens of each key type reach the upstream; the claims are result variables.
    for (alg, kid) in [("RS256", "r1"), ("ES256", "e1"), ("EdDSA", "d1")] {
        let r = api(bearer(&keys.sign(
            alg,
            kid,
            &claims(serde_json::json!({"sub": alg})),
        )))
        .await;
        assert_eq!(r.status, StatusCode::OK, "{alg}");
        assert_eq!(r.header("x-jwt-sub"), alg);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(
        jwks.fetches(),
        1,
        "one fetch for three requests (max-age=300)"
    );

    // Refusals: 401 with the challenge and the error code, never reaching the upstream.
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            keys.sign("none", "r1", &claims(serde_json::json!({}))),
            "ERR_NGROK_3403",
        ),
        (
            "HS256 keyed with the RSA public key",
            keys.sign("HS256", "r1", &claims(serde_json::json!({}))),
            "ERR_NGROK_3403",
        ),
        (
            "expired",
            keys.sign(
                "RS256",
                "r1",
                &claims(serde_json::json!({"exp": now() - 3600})),
            ),
            "ERR_NGROK_3403",
        ),
        (
            "not valid yet",
            keys.sign(
                "ES256",
                "e1",
                &claims(serde_json::json!({"nbf": now() + 3600})),
            ),
            "ERR_NGROK_3403",
        ),
        (
            "wrong issuer",
            keys.sign(
                "RS256",
                "r1",
                &claims(serde_json::json!({"iss": "https://issuer.test/"})),
            ),
            "ERR_NGROK_3403",
        ),
        (
            "wrong audience",
            keys.sign("EdDSA", "d1", &claims(serde_json::json!({"aud": "web"}))),
            "ERR_NGROK_3403",
        ),
        (
            "expired beyond the 60 s skew",
            keys.sign(
                "RS256",
                "r1",
                &claims(serde_json::json!({"exp": now() - 75})),
            ),
            "ERR_NGROK_3403",
        ),
        (
            "nbf beyond the 60 s skew",
            keys.sign(
                "RS256",
                "r1",
                &claims(serde_json::json!({"nbf": now() + 75})),
            ),
            "ERR_NGROK_3403",
        ),
        (
            "oversized",
            keys.sign(
                "RS256",
                "r1",
                &claims(serde_json::json!({"pad": "x".repeat(20_000)})),
            ),
            "ERR_NGROK_3416",
        ),
        (
            "malformed base64",
            "e30.!!!.e30".to_owned(),
            "ERR_NGROK_3416",
        ),
        (
            "payload not JSON",
            format!(
                "{}.{}.{}",
                b64(br#"{"alg":"RS256"}"#),
                b64(b"not json"),
                b64(b"sig")
            ),
            "ERR_NGROK_3416",
        ),
    ];
    for (case, token, code) in &cases {
        let r = api(bearer(token)).await;
        assert_refused(&r, code, case);
    }
    let r = http_get(http, "api.example.test", "/", &[]).await;
    assert_refused(&r, "ERR_NGROK_3406", "no token");
    let r = http_get(
        http,
        "api.example.test",
        "/",
        &[("authorization", "Basic abc")],
    )
    .await;
    assert_refused(&r, "ERR_NGROK_3406", "no Bearer prefix");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "no refused request reached the upstream"
    );

    // Skew boundary, inside: 45 s past `exp` and 45 s before `nbf` are accepted.
    for extra in [
        serde_json::json!({"exp": now() - 45}),
        serde_json::json!({"nbf": now() + 45}),
    ] {
        let r = api(bearer(&keys.sign("RS256", "r1", &claims(extra.clone())))).await;
        assert_eq!(r.status, StatusCode::OK, "{extra}");
    }
    assert_eq!(jwks.fetches(), 1, "known kids never refetch");

    // An unknown kid refetches once, then is refused; a second one within 30 s does not
    // refetch.
    let stranger = keys.sign("RS256", "zz", &claims(serde_json::json!({})));
    assert_refused(
        &api(bearer(&stranger)).await,
        "ERR_NGROK_3403",
        "unknown kid",
    );
    assert_eq!(jwks.fetches(), 2);
    assert_refused(
        &api(bearer(&stranger)).await,
        "ERR_NGROK_3403",
        "unknown kid again",
    );
    assert_eq!(
        jwks.fetches(),
        2,
        "refetches for unknown kids are rate limited"
    );

    // Rotation: a kid published after the first fetch is accepted after one refetch.
    let r = http_get(
        http,
        "rot.example.test",
        "/",
        &[(
            "authorization",
            &bearer(&keys.sign("RS256", "r1", &claims(serde_json::json!({})))),
        )],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(rotating.fetches(), 1);
    rotating
        .keys
        .lock()
        .unwrap()
        .as_array_mut()
        .unwrap()
        .push(Keys::rsa_jwk(&keys.rsa2, "r2"));
    let rotated = bearer(&keys.sign(
        "RS256",
        "r2",
        &claims(serde_json::json!({"sub": "rotated"})),
    ));
    let r = http_get(
        http,
        "rot.example.test",
        "/",
        &[("authorization", &rotated)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "the new key is fetched");
    assert_eq!(r.header("x-jwt-sub"), "rotated");
    assert_eq!(rotating.fetches(), 2);
    let r = http_get(
        http,
        "rot.example.test",
        "/",
        &[("authorization", &rotated)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(rotating.fetches(), 2, "and cached");

    // The JWKS server down: fail closed with 502 ERR_NGROK_3422, not the upstream; a
    // request without a token is still a plain 401.
    let before = hits.load(Ordering::SeqCst);
    let valid = bearer(&keys.sign("RS256", "r1", &claims(serde_json::json!({}))));
    let r = http_get(http, "down.example.test", "/", &[("authorization", &valid)]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("wicket-error-code"), "ERR_NGROK_3422");
    let r = http_get(http, "down.example.test", "/", &[]).await;
    assert_refused(&r, "ERR_NGROK_3406", "no token, JWKS down");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "nothing reached the upstream"
    );
}

/// A token in the request body (`method: body`): read from JSON and form bodies at the edge,
/// and the body reaches the upstream as it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_request_body_through_the_edge() {
    let keys = Keys::new();
    let jwks = JwksServer::start(keys.jwks(), "max-age=300").await;
    // The upstream echoes the body it got and the subject the policy added.
    let (up, _) = echo_upstream("x-jwt-sub").await;
    let policy = format!(
        r#"on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer:
            allow_list:
              - value: https://issuer.test
          http:
            tokens:
              - type: id_token
                method: body
                name: id_token
          jws:
            allowed_algorithms: [ES256]
            keys:
              sources:
                additional_jkus:
                  - {}
      - type: add-headers
        config:
          headers:
            x-jwt-sub: "${{actions.ngrok.jwt_validation.tokens[0].payload.sub}}"
"#,
        jwks.url()
    );
    let stack = policy_stack(up, &[("form", policy)]).await;
    let http = stack.http();
    let token = keys.sign("ES256", "e1", &claims(serde_json::json!({"sub": "dave"})));
    let post = |ct: &'static str, body: String| async move {
        http1(
            http,
            "POST",
            "form.example.test",
            "/login",
            &[("content-type", ct)],
            body,
        )
        .await
    };

    let json = format!(r#"{{"user":"dave","ID_Token":"{token}"}}"#);
    let r = post("application/json", json.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-jwt-sub"), "dave");
    assert_eq!(r.text(), json, "the upstream got the body as sent");
    let form = format!("user=dave&id_token={token}");
    let r = post(
        "application/x-www-form-urlencoded; charset=utf-8",
        form.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), form);

    // No token where it must be: a GET, a body of another type, the field absent.
    let r = http_get(http, "form.example.test", "/login", &[]).await;
    assert_refused(&r, "ERR_NGROK_3406", "GET");
    assert_refused(
        &post("text/plain", json.clone()).await,
        "ERR_NGROK_3406",
        "text/plain",
    );
    assert_refused(
        &post("application/json", r#"{"user":"dave"}"#.into()).await,
        "ERR_NGROK_3406",
        "no field",
    );
    // A valid signature by an algorithm the policy does not allow.
    let rs = keys.sign("RS256", "r1", &claims(serde_json::json!({"sub": "dave"})));
    assert_refused(
        &post("application/json", format!(r#"{{"id_token":"{rs}"}}"#)).await,
        "ERR_NGROK_3403",
        "algorithm not allowed",
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_jwks_url_refuses_the_bind() {
    let (up, _) = upstream().await;
    let stack = Stack::builder()
        .policy_endpoint(
            "bad",
            "http://bad.example.test",
            format!("http://{up}"),
            policy("http://idp.example/jwks"),
        )
        .allow_refused()
        .start()
        .await;
    let state = format!("{:?}", stack.status.endpoints.get("bad"));
    assert!(state.contains("https://"), "{state}");
}

// ------------------------------------------------------------------ at the action level

fn conn() -> ConnInfo {
    ConnInfo {
        client_addr: "127.0.0.1:50000".parse().unwrap(),
        local_addr: "127.0.0.1:80".parse().unwrap(),
        proto: EndpointProto::Http,
        sni: None,
        endpoint_id: "ep_test".into(),
        endpoint_url: "http://api.example.test".into(),
        tls: None,
    }
}

async fn run(action: &JwksAction, env: &ActionEnv, req: Request<()>) -> (StatusCode, String) {
    let (parts, ()) = req.into_parts();
    let mut body = wicket_runtime::body::empty();
    let conn = conn();
    let state = wicket_engine::program::PhaseState::default();
    let cx = RequestCx {
        parts: &parts,
        body: &mut body,
        conn: &conn,
        env,
        state: &state,
    };
    match within("action", action.run(cx)).await {
        Ok(ActionOutcome::Continue {
            result: Some((ns, v)),
            ..
        }) => {
            assert_eq!(ns, "jwt_validation");
            (StatusCode::OK, v.to_string())
        }
        Ok(ActionOutcome::Continue { result: None, .. }) => panic!("no result"),
        Ok(ActionOutcome::Respond(r)) => (
            r.status,
            r.headers
                .get("wicket-error-code")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        ),
        Err(e) => (e.status, e.code.to_owned()),
    }
}

fn config(url: &str, token: serde_json::Value) -> ConfigValue {
    ConfigValue::from_json(&serde_json::json!({
        "issuer": {"allow_list": [{"value": "https://issuer.test"}]},
        "http": {"tokens": [token]},
        "jws": {"allowed_algorithms": ["RS256", "ES256", "EdDSA"],
                "keys": {"sources": {"additional_jkus": [url]}}},
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_cookies_and_query_strings() {
    let keys = Keys::new();
    let jwks = JwksServer::start(keys.jwks(), "max-age=300").await;
    let env = ActionEnv::ephemeral().unwrap();
    let token = keys.sign("ES256", "e1", &claims(serde_json::json!({"sub": "carol"})));

    let cookie = JwksAction::new(
        &config(
            &jwks.url(),
            serde_json::json!({"type": "jwt", "method": "cookie", "name": "session"}),
        ),
        CachePolicy::default(),
    )
    .unwrap();
    let req = Request::get("/")
        .header("cookie", format!("theme=dark; session={token}"))
        .body(())
        .unwrap();
    let (status, result) = run(&cookie, &env, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        result.contains("carol") && result.contains("cookie"),
        "{result}"
    );
    let req = Request::get("/")
        .header("cookie", "theme=dark")
        .body(())
        .unwrap();
    assert_eq!(
        run(&cookie, &env, req).await,
        (StatusCode::UNAUTHORIZED, "ERR_NGROK_3406".into())
    );

    let query = JwksAction::new(
        &config(
            &jwks.url(),
            serde_json::json!({"type": "jwt", "method": "query", "name": "access_token"}),
        ),
        CachePolicy::default(),
    )
    .unwrap();
    let req = Request::get(format!("/feed?x=1&access_token={token}"))
        .body(())
        .unwrap();
    let (status, result) = run(&query, &env, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        result.contains("query") && result.contains("access_token"),
        "{result}"
    );
    // Another token's signature on this header and payload.
    let other = keys.sign(
        "ES256",
        "e1",
        &claims(serde_json::json!({"sub": "mallory"})),
    );
    let (signed, _) = token.rsplit_once('.').unwrap();
    let tampered = format!("{signed}.{}", other.rsplit_once('.').unwrap().1);
    let req = Request::get(format!("/feed?access_token={tampered}"))
        .body(())
        .unwrap();
    assert_eq!(
        run(&query, &env, req).await,
        (StatusCode::UNAUTHORIZED, "ERR_NGROK_3403".into())
    );
    assert_eq!(
        jwks.fetches(),
        2,
        "one fetch per action (each has its cache)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_follows_max_age_and_serves_stale_keys_while_the_server_fails() {
    let keys = Keys::new();
    // max-age=0 with no lower bound: every request refetches.
    let jwks = JwksServer::start(keys.jwks(), "max-age=0").await;
    let env = ActionEnv::ephemeral().unwrap();
    let token_cfg = serde_json::json!({"type": "jwt", "method": "header", "name": "authorization", "prefix": "Bearer "});
    let eager = JwksAction::new(
        &config(&jwks.url(), token_cfg.clone()),
        CachePolicy {
            min_ttl: Duration::ZERO,
            ..CachePolicy::default()
        },
    )
    .unwrap();
    let token = keys.sign("EdDSA", "d1", &claims(serde_json::json!({})));
    let req = || {
        Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
    };
    for i in 1..=3 {
        assert_eq!(run(&eager, &env, req()).await.0, StatusCode::OK);
        assert_eq!(jwks.fetches(), i);
    }
    // The default policy raises max-age=0 to 30 s: one fetch.
    let bounded = JwksAction::new(
        &config(&jwks.url(), token_cfg.clone()),
        CachePolicy::default(),
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(run(&bounded, &env, req()).await.0, StatusCode::OK);
    }
    assert_eq!(jwks.fetches(), 4);

    // A server that starts failing: the expired set stays usable (stale grace) and failed
    // fetches are not retried on every request.
    let flaky_fetches = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (f, o) = (flaky_fetches.clone(), ok.clone());
    let set = serde_json::json!({"keys": keys.jwks()}).to_string();
    let flaky = serve_fn(move |_| {
        f.fetch_add(1, Ordering::SeqCst);
        if o.load(Ordering::SeqCst) {
            Response::builder()
                .header("cache-control", "max-age=0")
                .body(full(set.clone()))
                .unwrap()
        } else {
            Response::builder().status(503).body(full("down")).unwrap()
        }
    })
    .await;
    let action = JwksAction::new(
        &config(&format!("http://{flaky}/jwks"), token_cfg),
        CachePolicy {
            min_ttl: Duration::ZERO,
            ..CachePolicy::default()
        },
    )
    .unwrap();
    assert_eq!(run(&action, &env, req()).await.0, StatusCode::OK);
    ok.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(
            run(&action, &env, req()).await.0,
            StatusCode::OK,
            "stale keys still verify"
        );
    }
    assert_eq!(
        flaky_fetches.load(Ordering::SeqCst),
        2,
        "one failed refresh, then backoff"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_over_https_trusts_only_the_configured_roots() {
    let c = certs();
    let keys = Keys::new();
    let set = serde_json::json!({"keys": keys.jwks()}).to_string();
    let fetches = Arc::new(AtomicUsize::new(0));
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(c.pair.chain.clone(), c.pair.key.clone_key())
        .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let f = fetches.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, set, f) = (acceptor.clone(), set.clone(), f.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |_req: Request<Incoming>| {
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = set.clone();
                    async move { Ok::<_, Infallible>(Response::new(full(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let url = format!("https://localhost:{}/jwks", addr.port());
    let cfg = config(
        &url,
        serde_json::json!({"type": "jwt", "method": "header", "name": "authorization", "prefix": "Bearer "}),
    );
    let token = keys.sign("RS256", "r1", &claims(serde_json::json!({})));
    let req = || {
        Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
    };
    // An edge that trusts the test CA (its extra roots) fetches the keys.
    let roots = wicket_runtime::tls::root_store(std::slice::from_ref(&c.ca_path)).unwrap();
    let trusting = ActionEnv::with_roots(roots, [7; 32], Vec::new()).unwrap();
    let action = JwksAction::new(&cfg, CachePolicy::default()).unwrap();
    assert_eq!(run(&action, &trusting, req()).await.0, StatusCode::OK);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // One that does not refuses the server's certificate: fail closed, nothing fetched.
    let strict =
        ActionEnv::with_roots(rustls::RootCertStore::empty(), [7; 32], Vec::new()).unwrap();
    let action = JwksAction::new(&cfg, CachePolicy::default()).unwrap();
    assert_eq!(
        run(&action, &strict, req()).await,
        (StatusCode::BAD_GATEWAY, "ERR_NGROK_3422".to_owned())
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}
