//! `wicket test` with injected runtime results: external actions carried out offline
//! (`actions:`, `jwt:`, `tls:`), removed-header and absent-header assertions, and the failure
//! report of a case that reaches an external action without an injection (snapshot).

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

const POLICY: &str = r#"on_tcp_connect:
  - actions:
      - type: terminate-tls
        config:
          mutual_tls_verification_strategy: require-and-verify
          mutual_tls_certificate_authorities:
            - |
              -----BEGIN CERTIFICATE-----
              MIIBszCCAVmgAwIBAgIUB0wicketexampledeviceCA0wCgYIKoZIzj0EAwIwFjEU
              -----END CERTIFICATE-----
on_http_request:
  - actions:
      - type: remove-headers
        config: { headers: [x-debug] }
  - expressions: ["req.url.path.startsWith('/sso/')"]
    actions:
      - type: oauth
        config: { provider: google }
  - expressions: ["req.url.path.startsWith('/sso/') && !actions.ngrok.oauth.identity.email.endsWith('@example.com')"]
    actions:
      - type: deny
        config: { status_code: 403 }
  - expressions: ["req.url.path.startsWith('/sso/')"]
    actions:
      - type: add-headers
        config: { headers: { x-user: "${actions.ngrok.oauth.identity.email}" } }
  - actions:
      - type: add-headers
        config: { headers: { x-device: "${conn.tls.client.subject.common_name}" } }
"#;

const PASSING: &str = r#"tests:
  - name: injected identity and certificate
    request: GET https://app.example.test/sso/home
    headers: { x-debug: "1" }
    actions: { oauth: { identity: { email: ana@example.com } } }
    tls: { client: { subject: { common_name: dev-1 } } }
    expect:
      phase: on_http_request
      decision: continue
      removed_headers: [x-debug]
      added_headers: { x-user: ana@example.com, x-device: dev-1 }
  - name: other domains are denied after the sign in
    request: GET https://app.example.test/sso/home
    actions: { oauth: { identity: { email: eve@evil.test } } }
    tls: { client: { subject: { common_name: dev-1 } } }
    expect:
      phase: on_http_request
      decision: deny
      status: 403
      added_headers: { x-user: null }
  - name: the handshake is the runtime's without a certificate
    request: GET https://app.example.test/
    expect:
      decision: external
      action: terminate-tls
"#;

const FAILING: &str = r#"tests:
  - name: no oauth result injected
    request: GET https://app.example.test/sso/home
    tls: { client: { subject: { common_name: dev-1 } } }
    expect:
      phase: on_http_request
      decision: continue
  - name: a header that is not removed
    request: GET https://app.example.test/
    tls: { client: { subject: { common_name: dev-1 } } }
    expect:
      phase: on_http_request
      removed_headers: [x-debug, x-other]
      added_headers: { x-device: null }
"#;

fn wicket_test(cases: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yml");
    let file = dir.path().join("cases.yml");
    std::fs::write(&policy, POLICY).unwrap();
    std::fs::write(&file, cases).unwrap();
    Command::new(env!("CARGO_BIN_EXE_wicket"))
        .current_dir(dir.path())
        .args(["test", "policy.yml", "cases.yml"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn injected_results_let_the_later_rules_run() {
    let out = wicket_test(PASSING);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
}

#[test]
fn missing_injections_and_unmet_header_assertions_fail_readably() {
    let out = wicket_test(FAILING);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}
