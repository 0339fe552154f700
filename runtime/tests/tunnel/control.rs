//! Authentication, policy refusal and metrics.

use wicket_runtime::agent::EndpointState;

use crate::common::*;

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
async fn an_endpoint_with_a_policy_is_refused_while_no_engine_is_linked() {
    let c = certs();
    let edge = start_edge(&c, edge_config(&c)).await;
    let up = upstream("app").await;
    let agent = start_agent(
        &c,
        &agent_yaml(
            &c,
            edge.addrs().tunnel,
            TOKEN,
            &format!(
                "  - name: guarded\n    url: https://guarded.example.test\n    upstream: {{ url: '{up}' }}\n    traffic_policy:\n      on_http_request:\n        - actions: [{{ type: deny }}]\n  - name: open\n    url: https://open.example.test\n    upstream: {{ url: '{up}' }}\n"
            ),
        ),
    );
    let st = settled(&agent).await;
    match st.endpoints.get("guarded") {
        Some(EndpointState::Refused(r)) => {
            assert_eq!(r.code, "ERR_WICKET_4300");
            assert!(
                r.message
                    .contains("traffic policy enforcement is not available in this build"),
                "{}",
                r.message
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(bound_url(&st, "open"), "https://open.example.test");
    // Fail closed: the guarded host is not served at all.
    let https = edge.addrs().https.unwrap();
    let r = get(
        https,
        Some((&c, "guarded.example.test")),
        false,
        "guarded.example.test",
        "/hello",
    )
    .await;
    assert_eq!(r.status, http::StatusCode::NOT_FOUND);
    let r = get(
        https,
        Some((&c, "open.example.test")),
        false,
        "open.example.test",
        "/hello",
    )
    .await;
    assert_eq!(r.status, http::StatusCode::OK);
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_format() {
    let c = certs();
    let edge = start_edge(&c, edge_config(&c)).await;
    let up = upstream("app").await;
    let agent = start_agent(
        &c,
        &agent_yaml(
            &c,
            edge.addrs().tunnel,
            TOKEN,
            &format!(
                "  - name: web\n    url: http://m.example.test\n    upstream: {{ url: '{up}' }}\n"
            ),
        ),
    );
    settled(&agent).await;
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
