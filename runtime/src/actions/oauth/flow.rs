//! The pieces of an authorization-code login: PKCE, `state`/`nonce`, the flow cookie's content
//! and the open-redirect-safe return path.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a login may take between the redirect to the provider and the callback.
pub(crate) const FLOW_TTL_SECS: u64 = 600;
/// The longest return path remembered.
const MAX_RETURN_PATH: usize = 2048;

/// What the flow cookie holds while the user is at the provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Flow {
    /// The `state` sent to the provider.
    pub(crate) state: String,
    /// The PKCE `code_verifier`.
    pub(crate) verifier: String,
    /// The OIDC `nonce` (empty for plain OAuth).
    pub(crate) nonce: String,
    /// Where to go after the login: a same-origin path.
    pub(crate) ret: String,
    /// When the flow started (Unix seconds).
    pub(crate) iat: u64,
}

impl Flow {
    /// Whether the flow is too old at `now`.
    pub(crate) fn expired(&self, now: u64) -> bool {
        now.saturating_sub(self.iat) > FLOW_TTL_SECS || self.iat > now.saturating_add(60)
    }

    /// Whether `state` (from the callback) is this flow's, compared in constant time.
    pub(crate) fn state_matches(&self, state: &str) -> bool {
        !self.state.is_empty()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                self.state.as_bytes(),
                state.as_bytes(),
            ))
    }
}

/// 32 random bytes as base64url (43 characters): states, nonces, PKCE verifiers.
pub(crate) fn token(random: impl FnOnce(&mut [u8]) -> bool) -> Option<String> {
    let mut b = [0u8; 32];
    random(&mut b).then(|| URL_SAFE_NO_PAD.encode(b))
}

/// The PKCE S256 `code_challenge` of `verifier` (RFC 7636 §4.2).
pub(crate) fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `candidate` when it is a safe same-origin path to return to, else `/`.
///
/// Accepted: an absolute path (`/…`) that is not protocol-relative (`//host`), contains no
/// backslash (browsers read `/\host` as `//host`), no control character or whitespace (browsers
/// strip tabs and newlines, which would turn `/\t/host` into `//host`) and is not too long.
pub(crate) fn safe_return_path(candidate: &str) -> String {
    let ok = candidate.starts_with('/')
        && !candidate.starts_with("//")
        && candidate.len() <= MAX_RETURN_PATH
        && !candidate
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace());
    if ok {
        candidate.to_owned()
    } else {
        "/".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn tokens_are_random_and_url_safe() {
        let rng = ring::rand::SystemRandom::new();
        let fill = |b: &mut [u8]| ring::rand::SecureRandom::fill(&rng, b).is_ok();
        let a = token(fill).unwrap();
        let b = token(fill).unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(token(|_| false), None);
    }

    #[test]
    fn state_is_compared_exactly() {
        let f = Flow {
            state: "abc".into(),
            verifier: "v".into(),
            nonce: String::new(),
            ret: "/".into(),
            iat: 1000,
        };
        assert!(f.state_matches("abc"));
        assert!(!f.state_matches("abd"));
        assert!(!f.state_matches("ab"));
        assert!(!f.state_matches(""));
        let empty = Flow {
            state: String::new(),
            ..f.clone()
        };
        assert!(!empty.state_matches(""));
        assert!(!f.expired(1000 + FLOW_TTL_SECS));
        assert!(f.expired(1001 + FLOW_TTL_SECS));
        assert!(f.expired(100));
    }

    #[test]
    fn return_paths_stay_on_this_origin() {
        for ok in ["/", "/a/b?x=1&y=%2F", "/%2F%2Fevil.example", "/a//b"] {
            assert_eq!(safe_return_path(ok), ok);
        }
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /x",
            "evil.example",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_return_path(bad), "/", "{bad:?}");
        }
        assert_eq!(safe_return_path(&format!("/{}", "a".repeat(3000))), "/");
    }
}
