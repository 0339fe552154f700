//! The `terminate-tls` action (spec §5.22, §10): the edge terminates TLS for an endpoint with
//! the endpoint's own settings (server certificate, TLS versions, mutual TLS).
//!
//! The action's config is compiled once, at bind time, into a [`TlsTermination`]: a bad PEM, an
//! unknown strategy or `min_version` above `max_version` refuse the bind with a message. At
//! connection time the edge peeks the ClientHello, routes by SNI, runs `on_tcp_connect`; when the
//! phase stops on this action ([`crate::policy_hook::ConnDecision::TerminateTls`]) the edge
//! completes the handshake with [`handshake`] and resumes the phase with the negotiated details
//! visible as `conn.tls.*` and `actions.ngrok.terminate_tls.*`.
//!
//! Mutual TLS strategies:
//! * `require-and-verify` (default): a client certificate chaining to one of
//!   `mutual_tls_certificate_authorities`, valid now, is required.
//! * `require-any`: a certificate is required but not verified against the CAs (the client
//!   still proves it holds its key).
//! * `request`: a certificate is asked for but optional; when CAs are configured, a certificate
//!   that is sent must verify (an unverifiable one fails the handshake), so client fields are
//!   always verified ones.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use wicket_engine::compile::ir::ConfigValue;

use crate::proto::control::EndpointProto;
use crate::tls::{PeerCert, TlsInfo, provider};

/// Largest PEM text accepted in one config field.
const MAX_PEM: usize = 256 * 1024;
/// Largest number of client CAs.
const MAX_CAS: usize = 256;

/// How client certificates are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// A certificate chaining to the configured CAs is required.
    RequireAndVerify,
    /// A certificate is required, not verified.
    RequireAny,
    /// A certificate is asked for, optional (verified when CAs are configured).
    Request,
}

impl Strategy {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "require-and-verify" => Self::RequireAndVerify,
            "require-any" => Self::RequireAny,
            "request" => Self::Request,
            _ => return None,
        })
    }
}

/// A compiled `terminate-tls` config.
pub struct TlsTermination {
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    alpn: Vec<Vec<u8>>,
    /// The server config when the policy brings its own certificate.
    own: Option<Arc<ServerConfig>>,
    /// The policy's certificate, parsed once for `conn.tls.server.*`.
    own_leaf: Option<Arc<PeerCert>>,
    /// The server config over the edge's certificates, built on first use.
    with_default: OnceLock<Arc<ServerConfig>>,
    strategy: Option<Strategy>,
}

impl std::fmt::Debug for TlsTermination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTermination")
            .field("versions", &self.versions)
            .field("client_auth", &self.strategy)
            .field("own_certificate", &self.own.is_some())
            .finish()
    }
}

/// Why a `terminate-tls` config was refused (the message names the field).
pub type CompileError = String;

fn field_str<'c>(config: &'c ConfigValue, key: &str) -> Result<Option<&'c str>, CompileError> {
    match config.get(key) {
        None | Some(ConfigValue::Null) => Ok(None),
        Some(v) => literal(v)
            .map(Some)
            .ok_or_else(|| interpolation_or_type(v, key)),
    }
}

/// The text of a string value without interpolation (template fields that hold no `${`).
fn literal(v: &ConfigValue) -> Option<&str> {
    match v {
        ConfigValue::Str(s) => Some(s),
        ConfigValue::Template(s) if !s.contains("${") => Some(s),
        _ => None,
    }
}

fn interpolation_or_type(v: &ConfigValue, key: &str) -> CompileError {
    match v {
        ConfigValue::Template(_) | ConfigValue::Expr(_) => format!(
            "terminate-tls `{key}`: `${{…}}` interpolation is not supported here; give the value literally"
        ),
        _ => format!("terminate-tls `{key}` must be a string"),
    }
}

fn version(s: Option<&str>, key: &str, default: u8) -> Result<u8, CompileError> {
    match s {
        None => Ok(default),
        Some("1.2") => Ok(2),
        Some("1.3") => Ok(3),
        Some(other) => Err(format!(
            "terminate-tls `{key}`: unsupported TLS version `{other}` (use `1.2` or `1.3`)"
        )),
    }
}

fn pem_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, CompileError> {
    if pem.len() > MAX_PEM {
        return Err(format!(
            "terminate-tls `{what}` is larger than {MAX_PEM} bytes"
        ));
    }
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("terminate-tls `{what}`: invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "terminate-tls `{what}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
        ));
    }
    Ok(certs)
}

/// Compiles a `terminate-tls` config for an endpoint of protocol `proto`.
///
/// # Errors
/// A message naming the offending field: unreadable PEM, a key that does not match the
/// certificate, an unknown version or strategy, `min_version` above `max_version`, CA ids
/// (not supported by this edge), interpolated fields, or a protocol other than `https`/`tls`.
pub fn compile(config: &ConfigValue, proto: EndpointProto) -> Result<TlsTermination, CompileError> {
    let alpn = match proto {
        EndpointProto::Https => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        EndpointProto::Tls => Vec::new(),
        other => {
            return Err(format!(
                "terminate-tls only applies to `https` and `tls` endpoints, not `{}`",
                other.scheme()
            ));
        }
    };
    if !matches!(config, ConfigValue::Map(_) | ConfigValue::Null) {
        return Err("terminate-tls config must be a mapping".into());
    }
    let min = version(field_str(config, "min_version")?, "min_version", 2)?;
    let max = version(field_str(config, "max_version")?, "max_version", 3)?;
    if min > max {
        return Err(format!(
            "terminate-tls `min_version` 1.{min} is above `max_version` 1.{max}"
        ));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (2u8, &rustls::version::TLS12),
        (3u8, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, p)| p)
    .collect();

    let strategy = match field_str(config, "mutual_tls_verification_strategy")? {
        None => None,
        Some(s) => Some(Strategy::parse(s).ok_or_else(|| {
            format!(
                "terminate-tls `mutual_tls_verification_strategy`: unknown strategy `{s}` (use `require-and-verify`, `require-any` or `request`)"
            )
        })?),
    };
    let cas = client_cas(config)?;
    let prov = provider();
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match (cas, strategy) {
        (None, None) => None,
        (None, Some(Strategy::RequireAndVerify)) => {
            return Err("terminate-tls `mutual_tls_verification_strategy: require-and-verify` needs `mutual_tls_certificate_authorities`".into());
        }
        (None, Some(s)) => Some(Arc::new(AnyClientCert {
            mandatory: s == Strategy::RequireAny,
            hints: Vec::new(),
            provider: prov.clone(),
        })),
        (Some(roots), s) => {
            let roots = Arc::new(roots);
            match s.unwrap_or(Strategy::RequireAndVerify) {
                Strategy::RequireAndVerify => Some(
                    WebPkiClientVerifier::builder_with_provider(roots, prov.clone())
                        .build()
                        .map_err(|e| {
                            format!("terminate-tls client certificate authorities: {e}")
                        })?,
                ),
                Strategy::Request => Some(
                    WebPkiClientVerifier::builder_with_provider(roots, prov.clone())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| {
                            format!("terminate-tls client certificate authorities: {e}")
                        })?,
                ),
                Strategy::RequireAny => Some(Arc::new(AnyClientCert {
                    mandatory: true,
                    hints: roots.subjects(),
                    provider: prov.clone(),
                })),
            }
        }
    };
    let strategy = verifier
        .as_ref()
        .map(|_| strategy.unwrap_or(Strategy::RequireAndVerify));

    let mut out = TlsTermination {
        versions,
        verifier,
        alpn,
        own: None,
        own_leaf: None,
        with_default: OnceLock::new(),
        strategy,
    };
    let cert = field_str(config, "server_certificate")?;
    let key = field_str(config, "server_private_key")?;
    match (cert, key) {
        (None, None) => {}
        (Some(_), None) => {
            return Err("terminate-tls `server_certificate` needs `server_private_key`".into());
        }
        (None, Some(_)) => {
            return Err("terminate-tls `server_private_key` needs `server_certificate`".into());
        }
        (Some(cert), Some(key)) => {
            let chain = pem_certs(cert, "server_certificate")?;
            if key.len() > MAX_PEM {
                return Err(format!(
                    "terminate-tls `server_private_key` is larger than {MAX_PEM} bytes"
                ));
            }
            let key = rustls_pemfile::private_key(&mut key.as_bytes())
                .map_err(|e| format!("terminate-tls `server_private_key`: invalid PEM: {e}"))?
                .ok_or("terminate-tls `server_private_key` holds no PEM private key")?;
            let signer = prov
                .key_provider
                .load_private_key(key)
                .map_err(|e| format!("terminate-tls `server_private_key`: {e}"))?;
            let ck = CertifiedKey::new(chain, signer);
            ck.keys_match().map_err(|e| {
                format!(
                    "terminate-tls `server_private_key` does not match `server_certificate`: {e}"
                )
            })?;
            out.own_leaf = ck.cert.first().map(|c| Arc::new(PeerCert::new(c.clone())));
            let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(Arc::new(ck)));
            out.own = Some(
                out.build(resolver)
                    .map_err(|e| format!("terminate-tls: {e}"))?,
            );
        }
    }
    Ok(out)
}

/// `mutual_tls_certificate_authorities`: every PEM block of every entry.
fn client_cas(config: &ConfigValue) -> Result<Option<rustls::RootCertStore>, CompileError> {
    const KEY: &str = "mutual_tls_certificate_authorities";
    let items: Vec<&ConfigValue> = match config.get(KEY) {
        None | Some(ConfigValue::Null) => return Ok(None),
        Some(ConfigValue::List(items)) => items.iter().collect(),
        Some(v) => vec![v],
    };
    if items.is_empty() {
        return Ok(None);
    }
    if items.len() > MAX_CAS {
        return Err(format!(
            "terminate-tls `{KEY}` lists more than {MAX_CAS} entries"
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, item) in items.into_iter().enumerate() {
        let text =
            literal(item).ok_or_else(|| interpolation_or_type(item, &format!("{KEY}[{i}]")))?;
        if !text.contains("-----BEGIN") {
            return Err(format!(
                "terminate-tls `{KEY}[{i}]`: certificate authority ids (`{}`) are not supported by this edge; give the CA certificate as PEM",
                text.trim()
            ));
        }
        for cert in pem_certs(text, &format!("{KEY}[{i}]"))? {
            roots.add(cert).map_err(|e| {
                format!("terminate-tls `{KEY}[{i}]` is not a usable CA certificate ({e})")
            })?;
        }
    }
    Ok(Some(roots))
}

impl TlsTermination {
    fn build(
        &self,
        resolver: Arc<dyn ResolvesServerCert>,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&self.versions)?;
        let builder = match &self.verifier {
            Some(v) => builder.with_client_cert_verifier(v.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(resolver);
        cfg.alpn_protocols.clone_from(&self.alpn);
        Ok(Arc::new(cfg))
    }

    /// The server config for a handshake: the policy's certificate, or the edge's certificates
    /// (`default`, the edge's public TLS config) with this action's versions and client auth.
    ///
    /// # Errors
    /// When the policy brings no certificate and the edge has none.
    pub fn server_config(
        &self,
        default: Option<&Arc<ServerConfig>>,
    ) -> Result<Arc<ServerConfig>, CompileError> {
        if let Some(own) = &self.own {
            return Ok(own.clone());
        }
        if let Some(cfg) = self.with_default.get() {
            return Ok(cfg.clone());
        }
        let default = default.ok_or(
            "terminate-tls needs `server_certificate` on an edge without public certificates",
        )?;
        let cfg = self
            .build(default.cert_resolver.clone())
            .map_err(|e| format!("terminate-tls: {e}"))?;
        Ok(self.with_default.get_or_init(|| cfg).clone())
    }

    /// The policy's own leaf certificate, if it brings one.
    pub fn own_leaf(&self) -> Option<Arc<PeerCert>> {
        self.own_leaf.clone()
    }

    /// The client certificate strategy, when mutual TLS is on.
    pub fn strategy(&self) -> Option<Strategy> {
        self.strategy
    }
}

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The handshake failed (alert sent, or the client went away).
    #[error("tls handshake failed: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not complete in time.
    #[error("tls handshake timed out")]
    Timeout,
}

/// Completes a server handshake on `io` (the ClientHello not consumed yet) with `config`, within
/// `timeout`, and reports what was negotiated. `leaf` is the certificate presented when known;
/// otherwise it is looked up with the config's resolver.
///
/// # Errors
/// When the handshake fails or times out.
pub async fn handshake<IO>(
    io: IO,
    config: Arc<ServerConfig>,
    leaf: Option<Arc<PeerCert>>,
    by_action: bool,
    timeout: std::time::Duration,
) -> Result<(tokio_rustls::server::TlsStream<IO>, TlsInfo), HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let run = async move {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let leaf = leaf.or_else(|| {
            config
                .cert_resolver
                .resolve(start.client_hello())
                .and_then(|ck| ck.cert.first().cloned())
                .map(|c| Arc::new(PeerCert::new(c)))
        });
        let stream = start.into_stream(config).await?;
        let info = TlsInfo::from_connection(stream.get_ref().1, leaf, by_action);
        Ok::<_, HandshakeError>((stream, info))
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

/// A client verifier that takes any certificate (`require-any`, or `request` without CAs):
/// the chain is not checked, the handshake signature still is (the client holds the key).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, ConfigValue)]) -> ConfigValue {
        ConfigValue::Map(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn s(v: &str) -> ConfigValue {
        ConfigValue::Str(v.to_owned())
    }

    fn pems() -> (String, String, String) {
        crate::tls::generate_dev_ca(&["a.example.test".to_owned()]).unwrap()
    }

    #[test]
    fn empty_config_uses_the_edge_certificate() {
        let t = compile(&ConfigValue::Null, EndpointProto::Https).unwrap();
        assert!(t.strategy().is_none());
        assert!(t.own_leaf().is_none());
        assert!(t.server_config(None).is_err());
        let (_, chain, key) = pems();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), chain).unwrap();
        std::fs::write(dir.path().join("k.pem"), key).unwrap();
        let pair = crate::tls::CertPair::load(&dir.path().join("c.pem"), &dir.path().join("k.pem"))
            .unwrap();
        let resolver = Arc::new(crate::tls::SniResolver::new(&[pair]).unwrap());
        let default = Arc::new(crate::tls::public_server_config(resolver).unwrap());
        let cfg = t.server_config(Some(&default)).unwrap();
        assert_eq!(cfg.alpn_protocols.len(), 2);
        // Built once.
        assert!(Arc::ptr_eq(&cfg, &t.server_config(Some(&default)).unwrap()));
    }

    #[test]
    fn own_certificate_and_client_cas_compile() {
        let (ca, chain, key) = pems();
        let t = compile(
            &map(&[
                ("server_certificate", s(&chain)),
                ("server_private_key", s(&key)),
                (
                    "mutual_tls_certificate_authorities",
                    ConfigValue::List(vec![s(&ca)]),
                ),
                ("min_version", s("1.3")),
            ]),
            EndpointProto::Tls,
        )
        .unwrap();
        assert_eq!(t.strategy(), Some(Strategy::RequireAndVerify));
        let leaf = t.own_leaf().unwrap();
        assert_eq!(leaf.fields().unwrap().subject.common_name, "Wicket edge");
        let cfg = t.server_config(None).unwrap();
        assert!(cfg.alpn_protocols.is_empty());
        for strategy in ["require-any", "request"] {
            let t = compile(
                &map(&[
                    ("mutual_tls_certificate_authorities", s(&ca)),
                    ("mutual_tls_verification_strategy", s(strategy)),
                ]),
                EndpointProto::Https,
            )
            .unwrap();
            assert!(t.strategy().is_some());
        }
    }

    #[test]
    fn bad_configs_are_refused_with_a_message() {
        let (ca, chain, key) = pems();
        let (_, other_chain, _) = pems();
        let cases: Vec<(ConfigValue, &str)> = vec![
            (
                map(&[("min_version", s("1.3")), ("max_version", s("1.2"))]),
                "above",
            ),
            (map(&[("min_version", s("1.1"))]), "unsupported TLS version"),
            (
                map(&[("mutual_tls_verification_strategy", s("maybe"))]),
                "unknown strategy",
            ),
            (
                map(&[("mutual_tls_verification_strategy", s("require-and-verify"))]),
                "needs `mutual_tls_certificate_authorities`",
            ),
            (
                map(&[("mutual_tls_certificate_authorities", s("ca_123"))]),
                "ids",
            ),
            (
                map(&[(
                    "mutual_tls_certificate_authorities",
                    s("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"),
                )]),
                "mutual_tls_certificate_authorities",
            ),
            (
                map(&[("server_certificate", s(&chain))]),
                "needs `server_private_key`",
            ),
            (
                map(&[
                    ("server_certificate", s("garbage")),
                    ("server_private_key", s(&key)),
                ]),
                "no PEM certificate",
            ),
            (
                map(&[
                    ("server_certificate", s(&chain)),
                    ("server_private_key", s("garbage")),
                ]),
                "no PEM private key",
            ),
            (
                map(&[
                    ("server_certificate", s(&other_chain)),
                    ("server_private_key", s(&key)),
                ]),
                "does not match",
            ),
            (
                map(&[
                    ("server_certificate", ConfigValue::Template("${x}".into())),
                    ("server_private_key", s(&key)),
                ]),
                "interpolation",
            ),
            (ConfigValue::List(vec![]), "mapping"),
        ];
        for (cfg, want) in cases {
            let err = compile(&cfg, EndpointProto::Https).unwrap_err();
            assert!(err.contains(want), "{err} (wanted `{want}`)");
        }
        let err = compile(&map(&[]), EndpointProto::Tcp).unwrap_err();
        assert!(err.contains("only applies"), "{err}");
        let _ = ca;
    }
}
