//! `circuit-breaker` end to end: an upstream answering 500 trips the breaker at the edge, and
//! later requests get 503 `ERR_NGROK_3202` without reaching the upstream.

// A harness: any failure here should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use support::*;

/// An upstream answering every request with 500, counting them.
async fn failing_upstream(hits: Arc<AtomicUsize>) -> std::net::SocketAddr {
    serve(move |_req: Request<Incoming>| {
        hits.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut r = Response::new(full("broken"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    })
    .await
}

/// One GET over a fresh HTTP/1.1 connection: the status and the error-code header.
async fn get(addr: std::net::SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    let r = http_get(addr, host, path, &[]).await;
    (r.status, r.header("wicket-error-code").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstream_trips_the_breaker_and_later_requests_get_503() {
    let hits = Arc::new(AtomicUsize::new(0));
    let up = failing_upstream(hits.clone()).await;
    let stack = Stack::builder()
        .endpoints_yaml(&format!(
            "  - name: web\n    url: http://cb.example.test\n    upstream: {{ url: 'http://{up}' }}\n    traffic_policy:\n      on_http_request:\n        - actions:\n            - type: circuit-breaker\n              config: {{ error_threshold: 0.5, volume_threshold: 3, window_duration: 60s, tripped_duration: 60s }}\n"
        ))
        .start()
        .await;

    let http = stack.http();
    // The volume threshold: three requests reach the upstream and fail.
    for _ in 0..3 {
        let (status, _) = get(http, "cb.example.test", "/x").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Tripped: answered at the edge, the upstream sees nothing more.
    for _ in 0..3 {
        let (status, code) = get(http, "cb.example.test", "/x").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code, "ERR_NGROK_3202");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    stack.shutdown().await;
}
