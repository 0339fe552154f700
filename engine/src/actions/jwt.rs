//! `jwt-validation`: JWS signature verification (HS*, RS*, PS*, ES256/384, EdDSA) with `ring`,
//! `alg: none` and algorithm confusion rejected (a key's type, taken from its SPKI algorithm
//! identifier, its JWK `kty`/`crv` or its configuration as an HMAC secret, fixes the algorithms
//! it verifies; a JWK's `alg` narrows that to one), and `iss`/`aud`/`exp`/`nbf` checks with
//! clock skew.
//!
//! Keys come from `jws.keys.sources`: `additional_jkus` (JWKS URLs, fetched by the runtime),
//! and two Wicket extensions that need no network: `static` (a list of `{pem, kid?}` public
//! keys or `{secret, kid?}` HMAC secrets) and `jwks` (an inline JWK set, as a map or as JSON
//! text). A config without JWKS URLs runs in the engine; one with URLs compiles to an external
//! action, and the runtime validates with [`JwtValidation::validate`] over the keys it fetched,
//! so both paths make exactly the same checks and build the same result.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::{hmac, signature};

use super::map_of;
use super::template::Tmpl;
use crate::compile::ir::ConfigValue;
use crate::value::{Key as MapKey, MapValue, Value};

/// The `WWW-Authenticate` challenge of a refused request.
pub const CHALLENGE: &str = "Bearer error=\"invalid_token\"";

/// The longest token accepted, in bytes (after the prefix is stripped).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The most keys a JWK set may list.
pub const MAX_JWKS_KEYS: usize = 64;

/// The JWS algorithms this module verifies.
const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// The clock skew allowed on `exp` and `nbf` unless the config says otherwise.
const DEFAULT_SKEW: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One verification key: its type fixes the algorithms it verifies.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    kind: KeyKind,
    /// The one algorithm this key verifies, when its JWK names one.
    alg: Option<String>,
    /// The HMAC secret, the PKCS#1 RSA key, the uncompressed EC point or the Ed25519 key.
    material: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The material may be an HMAC secret: never printed.
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// An HMAC secret (at least 32 bytes), verifying `HS256`/`HS384`/`HS512`.
    ///
    /// # Errors
    /// The secret is shorter than 32 bytes.
    pub fn hmac(secret: &[u8], kid: Option<String>) -> Result<Key, String> {
        if secret.len() < 32 {
            return Err("an HMAC secret must be at least 32 bytes".into());
        }
        Ok(Key {
            kid,
            kind: KeyKind::Hmac,
            alg: None,
            material: secret.to_vec(),
        })
    }

    /// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding an RSA, P-256, P-384 or Ed25519 key.
    ///
    /// # Errors
    /// The text is not such a key.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<Key, String> {
        let (kind, material) = spki(&pem_der(pem)?)
            .ok_or("the PEM key is not an RSA, P-256, P-384 or Ed25519 public key")?;
        Ok(Key {
            kid,
            kind,
            alg: None,
            material,
        })
    }

    /// A key from one JWK (RFC 7517): `RSA` (`n`, `e`), `EC` (`P-256`/`P-384`, `x`, `y`), `OKP`
    /// (`Ed25519`, `x`) and, when `allow_symmetric`, `oct` (`k`). `Ok(None)` for a key this
    /// module does not use (an encryption key, another curve or key type, an algorithm it does
    /// not verify).
    ///
    /// # Errors
    /// A key of a supported type with missing or invalid members.
    pub fn from_jwk(jwk: &serde_json::Value, allow_symmetric: bool) -> Result<Option<Key>, String> {
        let text = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let v = text(name).ok_or_else(|| format!("member `{name}` is missing"))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.trim_end_matches('='))
                .map_err(|_| format!("member `{name}` is not base64url"))
        };
        if text("use").is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        let alg = text("alg").map(str::to_owned);
        if alg.as_deref().is_some_and(|a| !ALGORITHMS.contains(&a)) {
            return Ok(None);
        }
        let kid = text("kid").map(str::to_owned);
        let (kind, material) = match text("kty") {
            Some("RSA") => {
                let n = bytes("n")?;
                let e = bytes("e")?;
                if n.len() > 1024 || e.len() > 16 {
                    return Err("the RSA key is larger than 8192 bits".into());
                }
                (KeyKind::Rsa, rsa_public_key_der(&n, &e))
            }
            Some("EC") => {
                let (kind, len) = match text("crv") {
                    Some("P-256") => (KeyKind::P256, 32),
                    Some("P-384") => (KeyKind::P384, 48),
                    _ => return Ok(None),
                };
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != len || y.len() != len {
                    return Err("the EC coordinates have the wrong length".into());
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (kind, point)
            }
            Some("OKP") => {
                if text("crv") != Some("Ed25519") {
                    return Ok(None);
                }
                let x = bytes("x")?;
                if x.len() != 32 {
                    return Err("the Ed25519 key is not 32 bytes".into());
                }
                (KeyKind::Ed25519, x)
            }
            Some("oct") if allow_symmetric => {
                let mut key = Key::hmac(&bytes("k")?, kid)?;
                key.alg = alg;
                return Ok(key.alg_fits().then_some(key));
            }
            _ => return Ok(None),
        };
        let key = Key {
            kid,
            kind,
            alg,
            material,
        };
        Ok(key.alg_fits().then_some(key))
    }

    /// The key id.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether a JWK's `alg`, if any, suits the key's type.
    fn alg_fits(&self) -> bool {
        self.alg
            .as_deref()
            .is_none_or(|a| allowed_for(self.kind, a))
    }

    /// Whether this key may verify a token signed with `alg`: the key's type fixes the
    /// algorithms it verifies (no algorithm confusion), and a JWK's `alg` narrows that to one.
    #[must_use]
    pub fn verifies(&self, alg: &str) -> bool {
        allowed_for(self.kind, alg) && self.alg.as_deref().is_none_or(|a| a == alg)
    }

    /// Whether `sig` is this key's `alg` signature of `signed` (false when the key may not
    /// verify `alg` at all).
    #[must_use]
    pub fn verify_signature(&self, alg: &str, signed: &[u8], sig: &[u8]) -> bool {
        self.verifies(alg) && verify_sig(self, alg, signed, sig)
    }
}

/// The keys of a JWK set, and the keys that were skipped.
#[derive(Debug, Default)]
pub struct JwkSet {
    /// The usable keys.
    pub keys: Vec<Key>,
    /// Why each unusable key was skipped (`key N: …`); unsupported key types are skipped
    /// silently.
    pub skipped: Vec<String>,
}

/// Why a JWK set was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON.
    #[error("the JWK set is not JSON: {0}")]
    Json(String),
    /// No `keys` list.
    #[error("the JWK set is not an object with a `keys` list")]
    Shape,
    /// Too many keys.
    #[error("the JWK set lists {0} keys; at most {MAX_JWKS_KEYS} are accepted")]
    TooMany(usize),
}

impl JwkSet {
    /// The keys of a parsed JWK set document (see [`parse_jwks`]).
    ///
    /// # Errors
    /// The document is not a JWK set or lists more than [`MAX_JWKS_KEYS`] keys.
    pub fn from_json(doc: &serde_json::Value, allow_symmetric: bool) -> Result<JwkSet, JwksError> {
        jwk_set(doc, allow_symmetric)
    }
}

/// Parses a JWK set (`{"keys": [...]}`). Keys that cannot be used are skipped (and listed), so
/// one odd key does not disable the others; symmetric (`oct`) keys are used only when
/// `allow_symmetric` (a published key set must never carry them).
///
/// # Errors
/// The text is not a JWK set or lists more than [`MAX_JWKS_KEYS`] keys.
pub fn parse_jwks(text: &[u8], allow_symmetric: bool) -> Result<JwkSet, JwksError> {
    let doc: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| JwksError::Json(e.to_string()))?;
    jwk_set(&doc, allow_symmetric)
}

fn jwk_set(doc: &serde_json::Value, allow_symmetric: bool) -> Result<JwkSet, JwksError> {
    let keys = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or(JwksError::Shape)?;
    if keys.len() > MAX_JWKS_KEYS {
        return Err(JwksError::TooMany(keys.len()));
    }
    let mut set = JwkSet::default();
    for (i, jwk) in keys.iter().enumerate() {
        match Key::from_jwk(jwk, allow_symmetric) {
            Ok(Some(k)) => set.keys.push(k),
            Ok(None) => {}
            Err(e) => set.skipped.push(format!("key {i}: {e}")),
        }
    }
    Ok(set)
}

/// The DER `RSAPublicKey` (PKCS#1) of a modulus and exponent (big-endian, unsigned).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(n: usize, out: &mut Vec<u8>) {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        if n < 0x80 {
            out.push(bytes[bytes.len() - 1]);
        } else {
            let used = &bytes[skip..];
            out.push(0x80 | u8::try_from(used.len()).unwrap_or(0));
            out.extend_from_slice(used);
        }
    }
    fn int(v: &[u8], out: &mut Vec<u8>) {
        let v = &v[v.iter().take_while(|b| **b == 0).count()..];
        let pad = v.first().is_none_or(|b| *b >= 0x80);
        out.push(0x02);
        len(v.len() + usize::from(pad), out);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    int(n, &mut body);
    int(e, &mut body);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    len(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// Where a token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A request header (lower-case name).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
    /// A top-level field of a JSON or form-encoded request body (name matched
    /// case-insensitively). Reading it needs the body, so a validation with such a token is
    /// carried out by the runtime ([`needs_runtime`]).
    Body(String),
}

impl Location {
    /// The result's `location` and `location_property`.
    #[must_use]
    pub fn describe(&self) -> (&'static str, &str) {
        match self {
            Location::Header(n) => ("header", n),
            Location::Cookie(n) => ("cookie", n),
            Location::Query(n) => ("query", n),
            Location::Body(n) => ("body", n),
        }
    }
}

/// One configured token.
#[derive(Debug)]
pub struct TokenSpec {
    /// Where it is.
    pub location: Location,
    /// Stripped before parsing (e.g. `Bearer `); a value without it counts as missing.
    pub prefix: String,
}

impl TokenSpec {
    /// The token in the raw value found at its location: the prefix stripped, whitespace
    /// trimmed.
    #[must_use]
    pub fn token<'a>(&self, raw: &'a str) -> Option<&'a str> {
        raw.strip_prefix(self.prefix.as_str()).map(str::trim)
    }
}

/// The value of cookie `name` in these `Cookie` header values.
pub fn cookie_value<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|h| h.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The percent-decoded value of query parameter `name` in a query string (without `?`).
#[must_use]
pub fn query_value<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy())
    })
}

/// The `kid` in a token's header, if it names one (`None` also for a malformed token, which
/// verification then refuses).
#[must_use]
pub fn token_kid(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    header
        .get("kid")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// A compiled `jwt-validation`.
#[derive(Debug)]
pub struct JwtValidation {
    keys: Vec<Key>,
    jwks_urls: Vec<String>,
    allowed: Vec<String>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    tokens: Vec<TokenSpec>,
    skew: Duration,
}

/// The outcome of validating a request's tokens.
#[derive(Debug)]
pub struct Validation {
    /// The `actions.ngrok.jwt_validation` result: `tokens` (the verified ones) and, on failure,
    /// `error.code`/`error.message`.
    pub result: Value,
    /// The first failure; the request is refused (401 with [`CHALLENGE`]) when set.
    pub failure: Option<JwtError>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// A configured token is absent.
    #[error("token missing from {0}")]
    Missing(String),
    /// The token is not three base64url parts with a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, unknown or not allowed.
    #[error("algorithm `{0}` is not allowed")]
    Algorithm(String),
    /// No configured key of the algorithm's type verifies the signature.
    #[error("invalid signature")]
    Signature,
    /// A claim check failed.
    #[error("{0}")]
    Claim(&'static str),
}

impl JwtError {
    /// The ngrok error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Missing(_) => "ERR_NGROK_3406",
            JwtError::Malformed(_) => "ERR_NGROK_3416",
            JwtError::Algorithm(_) | JwtError::Signature | JwtError::Claim(_) => "ERR_NGROK_3403",
        }
    }
}

fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    if !pem.contains("BEGIN PUBLIC KEY") {
        return Err("a static key must be a PEM `PUBLIC KEY` (SubjectPublicKeyInfo)".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("the PEM key is not valid base64: {e}"))
}

/// A DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The key type and key bytes of a SubjectPublicKeyInfo.
fn spki(der_bytes: &[u8]) -> Option<(KeyKind, Vec<u8>)> {
    let (0x30, spki, _) = der(der_bytes)? else {
        return None;
    };
    let (0x30, alg, rest) = der(spki)? else {
        return None;
    };
    let (0x03, bits, _) = der(rest)? else {
        return None;
    };
    let (&unused, key) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    let (0x06, oid, params) = der(alg)? else {
        return None;
    };
    let kind = if oid == OID_RSA {
        KeyKind::Rsa
    } else if oid == OID_ED25519 {
        KeyKind::Ed25519
    } else if oid == OID_EC {
        let (0x06, curve, _) = der(params)? else {
            return None;
        };
        if curve == OID_P256 {
            KeyKind::P256
        } else if curve == OID_P384 {
            KeyKind::P384
        } else {
            return None;
        }
    } else {
        return None;
    };
    Some((kind, key.to_vec()))
}

fn allowed_for(kind: KeyKind, alg: &str) -> bool {
    match kind {
        KeyKind::Hmac => alg.starts_with("HS"),
        KeyKind::Rsa => alg.starts_with("RS") || alg.starts_with("PS"),
        KeyKind::P256 => alg == "ES256",
        KeyKind::P384 => alg == "ES384",
        KeyKind::Ed25519 => alg == "EdDSA",
    }
}

/// The text of a string field that the spec marks CEL-capable: interpolation is refused (the
/// value is compared or fetched as written).
fn literal(v: &ConfigValue, what: &str) -> Result<String, String> {
    let text = v
        .as_str()
        .ok_or_else(|| format!("`{what}` must be a string"))?;
    if !matches!(v, ConfigValue::Template(_)) {
        return Ok(text.to_owned());
    }
    Tmpl::parse(text)?
        .as_literal()
        .map(|l| l.to_string())
        .ok_or_else(|| {
            format!("`{what}` interpolates `${{…}}`, which jwt-validation does not support; write the value literally")
        })
}

fn allow_list(v: Option<&ConfigValue>, what: &str) -> Result<Vec<String>, String> {
    match v.and_then(|v| v.get("allow_list")) {
        None | Some(ConfigValue::Null) => Ok(Vec::new()),
        Some(ConfigValue::List(items)) => items
            .iter()
            .map(|i| {
                let v = i
                    .get("value")
                    .ok_or_else(|| format!("each `{what}.allow_list` entry needs a `value`"))?;
                literal(v, &format!("{what}.allow_list[].value"))
            })
            .collect(),
        Some(_) => Err(format!("`{what}.allow_list` must be a list")),
    }
}

/// Either one map or a list of maps (the docs write `keys` and `sources` both ways).
fn one_or_many(v: Option<&ConfigValue>) -> Vec<&ConfigValue> {
    match v {
        Some(ConfigValue::List(items)) => items.iter().collect(),
        Some(m @ ConfigValue::Map(_)) => vec![m],
        _ => Vec::new(),
    }
}

/// The `jws.keys[].sources[]` maps.
fn key_sources(c: &ConfigValue) -> Vec<&ConfigValue> {
    one_or_many(c.get("jws").and_then(|j| j.get("keys")))
        .into_iter()
        .flat_map(|k| one_or_many(k.get("sources")))
        .collect()
}

/// Whether the runtime must carry the validation out: it fetches JWKS URLs (`additional_jkus`) or
/// reads a token from the request body.
pub(crate) fn needs_runtime(c: &ConfigValue) -> bool {
    let jwks = key_sources(c)
        .iter()
        .any(|s| matches!(s.get("additional_jkus"), Some(ConfigValue::List(l)) if !l.is_empty()));
    let body = matches!(
        c.get("http").and_then(|h| h.get("tokens")),
        Some(ConfigValue::List(items))
            if items.iter().any(|t| t.get("method").and_then(ConfigValue::as_str) == Some("body"))
    );
    jwks || body
}

/// A config map or JSON text as JSON.
fn to_json(v: &ConfigValue) -> Result<serde_json::Value, String> {
    Ok(match v {
        ConfigValue::Null => serde_json::Value::Null,
        ConfigValue::Bool(b) => serde_json::Value::Bool(*b),
        ConfigValue::Int(i) => serde_json::Value::from(*i),
        ConfigValue::Float(f) => serde_json::Value::from(*f),
        ConfigValue::Str(s) | ConfigValue::Template(s) | ConfigValue::Expr(s) => {
            serde_json::Value::String(s.clone())
        }
        ConfigValue::Duration(_) => return Err("a JWK member cannot be a duration".into()),
        ConfigValue::List(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        ConfigValue::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn compile_sources(c: &ConfigValue) -> Result<(Vec<Key>, Vec<String>), String> {
    let mut keys = Vec::new();
    let mut urls = Vec::new();
    for source in key_sources(c) {
        match source.get("additional_jkus") {
            None | Some(ConfigValue::Null) => {}
            Some(ConfigValue::List(items)) => {
                for i in items {
                    urls.push(literal(i, "jws.keys.sources.additional_jkus[]")?);
                }
            }
            Some(_) => return Err("`additional_jkus` must be a list of URLs".into()),
        }
        match source.get("static") {
            None | Some(ConfigValue::Null) => {}
            Some(ConfigValue::List(items)) => {
                for item in items {
                    let kid = item
                        .get("kid")
                        .and_then(ConfigValue::as_str)
                        .map(str::to_owned);
                    if let Some(secret) = item.get("secret").and_then(ConfigValue::as_str) {
                        keys.push(Key::hmac(secret.as_bytes(), kid)?);
                    } else if let Some(pem) = item.get("pem").and_then(ConfigValue::as_str) {
                        keys.push(Key::from_pem(pem, kid)?);
                    } else {
                        return Err("a static key needs `pem` or `secret`".into());
                    }
                }
            }
            Some(_) => return Err("`static` must be a list of keys".into()),
        }
        match source.get("jwks") {
            None | Some(ConfigValue::Null) => {}
            Some(v) => {
                let doc = match v {
                    ConfigValue::Str(text) | ConfigValue::Template(text) => {
                        serde_json::from_str(text)
                            .map_err(|e| format!("the inline `jwks` is not JSON: {e}"))?
                    }
                    other => to_json(other)?,
                };
                let set = jwk_set(&doc, true).map_err(|e| format!("inline `jwks`: {e}"))?;
                if let Some(first) = set.skipped.first() {
                    return Err(format!("inline `jwks`: {first}"));
                }
                if set.keys.is_empty() {
                    return Err("the inline `jwks` has no usable signature key".into());
                }
                keys.extend(set.keys);
            }
        }
    }
    Ok((keys, urls))
}

impl JwtValidation {
    /// Compiles the config. Static keys (`static`, `jwks`) are loaded now; JWKS URLs are
    /// listed in [`JwtValidation::jwks_urls`] for the runtime to fetch.
    ///
    /// # Errors
    /// A config that is incomplete or invalid, with a message naming the field.
    pub fn compile(c: &ConfigValue) -> Result<JwtValidation, String> {
        let jws = c.get("jws").ok_or("`jws` is required")?;
        let allowed: Vec<String> = match jws.get("allowed_algorithms") {
            Some(ConfigValue::List(items)) if !items.is_empty() => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or("`allowed_algorithms` must list names")
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("`jws.allowed_algorithms` must list at least one algorithm".into()),
        };
        for a in &allowed {
            if a.eq_ignore_ascii_case("none") {
                return Err("the algorithm `none` is refused".into());
            }
            if !ALGORITHMS.contains(&a.as_str()) {
                return Err(format!("unsupported algorithm `{a}`"));
            }
        }
        let (keys, jwks_urls) = compile_sources(c)?;
        if keys.is_empty() && jwks_urls.is_empty() {
            return Err(
                "no verification key: list JWKS URLs in `jws.keys.sources.additional_jkus`".into(),
            );
        }
        let issuers = allow_list(c.get("issuer"), "issuer")?;
        if issuers.is_empty() {
            return Err("`issuer.allow_list` must list at least one issuer".into());
        }
        let audiences = allow_list(c.get("audience"), "audience")?;
        let mut tokens = Vec::new();
        match c.get("http").and_then(|h| h.get("tokens")) {
            Some(ConfigValue::List(items)) if !items.is_empty() => {
                for t in items {
                    let name = literal(
                        t.get("name").ok_or("each token needs a `name`")?,
                        "http.tokens[].name",
                    )?;
                    let method = t
                        .get("method")
                        .and_then(ConfigValue::as_str)
                        .unwrap_or("header");
                    let location = match method {
                        "header" => Location::Header(name.to_ascii_lowercase()),
                        "cookie" => Location::Cookie(name),
                        "query" => Location::Query(name),
                        "body" => Location::Body(name),
                        other => return Err(format!("unknown token `method` `{other}`")),
                    };
                    let prefix = match t.get("prefix") {
                        None | Some(ConfigValue::Null) => String::new(),
                        Some(p) => literal(p, "http.tokens[].prefix")?,
                    };
                    tokens.push(TokenSpec { location, prefix });
                }
            }
            _ => return Err("`http.tokens` must list at least one token".into()),
        }
        let skew = match c.get("skew") {
            Some(ConfigValue::Duration(d)) => *d,
            Some(ConfigValue::Int(s)) => {
                Duration::from_secs(u64::try_from(*s).map_err(|_| "`skew` must not be negative")?)
            }
            None | Some(ConfigValue::Null) => DEFAULT_SKEW,
            Some(_) => return Err("`skew` must be a duration".into()),
        };
        Ok(JwtValidation {
            keys,
            jwks_urls,
            allowed,
            issuers,
            audiences,
            tokens,
            skew,
        })
    }

    /// The JWKS URLs (`additional_jkus`), in order.
    #[must_use]
    pub fn jwks_urls(&self) -> &[String] {
        &self.jwks_urls
    }

    /// The configured tokens.
    #[must_use]
    pub fn tokens(&self) -> &[TokenSpec] {
        &self.tokens
    }

    /// Whether a configured key (static or inline) has this `kid`.
    #[must_use]
    pub fn has_static_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// Verifies one token with the configured keys at time `now`; returns its decoded header
    /// and payload.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn verify(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<(serde_json::Value, serde_json::Value), JwtError> {
        self.verify_with(token, &[], now)
    }

    /// Verifies one token with the configured keys and `extra` (keys fetched at run time).
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn verify_with(
        &self,
        token: &str,
        extra: &[Key],
        now: SystemTime,
    ) -> Result<(serde_json::Value, serde_json::Value), JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed("the token is too large"));
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("expected three dot-separated parts"));
        };
        let header: serde_json::Value = b64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(serde_json::Value::is_object)
            .ok_or(JwtError::Malformed("the header is not base64url JSON"))?;
        let payload: serde_json::Value = b64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(serde_json::Value::is_object)
            .ok_or(JwtError::Malformed("the payload is not base64url JSON"))?;
        let sig = b64
            .decode(s)
            .map_err(|_| JwtError::Malformed("the signature is not base64url"))?;
        let alg = header
            .get("alg")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("none");
        if alg.eq_ignore_ascii_case("none") || !self.allowed.iter().any(|a| a == alg) {
            return Err(JwtError::Algorithm(alg.to_owned()));
        }
        let kid = header.get("kid").and_then(serde_json::Value::as_str);
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let verified = self
            .keys
            .iter()
            .chain(extra)
            .filter(|k| k.verifies(alg))
            .filter(|k| match (kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .any(|k| verify_sig(k, alg, signed, &sig));
        if !verified {
            return Err(JwtError::Signature);
        }
        self.check_claims(&payload, now)?;
        Ok((header, payload))
    }

    /// Validates every configured token of a request: `lookup` gives the raw value at a
    /// location (a header's first value, a cookie, a decoded query parameter), `extra` the
    /// keys fetched at run time. The engine's own path and the runtime's JWKS path both run
    /// this, so they make the same checks and build the same result.
    pub fn validate<'v, F>(&self, extra: &[Key], mut lookup: F, now: SystemTime) -> Validation
    where
        F: FnMut(&Location) -> Option<Cow<'v, str>>,
    {
        let mut tokens = Vec::new();
        let mut failure: Option<JwtError> = None;
        for spec in &self.tokens {
            let (kind, prop) = spec.location.describe();
            let raw = lookup(&spec.location);
            let Some(token) = raw.as_deref().and_then(|r| spec.token(r)) else {
                failure.get_or_insert(JwtError::Missing(format!("{kind} `{prop}`")));
                continue;
            };
            match self.verify_with(token, extra, now) {
                Ok((header, payload)) => tokens.push(map_of([
                    ("header", Value::from_json(&header)),
                    ("payload", Value::from_json(&payload)),
                    (
                        "signature",
                        Value::string(token.rsplit('.').next().unwrap_or("")),
                    ),
                    ("verified", Value::Bool(true)),
                    ("location", Value::string(kind)),
                    ("location_property", Value::string(prop)),
                ])),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let mut m = MapValue::new();
        m.upsert(MapKey::String(Arc::from("tokens")), Value::list(tokens));
        if let Some(e) = &failure {
            m.upsert(
                MapKey::String(Arc::from("error")),
                map_of([
                    ("code", Value::string(e.code())),
                    ("message", Value::string(e.to_string())),
                ]),
            );
        }
        Validation {
            result: Value::map(m),
            failure,
        }
    }

    fn check_claims(&self, payload: &serde_json::Value, now: SystemTime) -> Result<(), JwtError> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let skew = self.skew.as_secs();
        let num = |name: &str| -> Result<Option<u64>, JwtError> {
            match payload.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| {
                        #[expect(
                            clippy::cast_possible_truncation,
                            clippy::cast_sign_loss,
                            reason = "checked finite and non-negative; whole seconds"
                        )]
                        let secs = f as u64;
                        Some(secs)
                    })
                    .ok_or(JwtError::Claim("a time claim is not a number")),
            }
        };
        if let Some(exp) = num("exp")? {
            if now > exp.saturating_add(skew) {
                return Err(JwtError::Claim("the token has expired"));
            }
        }
        if let Some(nbf) = num("nbf")? {
            if now.saturating_add(skew) < nbf {
                return Err(JwtError::Claim("the token is not valid yet"));
            }
        }
        let iss = payload.get("iss").and_then(serde_json::Value::as_str);
        if !iss.is_some_and(|i| self.issuers.iter().any(|a| a == i)) {
            return Err(JwtError::Claim("the issuer is not allowed"));
        }
        if !self.audiences.is_empty() {
            let ok = match payload.get("aud") {
                Some(serde_json::Value::String(a)) => self.audiences.iter().any(|x| x == a),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .any(|a| self.audiences.iter().any(|x| x == a)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::Claim("the audience is not allowed"));
            }
        }
        Ok(())
    }
}

fn verify_sig(key: &Key, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    let public = |alg: &'static dyn signature::VerificationAlgorithm| {
        signature::UnparsedPublicKey::new(alg, &key.material)
            .verify(msg, sig)
            .is_ok()
    };
    match alg {
        "HS256" | "HS384" | "HS512" => {
            let a = match alg {
                "HS256" => hmac::HMAC_SHA256,
                "HS384" => hmac::HMAC_SHA384,
                _ => hmac::HMAC_SHA512,
            };
            hmac::verify(&hmac::Key::new(a, &key.material), msg, sig).is_ok()
        }
        "RS256" => public(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => public(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => public(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => public(&signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => public(&signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => public(&signature::RSA_PSS_2048_8192_SHA512),
        "ES256" => public(&signature::ECDSA_P256_SHA256_FIXED),
        "ES384" => public(&signature::ECDSA_P384_SHA384_FIXED),
        "EdDSA" => public(&signature::ED25519),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn hs256(header: &str, payload: &str) -> String {
        let signing = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
        let tag = hmac::sign(&key, signing.as_bytes());
        format!("{signing}.{}", b64(tag.as_ref()))
    }

    fn config(extra_key: Option<ConfigValue>) -> ConfigValue {
        let mut keys = vec![ConfigValue::Map(vec![(
            "secret".into(),
            ConfigValue::Str(SECRET.into()),
        )])];
        keys.extend(extra_key);
        let json = serde_json::json!({
            "issuer": {"allow_list": [{"value": "https://issuer.test"}]},
            "audience": {"allow_list": [{"value": "api"}]},
            "http": {"tokens": [{"type": "jwt", "method": "header", "name": "Authorization", "prefix": "Bearer "}]},
            "jws": {"allowed_algorithms": ["HS256", "EdDSA", "RS256"]},
        });
        let ConfigValue::Map(mut top) = ConfigValue::from_json(&json) else {
            unreachable!()
        };
        for (k, v) in &mut top {
            if k == "jws" {
                if let ConfigValue::Map(entries) = v {
                    entries.push((
                        "keys".into(),
                        ConfigValue::Map(vec![(
                            "sources".into(),
                            ConfigValue::Map(vec![(
                                "static".into(),
                                ConfigValue::List(keys.clone()),
                            )]),
                        )]),
                    ));
                }
            }
        }
        ConfigValue::Map(top)
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn accepts_a_valid_hs256_token() {
        let v = JwtValidation::compile(&config(None)).unwrap();
        let t = hs256(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"iss":"https://issuer.test","aud":["x","api"],"exp":1700000100,"sub":"u1"}"#,
        );
        let (_, payload) = v.verify(&t, now()).unwrap();
        assert_eq!(payload["sub"], "u1");
    }

    #[test]
    fn rejects_none_tampering_claims_and_confusion() {
        let v = JwtValidation::compile(&config(None)).unwrap();
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(br#"{"iss":"https://issuer.test","aud":"api"}"#)
        );
        assert_eq!(
            v.verify(&none, now()),
            Err(JwtError::Algorithm("none".into()))
        );
        let good = hs256(
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"https://issuer.test","aud":"api"}"#,
        );
        let mut tampered = good.clone();
        tampered.replace_range(
            good.find('.').unwrap() + 2..good.find('.').unwrap() + 3,
            "A",
        );
        assert!(v.verify(&tampered, now()).is_err());
        let expired = hs256(
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"https://issuer.test","aud":"api","exp":1699999000}"#,
        );
        assert_eq!(
            v.verify(&expired, now()),
            Err(JwtError::Claim("the token has expired"))
        );
        let skewed = hs256(
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"https://issuer.test","aud":"api","exp":1699999950}"#,
        );
        assert!(v.verify(&skewed, now()).is_ok(), "within the 60 s skew");
        let future = hs256(
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"https://issuer.test","aud":"api","nbf":1700001000}"#,
        );
        assert!(v.verify(&future, now()).is_err());
        let wrong_iss = hs256(
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"https://issuer.test/","aud":"api"}"#,
        );
        assert!(v.verify(&wrong_iss, now()).is_err());
        let wrong_aud = hs256(
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"https://issuer.test","aud":"web"}"#,
        );
        assert!(v.verify(&wrong_aud, now()).is_err());
        // Algorithm confusion: a token claiming RS256 but MAC'd with the secret is refused, as
        // the secret is an HMAC key and no RSA key verifies it.
        let confused = hs256(
            r#"{"alg":"RS256"}"#,
            r#"{"iss":"https://issuer.test","aud":"api"}"#,
        );
        assert_eq!(v.verify(&confused, now()), Err(JwtError::Signature));
        assert!(v.verify("a.b", now()).is_err());
    }

    #[test]
    fn verifies_eddsa_with_a_pem_key() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&spki)
        );
        let key = ConfigValue::Map(vec![("pem".into(), ConfigValue::Str(pem))]);
        let v = JwtValidation::compile(&config(Some(key))).unwrap();
        let signing = format!(
            "{}.{}",
            b64(br#"{"alg":"EdDSA"}"#),
            b64(br#"{"iss":"https://issuer.test","aud":"api"}"#)
        );
        let sig = pair.sign(signing.as_bytes());
        let token = format!("{signing}.{}", b64(sig.as_ref()));
        assert!(v.verify(&token, now()).is_ok());
        // The same signature presented as HS256 (confusion) fails.
        let token = format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256"}"#),
            b64(br#"{"iss":"https://issuer.test","aud":"api"}"#),
            b64(sig.as_ref())
        );
        assert!(v.verify(&token, now()).is_err());
    }

    #[test]
    fn refuses_alg_none_in_config() {
        let json = serde_json::json!({"jws": {"allowed_algorithms": ["none"]}});
        assert!(
            JwtValidation::compile(&ConfigValue::from_json(&json))
                .unwrap_err()
                .contains("none")
        );
    }

    /// A 2048-bit RSA test key (PKCS#8 DER, base64), generated once for these tests.
    const RSA_PKCS8: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDemk0Dgnd9H5P2f2PQ6GWKOdlhrBlzWLjF74vsSFOKZiqSmci1ZS9JInGfYuZuqu0tcorVzflIhtDl5nyGn+rSHyoFvHb1fPFv9S0r0U67SWDae/XOV1s/GgQ+LSTup3xO0SHUUq4PwTi9QVGrBxYklSmhAswi/yeOeUVX3NcCm60ZHQo8evizhKZ7BihI6hY2nab+8ieMIGpFoIzj0QcpiKX2+GgIXS4itBAsth4b56URilx2Cf0y94A7FIQRXVWtR9UZmyqE35kr1pbBSA9enm1qp9nbChF/r3uAtuW83n44i3jwB91MXohQITVaJKxxAryHfR95NFm6KRQvh7+bAgMBAAECggEAbtbk/xjhF2/4VHZlBLobCUM5zw0LFSi5xHE9OldfJZwumZWyX0Q1UdSxP9xWggdhFs6ge8pWVHswnDDyk3QgUCUNXxLTJvRiIc2ygs1zRwVIETJFGEveFuME9tKyv5Ss7G/syNSscBLVhkL2f9ME/w04z7/dVpW3JBWVZiUD+HsOz90iCYfCjTXbFfvCwZWQ9oaGOUE0kRode9WKiGxMGUaDErbI8PW++sW6BiIcaLwUShYqJV2ZQerQg7q47sB/CG6mY3Jmxan3bZmEgWzqIjTXpEXc5BEYmJkH7PevXO9CyQ00bpXuzcrdFaNULf7dlLCYuyL+AJRg44p7XnnV6QKBgQD2otLPHQ0S0caYZ2570Pnb4lOGKZ14Y3V2CjeDUhh55Bg6KMdDOb1KnappTi9Ox6GKnJN/YTMf4A42Rhy0FEbPqr0SsY8SDtO71QeVNzN2/c6vwJU4RSUgJe1zRx4HfazcsNtJ4jegGYdxh4V/Nd2r4nzWZwqBKGDI3bX3DhSi6QKBgQDnDeLR2alywe6Q1lYinFAWtmcD6ijgI+eMNGOOCAQeOLzA6dWwrzVBwsOVGf9/AIx+7P0DIA0+pObwm0tpKUl0Wv8H2V15K0pAMlN+lI/ZvMIfjXdW3fA7+l7NIgu3KZSAwV5DXbwdHW0V0JRSr1ggiELqYHr03U2DA/Qw84QT4wKBgQCwPVOkul6wNwTRvP9fLMqOzKDguvYSpAe4jL50cYKZ/1ssnB0fta/FFPtD+qGlitOtiAuCN4Pf4CxnrhwutlqPZLNtG0JgJgY5L5YWk3aMLfu27Uf0CLzpxxBxkr0rnyuaHCrnFean2fZGMxA7AdPgUpzgXItOFftrLbssynwGmQKBgDEJdGsfK+RMHmqk4rEDxcecPK7LApPXauwJrltVfjI/zmeO+Sg/dykWwdWiJ+R3ZFoHyAbixYzXCKBmBRIzjgBg06GB02HE+0Q2qhvCQelvMy/pITvRbIv+LiKRKDVeYMMWxv+7JBJ1zVIE64XE6wo0gScnBNF1Kl809p1xAUYLAoGAdpjsD8GAhN0Sv0J2tJJm4Xe15So9Scns0jWzVyxUQawtzA6oJHFnO91qYZDZGb2PE4jYFzHbyEA+gWF1Ti7zb2JUS39u4Wd7N4YXAG6IWcVsLXevHDAjc6R+ywlzfcgQ7YZBawCFDaSs1M0IOr3tBVhyOn9pRtAj5taOqUvGAOc=";

    fn rsa_pair() -> signature::RsaKeyPair {
        let der = base64::engine::general_purpose::STANDARD
            .decode(RSA_PKCS8)
            .unwrap();
        signature::RsaKeyPair::from_pkcs8(&der).unwrap()
    }

    fn sign_rs256(pair: &signature::RsaKeyPair, header: &str, payload: &str) -> String {
        let signing = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{signing}.{}", b64(&sig))
    }

    fn rsa_jwk(pair: &signature::RsaKeyPair, kid: &str) -> serde_json::Value {
        let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
    }

    fn jkus_config() -> ConfigValue {
        ConfigValue::from_json(&serde_json::json!({
            "issuer": {"allow_list": [{"value": "https://issuer.test"}]},
            "http": {"tokens": [
                {"type": "jwt", "method": "header", "name": "Authorization", "prefix": "Bearer "},
                {"type": "jwt", "method": "cookie", "name": "session"},
                {"type": "jwt", "method": "query", "name": "access_token"}
            ]},
            "jws": {"allowed_algorithms": ["RS256", "ES256", "EdDSA", "HS256"],
                    "keys": [{"sources": [{"additional_jkus": ["https://issuer.test/jwks"]}]}]},
        }))
    }

    #[test]
    fn jwk_rsa_key_is_the_pkcs1_der_ring_uses() {
        let pair = rsa_pair();
        let key = Key::from_jwk(&rsa_jwk(&pair, "r1"), false)
            .unwrap()
            .unwrap();
        assert_eq!(key.material, pair.public().as_ref());
        assert_eq!(key.kid(), Some("r1"));
        let v = JwtValidation::compile(&jkus_config()).unwrap();
        assert_eq!(v.jwks_urls(), ["https://issuer.test/jwks"]);
        let t = sign_rs256(
            &pair,
            r#"{"alg":"RS256","kid":"r1"}"#,
            r#"{"iss":"https://issuer.test"}"#,
        );
        assert!(v.verify_with(&t, std::slice::from_ref(&key), now()).is_ok());
        assert_eq!(
            v.verify(&t, now()),
            Err(JwtError::Signature),
            "no static key"
        );
        assert_eq!(token_kid(&t).as_deref(), Some("r1"));
        // A key named for another algorithm does not verify RS256.
        let mut jwk = rsa_jwk(&pair, "r1");
        jwk["alg"] = "RS384".into();
        let narrowed = Key::from_jwk(&jwk, false).unwrap().unwrap();
        assert_eq!(
            v.verify_with(&t, &[narrowed], now()),
            Err(JwtError::Signature)
        );
        // A kid that names another key does not match.
        let other = Key::from_jwk(&rsa_jwk(&pair, "r2"), false)
            .unwrap()
            .unwrap();
        assert_eq!(v.verify_with(&t, &[other], now()), Err(JwtError::Signature));
        // HS256 keyed with the RSA public key's bytes (algorithm confusion) is refused: the
        // key is an RSA key, never an HMAC secret.
        let signing = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","kid":"r1"}"#),
            b64(br#"{"iss":"https://issuer.test"}"#)
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &key.material),
            signing.as_bytes(),
        );
        let confused = format!("{signing}.{}", b64(tag.as_ref()));
        assert_eq!(
            v.verify_with(&confused, &[key], now()),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn jwk_ec_and_okp_keys_verify() {
        let rng = SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let ec = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let point = ec.public_key().as_ref();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "e1",
            "x": b64(&point[1..33]), "y": b64(&point[33..])});
        let ec_key = Key::from_jwk(&jwk, false).unwrap().unwrap();
        let signing = format!(
            "{}.{}",
            b64(br#"{"alg":"ES256","kid":"e1"}"#),
            b64(br#"{"iss":"https://issuer.test"}"#)
        );
        let sig = ec.sign(&rng, signing.as_bytes()).unwrap();
        let t = format!("{signing}.{}", b64(sig.as_ref()));
        let v = JwtValidation::compile(&jkus_config()).unwrap();
        assert!(
            v.verify_with(&t, std::slice::from_ref(&ec_key), now())
                .is_ok()
        );

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk =
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())});
        let ed_key = Key::from_jwk(&jwk, false).unwrap().unwrap();
        let signing = format!(
            "{}.{}",
            b64(br#"{"alg":"EdDSA"}"#),
            b64(br#"{"iss":"https://issuer.test"}"#)
        );
        let t2 = format!("{signing}.{}", b64(ed.sign(signing.as_bytes()).as_ref()));
        assert!(v.verify_with(&t2, &[ec_key, ed_key.clone()], now()).is_ok());
        // The EC signature presented as EdDSA fails.
        assert!(v.verify_with(&t, &[ed_key], now()).is_err());
        // Wrong coordinate lengths are refused; other curves are skipped.
        let bad = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"});
        assert!(Key::from_jwk(&bad, false).is_err());
        let p521 = serde_json::json!({"kty": "EC", "crv": "P-521", "x": "AAAA", "y": "AAAA"});
        assert!(Key::from_jwk(&p521, false).unwrap().is_none());
    }

    #[test]
    fn jwk_sets_skip_what_they_cannot_use_and_are_bounded() {
        let pair = rsa_pair();
        let secret = b64(SECRET.as_bytes());
        let doc = serde_json::json!({"keys": [
            rsa_jwk(&pair, "good"),
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "k": secret},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {"kty": "X448"},
        ]});
        let set = parse_jwks(doc.to_string().as_bytes(), false).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid(), Some("good"));
        assert_eq!(set.skipped.len(), 1, "{:?}", set.skipped);
        assert!(set.skipped[0].contains("`n`"));
        let set = parse_jwks(doc.to_string().as_bytes(), true).unwrap();
        assert_eq!(set.keys.len(), 2, "oct keys only when allowed");
        assert!(matches!(parse_jwks(b"{", false), Err(JwksError::Json(_))));
        assert_eq!(
            parse_jwks(b"{\"keys\": 3}", false).unwrap_err(),
            JwksError::Shape
        );
        let many = serde_json::json!({"keys": vec![rsa_jwk(&pair, "x"); MAX_JWKS_KEYS + 1]});
        assert_eq!(
            parse_jwks(many.to_string().as_bytes(), false).unwrap_err(),
            JwksError::TooMany(MAX_JWKS_KEYS + 1)
        );
        let k = Key::from_jwk(&rsa_jwk(&pair, "good"), false)
            .unwrap()
            .unwrap();
        assert!(!format!("{k:?}").contains("material"));
    }

    #[test]
    fn validate_reads_header_cookie_and_query_and_reports_the_first_failure() {
        let pair = rsa_pair();
        let key = Key::from_jwk(&rsa_jwk(&pair, "r1"), false)
            .unwrap()
            .unwrap();
        let v = JwtValidation::compile(&jkus_config()).unwrap();
        let t = sign_rs256(
            &pair,
            r#"{"alg":"RS256","kid":"r1"}"#,
            r#"{"iss":"https://issuer.test","sub":"u"}"#,
        );
        let cookie = format!("a=b; session={t}; c=d");
        let query = format!("x=1&access_token={}", t.replace('-', "%2D"));
        let header = format!("Bearer {t}");
        let ok = v.validate(
            std::slice::from_ref(&key),
            |loc: &Location| match loc {
                Location::Header(_) => Some(Cow::Borrowed(header.as_str())),
                Location::Cookie(c) => cookie_value([cookie.as_str()], c).map(Cow::Borrowed),
                Location::Query(q) => query_value(&query, q),
                Location::Body(_) => None,
            },
            now(),
        );
        assert!(ok.failure.is_none(), "{:?}", ok.failure);
        let tokens = ok.result.to_string();
        assert_eq!(tokens.matches("location_property").count(), 3, "{tokens}");
        // Without the header the first failure is the missing header; the others verify.
        let missing = v.validate(
            &[key],
            |loc: &Location| match loc {
                Location::Header(_) => None,
                Location::Cookie(c) => cookie_value([cookie.as_str()], c).map(Cow::Borrowed),
                Location::Query(q) => query_value(&query, q),
                Location::Body(_) => None,
            },
            now(),
        );
        assert_eq!(
            missing.failure,
            Some(JwtError::Missing("header `authorization`".into()))
        );
        let text = missing.result.to_string();
        assert!(text.contains("ERR_NGROK_3406"), "{text}");
        assert_eq!(text.matches("location_property").count(), 2, "{text}");
    }

    #[test]
    fn oversized_and_malformed_tokens_are_refused() {
        let v = JwtValidation::compile(&config(None)).unwrap();
        let big = format!(
            "{}.{}.x",
            b64(br#"{"alg":"HS256"}"#),
            "A".repeat(MAX_TOKEN_LEN)
        );
        assert_eq!(
            v.verify(&big, now()),
            Err(JwtError::Malformed("the token is too large"))
        );
        assert_eq!(token_kid(&big), None);
        for bad in [
            "",
            "a.b.c",
            "e30.e30.!!",
            "WzFd.e30.",
            "e30.bm90IGpzb24.",
            "a.b.c.d",
        ] {
            assert!(
                matches!(v.verify(bad, now()), Err(JwtError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(JwtError::Malformed("x").code(), "ERR_NGROK_3416");
    }

    #[test]
    fn key_sources_take_either_shape_and_inline_jwks() {
        assert!(needs_runtime(&jkus_config()));
        assert!(!needs_runtime(&config(None)));
        let secret = b64(SECRET.as_bytes());
        let inline = serde_json::json!({"keys": [{"kty": "oct", "kid": "h1", "k": secret}]});
        let mut json = serde_json::json!({
            "issuer": {"allow_list": [{"value": "https://issuer.test"}]},
            "http": {"tokens": [{"type": "jwt", "method": "header", "name": "X-Token"}]},
            "jws": {"allowed_algorithms": ["HS256"], "keys": {"sources": {"jwks": inline.to_string()}}},
        });
        let v = JwtValidation::compile(&ConfigValue::from_json(&json)).unwrap();
        assert!(v.jwks_urls().is_empty() && v.has_static_kid("h1"));
        let t = hs256(
            r#"{"alg":"HS256","kid":"h1"}"#,
            r#"{"iss":"https://issuer.test"}"#,
        );
        assert!(v.verify(&t, now()).is_ok());
        json["jws"]["keys"]["sources"]["jwks"] = inline;
        assert!(
            JwtValidation::compile(&ConfigValue::from_json(&json)).is_ok(),
            "as a map"
        );
        json["jws"]["keys"]["sources"]["jwks"] = serde_json::json!({"keys": []});
        assert!(
            JwtValidation::compile(&ConfigValue::from_json(&json))
                .unwrap_err()
                .contains("no usable")
        );
        json["jws"]["keys"] = serde_json::json!({"sources": {}});
        assert!(
            JwtValidation::compile(&ConfigValue::from_json(&json))
                .unwrap_err()
                .contains("additional_jkus")
        );
    }

    #[test]
    fn interpolation_in_cel_capable_fields_is_refused() {
        let ConfigValue::Map(mut top) = jkus_config() else {
            unreachable!()
        };
        for (k, v) in &mut top {
            if k == "issuer" {
                let entry = ConfigValue::Map(vec![(
                    "value".into(),
                    ConfigValue::Template("https://${req.host}".into()),
                )]);
                *v = ConfigValue::Map(vec![("allow_list".into(), ConfigValue::List(vec![entry]))]);
            }
        }
        let err = JwtValidation::compile(&ConfigValue::Map(top)).unwrap_err();
        assert!(err.contains("issuer.allow_list[].value"), "{err}");
    }
}
