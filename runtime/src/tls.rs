//! TLS configuration for the tunnel and the public listeners (rustls with the ring provider),
//! SNI-based certificate selection and the development CA.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use wicket_engine::Value;
use wicket_engine::value::{Key, MapValue};

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

/// What the edge learned from a TLS handshake it terminated: the `conn.tls.*` variables
/// (and `actions.ngrok.terminate_tls.*` when a `terminate-tls` action chose the settings).
#[derive(Debug)]
pub struct TlsInfo {
    /// `1.2` or `1.3`.
    pub version: &'static str,
    /// IANA cipher suite name (`TLS_AES_128_GCM_SHA256`).
    pub cipher_suite: &'static str,
    /// The ALPN protocol agreed on, if any.
    pub alpn: Option<String>,
    /// The server name the client sent.
    pub sni: Option<String>,
    /// Whether the session was resumed.
    pub resumed: bool,
    /// The client's leaf certificate (mutual TLS).
    pub client: Option<Arc<PeerCert>>,
    /// The leaf certificate the edge presented.
    pub server: Option<Arc<PeerCert>>,
    /// Whether a `terminate-tls` action set the handshake up (its result variables exist).
    pub by_action: bool,
    /// The ClientHello the client sent (the first bytes of the connection), when the edge read
    /// it before the handshake: the source of `conn.tls.ja4_fingerprint`.
    pub client_hello: Option<bytes::Bytes>,
    /// Its JA4 fingerprint ([`crate::ja4`]), computed the first time a policy reads it.
    pub(crate) ja4: std::sync::OnceLock<Option<String>>,
}

impl TlsInfo {
    /// Reads what a finished server handshake negotiated; `server` is the presented leaf.
    pub fn from_connection(
        conn: &rustls::ServerConnection,
        server: Option<Arc<PeerCert>>,
        by_action: bool,
    ) -> Self {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            _ => "1.3",
        };
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .map_or("", |n| n.strip_prefix("TLS13_").map_or(n, tls13_name));
        Self {
            version,
            cipher_suite,
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            sni: conn.server_name().map(str::to_owned),
            resumed: matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
            client: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(PeerCert::new(c.clone().into_owned()))),
            server,
            by_action,
            client_hello: None,
            ja4: std::sync::OnceLock::new(),
        }
    }

    /// The JA4 fingerprint of the client's ClientHello, computed on first use; `None` when the
    /// edge did not read a whole ClientHello.
    pub fn ja4(&self) -> Option<&str> {
        self.ja4
            .get_or_init(|| {
                self.client_hello
                    .as_deref()
                    .and_then(crate::ja4::fingerprint)
            })
            .as_deref()
    }

    /// The value of `conn.tls.<suffix>` (`version`, `client.subject.common_name`, …). Client
    /// certificate fields read as empty values when the client sent no certificate;
    /// `ja4_fingerprint` is empty when the ClientHello could not be read whole; `None` for
    /// names this edge does not know.
    pub fn variable(&self, suffix: &str) -> Option<Value> {
        Some(match suffix {
            "version" => Value::string(self.version),
            "cipher_suite" => Value::string(self.cipher_suite),
            "negotiated_alpn" => Value::string(self.alpn.as_deref().unwrap_or("")),
            "session_resumed" => Value::Bool(self.resumed),
            "sni" => Value::string(self.sni.as_deref().unwrap_or("")),
            "ja4_fingerprint" => Value::string(self.ja4().unwrap_or("")),
            _ => {
                if let Some(rest) = suffix.strip_prefix("client") {
                    return cert_variable(self.client.as_deref(), rest);
                }
                let rest = suffix.strip_prefix("server")?;
                return cert_variable(self.server.as_deref(), rest);
            }
        })
    }
}

/// `TLS13_AES_128_GCM_SHA256` → `TLS_AES_128_GCM_SHA256` (the IANA and Go spelling).
fn tls13_name(rest: &str) -> &'static str {
    match rest {
        "AES_128_GCM_SHA256" => "TLS_AES_128_GCM_SHA256",
        "AES_256_GCM_SHA384" => "TLS_AES_256_GCM_SHA384",
        "CHACHA20_POLY1305_SHA256" => "TLS_CHACHA20_POLY1305_SHA256",
        _ => "",
    }
}

/// A certificate seen in a handshake, parsed on first use.
pub struct PeerCert {
    der: CertificateDer<'static>,
    fields: std::sync::OnceLock<Option<CertFields>>,
}

impl std::fmt::Debug for PeerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCert")
            .field("der_len", &self.der.len())
            .field("parsed", &self.fields.get().is_some())
            .finish()
    }
}

impl PeerCert {
    /// Wraps a DER certificate.
    pub fn new(der: CertificateDer<'static>) -> Self {
        Self {
            der,
            fields: std::sync::OnceLock::new(),
        }
    }

    /// The DER bytes.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The parsed fields; `None` when the certificate cannot be parsed.
    pub fn fields(&self) -> Option<&CertFields> {
        self.fields
            .get_or_init(|| CertFields::parse(&self.der))
            .as_ref()
    }
}

/// A distinguished name: its RFC 2253 rendering and the attributes policies read.
#[derive(Debug, Default, Clone)]
pub struct Dn {
    /// `CN=device-1,O=Acme,C=DE` (last RDN first, as RFC 2253 and Go render it).
    pub rendered: String,
    /// `CN` (the first one).
    pub common_name: String,
    /// `C`.
    pub country: Vec<String>,
    /// `L`.
    pub locality: Vec<String>,
    /// `O`.
    pub organization: Vec<String>,
    /// `OU`.
    pub organizational_unit: Vec<String>,
    /// `postalCode`.
    pub postal_code: Vec<String>,
    /// `ST`.
    pub province: Vec<String>,
    /// `street`.
    pub street_address: Vec<String>,
}

/// The subject alternative names of a certificate.
#[derive(Debug, Default, Clone)]
pub struct Sans {
    /// `DNS:a.test, IP:10.0.0.1, email:x@y.test, URI:spiffe://…`.
    pub rendered: String,
    /// DNS names.
    pub dns_names: Vec<String>,
    /// Email addresses.
    pub email_addresses: Vec<String>,
    /// IP addresses.
    pub ip_addresses: Vec<String>,
    /// URIs.
    pub uris: Vec<String>,
}

/// One X.509 extension.
#[derive(Debug, Clone)]
pub struct Extension {
    /// The OID, dotted.
    pub id: String,
    /// The critical flag.
    pub critical: bool,
    /// The raw value.
    pub value: Vec<u8>,
}

/// The fields of a certificate that `conn.tls.client.*` / `conn.tls.server.*` expose.
#[derive(Debug, Clone)]
pub struct CertFields {
    /// Subject.
    pub subject: Dn,
    /// Issuer.
    pub issuer: Dn,
    /// Subject alternative names.
    pub san: Sans,
    /// Serial number, decimal.
    pub serial_number: String,
    /// Signature algorithm (`ECDSA-SHA256`, `SHA256-RSA`, `Ed25519`; the OID when unknown).
    pub signature_algorithm: String,
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
    /// The extensions, in order.
    pub extensions: Vec<Extension>,
    /// The certificate, PEM.
    pub pem: String,
}

impl CertFields {
    /// Parses a DER certificate; `None` when it is not one.
    pub fn parse(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let mut san = Sans::default();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            use x509_parser::extensions::GeneralName;
            let mut parts = Vec::new();
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(n) => {
                        parts.push(format!("DNS:{n}"));
                        san.dns_names.push((*n).to_owned());
                    }
                    GeneralName::RFC822Name(n) => {
                        parts.push(format!("email:{n}"));
                        san.email_addresses.push((*n).to_owned());
                    }
                    GeneralName::URI(n) => {
                        parts.push(format!("URI:{n}"));
                        san.uris.push((*n).to_owned());
                    }
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b)
                                .map(|a| std::net::IpAddr::from(a).to_string())
                                .ok(),
                            16 => <[u8; 16]>::try_from(*b)
                                .map(|a| std::net::IpAddr::from(a).to_string())
                                .ok(),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            parts.push(format!("IP:{ip}"));
                            san.ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
            san.rendered = parts.join(", ");
        }
        Some(Self {
            subject: dn(cert.subject()),
            issuer: dn(cert.issuer()),
            san,
            serial_number: cert.serial.to_string(),
            signature_algorithm: signature_name(&cert.signature_algorithm.algorithm.to_id_string()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            extensions: cert
                .extensions()
                .iter()
                .map(|e| Extension {
                    id: e.oid.to_id_string(),
                    critical: e.critical,
                    value: e.value.to_vec(),
                })
                .collect(),
            pem: pem_certificate(der.as_ref()),
        })
    }
}

fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.5" => "SHA1-RSA",
        "1.2.840.113549.1.1.11" => "SHA256-RSA",
        "1.2.840.113549.1.1.12" => "SHA384-RSA",
        "1.2.840.113549.1.1.13" => "SHA512-RSA",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10045.4.1" => "ECDSA-SHA1",
        "1.2.840.10045.4.3.2" => "ECDSA-SHA256",
        "1.2.840.10045.4.3.3" => "ECDSA-SHA384",
        "1.2.840.10045.4.3.4" => "ECDSA-SHA512",
        "1.3.101.112" => "Ed25519",
        other => other,
    }
    .to_owned()
}

fn dn(name: &x509_parser::x509::X509Name<'_>) -> Dn {
    let mut out = Dn::default();
    let mut rdns = Vec::new();
    for rdn in name.iter_rdn() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let value = attr.as_str().ok().map(str::to_owned);
            let short = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.9" => "STREET",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.17" => "POSTALCODE",
                "2.5.4.5" => "SERIALNUMBER",
                _ => "",
            };
            match &value {
                Some(v) if !short.is_empty() => {
                    parts.push(format!("{short}={}", escape_dn(v)));
                }
                _ => parts.push(format!("{oid}=#{}", hex::encode(attr.attr_value().data))),
            }
            let Some(v) = value else { continue };
            match short {
                "CN" if out.common_name.is_empty() => out.common_name = v,
                "C" => out.country.push(v),
                "L" => out.locality.push(v),
                "ST" => out.province.push(v),
                "STREET" => out.street_address.push(v),
                "O" => out.organization.push(v),
                "OU" => out.organizational_unit.push(v),
                "POSTALCODE" => out.postal_code.push(v),
                _ => {}
            }
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    out.rendered = rdns.join(",");
    out
}

/// Escapes an RDN value per RFC 2253 §2.4.
fn escape_dn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// PEM-encodes a DER certificate (64-column base64).
pub fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn strings(v: &[String]) -> Value {
    Value::list(v.iter().map(|s| Value::string(s.as_str())).collect())
}

fn timestamp(secs: i64) -> Value {
    Value::Timestamp(jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// Go's zero time (`0001-01-01T00:00:00Z`): the validity of an absent certificate.
fn zero_time() -> Value {
    timestamp(-62_135_596_800)
}

fn dn_variable(dn: Option<&Dn>, rest: &str) -> Option<Value> {
    let empty = Dn::default();
    let dn = dn.unwrap_or(&empty);
    Some(match rest {
        "" => Value::string(dn.rendered.as_str()),
        ".common_name" => Value::string(dn.common_name.as_str()),
        ".country" => strings(&dn.country),
        ".locality" => strings(&dn.locality),
        ".organization" => strings(&dn.organization),
        ".organizational_unit" => strings(&dn.organizational_unit),
        ".postal_code" => strings(&dn.postal_code),
        ".province" => strings(&dn.province),
        ".street_address" => strings(&dn.street_address),
        _ => return None,
    })
}

/// `conn.tls.client<rest>` / `conn.tls.server<rest>` (`rest` starts with `.`).
fn cert_variable(cert: Option<&PeerCert>, rest: &str) -> Option<Value> {
    let f = cert.and_then(PeerCert::fields);
    let rest = rest.strip_prefix('.')?;
    if let Some(r) = rest.strip_prefix("subject") {
        return dn_variable(f.map(|f| &f.subject), r);
    }
    if let Some(r) = rest.strip_prefix("issuer") {
        return dn_variable(f.map(|f| &f.issuer), r);
    }
    let empty = Sans::default();
    let san = f.map_or(&empty, |f| &f.san);
    Some(match rest {
        "san" => Value::string(san.rendered.as_str()),
        "san.dns_names" => strings(&san.dns_names),
        "san.email_addresses" => strings(&san.email_addresses),
        "san.ip_addresses" => strings(&san.ip_addresses),
        "san.uris" => strings(&san.uris),
        "serial_number" => Value::string(f.map_or("", |f| f.serial_number.as_str())),
        "signature_algorithm" => Value::string(f.map_or("", |f| f.signature_algorithm.as_str())),
        "pem" => Value::string(f.map_or("", |f| f.pem.as_str())),
        "fingerprint" => Value::string(cert.map_or_else(String::new, |c| {
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(c.der().as_ref()))
        })),
        "validity.not_before" => f.map_or_else(zero_time, |f| timestamp(f.not_before)),
        "validity.not_after" => f.map_or_else(zero_time, |f| timestamp(f.not_after)),
        "extensions" => Value::list(
            f.map(|f| f.extensions.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    let mut m = MapValue::new();
                    m.upsert(Key::String(Arc::from("id")), Value::string(e.id.as_str()));
                    m.upsert(Key::String(Arc::from("critical")), Value::Bool(e.critical));
                    m.upsert(
                        Key::String(Arc::from("value")),
                        Value::bytes(e.value.as_slice()),
                    );
                    Value::map(m)
                })
                .collect(),
        ),
        _ => return None,
    })
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

    /// A client certificate with every field policies read.
    fn client_cert(cn: &str) -> CertificateDer<'static> {
        use rcgen::{CertificateParams, DnType, KeyPair, SanType};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["dev.example.test".to_owned()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("10.0.0.7".parse().unwrap()));
        p.subject_alt_names
            .push(SanType::Rfc822Name("ops@example.test".try_into().unwrap()));
        p.subject_alt_names.push(SanType::URI(
            "spiffe://example.test/dev".try_into().unwrap(),
        ));
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationName, "Acme, Inc");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "admins");
        p.distinguished_name.push(DnType::CountryName, "DE");
        p.not_before = rcgen::date_time_ymd(2020, 1, 2);
        p.not_after = rcgen::date_time_ymd(2040, 3, 4);
        p.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn certificate_fields_are_parsed_and_rendered() {
        let f = CertFields::parse(&client_cert("device-1")).unwrap();
        assert_eq!(f.subject.common_name, "device-1");
        assert_eq!(f.subject.organization, ["Acme, Inc"]);
        assert_eq!(f.subject.organizational_unit, ["admins"]);
        assert_eq!(f.subject.country, ["DE"]);
        assert_eq!(
            f.subject.rendered,
            "C=DE,OU=admins,O=Acme\\, Inc,CN=device-1"
        );
        assert_eq!(f.issuer.rendered, f.subject.rendered);
        assert_eq!(f.san.dns_names, ["dev.example.test"]);
        assert_eq!(f.san.ip_addresses, ["10.0.0.7"]);
        assert_eq!(f.san.email_addresses, ["ops@example.test"]);
        assert_eq!(f.san.uris, ["spiffe://example.test/dev"]);
        assert!(
            f.san
                .rendered
                .starts_with("DNS:dev.example.test, IP:10.0.0.7"),
            "{}",
            f.san.rendered
        );
        assert_eq!(f.signature_algorithm, "ECDSA-SHA256");
        assert!(
            f.serial_number.bytes().all(|b| b.is_ascii_digit()),
            "{}",
            f.serial_number
        );
        assert_eq!(f.not_before, 1_577_923_200);
        assert!(f.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(f.extensions.iter().any(|e| e.id == "2.5.29.17"));
        assert!(CertFields::parse(&CertificateDer::from(vec![0x30, 0x03, 0x02])).is_none());
        assert_eq!(escape_dn("#a b "), "\\#a b\\ ");
    }

    #[test]
    fn tls_variables_read_the_certificate_or_empty_values() {
        let mut info = TlsInfo {
            version: "1.3",
            cipher_suite: "TLS_AES_128_GCM_SHA256",
            alpn: Some("h2".into()),
            sni: Some("a.example.test".into()),
            resumed: false,
            client: Some(Arc::new(PeerCert::new(client_cert("device-1")))),
            server: None,
            by_action: true,
            client_hello: None,
            ja4: std::sync::OnceLock::new(),
        };
        let s = |v: Option<Value>| match v {
            Some(Value::String(s)) => s.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(s(info.variable("version")), "1.3");
        assert_eq!(s(info.variable("negotiated_alpn")), "h2");
        assert_eq!(s(info.variable("client.subject.common_name")), "device-1");
        assert_eq!(s(info.variable("client.issuer.common_name")), "device-1");
        assert_eq!(
            s(info.variable("client.signature_algorithm")),
            "ECDSA-SHA256"
        );
        assert!(
            matches!(info.variable("client.san.dns_names"), Some(Value::List(l)) if l.len() == 1)
        );
        assert!(
            matches!(info.variable("client.extensions"), Some(Value::List(l)) if !l.is_empty())
        );
        assert!(matches!(
            info.variable("client.validity.not_after"),
            Some(Value::Timestamp(t)) if t.as_second() == 2_214_432_000
        ));
        // The SHA-256 of the DER, as `openssl x509 -fingerprint -sha256` prints it (without colons).
        let der = client_cert("device-1");
        let expected = hex::encode(ring::digest::digest(&ring::digest::SHA256, der.as_ref()));
        info.client = Some(Arc::new(PeerCert::new(der)));
        assert_eq!(s(info.variable("client.fingerprint")), expected);
        assert_eq!(expected.len(), 64);
        assert_eq!(s(info.variable("ja4_fingerprint")), "");
        info.ja4 = std::sync::OnceLock::from(Some("t13d1516h2_8daaf6152771_e5627efa2ab1".into()));
        assert_eq!(
            s(info.variable("ja4_fingerprint")),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
        assert!(info.variable("client.nope").is_none());
        assert!(info.variable("clientele").is_none());
        info.client = None;
        assert_eq!(s(info.variable("client.subject.common_name")), "");
        assert_eq!(s(info.variable("server.subject")), "");
        assert!(
            matches!(info.variable("client.subject.organization"), Some(Value::List(l)) if l.is_empty())
        );
        assert!(matches!(
            info.variable("client.validity.not_before"),
            Some(Value::Timestamp(t)) if t.to_string().starts_with("0001-01-01")
        ));
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
