//! The admin API: a small JSON-over-HTTP/1.1 service for managing credentials and live sessions.
//!
//! The edge serves it on its own listener (loopback by default) with [`serve`], or mounts
//! [`service`] / [`handle`] on a listener it manages itself. Every request needs
//! `Authorization: Bearer <admin key>`; the key is compared in constant time. The routes are
//! listed in [`ROUTES`] and documented in `docs/admin-api.md` (a test keeps the two in sync).
//! [`AdminClient`] is the matching client, used by the `wicket tokens|sessions|audit` commands.

mod client;
mod error;
mod handlers;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use client::{AdminClient, ClientError};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use handlers::{
    AuditList, CreateResponse, CredentialList, RevokeResponse, RotateRequest, RotateResponse,
    SessionList, SessionResponse,
};

use crate::credentials::CredentialService;

/// One route of the admin API: method and path pattern (`{id}` is a path parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path pattern.
    pub path: &'static str,
}

/// Every route the admin API serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/v1/credentials",
    },
    Route {
        method: "GET",
        path: "/v1/credentials",
    },
    Route {
        method: "GET",
        path: "/v1/credentials/{id}",
    },
    Route {
        method: "PATCH",
        path: "/v1/credentials/{id}",
    },
    Route {
        method: "POST",
        path: "/v1/credentials/{id}/rotate",
    },
    Route {
        method: "POST",
        path: "/v1/credentials/{id}/revoke",
    },
    Route {
        method: "GET",
        path: "/v1/sessions",
    },
    Route {
        method: "DELETE",
        path: "/v1/sessions/{id}",
    },
    Route {
        method: "GET",
        path: "/v1/audit",
    },
];

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Most connections served at once by [`serve`].
const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The bearer key that authenticates admin requests.
#[derive(Clone)]
pub struct AdminKey(String);

impl AdminKey {
    /// Shortest accepted key, in bytes.
    pub const MIN_LEN: usize = 16;

    /// Wraps a key from the edge configuration; refuses short keys and keys with characters
    /// that cannot appear in an HTTP header.
    pub fn new(key: impl Into<String>) -> Result<Self, AdminKeyError> {
        let key = key.into();
        if key.len() < Self::MIN_LEN {
            return Err(AdminKeyError::TooShort);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AdminKeyError::BadCharacters);
        }
        Ok(Self(key))
    }

    /// Whether `presented` is this key (constant time in the key's content).
    pub fn verify(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// The key text (for clients).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

/// An unusable admin key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminKeyError {
    /// Shorter than [`AdminKey::MIN_LEN`].
    #[error("the admin key must be at least {} characters long", AdminKey::MIN_LEN)]
    TooShort,
    /// Contains spaces, control or non-ASCII characters.
    #[error("the admin key may only contain printable ASCII characters without spaces")]
    BadCharacters,
}

/// What the admin API works on.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Credentials and live sessions.
    pub credentials: CredentialService,
    /// The bearer key.
    pub key: AdminKey,
}

impl AdminState {
    /// State over a credential service and key.
    pub fn new(credentials: CredentialService, key: AdminKey) -> Self {
        Self { credentials, key }
    }
}

/// Handles one admin request from `peer`.
pub async fn handle<B>(
    state: &AdminState,
    peer: SocketAddr,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    handlers::handle(state, peer, request).await
}

/// A hyper service for connections from `peer`, for an edge that runs its own accept loop.
pub fn service(
    state: Arc<AdminState>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<hyper::body::Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(&state, peer, request).await) }
    })
}

/// Serves the admin API on `listener` until `shutdown` resolves. Connections are HTTP/1.1,
/// at most 64 at a time, with a header read timeout.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let state = Arc::new(state);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return Ok(()),
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return Ok(()),
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Accept errors (EMFILE, aborted handshakes) are transient; back off briefly.
                    tracing::warn!(%error, "admin listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service(Arc::clone(&state), peer);
        tokio::spawn(async move {
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "admin connection ended with an error");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_key_checks_length_characters_and_value() {
        assert_eq!(AdminKey::new("short").unwrap_err(), AdminKeyError::TooShort);
        assert_eq!(
            AdminKey::new("has a space in it!!").unwrap_err(),
            AdminKeyError::BadCharacters
        );
        let key = AdminKey::new("0123456789abcdef").unwrap();
        assert!(key.verify("0123456789abcdef"));
        assert!(!key.verify("0123456789abcdeF"));
        assert!(!key.verify("0123456789abcdef0"));
        assert!(!key.verify(""));
        assert!(!format!("{key:?}").contains("0123"));
    }
}
