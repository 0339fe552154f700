//! `wicket quickstart` end to end: the library call the command makes, then the equivalent of
//! every printed `curl`, sent with hyper (plain HTTP and HTTPS trusting the generated CA).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wicket_runtime::quickstart::{
    DEMO_PASSWORD, DEMO_USER, Demo, HOST, Quickstart, QuickstartError, QuickstartOptions,
};

/// Upper bound for any single await.
const T: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn example_policy() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart-policy.yml"
    );
    std::fs::read_to_string(path).unwrap()
}

async fn start(dir: &std::path::Path, policy: String) -> Result<Quickstart, QuickstartError> {
    within(
        "quickstart start",
        Quickstart::start(QuickstartOptions {
            data_dir: dir.join("data"),
            http_port: 0,
            https_port: 0,
            policy,
        }),
    )
    .await
}

/// One request as the demo's `curl` sends it; returns the status and body.
async fn send(qs: &Quickstart, demo: &Demo) -> (StatusCode, Bytes) {
    let addr: SocketAddr = qs.addr_for(demo);
    let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    let mut req = Request::builder()
        .uri(demo.path)
        .header(http::header::HOST, format!("{HOST}:{}", addr.port()));
    if let Some((u, p)) = demo.basic_auth {
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req = req.header(http::header::AUTHORIZATION, format!("Basic {cred}"));
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    if demo.scheme == "https" {
        let roots = wicket_runtime::tls::root_store(&[qs.ca_path().to_owned()]).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(wicket_runtime::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
        let tls = within(
            "tls handshake",
            tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
        )
        .await
        .unwrap();
        request(TokioIo::new(tls), req).await
    } else {
        request(TokioIo::new(tcp), req).await
    }
}

async fn request<I>(io: TokioIo<I>, req: Request<Empty<Bytes>>) -> (StatusCode, Bytes)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = within("handshake", hyper::client::conn::http1::handshake(io))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let res = within("response", sender.send_request(req)).await.unwrap();
    let status = res.status();
    let body = within("body", res.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    conn.abort();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_printed_curl_gets_the_status_it_claims() {
    let dir = tempfile::tempdir().unwrap();
    let qs = start(dir.path(), example_policy()).await.unwrap();
    assert!(qs.ca_path().starts_with(dir.path()));
    assert!(qs.policy_path().exists());

    let banner = qs.banner();
    let demos = qs.demos();
    assert!(demos.len() >= 6, "{demos:?}");
    let mut seen = std::collections::BTreeSet::new();
    for demo in &demos {
        let curl = qs.curl(demo);
        assert!(banner.contains(&curl), "banner lacks `{curl}`");
        assert!(
            curl.contains(&format!(
                "--resolve {HOST}:{}:127.0.0.1",
                qs.addr_for(demo).port()
            )),
            "{curl}"
        );
        assert_eq!(curl.contains("--cacert"), demo.scheme == "https", "{curl}");
        for (i, want) in demo.expect.iter().enumerate() {
            let (status, body) = send(&qs, demo).await;
            assert_eq!(
                status.as_u16(),
                *want,
                "request {i} of `{}` ({curl}): body {body:?}",
                demo.title
            );
            if status == StatusCode::OK {
                assert!(body.starts_with(b"hello from"), "{body:?}");
            }
            seen.insert((demo.path, status.as_u16()));
        }
    }
    // Each rule was observed at work.
    for expected in [
        ("/", 200),
        ("/admin", 403),
        ("/private", 401),
        ("/private", 200),
        ("/api", 200),
        ("/api", 429),
    ] {
        assert!(
            seen.contains(&expected),
            "{expected:?} not seen in {seen:?}"
        );
    }
    within("shutdown", qs.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_to_the_policy_file_apply_live() {
    let dir = tempfile::tempdir().unwrap();
    let qs = start(dir.path(), example_policy()).await.unwrap();
    let admin = qs.demos().into_iter().find(|d| d.path == "/admin").unwrap();
    assert_eq!(send(&qs, &admin).await.0, StatusCode::FORBIDDEN);
    let edited = example_policy().replace("- 10.0.0.0/8", "- 127.0.0.0/8");
    assert_ne!(edited, example_policy());
    std::fs::write(qs.policy_path(), edited).unwrap();
    // The agent polls the file every 2 s; give it up to 30 s.
    let mut status = StatusCode::FORBIDDEN;
    for _ in 0..150 {
        status = send(&qs, &admin).await.0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, StatusCode::OK);
    within("shutdown", qs.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_policy_holds_the_printed_credentials() {
    let policy = example_policy();
    assert!(policy.contains(&format!("{DEMO_USER}:{DEMO_PASSWORD}")));
    assert!(policy.contains("10.0.0.0/8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_lint_errors_is_refused_with_its_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "on_http_request:\n  - actions:\n      - type: rate-limit\n        config:\n          name: x\n          algorithm: sliding_window\n          capacity: 5\n          rate: 10s\n          bucket_key: [conn.client_ip]\n";
    let err = start(dir.path(), bad.into()).await.unwrap_err();
    assert!(
        matches!(&err, QuickstartError::Refused { .. }),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("rate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_falls_back_to_one_the_os_chooses() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let qs = within(
        "quickstart start",
        Quickstart::start(QuickstartOptions {
            data_dir: dir.path().join("data"),
            http_port: port,
            https_port: 0,
            policy: example_policy(),
        }),
    )
    .await
    .unwrap();
    assert_ne!(qs.http_addr().port(), port);
    assert_ne!(qs.http_addr().port(), 0);
    within("shutdown", qs.shutdown()).await;
}
