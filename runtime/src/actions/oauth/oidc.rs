//! OpenID Connect: the discovery document, the provider's JWKS and ID-token verification.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value as Json;
use wicket_engine::actions::jwt::{JwkSet, Key};

/// The signature algorithms accepted on ID tokens (asymmetric only: a provider's published
/// key set never verifies HMAC tokens).
const ID_TOKEN_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
/// The longest ID token accepted.
pub(crate) const MAX_ID_TOKEN: usize = 16 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat` (seconds).
pub(crate) const SKEW_SECS: i64 = 60;

/// The parts of `/.well-known/openid-configuration` the login needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Discovery {
    /// `issuer`: must equal the configured issuer URL.
    pub(crate) issuer: String,
    /// `authorization_endpoint`.
    pub(crate) authorization_endpoint: String,
    /// `token_endpoint`.
    pub(crate) token_endpoint: String,
    /// `userinfo_endpoint`.
    #[serde(default)]
    pub(crate) userinfo_endpoint: Option<String>,
    /// `jwks_uri`.
    pub(crate) jwks_uri: String,
    /// `token_endpoint_auth_methods_supported` (absent: `client_secret_basic` only).
    #[serde(default)]
    pub(crate) token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

impl Discovery {
    /// Whether the client authenticates with HTTP Basic (else with the form body).
    pub(crate) fn uses_basic_auth(&self) -> bool {
        match &self.token_endpoint_auth_methods_supported {
            None => true,
            Some(m) => {
                m.iter().any(|m| m == "client_secret_basic")
                    || !m.iter().any(|m| m == "client_secret_post")
            }
        }
    }
}

/// Whether two issuer identifiers are the same (a trailing `/` is not significant).
pub(crate) fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The signing keys of a provider's JWKS, parsed as `jwt-validation` parses JWKS
/// (`wicket_engine::actions::jwt`): keys not for signatures, of another type or curve, or
/// symmetric are skipped; more than `MAX_JWKS_KEYS` keys refuse the set.
pub(crate) fn parse_jwks(doc: &Json) -> Result<Vec<Key>, String> {
    JwkSet::from_json(doc, false)
        .map(|set| set.keys)
        .map_err(|e| e.to_string())
}

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// Not a compact JWS, bad base64 or JSON, or too long.
    #[error("the ID token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is missing, `none`, symmetric or unsupported.
    #[error("the ID token's algorithm `{0}` is not accepted")]
    Alg(String),
    /// No key of the JWKS has the token's `kid` (the caller may refresh the JWKS).
    #[error("no key of the provider's JWKS matches the ID token (kid `{0}`)")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the ID token's signature does not verify")]
    Signature,
    /// A claim is wrong.
    #[error("the ID token's `{0}` claim is not valid")]
    Claim(&'static str),
}

/// What an ID token must say.
#[derive(Debug)]
pub(crate) struct Expect<'a> {
    /// The issuer.
    pub(crate) issuer: &'a str,
    /// The client id (`aud`, `azp`).
    pub(crate) client_id: &'a str,
    /// The flow's nonce.
    pub(crate) nonce: &'a str,
    /// Now (Unix seconds).
    pub(crate) now: i64,
}

/// Verifies an ID token's signature against `keys` and its claims against `expect`; the claims
/// on success.
pub(crate) fn verify_id_token(
    token: &str,
    keys: &[Key],
    expect: &Expect<'_>,
) -> Result<serde_json::Map<String, Json>, TokenError> {
    if token.len() > MAX_ID_TOKEN {
        return Err(TokenError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| TokenError::Malformed("bad base64url"))
    };
    let header: Json =
        serde_json::from_slice(&decode(h)?).map_err(|_| TokenError::Malformed("bad header"))?;
    let alg = header.get("alg").and_then(Json::as_str).unwrap_or("");
    if !ID_TOKEN_ALGS.contains(&alg) {
        return Err(TokenError::Alg(alg.to_owned()));
    }
    let kid = header.get("kid").and_then(Json::as_str);
    let sig = decode(s)?;
    let msg = &token.as_bytes()[..h.len() + 1 + p.len()];
    let mut candidates = keys
        .iter()
        .filter(|k| k.verifies(alg) && (kid.is_none() || k.kid() == kid))
        .peekable();
    if candidates.peek().is_none() {
        return Err(TokenError::UnknownKey(kid.unwrap_or("").to_owned()));
    }
    if !candidates.any(|k| k.verify_signature(alg, msg, &sig)) {
        return Err(TokenError::Signature);
    }
    let claims: serde_json::Map<String, Json> =
        serde_json::from_slice(&decode(p)?).map_err(|_| TokenError::Malformed("bad payload"))?;
    check_claims(&claims, expect)?;
    Ok(claims)
}

fn check_claims(c: &serde_json::Map<String, Json>, e: &Expect<'_>) -> Result<(), TokenError> {
    let s = |k: &str| c.get(k).and_then(Json::as_str);
    let n = |k: &str| c.get(k).and_then(Json::as_i64);
    if !s("iss").is_some_and(|iss| same_issuer(iss, e.issuer)) {
        return Err(TokenError::Claim("iss"));
    }
    let audiences: Vec<&str> = match c.get("aud") {
        Some(Json::String(a)) => vec![a.as_str()],
        Some(Json::Array(list)) => list.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&e.client_id) {
        return Err(TokenError::Claim("aud"));
    }
    if let Some(azp) = s("azp")
        && azp != e.client_id
    {
        return Err(TokenError::Claim("azp"));
    }
    match n("exp") {
        Some(exp) if e.now <= exp.saturating_add(SKEW_SECS) => {}
        _ => return Err(TokenError::Claim("exp")),
    }
    if let Some(nbf) = n("nbf")
        && e.now.saturating_add(SKEW_SECS) < nbf
    {
        return Err(TokenError::Claim("nbf"));
    }
    if let Some(iat) = n("iat")
        && e.now.saturating_add(SKEW_SECS) < iat
    {
        return Err(TokenError::Claim("iat"));
    }
    let nonce_ok = s("nonce").is_some_and(|n| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            n.as_bytes(),
            e.nonce.as_bytes(),
        ))
    });
    if !nonce_ok {
        return Err(TokenError::Claim("nonce"));
    }
    if s("sub").is_none_or(str::is_empty) {
        return Err(TokenError::Claim("sub"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    /// An RSA-2048 test key (PKCS#1 DER, base64), generated with `openssl genpkey` for these
    /// tests only.
    const RSA_DER_B64: &str = include_str!("testdata/rsa2048.der.b64");

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    pub(crate) fn es256() -> (EcdsaKeyPair, Json) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pk8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap();
        let pt = kp.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig",
            "x": b64(&pt[1..33]), "y": b64(&pt[33..65])});
        (kp, jwk)
    }

    fn rsa() -> (RsaKeyPair, Json) {
        use base64::engine::general_purpose::STANDARD;
        let der = STANDARD.decode(RSA_DER_B64.trim()).unwrap();
        let kp = RsaKeyPair::from_der(&der).unwrap();
        let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(kp.public());
        let (n, e) = (c.n, c.e);
        let jwk = json!({"kty": "RSA", "kid": "rsa1", "alg": "RS256", "n": b64(&n), "e": b64(&e)});
        (kp, jwk)
    }

    fn sign_with(header: &Json, claims: &Json, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = sign(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    fn es_sign(kp: &EcdsaKeyPair, kid: &str, claims: &Json) -> String {
        let rng = SystemRandom::new();
        sign_with(&json!({"alg": "ES256", "kid": kid}), claims, |m| {
            kp.sign(&rng, m).unwrap().as_ref().to_vec()
        })
    }

    fn claims() -> Json {
        json!({"iss": "https://idp.test", "aud": "cid", "sub": "u1", "nonce": "n1",
               "exp": 2000, "iat": 1000, "email": "a@example.com"})
    }

    fn expect() -> Expect<'static> {
        Expect {
            issuer: "https://idp.test/",
            client_id: "cid",
            nonce: "n1",
            now: 1500,
        }
    }

    #[test]
    fn verifies_es256_and_rs256_tokens() {
        let (ec, ec_jwk) = es256();
        let (rsa, rsa_jwk) = rsa();
        let keys = parse_jwks(&json!({"keys": [ec_jwk, rsa_jwk]})).unwrap();
        assert_eq!(keys.len(), 2);
        let t = es_sign(&ec, "ec1", &claims());
        let got = verify_id_token(&t, &keys, &expect()).unwrap();
        assert_eq!(got["email"], "a@example.com");

        let rng = SystemRandom::new();
        let t = sign_with(&json!({"alg": "RS256", "kid": "rsa1"}), &claims(), |m| {
            let mut sig = vec![0; rsa.public().modulus_len()];
            rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut sig)
                .unwrap();
            sig
        });
        verify_id_token(&t, &keys, &expect()).unwrap();
        // The same RSA key under PS256 is refused by the key's declared `alg`.
        let t = sign_with(&json!({"alg": "PS256", "kid": "rsa1"}), &claims(), |m| {
            let mut sig = vec![0; rsa.public().modulus_len()];
            rsa.sign(&signature::RSA_PSS_SHA256, &rng, m, &mut sig)
                .unwrap();
            sig
        });
        assert_eq!(
            verify_id_token(&t, &keys, &expect()),
            Err(TokenError::UnknownKey("rsa1".into()))
        );
    }

    #[test]
    fn verifies_eddsa_tokens_without_kid() {
        let rng = SystemRandom::new();
        let pk8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap();
        let keys = parse_jwks(&json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())}
        ]}))
        .unwrap();
        let t = sign_with(&json!({"alg": "EdDSA"}), &claims(), |m| {
            kp.sign(m).as_ref().to_vec()
        });
        verify_id_token(&t, &keys, &expect()).unwrap();
    }

    #[test]
    fn refuses_bad_signatures_algorithms_and_keys() {
        let (ec, jwk) = es256();
        let (other, _) = es256();
        let keys = parse_jwks(&json!({"keys": [jwk]})).unwrap();
        // Signed by another key under the same kid.
        let t = es_sign(&other, "ec1", &claims());
        assert_eq!(
            verify_id_token(&t, &keys, &expect()),
            Err(TokenError::Signature)
        );
        // Unknown kid.
        let t = es_sign(&ec, "ec2", &claims());
        assert_eq!(
            verify_id_token(&t, &keys, &expect()),
            Err(TokenError::UnknownKey("ec2".into()))
        );
        // alg none, HS256, missing alg.
        for h in [
            json!({"alg": "none"}),
            json!({"alg": "HS256", "kid": "ec1"}),
            json!({}),
        ] {
            let t = format!(
                "{}.{}.",
                b64(h.to_string().as_bytes()),
                b64(claims().to_string().as_bytes())
            );
            assert!(
                matches!(
                    verify_id_token(&t, &keys, &expect()),
                    Err(TokenError::Alg(_))
                ),
                "{h}"
            );
        }
        // Payload swapped after signing.
        let t = es_sign(&ec, "ec1", &claims());
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut c = claims();
        c["sub"] = json!("admin");
        parts[1] = b64(c.to_string().as_bytes());
        assert_eq!(
            verify_id_token(&parts.join("."), &keys, &expect()),
            Err(TokenError::Signature)
        );
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"a".repeat(MAX_ID_TOKEN + 1),
        ] {
            assert!(
                matches!(
                    verify_id_token(bad, &keys, &expect()),
                    Err(TokenError::Malformed(_))
                ),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn checks_every_claim() {
        let (ec, jwk) = es256();
        let keys = parse_jwks(&json!({"keys": [jwk]})).unwrap();
        let check = |edit: &dyn Fn(&mut Json)| {
            let mut c = claims();
            edit(&mut c);
            verify_id_token(&es_sign(&ec, "ec1", &c), &keys, &expect())
        };
        let claim = |name| Err(TokenError::Claim(name));
        assert_eq!(
            check(&|c| c["iss"] = json!("https://evil.test")),
            claim("iss")
        );
        assert_eq!(check(&|c| c["aud"] = json!("other")), claim("aud"));
        assert!(check(&|c| c["aud"] = json!(["other", "cid"])).is_ok());
        assert_eq!(check(&|c| c["azp"] = json!("other")), claim("azp"));
        assert_eq!(
            check(&|c| c["exp"] = json!(1500 - SKEW_SECS - 1)),
            claim("exp")
        );
        assert!(check(&|c| c["exp"] = json!(1500 - SKEW_SECS)).is_ok());
        assert_eq!(check(&|c| c["exp"] = json!("2000")), claim("exp"));
        assert_eq!(
            check(&|c| c["nbf"] = json!(1500 + SKEW_SECS + 1)),
            claim("nbf")
        );
        assert_eq!(
            check(&|c| c["iat"] = json!(1500 + SKEW_SECS + 1)),
            claim("iat")
        );
        assert_eq!(check(&|c| c["nonce"] = json!("n2")), claim("nonce"));
        assert_eq!(
            check(&|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            claim("nonce")
        );
        assert_eq!(check(&|c| c["sub"] = json!("")), claim("sub"));
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys_and_is_bounded() {
        let (_, jwk) = es256();
        let doc = json!({"keys": [
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "k": "c2VjcmV0"},
            jwk,
        ]});
        assert_eq!(parse_jwks(&doc).unwrap().len(), 1);
        let many = json!({"keys": vec![json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}); 500]});
        assert!(parse_jwks(&many).unwrap_err().contains("at most 64"));
        assert!(parse_jwks(&json!({})).is_err());
    }

    #[test]
    fn discovery_picks_the_client_auth_method() {
        let d = |m: Json| -> Discovery {
            let mut doc = json!({"issuer": "https://i", "authorization_endpoint": "https://i/a",
                "token_endpoint": "https://i/t", "jwks_uri": "https://i/k"});
            if !m.is_null() {
                doc["token_endpoint_auth_methods_supported"] = m;
            }
            serde_json::from_value(doc).unwrap()
        };
        assert!(d(Json::Null).uses_basic_auth());
        assert!(!d(json!(["client_secret_post"])).uses_basic_auth());
        assert!(d(json!(["client_secret_post", "client_secret_basic"])).uses_basic_auth());
        assert!(same_issuer("https://i/", "https://i"));
        assert!(!same_issuer("https://i/a", "https://i"));
    }
}
