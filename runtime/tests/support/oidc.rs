//! Pieces of the identity providers the tests run on loopback: ES256 keys and JWTs, JWKs,
//! PKCE, client credentials at a token endpoint, form parsing and JSON/text responses.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Response, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value as Json, json};

use super::net::{TestBody, full};

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh P-256 key for ES256.
pub fn es256_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk8.as_ref(), &rng).unwrap()
}

/// The public JWK of `key` (`use: sig`, `alg: ES256`) under `kid`.
pub fn es256_jwk(key: &EcdsaKeyPair, kid: &str) -> Json {
    let pt = key.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&pt[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&pt[33..65])})
}

/// A compact JWT with `claims`, signed by `key` (ES256) with header `kid`.
pub fn sign_es256(key: &EcdsaKeyPair, kid: &str, claims: &Json) -> String {
    let header = json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// The S256 PKCE challenge of `verifier`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref())
}

/// The client id and secret a token request carries: HTTP Basic, else the form's
/// `client_id` and `client_secret` (empty when absent).
pub fn client_credentials(
    headers: &http::HeaderMap,
    form: &BTreeMap<String, String>,
) -> (String, String) {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(|b| String::from_utf8(STANDARD.decode(b).unwrap()).unwrap());
    match basic {
        Some(b) => {
            let (id, secret) = b.split_once(':').unwrap();
            (id.to_owned(), secret.to_owned())
        }
        None => {
            let get = |k: &str| form.get(k).cloned().unwrap_or_default();
            (get("client_id"), get("client_secret"))
        }
    }
}

/// The pairs of a form body (or query string).
pub fn form(raw: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// A response with `status` and the text `body`.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r
}

/// A response with `status` and `v` as `application/json`.
pub fn json_res(status: StatusCode, v: &Json) -> Response<TestBody> {
    let mut r = text(status, v.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
