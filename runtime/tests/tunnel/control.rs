//! Authentication, policy refusal and metrics.

use wicket_runtime::agent::EndpointState;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_authtoken_is_refused_before_the_session_starts() {
    let c = certs();
    let edge = start_edge(&c, edge_config(&c)).await;
    let agent = start_agent(
        &c,
        &agent_yaml(
            &c,
            edge.addrs().tunnel,
            "not-the-token",
            "  - name: web\n    upstream: { url: 1 }\n",
        ),
    );
    let st = within("refusal", agent.wait_for(|s| s.fatal.is_some())).await;
    let fatal = st.fatal.unwrap();
    assert!(
        fatal.contains("authentication failed") && fatal.contains("ERR_WICKET_4100"),
        "{fatal}"
    );
    assert_eq!(st.sessions, 0);
    assert_eq!(edge.session_count(), 0);
    let metrics = edge.metrics().render();
    assert!(
        metrics.contains("wicket_handshakes_refused_total 1"),
        "{metrics}"
    );
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_enforced_at_the_edge_and_invalid_ones_refused() {
    let c = certs();
    let up = upstream("app").await;
    std::fs::write(
        c.dir.path().join("policy.yml"),
        "on_http_request:\n  - expressions: [\"req.url.path.startsWith('/admin')\"]\n    actions: [{ type: deny }]\n  - actions:\n      - type: add-headers\n        config: { headers: { x-forwarded-by: wicket } }\non_http_response:\n  - actions:\n      - type: add-headers\n        config: { headers: { x-policy: applied } }\n",
    )
    .unwrap();
    let endpoints = format!(
        "  - name: guarded\n    url: https://guarded.example.test\n    upstream: {{ url: '{up}' }}\n    traffic_policy_file: policy.yml\n  - name: broken\n    url: https://broken.example.test\n    upstream: {{ url: '{up}' }}\n    traffic_policy:\n      on_http_request:\n        - expressions: ['req.nope == 1']\n          actions: [{{ type: deny }}]\n"
    );
    let (edge, agent, st) = edge_and_agent(&c, edge_config(&c), &endpoints).await;
    assert_eq!(bound_url(&st, "guarded"), "https://guarded.example.test");
    match st.endpoints.get("broken") {
        Some(EndpointState::Refused(r)) => {
            assert_eq!(r.code, "ERR_WICKET_4300");
            assert!(
                r.diagnostics.iter().any(|d| d.contains("req.nope")),
                "{r:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let https = edge.addrs().https.unwrap();
    let tls = Some((&c, "guarded.example.test"));
    let r = get(https, tls, true, "guarded.example.test", "/admin/users").await;
    assert_eq!(r.status, http::StatusCode::FORBIDDEN);
    assert_eq!(r.header("x-upstream"), "", "denied at the edge");
    let r = get(https, tls, false, "guarded.example.test", "/hello").await;
    assert_eq!(r.status, http::StatusCode::OK);
    assert_eq!(r.header("x-upstream"), "app");
    assert_eq!(r.header("x-policy"), "applied");
    assert_eq!(r.header("x-seen-forwarded-by"), "wicket");
    // Fail closed: the endpoint whose policy was refused is not served at all.
    let r = get(
        https,
        Some((&c, "broken.example.test")),
        false,
        "broken.example.test",
        "/hello",
    )
    .await;
    assert_eq!(r.status, http::StatusCode::NOT_FOUND);
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_format() {
    let c = certs();
    let up = upstream("app").await;
    let (edge, agent) = edge_and_web_agent(&c, edge_config(&c), "http://m.example.test", up).await;
    let http = edge.addrs().http.unwrap();
    for _ in 0..3 {
        assert_eq!(
            get(http, None, false, "m.example.test", "/hello")
                .await
                .status,
            200
        );
    }
    let r = get(
        edge.addrs().metrics.unwrap(),
        None,
        false,
        "localhost",
        "/metrics",
    )
    .await;
    let text = r.text();
    assert!(
        text.contains(
            r#"wicket_http_requests_total{endpoint="http://m.example.test",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(text.contains("wicket_sessions_active 1"), "{text}");
    assert!(
        text.contains("wicket_http_request_duration_seconds_count"),
        "{text}"
    );
    agent.shutdown().await;
    edge.shutdown().await;
}

/// A credential system stub: one token, binds limited to `*.allowed.example.test`, and a
/// switch that revokes the live session.
#[derive(Debug)]
struct Revocable {
    revoke: tokio::sync::watch::Receiver<bool>,
    endpoints: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[derive(Debug)]
struct Lease {
    revoke: tokio::sync::watch::Receiver<bool>,
    endpoints: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl wicket_runtime::auth::Authenticator for Revocable {
    fn authenticate(
        &self,
        authtoken: &str,
    ) -> Result<wicket_runtime::auth::Principal, wicket_runtime::auth::AuthError> {
        if authtoken != TOKEN || *self.revoke.borrow() {
            return Err(wicket_runtime::auth::AuthError::Unknown);
        }
        Ok(wicket_runtime::auth::Principal::named("device-1"))
    }
    fn authorize_bind(
        &self,
        principal: &wicket_runtime::auth::Principal,
        url: &str,
    ) -> Result<(), wicket_runtime::auth::AuthError> {
        if url.ends_with(".allowed.example.test") {
            Ok(())
        } else {
            Err(wicket_runtime::auth::AuthError::Forbidden {
                principal: principal.name.clone(),
                url: url.into(),
            })
        }
    }
    fn open_session(
        &self,
        _principal: &wicket_runtime::auth::Principal,
        _peer: std::net::SocketAddr,
    ) -> Box<dyn wicket_runtime::auth::SessionLease> {
        Box::new(Lease {
            revoke: self.revoke.clone(),
            endpoints: self.endpoints.clone(),
        })
    }
}

impl wicket_runtime::auth::SessionLease for Lease {
    fn endpoints_changed(&self, urls: &[String]) {
        if let Ok(mut e) = self.endpoints.lock() {
            *e = urls.to_vec();
        }
    }
    fn closed(&self) -> futures_util::future::BoxFuture<'_, String> {
        let mut rx = self.revoke.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|r| *r).await;
            "credential revoked".to_owned()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_system_authorizes_binds_and_revocation_closes_the_session() {
    let c = certs();
    let (revoke_tx, revoke_rx) = tokio::sync::watch::channel(false);
    let endpoints = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let auth = std::sync::Arc::new(Revocable {
        revoke: revoke_rx,
        endpoints: endpoints.clone(),
    });
    let edge = start_edge_with(
        &c,
        wicket_runtime::edge::Edge::builder(edge_config(&c)).authenticator(auth),
    )
    .await;
    let up = upstream("app").await;
    let agent = start_endpoints(
        &c,
        edge.addrs().tunnel,
        &format!(
            "  - name: ok\n    url: http://a.allowed.example.test\n    upstream: {{ url: '{up}' }}\n  - name: denied\n    url: http://elsewhere.example.test\n    upstream: {{ url: '{up}' }}\n"
        ),
    );
    let st = settled(&agent).await;
    assert_eq!(bound_url(&st, "ok"), "http://a.allowed.example.test");
    match st.endpoints.get("denied") {
        Some(EndpointState::Refused(r)) => assert_eq!(r.code, "ERR_WICKET_4203"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        *endpoints.lock().unwrap(),
        vec!["http://a.allowed.example.test".to_owned()]
    );
    let http = edge.addrs().http.unwrap();
    assert_eq!(
        get(http, None, false, "a.allowed.example.test", "/hello")
            .await
            .status,
        200
    );

    revoke_tx.send(true).unwrap();
    let st = within("agent told", agent.wait_for(|s| s.fatal.is_some())).await;
    assert!(st.fatal.unwrap().contains("credential revoked"));
    within("session closed", async {
        while edge.session_count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    let r = get(http, None, false, "a.allowed.example.test", "/hello").await;
    assert_eq!(r.status, http::StatusCode::SERVICE_UNAVAILABLE);
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_file_change_is_applied_without_dropping_the_session() {
    let c = certs();
    let up = upstream("app").await;
    let path = c.dir.path().join("live.yml");
    let allow = "on_http_request:\n  - actions:\n      - type: add-headers\n        config: { headers: { x-forwarded-by: v1 } }\n";
    std::fs::write(&path, allow).unwrap();
    let endpoints = format!(
        "  - name: web\n    url: http://live.example.test\n    upstream: {{ url: '{up}' }}\n    traffic_policy_file: live.yml\n"
    );
    let (edge, agent, _) = edge_and_agent(&c, edge_config(&c), &endpoints).await;
    let http = edge.addrs().http.unwrap();
    let r = get(http, None, false, "live.example.test", "/hello").await;
    assert_eq!(r.header("x-seen-forwarded-by"), "v1");

    std::fs::write(
        &path,
        "on_http_request:\n  - actions: [{ type: deny, config: { status_code: 451 } }]\n",
    )
    .unwrap();
    within("new policy applied", async {
        loop {
            let r = get(http, None, false, "live.example.test", "/hello").await;
            if r.status == http::StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    // A broken edit is refused; the last good policy stays in force.
    std::fs::write(
        &path,
        "on_http_request:\n  - expressions: ['req.nope']\n    actions: [{ type: deny }]\n",
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = get(http, None, false, "live.example.test", "/hello").await;
    assert_eq!(r.status, http::StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    let st = agent.status().borrow().clone();
    assert_eq!(st.sessions, 1, "the session was never dropped");
    assert_eq!(edge.session_count(), 1);
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tcp_connect_policies_close_refused_connections() {
    let c = certs();
    let echo = tcp_echo().await;
    let endpoints = format!(
        "  - name: open\n    url: tcp://\n    upstream: {{ url: '{echo}' }}\n    traffic_policy:\n      on_tcp_connect:\n        - actions: [{{ type: restrict-ips, config: {{ allow: [127.0.0.0/8] }} }}]\n  - name: closed\n    url: tcp://\n    upstream: {{ url: '{echo}' }}\n    traffic_policy:\n      on_tcp_connect:\n        - actions: [{{ type: restrict-ips, config: {{ deny: [127.0.0.0/8] }} }}]\n"
    );
    let (edge, agent, st) = edge_and_agent(&c, edge_config(&c), &endpoints).await;
    let port = |name: &str| -> u16 {
        bound_url(&st, name)
            .rsplit_once(':')
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port("open")))
        .await
        .unwrap();
    s.write_all(b"hello").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_all(&mut s).await, b"hello");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port("closed")))
        .await
        .unwrap();
    let _ = s.write_all(b"hello").await;
    let _ = s.shutdown().await;
    let mut buf = Vec::new();
    use tokio::io::AsyncReadExt;
    let r = within("closed by policy", s.read_to_end(&mut buf)).await;
    assert!(r.is_err() || buf.is_empty(), "nothing is echoed: {buf:?}");
    agent.shutdown().await;
    edge.shutdown().await;
}
