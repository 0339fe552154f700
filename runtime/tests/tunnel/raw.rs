//! WebSocket upgrades, `tcp://` endpoints and `tls://` passthrough.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_end_to_end() {
    let c = certs();
    let ws = ws_echo().await;
    let (edge, agent, _) = edge_and_agent(
        &c,
        edge_config(&c),
        &format!(
            "  - name: ws\n    url: http://ws.example.test\n    upstream: {{ url: '{ws}' }}\n"
        ),
    )
    .await;
    let tcp = TcpStream::connect(edge.addrs().http.unwrap())
        .await
        .unwrap();
    let (mut client, res) = within(
        "ws handshake",
        tokio_tungstenite::client_async("ws://ws.example.test/chat", tcp),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 101);
    ws_echo_exchange(&mut client, "message", 5, vec![7u8; 300_000]).await;
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_endpoint_echoes_and_forwards_half_close() {
    let c = certs();
    let echo = tcp_echo().await;
    let (edge, agent, st) = edge_and_agent(
        &c,
        edge_config(&c),
        &format!("  - name: echo\n    url: tcp://\n    upstream: {{ url: 'tcp://{echo}' }}\n"),
    )
    .await;
    let url = bound_url(&st, "echo");
    let port: u16 = url.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(url.starts_with("tcp://example.test:"), "{url}");
    for round in 0..3 {
        let mut s = within("tcp connect", TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8 ^ round).collect();
        let (mut r, mut w) = s.split();
        let write = async {
            w.write_all(&payload).await.unwrap();
            w.shutdown().await.unwrap(); // half-close: the echo server sees EOF and finishes
        };
        let read = read_all(&mut r);
        let ((), got) = within("tcp echo", async { tokio::join!(write, read) }).await;
        assert_eq!(got.len(), payload.len());
        assert_eq!(got, payload);
    }
    agent.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_endpoint_is_passed_through_by_sni_without_decrypting() {
    let c = certs();
    // The upstream has its own CA, which the edge never sees.
    let (up_ca, up_chain, up_key) =
        wicket_runtime::tls::generate_dev_ca(&["db.example.test".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &up_ca).unwrap();
    std::fs::write(dir.path().join("c.pem"), &up_chain).unwrap();
    std::fs::write(dir.path().join("k.pem"), &up_key).unwrap();
    let pair =
        wicket_runtime::tls::CertPair::load(&dir.path().join("c.pem"), &dir.path().join("k.pem"))
            .unwrap();
    let server_cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(pair.chain.clone(), pair.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                let Ok(n) = tls.read(&mut buf).await else {
                    return;
                };
                let mut reply = b"upstream says: ".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = tls.write_all(&reply).await;
                let _ = tls.shutdown().await;
            });
        }
    });

    let (edge, agent, st) = edge_and_agent(
        &c,
        edge_config(&c),
        &format!(
            "  - name: db\n    url: tls://db.example.test\n    upstream: {{ url: 'tcp://{up}' }}\n"
        ),
    )
    .await;
    assert_eq!(bound_url(&st, "db"), "tls://db.example.test");

    let roots = wicket_runtime::tls::root_store(&[dir.path().join("ca.pem")]).unwrap();
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(edge.addrs().https.unwrap())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("db.example.test").unwrap();
    let mut tls = within(
        "tls passthrough handshake",
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .expect("the upstream's own certificate is presented");
    tls.write_all(b"ping").await.unwrap();
    let got = read_all(&mut tls).await;
    assert_eq!(got, b"upstream says: ping");

    // Other names on the same listener are still terminated by the edge.
    let r = get(
        edge.addrs().https.unwrap(),
        Some((&c, "other.example.test")),
        false,
        "other.example.test",
        "/",
    )
    .await;
    assert_eq!(r.status, http::StatusCode::NOT_FOUND);
    agent.shutdown().await;
    edge.shutdown().await;
}
