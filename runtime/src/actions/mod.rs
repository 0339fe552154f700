//! Policy actions the edge carries out with I/O (the engine stops a phase with
//! [`Decision::External`](wicket_engine::Decision::External) for them).
//!
//! At bind time [`compile`] turns each such action's config into an [`ExternalAction`]; a config
//! error refuses the bind. At request time the edge runs the handler with the request
//! ([`RequestCx`]) and the engine resumes the phase with the handler's result recorded as
//! `actions.ngrok.<namespace>` ([`ActionOutcome::Continue`]), or the request ends with the
//! handler's response ([`ActionOutcome::Respond`]) or error ([`ActionError`], fail closed).
//!
//! [`ActionEnv`] holds what handlers share on one edge: an outbound HTTP(S) client, the edge's
//! secret (cookie keys are derived from it) and the operator's `http-request` allow list.

pub mod http_request;
pub mod jwks;
pub mod oauth;
pub mod terminate_tls;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wicket_engine::Value;
use wicket_engine::compile::ir::ConfigValue;

use crate::body::{Body, full};
use crate::policy_hook::{ConnInfo, LocalResponse};
use crate::tls::TlsError;

/// Error code of a request ended because an action's I/O failed (JWKS unreachable, IdP down…).
pub const ERR_ACTION_FAILED: &str = "ERR_WICKET_4320";
/// Error code of a request whose body is over an action's limit.
pub const ERR_BODY_TOO_LARGE: &str = "ERR_WICKET_4321";

/// The outbound HTTP(S) client external actions use.
pub type OutboundClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// Edge-wide facilities for external actions (one per edge, built from the edge config).
pub struct ActionEnv {
    /// Outbound HTTP(S) client (system roots plus the configured extra roots). Prefer
    /// [`ActionEnv::fetch`], which bounds time and size.
    pub client: OutboundClient,
    /// This edge's 32-byte secret (persisted in the data directory); derive purpose-specific keys
    /// from it, never use it directly.
    pub secret: [u8; 32],
    /// Destinations `http-request` may reach (edge setting `http_request_allow`; empty: none).
    pub http_request_allow: http_request::AllowList,
    /// The client TLS configuration of [`ActionEnv::client`] (same roots), for actions that need
    /// their own connector (`http-request` pins the addresses it checked).
    pub tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ActionEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionEnv")
            .field("http_request_allow", &self.http_request_allow)
            .finish_non_exhaustive()
    }
}

/// Why an [`ActionEnv`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ActionEnvError {
    /// The edge secret could not be read or created.
    #[error("edge secret `{path}`: {source}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The edge secret file is not 32 bytes.
    #[error("edge secret `{0}` is corrupt (expected 32 bytes); delete it to generate a new one")]
    CorruptSecret(PathBuf),
    /// A root certificate could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An `http_request_allow` entry is invalid.
    #[error(transparent)]
    Allow(#[from] http_request::AllowError),
}

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No response within the timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// Connecting or exchanging failed.
    #[error("request failed: {0}")]
    Request(String),
    /// The response body is over the limit.
    #[error("response body over {0} bytes")]
    TooLarge(usize),
}

impl ActionEnv {
    /// An environment for an edge whose state lives in `data_dir`: the secret is read from
    /// `data_dir/edge-secret` (created on first use, mode 0600); the client trusts the system
    /// roots and the PEM files in `extra_roots`.
    pub fn load(
        data_dir: &Path,
        extra_roots: &[PathBuf],
        http_request_allow: Vec<String>,
    ) -> Result<Self, ActionEnvError> {
        let secret = load_or_create_secret(&data_dir.join("edge-secret"))?;
        let mut roots = system_roots();
        for path in extra_roots {
            for cert in crate::tls::load_certs(path)? {
                roots.add(cert).map_err(TlsError::from)?;
            }
        }
        Self::with_roots(roots, secret, http_request_allow)
    }

    /// An environment with these roots and secret.
    pub fn with_roots(
        roots: rustls::RootCertStore,
        secret: [u8; 32],
        http_request_allow: Vec<String>,
    ) -> Result<Self, ActionEnvError> {
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::from)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let tls = Arc::new(tls);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .build(connector);
        Ok(Self {
            client,
            secret,
            http_request_allow: http_request::AllowList::parse(&http_request_allow)?,
            tls,
        })
    }

    /// An environment with a random secret, the system roots and nothing allowed to
    /// `http-request`: for tests and tools that do not keep state.
    pub fn ephemeral() -> Result<Self, ActionEnvError> {
        Self::with_roots(system_roots(), rand::random(), Vec::new())
    }

    /// Sends one request with a timeout over the whole exchange and a cap on the response body.
    pub async fn fetch(
        &self,
        req: http::Request<Body>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<http::Response<Bytes>, FetchError> {
        let exchange = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| FetchError::Request(error_chain(&e)))?;
            let (parts, mut body) = res.into_parts();
            let mut buf = bytes::BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| FetchError::Request(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > max_body {
                        return Err(FetchError::TooLarge(max_body));
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Ok(http::Response::from_parts(parts, buf.freeze()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }
}

/// The system's root certificates; unparsable ones are skipped, as browsers do.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn load_or_create_secret(path: &Path) -> Result<[u8; 32], ActionEnvError> {
    let err = |source| ActionEnvError::Secret {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| ActionEnvError::CorruptSecret(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            let secret: [u8; 32] = rand::random();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            match opts.open(path) {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(&secret).map_err(err)?;
                    f.sync_all().map_err(err)?;
                    Ok(secret)
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_secret(path)
                }
                Err(e) => Err(err(e)),
            }
        }
        Err(e) => Err(err(e)),
    }
}

/// What a handler sees of the request.
#[allow(missing_debug_implementations)]
pub struct RequestCx<'a> {
    /// The request head. Handlers must not change it: the engine re-reads it when it resumes.
    pub parts: &'a http::request::Parts,
    /// The request body. A handler that needs it buffers it with [`buffer_body`], which puts
    /// the buffered copy back so the upstream still receives it.
    pub body: &'a mut Body,
    /// The connection.
    pub conn: &'a ConnInfo,
    /// Edge-wide facilities.
    pub env: &'a ActionEnv,
    /// `vars.*` and `actions.ngrok.*` as the suspended phase left them, for a handler that
    /// [reads them](ExternalAction::reads_phase_state); empty for the others.
    pub state: &'a wicket_engine::program::PhaseState,
}

/// How an external action ended.
#[derive(Debug)]
pub enum ActionOutcome {
    /// Continue the phase; `result` is recorded as `actions.ngrok.<namespace>`.
    Continue {
        /// The namespace (`"oauth"`) and its value.
        result: Option<(&'static str, Value)>,
        /// Headers the edge appends to whatever response the request ends with (the upstream's
        /// or a local one), after every response phase: an OAuth session cookie rewritten on the
        /// way through, say.
        response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    },
    /// End the request with this response; it is not forwarded.
    Respond(LocalResponse),
}

impl ActionOutcome {
    /// Continue the phase, recording `value` as `actions.ngrok.<namespace>`, with no response
    /// headers.
    pub fn proceed(namespace: &'static str, value: Value) -> Self {
        Self::Continue {
            result: Some((namespace, value)),
            response_headers: Vec::new(),
        }
    }
}

/// A failure that ends the request closed with `status` and the error-code header.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    /// The response status.
    pub status: StatusCode,
    /// The error code (`ERR_WICKET_…`).
    pub code: &'static str,
    /// What went wrong (sent to the client: no secrets).
    pub message: String,
}

impl ActionError {
    /// A failure of the action's own I/O: 502 with [`ERR_ACTION_FAILED`].
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            code: ERR_ACTION_FAILED,
            message: message.into(),
        }
    }

    /// The error as a response.
    pub fn response(&self) -> LocalResponse {
        crate::engine_policy::error_page(self.status, self.code, &self.message)
    }
}

/// A compiled external action, shared by every request of the endpoint.
pub trait ExternalAction: Send + Sync + std::fmt::Debug {
    /// Carries the action out for one request.
    fn run<'a>(&'a self, cx: RequestCx<'a>) -> BoxFuture<'a, Result<ActionOutcome, ActionError>>;

    /// Whether the handler reads [`RequestCx::state`] (its templates name `vars.*` or
    /// `actions.ngrok.*`); when not, the phase's state is not copied for it.
    fn reads_phase_state(&self) -> bool {
        false
    }
}

/// Compiles the config of an action of type `kind` into its handler; `Err` is a bind-time
/// refusal message.
pub fn compile(
    kind: &str,
    config: &ConfigValue,
    env: &Arc<ActionEnv>,
) -> Result<Arc<dyn ExternalAction>, String> {
    match kind {
        "oauth" | "openid-connect" => oauth::compile(kind, config, env),
        "jwt-validation" => jwks::compile(kind, config, env),
        "verify-webhook" => webhook::compile(kind, config, env),
        "http-request" => http_request::compile(kind, config, env),
        other => Err(format!(
            "the action `{other}` is not supported by this edge"
        )),
    }
}

/// Reads the whole body (at most `limit` bytes) and puts a buffered copy back in its place.
/// Over the limit: 413 with [`ERR_BODY_TOO_LARGE`].
pub async fn buffer_body(body: &mut Body, limit: usize) -> Result<Bytes, ActionError> {
    let mut taken = std::mem::replace(body, crate::body::empty());
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = taken.frame().await {
        let frame = frame.map_err(|e| ActionError {
            status: StatusCode::BAD_REQUEST,
            code: ERR_ACTION_FAILED,
            message: format!("reading the request body failed: {e}"),
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ActionError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: ERR_BODY_TOO_LARGE,
                    message: format!(
                        "the request body is over the policy's limit of {limit} bytes"
                    ),
                });
            }
            buf.extend_from_slice(&data);
        }
    }
    let bytes = buf.freeze();
    *body = full(bytes.clone());
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_secret(&dir.path().join("edge-secret")).unwrap();
        let b = load_or_create_secret(&dir.path().join("edge-secret")).unwrap();
        assert_eq!(a, b);
        std::fs::write(dir.path().join("bad"), b"short").unwrap();
        assert!(matches!(
            load_or_create_secret(&dir.path().join("bad")),
            Err(ActionEnvError::CorruptSecret(_))
        ));
    }

    #[tokio::test]
    async fn buffering_keeps_the_body_and_enforces_the_limit() {
        let mut body = full("hello");
        let got = buffer_body(&mut body, 10).await.unwrap();
        assert_eq!(&got[..], b"hello");
        let again = body.collect().await.unwrap().to_bytes();
        assert_eq!(&again[..], b"hello");

        let mut big = full(vec![b'x'; 11]);
        let e = buffer_body(&mut big, 10).await.unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn the_helpers_futures_can_be_held_by_a_handler() {
        fn send<T: Send>(_: &T) {}
        let env = ActionEnv::ephemeral().unwrap();
        let fetch = env.fetch(
            http::Request::new(crate::body::empty()),
            Duration::from_secs(1),
            10,
        );
        send(&fetch);
        let mut body = crate::body::empty();
        send(&buffer_body(&mut body, 10));
    }

    #[tokio::test]
    async fn fetch_bounds_the_body_and_reports_failures() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n01234567890123456789")
                    .await;
            }
        });
        let env = ActionEnv::ephemeral().unwrap();
        let req = || {
            http::Request::get(format!("http://{addr}/"))
                .body(crate::body::empty())
                .unwrap()
        };
        let ok = env.fetch(req(), Duration::from_secs(5), 20).await.unwrap();
        assert_eq!(&ok.body()[..], b"01234567890123456789");
        let big = env.fetch(req(), Duration::from_secs(5), 19).await;
        assert!(matches!(big, Err(FetchError::TooLarge(19))), "{big:?}");
        let down = env
            .fetch(
                http::Request::get("http://127.0.0.1:9/")
                    .body(crate::body::empty())
                    .unwrap(),
                Duration::from_secs(5),
                10,
            )
            .await;
        assert!(matches!(down, Err(FetchError::Request(_))), "{down:?}");
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let env = Arc::new(ActionEnv::ephemeral().unwrap());
        let e = compile("saml", &ConfigValue::Null, &env).unwrap_err();
        assert!(e.contains("`saml`"), "{e}");
    }
}
