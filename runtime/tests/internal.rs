//! Internal endpoints and `forward-internal`, end to end: one public endpoint with a central
//! policy in front of devices that expose only `*.internal` endpoints.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;
use wicket_runtime::agent::EndpointState;

const CENTRAL: &str = r#"
on_http_request:
  - name: api key
    expressions: ["!('x-api-key' in req.headers) || req.headers['x-api-key'][0] != 'k1'"]
    actions: [{type: deny, config: {status_code: 401}}]
  - expressions: ["req.url.path.startsWith('/a/')"]
    actions: [{type: forward-internal, config: {url: "https://dev-a.site.internal"}}]
  - expressions: ["req.url.path.startsWith('/b/')"]
    actions: [{type: forward-internal, config: {url: "https://dev-b.site.internal", binding: internal}}]
  - expressions: ["req.url.path.startsWith('/c/')"]
    actions: [{type: forward-internal, config: {url: "https://dev-c.site.internal"}}]
  - expressions: ["req.url.path.startsWith('/by-header/')"]
    actions:
      - type: forward-internal
        config: {url: "https://${req.headers['x-device'][0]}.site.internal"}
  - expressions: ["req.url.path.startsWith('/gone/')"]
    actions: [{type: forward-internal, config: {url: "https://gone.site.internal"}}]
  - expressions: ["req.url.path.startsWith('/soft/')"]
    actions:
      - type: forward-internal
        config: {url: "https://gone.site.internal", on_error: continue}
      - type: custom-response
        config:
          status_code: 299
          body: "fallback ${actions.ngrok.forward_internal.error.code} ${actions.ngrok.forward_internal.url}"
  - expressions: ["req.url.path.startsWith('/loop/')"]
    actions: [{type: forward-internal, config: {url: "https://loop.site.internal"}}]
on_http_response:
  - actions: [{type: add-headers, config: {headers: {x-central: "yes"}}}]
"#;

const DEV_A: &str = r#"
on_http_request:
  - expressions: ["req.url.path == '/a/admin'"]
    actions: [{type: deny, config: {status_code: 403}}]
on_http_response:
  - actions: [{type: add-headers, config: {headers: {x-dev: "a"}}}]
"#;

const LOOP: &str = r#"
on_http_request:
  - actions: [{type: forward-internal, config: {url: "https://loop.site.internal"}}]
"#;

struct Fleet {
    certs: Certs,
    edge: wicket_runtime::edge::EdgeHandle,
    _central: wicket_runtime::agent::AgentHandle,
    _devices: wicket_runtime::agent::AgentHandle,
    dev_c: Option<wicket_runtime::agent::AgentHandle>,
}

async fn fleet() -> Fleet {
    let c = certs();
    let edge = start_edge(&c, edge_config(&c)).await;
    let tunnel = edge.addrs().tunnel;
    let (central_up, a_up, b_up, c_up) = (
        upstream("central").await,
        upstream("dev-a").await,
        upstream("dev-b").await,
        upstream("dev-c").await,
    );
    for (name, text) in [
        ("central.yml", CENTRAL),
        ("dev-a.yml", DEV_A),
        ("loop.yml", LOOP),
    ] {
        std::fs::write(c.dir.path().join(name), text).unwrap();
    }
    let central = start_endpoints(
        &c,
        tunnel,
        &format!(
            "  - name: central\n    url: http://central.example.test\n    upstream: {{ url: '{central_up}' }}\n    traffic_policy_file: central.yml\n"
        ),
    );
    let devices = start_endpoints(
        &c,
        tunnel,
        &format!(
            "  - name: a\n    url: https://dev-a.site.internal\n    upstream: {{ url: '{a_up}' }}\n    traffic_policy_file: dev-a.yml\n  - name: b\n    url: https://dev-b.site.internal\n    bindings: [internal]\n    upstream: {{ url: '{b_up}' }}\n  - name: loop\n    url: https://loop.site.internal\n    upstream: {{ url: '{b_up}' }}\n    traffic_policy_file: loop.yml\n"
        ),
    );
    let dev_c = start_endpoints(
        &c,
        tunnel,
        &format!(
            "  - name: c\n    url: https://dev-c.site.internal\n    upstream: {{ url: '{c_up}' }}\n"
        ),
    );
    for a in [&central, &devices, &dev_c] {
        let s = settled(a).await;
        for name in s.endpoints.keys() {
            bound_url(&s, name);
        }
    }
    let s = settled(&devices).await;
    assert_eq!(bound_url(&s, "a"), "https://dev-a.site.internal");
    Fleet {
        certs: c,
        edge,
        _central: central,
        _devices: devices,
        dev_c: Some(dev_c),
    }
}

impl Fleet {
    async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        http_get(self.edge.addrs().http.unwrap(), host, path, headers).await
    }

    /// A request to the central endpoint routed by `x-device: device`.
    async fn by_header(&self, device: &str) -> Reply {
        self.get(
            "central.example.test",
            "/by-header/z",
            &[("x-api-key", "k1"), ("x-device", device)],
        )
        .await
    }

    async fn central(&self, path: &str) -> Reply {
        self.get("central.example.test", path, &[("x-api-key", "k1")])
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_policy_in_front_of_internal_endpoints() {
    let mut f = fleet().await;

    // The central policy runs first: no key, no forward.
    let r = f.get("central.example.test", "/a/x", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-upstream"), "");

    // Forwarded by path to device A: its upstream answers, with the public Host; both response
    // phases ran (device A's, then the central one).
    let r = f.central("/a/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream"), "dev-a");
    assert_eq!(r.header("x-seen-host"), "central.example.test");
    assert_eq!(r.header("x-dev"), "a");
    assert_eq!(r.header("x-central"), "yes");
    assert!(
        r.header("x-seen-xff").contains("127.0.0.1"),
        "{:?}",
        r.headers
    );

    // Device A's own request policy applies.
    let r = f.central("/a/admin").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-upstream"), "");
    assert_eq!(
        r.header("x-central"),
        "yes",
        "the central response phase runs"
    );

    // Device B, with `binding: internal` in the action and the agent config.
    let r = f.central("/b/y").await;
    assert_eq!((r.status.as_u16(), r.header("x-upstream")), (200, "dev-b"));
    assert_eq!(r.header("x-dev"), "");

    // Routed by a header, through an interpolated URL.
    let r = f.by_header("dev-b").await;
    assert_eq!((r.status.as_u16(), r.header("x-upstream")), (200, "dev-b"));

    // Not forwarded: the central endpoint's own upstream.
    let r = f.central("/other").await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-upstream")),
        (200, "central")
    );

    // Device C goes offline: a clear error naming the internal endpoint.
    let r = f.central("/c/1").await;
    assert_eq!((r.status.as_u16(), r.header("x-upstream")), (200, "dev-c"));
    f.dev_c.take().unwrap().shutdown().await;
    let mut r = f.central("/c/2").await;
    for _ in 0..50 {
        if r.status != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        r = f.central("/c/2").await;
    }
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3201");
    assert!(
        r.text().contains("https://dev-c.site.internal"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_endpoints_are_not_public_and_failures_are_clear() {
    let f = fleet().await;

    // Public listeners never match an internal name.
    for host in [
        "dev-a.site.internal",
        "DEV-B.site.internal.",
        "loop.site.internal",
    ] {
        let r = f.get(host, "/a/x", &[]).await;
        assert_eq!(r.status, 404, "{host}");
        assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3200", "{host}");
        assert_eq!(r.header("x-upstream"), "", "{host}");
    }

    // Internal names the edge does not serve are refused at bind time.
    let bad = start_agent(
        &f.certs,
        &agent_yaml(
            &f.certs,
            f.edge.addrs().tunnel,
            TOKEN,
            "  - name: tls\n    url: tls://db.site.internal\n    upstream: { url: '127.0.0.1:1' }\n  - name: deep\n    url: https://a.b.c.d.e.f.internal\n    upstream: { url: '127.0.0.1:1' }\n",
        ),
    );
    let s = settled(&bad).await;
    for (name, needle) in [
        ("tls", "internal `tls` endpoints"),
        ("deep", "1 to 5 labels"),
    ] {
        match s.endpoints.get(name) {
            Some(EndpointState::Refused(r)) => {
                assert_eq!(r.code, "ERR_WICKET_4200", "{r:?}");
                assert!(r.message.contains(needle), "{r:?}");
            }
            other => panic!("`{name}` should be refused: {other:?}"),
        }
    }

    // Unknown target, `on_error: halt` (the default).
    let r = f.central("/gone/1").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3500");
    assert!(
        r.text().contains("https://gone.site.internal"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-upstream"), "");

    // `on_error: continue`: the central policy's next action answers.
    let r = f.central("/soft/1").await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (
            299,
            "fallback ERR_WICKET_3500 https://gone.site.internal".to_owned()
        )
    );

    // A forwarding loop hits the hop limit.
    let r = f.central("/loop/1").await;
    assert_eq!(r.status, 508, "{}", r.text());
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3501");
    assert_eq!(r.header("x-upstream"), "");

    // An interpolated target that is not internal is refused.
    let r = f.by_header("x.example.test/").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3502");
}
