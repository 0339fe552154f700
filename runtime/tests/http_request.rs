//! `http-request` end to end: a policy asks an in-test service on loopback and later rules use
//! the answer; destinations outside the edge's allow list are refused at bind time or per
//! request; timeout, retries, redirects and the size cap.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use support::*;
use wicket_runtime::actions::ActionEnv;
use wicket_runtime::agent::EndpointState;

/// The side service: `/check?user=ann` allows, others deny; `/slow` answers after 5 s;
/// `/flaky` fails twice (503) then answers; `/big` sends 300 KiB; `/hop` redirects to `/check`;
/// `/away` redirects to a host outside the allow list.
async fn side_service(flaky: Arc<AtomicU32>) -> SocketAddr {
    serve(move |req: Request<Incoming>| {
        let flaky = flaky.clone();
        async move {
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or("").to_owned();
            let mut res = Response::new(full(""));
            match path.as_str() {
                "/check" => {
                    let allow = query.split('&').any(|p| p == "user=ann");
                    let seen = req
                        .headers()
                        .get("x-from-policy")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    *res.body_mut() = full(format!("{{\"allow\": {allow}, \"seen\": \"{seen}\"}}"));
                }
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    *res.body_mut() = full("late");
                }
                "/flaky" => {
                    if flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    } else {
                        *res.body_mut() = full("recovered");
                    }
                }
                "/big" => *res.body_mut() = full(vec![b'x'; 300 * 1024]),
                "/hop" => {
                    *res.status_mut() = StatusCode::FOUND;
                    res.headers_mut()
                        .insert("location", "/check?user=ann".parse().unwrap());
                }
                "/away" => {
                    *res.status_mut() = StatusCode::FOUND;
                    res.headers_mut()
                        .insert("location", "http://127.0.0.2:9/x".parse().unwrap());
                }
                _ => *res.status_mut() = StatusCode::NOT_FOUND,
            }
            res
        }
    })
    .await
}

fn policy(side: SocketAddr) -> String {
    format!(
        r#"
on_http_request:
  - expressions: ["req.url.path.startsWith('/app/')"]
    actions:
      - type: http-request
        config:
          url: "http://{side}/check"
          query_params: [{{key: user, value: "${{req.headers['x-user'][0]}}"}}]
          headers: {{x-from-policy: "path=${{req.url.path}}"}}
  - expressions: ["req.url.path.startsWith('/app/') && json.decode(actions.ngrok.http_request.res.body).allow != true"]
    actions: [{{type: deny, config: {{status_code: 403}}}}]
  - expressions: ["req.url.path.startsWith('/app/') && json.decode(actions.ngrok.http_request.res.body).seen != 'path=' + req.url.path"]
    actions: [{{type: deny, config: {{status_code: 418}}}}]
  - expressions: ["req.url.path == '/timeout'"]
    actions:
      - type: http-request
        config: {{url: "http://{side}/slow", timeout: 1s}}
      - type: custom-response
        config: {{status_code: 299, body: "${{actions.ngrok.http_request.error.code}}"}}
  - expressions: ["req.url.path == '/retry'"]
    actions:
      - type: http-request
        config:
          url: "http://{side}/flaky"
          retry_condition: "attempts < 3 && last_attempt.res.status_code >= 500"
      - type: custom-response
        config:
          status_code: 200
          body: "${{actions.ngrok.http_request.res.status_code}} ${{size(actions.ngrok.http_request.attempts)}} ${{actions.ngrok.http_request.res.body}}"
  - expressions: ["req.url.path == '/big'"]
    actions:
      - type: http-request
        config: {{url: "http://{side}/big", on_error: halt}}
  - expressions: ["req.url.path == '/hop'"]
    actions:
      - type: http-request
        config: {{url: "http://{side}/hop"}}
      - type: custom-response
        config: {{status_code: 200, body: "${{actions.ngrok.http_request.res.body}}"}}
  - expressions: ["req.url.path == '/away'"]
    actions:
      - type: http-request
        config: {{url: "http://{side}/away", on_error: halt}}
  - expressions: ["req.url.path == '/vars'"]
    actions:
      - type: set-vars
        config: {{vars: [{{user: "${{req.headers['x-name'][0]}}"}}]}}
      - type: http-request
        config:
          url: "http://{side}/check"
          query_params: [{{key: user, value: "${{vars.user}}"}}]
          headers: {{x-from-policy: "var=${{vars.user}}"}}
      - type: custom-response
        config: {{status_code: 200, body: "${{actions.ngrok.http_request.res.body}}"}}
  - expressions: ["req.url.path == '/dynamic'"]
    actions:
      - type: http-request
        config: {{url: "${{req.headers['x-target'][0]}}", on_error: halt}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_use_allowed_side_services() {
    let flaky = Arc::new(AtomicU32::new(0));
    let side = side_service(flaky.clone()).await;
    let up = upstream("app").await;
    let env = ActionEnv::with_roots(
        rustls::RootCertStore::empty(),
        [7; 32],
        vec!["http://127.0.0.1:*".into()],
    )
    .unwrap();
    let stack = Stack::builder()
        .edge_builder(move |b| b.action_env(Arc::new(env)))
        .policy_endpoint("guarded", "http://guarded.example.test", up, policy(side))
        .policy_endpoint(
            "ssrf",
            "http://ssrf.example.test",
            up,
            "on_http_request:\n  - actions:\n      - type: http-request\n        config: {url: 'http://169.254.169.254/latest/meta-data/'}\n",
        )
        .allow_refused()
        .start()
        .await;
    let status = &stack.status;
    bound_url(status, "guarded");
    bound_url(status, "guarded");

    // A constant destination outside the allow list refuses the bind, naming the setting.
    match status.endpoints.get("ssrf") {
        Some(EndpointState::Refused(r)) => {
            assert!(r.message.contains("`http_request_allow`"), "{r:?}");
            assert!(r.message.contains("169.254.169.254"), "{r:?}");
        }
        other => panic!("ssrf endpoint should be refused: {other:?}"),
    }

    let http = stack.http();
    let get = |path: &'static str, headers: &'static [(&'static str, &'static str)]| async move {
        http_get(http, "guarded.example.test", path, headers).await
    };

    // The service's answer decides: the allowed user reaches the upstream (a later rule also
    // checks the service saw the interpolated header).
    let r = get("/app/x", &[("x-user", "ann")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream"), "app");
    let r = get("/app/x", &[("x-user", "bob")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-upstream"), "");
    // No user header: the interpolation fails, the error is recorded (`on_error: continue`)
    // and the next rule, reading a response that does not exist, fails closed.
    let r = get("/app/x", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-upstream"), "");

    // Timeout: the error is recorded and the policy goes on.
    let r = get("/timeout", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (299, "ERR_WICKET_3602".into())
    );

    // Retries until the service recovers: 3 attempts.
    let r = get("/retry", &[]).await;
    assert_eq!(r.text(), "200 3 recovered");
    assert_eq!(flaky.load(Ordering::SeqCst), 3);

    // Size cap with `on_error: halt`.
    let r = get("/big", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3601");

    // Templates read the vars an earlier action of the phase set.
    let r = get("/vars", &[("x-name", "ann")]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (200, "{\"allow\": true, \"seen\": \"var=ann\"}".into())
    );
    let r = get("/vars", &[("x-name", "bob")]).await;
    assert_eq!(r.text(), "{\"allow\": false, \"seen\": \"var=bob\"}");

    // Redirects are followed inside the allow list, refused outside it.
    let r = get("/hop", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (200, "{\"allow\": true, \"seen\": \"\"}".into())
    );
    let r = get("/away", &[]).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3605");

    // An interpolated destination is checked per request.
    let r = http_get(
        http,
        "guarded.example.test",
        "/dynamic",
        &[("x-target", "http://localhost:1/")],
    )
    .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3605");
    assert!(r.text().contains("http_request_allow"), "{}", r.text());
}
