//! A lean keep-alive pool of HTTP/1.1 connections to a plain `http://` upstream.
//!
//! The agent forwards every tunnel stream of an `http://` endpoint to its upstream. hyper-util's
//! pooled client costs, per request, a task spawned to wait for the connection to become idle,
//! a boxed request future, a race between the pool checkout and a speculative connect, and
//! pool-key clones (profiled in `runtime/BENCHMARK.md`). This pool keeps idle
//! `SendRequest`s in a list: a request takes one (or connects), and the connection goes back
//! when the response body has been read to the end. A body dropped before its end closes the
//! connection instead (its framing state is unknown). Each connection has exactly one task: the
//! hyper connection driver.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::Body;

/// Connect timeout, as for the other upstream clients.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request to the upstream failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    #[error("tcp connect error: {0}")]
    Connect(std::io::Error),
    #[error("tcp connect error: timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("http/1.1 handshake: {0}")]
    Handshake(hyper::Error),
    #[error("{0}")]
    Request(hyper::Error),
}

/// Idle connections to one upstream `host:port`.
#[derive(Debug)]
pub(crate) struct H1Pool {
    authority: String,
    host: Option<HeaderValue>,
    idle: Mutex<Vec<(SendRequest<Body>, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl H1Pool {
    /// A pool for `authority` (`host:port`), keeping at most `max_idle` idle connections for at
    /// most `idle_timeout` each.
    pub fn new(authority: &str, max_idle: usize, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            authority: authority.to_owned(),
            host: HeaderValue::from_str(authority).ok(),
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        })
    }

    /// Sends `req` (origin-form URI, `Host` set by the caller or defaulted to the upstream's
    /// authority) on an idle connection, or on a new one.
    pub async fn request(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, PoolError> {
        if !req.headers().contains_key(header::HOST)
            && let Some(h) = &self.host
        {
            req.headers_mut().insert(header::HOST, h.clone());
        }
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(res) => return Ok(self.pooled(res, sender)),
                Err(mut e) => match e.take_message() {
                    // Not written (the connection closed while idle): try another.
                    Some(r) => req = r,
                    None => return Err(PoolError::Request(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let res = sender.send_request(req).await.map_err(PoolError::Request)?;
        Ok(self.pooled(res, sender))
    }

    fn take_idle(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((s, since)) = idle.pop() {
            if !s.is_closed() && since.elapsed() < self.idle_timeout {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        idle.retain(|(s, since)| !s.is_closed() && now.duration_since(*since) < self.idle_timeout);
        if idle.len() < self.max_idle {
            idle.push((sender, now));
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, PoolError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| PoolError::ConnectTimeout(CONNECT_TIMEOUT))?
            .map_err(PoolError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(PoolError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn pooled(
        self: &Arc<Self>,
        res: Response<Incoming>,
        sender: SendRequest<Body>,
    ) -> Response<Body> {
        res.map(|inner| {
            crate::body::boxed(PooledBody {
                inner,
                ended: false,
                back: Some((sender, Arc::downgrade(self))),
            })
        })
    }
}

/// A response body that hands its connection back to the pool once read to the end.
struct PooledBody {
    inner: Incoming,
    ended: bool,
    back: Option<(SendRequest<Body>, Weak<H1Pool>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((sender, pool)) = self.back.take()
            && let Some(pool) = pool.upgrade()
        {
            pool.put_idle(sender);
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => {
                self.ended = true;
                self.release();
            }
            Poll::Ready(Some(Err(_))) => {
                // The connection is in an unknown state: never reuse it.
                self.back = None;
            }
            _ => {}
        }
        r.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body (e.g. `204`, `HEAD`) may never be polled; a body dropped before its end
        // leaves the connection mid-message, and dropping the sender closes it.
        if self.ended || self.inner.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An upstream counting its accepted connections; `/close` answers with `Connection: close`.
    async fn upstream() -> (String, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let host = req
                            .headers()
                            .get(header::HOST)
                            .map(|h| h.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let mut res =
                            Response::new(crate::body::full(format!("{} {host}", req.uri())));
                        if req.uri().path() == "/close" {
                            res.headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        Ok::<_, std::convert::Infallible>(res)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn get(path: &str) -> Request<Body> {
        Request::builder()
            .uri(path)
            .body(crate::body::empty())
            .unwrap()
    }

    async fn text(res: Response<Body>) -> String {
        let b = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn reuses_a_connection_once_the_body_is_read() {
        let (addr, accepted) = upstream().await;
        let pool = H1Pool::new(&addr, 8, Duration::from_secs(60));
        for i in 0..5 {
            let res = pool.request(get(&format!("/x?{i}"))).await.unwrap();
            assert_eq!(text(res).await, format!("/x?{i} {addr}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_the_host_header() {
        let (addr, accepted) = upstream().await;
        let pool = H1Pool::new(&addr, 8, Duration::from_secs(60));
        let a = pool.request(get("/a")).await.unwrap();
        let mut req = get("/b");
        req.headers_mut().insert(
            header::HOST,
            HeaderValue::from_static("public.example.test"),
        );
        let b = pool.request(req).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(text(b).await, "/b public.example.test");
        assert_eq!(text(a).await, format!("/a {addr}"));
    }

    #[tokio::test]
    async fn a_body_dropped_early_is_not_reused_and_closed_connections_are_skipped() {
        let (addr, accepted) = upstream().await;
        let pool = H1Pool::new(&addr, 8, Duration::from_secs(60));
        drop(pool.request(get("/a")).await.unwrap());
        assert_eq!(
            text(pool.request(get("/b")).await.unwrap()).await,
            format!("/b {addr}")
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // The upstream closes this one after the response: the next request reconnects.
        assert_eq!(
            text(pool.request(get("/close")).await.unwrap()).await,
            format!("/close {addr}")
        );
        assert_eq!(
            text(pool.request(get("/c")).await.unwrap()).await,
            format!("/c {addr}")
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unreachable_upstream_is_a_connect_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let pool = H1Pool::new(&addr, 8, Duration::from_secs(60));
        let e = pool.request(get("/")).await.unwrap_err();
        assert!(matches!(e, PoolError::Connect(_)), "{e}");
    }
}
