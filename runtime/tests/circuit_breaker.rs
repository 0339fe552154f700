//! `circuit-breaker` end to end: an upstream answering 500 trips the breaker at the edge, and
//! later requests get 503 `ERR_NGROK_3202` without reaching the upstream.

// A harness: any failure here should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use wicket_runtime::agent::{Agent, AgentConfig, AgentOptions, EndpointState};
use wicket_runtime::edge::{Edge, EdgeConfig, NamedToken};
use wicket_runtime::tls::generate_dev_ca;

/// Upper bound for any single await in this test.
const T: Duration = Duration::from_secs(60);
const TOKEN: &str = "test-token-1";

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// An upstream answering every request with 500, counting them.
async fn failing_upstream(hits: Arc<AtomicUsize>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let hits = hits.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"broken")));
                        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// One GET over a fresh HTTP/1.1 connection: the status and the error-code header.
async fn get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = within("response", send.send_request(req)).await.unwrap();
    let code = res
        .headers()
        .get("wicket-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let status = res.status();
    within("body", res.into_body().collect()).await.unwrap();
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstream_trips_the_breaker_and_later_requests_get_503() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = generate_dev_ca(&[
        "example.test".into(),
        "*.example.test".into(),
        "localhost".into(),
        "127.0.0.1".into(),
    ])
    .unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca).unwrap();
    std::fs::write(dir.path().join("edge.pem"), &chain).unwrap();
    std::fs::write(dir.path().join("edge-key.pem"), &key).unwrap();
    let pair = wicket_runtime::tls::CertPair::load(
        &dir.path().join("edge.pem"),
        &dir.path().join("edge-key.pem"),
    )
    .unwrap();
    let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let cfg = EdgeConfig {
        tunnel_listen: lo(0),
        http_listen: Some(lo(0)),
        https_listen: None,
        metrics_listen: None,
        base_domain: "example.test".into(),
        data_dir: dir.path().join("data"),
        tcp_listen_host: [127, 0, 0, 1].into(),
        authtokens: vec![NamedToken {
            name: "tester".into(),
            token: TOKEN.into(),
        }],
        ..EdgeConfig::default()
    };
    let edge = within("edge start", Edge::builder(cfg).tunnel_cert(pair).start())
        .await
        .unwrap();

    let hits = Arc::new(AtomicUsize::new(0));
    let up = failing_upstream(hits.clone()).await;
    let yaml = format!(
        "version: 3\nagent:\n  authtoken: {TOKEN}\n  connect_url: {edge}\n  connect_cas: [{ca}]\nendpoints:\n  - name: web\n    url: http://cb.example.test\n    upstream: {{ url: 'http://{up}' }}\n    traffic_policy:\n      on_http_request:\n        - actions:\n            - type: circuit-breaker\n              config: {{ error_threshold: 0.5, volume_threshold: 3, window_duration: 60s, tripped_duration: 60s }}\n",
        edge = edge.addrs().tunnel,
        ca = ca_path.display()
    );
    let agent = Agent::start(
        AgentConfig::from_yaml(&yaml, "test").unwrap(),
        dir.path().to_owned(),
        AgentOptions {
            backoff_cap: Duration::from_millis(500),
            ..AgentOptions::default()
        },
    )
    .unwrap();
    let st = within(
        "endpoint bound",
        agent.wait_for(|s| {
            s.connected
                && s.endpoints
                    .values()
                    .all(|e| !matches!(e, EndpointState::Pending))
        }),
    )
    .await;
    assert!(
        matches!(st.endpoints.get("web"), Some(EndpointState::Bound { .. })),
        "{st:?}"
    );

    let http = edge.addrs().http.unwrap();
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
    agent.shutdown().await;
    edge.shutdown().await;
}
