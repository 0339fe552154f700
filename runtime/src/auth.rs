//! Agent authentication at the tunnel handshake, behind the [`Authenticator`] trait so the
//! credential store can replace the config-file token list.
//!
//! The edge calls [`Authenticator::authenticate`] with the hello's authtoken before it allocates
//! any session state, checks every bind with [`Authenticator::authorize_bind`], and holds the
//! [`SessionLease`] from [`Authenticator::open_session`] for the session's lifetime: it learns the
//! session's endpoints, can close the session at any time (revocation) and is dropped at the end.

use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The authenticated identity behind a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable name of the credential (e.g. the token's name in the edge config). Endpoints are
    /// owned by this name: only the same principal can take an endpoint over after a reconnect.
    pub name: String,
    /// The exact credential that authenticated, when it differs from the owner name (a store
    /// credential of a rotation lineage is owned by the lineage's first credential). Session
    /// admission and revocation key on this, so revoking an old token never closes a session
    /// that authenticated with its replacement.
    pub credential: Option<String>,
}

impl Principal {
    /// A principal named `name` whose credential is the name itself.
    #[must_use]
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            credential: None,
        }
    }
}

/// Why authentication or a bind failed. The message is sent to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential matches.
    #[error("authentication failed: unknown or revoked authtoken")]
    Unknown,
    /// The credential may not be used now or from here (the message explains).
    #[error("authentication failed: {0}")]
    Refused(String),
    /// The credential may not bind this endpoint.
    #[error("authtoken `{principal}` may not bind `{url}`")]
    Forbidden {
        /// The principal's name.
        principal: String,
        /// The URL asked for.
        url: String,
    },
    /// The credential's bind rules do not allow the endpoint; the message names the endpoint
    /// and the rule set, and reaches the agent in the refusal.
    #[error("{0}")]
    BindDenied(String),
    /// The credential store failed.
    #[error("credential store unavailable: {0}")]
    Store(String),
}

/// Checks authtokens and binds.
///
/// `authenticate` and `authorize_bind` are synchronous (the credential store is an embedded
/// database); the edge runs `authenticate` on the blocking pool under the handshake deadline.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Authenticates an authtoken presented in a hello.
    fn authenticate(&self, authtoken: &str) -> Result<Principal, AuthError>;

    /// Checks that `principal` may bind `url` (canonical, e.g. `https://a.example.test`,
    /// `tcp://example.test:20001`). The default allows everything.
    fn authorize_bind(&self, principal: &Principal, url: &str) -> Result<(), AuthError> {
        let _ = (principal, url);
        Ok(())
    }

    /// Called once a session is established for `principal` from `peer`; the lease lives as
    /// long as the session. The default lease never closes the session.
    fn open_session(&self, principal: &Principal, peer: SocketAddr) -> Box<dyn SessionLease> {
        let _ = (principal, peer);
        Box::new(OpenLease)
    }
}

/// A live session as seen by the credential system; dropped when the session ends.
pub trait SessionLease: Send + Sync + std::fmt::Debug {
    /// Told the session's current endpoint URLs after every bind and unbind.
    fn endpoints_changed(&self, urls: &[String]) {
        let _ = urls;
    }

    /// Resolves when the session must be closed (revocation, operator disconnect), with the
    /// reason sent to the agent. The agent is told not to reconnect. The default never resolves.
    fn closed(&self) -> BoxFuture<'_, String> {
        Box::pin(std::future::pending())
    }
}

/// A lease that never closes the session.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenLease;

impl SessionLease for OpenLease {}

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

    /// The name of the token, if it is listed.
    pub fn check(&self, authtoken: &str) -> Result<String, AuthError> {
        let d = digest(authtoken);
        let mut found = None;
        // Visit every entry so timing does not reveal the position of a match.
        for (h, name) in &self.tokens {
            if bool::from(h.ct_eq(&d)) && found.is_none() {
                found = Some(name);
            }
        }
        match found {
            Some(name) if !authtoken.is_empty() => Ok(name.clone()),
            _ => Err(AuthError::Unknown),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator for StaticTokens {
    fn authenticate(&self, authtoken: &str) -> Result<Principal, AuthError> {
        self.check(authtoken).map(Principal::named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_tokens() {
        let a = StaticTokens::new([("cam", "tok-1"), ("ops", "tok-2")]);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(a.authenticate("tok-2").unwrap().name, "ops");
        assert_eq!(a.check("tok-3"), Err(AuthError::Unknown));
        assert_eq!(a.check(""), Err(AuthError::Unknown));
        assert!(!format!("{a:?}").contains("tok-1"));
        let p = a.authenticate("tok-1").unwrap();
        assert!(a.authorize_bind(&p, "https://x.test").is_ok());
        let lease = a.open_session(&p, peer);
        lease.endpoints_changed(&[]);
    }
}
