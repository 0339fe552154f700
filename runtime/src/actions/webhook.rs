//! `verify-webhook`: checks a webhook's signature with the provider's documented scheme before
//! the request reaches the upstream.
//!
//! The body is buffered (at most [`MAX_BODY`]; larger is 413) and forwarded unchanged. Every
//! comparison is constant-time (`subtle` over ring's HMACs and the shared GitLab token; ring's
//! ECDSA verification). Providers that sign a timestamp are refused outside ±[`TOLERANCE`] of the edge's
//! clock (replay protection). A failure answers 403 `ERR_NGROK_3204` unless `enforce: false`,
//! which records `actions.ngrok.verify_webhook.verified = false` (and `error.*`) and continues.
//!
//! | `provider` | header(s) | signed content | algorithm |
//! |---|---|---|---|
//! | `github` | `X-Hub-Signature-256: sha256=<hex>` | body | HMAC-SHA256 |
//! | `stripe` | `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…]` | `<ts>.<body>` | HMAC-SHA256 |
//! | `slack` | `X-Slack-Signature: v0=<hex>`, `X-Slack-Request-Timestamp` | `v0:<ts>:<body>` | HMAC-SHA256 |
//! | `twilio` | `X-Twilio-Signature: <base64>` | URL + sorted form params (or URL with `bodySHA256`) | HMAC-SHA1 |
//! | `shopify` | `X-Shopify-Hmac-Sha256: <base64>` | body | HMAC-SHA256 |
//! | `gitlab` | `X-Gitlab-Token: <secret>` | — | shared token |
//! | `sendgrid` | `X-Twilio-Email-Event-Webhook-Signature: <base64 DER>`, `…-Timestamp` | `<ts><body>` | ECDSA P-256 SHA-256 (secret: the verification key, base64 DER or PEM) |
//! | `svix`, `clerk` | `svix-id`, `svix-timestamp`, `svix-signature: v1,<base64> …` | `<id>.<ts>.<body>` | HMAC-SHA256 (secret `whsec_<base64>`) |
//! | `generic_hmac_sha256` (Wicket) | `X-Webhook-Signature: [sha256=]<hex or base64>`, optional `X-Webhook-Timestamp` | body, or `<ts>.<body>` with a timestamp | HMAC-SHA256 |

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, StatusCode};
use ring::{digest, hmac, signature};
use subtle::ConstantTimeEq as _;
use wicket_engine::Value;
use wicket_engine::compile::ir::ConfigValue;

use super::{ActionEnv, ActionError, ActionOutcome, ExternalAction, RequestCx, buffer_body};
use crate::engine_policy::error_page;

/// Error code of a webhook that failed verification.
pub const ERR_WEBHOOK: &str = "ERR_NGROK_3204";

/// The largest body verified (GitHub caps payloads at 25 MB; most providers send far less).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// How far a signed timestamp may be from the edge's clock.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// The supported providers.
pub const PROVIDERS: &[&str] = &[
    "github",
    "stripe",
    "slack",
    "twilio",
    "shopify",
    "gitlab",
    "sendgrid",
    "svix",
    "clerk",
    "generic_hmac_sha256",
];

/// A signing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// GitHub.
    Github,
    /// Stripe.
    Stripe,
    /// Slack.
    Slack,
    /// Twilio (voice and messaging).
    Twilio,
    /// Shopify.
    Shopify,
    /// GitLab.
    Gitlab,
    /// SendGrid event webhooks.
    Sendgrid,
    /// Svix (Standard Webhooks), also used by Clerk.
    Svix,
    /// Wicket's generic HMAC-SHA256 scheme.
    GenericHmacSha256,
}

impl Provider {
    /// The provider of a `provider` id.
    #[must_use]
    pub fn from_id(id: &str) -> Option<Self> {
        Some(match id {
            "github" => Self::Github,
            "stripe" => Self::Stripe,
            "slack" => Self::Slack,
            "twilio" => Self::Twilio,
            "shopify" => Self::Shopify,
            "gitlab" => Self::Gitlab,
            "sendgrid" => Self::Sendgrid,
            "svix" | "clerk" => Self::Svix,
            "generic_hmac_sha256" => Self::GenericHmacSha256,
            _ => return None,
        })
    }
}

/// The verification key derived from `secret`.
enum Secret {
    /// An HMAC key (or GitLab's shared token, compared as bytes).
    Bytes(Vec<u8>),
    /// An uncompressed P-256 point (SendGrid).
    P256(Vec<u8>),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Bytes(_) => "Secret::Bytes(..)",
            Secret::P256(_) => "Secret::P256(..)",
        })
    }
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl Secret {
    fn new(provider: Provider, secret: &str) -> Result<Self, String> {
        if secret.is_empty() {
            return Err("`secret` must not be empty".into());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(match provider {
            Provider::Sendgrid => {
                let text: String = secret
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.starts_with("-----"))
                    .collect();
                let der = b64.decode(text).map_err(|_| {
                    "the sendgrid `secret` must be the verification key (base64 DER or PEM)"
                        .to_owned()
                })?;
                match der.strip_prefix(P256_SPKI_PREFIX) {
                    Some(point) if point.len() == 65 && point[0] == 4 => {
                        Secret::P256(point.to_vec())
                    }
                    _ => {
                        return Err(
                            "the sendgrid verification key is not a P-256 public key".into()
                        );
                    }
                }
            }
            Provider::Svix => {
                let key = secret.strip_prefix("whsec_").unwrap_or(secret);
                Secret::Bytes(b64.decode(key).map_err(|_| {
                    "the svix `secret` must be `whsec_` followed by base64".to_owned()
                })?)
            }
            _ => Secret::Bytes(secret.as_bytes().to_vec()),
        })
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Secret::Bytes(b) | Secret::P256(b) => b,
        }
    }
}

/// Why a webhook failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("the `{0}` header is missing")]
    MissingHeader(&'static str),
    /// A header is not in the scheme's format.
    #[error("the `{0}` header is malformed")]
    Malformed(&'static str),
    /// The signature does not verify.
    #[error("the signature does not match")]
    Mismatch,
    /// The signed timestamp is too far from now.
    #[error("the signed timestamp is more than {0} s from the edge's clock")]
    Stale(u64),
}

/// What is verified of a request.
#[derive(Debug)]
pub struct Signed<'a> {
    /// The URL the sender called (scheme, host, path and query), for Twilio.
    pub url: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request body.
    pub body: &'a [u8],
}

impl Signed<'_> {
    fn header(&self, name: &'static str) -> Result<&str, VerifyError> {
        let v = self
            .headers
            .get(name)
            .ok_or(VerifyError::MissingHeader(name))?;
        v.to_str()
            .map(str::trim)
            .map_err(|_| VerifyError::Malformed(name))
    }
}

/// Whether `tag` is the HMAC of the concatenated `parts` (compared in constant time).
fn hmac_ok(alg: hmac::Algorithm, key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(alg, key));
    for p in parts {
        ctx.update(p);
    }
    bool::from(ctx.sign().as_ref().ct_eq(tag))
}

fn hex(text: &str, header: &'static str) -> Result<Vec<u8>, VerifyError> {
    ::hex::decode(text).map_err(|_| VerifyError::Malformed(header))
}

fn base64(text: &str, header: &'static str) -> Result<Vec<u8>, VerifyError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| VerifyError::Malformed(header))
}

fn timestamp(text: &str, header: &'static str) -> Result<i64, VerifyError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| VerifyError::Malformed(header))
}

fn fresh(ts: i64, now: SystemTime, tolerance: Duration) -> Result<(), VerifyError> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let tol = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.saturating_sub(ts).saturating_abs() > tol {
        return Err(VerifyError::Stale(tolerance.as_secs()));
    }
    Ok(())
}

/// Twilio's URL variants: as received, and with the default port added or removed (Twilio
/// signs the URL as configured, which may or may not name the port).
fn twilio_urls(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // An IPv6 literal's colons are inside brackets.
    let port_at = authority
        .rfind(':')
        .filter(|i| !authority[*i..].contains(']'));
    match port_at {
        Some(i) if &authority[i + 1..] == default => {
            out.push(format!("{scheme}://{}{tail}", &authority[..i]));
        }
        Some(_) => {}
        None => out.push(format!("{scheme}://{authority}:{default}{tail}")),
    }
    out
}

/// Verifies a webhook with `provider`'s scheme at time `now`.
///
/// # Errors
/// Why the webhook is not authentic.
fn verify(
    provider: Provider,
    secret: &Secret,
    req: &Signed<'_>,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let key = secret.bytes();
    let sha256 = hmac::HMAC_SHA256;
    match provider {
        Provider::Github => {
            const H: &str = "x-hub-signature-256";
            let sig = req
                .header(H)?
                .strip_prefix("sha256=")
                .ok_or(VerifyError::Malformed(H))?;
            let tag = hex(sig, H)?;
            if !hmac_ok(sha256, key, &[req.body], &tag) {
                return Err(VerifyError::Mismatch);
            }
        }
        Provider::Shopify => {
            const H: &str = "x-shopify-hmac-sha256";
            let tag = base64(req.header(H)?, H)?;
            if !hmac_ok(sha256, key, &[req.body], &tag) {
                return Err(VerifyError::Mismatch);
            }
        }
        Provider::Stripe => {
            const H: &str = "stripe-signature";
            let mut t = None;
            let mut sigs = Vec::new();
            for item in req.header(H)?.split(',') {
                match item.trim().split_once('=') {
                    Some(("t", v)) => t = Some(v),
                    Some(("v1", v)) => sigs.push(hex(v, H)?),
                    _ => {}
                }
            }
            let t = t.ok_or(VerifyError::Malformed(H))?;
            let ts = timestamp(t, H)?;
            if sigs.is_empty() {
                return Err(VerifyError::Malformed(H));
            }
            let parts: [&[u8]; 3] = [t.as_bytes(), b".", req.body];
            if !sigs.iter().any(|s| hmac_ok(sha256, key, &parts, s)) {
                return Err(VerifyError::Mismatch);
            }
            fresh(ts, now, tolerance)?;
        }
        Provider::Slack => {
            const H: &str = "x-slack-signature";
            const T: &str = "x-slack-request-timestamp";
            let t = req.header(T)?;
            let ts = timestamp(t, T)?;
            let sig = req
                .header(H)?
                .strip_prefix("v0=")
                .ok_or(VerifyError::Malformed(H))?;
            let tag = hex(sig, H)?;
            let parts: [&[u8]; 4] = [b"v0:", t.as_bytes(), b":", req.body];
            if !hmac_ok(sha256, key, &parts, &tag) {
                return Err(VerifyError::Mismatch);
            }
            fresh(ts, now, tolerance)?;
        }
        Provider::Twilio => {
            const H: &str = "x-twilio-signature";
            let tag = base64(req.header(H)?, H)?;
            let sha1 = hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY;
            let url = url::Url::parse(req.url).map_err(|_| VerifyError::Mismatch)?;
            let body_hash = url
                .query_pairs()
                .find(|(k, _)| k == "bodySHA256")
                .map(|(_, v)| v.into_owned());
            let form = req
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    ct.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("application/x-www-form-urlencoded")
                });
            let mut params = String::new();
            if let Some(want) = &body_hash {
                // A JSON (or other) body: the URL is signed, the body by its hash in the URL.
                let got = ::hex::encode(digest::digest(&digest::SHA256, req.body));
                if !bool::from(got.as_bytes().ct_eq(want.to_ascii_lowercase().as_bytes())) {
                    return Err(VerifyError::Mismatch);
                }
            } else if form {
                let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(req.body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                pairs.sort();
                pairs.dedup();
                for (k, v) in pairs {
                    params.push_str(&k);
                    params.push_str(&v);
                }
            }
            let ok = twilio_urls(req.url)
                .iter()
                .any(|u| hmac_ok(sha1, key, &[u.as_bytes(), params.as_bytes()], &tag));
            if !ok {
                return Err(VerifyError::Mismatch);
            }
        }
        Provider::Gitlab => {
            const H: &str = "x-gitlab-token";
            let got = req.header(H)?;
            if !bool::from(got.as_bytes().ct_eq(key)) {
                return Err(VerifyError::Mismatch);
            }
        }
        Provider::Sendgrid => {
            const H: &str = "x-twilio-email-event-webhook-signature";
            const T: &str = "x-twilio-email-event-webhook-timestamp";
            let t = req.header(T)?;
            let ts = timestamp(t, T)?;
            let sig = base64(req.header(H)?, H)?;
            let mut msg = Vec::with_capacity(t.len() + req.body.len());
            msg.extend_from_slice(t.as_bytes());
            msg.extend_from_slice(req.body);
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, key)
                .verify(&msg, &sig)
                .map_err(|_| VerifyError::Mismatch)?;
            fresh(ts, now, tolerance)?;
        }
        Provider::Svix => {
            const H: &str = "svix-signature";
            const T: &str = "svix-timestamp";
            const I: &str = "svix-id";
            let id = req.header(I)?;
            let t = req.header(T)?;
            let ts = timestamp(t, T)?;
            let mut any = false;
            let mut ok = false;
            for item in req.header(H)?.split_whitespace() {
                if let Some(sig) = item.strip_prefix("v1,") {
                    any = true;
                    let tag = base64(sig, H)?;
                    let parts: [&[u8]; 5] = [id.as_bytes(), b".", t.as_bytes(), b".", req.body];
                    ok |= hmac_ok(sha256, key, &parts, &tag);
                }
            }
            if !any {
                return Err(VerifyError::Malformed(H));
            }
            if !ok {
                return Err(VerifyError::Mismatch);
            }
            fresh(ts, now, tolerance)?;
        }
        Provider::GenericHmacSha256 => {
            const H: &str = "x-webhook-signature";
            const T: &str = "x-webhook-timestamp";
            let raw = req.header(H)?;
            let raw = raw.strip_prefix("sha256=").unwrap_or(raw);
            let tag = if raw.len() == 64 {
                hex(raw, H)?
            } else {
                base64(raw, H)?
            };
            let t = match req.headers.get(T) {
                None => None,
                Some(_) => Some(req.header(T)?),
            };
            let ok = match t {
                None => hmac_ok(sha256, key, &[req.body], &tag),
                Some(t) => hmac_ok(sha256, key, &[t.as_bytes(), b".", req.body], &tag),
            };
            if !ok {
                return Err(VerifyError::Mismatch);
            }
            if let Some(t) = t {
                fresh(timestamp(t, T)?, now, tolerance)?;
            }
        }
    }
    Ok(())
}

/// A compiled `verify-webhook`.
#[derive(Debug)]
pub struct WebhookAction {
    provider: Provider,
    secret: Secret,
    enforce: bool,
    tolerance: Duration,
}

/// Compiles the action's config.
///
/// # Errors
/// An unsupported provider, a missing or interpolated secret, a bad `enforce`.
pub fn compile(
    _kind: &str,
    config: &ConfigValue,
    _env: &Arc<ActionEnv>,
) -> Result<Arc<dyn ExternalAction>, String> {
    Ok(Arc::new(WebhookAction::new(config)?))
}

impl WebhookAction {
    /// Compiles the config.
    ///
    /// # Errors
    /// An unsupported provider, a missing or interpolated secret, a bad `enforce`.
    pub fn new(config: &ConfigValue) -> Result<Self, String> {
        let id = config
            .get("provider")
            .and_then(ConfigValue::as_str)
            .ok_or("`provider` is required")?;
        let provider = Provider::from_id(id).ok_or_else(|| {
            format!(
                "verify-webhook provider `{id}` is not supported by this edge (supported: {})",
                PROVIDERS.join(", ")
            )
        })?;
        let secret = config
            .get("secret")
            .and_then(ConfigValue::as_str)
            .ok_or("`secret` is required")?;
        if secret.contains("${") {
            return Err(
                "`secret` interpolates `${…}`, which verify-webhook does not support; write the secret literally"
                    .into(),
            );
        }
        let enforce = match config.get("enforce") {
            None | Some(ConfigValue::Null) => true,
            Some(ConfigValue::Bool(b)) => *b,
            Some(_) => return Err("`enforce` must be a boolean".into()),
        };
        Ok(Self {
            provider,
            secret: Secret::new(provider, secret)?,
            enforce,
            tolerance: TOLERANCE,
        })
    }

    async fn check(&self, cx: RequestCx<'_>) -> Result<ActionOutcome, ActionError> {
        let body: Bytes = buffer_body(cx.body, MAX_BODY).await?;
        let url = public_url(cx.parts, cx.conn.proto.scheme());
        let signed = Signed {
            url: &url,
            headers: &cx.parts.headers,
            body: &body,
        };
        let outcome = verify(
            self.provider,
            &self.secret,
            &signed,
            SystemTime::now(),
            self.tolerance,
        );
        let result = match &outcome {
            Ok(()) => serde_json::json!({"verified": true}),
            Err(e) => serde_json::json!({
                "verified": false,
                "error": {"code": ERR_WEBHOOK, "message": e.to_string()},
            }),
        };
        match outcome {
            Err(e) if self.enforce => Ok(ActionOutcome::Respond(error_page(
                StatusCode::FORBIDDEN,
                ERR_WEBHOOK,
                &format!("webhook verification failed: {e}"),
            ))),
            _ => Ok(ActionOutcome::proceed(
                "verify_webhook",
                Value::from_json(&result),
            )),
        }
    }
}

impl ExternalAction for WebhookAction {
    fn run<'a>(&'a self, cx: RequestCx<'a>) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        Box::pin(self.check(cx))
    }
}

/// The URL the client called: the endpoint's scheme, the request's authority (or `Host`),
/// path and query.
fn public_url(parts: &http::request::Parts, scheme: &str) -> String {
    let host = parts
        .uri
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use ::hmac::{Hmac, Mac as _};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair as _};

    use super::*;

    // Signatures here are computed with the RustCrypto `hmac` crate from each provider's
    // documented scheme (or copied from the provider's documentation), never by `verify`.

    fn mac256(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    fn mac1(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const NOW: u64 = 1_750_000_000;

    fn check(
        provider: &str,
        secret: &str,
        url: &str,
        pairs: &[(&str, &str)],
        body: &[u8],
        now: u64,
    ) -> Result<(), VerifyError> {
        let p = Provider::from_id(provider).unwrap();
        let h = headers(pairs);
        let req = Signed {
            url,
            headers: &h,
            body,
        };
        verify(
            p,
            &Secret::new(p, secret).unwrap(),
            &req,
            at(now),
            TOLERANCE,
        )
    }

    const URL: &str = "https://hooks.example.test/in";

    #[test]
    fn github_documented_example_and_tampering() {
        // docs.github.com "Validating webhook deliveries" test values.
        let secret = "It's a Secret to Everybody";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = [("x-hub-signature-256", sig)];
        assert_eq!(
            check("github", secret, URL, &h, b"Hello, World!", NOW),
            Ok(())
        );
        assert_eq!(
            check("github", secret, URL, &h, b"Hello, World?", NOW),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check("github", "another secret", URL, &h, b"Hello, World!", NOW),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check("github", secret, URL, &[], b"Hello, World!", NOW),
            Err(VerifyError::MissingHeader("x-hub-signature-256"))
        );
        let sha1 = [("x-hub-signature-256", "sha1=757107ea")];
        assert_eq!(
            check("github", secret, URL, &sha1, b"x", NOW),
            Err(VerifyError::Malformed("x-hub-signature-256"))
        );
        let not_hex = [("x-hub-signature-256", "sha256=zz")];
        assert_eq!(
            check("github", secret, URL, &not_hex, b"x", NOW),
            Err(VerifyError::Malformed("x-hub-signature-256"))
        );
    }

    #[test]
    fn stripe_signature_with_timestamp_tolerance() {
        let secret = "whsec_test_stripe";
        let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
        let sign = |t: u64, body: &[u8]| {
            let mut data = format!("{t}.").into_bytes();
            data.extend_from_slice(body);
            hex::encode(mac256(secret.as_bytes(), &data))
        };
        let header = format!("t={NOW},v1={},v0=6ffbb59b", sign(NOW, body));
        let h = [("stripe-signature", header.as_str())];
        assert_eq!(check("stripe", secret, URL, &h, body, NOW + 10), Ok(()));
        // Any listed v1 may match (secret rotation).
        let two = format!("t={NOW},v1={},v1={}", "00".repeat(32), sign(NOW, body));
        assert_eq!(
            check(
                "stripe",
                secret,
                URL,
                &[("stripe-signature", &two)],
                body,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            check("stripe", secret, URL, &h, b"{\"id\":\"evt_2\"}", NOW),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check("stripe", secret, URL, &h, body, NOW + 301),
            Err(VerifyError::Stale(300))
        );
        // A replayed signature with a fresh `t` fails: the timestamp is signed.
        let replay = format!("t={},v1={}", NOW + 1000, sign(NOW, body));
        assert_eq!(
            check(
                "stripe",
                secret,
                URL,
                &[("stripe-signature", &replay)],
                body,
                NOW + 1000
            ),
            Err(VerifyError::Mismatch)
        );
        let no_v1 = format!("t={NOW}");
        assert_eq!(
            check(
                "stripe",
                secret,
                URL,
                &[("stripe-signature", &no_v1)],
                body,
                NOW
            ),
            Err(VerifyError::Malformed("stripe-signature"))
        );
    }

    #[test]
    fn slack_documented_example_and_tolerance() {
        // api.slack.com "Verifying requests from Slack" example.
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = [
            ("x-slack-request-timestamp", "1531420618"),
            (
                "x-slack-signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ];
        assert_eq!(
            check("slack", secret, URL, &h, body, 1_531_420_618 + 60),
            Ok(())
        );
        assert_eq!(
            check("slack", secret, URL, &h, body, NOW),
            Err(VerifyError::Stale(300)),
            "the example is years old"
        );
        let mut tampered = body.to_vec();
        tampered[6] = b'X';
        assert_eq!(
            check("slack", secret, URL, &h, &tampered, 1_531_420_618),
            Err(VerifyError::Mismatch)
        );
        // Computed from the scheme for a fresh timestamp.
        let sig = format!(
            "v0={}",
            hex::encode(mac256(
                secret.as_bytes(),
                format!("v0:{NOW}:hello").as_bytes()
            ))
        );
        let ts = NOW.to_string();
        let fresh = [
            ("x-slack-request-timestamp", ts.as_str()),
            ("x-slack-signature", sig.as_str()),
        ];
        assert_eq!(
            check("slack", secret, URL, &fresh, b"hello", NOW - 299),
            Ok(())
        );
        assert_eq!(
            check("slack", secret, URL, &fresh[1..], b"hello", NOW),
            Err(VerifyError::MissingHeader("x-slack-request-timestamp"))
        );
    }

    #[test]
    fn twilio_documented_example_ports_and_json_bodies() {
        // twilio.com/docs/usage/security example: auth token 12345.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let body = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        let form = ("content-type", "application/x-www-form-urlencoded");
        let h = [("x-twilio-signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="), form];
        assert_eq!(check("twilio", "12345", url, &h, body, NOW), Ok(()));
        // The edge may see the URL with the default port.
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(check("twilio", "12345", with_port, &h, body, NOW), Ok(()));
        let tampered = body
            .iter()
            .copied()
            .map(|b| if b == b'4' { b'5' } else { b })
            .collect::<Vec<_>>();
        assert_eq!(
            check("twilio", "12345", url, &h, &tampered, NOW),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(
                "twilio",
                "12345",
                "https://mycompany.com/other",
                &h,
                body,
                NOW
            ),
            Err(VerifyError::Mismatch)
        );
        // JSON bodies: the URL carries bodySHA256, the signature covers the URL only.
        let json = br#"{"CallSid":"CA1"}"#;
        let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, json));
        let url = format!("https://mycompany.com/hook?bodySHA256={hash}");
        let sig = b64(&mac1(b"12345", url.as_bytes()));
        let h = [
            ("x-twilio-signature", sig.as_str()),
            ("content-type", "application/json"),
        ];
        assert_eq!(check("twilio", "12345", &url, &h, json, NOW), Ok(()));
        assert_eq!(
            check("twilio", "12345", &url, &h, br#"{"CallSid":"CA2"}"#, NOW),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn shopify_and_gitlab() {
        let body = br#"{"id":820982911946154508}"#;
        let sig = b64(&mac256(b"shpss_secret", body));
        let h = [("x-shopify-hmac-sha256", sig.as_str())];
        assert_eq!(check("shopify", "shpss_secret", URL, &h, body, NOW), Ok(()));
        assert_eq!(
            check("shopify", "shpss_secret", URL, &h, b"{}", NOW),
            Err(VerifyError::Mismatch)
        );
        let bad = [("x-shopify-hmac-sha256", "%%%")];
        assert_eq!(
            check("shopify", "shpss_secret", URL, &bad, body, NOW),
            Err(VerifyError::Malformed("x-shopify-hmac-sha256"))
        );
        let h = [("x-gitlab-token", "glsecret")];
        assert_eq!(check("gitlab", "glsecret", URL, &h, b"{}", NOW), Ok(()));
        for wrong in ["glsecreT", "glsecre", "glsecret2", ""] {
            assert_eq!(
                check(
                    "gitlab",
                    "glsecret",
                    URL,
                    &[("x-gitlab-token", wrong)],
                    b"{}",
                    NOW
                ),
                Err(VerifyError::Mismatch),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn sendgrid_ecdsa_over_timestamp_and_payload() {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let key = b64(&spki);
        let body = br#"[{"email":"a@example.com","event":"delivered"}]"#;
        let ts = NOW.to_string();
        let mut msg = ts.clone().into_bytes();
        msg.extend_from_slice(body);
        let sig = b64(pair.sign(&rng, &msg).unwrap().as_ref());
        let h = [
            ("x-twilio-email-event-webhook-signature", sig.as_str()),
            ("x-twilio-email-event-webhook-timestamp", ts.as_str()),
        ];
        assert_eq!(check("sendgrid", &key, URL, &h, body, NOW), Ok(()));
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{key}\n-----END PUBLIC KEY-----\n");
        assert_eq!(
            check("sendgrid", &pem, URL, &h, body, NOW),
            Ok(()),
            "PEM key"
        );
        assert_eq!(
            check("sendgrid", &key, URL, &h, b"[]", NOW),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check("sendgrid", &key, URL, &h, body, NOW + 3600),
            Err(VerifyError::Stale(300))
        );
        assert!(Secret::new(Provider::Sendgrid, "bm90IGEga2V5").is_err());
    }

    #[test]
    fn svix_documented_example_and_generic_scheme() {
        // Standard Webhooks / Svix documentation example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let h = [
            ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("svix-timestamp", "1614265330"),
            (
                "svix-signature",
                "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(check("svix", secret, URL, &h, body, 1_614_265_330), Ok(()));
        assert_eq!(check("clerk", secret, URL, &h, body, 1_614_265_330), Ok(()));
        assert_eq!(
            check("svix", secret, URL, &h, body, NOW),
            Err(VerifyError::Stale(300))
        );
        assert_eq!(
            check("svix", secret, URL, &h, br#"{"test": 1}"#, 1_614_265_330),
            Err(VerifyError::Mismatch)
        );

        let key = "generic-secret-0123456789";
        let body = b"payload";
        let hexsig = format!("sha256={}", hex::encode(mac256(key.as_bytes(), body)));
        let plain = [("x-webhook-signature", hexsig.as_str())];
        assert_eq!(
            check("generic_hmac_sha256", key, URL, &plain, body, NOW),
            Ok(())
        );
        let b64sig = b64(&mac256(key.as_bytes(), body));
        let plain64 = [("x-webhook-signature", b64sig.as_str())];
        assert_eq!(
            check("generic_hmac_sha256", key, URL, &plain64, body, NOW),
            Ok(())
        );
        assert_eq!(
            check("generic_hmac_sha256", key, URL, &plain, b"payload!", NOW),
            Err(VerifyError::Mismatch)
        );
        let ts = NOW.to_string();
        let tsig = hex::encode(mac256(key.as_bytes(), format!("{ts}.payload").as_bytes()));
        let timed = [
            ("x-webhook-signature", tsig.as_str()),
            ("x-webhook-timestamp", ts.as_str()),
        ];
        assert_eq!(
            check("generic_hmac_sha256", key, URL, &timed, body, NOW),
            Ok(())
        );
        assert_eq!(
            check("generic_hmac_sha256", key, URL, &timed, body, NOW + 600),
            Err(VerifyError::Stale(300))
        );
        // Dropping the timestamp header does not turn a timed signature into a plain one.
        assert_eq!(
            check("generic_hmac_sha256", key, URL, &timed[..1], body, NOW),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn config_is_checked_at_bind_time() {
        let cfg = |v: serde_json::Value| ConfigValue::from_json(&v);
        assert!(
            WebhookAction::new(&cfg(
                serde_json::json!({"provider": "github", "secret": "s"})
            ))
            .is_ok()
        );
        let e = WebhookAction::new(&cfg(serde_json::json!({"provider": "zoom", "secret": "s"})))
            .unwrap_err();
        assert!(e.contains("`zoom`") && e.contains("github"), "{e}");
        let e = WebhookAction::new(&cfg(serde_json::json!({"provider": "github"}))).unwrap_err();
        assert!(e.contains("`secret`"), "{e}");
        let e = WebhookAction::new(&ConfigValue::Map(vec![
            ("provider".into(), ConfigValue::Str("github".into())),
            (
                "secret".into(),
                ConfigValue::Template("${secrets.get('v','k')}".into()),
            ),
        ]))
        .unwrap_err();
        assert!(e.contains("interpolates"), "{e}");
        let e = WebhookAction::new(&cfg(
            serde_json::json!({"provider": "github", "secret": "s", "enforce": "no"}),
        ))
        .unwrap_err();
        assert!(e.contains("`enforce`"), "{e}");
        let e = WebhookAction::new(&cfg(
            serde_json::json!({"provider": "svix", "secret": "whsec_!!"}),
        ))
        .unwrap_err();
        assert!(e.contains("whsec_"), "{e}");
        let a = WebhookAction::new(&cfg(
            serde_json::json!({"provider": "gitlab", "secret": "hunter2"}),
        ))
        .unwrap();
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn twilio_url_variants_add_or_drop_the_default_port() {
        assert_eq!(
            twilio_urls("https://a.test/p?q=1"),
            ["https://a.test/p?q=1", "https://a.test:443/p?q=1"]
        );
        assert_eq!(
            twilio_urls("http://a.test:80"),
            ["http://a.test:80", "http://a.test"]
        );
        assert_eq!(
            twilio_urls("https://a.test:8443/p"),
            ["https://a.test:8443/p"]
        );
        assert_eq!(
            twilio_urls("https://[::1]/p"),
            ["https://[::1]/p", "https://[::1]:443/p"]
        );
    }

    #[test]
    fn the_public_url_is_rebuilt_from_the_request() {
        let (parts, ()) = http::Request::post("/hook?x=1")
            .header("host", "hooks.example.test")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            public_url(&parts, "https"),
            "https://hooks.example.test/hook?x=1"
        );
        let (parts, ()) = http::Request::post("https://h2.example.test/p")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(public_url(&parts, "https"), "https://h2.example.test/p");
    }
}
