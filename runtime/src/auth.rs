//! Agent authentication at the tunnel handshake, behind the [`Authenticator`] trait so the
//! credential store can replace the config-file token list.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The authenticated identity behind a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable name of the credential (e.g. the token's name in the edge config).
    pub name: String,
}

/// Why authentication failed. The message is sent to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential matches.
    #[error("authentication failed: unknown or revoked authtoken")]
    Unknown,
    /// The credential may not bind this endpoint.
    #[error("authtoken `{principal}` may not bind `{url}`")]
    Forbidden {
        /// The principal's name.
        principal: String,
        /// The URL asked for.
        url: String,
    },
    /// The credential store failed.
    #[error("credential store unavailable: {0}")]
    Store(String),
}

/// Checks authtokens and bind permissions.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Authenticates an authtoken presented in a hello.
    fn authenticate(&self, authtoken: &str) -> Result<Principal, AuthError>;
    /// Checks that `principal` may bind `url`. The default allows everything.
    fn authorize_bind(&self, principal: &Principal, url: &str) -> Result<(), AuthError> {
        let _ = (principal, url);
        Ok(())
    }
}

/// Authtokens listed in the edge configuration, each with a name. Tokens are kept only as
/// SHA-256 digests and compared in constant time.
#[derive(Clone)]
pub struct StaticTokens {
    tokens: Vec<([u8; 32], String)>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|(_, n)| n.as_str()).collect();
        f.debug_struct("StaticTokens")
            .field("names", &names)
            .finish()
    }
}

impl StaticTokens {
    /// Builds the list from `(name, token)` pairs.
    pub fn new<I, N, T>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (N, T)>,
        N: Into<String>,
        T: AsRef<str>,
    {
        Self {
            tokens: pairs
                .into_iter()
                .map(|(n, t)| (digest(t.as_ref()), n.into()))
                .collect(),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator for StaticTokens {
    fn authenticate(&self, authtoken: &str) -> Result<Principal, AuthError> {
        let d = digest(authtoken);
        let mut found = None;
        // Visit every entry so timing does not reveal the position of a match.
        for (h, name) in &self.tokens {
            if bool::from(h.ct_eq(&d)) && found.is_none() {
                found = Some(name);
            }
        }
        match found {
            Some(name) if !authtoken.is_empty() => Ok(Principal { name: name.clone() }),
            _ => Err(AuthError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_tokens() {
        let a = StaticTokens::new([("cam", "tok-1"), ("ops", "tok-2")]);
        assert_eq!(a.authenticate("tok-2").unwrap().name, "ops");
        assert_eq!(a.authenticate("tok-3"), Err(AuthError::Unknown));
        assert_eq!(a.authenticate(""), Err(AuthError::Unknown));
        assert!(!format!("{a:?}").contains("tok-1"));
        let p = a.authenticate("tok-1").unwrap();
        assert!(a.authorize_bind(&p, "https://x.test").is_ok());
    }
}
