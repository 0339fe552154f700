//! Public listeners: HTTP, HTTPS (with `tls://` passthrough by SNI), TCP endpoints, metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::registry::Route;
use super::{IpGuard, Shared};
use crate::actions::terminate_tls;
use crate::body::{Body, boxed, empty, full, strip_hop_by_hop};
use crate::io::Prefixed;
use crate::pages::{self, ErrorPage};
use crate::policy_hook::{
    ActionResponseHeaders, ConnDecision, ConnInfo, ForwardFailure, LocalResponse, ReqDecision,
    ResDecision,
};
use crate::proto::control::EndpointProto;
use crate::proto::meta;
use crate::routing::normalize_host;
use crate::sni::{self, ClientHelloSni};
use crate::tls::TlsInfo;

type HttpResult = Result<Response<Body>, std::io::Error>;

/// Accepts with per-IP admission; returns `None` when shutting down.
async fn accept(
    shared: &Arc<Shared>,
    listener: &TcpListener,
) -> Option<(TcpStream, SocketAddr, IpGuard)> {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let Some(guard) = shared.admit(peer.ip()) else {
                        tracing::debug!(%peer, "connection limit per client ip reached");
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    return Some((tcp, peer, guard));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return None,
        }
    }
}

fn http_builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let limits = &shared.cfg.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        // RFC 8441: WebSocket (and other protocols) over HTTP/2 extended CONNECT.
        .enable_connect_protocol()
        .initial_stream_window_size(crate::proto::STREAM_WINDOW)
        .initial_connection_window_size(crate::proto::CONN_WINDOW);
    b
}

pub(crate) async fn serve_http(shared: Arc<Shared>, listener: TcpListener) {
    while let Some((tcp, peer, guard)) = accept(&shared, &listener).await {
        let local = tcp.local_addr().unwrap_or(peer);
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_http_conn(
                shared,
                TokioIo::new(tcp),
                peer,
                local,
                EndpointProto::Http,
                None,
                None,
            )
            .await;
            drop(guard);
        });
    }
}

async fn serve_http_conn<I>(
    shared: Arc<Shared>,
    io: TokioIo<I>,
    peer: SocketAddr,
    local: SocketAddr,
    proto: EndpointProto,
    sni: Option<String>,
    tls: Option<ConnTls>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = http_builder(&shared);
    let svc_shared = shared.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = svc_shared.clone();
        let sni = sni.clone();
        let tls = tls.clone();
        async move { proxy_http(shared, req, peer, local, proto, sni, tls).await }
    });
    // A connection on which no byte moves either way for `limits.idle_timeout` is closed
    // (HTTP/1.1 keep-alive between requests, an HTTP/2 connection without traffic, a stalled
    // exchange). Upgraded connections leave hyper and are watched by their pipe.
    let (io, clock) = crate::io::Activity::new(io.into_inner());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::debug!(%peer, error = %e, "public connection ended with an error");
        },
        () = clock.idle_for(shared.cfg.limits.idle_timeout) => {
            tracing::debug!(%peer, "idle public connection closed");
        }
    }
}

pub(crate) async fn serve_https(shared: Arc<Shared>, listener: TcpListener) {
    while let Some((tcp, peer, guard)) = accept(&shared, &listener).await {
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_tls_conn(shared, tcp, peer).await;
            drop(guard);
        });
    }
}

/// The TLS side of an HTTPS connection: which endpoint's `on_tcp_connect` ran for it and what
/// the handshake negotiated.
#[derive(Clone, Debug)]
struct ConnTls {
    info: Arc<TlsInfo>,
    /// The endpoint the ClientHello's SNI named (its `on_tcp_connect` ran before the handshake).
    endpoint: Option<String>,
}

/// One connection on the HTTPS/TLS listener: peek the ClientHello, route by SNI (`tls://`
/// endpoints first), run the endpoint's `on_tcp_connect`, and terminate TLS with the edge's
/// certificates or with the settings of the endpoint's `terminate-tls` action.
async fn serve_tls_conn(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let header_timeout = shared.cfg.limits.header_timeout;
    let (tcp, prefix, name) =
        match tokio::time::timeout(header_timeout, read_client_hello(tcp)).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "reading client hello failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "client hello timed out");
                return;
            }
        };
    let local = tcp.local_addr().unwrap_or(peer);
    // The ClientHello, kept for `conn.tls.ja4_fingerprint` (a cheap reference-counted clone).
    let hello = prefix.clone();
    let io = Prefixed::new(prefix, tcp);
    let passthrough = name
        .as_deref()
        .and_then(|n| shared.registry().lookup_host(EndpointProto::Tls, n));
    if let Some(route) = passthrough {
        return pipe_raw(&shared, route, io, peer, local, name, Some(hello)).await;
    }
    let Some(default) = shared.public_tls.clone() else {
        return;
    };
    let route = name
        .as_deref()
        .and_then(|n| shared.registry().lookup_host(EndpointProto::Https, n));
    let mut info = ConnInfo {
        client_addr: peer,
        local_addr: local,
        proto: EndpointProto::Https,
        sni: name.clone(),
        endpoint_id: route.as_ref().map(|r| r.id.clone()).unwrap_or_default(),
        endpoint_url: route.as_ref().map(|r| r.url.clone()).unwrap_or_default(),
        tls: None,
    };
    let decision = match &route {
        Some(r) => r.policy.on_tcp_connect(&info),
        None => ConnDecision::Allow,
    };
    let (config, leaf, pending) = match decision {
        ConnDecision::Allow => (default, None, None),
        ConnDecision::Close => return,
        ConnDecision::TerminateTls(t) => match t.config.server_config(Some(&default)) {
            Ok(cfg) => (cfg, t.config.own_leaf(), Some(t)),
            Err(e) => {
                tracing::warn!(endpoint = %info.endpoint_url, error = %e, "cannot terminate tls");
                return;
            }
        },
    };
    let by_action = pending.is_some();
    let (stream, negotiated) =
        match terminate_tls::handshake(io, config, leaf, by_action, header_timeout).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "tls handshake failed");
                return;
            }
        };
    let mut negotiated = negotiated;
    negotiated.client_hello = Some(hello);
    let negotiated = Arc::new(negotiated);
    info.tls = Some(negotiated.clone());
    if let Some(t) = pending {
        if t.resume(&info) != ConnDecision::Allow {
            tracing::debug!(endpoint = %info.endpoint_url, "connection closed by policy after the tls handshake");
            return;
        }
    }
    let tls = ConnTls {
        info: negotiated,
        endpoint: route.map(|r| r.id),
    };
    serve_http_conn(
        shared,
        TokioIo::new(stream),
        peer,
        local,
        EndpointProto::Https,
        name,
        Some(tls),
    )
    .await;
}

/// Reads until the ClientHello's SNI is known (bounded by one TLS record).
async fn read_client_hello(
    mut tcp: TcpStream,
) -> std::io::Result<(TcpStream, Bytes, Option<String>)> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match sni::parse(&buf) {
            ClientHelloSni::Incomplete(need) if buf.len() < sni::MAX_RECORD => {
                buf.reserve(need.saturating_sub(buf.len()).max(512));
                if tcp.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            ClientHelloSni::Name(n) => return Ok((tcp, buf.freeze(), Some(n))),
            _ => return Ok((tcp, buf.freeze(), None)),
        }
    }
}

pub(crate) async fn serve_tcp_endpoint(shared: Arc<Shared>, listener: TcpListener) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    while let Some((tcp, peer, guard)) = accept(&shared, &listener).await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let local = tcp.local_addr().unwrap_or(peer);
            let route = shared.registry().lookup_port(port);
            match route {
                Some(route) => pipe_raw(&shared, route, tcp, peer, local, None, None).await,
                None => tracing::debug!(port, "no endpoint on port"),
            }
            drop(guard);
        });
    }
}

/// Pipes a raw public connection through a `CONNECT` stream to the agent. `client_hello` is
/// what a TLS client sent first (read for SNI routing), for `conn.tls.ja4_fingerprint` when a
/// `terminate-tls` action decrypts here.
async fn pipe_raw<I>(
    shared: &Arc<Shared>,
    route: Route,
    io: I,
    peer: SocketAddr,
    local: SocketAddr,
    sni: Option<String>,
    client_hello: Option<Bytes>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared
        .metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let mut info = ConnInfo {
        client_addr: peer,
        local_addr: local,
        proto: route.proto,
        sni: sni.clone(),
        endpoint_id: route.id.clone(),
        endpoint_url: route.url.clone(),
        tls: None,
    };
    let mut io: Box<dyn RawIo> = match route.policy.on_tcp_connect(&info) {
        ConnDecision::Allow => Box::new(io),
        ConnDecision::Close => return,
        // `terminate-tls` on a `tls://` endpoint: decrypt here, the agent gets plaintext.
        ConnDecision::TerminateTls(t) => {
            let timeout = shared.cfg.limits.header_timeout;
            let config = match t.config.server_config(shared.public_tls.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(endpoint = %route.url, error = %e, "cannot terminate tls");
                    return;
                }
            };
            let leaf = t.config.own_leaf();
            let (stream, negotiated) =
                match terminate_tls::handshake(io, config, leaf, true, timeout).await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "tls handshake failed");
                        return;
                    }
                };
            let mut negotiated = negotiated;
            negotiated.client_hello = client_hello;
            info.tls = Some(Arc::new(negotiated));
            if t.resume(&info) != ConnDecision::Allow {
                return;
            }
            Box::new(stream)
        }
    };
    let Some(session) = route.session else {
        tracing::debug!(endpoint = %route.url, "agent offline, closing connection");
        return;
    };
    let Ok(permit) = session.streams.clone().try_acquire_owned() else {
        return;
    };
    let mut req = Request::new(empty());
    *req.method_mut() = Method::CONNECT;
    *req.version_mut() = Version::HTTP_2;
    let Ok(uri) = format!("{}:{}", "endpoint.wicket", local.port()).parse() else {
        return;
    };
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    insert(h, meta::ENDPOINT, &route.id);
    insert(h, meta::CLIENT_ADDR, &peer.to_string());
    insert(h, meta::PROTO, route.proto.scheme());
    if let Some(n) = &sni {
        insert(h, meta::SNI, n);
    }
    let (res, _permit) = match open_stream(shared, &route.id, session, permit, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "opening tunnel stream failed");
            return;
        }
    };
    if res.status() != StatusCode::OK {
        tracing::debug!(status = %res.status(), endpoint = %route.url, "agent refused the stream");
        return;
    }
    let upgraded = match hyper::upgrade::on(res).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "tunnel upgrade failed");
            return;
        }
    };
    shared
        .metrics
        .streams_active
        .fetch_add(1, Ordering::Relaxed);
    let mut tunnel = TokioIo::new(upgraded);
    let idle = shared.cfg.limits.idle_timeout;
    let r = crate::io::copy_with_idle(&mut io, &mut tunnel, idle).await;
    shared
        .metrics
        .streams_active
        .fetch_sub(1, Ordering::Relaxed);
    if let Err(e) = r {
        tracing::debug!(error = %e, "pipe ended");
    }
}

/// A public byte stream, plain or decrypted.
trait RawIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawIo for T {}

fn insert(h: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

fn local_response(r: LocalResponse) -> Response<Body> {
    let mut res = Response::new(full(r.body));
    *res.status_mut() = r.status;
    *res.headers_mut() = r.headers;
    res
}

fn request_host(req: &Request<Incoming>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str().to_owned(),
        None => req.headers().get(header::HOST)?.to_str().ok()?.to_owned(),
    };
    normalize_host(&raw)
}

/// The protocol a request upgrades to: HTTP/1.1 `Connection: upgrade` + `Upgrade`, or an
/// HTTP/2 extended CONNECT (RFC 8441) with its `:protocol`.
fn is_upgrade(req: &Request<Incoming>) -> Option<String> {
    if req.version() == Version::HTTP_2 && req.method() == Method::CONNECT {
        return req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .and_then(|p| std::str::from_utf8(p.as_ref()).ok())
            .map(str::to_owned);
    }
    let conn_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !conn_upgrade || req.version() != Version::HTTP_11 {
        return None;
    }
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn proxy_http(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
    local: SocketAddr,
    proto: EndpointProto,
    sni: Option<String>,
    tls: Option<ConnTls>,
) -> HttpResult {
    let start = Instant::now();
    let Some(host) = request_host(&req) else {
        return Ok(pages::BAD_HOST.response("missing or invalid Host header"));
    };
    let Some(route) = shared.registry().lookup_host(proto, &host) else {
        let res = pages::ENDPOINT_NOT_FOUND.response(&format!("{}://{host}", proto.scheme()));
        shared
            .metrics
            .record_request("-", res.status().as_u16(), start.elapsed());
        return Ok(res);
    };
    if let Some(t) = &tls {
        if let Some(res) = connection_policy_for(&route, t, peer, local, &sni)? {
            return Ok(res);
        }
    }
    let tls = tls.map(|t| t.info);
    // `compress-response` needs the client's Accept-Encoding once the response is known.
    let method = req.method().clone();
    let mut accept = http::HeaderMap::new();
    for v in req.headers().get_all(header::ACCEPT_ENCODING) {
        accept.append(header::ACCEPT_ENCODING, v.clone());
    }
    let res = forward(&shared, req, &host, peer, local, proto, sni, tls, &route).await?;
    let res = crate::compress::maybe_compress(&method, &accept, res);
    shared
        .metrics
        .record_request(&route.url, res.status().as_u16(), start.elapsed());
    Ok(res)
}

/// The most `forward-internal` hops one request may take (public endpoint to internal endpoint
/// counts one); beyond it the request ends with [`FORWARD_TOO_DEEP`].
pub(crate) const MAX_FORWARD_HOPS: usize = 5;

/// `forward-internal` names an internal endpoint nobody has bound.
pub(crate) const INTERNAL_NOT_FOUND: ErrorPage = ErrorPage {
    status: StatusCode::BAD_GATEWAY,
    code: "ERR_WICKET_3500",
    title: "no internal endpoint is bound at the forward-internal URL",
};
/// A `forward-internal` chain longer than [`MAX_FORWARD_HOPS`] (or a loop).
pub(crate) const FORWARD_TOO_DEEP: ErrorPage = ErrorPage {
    status: StatusCode::LOOP_DETECTED,
    code: "ERR_WICKET_3501",
    title: "the forward-internal chain is too long",
};
/// The (interpolated) `forward-internal` URL is not `http(s)://name.internal[:port]`.
pub(crate) const NOT_INTERNAL: ErrorPage = ErrorPage {
    status: StatusCode::INTERNAL_SERVER_ERROR,
    code: "ERR_WICKET_3502",
    title: "the forward-internal URL does not name an internal endpoint",
};

/// An endpoint a request went through on its way to the one serving it: its response phase runs
/// when the response comes back.
struct Hop {
    route: Route,
    info: ConnInfo,
    /// The request as this endpoint handed it on.
    req: http::request::Parts,
}

/// Runs the response phase of `outer` (innermost last in the slice, so it runs first) on a
/// response coming back through them; a phase that answers replaces the response. Then appends
/// the headers external actions asked for (`ActionResponseHeaders` in `req`, the request's
/// extensions) to whatever the response is.
fn unwind(outer: &[Hop], req: &http::Extensions, res: Response<Body>) -> Response<Body> {
    let (mut parts, mut body) = res.into_parts();
    for hop in outer.iter().rev() {
        if let ResDecision::Respond(r) = hop
            .route
            .policy
            .on_http_response(&mut parts, &hop.req, &hop.info)
        {
            (parts, body) = local_response(r).into_parts();
        }
    }
    ActionResponseHeaders::apply(req, &mut parts.headers);
    Response::from_parts(parts, body)
}

/// The online internal endpoint `url` names, or the error page and its detail.
fn internal_target(shared: &Shared, url: &str, hops: usize) -> Result<Route, (ErrorPage, String)> {
    if hops >= MAX_FORWARD_HOPS {
        return Err((
            FORWARD_TOO_DEEP,
            format!("more than {MAX_FORWARD_HOPS} forward-internal hops (last target `{url}`)"),
        ));
    }
    let not_internal = || (NOT_INTERNAL, format!("`{url}`"));
    let parsed = url::Url::parse(url).map_err(|_| not_internal())?;
    let proto = match parsed.scheme() {
        "http" => EndpointProto::Http,
        "https" => EndpointProto::Https,
        _ => return Err(not_internal()),
    };
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        _ => return Err(not_internal()),
    };
    let path_ok = matches!(parsed.path(), "" | "/") && parsed.query().is_none();
    if !super::registry::is_internal_host(&host) || !path_ok || !parsed.username().is_empty() {
        return Err(not_internal());
    }
    let port = parsed.port_or_known_default().unwrap_or(0);
    let Some(route) = shared.registry().lookup_internal(proto, &host, port) else {
        return Err((INTERNAL_NOT_FOUND, url.to_owned()));
    };
    if route.session.is_none() {
        return Err((pages::AGENT_OFFLINE, route.url));
    }
    Ok(route)
}

/// The request's host is served with its own TLS settings: the connection was set up for another
/// name.
const MISDIRECTED: pages::ErrorPage = pages::ErrorPage {
    status: StatusCode::MISDIRECTED_REQUEST,
    code: "ERR_WICKET_3205",
    title: "this host needs its own connection (its tls settings differ); reconnect with it as the server name",
};

/// A request for an endpoint other than the one the connection's SNI named (or without SNI):
/// that endpoint's `on_tcp_connect` did not run for this connection, so it runs now. An endpoint
/// that needs its own TLS settings (`terminate-tls`) gets `421 Misdirected Request`: the client
/// must open a connection with the endpoint's name as SNI.
fn connection_policy_for(
    route: &Route,
    tls: &ConnTls,
    peer: SocketAddr,
    local: SocketAddr,
    sni: &Option<String>,
) -> Result<Option<Response<Body>>, std::io::Error> {
    if tls.endpoint.as_deref() == Some(route.id.as_str()) {
        return Ok(None);
    }
    let info = ConnInfo {
        client_addr: peer,
        local_addr: local,
        proto: EndpointProto::Https,
        sni: sni.clone(),
        endpoint_id: route.id.clone(),
        endpoint_url: route.url.clone(),
        tls: None,
    };
    match route.policy.on_tcp_connect(&info) {
        ConnDecision::Allow => Ok(None),
        ConnDecision::TerminateTls(_) => Ok(Some(MISDIRECTED.response(&route.url))),
        ConnDecision::Close => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "closed by policy",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    shared: &Arc<Shared>,
    mut req: Request<Incoming>,
    host: &str,
    peer: SocketAddr,
    local: SocketAddr,
    proto: EndpointProto,
    sni: Option<String>,
    tls: Option<Arc<TlsInfo>>,
    route: &Route,
) -> HttpResult {
    let mut info = ConnInfo {
        client_addr: peer,
        local_addr: local,
        proto,
        sni,
        endpoint_id: route.id.clone(),
        endpoint_url: route.url.clone(),
        tls,
    };
    if route.session.is_none() {
        return Ok(pages::AGENT_OFFLINE.response(&route.url));
    }
    let upgrade = is_upgrade(&req);
    let public_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let h2_upgrade = upgrade.is_some() && parts.version == Version::HTTP_2;
    if let (true, Some(up)) = (h2_upgrade, &upgrade) {
        extended_connect_as_get(&mut parts, up);
    }
    let mut body = boxed(body);
    // The endpoint whose policy runs now, and those that forwarded the request to it.
    let mut route = route.clone();
    let mut hops: Vec<Hop> = Vec::new();
    let mut decision = route.policy.on_http_request(&mut parts, &info);
    loop {
        match decision {
            ReqDecision::Forward => break,
            ReqDecision::Respond(r) => {
                return Ok(unwind(&hops, &parts.extensions, local_response(r)));
            }
            ReqDecision::Close => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "closed by policy",
                ));
            }
            // An external action: run it, then act on what the rest of the phase decides.
            ReqDecision::Pending(p) => decision = p.run(&mut parts, &mut body, &info).await,
            // `forward-internal`: the target's own request phase runs next; its response comes
            // back through this endpoint's response phase.
            ReqDecision::ForwardInternal { url, on_error } => {
                match internal_target(shared, &url, hops.len()) {
                    Ok(target) => {
                        tracing::debug!(from = %route.url, to = %target.url, "forward-internal");
                        let next_info = ConnInfo {
                            endpoint_id: target.id.clone(),
                            endpoint_url: target.url.clone(),
                            ..info.clone()
                        };
                        hops.push(Hop {
                            route: std::mem::replace(&mut route, target),
                            info: std::mem::replace(&mut info, next_info),
                            req: clone_parts(&parts),
                        });
                        decision = route.policy.on_http_request(&mut parts, &info);
                    }
                    Err((page, detail)) => {
                        tracing::debug!(endpoint = %route.url, target = %url, code = page.code, "forward-internal failed");
                        match on_error {
                            Some(p) => {
                                parts.extensions.insert(ForwardFailure {
                                    url: url.clone(),
                                    code: page.code,
                                    message: format!("{}: {detail}", page.title),
                                });
                                decision = p.run(&mut parts, &mut body, &info).await;
                                parts.extensions.remove::<ForwardFailure>();
                            }
                            None => {
                                return Ok(unwind(
                                    &hops,
                                    &parts.extensions,
                                    page.response(&detail),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    let Some(session) = route.session.clone() else {
        return Ok(unwind(
            &hops,
            &parts.extensions,
            pages::AGENT_OFFLINE.response(&route.url),
        ));
    };
    let orig_parts = clone_parts(&parts);
    let Ok(permit) = session.streams.clone().try_acquire_owned() else {
        return Ok(unwind(
            &hops,
            &parts.extensions,
            pages::TOO_MANY_STREAMS.response(&route.url),
        ));
    };

    // Tunnel request head: public headers minus reserved and hop-by-hop ones, plus forwarding
    // headers and stream metadata.
    let mut headers = std::mem::take(&mut parts.headers);
    let reserved: Vec<HeaderName> = headers
        .keys()
        .filter(|k| meta::is_reserved(k.as_str()))
        .cloned()
        .collect();
    for k in reserved {
        headers.remove(&k);
    }
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    insert(&mut headers, "x-forwarded-for", &xff);
    insert(&mut headers, "x-forwarded-proto", proto.scheme());
    insert(&mut headers, "x-forwarded-host", host);
    insert(&mut headers, meta::ENDPOINT, &route.id);
    insert(&mut headers, meta::CLIENT_ADDR, &peer.to_string());
    insert(&mut headers, meta::PROTO, proto.scheme());
    if let Some(n) = &info.sni {
        insert(&mut headers, meta::SNI, n);
    }
    let mut treq = Request::new(empty());
    *treq.version_mut() = Version::HTTP_2;
    if let Some(up) = &upgrade {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        *treq.method_mut() = Method::CONNECT;
        *treq.uri_mut() = format!("{host}:{}", local.port())
            .parse()
            .map_err(|e| std::io::Error::other(format!("bad authority: {e}")))?;
        insert(&mut headers, meta::UPGRADE, up);
        insert(&mut headers, meta::METHOD, parts.method.as_str());
        insert(&mut headers, meta::PATH, path);
    } else {
        *treq.method_mut() = parts.method.clone();
        *treq.uri_mut() = tunnel_uri(proto, host, &parts.uri)?;
        *treq.body_mut() = body;
    }
    *treq.headers_mut() = headers;

    let (tres, permit) = match open_stream(shared, &route.id, session, permit, treq).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, endpoint = %route.url, "tunnel stream failed");
            return Ok(unwind(
                &hops,
                &parts.extensions,
                pages::TUNNEL_FAILED.response(&route.url),
            ));
        }
    };

    if let (Some(up), Some(public_upgrade)) = (upgrade, public_upgrade) {
        return Ok(finish_upgrade(
            shared,
            tres,
            up,
            public_upgrade,
            permit,
            h2_upgrade,
        ));
    }

    let (mut rparts, rbody) = tres.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    rparts.headers.remove(meta::STATUS);
    rparts.version = Version::HTTP_11;
    if let ResDecision::Respond(r) = route
        .policy
        .on_http_response(&mut rparts, &orig_parts, &info)
    {
        return Ok(unwind(&hops, &parts.extensions, local_response(r)));
    }
    let streams = shared.metrics.clone();
    streams.streams_active.fetch_add(1, Ordering::Relaxed);
    let guard = StreamGuard {
        metrics: streams,
        _permit: permit,
    };
    // The guard lives as long as the response body: the stream counts until it ends.
    let body = rbody.map_frame(move |f| {
        let _ = &guard;
        f
    });
    Ok(unwind(
        &hops,
        &parts.extensions,
        Response::from_parts(rparts, boxed(body)),
    ))
}

/// `scheme://host/path?query` of a tunnel request (perf: built from parts, the public path is
/// shared rather than formatted and parsed again).
fn tunnel_uri(
    proto: EndpointProto,
    host: &str,
    public: &http::Uri,
) -> Result<http::Uri, std::io::Error> {
    let bad = |e: &dyn std::fmt::Display| std::io::Error::other(format!("bad uri: {e}"));
    let mut p = http::uri::Parts::default();
    p.scheme = Some(
        proto
            .scheme()
            .parse::<http::uri::Scheme>()
            .map_err(|e| bad(&e))?,
    );
    p.authority = Some(http::uri::Authority::try_from(host).map_err(|e| bad(&e))?);
    p.path_and_query = Some(
        public
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    http::Uri::from_parts(p).map_err(|e| bad(&e))
}

struct StreamGuard {
    metrics: Arc<crate::metrics::Metrics>,
    _permit: super::StreamPermit,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.streams_active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn clone_parts(p: &http::request::Parts) -> http::request::Parts {
    let mut r = Request::new(());
    *r.method_mut() = p.method.clone();
    *r.uri_mut() = p.uri.clone();
    *r.version_mut() = p.version;
    *r.headers_mut() = p.headers.clone();
    // The policies' per-request state (circuit-breaker admissions) reaches the response phase.
    *r.extensions_mut() = p.extensions.clone();
    r.into_parts().0
}

/// An HTTP/2 extended CONNECT (RFC 8441) becomes the HTTP/1.1 upgrade the upstream expects:
/// the policy and the upstream see `GET`, and a WebSocket handshake gets the
/// `Sec-WebSocket-Key` HTTP/2 does not carry (its `Sec-WebSocket-Accept` is dropped from the
/// answer in [`finish_upgrade`]).
fn extended_connect_as_get(parts: &mut http::request::Parts, proto: &str) {
    parts.method = Method::GET;
    if proto.eq_ignore_ascii_case("websocket") && !parts.headers.contains_key("sec-websocket-key") {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        insert(&mut parts.headers, "sec-websocket-key", &key);
    }
}

fn finish_upgrade(
    shared: &Arc<Shared>,
    mut tres: Response<Incoming>,
    proto: String,
    public_upgrade: hyper::upgrade::OnUpgrade,
    permit: super::StreamPermit,
    h2: bool,
) -> Response<Body> {
    let switched = tres.status() == StatusCode::OK
        && tres.headers().get(meta::STATUS).is_some_and(|v| v == "101");
    if !switched {
        let status = tres
            .headers()
            .get(meta::STATUS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(tres.status());
        let (mut parts, body) = tres.into_parts();
        parts.status = status;
        parts.headers.remove(meta::STATUS);
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        return Response::from_parts(parts, boxed(body));
    }
    let tunnel_upgrade = hyper::upgrade::on(&mut tres);
    let mut res = Response::new(empty());
    let mut headers = std::mem::take(tres.headers_mut());
    headers.remove(meta::STATUS);
    strip_hop_by_hop(&mut headers);
    if h2 {
        // RFC 8441 §5: a 2xx answers the extended CONNECT; no accept key, no upgrade headers.
        *res.status_mut() = StatusCode::OK;
        headers.remove("sec-websocket-accept");
        headers.remove(header::CONTENT_LENGTH);
    } else {
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        insert(&mut headers, "connection", "upgrade");
        if let Ok(v) = HeaderValue::from_str(&proto) {
            headers.insert(header::UPGRADE, v);
        }
    }
    *res.headers_mut() = headers;
    let shared = shared.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let (Ok(public), Ok(tunnel)) = (public_upgrade.await, tunnel_upgrade.await) else {
            tracing::debug!("upgrade did not complete");
            return;
        };
        shared
            .metrics
            .streams_active
            .fetch_add(1, Ordering::Relaxed);
        let idle = shared.cfg.limits.idle_timeout;
        let r =
            crate::io::copy_with_idle(&mut TokioIo::new(public), &mut TokioIo::new(tunnel), idle)
                .await;
        shared
            .metrics
            .streams_active
            .fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = r {
            tracing::debug!(error = %e, "upgraded connection ended");
        }
    });
    res
}

pub(crate) async fn serve_metrics(shared: Arc<Shared>, listener: TcpListener) {
    while let Some((tcp, _peer, guard)) = accept(&shared, &listener).await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    let res = if req.uri().path() == "/metrics" {
                        let mut r = Response::new(full(shared.metrics.render()));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        r
                    } else {
                        let mut r = Response::new(full("not found\n"));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
                    Ok::<_, Infallible>(res)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
            drop(guard);
        });
    }
}

/// Why a tunnel stream could not be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    H2(#[from] hyper::Error),
    #[error("session stream limit reached")]
    Limit,
}

/// Opens a tunnel stream for endpoint `id` on `session`.
///
/// When that session no longer takes new streams and hyper hands the request back unsent (the
/// agent moved its endpoints to a new session, e.g. on a token rotation, and sent GOAWAY on the
/// old one), the request is retried once on the session serving the endpoint now, so a route
/// looked up just before the handover does not fail the request.
async fn open_stream(
    shared: &Shared,
    id: &str,
    session: super::registry::SessionLink,
    permit: super::StreamPermit,
    req: Request<Body>,
) -> Result<(Response<Incoming>, super::StreamPermit), OpenError> {
    let mut sender = session.sender.clone();
    match sender.try_send_request(req).await {
        Ok(res) => Ok((res, permit)),
        Err(mut e) => {
            let Some(req) = e.take_message() else {
                return Err(e.into_error().into());
            };
            let next = shared.registry().session_of(id);
            let Some(next) = next.filter(|n| n.id != session.id) else {
                return Err(e.into_error().into());
            };
            drop(permit);
            tracing::debug!(endpoint = %id, from = session.id, to = next.id, "retrying on the session that took the endpoint over");
            let permit = next
                .streams
                .clone()
                .try_acquire_owned()
                .map_err(|_| OpenError::Limit)?;
            let mut sender = next.sender.clone();
            Ok((sender.send_request(req).await?, permit))
        }
    }
}
