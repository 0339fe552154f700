//! Protective limits: handshake deadline, header size, connections per IP, streams per session.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_or_garbage_tunnel_clients_are_dropped_at_the_handshake_deadline() {
    let c = certs();
    let mut cfg = edge_config(&c);
    cfg.limits.handshake_timeout = Duration::from_millis(300);
    let edge = start_edge(&c, cfg).await;
    let mut silent = TcpStream::connect(edge.addrs().tunnel).await.unwrap();
    let mut buf = Vec::new();
    let n = within("silent client dropped", silent.read_to_end(&mut buf)).await;
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // Garbage gets at most a TLS alert, then the connection is closed.
    let mut garbage = TcpStream::connect(edge.addrs().tunnel).await.unwrap();
    garbage.write_all(&[0xff; 64]).await.unwrap();
    let mut buf = Vec::new();
    let _ = within("garbage client dropped", garbage.read_to_end(&mut buf)).await;
    assert!(buf.len() <= 16, "{buf:?}");
    assert_eq!(edge.session_count(), 0);
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_too_many_connections_and_streams_are_refused() {
    let c = certs();
    let mut cfg = edge_config(&c);
    cfg.limits.max_header_bytes = 8192;
    cfg.limits.max_connections_per_ip = 4;
    cfg.limits.max_streams_per_session = 2;
    let up = upstream("app").await;
    let (edge, agent) = edge_and_web_agent(&c, cfg, "http://l.example.test", up).await;
    let http = edge.addrs().http.unwrap();

    // Header block over the limit.
    let mut conn = connect(http, None, false).await;
    let mut req = request(
        &conn,
        "http",
        "l.example.test",
        "/hello",
        "GET",
        pattern_body(0, 1, None),
    );
    req.headers_mut()
        .insert("x-big", "a".repeat(20_000).parse().unwrap());
    let res = conn.send(req).await;
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    drop(conn);

    // Two slow downloads hold the session's two streams; a third request is refused.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = connect(http, None, false).await;
        let req = request(
            &conn,
            "http",
            "l.example.test",
            "/big/67108864",
            "GET",
            pattern_body(0, 1, None),
        );
        let res = conn.send(req).await;
        assert_eq!(res.status(), StatusCode::OK);
        held.push((conn, res));
    }
    let r = get(http, None, false, "l.example.test", "/hello").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3203");

    // Two held + two idle connections reach the per-IP limit of four; the fifth is closed.
    // (First let the edge notice that the one-shot connections above have closed.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _idle = (
        TcpStream::connect(http).await.unwrap(),
        TcpStream::connect(http).await.unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fifth = TcpStream::connect(http).await.unwrap();
    let _ = fifth
        .write_all(b"GET /hello HTTP/1.1\r\nhost: l.example.test\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let r = within("fifth connection closed", fifth.read_to_end(&mut buf)).await;
    assert!(
        r.is_err() || buf.is_empty(),
        "got a response: {}",
        String::from_utf8_lossy(&buf)
    );
    drop(held);
    agent.shutdown().await;
    edge.shutdown().await;
}
