//! Serving one tunnel stream at the agent: HTTP requests through a pooled client, upgrades and
//! raw TCP through a direct connection to the upstream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::AgentError;
use super::config::{EndpointSpec, read_policy};
use crate::body::{Body, boxed, empty, strip_hop_by_hop};
use crate::pages;
use crate::proto::control::PolicySource;
use crate::proto::meta;

/// Idle limit for raw pipes at the agent.
const PIPE_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An endpoint this agent serves.
pub(crate) struct LocalEndpoint {
    pub spec: EndpointSpec,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// For HTTP upstreams behind a PROXY header: pools per public client address.
    proxied: Option<super::proxied::ProxiedClients>,
    /// Perf: plain `http://` HTTP/1.1 upstreams without a PROXY header use this lean pool
    /// instead of `client` (see `agent/pool.rs`).
    h1: Option<Arc<super::pool::H1Pool>>,
    tls: Arc<rustls::ClientConfig>,
    bound: Mutex<Option<(String, String)>>,
    policy: Mutex<(Option<PolicySource>, Option<SystemTime>)>,
}

impl std::fmt::Debug for LocalEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEndpoint")
            .field("spec", &self.spec)
            .finish()
    }
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl LocalEndpoint {
    pub fn new(spec: EndpointSpec) -> Result<Self, AgentError> {
        let up = &spec.upstream;
        let provider = crate::tls::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(crate::tls::TlsError::from)?;
        let tls = if !up.verify_tls {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(crate::tls::NoVerify::new()))
                .with_no_client_auth()
        } else if up.scheme == "https" {
            builder
                .with_root_certificates(crate::tls::root_store(&[])?)
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let proxied = up
            .proxy_protocol
            .filter(|_| up.scheme != "tcp")
            .map(|v| super::proxied::ProxiedClients::new(v, up.http2, tls.clone()));
        let mut upgrade_tls = tls.clone();
        upgrade_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        // ALPN offers exactly the configured protocol.
        let connector = if up.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .http2_only(up.http2)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        let h1 = (up.scheme == "http" && !up.http2 && proxied.is_none()).then(|| {
            super::pool::H1Pool::new(&up.authority, 256, std::time::Duration::from_secs(90))
        });
        let policy_mtime = spec.policy_file.as_deref().and_then(mtime);
        Ok(Self {
            h1,
            policy: Mutex::new((spec.policy.clone(), policy_mtime)),
            spec,
            client,
            proxied,
            tls: Arc::new(upgrade_tls),
            bound: Mutex::new(None),
        })
    }

    pub fn set_bound(&self, id: &str, url: &str) {
        if let Ok(mut b) = self.bound.lock() {
            *b = Some((id.to_owned(), url.to_owned()));
        }
    }

    pub fn bound_id(&self) -> Option<String> {
        self.bound.lock().ok()?.as_ref().map(|(id, _)| id.clone())
    }

    pub fn bound_url(&self) -> Option<String> {
        self.bound.lock().ok()?.as_ref().map(|(_, u)| u.clone())
    }

    pub fn current_policy(&self) -> Option<PolicySource> {
        self.policy.lock().ok()?.0.clone()
    }

    /// Re-reads the policy file when its modification time changed.
    pub fn reload_policy_if_changed(&self) -> Option<PolicySource> {
        let path = self.spec.policy_file.as_deref()?;
        let now = mtime(path)?;
        let mut p = self.policy.lock().ok()?;
        if p.1 == Some(now) {
            return None;
        }
        match read_policy(path) {
            Ok(src) => {
                *p = (Some(src.clone()), Some(now));
                Some(src)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the policy file");
                p.1 = Some(now);
                None
            }
        }
    }

    pub async fn serve(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() == Method::CONNECT {
            if req.headers().contains_key(meta::UPGRADE) {
                self.serve_upgrade(req).await
            } else {
                self.serve_raw(req).await
            }
        } else {
            self.serve_http(req).await
        }
    }

    fn upstream_error(&self, e: &dyn std::fmt::Display) -> Response<Body> {
        tracing::warn!(endpoint = %self.spec.name, upstream = %self.spec.upstream.authority, error = %e, "upstream unreachable");
        pages::UPSTREAM_UNREACHABLE.response(&format!(
            "{}://{}: {e}",
            self.spec.upstream.scheme, self.spec.upstream.authority
        ))
    }

    async fn serve_http(&self, req: Request<Incoming>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let host = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        let client_addr = client_addr(&parts.headers);
        remove_reserved(&mut parts.headers);
        if let Some(h) = host {
            parts.headers.insert(header::HOST, h);
        }
        if let Some(pool) = &self.h1 {
            // Perf: origin-form straight away (no URI formatted and parsed), lean pool.
            parts.uri = parts.uri.path_and_query().map_or_else(
                || http::Uri::from_static("/"),
                |p| http::Uri::from(p.clone()),
            );
            parts.version = Version::HTTP_11;
            return match pool.request(Request::from_parts(parts, boxed(body))).await {
                Ok(res) => {
                    let (mut parts, body) = res.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    parts.version = Version::HTTP_2;
                    Response::from_parts(parts, body)
                }
                Err(e) => self.upstream_error(&e),
            };
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let up = &self.spec.upstream;
        let uri = match format!("{}://{}{path}", up.scheme, up.authority).parse::<http::Uri>() {
            Ok(u) => u,
            Err(e) => return self.upstream_error(&e),
        };
        let mut out = Request::from_parts(parts, boxed(body));
        *out.uri_mut() = uri;
        *out.version_mut() = if up.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        if up.http2 {
            out.headers_mut().remove(header::HOST);
        }
        let sent = match (&self.proxied, client_addr) {
            (None, _) => self.client.request(out).await,
            (Some(p), Some(src)) => p.client(src).request(out).await,
            (Some(_), None) => {
                return self.upstream_error(&"the stream carries no client address");
            }
        };
        match sent {
            Ok(res) => {
                let (mut parts, body) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                parts.version = Version::HTTP_2;
                Response::from_parts(parts, boxed(body))
            }
            Err(e) => self.upstream_error(&ErrorChain(&e)),
        }
    }

    /// Connects to the upstream; with `proxy_protocol` set, the PROXY header naming `src` (the
    /// public client) goes first, before any TLS.
    async fn connect_upstream(&self, src: Option<SocketAddr>) -> Result<Box<dyn Io>, String> {
        let up = &self.spec.upstream;
        let mut tcp = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            TcpStream::connect(&up.authority),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        if let (Some(v), Some(src)) = (up.proxy_protocol, src) {
            let dst = tcp.peer_addr().map_err(|e| e.to_string())?;
            tcp.write_all(&crate::proxy_protocol::encode(v, src, dst))
                .await
                .map_err(|e| e.to_string())?;
        }
        if up.scheme != "https" {
            return Ok(Box::new(tcp));
        }
        let host = up
            .authority
            .rsplit_once(':')
            .map_or(up.authority.as_str(), |(h, _)| h);
        let name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Box::new(tls))
    }

    async fn serve_raw(&self, req: Request<Incoming>) -> Response<Body> {
        let mut io = match self.connect_upstream(client_addr(req.headers())).await {
            Ok(io) => io,
            Err(e) => return self.upstream_error(&e),
        };
        let name = self.spec.name.clone();
        let agent_tls = self.spec.tls_termination.clone();
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(up) => {
                    let mut tunnel = TokioIo::new(up);
                    let r = match agent_tls {
                        Some(t) => t.pipe(tunnel, &mut io, PIPE_IDLE).await,
                        None => crate::io::copy_with_idle(&mut tunnel, &mut io, PIPE_IDLE)
                            .await
                            .map(drop),
                    };
                    if let Err(e) = r {
                        tracing::debug!(endpoint = %name, error = %e, "pipe ended");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "stream upgrade failed"),
            }
        });
        Response::new(empty())
    }

    async fn serve_upgrade(&self, req: Request<Incoming>) -> Response<Body> {
        let h = req.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (Some(proto), Some(method), Some(path)) =
            (get(meta::UPGRADE), get(meta::METHOD), get(meta::PATH))
        else {
            return pages::UNKNOWN_ENDPOINT_AT_AGENT.response("malformed upgrade stream");
        };
        let host = req.uri().host().map(str::to_owned);
        let io = match self.connect_upstream(client_addr(req.headers())).await {
            Ok(io) => io,
            Err(e) => return self.upstream_error(&e),
        };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(io)).await {
                Ok(x) => x,
                Err(e) => return self.upstream_error(&e),
            };
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut up_req = Request::new(empty());
        *up_req.method_mut() = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        *up_req.uri_mut() = match path.parse() {
            Ok(u) => u,
            Err(e) => return self.upstream_error(&e),
        };
        let mut headers = req.headers().clone();
        remove_reserved(&mut headers);
        strip_hop_by_hop(&mut headers);
        if let Some(host) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
            headers.insert(header::HOST, host);
        }
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(v) = HeaderValue::from_str(&proto) {
            headers.insert(header::UPGRADE, v);
        }
        *up_req.headers_mut() = headers;
        let mut res = match sender.send_request(up_req).await {
            Ok(r) => r,
            Err(e) => return self.upstream_error(&e),
        };
        let status = res.status();
        let mut out_headers = std::mem::take(res.headers_mut());
        strip_hop_by_hop(&mut out_headers);
        if let Ok(v) = HeaderValue::from_str(status.as_str()) {
            out_headers.insert(HeaderName::from_static(meta::STATUS), v);
        }
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let mut r = Response::new(boxed(res.into_body()));
            *r.status_mut() = if status.is_success() {
                StatusCode::BAD_GATEWAY
            } else {
                status
            };
            *r.headers_mut() = out_headers;
            return r;
        }
        let name = self.spec.name.clone();
        tokio::spawn(async move {
            let (Ok(upstream), Ok(tunnel)) =
                (hyper::upgrade::on(res).await, hyper::upgrade::on(req).await)
            else {
                tracing::debug!(endpoint = %name, "upgrade did not complete");
                return;
            };
            let r = crate::io::copy_with_idle(
                &mut TokioIo::new(tunnel),
                &mut TokioIo::new(upstream),
                PIPE_IDLE,
            )
            .await;
            if let Err(e) = r {
                tracing::debug!(endpoint = %name, error = %e, "upgraded stream ended");
            }
        });
        let mut r = Response::new(empty());
        *r.headers_mut() = out_headers;
        r
    }
}

/// The public client's address from the stream metadata.
fn client_addr(h: &http::HeaderMap) -> Option<SocketAddr> {
    h.get(meta::CLIENT_ADDR)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
}

fn remove_reserved(h: &mut http::HeaderMap) {
    let reserved: Vec<HeaderName> = h
        .keys()
        .filter(|k| meta::is_reserved(k.as_str()))
        .cloned()
        .collect();
    for k in reserved {
        h.remove(&k);
    }
}

/// Displays an error with its sources (`a: b: c`).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}
