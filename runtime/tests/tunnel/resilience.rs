//! Reconnects, drains and isolation between streams.

use std::time::Duration;

use http::StatusCode;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_after_an_edge_restart_and_rebinds() {
    let c = certs();
    let edge = start_edge(&c, edge_config(&c)).await;
    let addrs = edge.addrs();
    let up = upstream("app").await;
    let echo = tcp_echo().await;
    let agent = start_endpoints(
        &c,
        addrs.tunnel,
        &format!(
            "  - name: web\n    url: http://r.example.test\n    upstream: {{ url: '{up}' }}\n  - name: echo\n    url: tcp://\n    upstream: {{ url: '{echo}' }}\n"
        ),
    );
    let st = settled(&agent).await;
    let tcp_url = bound_url(&st, "echo");
    let http = addrs.http.unwrap();
    assert_eq!(
        get(http, None, false, "r.example.test", "/hello")
            .await
            .status,
        StatusCode::OK
    );

    edge.shutdown().await;
    within("agent notices", agent.wait_for(|s| !s.connected)).await;

    // Same addresses as before.
    let edge = restart_edge(&c, edge_config(&c), &addrs).await;
    let st = within(
        "rebound",
        agent.wait_for(|s| {
            s.connected
                && s.sessions >= 2
                && matches!(
                    s.endpoints.get("echo"),
                    Some(wicket_runtime::agent::EndpointState::Bound { .. })
                )
                && matches!(
                    s.endpoints.get("web"),
                    Some(wicket_runtime::agent::EndpointState::Bound { .. })
                )
        }),
    )
    .await;
    assert_eq!(
        bound_url(&st, "echo"),
        tcp_url,
        "the tcp endpoint keeps its address"
    );
    for _ in 0..20 {
        let r = get(http, None, false, "r.example.test", "/hello").await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "no request fails once the agent is back"
        );
    }
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_does_not_stall_other_streams() {
    let c = certs();
    let up = upstream("app").await;
    let (edge, agent) = edge_and_web_agent(&c, edge_config(&c), "http://s.example.test", up).await;
    let http = edge.addrs().http.unwrap();
    // Three clients start 64 MiB downloads and never read them.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut conn = connect(http, None, false).await;
        let req = request(
            &conn,
            "http",
            "s.example.test",
            "/big/67108864",
            "GET",
            pattern_body(0, 1, None),
        );
        let res = conn.send(req).await;
        assert_eq!(res.status(), StatusCode::OK);
        stalled.push((conn, res));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Everything else still flows over the same session.
    for i in 0..50 {
        let r = get(
            http,
            None,
            i % 2 == 0,
            "s.example.test",
            &format!("/id/{i}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text(), i.to_string());
    }
    let r = get(http, None, false, "s.example.test", "/big/4194304").await;
    assert_eq!(r.body.len(), 4 * 1024 * 1024);
    drop(stalled);
    agent.shutdown().await;
    edge.shutdown().await;
}
