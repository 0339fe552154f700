//! Upstreams on 127.0.0.1:0: HTTP (HTTP/1.1 and HTTP/2) and TCP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::net::{TestBody, full};

/// Serves `handler` on 127.0.0.1:0 (HTTP/1.1 and HTTP/2, told apart by the preface) until the
/// runtime ends; returns the address.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<TestBody>> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// A streaming body of `n` bytes following a fixed pattern, produced lazily in `chunk`-sized
/// frames; `produced` counts the bytes handed out.
pub fn pattern_body(n: u64, chunk: usize, produced: Option<Arc<AtomicU64>>) -> TestBody {
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let produced = produced.clone();
        async move {
            if sent >= n {
                return None;
            }
            let len = (n - sent).min(chunk as u64) as usize;
            let data: Vec<u8> = (0..len).map(|i| ((sent + i as u64) % 251) as u8).collect();
            if let Some(p) = &produced {
                p.fetch_add(len as u64, Ordering::SeqCst);
            }
            Some((
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(
                    Bytes::from(data),
                )),
                sent + len as u64,
            ))
        }
    });
    BodyExt::boxed(http_body_util::StreamBody::new(stream))
}

/// The test upstream, answering with `x-upstream: <tag>` and 200: `/echo` streams the request
/// body back, `/big/<n>` streams n pattern bytes, `/id/<x>` answers `x`, any other path
/// answers `hello from <tag>` and reports what it saw in `x-seen-*` headers.
pub async fn upstream(tag: &'static str) -> SocketAddr {
    serve(move |req: Request<Incoming>| route(tag, req)).await
}

async fn route(tag: &str, req: Request<Incoming>) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    let mut res = if path == "/echo" {
        Response::new(BodyExt::boxed(req.into_body().map_err(Into::into)))
    } else if let Some(n) = path.strip_prefix("/big/") {
        Response::new(pattern_body(n.parse().unwrap_or(0), 64 * 1024, None))
    } else if let Some(id) = path.strip_prefix("/id/") {
        Response::new(full(id.to_owned()))
    } else {
        let h = req.headers();
        let seen = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let wicket: Vec<String> = h
            .keys()
            .filter(|k| k.as_str().starts_with("wicket-"))
            .map(|k| k.to_string())
            .collect();
        let mut r = Response::new(full(format!("hello from {tag}")));
        let hs = r.headers_mut();
        for (k, v) in [
            ("x-seen-host", seen("host")),
            ("x-seen-xff", seen("x-forwarded-for")),
            ("x-seen-forwarded-by", seen("x-forwarded-by")),
            ("x-seen-proto", seen("x-forwarded-proto")),
            ("x-seen-fwd-host", seen("x-forwarded-host")),
            ("x-seen-wicket", wicket.join(",")),
            ("x-seen-version", format!("{:?}", req.version())),
        ] {
            hs.insert(k, v.parse().unwrap());
        }
        r
    };
    res.headers_mut().insert("x-upstream", tag.parse().unwrap());
    *res.status_mut() = StatusCode::OK;
    res
}

/// An upstream answering every request with its body and, when sent, its `header`; returns
/// the address and the count of requests it got.
pub async fn echo_upstream(header: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let addr = serve(move |req: Request<Incoming>| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let value = req.headers().get(header).cloned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut res = Response::new(full(body));
            if let Some(v) = value {
                res.headers_mut().insert(header, v);
            }
            res
        }
    })
    .await;
    (addr, hits)
}

/// A TCP echo server.
pub async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
pub async fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A WebSocket echo upstream (HTTP/1.1 upgrade): text and binary messages come back as sent.
pub async fn ws_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() || m.is_binary() {
                        if ws.send(m).await.is_err() {
                            return;
                        }
                    } else if m.is_close() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
