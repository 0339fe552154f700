//! Encrypted, authenticated cookies: AES-256-GCM under a key derived from the edge secret.
//!
//! A sealed value is `v1.` + base64url(nonce ‖ ciphertext ‖ tag). The additional authenticated
//! data binds the value to the cookie's purpose and the action's scope, so a flow cookie never
//! opens as a session and one action's session never opens in another action.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest cookie value opened (browsers keep at most 4096 bytes per cookie).
pub(crate) const MAX_COOKIE_VALUE: usize = 4096;
const PREFIX: &str = "v1.";

/// Seals and opens the cookies of one action.
pub(crate) struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        AES_256_GCM.key_len()
    }
}

impl Sealer {
    /// The sealer for `scope` (a per-action label) under the edge `secret`.
    pub(crate) fn new(secret: &[u8; 32], scope: &str) -> Result<Self, String> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"wicket oauth cookies v1");
        let prk = salt.extract(secret);
        let info = [scope.as_bytes()];
        let mut key = [0u8; 32];
        prk.expand(&info, KeyLen)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| "cannot derive the cookie key".to_owned())?;
        let key = UnboundKey::new(&AES_256_GCM, &key)
            .map_err(|_| "cannot build the cookie key".to_owned())?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// Seals `value` as JSON for the cookie `purpose`.
    pub(crate) fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> Option<String> {
        let mut data = serde_json::to_vec(value).ok()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut data,
            )
            .ok()?;
        let mut raw = Vec::with_capacity(NONCE_LEN + data.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&data);
        Some(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// Opens a value sealed for `purpose`; `None` when it is malformed, tampered with, sealed
    /// under another key or for another purpose.
    pub(crate) fn open<T: DeserializeOwned>(&self, purpose: &str, text: &str) -> Option<T> {
        if text.len() > MAX_COOKIE_VALUE {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(text.strip_prefix(PREFIX)?).ok()?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut sealed)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }

    /// Fills `out` with random bytes.
    pub(crate) fn random(&self, out: &mut [u8]) -> bool {
        self.rng.fill(out).is_ok()
    }
}

/// The values of the cookies named `name` in the request (every `Cookie` header).
pub(crate) fn request_cookies<'a>(
    headers: &'a http::HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// Attributes of the cookies an action sets.
#[derive(Debug, Clone)]
pub(crate) struct CookieAttrs {
    /// `Secure` (set unless the endpoint is plain `http://`).
    pub(crate) secure: bool,
    /// `Domain=`, when the operator configured `auth_cookie_domain`.
    pub(crate) domain: Option<String>,
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Max-Age` when given
/// (`Some(0)` deletes the cookie).
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    attrs: &CookieAttrs,
    max_age: Option<u64>,
) -> String {
    let mut s = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if attrs.secure {
        s.push_str("; Secure");
    }
    if let Some(d) = &attrs.domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={age}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct T {
        a: String,
        n: u64,
    }

    fn t() -> T {
        T {
            a: "alice@example.com".into(),
            n: 7,
        }
    }

    #[test]
    fn seals_and_opens() {
        let s = Sealer::new(&[1; 32], "scope").unwrap();
        let v = s.seal("session", &t()).unwrap();
        assert!(v.starts_with("v1."));
        assert_eq!(s.open::<T>("session", &v), Some(t()));
        // Fresh nonce every time.
        assert_ne!(v, s.seal("session", &t()).unwrap());
    }

    #[test]
    fn tampered_values_do_not_open() {
        let s = Sealer::new(&[1; 32], "scope").unwrap();
        let v = s.seal("session", &t()).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&v[3..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let bad = format!("v1.{}", URL_SAFE_NO_PAD.encode(&raw));
            assert_eq!(s.open::<T>("session", &bad), None, "byte {i}");
            raw[i] ^= 1;
        }
        assert_eq!(s.open::<T>("session", &v[..v.len() - 2]), None);
        assert_eq!(s.open::<T>("session", "v1."), None);
        assert_eq!(s.open::<T>("session", "v1.!!!"), None);
        assert_eq!(s.open::<T>("session", &v.replace("v1.", "v2.")), None);
        assert_eq!(s.open::<T>("session", &"A".repeat(5000)), None);
    }

    #[test]
    fn wrong_key_scope_or_purpose_does_not_open() {
        let s = Sealer::new(&[1; 32], "scope").unwrap();
        let v = s.seal("session", &t()).unwrap();
        assert_eq!(
            Sealer::new(&[2; 32], "scope")
                .unwrap()
                .open::<T>("session", &v),
            None
        );
        assert_eq!(
            Sealer::new(&[1; 32], "other")
                .unwrap()
                .open::<T>("session", &v),
            None
        );
        assert_eq!(s.open::<T>("flow", &v), None);
    }

    #[test]
    fn finds_cookies_across_headers() {
        let mut h = http::HeaderMap::new();
        h.append("cookie", "a=1; wk=x".parse().unwrap());
        h.append("cookie", "wk=\"y\";b=2".parse().unwrap());
        let got: Vec<_> = request_cookies(&h, "wk").collect();
        assert_eq!(got, ["x", "y"]);
        assert_eq!(request_cookies(&h, "c").count(), 0);
    }

    #[test]
    fn set_cookie_has_the_safe_attributes() {
        let attrs = CookieAttrs {
            secure: true,
            domain: Some("example.com".into()),
        };
        let c = set_cookie("n", "v", &attrs, Some(0));
        assert_eq!(
            c,
            "n=v; Path=/; HttpOnly; SameSite=Lax; Secure; Domain=example.com; Max-Age=0"
        );
        let plain = CookieAttrs {
            secure: false,
            domain: None,
        };
        assert_eq!(
            set_cookie("n", "v", &plain, None),
            "n=v; Path=/; HttpOnly; SameSite=Lax"
        );
    }
}
