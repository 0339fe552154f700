//! Mutual TLS end to end: `terminate-tls` at the edge on `https://` and `tls://` endpoints,
//! client certificate fields in later rules, TLS version limits, custom server certificates,
//! and `agent_tls_termination` (TLS ends at the agent; the edge passes it through by SNI).
//!
//! One edge, one agent and the upstreams are started once; every case uses real rustls
//! clients over loopback. The matrix is printed with its case count.

// A harness: any failure here should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wicket_runtime::agent::EndpointState;

/// The organization of the device certificates.
const ORG: &str = "Acme Devices";

static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
static BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

// ---------------------------------------------------------------- certificates

fn x509_names(der: &CertificateDer<'_>) -> (String, String) {
    let f = wicket_runtime::tls::CertFields::parse(der).unwrap();
    (f.issuer.common_name, f.subject.common_name)
}

fn client(cn: &str, issuer: Option<&Ca>) -> Ident {
    leaf(
        LeafSpec {
            cn,
            org: Some(ORG),
            ou: None,
            sans: vec![format!("{cn}.devices.example.test")],
            validity: None,
            server: false,
        },
        issuer,
    )
}

// ---------------------------------------------------------------- harness

/// An HTTP upstream that reports every `x-*` request header back as `seen-x-*`.
async fn header_upstream() -> SocketAddr {
    serve(|req: Request<Incoming>| async move {
        let mut res = Response::new(full("ok"));
        for (k, v) in req.headers() {
            if k.as_str().starts_with("x-") && !k.as_str().starts_with("x-forwarded") {
                let name = format!("seen-{}", k.as_str());
                res.headers_mut().append(
                    http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    v.clone(),
                );
            }
        }
        res
    })
    .await
}

/// A TCP echo server that also reports, as the first line, whether the first bytes it got
/// looked like a TLS record (`tls`) or not (`plain`).
async fn echo_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let Ok(n) = tcp.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                let kind = if buf[0] == 0x16 { "tls" } else { "plain" };
                let _ = tcp.write_all(format!("{kind}:").as_bytes()).await;
                let _ = tcp.write_all(&buf[..n]).await;
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// What a successful exchange saw.
struct Seen {
    status: StatusCode,
    headers: http::HeaderMap,
    tls_version: Option<rustls::ProtocolVersion>,
    server_cn: String,
}

impl Seen {
    fn h(&self, n: &str) -> &str {
        self.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<absent>")
    }
}

/// GET `/` over HTTP/1.1 with `host`, on a TLS connection to the edge with `sni`.
async fn https_get(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    spec: &ClientSpec<'_>,
) -> Result<Seen, String> {
    let tls = tls_connect(addr, sni, spec).await?;
    let (_, conn) = tls.get_ref();
    let tls_version = conn.protocol_version();
    let server_cn = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| x509_names(c).1)
        .unwrap_or_default();
    let req = Request::builder()
        .uri("/")
        .header("host", host)
        .body(full(Bytes::new()))
        .unwrap();
    let reply = exchange(TokioIo::new(tls), req).await?;
    Ok(Seen {
        status: reply.status,
        headers: reply.headers,
        tls_version,
        server_cn,
    })
}

/// Sends `msg` over a TLS connection to a `tls://` endpoint and reads the echo.
async fn tls_echo(
    addr: SocketAddr,
    sni: &str,
    spec: &ClientSpec<'_>,
    msg: &str,
) -> Result<(String, String), String> {
    let mut tls = tls_connect(addr, sni, spec).await?;
    let server_cn = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| x509_names(c).1)
        .unwrap_or_default();
    tls.write_all(msg.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let want = "plain:".len() + msg.len();
    let mut got = vec![0u8; want];
    within("echo", tls.read_exact(&mut got))
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok((String::from_utf8_lossy(&got).into_owned(), server_cn))
}

fn policy_file(dir: &Path, name: &str, policy: &serde_json::Value) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(policy).unwrap()).unwrap();
    path
}

fn terminate(config: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"actions": [{"type": "terminate-tls", "config": config}]})
}

/// The request rules reporting the connection's TLS fields to the upstream.
fn report_rules() -> serde_json::Value {
    serde_json::json!([
        {"actions": [{"type": "add-headers", "config": {"headers": {
            "x-client-cn": "${conn.tls.client.subject.common_name}",
            "x-client-issuer-cn": "${conn.tls.client.issuer.common_name}",
            "x-client-subject": "${conn.tls.client.subject}",
            "x-client-serial": "${conn.tls.client.serial_number}",
            "x-client-sigalg": "${conn.tls.client.signature_algorithm}",
            "x-client-not-after": "${string(conn.tls.client.validity.not_after)}"
        }}}, {"type": "add-headers", "config": {"headers": {
            "x-tls-version": "${conn.tls.version}",
            "x-tls-cipher": "${conn.tls.cipher_suite}",
            "x-tls-sni": "${conn.tls.sni}",
            "x-server-cn": "${conn.tls.server.subject.common_name}",
            "x-action-cn": "${actions.ngrok.terminate_tls.client.subject.common_name}"
        }}}]},
        {"expressions": ["size(conn.tls.client.san.dns_names) > 0"],
         "actions": [{"type": "add-headers", "config": {"headers": {
            "x-client-dns": "${conn.tls.client.san.dns_names[0]}"
        }}}]},
        {"expressions": ["'admins' in conn.tls.client.subject.organizational_unit"],
         "actions": [{"type": "add-headers", "config": {"headers": {"x-route": "admin"}}}]}
    ])
}

// ---------------------------------------------------------------- the matrix

type Outcome = Result<String, String>;

fn expect_ok(r: Result<Seen, String>, checks: &[(&str, &str)]) -> Outcome {
    let seen = r?;
    if seen.status != StatusCode::OK {
        return Err(format!("status {}", seen.status));
    }
    for (h, want) in checks {
        let got = seen.h(h);
        if got != *want {
            return Err(format!("`{h}` is `{got}`, wanted `{want}`"));
        }
    }
    Ok(format!(
        "200, {}",
        checks
            .iter()
            .map(|(h, v)| format!("{h}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

fn expect_refused<T>(r: Result<T, String>) -> Outcome {
    match r {
        Ok(_) => Err("the connection was served".into()),
        Err(e) => Ok(format!("refused ({e})")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_matrix() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let c = certs();
    let dir = c.dir.path().to_owned();

    // Client-side PKI.
    let device_ca = root_ca("Device CA");
    let inter = intermediate_ca("Device Intermediate CA", &device_ca);
    let other_ca = root_ca("Other CA");
    let device1 = client("device-1", Some(&device_ca));
    let device2 = client("device-2", Some(&device_ca));
    let admin = leaf(
        LeafSpec {
            org: Some(ORG),
            cn: "ops-console",
            ou: Some("admins"),
            sans: vec!["ops.devices.example.test".into()],
            validity: None,
            server: false,
        },
        Some(&device_ca),
    );
    let via_inter = client("device-3", Some(&inter));
    let wrong_ca = client("device-1", Some(&other_ca));
    let self_signed = client("self-signed-device", None);
    let expired = leaf(
        LeafSpec {
            org: Some(ORG),
            cn: "device-old",
            ou: None,
            sans: vec![],
            validity: Some((2000, 2001)),
            server: false,
        },
        Some(&device_ca),
    );
    let future = leaf(
        LeafSpec {
            org: Some(ORG),
            cn: "device-future",
            ou: None,
            sans: vec![],
            validity: Some((2090, 2100)),
            server: false,
        },
        Some(&device_ca),
    );
    // Server certificates that are not the edge's: one in a policy, one at the agent.
    let custom_ca = root_ca("Custom Server CA");
    let custom_server = leaf(
        LeafSpec {
            org: Some(ORG),
            cn: "custom.example.test",
            ou: None,
            sans: vec!["custom.example.test".into()],
            validity: None,
            server: true,
        },
        Some(&custom_ca),
    );
    let agent_ca = root_ca("Agent CA");
    let agent_server = leaf(
        LeafSpec {
            org: Some(ORG),
            cn: "device-agent",
            ou: None,
            sans: vec!["tls-agent.example.test".into()],
            validity: None,
            server: true,
        },
        Some(&agent_ca),
    );
    let device_ca_pem = device_ca.cert.pem();
    std::fs::write(dir.join("device-ca.pem"), &device_ca_pem).unwrap();
    std::fs::write(dir.join("agent.pem"), &agent_server.chain_pem).unwrap();
    std::fs::write(dir.join("agent-key.pem"), &agent_server.key_pem).unwrap();

    // Policies.
    let cas = serde_json::json!([device_ca_pem]);
    let with_report = |tcp: Vec<serde_json::Value>| serde_json::json!({"on_tcp_connect": tcp, "on_http_request": report_rules()});
    let p_verify = policy_file(
        &dir,
        "verify",
        &with_report(vec![terminate(serde_json::json!({
            "mutual_tls_certificate_authorities": cas
        }))]),
    );
    let p_request = policy_file(
        &dir,
        "request",
        &with_report(vec![terminate(serde_json::json!({
            "mutual_tls_certificate_authorities": cas,
            "mutual_tls_verification_strategy": "request"
        }))]),
    );
    let p_any = policy_file(
        &dir,
        "any",
        &with_report(vec![terminate(serde_json::json!({
            "mutual_tls_verification_strategy": "require-any"
        }))]),
    );
    let p_deny = policy_file(
        &dir,
        "deny",
        &with_report(vec![
            terminate(serde_json::json!({"mutual_tls_certificate_authorities": cas})),
            serde_json::json!({
                "expressions": ["conn.tls.client.subject.common_name != 'device-1'"],
                "actions": [{"type": "deny"}]
            }),
        ]),
    );
    let p_min13 = policy_file(
        &dir,
        "min13",
        &with_report(vec![terminate(serde_json::json!({"min_version": "1.3"}))]),
    );
    let p_max12 = policy_file(
        &dir,
        "max12",
        &with_report(vec![terminate(serde_json::json!({"max_version": "1.2"}))]),
    );
    let p_custom = policy_file(
        &dir,
        "custom",
        &with_report(vec![terminate(serde_json::json!({
            "server_certificate": custom_server.chain_pem,
            "server_private_key": custom_server.key_pem
        }))]),
    );
    let p_tls = policy_file(
        &dir,
        "tls-edge",
        &serde_json::json!({"on_tcp_connect": [
            terminate(serde_json::json!({"mutual_tls_certificate_authorities": cas})),
            {"expressions": ["conn.tls.client.subject.common_name == 'device-2'"],
             "actions": [{"type": "deny"}]}
        ]}),
    );
    let p_bad = policy_file(
        &dir,
        "bad",
        &serde_json::json!({"on_tcp_connect": [terminate(serde_json::json!({
            "mutual_tls_certificate_authorities": ["-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"]
        }))]}),
    );

    let web = header_upstream().await;
    let echo = echo_upstream().await;
    let ep = |name: &str, url: &str, up: SocketAddr, policy: &Path| {
        format!(
            "  - name: {name}\n    url: {url}\n    upstream: {{ url: '{up}' }}\n    traffic_policy_file: {}\n",
            policy.display()
        )
    };
    let mut endpoints = String::new();
    for (name, policy) in [
        ("mtls", &p_verify),
        ("request", &p_request),
        ("any", &p_any),
        ("deny", &p_deny),
        ("v13", &p_min13),
        ("v12", &p_max12),
        ("custom", &p_custom),
    ] {
        endpoints.push_str(&ep(
            name,
            &format!("https://{name}.example.test"),
            web,
            policy,
        ));
    }
    endpoints.push_str(&format!(
        "  - name: tls-edge\n    url: tls://tls-edge.example.test\n    upstream: {{ url: '{echo}' }}\n    traffic_policy_file: {}\n",
        p_tls.display()
    ));
    endpoints.push_str(&format!(
        "  - name: tls-pass\n    url: tls://tls-pass.example.test\n    upstream: {{ url: '{echo}' }}\n"
    ));
    endpoints.push_str(&format!(
        "  - name: tls-agent\n    url: tls://tls-agent.example.test\n    upstream: {{ url: '{echo}' }}\n    agent_tls_termination:\n      server_certificate: agent.pem\n      server_private_key: agent-key.pem\n      mutual_tls_certificate_authorities: [device-ca.pem]\n"
    ));
    endpoints.push_str(&ep("bad", "https://bad.example.test", web, &p_bad));
    let stack = Stack::builder()
        .certs(c)
        .edge_config(|cfg| cfg.metrics_listen = None)
        .endpoints_yaml(&endpoints)
        .allow_refused()
        .start()
        .await;
    let (https, status) = (stack.https(), &stack.status);

    let (tls13, tls12, both) = (TLS13, TLS12, BOTH);
    // The identities live for the whole test; leak them to get simple `'static` borrows.
    let leak = |i: &Ident| -> &'static Ident { Box::leak(Box::new(i.clone())) };
    let (device1, device2, admin, via_inter, wrong_ca, self_signed, expired, future) = (
        leak(&device1),
        leak(&device2),
        leak(&admin),
        leak(&via_inter),
        leak(&wrong_ca),
        leak(&self_signed),
        leak(&expired),
        leak(&future),
    );
    let get = |name: &'static str, spec: ClientSpec<'static>| {
        let host = format!("{name}.example.test");
        async move { https_get(https, &host, &host, &spec).await }
    };
    let edge_roots: &'static rustls::RootCertStore = Box::leak(Box::new(stack.certs.roots.clone()));
    let client_spec =
        |ident: Option<&'static Ident>,
         versions: &'static [&'static rustls::SupportedProtocolVersion]| ClientSpec {
            roots: edge_roots,
            ident,
            versions,
            alpn_h1: true,
        };

    let mut matrix: Vec<(&str, Outcome)> = Vec::new();

    // require-and-verify (the default strategy).
    matrix.push((
        "require-and-verify: valid device-1 certificate -> served, fields upstream",
        expect_ok(
            get("mtls", client_spec(Some(device1), both)).await,
            &[
                ("seen-x-client-cn", "device-1"),
                ("seen-x-client-issuer-cn", "Device CA"),
                ("seen-x-client-subject", "O=Acme Devices,CN=device-1"),
                ("seen-x-client-dns", "device-1.devices.example.test"),
                ("seen-x-client-sigalg", "ECDSA-SHA256"),
                ("seen-x-action-cn", "device-1"),
                ("seen-x-tls-version", "1.3"),
                ("seen-x-tls-sni", "mtls.example.test"),
                ("seen-x-server-cn", "Wicket edge"),
            ],
        ),
    ));
    matrix.push((
        "require-and-verify: no client certificate -> handshake fails",
        expect_refused(get("mtls", client_spec(None, both)).await),
    ));
    matrix.push((
        "require-and-verify: certificate from another CA -> handshake fails",
        expect_refused(get("mtls", client_spec(Some(wrong_ca), both)).await),
    ));
    matrix.push((
        "require-and-verify: expired certificate -> handshake fails",
        expect_refused(get("mtls", client_spec(Some(expired), both)).await),
    ));
    matrix.push((
        "require-and-verify: not yet valid certificate -> handshake fails",
        expect_refused(get("mtls", client_spec(Some(future), both)).await),
    ));
    matrix.push((
        "require-and-verify: self-signed certificate -> handshake fails",
        expect_refused(get("mtls", client_spec(Some(self_signed), both)).await),
    ));
    matrix.push((
        "require-and-verify: chain through an intermediate CA -> served",
        expect_ok(
            get("mtls", client_spec(Some(via_inter), both)).await,
            &[
                ("seen-x-client-cn", "device-3"),
                ("seen-x-client-issuer-cn", "Device Intermediate CA"),
            ],
        ),
    ));
    matrix.push((
        "require-and-verify over TLS 1.2: valid certificate -> served",
        expect_ok(
            get("mtls", client_spec(Some(device1), tls12)).await,
            &[
                ("seen-x-client-cn", "device-1"),
                ("seen-x-tls-version", "1.2"),
            ],
        ),
    ));
    // request.
    matrix.push((
        "request: no client certificate -> served, empty client fields",
        expect_ok(
            get("request", client_spec(None, both)).await,
            &[
                ("seen-x-client-cn", ""),
                ("seen-x-client-dns", "<absent>"),
                ("seen-x-tls-version", "1.3"),
            ],
        ),
    ));
    matrix.push((
        "request: valid certificate -> served with its fields",
        expect_ok(
            get("request", client_spec(Some(device2), both)).await,
            &[("seen-x-client-cn", "device-2")],
        ),
    ));
    matrix.push((
        "request: certificate from another CA -> handshake fails",
        expect_refused(get("request", client_spec(Some(wrong_ca), both)).await),
    ));
    // require-any.
    matrix.push((
        "require-any: self-signed certificate -> served",
        expect_ok(
            get("any", client_spec(Some(self_signed), both)).await,
            &[
                ("seen-x-client-cn", "self-signed-device"),
                ("seen-x-client-issuer-cn", "self-signed-device"),
            ],
        ),
    ));
    matrix.push((
        "require-any: no client certificate -> handshake fails",
        expect_refused(get("any", client_spec(None, both)).await),
    ));
    // Rules over certificate fields.
    matrix.push((
        "field rule in on_tcp_connect: device-1 allowed",
        expect_ok(
            get("deny", client_spec(Some(device1), both)).await,
            &[("seen-x-client-cn", "device-1")],
        ),
    ));
    matrix.push((
        "field rule in on_tcp_connect: device-2 (common_name != 'device-1') -> closed",
        expect_refused(get("deny", client_spec(Some(device2), both)).await),
    ));
    matrix.push((
        "routing header from the certificate OU: ops-console (OU admins) -> x-route: admin",
        expect_ok(
            get("mtls", client_spec(Some(admin), both)).await,
            &[
                ("seen-x-client-cn", "ops-console"),
                ("seen-x-route", "admin"),
            ],
        ),
    ));
    matrix.push((
        "no routing header for a device without the OU",
        expect_ok(
            get("mtls", client_spec(Some(device2), both)).await,
            &[("seen-x-route", "<absent>")],
        ),
    ));
    // Version limits.
    matrix.push((
        "min_version 1.3: TLS 1.2-only client -> handshake fails",
        expect_refused(get("v13", client_spec(None, tls12)).await),
    ));
    matrix.push((
        "min_version 1.3: TLS 1.3 client -> served over 1.3",
        expect_ok(
            get("v13", client_spec(None, both)).await,
            &[
                ("seen-x-tls-version", "1.3"),
                ("seen-x-tls-cipher", "TLS_AES_256_GCM_SHA384"),
            ],
        ),
    ));
    matrix.push((
        "max_version 1.2: TLS 1.3-capable client negotiates 1.2",
        get("v12", client_spec(None, both)).await.and_then(|s| {
            if s.tls_version != Some(rustls::ProtocolVersion::TLSv1_2) {
                return Err(format!("negotiated {:?}", s.tls_version));
            }
            expect_ok(Ok(s), &[("seen-x-tls-version", "1.2")])
        }),
    ));
    matrix.push((
        "max_version 1.2: TLS 1.3-only client -> handshake fails",
        expect_refused(get("v12", client_spec(None, tls13)).await),
    ));
    // Custom server certificate from the policy.
    let custom_roots: &'static rustls::RootCertStore = Box::leak(Box::new(roots_of(&custom_ca)));
    matrix.push((
        "server_certificate in the policy: client trusting its CA sees it",
        get(
            "custom",
            ClientSpec {
                roots: custom_roots,
                ident: None,
                versions: both,
                alpn_h1: true,
            },
        )
        .await
        .and_then(|s| {
            if s.server_cn != "custom.example.test" {
                return Err(format!("server certificate `{}`", s.server_cn));
            }
            expect_ok(Ok(s), &[("seen-x-server-cn", "custom.example.test")])
        }),
    ));
    matrix.push((
        "server_certificate in the policy: client trusting only the edge CA -> fails",
        expect_refused(get("custom", client_spec(None, both)).await),
    ));
    // Another endpoint's name on a connection set up for a different one.
    matrix.push((
        "Host of an mTLS endpoint on a connection with another SNI -> 421",
        match https_get(
            https,
            "request.example.test",
            "mtls.example.test",
            &client_spec(None, both),
        )
        .await
        {
            Ok(s) if s.status == StatusCode::MISDIRECTED_REQUEST => Ok("421".into()),
            Ok(s) => Err(format!("status {}", s.status)),
            Err(e) => Err(e),
        },
    ));
    // tls:// endpoints.
    let raw_spec =
        |ident: Option<&'static Ident>, roots: &'static rustls::RootCertStore| ClientSpec {
            roots,
            ident,
            versions: both,
            alpn_h1: false,
        };
    matrix.push((
        "tls:// with terminate-tls: device-1 -> the agent gets plaintext",
        match tls_echo(
            https,
            "tls-edge.example.test",
            &raw_spec(Some(device1), edge_roots),
            "ping",
        )
        .await
        {
            Ok((echo, cn)) if echo == "plain:ping" && cn == "Wicket edge" => {
                Ok(format!("echo `{echo}`"))
            }
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e),
        },
    ));
    matrix.push((
        "tls:// with terminate-tls: no client certificate -> handshake fails",
        expect_refused(
            tls_echo(
                https,
                "tls-edge.example.test",
                &raw_spec(None, edge_roots),
                "ping",
            )
            .await,
        ),
    ));
    matrix.push((
        "tls:// with terminate-tls: field rule denies device-2",
        expect_refused(
            tls_echo(
                https,
                "tls-edge.example.test",
                &raw_spec(Some(device2), edge_roots),
                "ping",
            )
            .await,
        ),
    ));
    let agent_roots: &'static rustls::RootCertStore = Box::leak(Box::new(roots_of(&agent_ca)));
    matrix.push((
        "agent_tls_termination: client sees the agent's certificate, the upstream plaintext",
        match tls_echo(
            https,
            "tls-agent.example.test",
            &raw_spec(Some(device1), agent_roots),
            "pong",
        )
        .await
        {
            Ok((echo, cn)) if echo == "plain:pong" && cn == "device-agent" => {
                Ok(format!("echo `{echo}`, server `{cn}`"))
            }
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e),
        },
    ));
    matrix.push((
        "agent_tls_termination: the edge's certificate is not offered (edge does not terminate)",
        expect_refused(
            tls_echo(
                https,
                "tls-agent.example.test",
                &raw_spec(Some(device1), edge_roots),
                "pong",
            )
            .await,
        ),
    ));
    matrix.push((
        "agent_tls_termination with client CAs: no client certificate -> fails",
        expect_refused(
            tls_echo(
                https,
                "tls-agent.example.test",
                &raw_spec(None, agent_roots),
                "pong",
            )
            .await,
        ),
    ));
    matrix.push((
        "tls:// passthrough (no termination): the upstream gets the TLS bytes",
        {
            let mut tcp = TcpStream::connect(https).await.unwrap();
            // A ClientHello for tls-pass.example.test, written by a real client config.
            let cfg = raw_spec(None, edge_roots).config();
            let mut conn = rustls::ClientConnection::new(
                cfg,
                ServerName::try_from("tls-pass.example.test").unwrap(),
            )
            .unwrap();
            let mut hello = Vec::new();
            conn.write_tls(&mut hello).unwrap();
            tcp.write_all(&hello).await.unwrap();
            let mut got = [0u8; 4];
            match within("passthrough echo", tcp.read_exact(&mut got)).await {
                Ok(_) if &got == b"tls:" => Ok("echo starts `tls:`".into()),
                Ok(_) => Err(format!("got {got:?}")),
                Err(e) => Err(e.to_string()),
            }
        },
    ));
    // Bind-time refusal.
    matrix.push((
        "bad CA PEM in terminate-tls -> bind refused with a message",
        match status.endpoints.get("bad") {
            Some(EndpointState::Refused(r))
                if r.message.contains("mutual_tls_certificate_authorities") =>
            {
                Ok(format!("refused: {}", r.message))
            }
            other => Err(format!("{other:?}")),
        },
    ));

    eprintln!("\nmTLS matrix ({} cases):", matrix.len());
    let mut failed = 0;
    for (i, (name, outcome)) in matrix.iter().enumerate() {
        match outcome {
            Ok(detail) => eprintln!("  {:>2}. PASS  {name}  [{detail}]", i + 1),
            Err(e) => {
                failed += 1;
                eprintln!("  {:>2}. FAIL  {name}  [{e}]", i + 1);
            }
        }
    }
    eprintln!("{} passed, {failed} failed\n", matrix.len() - failed);
    assert_eq!(failed, 0, "mTLS matrix failures (see the table above)");
    assert!(matrix.len() >= 10);
    stack.shutdown().await;
}
