//! Inputs for the runtime's fuzz targets (`fuzz/`), replayed through the same invariant checks:
//! files under `fuzz/regressions/<target>/` (raw bytes, as libFuzzer writes them) and seeds
//! built here.

use std::path::Path;

use wicket_runtime::fuzz::{check_client_hello, check_frame_decoder};

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let data = std::fs::read(e.path()).expect("readable regression file");
        check(&data);
        n += 1;
    }
    n
}

/// A real ClientHello (rustls, SNI and ALPN), every prefix of it, and every one-byte corruption.
#[test]
fn client_hello_inputs_keep_the_invariants() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("Fuzz.Example.test").expect("valid name");
    let mut conn =
        rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).expect("client connection");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("client hello");
    for cut in 0..=hello.len() {
        check_client_hello(&hello[..cut]);
    }
    for i in 0..hello.len() {
        let mut h = hello.clone();
        h[i] ^= 0xa5;
        check_client_hello(&h);
    }
    check_client_hello(b"GET / HTTP/1.1\r\n\r\n");
    check_client_hello(&[0x16, 3, 1, 0xff, 0xff]);
    replay("client_hello", check_client_hello);
}

#[test]
fn frame_inputs_keep_the_invariants() {
    for input in [
        &b""[..],
        b"\x01",
        b"\x01\x00\x00\x00\x02{}",
        b"\x03\x00\x00\x00\x02{}\x00\x00\x00\x04null",
        b"\x07\xff\xff\xff\xff",
        b"\x02\x00\x00\x00\x03{x}",
        b"\x05{\"a\":1}\n[1,2]\ntrue",
        b"\x05{\"a\":\n1}",
    ] {
        check_frame_decoder(input);
    }
    replay("tunnel_frame", check_frame_decoder);
}
