//! HTTP and HTTPS endpoints through the tunnel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_flow_over_http1_and_http2_with_forwarding_headers() {
    let c = certs();
    let up = upstream("app").await;
    let endpoints = format!(
        "  - name: web\n    url: https://app.example.test\n    upstream: {{ url: 'http://{up}' }}\n  - name: plain\n    url: http://plain.example.test\n    upstream: {{ url: '{}' }}\n",
        up.port()
    );
    let (edge, agent, st) = edge_and_agent(&c, edge_config(&c), &endpoints).await;
    assert_eq!(bound_url(&st, "web"), "https://app.example.test");
    assert_eq!(bound_url(&st, "plain"), "http://plain.example.test");
    let https = edge.addrs().https.unwrap();
    let http = edge.addrs().http.unwrap();

    for h2 in [false, true] {
        let r = get(
            https,
            Some((&c, "app.example.test")),
            h2,
            "app.example.test",
            "/hello",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "h2={h2}");
        assert_eq!(r.text(), "hello from app");
        assert_eq!(r.header("x-seen-host"), "app.example.test");
        assert_eq!(r.header("x-seen-xff"), "127.0.0.1");
        assert_eq!(r.header("x-seen-proto"), "https");
        assert_eq!(r.header("x-seen-fwd-host"), "app.example.test");
        assert_eq!(
            r.header("x-seen-wicket"),
            "",
            "no wicket-* header reaches the upstream"
        );
        assert_eq!(r.header("x-seen-version"), "HTTP/1.1");
        assert_eq!(
            r.version,
            if h2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            }
        );
    }

    // Plain HTTP, with a client-supplied X-Forwarded-For and a spoofed reserved header.
    let mut conn = connect(http, None, false).await;
    let mut req = request(
        &conn,
        "http",
        "plain.example.test:80",
        "/hello",
        "GET",
        BodyExt::boxed(http_body_util::Empty::new().map_err(|e| match e {})),
    );
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    req.headers_mut()
        .insert("wicket-endpoint", "ep_spoofed".parse().unwrap());
    let r = collect(conn.send(req).await).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-seen-xff"), "203.0.113.9, 127.0.0.1");
    assert_eq!(r.header("x-seen-proto"), "http");
    assert_eq!(r.header("x-seen-wicket"), "");

    // An HTTPS-only endpoint is not served on the plain listener.
    let r = get(http, None, false, "app.example.test", "/hello").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routing_exact_wildcard_and_unknown_hosts() {
    let c = certs();
    let wild = upstream("wild").await;
    let exact = upstream("exact").await;
    let endpoints = format!(
        "  - name: wild\n    url: https://*.apps.example.test\n    upstream: {{ url: '{wild}' }}\n  - name: exact\n    url: https://api.apps.example.test\n    upstream: {{ url: '{exact}' }}\n  - name: auto\n    upstream: {{ url: '{exact}' }}\n"
    );
    let (edge, agent, st) = edge_and_agent(&c, edge_config(&c), &endpoints).await;
    let auto = bound_url(&st, "auto");
    assert!(
        auto.starts_with("https://") && auto.ends_with(".example.test"),
        "{auto}"
    );
    let https = edge.addrs().https.unwrap();
    let tls = |h: &'static str| Some((&c, h));
    let r = get(
        https,
        tls("cam-1.apps.example.test"),
        true,
        "cam-1.apps.example.test",
        "/hello",
    )
    .await;
    assert_eq!(r.header("x-upstream"), "wild");
    assert_eq!(r.header("x-seen-host"), "cam-1.apps.example.test");
    let r = get(
        https,
        tls("api.apps.example.test"),
        true,
        "api.apps.example.test",
        "/hello",
    )
    .await;
    assert_eq!(r.header("x-upstream"), "exact");
    let auto_host = auto.trim_start_matches("https://").to_owned();
    let r = get(
        https,
        Some((&c, "example.test")),
        false,
        &auto_host,
        "/hello",
    )
    .await;
    assert_eq!(r.header("x-upstream"), "exact");
    let r = get(
        https,
        tls("nobody.example.test"),
        false,
        "nobody.example.test",
        "/",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3200");
    assert!(r.text().contains("nobody.example.test"));
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_endpoint_is_503_and_dead_upstream_is_502() {
    let c = certs();
    let dead = dead_port().await;
    let up = upstream("app").await;
    let endpoints = format!(
        "  - name: dead\n    url: http://dead.example.test\n    upstream: {{ url: '{dead}' }}\n  - name: live\n    url: http://live.example.test\n    upstream: {{ url: '{up}' }}\n"
    );
    let (edge, agent, _) = edge_and_agent(&c, edge_config(&c), &endpoints).await;
    let http = edge.addrs().http.unwrap();
    let r = get(http, None, false, "dead.example.test", "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_8012");
    assert!(r.text().contains(&dead.to_string()), "{}", r.text());
    assert_eq!(
        get(http, None, false, "live.example.test", "/hello")
            .await
            .status,
        StatusCode::OK
    );

    agent.shutdown().await;
    within("session gone", async {
        while edge.session_count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let r = get(http, None, false, "live.example.test", "/hello").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3201");
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_over_one_session() {
    let c = certs();
    let up = upstream("app").await;
    let (edge, agent) =
        edge_and_web_agent(&c, edge_config(&c), "https://app.example.test", up).await;
    let https = edge.addrs().https.unwrap();
    // Eight HTTP/2 client connections, 125 requests each, all in flight at once.
    let mut tasks = tokio::task::JoinSet::new();
    for conn_no in 0..8u32 {
        let Conn::H2(sender) = connect(https, Some((&c, "app.example.test")), true).await else {
            unreachable!()
        };
        for i in 0..125u32 {
            let mut sender = sender.clone();
            let id = conn_no * 1000 + i;
            tasks.spawn(async move {
                let req = http::Request::builder()
                    .uri(format!("https://app.example.test/id/{id}"))
                    .version(http::Version::HTTP_2)
                    .body(BodyExt::boxed(
                        http_body_util::Empty::new().map_err(|e| match e {}),
                    ))
                    .unwrap();
                let res = sender.send_request(req).await.unwrap();
                let status = res.status();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (id, status, body)
            });
        }
    }
    let mut ok = 0;
    while let Some(r) = within("all requests", tasks.join_next()).await {
        let (id, status, body) = r.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, Bytes::from(id.to_string()));
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(edge.session_count(), 1);
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_body_streams_both_ways_without_buffering() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let c = certs();
    let up = upstream("app").await;
    let (edge, agent) =
        edge_and_web_agent(&c, edge_config(&c), "https://app.example.test", up).await;
    let https = edge.addrs().https.unwrap();
    let mut conn = connect(https, Some((&c, "app.example.test")), true).await;
    let produced = Arc::new(AtomicU64::new(0));
    let mut body = conn.post_echo("app.example.test", SIZE, &produced).await;
    let mut received = 0u64;
    let mut produced_at_first_byte = None;
    let mut mismatches = 0u64;
    while let Some(frame) = within("echo frame", body.frame()).await {
        let frame = frame.unwrap();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if produced_at_first_byte.is_none() && !data.is_empty() {
            produced_at_first_byte = Some(produced.load(Ordering::SeqCst));
        }
        for (i, b) in data.iter().enumerate() {
            if *b != ((received + i as u64) % 251) as u8 {
                mismatches += 1;
            }
        }
        received += data.len() as u64;
    }
    assert_eq!(received, SIZE);
    assert_eq!(mismatches, 0);
    // The echo came back while the upload was still being generated: nothing on the path
    // buffered the whole body (each hop holds at most its flow-control window).
    let first = produced_at_first_byte.unwrap();
    assert!(
        first < SIZE / 4,
        "first echoed byte only after {first} bytes were produced"
    );

    // And a large download on its own.
    let r = get(
        https,
        Some((&c, "app.example.test")),
        false,
        "app.example.test",
        &format!("/big/{}", 8 * 1024 * 1024),
    )
    .await;
    assert_eq!(r.body.len(), 8 * 1024 * 1024);
    agent.shutdown().await;
    edge.shutdown().await;
}
