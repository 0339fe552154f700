//! `jwt-validation` with static keys: JWS signature verification (HS*, RS*, PS*, ES256/384,
//! EdDSA) with `ring`, `alg: none` and algorithm confusion rejected (a key's type, taken from
//! its SPKI algorithm identifier or its configuration as an HMAC secret, fixes the algorithms
//! it verifies), and `iss`/`aud`/`exp`/`nbf` checks with clock skew.
//!
//! Keys come from `jws.keys.sources.static` (a Wicket extension: a list of `{pem, kid?}` public
//! keys or `{secret, kid?}` HMAC secrets). Policies that list `additional_jkus` need the
//! network: they compile to an external action the runtime performs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::{hmac, signature};

use crate::compile::ir::ConfigValue;

/// The JWS algorithms this module verifies.
const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One verification key.
#[derive(Debug)]
struct Key {
    kid: Option<String>,
    kind: KeyKind,
    /// The HMAC secret, the PKCS#1 RSA key, the EC point or the Ed25519 key.
    material: Vec<u8>,
}

/// Where a token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A request header (lower-case name).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

/// One configured token.
#[derive(Debug)]
pub(crate) struct TokenSpec {
    pub location: Location,
    pub prefix: String,
}

/// A compiled `jwt-validation`.
#[derive(Debug)]
pub(crate) struct JwtValidation {
    keys: Vec<Key>,
    allowed: Vec<String>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    pub tokens: Vec<TokenSpec>,
    skew: Duration,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwtError {
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

fn list_values(v: Option<&ConfigValue>) -> Vec<String> {
    match v.and_then(|v| v.get("allow_list")) {
        Some(ConfigValue::List(items)) => items
            .iter()
            .filter_map(|i| {
                i.get("value")
                    .and_then(ConfigValue::as_str)
                    .map(str::to_owned)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether the config needs the network (JWKS URLs) rather than static keys.
pub(crate) fn needs_network(c: &ConfigValue) -> bool {
    let sources = c
        .get("jws")
        .and_then(|j| j.get("keys"))
        .and_then(|k| k.get("sources"));
    let has_static = matches!(sources.and_then(|s| s.get("static")), Some(ConfigValue::List(l)) if !l.is_empty());
    !has_static
}

impl JwtValidation {
    /// Compiles the config.
    pub fn compile(c: &ConfigValue) -> Result<JwtValidation, String> {
        let jws = c.get("jws").ok_or("`jws` is required")?;
        let allowed: Vec<String> = match jws.get("allowed_algorithms") {
            Some(ConfigValue::List(items)) => items
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
        let mut keys = Vec::new();
        let statics = jws
            .get("keys")
            .and_then(|k| k.get("sources"))
            .and_then(|s| s.get("static"));
        if let Some(ConfigValue::List(items)) = statics {
            for item in items {
                let kid = item
                    .get("kid")
                    .and_then(ConfigValue::as_str)
                    .map(str::to_owned);
                if let Some(secret) = item.get("secret").and_then(ConfigValue::as_str) {
                    if secret.len() < 32 {
                        return Err("an HMAC secret must be at least 32 bytes".into());
                    }
                    keys.push(Key {
                        kid,
                        kind: KeyKind::Hmac,
                        material: secret.as_bytes().to_vec(),
                    });
                } else if let Some(pem) = item.get("pem").and_then(ConfigValue::as_str) {
                    let (kind, material) = spki(&pem_der(pem)?)
                        .ok_or("the PEM key is not an RSA, P-256, P-384 or Ed25519 public key")?;
                    keys.push(Key {
                        kid,
                        kind,
                        material,
                    });
                } else {
                    return Err("a static key needs `pem` or `secret`".into());
                }
            }
        }
        if keys.is_empty() {
            return Err("no static key configured".into());
        }
        let issuers = list_values(c.get("issuer"));
        if issuers.is_empty() {
            return Err("`issuer.allow_list` must list at least one issuer".into());
        }
        let audiences = list_values(c.get("audience"));
        let mut tokens = Vec::new();
        match c.get("http").and_then(|h| h.get("tokens")) {
            Some(ConfigValue::List(items)) if !items.is_empty() => {
                for t in items {
                    let name = t
                        .get("name")
                        .and_then(ConfigValue::as_str)
                        .ok_or("each token needs a `name`")?;
                    let method = t
                        .get("method")
                        .and_then(ConfigValue::as_str)
                        .unwrap_or("header");
                    let location = match method {
                        "header" => Location::Header(name.to_ascii_lowercase()),
                        "cookie" => Location::Cookie(name.to_owned()),
                        "query" => Location::Query(name.to_owned()),
                        "body" => return Err("tokens in the request body are not supported".into()),
                        other => return Err(format!("unknown token `method` `{other}`")),
                    };
                    let prefix = t
                        .get("prefix")
                        .and_then(ConfigValue::as_str)
                        .unwrap_or("")
                        .to_owned();
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
            _ => Duration::from_secs(60),
        };
        Ok(JwtValidation {
            keys,
            allowed,
            issuers,
            audiences,
            tokens,
            skew,
        })
    }

    /// Verifies one token at time `now`; returns its decoded header and payload.
    pub fn verify(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<(serde_json::Value, serde_json::Value), JwtError> {
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
            .ok_or(JwtError::Malformed("the header is not base64url JSON"))?;
        let payload: serde_json::Value = b64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
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
            .filter(|k| allowed_for(k.kind, alg))
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
}
