//! `conn.tls.ja4_fingerprint` through the real edge: HTTPS clients of known configurations,
//! their fingerprints computed from the same ClientHello bytes the client library sends, and a
//! rule on the fingerprint enforced.

// Test code: failures should be loud.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

mod support;
use support::*;

const POLICY: &str = r#"on_http_request:
  - expressions: ["conn.tls.ja4_fingerprint.substring(1, 3) != '13'"]
    actions: [{type: deny, config: {status_code: 426}}]
  - actions:
      - type: custom-response
        config: {status_code: 200, body: "${conn.tls.ja4_fingerprint}"}
"#;

fn client_config(
    roots: &rustls::RootCertStore,
    alpn: &[u8],
    tls12_only: bool,
) -> rustls::ClientConfig {
    let builder = if tls12_only {
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        rustls::ClientConfig::builder()
    };
    let mut cfg = builder
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg
}

/// The JA4 of the first flight a client with this configuration sends to `host`.
fn expected(cfg: rustls::ClientConfig, host: &str) -> String {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut wire = Vec::new();
    conn.write_tls(&mut wire).unwrap();
    wicket_runtime::ja4::fingerprint(&wire).unwrap()
}

/// One HTTP/1.1 GET over TLS with this configuration; the status and body.
async fn get(stack: &Stack, cfg: rustls::ClientConfig, host: &str) -> (u16, String) {
    let tcp = TcpStream::connect(stack.https()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let mut tls = within(
        "tls",
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .unwrap();
    tls.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let raw = within("response", async {
        let mut v = Vec::new();
        let _ = tls.read_to_end(&mut v).await;
        v
    })
    .await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fingerprint_of_the_client_hello_reaches_the_policy() {
    let up = upstream("fp").await;
    let stack = Stack::builder()
        .policy_endpoint("fp", "https://fp.example.test", up, POLICY)
        .start()
        .await;
    bound_url(&stack.status, "fp");
    let roots = stack.certs.roots.clone();
    let host = "fp.example.test";

    // A TLS 1.3 client offering `http/1.1`: the policy sees the fingerprint of its hello.
    let (status, body) = get(&stack, client_config(&roots, b"http/1.1", false), host).await;
    assert_eq!(status, 200, "{body}");
    let want = expected(client_config(&roots, b"http/1.1", false), host);
    assert_eq!(body, want);
    assert!(
        want.starts_with("t13d") && want[8..].starts_with("h1_"),
        "{want}"
    );

    // Another ALPN changes only the ALPN characters of the first part.
    let h2 = expected(client_config(&roots, b"h2", false), host);
    assert_eq!(h2[..8], want[..8]);
    assert_eq!(&h2[8..10], "h2");
    assert_eq!(h2[10..], want[10..]);

    // A client that offers TLS 1.2 only: `t12…`, refused by the rule.
    let (status, _) = get(&stack, client_config(&roots, b"http/1.1", true), host).await;
    assert_eq!(status, 426);
    assert!(
        expected(client_config(&roots, b"http/1.1", true), host).starts_with("t12d"),
        "the TLS 1.2 client's fingerprint"
    );
    stack.shutdown().await;
}
