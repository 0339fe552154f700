//! End-to-end tests for the runtime's later additions: timeouts on public connections,
//! WebSocket over HTTP/2 (RFC 8441), PROXY protocol to HTTP upstreams, edge-wide policies scoped
//! to endpoint patterns, response compression and the bodies of local denials.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

// ---------------------------------------------------------------- timeouts

/// Reads until the peer closes (or resets) the connection; what was read.
async fn until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = within(what, s.read_to_end(&mut buf)).await;
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let c = certs();
    let mut cfg = edge_config(&c);
    cfg.limits.header_timeout = Duration::from_millis(500);
    let up = upstream("app").await;
    let (edge, agent) = edge_and_web_agent(&c, cfg, "http://slow.example.test", up).await;
    let http = edge.addrs().http.unwrap();

    // Slowloris: a partial head, then silence. The edge hangs up without a response.
    let mut slow = TcpStream::connect(http).await.unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: slow.example.test\r\nX-Slow: 1")
        .await
        .unwrap();
    let got = until_closed(&mut slow, "slowloris connection closed").await;
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{got:?}");

    // A keep-alive connection waiting for its next request head is under the same limit.
    let mut ka = TcpStream::connect(http).await.unwrap();
    ka.write_all(b"GET /id/1 HTTP/1.1\r\nHost: slow.example.test\r\n\r\n")
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&until_closed(&mut ka, "keep-alive connection closed").await)
        .into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with('1'), "{got}");
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_public_connections_and_tunnel_pipes_are_closed() {
    let c = certs();
    let mut cfg = edge_config(&c);
    cfg.limits.idle_timeout = Duration::from_millis(500);
    cfg.limits.header_timeout = Duration::from_secs(600);
    let up = upstream("app").await;
    let echo = tcp_echo().await;
    let endpoints = format!(
        "  - name: web\n    url: http://idle.example.test\n    upstream: {{ url: '{up}' }}\n  - name: echo\n    url: tcp://\n    upstream: {{ url: 'tcp://{echo}' }}\n"
    );
    let (edge, agent, st) = edge_and_agent(&c, cfg, &endpoints).await;
    let http = edge.addrs().http.unwrap();

    // A connection that never sends anything (not even enough to tell HTTP/1 from HTTP/2).
    let mut silent = TcpStream::connect(http).await.unwrap();
    assert!(
        until_closed(&mut silent, "silent connection closed")
            .await
            .is_empty()
    );

    // An HTTP/2 connection that goes quiet after a request.
    let tcp = TcpStream::connect(http).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("http://idle.example.test/id/7")
        .version(http::Version::HTTP_2)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = within("h2 request", h2.send_request(req)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(res);
    let _ = within("idle h2 connection closed", conn).await;
    assert!(h2.is_closed());

    // A `tcp://` pipe through the tunnel with nothing moving.
    let port: u16 = bound_url(&st, "echo")
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut pipe = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    pipe.write_all(b"ping").await.unwrap();
    let mut four = [0u8; 4];
    within("echo", pipe.read_exact(&mut four)).await.unwrap();
    assert_eq!(&four, b"ping");
    assert!(until_closed(&mut pipe, "idle pipe closed").await.is_empty());
    agent.shutdown().await;
    edge.shutdown().await;
}

// ---------------------------------------------------------------- WebSocket over HTTP/2

mod ws_h2 {
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::net::TcpStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    async fn tls_h2(
        c: &Certs,
        addr: std::net::SocketAddr,
        host: &str,
    ) -> impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut cfg = rustls::ClientConfig::builder()
            .with_root_certificates(c.roots.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
        within(
            "tls connect",
            tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
        )
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_over_http2_extended_connect_reaches_an_http1_upstream() {
        let c = certs();
        let ws = ws_echo().await;
        let (edge, agent) =
            edge_and_web_agent(&c, edge_config(&c), "https://ws.example.test", ws).await;
        let https = edge.addrs().https.unwrap();

        // The edge advertises SETTINGS_ENABLE_CONNECT_PROTOCOL on public HTTP/2.
        let io = tls_h2(&c, https, "ws.example.test").await;
        let (client, conn) = within("h2 handshake", h2::client::handshake(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut client = within("h2 ready", client.ready()).await.unwrap();
        let (res, _) = client
            .send_request(
                http::Request::get("https://ws.example.test/nothing")
                    .body(())
                    .unwrap(),
                true,
            )
            .unwrap();
        within("h2 response", res).await.unwrap();
        assert!(client.is_extended_connect_protocol_enabled());

        // Extended CONNECT with `:protocol websocket`, then WebSocket frames on the stream.
        let io = tls_h2(&c, https, "ws.example.test").await;
        let (mut sender, conn) = within(
            "h2 handshake",
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri("https://ws.example.test/chat")
            .version(http::Version::HTTP_2)
            .header("sec-websocket-version", "13")
            .body(Empty::<Bytes>::new())
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let res = within("extended connect", sender.send_request(req))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(!res.headers().contains_key("sec-websocket-accept"));
        let stream = within("upgrade", hyper::upgrade::on(res)).await.unwrap();
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await;
        ws_echo_exchange(&mut ws, "over h2", 3, vec![9u8; 200_000]).await;
        agent.shutdown().await;
        edge.shutdown().await;
    }
}

// ---------------------------------------------------------------- PROXY protocol to HTTP upstreams

mod proxy_protocol {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// Reads a PROXY v1 or v2 header; the source address it announces.
    async fn read_proxy_header(tcp: &mut TcpStream) -> Option<SocketAddr> {
        let mut first = [0u8; 1];
        tcp.read_exact(&mut first).await.ok()?;
        if first[0] == b'P' {
            let mut line = vec![b'P'];
            while !line.ends_with(b"\r\n") && line.len() < 108 {
                tcp.read_exact(&mut first).await.ok()?;
                line.push(first[0]);
            }
            let line = String::from_utf8(line).ok()?;
            let f: Vec<&str> = line.trim_end().split(' ').collect();
            return Some(SocketAddr::new(
                f.get(2)?.parse().ok()?,
                f.get(4)?.parse().ok()?,
            ));
        }
        let mut head = [0u8; 16];
        head[0] = first[0];
        tcp.read_exact(&mut head[1..]).await.ok()?;
        if &head[..12] != b"\r\n\r\n\0\r\nQUIT\n" || head[12] != 0x21 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
        let mut rest = vec![0u8; len];
        tcp.read_exact(&mut rest).await.ok()?;
        let (ip, port_at): (IpAddr, usize) = match head[13] {
            0x11 => (<[u8; 4]>::try_from(&rest[..4]).ok()?.into(), 8),
            0x21 => (<[u8; 16]>::try_from(&rest[..16]).ok()?.into(), 32),
            _ => return None,
        };
        let port = u16::from_be_bytes([rest[port_at], rest[port_at + 1]]);
        Some(SocketAddr::new(ip, port))
    }

    /// An HTTP/1.1 upstream behind PROXY protocol: answers `src=<announced source> conn=<n>`,
    /// `n` counting the upstream connections it accepted.
    async fn proxied_upstream() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = l.accept().await {
                let n = conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Some(src) = read_proxy_header(&mut tcp).await else {
                        return; // no header: hang up, as a real PROXY-only server does
                    };
                    let svc = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(format!("src={src} conn={n}")),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        addr
    }

    /// Two requests over one public HTTP/1.1 connection; the bodies and the client's address.
    async fn two_requests(edge_http: SocketAddr, host: &str) -> (SocketAddr, [String; 2]) {
        let tcp = TcpStream::connect(edge_http).await.unwrap();
        let me = tcp.local_addr().unwrap();
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut out = [String::new(), String::new()];
        for o in &mut out {
            within("ready", s.ready()).await.unwrap();
            let req = http::Request::get("/whoami")
                .header("host", host)
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let res = within("request", s.send_request(req)).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body = within("body", res.into_body().collect()).await.unwrap();
            *o = String::from_utf8(body.to_bytes().to_vec()).unwrap();
        }
        (me, out)
    }

    fn conn_of(body: &str) -> &str {
        body.split_once(" conn=").unwrap().1
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_upstreams_get_a_proxy_header_per_public_client_connection() {
        let c = certs();
        let up = proxied_upstream().await;
        let (edge, agent, _) = edge_and_agent(&c, edge_config(&c), &format!(
                    "  - name: v1\n    url: http://pp1.example.test\n    upstream: {{ url: 'http://{up}', proxy_protocol: 1 }}\n  - name: v2\n    url: http://pp2.example.test\n    upstream: {{ url: 'http://{up}', proxy_protocol: 2 }}\n"
                )).await;
        let http = edge.addrs().http.unwrap();
        for host in ["pp1.example.test", "pp2.example.test"] {
            let (me_a, a) = two_requests(http, host).await;
            let (me_b, b) = two_requests(http, host).await;
            // The upstream sees each public client's own address…
            assert!(
                a[0].starts_with(&format!("src={me_a} ")),
                "{host}: {a:?} vs {me_a}"
            );
            assert!(
                a[1].starts_with(&format!("src={me_a} ")),
                "{host}: {a:?} vs {me_a}"
            );
            assert!(
                b[0].starts_with(&format!("src={me_b} ")),
                "{host}: {b:?} vs {me_b}"
            );
            // …one public connection's requests share an upstream connection, two public
            // connections never do.
            assert_eq!(conn_of(&a[0]), conn_of(&a[1]), "{host}: {a:?}");
            assert_eq!(conn_of(&b[0]), conn_of(&b[1]), "{host}: {b:?}");
            assert_ne!(conn_of(&a[0]), conn_of(&b[0]), "{host}: {a:?} {b:?}");
        }
        agent.shutdown().await;
        edge.shutdown().await;
    }
}

// ---------------------------------------------------------------- scoped edge-wide policies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_wide_policies_apply_to_the_endpoints_matching_their_patterns() {
    let c = certs();
    let dir = c.dir.path();
    std::fs::write(
        dir.join("all.yml"),
        "on_http_response:\n  - actions:\n      - type: add-headers\n        config: {headers: {x-edge-wide: all}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("fleet-auth.yml"),
        "on_http_request:\n  - actions:\n      - type: basic-auth\n        config: {credentials: ['ops:s3cret-fleet']}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("no-tcp.yml"),
        "on_tcp_connect:\n  - actions:\n      - type: restrict-ips\n        config: {enforce: true, deny: [127.0.0.0/8]}\n",
    )
    .unwrap();
    let mut cfg = edge_config(&c);
    cfg.policy_file = Some(dir.join("all.yml"));
    cfg.policies = vec![
        wicket_runtime::edge::ScopedPolicyFile {
            file: dir.join("fleet-auth.yml"),
            endpoints: vec!["*.fleet.example.test".into()],
        },
        wicket_runtime::edge::ScopedPolicyFile {
            file: dir.join("no-tcp.yml"),
            endpoints: vec!["tcp://*".into()],
        },
    ];
    let up = upstream("app").await;
    let echo = tcp_echo().await;
    let (edge, agent, st) = edge_and_agent(&c, cfg, &format!(
                "  - name: cam\n    url: http://cam-1.fleet.example.test\n    upstream: {{ url: '{up}' }}\n  - name: wild\n    url: http://*.fleet.example.test\n    upstream: {{ url: '{up}' }}\n  - name: other\n    url: http://other.example.test\n    upstream: {{ url: '{up}' }}\n  - name: echo\n    url: tcp://\n    upstream: {{ url: 'tcp://{echo}' }}\n"
            )).await;
    let http = edge.addrs().http.unwrap();

    // The fleet (an exact name and a wildcard endpoint under it) needs the credentials…
    for host in ["cam-1.fleet.example.test", "cam-2.fleet.example.test"] {
        let r = get(http, None, false, host, "/id/x").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{host}");
        let mut conn = connect(http, None, false).await;
        let mut req = request(
            &conn,
            "http",
            host,
            "/id/x",
            "GET",
            pattern_body(0, 1, None),
        );
        req.headers_mut().insert(
            "authorization",
            "Basic b3BzOnMzY3JldC1mbGVldA==".parse().unwrap(),
        );
        let r = collect(conn.send(req).await).await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
        assert_eq!(r.text(), "x");
        assert_eq!(r.header("x-edge-wide"), "all", "{host}");
    }
    // …the rest of the edge does not, and the unscoped edge-wide policy runs everywhere.
    let r = get(http, None, false, "other.example.test", "/id/y").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "y");
    assert_eq!(r.header("x-edge-wide"), "all");

    // `tcp://*`: every TCP endpoint refuses 127.0.0.1.
    let port: u16 = bound_url(&st, "echo")
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = s.write_all(b"ping").await;
    assert!(
        until_closed(&mut s, "refused tcp connection closed")
            .await
            .is_empty()
    );
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_policy_with_a_bad_pattern_stops_the_edge_from_starting() {
    let c = certs();
    std::fs::write(c.dir.path().join("p.yml"), "on_http_request: []\n").unwrap();
    let mut cfg = edge_config(&c);
    cfg.policies = vec![wicket_runtime::edge::ScopedPolicyFile {
        file: c.dir.path().join("p.yml"),
        endpoints: vec!["ftp://*".into()],
    }];
    let err = wicket_runtime::edge::Edge::builder(cfg)
        .tunnel_cert(c.pair.clone())
        .public_certs(vec![c.pair.clone()])
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ftp://*"), "{err}");
}

// ---------------------------------------------------------------- compress-response

mod compression {
    use std::io::Read as _;

    use super::*;

    fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut out),
            "deflate" => flate2::read::ZlibDecoder::new(body).read_to_end(&mut out),
            "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut out),
            other => panic!("unexpected encoding `{other}`"),
        }
        .unwrap();
        out
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    async fn fetch(
        http: std::net::SocketAddr,
        path: &str,
        method: &str,
        accept: Option<&str>,
        body: TestBody,
    ) -> Reply {
        let mut conn = connect(http, None, false).await;
        let mut req = request(&conn, "http", "zip.example.test", path, method, body);
        if let Some(a) = accept {
            req.headers_mut()
                .insert("accept-encoding", a.parse().unwrap());
        }
        collect(conn.send(req).await).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn responses_are_compressed_as_the_policy_and_the_client_agree() {
        let c = certs();
        let policy = c.dir.path().join("zip.yml");
        std::fs::write(
            &policy,
            r#"
on_http_request:
  - expressions: ["req.url.path == '/echo'"]
    actions:
      - type: compress-response
        config: {algorithms: [br]}
on_http_response:
  - expressions: ["req.url.path.startsWith('/big/')"]
    actions:
      - type: compress-response
"#,
        )
        .unwrap();
        let up = upstream("app").await;
        let endpoints = format!(
            "  - name: zip\n    url: http://zip.example.test\n    upstream: {{ url: '{up}' }}\n    traffic_policy_file: {}\n",
            policy.display()
        );
        let (edge, agent, _) = edge_and_agent(&c, edge_config(&c), &endpoints).await;
        let http = edge.addrs().http.unwrap();
        const N: usize = 300_000;
        let big = format!("/big/{N}");

        // Response phase, every algorithm the client may prefer.
        for (accept, expected) in [
            ("gzip", "gzip"),
            ("br;q=1, gzip;q=0.5", "br"),
            ("deflate", "deflate"),
            ("compress, *;q=0.2", "gzip"),
        ] {
            let r = fetch(http, &big, "GET", Some(accept), pattern_body(0, 1, None)).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.header("content-encoding"), expected, "{accept}");
            assert_eq!(r.header("vary"), "accept-encoding");
            assert!(!r.headers.contains_key("content-length"));
            assert!(r.body.len() < N, "{accept}: {} bytes", r.body.len());
            assert_eq!(decode(expected, &r.body), pattern(N), "{accept}");
        }
        // No Accept-Encoding, or only codings the edge does not produce: untouched.
        for accept in [None, Some("identity"), Some("compress")] {
            let r = fetch(http, &big, "GET", accept, pattern_body(0, 1, None)).await;
            assert!(!r.headers.contains_key("content-encoding"), "{accept:?}");
            assert_eq!(r.body, pattern(N), "{accept:?}");
        }
        // HEAD: no body to compress.
        let r = fetch(http, &big, "HEAD", Some("gzip"), pattern_body(0, 1, None)).await;
        assert!(!r.headers.contains_key("content-encoding"));

        // Request phase (`algorithms: [br]`): a streamed upload echoed back.
        let r = fetch(
            http,
            "/echo",
            "POST",
            Some("gzip, br"),
            pattern_body(N as u64, 16 * 1024, None),
        )
        .await;
        assert_eq!(r.header("content-encoding"), "br");
        assert_eq!(decode("br", &r.body), pattern(N));
        let r = fetch(
            http,
            "/echo",
            "POST",
            Some("gzip"),
            pattern_body(1000, 1000, None),
        )
        .await;
        assert!(!r.headers.contains_key("content-encoding"));
        assert_eq!(r.body, pattern(1000));
        agent.shutdown().await;
        edge.shutdown().await;
    }
}

// ---------------------------------------------------------------- local denials

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_denials_carry_a_short_text_body_and_the_error_code() {
    let c = certs();
    let policy = c.dir.path().join("deny.yml");
    std::fs::write(
        &policy,
        r#"
on_http_request:
  - expressions: ["req.url.path.startsWith('/admin')"]
    actions:
      - type: restrict-ips
        config: {enforce: true, allow: [10.0.0.0/8]}
  - expressions: ["req.url.path.startsWith('/api')"]
    actions:
      - type: rate-limit
        config: {name: api, algorithm: sliding_window, capacity: 1, rate: 60s, bucket_key: [conn.client_ip]}
  - expressions: ["req.url.path.startsWith('/gone')"]
    actions:
      - type: deny
        config: {status_code: 410}
"#,
    )
    .unwrap();
    let up = upstream("app").await;
    let endpoints = format!(
        "  - name: d\n    url: http://deny.example.test\n    upstream: {{ url: '{up}' }}\n    traffic_policy_file: {}\n",
        policy.display()
    );
    let (edge, agent, _) = edge_and_agent(&c, edge_config(&c), &endpoints).await;
    let http = edge.addrs().http.unwrap();
    let h = "deny.example.test";

    let r = get(http, None, false, h, "/admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("wicket-error-code"), "ERR_NGROK_3203");
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(
        r.text(),
        "403 Forbidden: the client IP address is not allowed (ERR_NGROK_3203)\n"
    );

    assert_eq!(
        get(http, None, false, h, "/api/1").await.status,
        StatusCode::OK
    );
    let r = get(http, None, false, h, "/api/2").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!r.header("retry-after").is_empty());
    assert!(
        r.text().starts_with("429 Too Many Requests: "),
        "{}",
        r.text()
    );

    // `deny` answers with the status and no body, as the spec says.
    let r = get(http, None, false, h, "/gone").await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(r.body.is_empty());
    agent.shutdown().await;
    edge.shutdown().await;
}
