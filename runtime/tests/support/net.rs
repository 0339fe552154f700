//! Timeouts, HTTP/1.1 and HTTP/2 clients (plain or TLS) and raw stream helpers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::tls::Certs;
use super::upstream::pattern_body;

/// Upper bound for any single await in these tests.
pub const T: Duration = Duration::from_secs(60);

/// Awaits `f` with the standard timeout, panicking with `what` when it expires.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// The body type of the test clients and upstreams.
pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A body holding `b` (none at all when `b` is empty).
pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A response, its body read to the end.
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The HTTP version it came over.
    pub version: http::Version,
}

impl Reply {
    /// The value of header `n`, or `""` when absent (or not text).
    pub fn header(&self, n: &str) -> &str {
        self.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Every `set-cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

/// Reads `res` to the end.
pub async fn collect(res: Response<Incoming>) -> Reply {
    let (parts, body) = res.into_parts();
    let body = within("body", body.collect()).await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    }
}

/// Sends `req` over a fresh HTTP/1.1 connection on `io` and reads the response; `Err` naming
/// the stage (`handshake`, `request`, `body`) that failed.
pub async fn exchange<I>(io: TokioIo<I>, req: Request<TestBody>) -> Result<Reply, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut s, conn) = within("handshake", hyper::client::conn::http1::handshake(io))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let res = within("response", s.send_request(req))
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = res.into_parts();
    let body = within("body", body.collect())
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

/// One request over a fresh HTTP/1.1 connection to `addr` with `Host: host`, the extra
/// `headers` and `body`.
pub async fn http1(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    exchange(TokioIo::new(tcp), b.body(full(body)).unwrap())
        .await
        .unwrap()
}

/// One GET over a fresh HTTP/1.1 connection to `addr` with `Host: host` and the extra `headers`.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    http1(addr, "GET", host, path, headers, Bytes::new()).await
}

/// A client connection to an edge listener, HTTP/1.1 or HTTP/2, plain or TLS.
pub enum Conn {
    /// HTTP/1.1.
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    /// HTTP/2.
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

/// Connects to `addr`; over TLS (trusting the dev CA, SNI `host`) when `tls` is given, asking
/// for (and checking) ALPN `h2` or `http/1.1`.
pub async fn connect(addr: SocketAddr, tls: Option<(&Certs, &str)>, h2: bool) -> Conn {
    let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    match tls {
        None => handshake(TokioIo::new(tcp), h2).await,
        Some((c, host)) => {
            let mut cfg = rustls::ClientConfig::builder()
                .with_root_certificates(c.roots.clone())
                .with_no_client_auth();
            cfg.alpn_protocols = vec![if h2 {
                b"h2".to_vec()
            } else {
                b"http/1.1".to_vec()
            }];
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
            let stream = within(
                "tls connect",
                tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
            )
            .await
            .unwrap();
            assert_eq!(
                stream.get_ref().1.alpn_protocol(),
                Some(if h2 { &b"h2"[..] } else { &b"http/1.1"[..] })
            );
            handshake(TokioIo::new(stream), h2).await
        }
    }
}

async fn handshake<I>(io: TokioIo<I>, h2: bool) -> Conn
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        let (s, conn) = within(
            "h2 handshake",
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        Conn::H2(s)
    } else {
        let (s, conn) = within("h1 handshake", hyper::client::conn::http1::handshake(io))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        Conn::H1(s)
    }
}

impl Conn {
    /// Sends `req` (as HTTP/2 on an HTTP/2 connection) and returns the response head.
    pub async fn send(&mut self, req: Request<TestBody>) -> Response<Incoming> {
        match self {
            Conn::H1(s) => {
                within("h1 ready", s.ready()).await.unwrap();
                within("h1 response", s.send_request(req)).await.unwrap()
            }
            Conn::H2(s) => {
                let mut req = req;
                *req.version_mut() = http::Version::HTTP_2;
                within("h2 response", s.send_request(req)).await.unwrap()
            }
        }
    }

    /// POSTs `n` pattern bytes ([`pattern_body`], counted into `produced` as they are handed
    /// out) to the test upstream's `/echo` on `host` over HTTPS; checks the 200 and returns the
    /// echoed body, unread.
    pub async fn post_echo(&mut self, host: &str, n: u64, produced: &Arc<AtomicU64>) -> Incoming {
        let body = pattern_body(n, 64 * 1024, Some(produced.clone()));
        let req = request(self, "https", host, "/echo", "POST", body);
        let res = self.send(req).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.into_body()
    }

    /// A GET of `path` on `host`, read to the end.
    pub async fn get(&mut self, scheme: &str, host: &str, path: &str) -> Reply {
        let req = request(self, scheme, host, path, "GET", full(Bytes::new()));
        let res = self.send(req).await;
        collect(res).await
    }
}

/// A request for `conn`: origin form with `Host` over HTTP/1.1, absolute form over HTTP/2.
pub fn request(
    conn: &Conn,
    scheme: &str,
    host: &str,
    path: &str,
    method: &str,
    body: TestBody,
) -> Request<TestBody> {
    let mut b = Request::builder().method(method);
    b = match conn {
        Conn::H1(_) => b.uri(path).header("host", host),
        Conn::H2(_) => b.uri(format!("{scheme}://{host}{path}")),
    };
    b.body(body).unwrap()
}

/// One-shot GET over a fresh connection.
pub async fn get(
    addr: SocketAddr,
    tls: Option<(&Certs, &str)>,
    h2: bool,
    host: &str,
    path: &str,
) -> Reply {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut c = connect(addr, tls, h2).await;
    c.get(scheme, host, path).await
}

/// The cookies a test browser keeps: host → name → value (no paths, domains or expiry).
pub type CookieJar = BTreeMap<String, BTreeMap<String, String>>;

/// A browser's request for `url`: origin form with `Host`, the extra `headers` and the jar's
/// cookies for the host, no body; and the host.
pub fn browser_request(
    jar: &CookieJar,
    method: &str,
    url: &url::Url,
    headers: &[(&str, &str)],
) -> (String, Request<TestBody>) {
    let host = url.host_str().unwrap().to_owned();
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(cookies) = jar.get(&host)
        && !cookies.is_empty()
    {
        let line: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        req = req.header("cookie", line.join("; "));
    }
    (host, req.body(full(Bytes::new())).unwrap())
}

/// Keeps the cookies `reply` sets for `host`; `Max-Age=0` deletes one.
pub fn store_cookies(jar: &mut CookieJar, host: &str, reply: &Reply) {
    for c in reply.set_cookies() {
        let (k, v) = c.split(';').next().unwrap().split_once('=').unwrap();
        let cookies = jar.entry(host.to_owned()).or_default();
        if c.contains("Max-Age=0") {
            cookies.remove(k);
        } else {
            cookies.insert(k.to_owned(), v.to_owned());
        }
    }
}

/// Over a WebSocket to an echo server ([`super::upstream::ws_echo`]): `n` text messages
/// (`<prefix> <i>`) and then `big` as one binary message each come back unchanged; then closes.
pub async fn ws_echo_exchange<S>(ws: &mut WebSocketStream<S>, prefix: &str, n: usize, big: Vec<u8>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for i in 0..n {
        let msg = format!("{prefix} {i}");
        within("ws send", ws.send(Message::text(msg.clone())))
            .await
            .unwrap();
        let echoed = within("ws recv", ws.next()).await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), msg);
    }
    within("ws send big", ws.send(Message::binary(big.clone())))
        .await
        .unwrap();
    let echoed = within("ws recv big", ws.next()).await.unwrap().unwrap();
    assert_eq!(echoed.into_data().as_ref(), &big[..]);
    within("ws close", ws.close(None)).await.unwrap();
}

/// Reads a raw stream to its end.
pub async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut v = Vec::new();
    within("read to end", r.read_to_end(&mut v)).await.unwrap();
    v
}
