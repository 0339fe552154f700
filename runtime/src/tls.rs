//! TLS configuration for the tunnel and the public listeners (rustls with the ring provider),
//! SNI-based certificate selection and the development CA.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// ALPN protocol id of the tunnel.
pub const TUNNEL_ALPN: &[u8] = b"wicket/1";

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("`{0}` contains no usable {1}")]
    Empty(PathBuf, &'static str),
    /// rustls refused the configuration.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// No trust anchors are available.
    #[error("no trusted certificate authorities: {0}")]
    NoRoots(String),
}

/// The crypto provider used everywhere: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(io_err(path))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(io_err(path))?;
    if certs.is_empty() {
        return Err(TlsError::Empty(path.to_owned(), "certificate"));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(io_err(path))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(io_err(path))?
        .ok_or_else(|| TlsError::Empty(path.to_owned(), "private key"))
}

/// A certificate chain with its key, in memory.
#[derive(Debug)]
pub struct CertPair {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for CertPair {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl CertPair {
    /// Loads a chain and key from PEM files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            chain: load_certs(cert)?,
            key: load_key(key)?,
        })
    }

    fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let signer = provider()
            .key_provider
            .load_private_key(self.key.clone_key())?;
        Ok(Arc::new(CertifiedKey::new(self.chain.clone(), signer)))
    }
}

/// Picks a certificate by SNI: exact name, then the closest `*.suffix`, then the default.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Builds a resolver from certificate pairs; names are read from each leaf's subject
    /// alternative names. The first pair is the default for clients without SNI.
    pub fn new(pairs: &[CertPair]) -> Result<Self, TlsError> {
        let mut r = Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
        };
        for pair in pairs {
            let ck = pair.certified_key()?;
            if r.default.is_none() {
                r.default = Some(ck.clone());
            }
            if let Some(leaf) = pair.chain.first() {
                for name in dns_names(leaf) {
                    let name = name.to_ascii_lowercase();
                    if let Some(suffix) = name.strip_prefix("*.") {
                        r.wildcard.entry(suffix.to_owned()).or_insert(ck.clone());
                    } else {
                        r.exact.entry(name).or_insert(ck.clone());
                    }
                }
            }
        }
        Ok(r)
    }

    fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        if let Some(c) = self.exact.get(&name) {
            return Some(c.clone());
        }
        let mut rest = name.as_str();
        // A wildcard certificate covers exactly one label.
        if let Some((_, suffix)) = rest.split_once('.') {
            if let Some(c) = self.wildcard.get(suffix) {
                return Some(c.clone());
            }
            rest = suffix;
        }
        let _ = rest;
        None
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|n| self.find(n))
            .or_else(|| self.default.clone())
    }
}

/// DNS subject alternative names of a DER certificate (a small, bounded DER walk).
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    // Search for the subjectAltName extension OID 2.5.29.17 and read its GeneralNames.
    const SAN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x11];
    let der = cert.as_ref();
    let Some(pos) = der.windows(SAN_OID.len()).position(|w| w == SAN_OID) else {
        return Vec::new();
    };
    let mut rest = &der[pos + SAN_OID.len()..];
    // Optional critical BOOLEAN.
    if rest.first() == Some(&0x01) {
        rest = skip_tlv(rest).unwrap_or(&[]);
    }
    // OCTET STRING wrapping the GeneralNames SEQUENCE.
    let Some((0x04, octets, _)) = read_tlv(rest) else {
        return Vec::new();
    };
    let Some((0x30, mut names, _)) = read_tlv(octets) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Some((tag, value, next)) = read_tlv(names) {
        if tag == 0x82 {
            if let Ok(s) = std::str::from_utf8(value) {
                out.push(s.to_owned());
            }
        }
        names = next;
    }
    out
}

fn read_tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let mut len = 0usize;
        for _ in 0..n {
            let (&b, r) = rest.split_first()?;
            len = len << 8 | usize::from(b);
            rest = r;
        }
        len
    };
    if rest.len() < len {
        return None;
    }
    let (value, next) = rest.split_at(len);
    Some((tag, value, next))
}

fn skip_tlv(buf: &[u8]) -> Option<&[u8]> {
    read_tlv(buf).map(|(_, _, next)| next)
}

/// Server configuration for the public HTTPS listener (ALPN `h2`, `http/1.1`).
pub fn public_server_config(resolver: Arc<SniResolver>) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Server configuration for the tunnel listener: TLS 1.3 only, ALPN [`TUNNEL_ALPN`].
pub fn tunnel_server_config(pair: &CertPair) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(pair.chain.clone(), pair.key.clone_key())?;
    cfg.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
    Ok(cfg)
}

/// Client configuration for the agent's tunnel connection: TLS 1.3 only; trusts `ca_files` if
/// given, else the system roots.
pub fn tunnel_client_config(ca_files: &[PathBuf]) -> Result<rustls::ClientConfig, TlsError> {
    let roots = root_store(ca_files)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
    Ok(cfg)
}

/// A root store from PEM files, or the system roots when `ca_files` is empty.
pub fn root_store(ca_files: &[PathBuf]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if ca_files.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // Unparsable system certificates are skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots(format!(
                "the system store is empty ({} errors)",
                found.errors.len()
            )));
        }
    } else {
        for path in ca_files {
            for cert in load_certs(path)? {
                roots.add(cert)?;
            }
        }
    }
    Ok(roots)
}

/// A certificate verifier that accepts anything (upstream `verify: false` only).
#[derive(Debug)]
pub struct NoVerify(Arc<CryptoProvider>);

impl NoVerify {
    /// A verifier using the ring provider's signature algorithms.
    pub fn new() -> Self {
        Self(provider())
    }
}

impl Default for NoVerify {
    fn default() -> Self {
        Self::new()
    }
}

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A development certificate authority and a leaf it signed.
#[derive(Debug)]
pub struct DevCa {
    /// PEM of the CA certificate (give this to agents and clients).
    pub ca_pem: String,
    /// Path of the CA certificate file.
    pub ca_path: PathBuf,
    /// The leaf for the edge's names.
    pub leaf: CertPair,
}

impl DevCa {
    /// Loads the development CA and edge certificate from `dir`, generating them on first use.
    /// The leaf covers `base_domain`, `*.base_domain`, `localhost` and `127.0.0.1`.
    pub fn load_or_create(dir: &Path, base_domain: &str) -> Result<Self, TlsError> {
        let ca_path = dir.join("dev-ca.pem");
        let leaf_path = dir.join("dev-edge.pem");
        let key_path = dir.join("dev-edge-key.pem");
        if ca_path.exists() && leaf_path.exists() && key_path.exists() {
            let ca_pem = std::fs::read_to_string(&ca_path).map_err(io_err(&ca_path))?;
            return Ok(Self {
                ca_pem,
                leaf: CertPair::load(&leaf_path, &key_path)?,
                ca_path,
            });
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let (ca_pem, leaf_pem, key_pem) = generate_dev_ca(&[
            base_domain.to_owned(),
            format!("*.{base_domain}"),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])?;
        write_private(&key_path, &key_pem)?;
        std::fs::write(&leaf_path, &leaf_pem).map_err(io_err(&leaf_path))?;
        std::fs::write(&ca_path, &ca_pem).map_err(io_err(&ca_path))?;
        Ok(Self {
            ca_pem,
            leaf: CertPair::load(&leaf_path, &key_path)?,
            ca_path,
        })
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))
}

/// Generates a CA and a leaf for `names` (DNS names or IP addresses). Returns
/// `(ca_pem, leaf_chain_pem, leaf_key_pem)`.
pub fn generate_dev_ca(names: &[String]) -> Result<(String, String, String), TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Wicket development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(names.to_vec())?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "Wicket edge");
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;
    Ok((
        ca.pem(),
        format!("{}{}", leaf.pem(), ca.pem()),
        leaf_key.serialize_pem(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_ca_is_created_once_and_names_are_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let a = DevCa::load_or_create(dir.path(), "example.test").unwrap();
        let b = DevCa::load_or_create(dir.path(), "example.test").unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        let names = dns_names(&a.leaf.chain[0]);
        assert!(names.contains(&"*.example.test".to_owned()), "{names:?}");
        let r = SniResolver::new(&[a.leaf]).unwrap();
        assert!(r.find("cam-1.example.test").is_some());
        assert!(r.find("example.test").is_some());
        assert!(r.find("a.b.example.test").is_none());
        assert!(root_store(&[a.ca_path]).is_ok());
    }

    #[test]
    fn der_walk_survives_garbage() {
        for bytes in [
            &[][..],
            &[0x06, 0x03, 0x55, 0x1d, 0x11],
            &[0x06, 0x03, 0x55, 0x1d, 0x11, 0x04, 0x85],
        ] {
            assert!(dns_names(&CertificateDer::from(bytes.to_vec())).is_empty());
        }
    }
}
