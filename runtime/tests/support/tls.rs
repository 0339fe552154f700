//! Certificates: the generated dev CA and edge certificate, client-side PKI, and rustls client
//! configurations.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use wicket_runtime::tls::{CertPair, generate_dev_ca};

use super::net::within;

/// The names the edge certificate of [`certs`] covers.
pub const EDGE_NAMES: &[&str] = &[
    "example.test",
    "*.example.test",
    "*.apps.example.test",
    "localhost",
    "127.0.0.1",
];

/// A temporary directory holding a generated dev CA (`ca.pem`) and the edge certificate it
/// issued (`edge.pem`, `edge-key.pem`).
pub struct Certs {
    /// The directory; also the agents' working directory and the edge's `data` parent.
    pub dir: tempfile::TempDir,
    /// The dev CA's PEM file.
    pub ca_path: PathBuf,
    /// The edge certificate and key.
    pub pair: CertPair,
    /// A root store trusting only the dev CA.
    pub roots: rustls::RootCertStore,
}

/// A dev CA (written as `ca.pem`) and an edge certificate for [`EDGE_NAMES`].
pub fn certs() -> Certs {
    certs_named(EDGE_NAMES, "ca.pem")
}

/// A dev CA written to `ca_file` in the directory and an edge certificate for `names`.
pub fn certs_named(names: &[&str], ca_file: &str) -> Certs {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let (ca, chain, key) = generate_dev_ca(&names).unwrap();
    let ca_path = dir.path().join(ca_file);
    std::fs::write(&ca_path, &ca).unwrap();
    std::fs::write(dir.path().join("edge.pem"), &chain).unwrap();
    std::fs::write(dir.path().join("edge-key.pem"), &key).unwrap();
    let pair = CertPair::load(
        &dir.path().join("edge.pem"),
        &dir.path().join("edge-key.pem"),
    )
    .unwrap();
    let roots = wicket_runtime::tls::root_store(std::slice::from_ref(&ca_path)).unwrap();
    Certs {
        dir,
        ca_path,
        pair,
        roots,
    }
}

// ---------------------------------------------------------------- client-side PKI

/// A certificate authority (root or intermediate).
pub struct Ca {
    /// Its certificate.
    pub cert: rcgen::Certificate,
    /// Its key.
    pub key: KeyPair,
    /// Sent by clients in their chain (roots are not).
    pub intermediate: bool,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// A self-signed root CA named `cn`.
pub fn root_ca(cn: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(cn).self_signed(&key).unwrap();
    Ca {
        cert,
        key,
        intermediate: false,
    }
}

/// An intermediate CA named `cn` issued by `parent`.
pub fn intermediate_ca(cn: &str, parent: &Ca) -> Ca {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(cn)
        .signed_by(&key, &parent.cert, &parent.key)
        .unwrap();
    Ca {
        cert,
        key,
        intermediate: true,
    }
}

/// A client (or server) identity: chain leaf first, and its key.
#[derive(Clone)]
pub struct Ident {
    /// The chain, leaf first (with the intermediate CA that issued it, if any).
    pub chain: Vec<CertificateDer<'static>>,
    /// The PKCS#8 key.
    pub key_der: Vec<u8>,
    /// The chain as PEM.
    pub chain_pem: String,
    /// The key as PEM.
    pub key_pem: String,
}

impl Ident {
    /// The key, for rustls.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// What a leaf certificate says.
pub struct LeafSpec<'a> {
    /// The subject common name.
    pub cn: &'a str,
    /// The subject organization, if any.
    pub org: Option<&'a str>,
    /// The subject organizational unit, if any.
    pub ou: Option<&'a str>,
    /// The DNS subject alternative names.
    pub sans: Vec<String>,
    /// Valid from January 1st of the first year to January 1st of the second (default: now).
    pub validity: Option<(i32, i32)>,
    /// A server certificate (else a client one).
    pub server: bool,
}

/// A leaf certificate per `spec`, issued by `issuer` (self-signed without one).
pub fn leaf(spec: LeafSpec<'_>, issuer: Option<&Ca>) -> Ident {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(spec.sans).unwrap();
    p.distinguished_name.push(DnType::CommonName, spec.cn);
    if let Some(org) = spec.org {
        p.distinguished_name.push(DnType::OrganizationName, org);
    }
    if let Some(ou) = spec.ou {
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, ou);
    }
    if let Some((from, to)) = spec.validity {
        p.not_before = date_time_ymd(from, 1, 1);
        p.not_after = date_time_ymd(to, 1, 1);
    }
    p.extended_key_usages = vec![if spec.server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let cert = match issuer {
        Some(ca) => p.signed_by(&key, &ca.cert, &ca.key).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    let mut chain = vec![cert.der().clone()];
    let mut chain_pem = cert.pem();
    if let Some(ca) = issuer.filter(|ca| ca.intermediate) {
        chain.push(ca.cert.der().clone());
        chain_pem.push_str(&ca.cert.pem());
    }
    Ident {
        chain,
        key_der: key.serialize_der(),
        chain_pem,
        key_pem: key.serialize_pem(),
    }
}

/// A root store trusting only `ca`.
pub fn roots_of(ca: &Ca) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    roots
}

// ---------------------------------------------------------------- clients

/// How a TLS client connects.
pub struct ClientSpec<'a> {
    /// The roots it trusts.
    pub roots: &'a rustls::RootCertStore,
    /// The client certificate it presents, if any.
    pub ident: Option<&'a Ident>,
    /// The protocol versions it offers.
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
    /// Offer ALPN `http/1.1` (else no ALPN).
    pub alpn_h1: bool,
}

impl<'a> ClientSpec<'a> {
    /// A client trusting `roots`, without a certificate, offering TLS 1.3 and 1.2 and ALPN
    /// `http/1.1`.
    pub fn new(roots: &'a rustls::RootCertStore) -> Self {
        ClientSpec {
            roots,
            ident: None,
            versions: rustls::DEFAULT_VERSIONS,
            alpn_h1: true,
        }
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        let b = rustls::ClientConfig::builder_with_protocol_versions(self.versions)
            .with_root_certificates(self.roots.clone());
        let mut cfg = match self.ident {
            Some(id) => b.with_client_auth_cert(id.chain.clone(), id.key()).unwrap(),
            None => b.with_no_client_auth(),
        };
        if self.alpn_h1 {
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        Arc::new(cfg)
    }
}

/// A TLS connection over `tcp` with SNI `sni`; `Err` when the handshake fails.
pub async fn tls_handshake(
    tcp: TcpStream,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    within(
        "tls connect",
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|e| format!("handshake: {e}"))
}

/// A TLS connection to `addr` with SNI `sni`; `Err` when the handshake fails.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    spec: &ClientSpec<'_>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    tls_handshake(tcp, sni, spec.config()).await
}
