//! HTTP upstreams behind a PROXY protocol header (`upstream.proxy_protocol: 1|2` on an `http` or
//! `https` endpoint).
//!
//! The header names the public client, and it is written once, at the start of an upstream
//! connection, so an upstream connection belongs to one public client connection. Requests are
//! therefore pooled **per public client address** (`ip:port` of the public connection, from
//! `wicket-client-addr`): requests of one public connection (HTTP/1.1 keep-alive, or the streams
//! of one HTTP/2 connection) share upstream connections, and no upstream connection ever carries
//! requests of two public connections. The pools are dropped, closing their connections, after
//! [`POOL_IDLE`] without a request, and at most [`MAX_POOLS`] are kept (the least recently used
//! goes first).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::body::{Body, BoxError};
use crate::proxy_protocol::{ProxyVersion, encode};

/// A per-client pool is dropped after this long without a request.
pub(crate) const POOL_IDLE: Duration = Duration::from_secs(90);
/// At most this many per-client pools are kept.
pub(crate) const MAX_POOLS: usize = 4096;

/// Connects like [`HttpConnector`], then writes a PROXY header announcing `src` as the source
/// and the upstream's address as the destination.
#[derive(Debug, Clone)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    version: ProxyVersion,
    src: SocketAddr,
}

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let (version, src) = (self.version, self.src);
        Box::pin(async move {
            let mut io = connecting.await?;
            let dst = io.inner().peer_addr()?;
            io.inner_mut().write_all(&encode(version, src, dst)).await?;
            Ok(io)
        })
    }
}

type ProxiedClient = Client<HttpsConnector<ProxyConnector>, Body>;

/// The per-client-address pools of one endpoint.
pub(crate) struct ProxiedClients {
    version: ProxyVersion,
    http2: bool,
    tls: rustls::ClientConfig,
    pools: Mutex<HashMap<SocketAddr, (ProxiedClient, Instant)>>,
}

impl std::fmt::Debug for ProxiedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxiedClients")
            .field("version", &self.version)
            .field("http2", &self.http2)
            .finish_non_exhaustive()
    }
}

impl ProxiedClients {
    /// Pools for an upstream spoken to with HTTP/2 when `http2`, with `tls` for `https://`.
    pub(crate) fn new(version: ProxyVersion, http2: bool, tls: rustls::ClientConfig) -> Self {
        Self {
            version,
            http2,
            tls,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The client whose connections announce `src`.
    pub(crate) fn client(&self, src: SocketAddr) -> ProxiedClient {
        let now = Instant::now();
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((client, used)) = pools.get_mut(&src) {
            *used = now;
            return client.clone();
        }
        pools.retain(|_, (_, used)| now.duration_since(*used) < POOL_IDLE);
        if pools.len() >= MAX_POOLS {
            let oldest = pools
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                pools.remove(&k);
            }
        }
        let client = self.build(src);
        pools.insert(src, (client.clone(), now));
        client
    }

    /// Number of live per-client pools.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pools.lock().map_or(0, |p| p.len())
    }

    fn build(&self, src: SocketAddr) -> ProxiedClient {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = ProxyConnector {
            http,
            version: self.version,
            src,
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http();
        let connector = if self.http2 {
            builder.enable_http2().wrap_connector(connector)
        } else {
            builder.enable_http1().wrap_connector(connector)
        };
        Client::builder(TokioExecutor::new())
            .http2_only(self.http2)
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(16)
            .build(connector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    }

    #[tokio::test]
    async fn one_pool_per_client_address() {
        let p = ProxiedClients::new(ProxyVersion::V1, false, tls());
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:1001".parse().unwrap();
        let _ = p.client(a);
        let _ = p.client(a);
        assert_eq!(p.len(), 1);
        let _ = p.client(b);
        assert_eq!(p.len(), 2);
    }
}
