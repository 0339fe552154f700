//! `agent_tls_termination` (spec §6.2, §10): a `tls://` endpoint whose TLS ends at the agent.
//!
//! The edge routes the connection by SNI and passes the encrypted bytes through the tunnel
//! untouched; the agent completes the handshake with its own certificate (and, with
//! `mutual_tls_certificate_authorities`, requires a client certificate chaining to them), then
//! pipes the plaintext to the upstream. The edge never holds the key nor sees plaintext.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::config::ConfigError;

/// Time allowed for the client's handshake once the stream reached the agent.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `agent_tls_termination:` block of an endpoint, as written. Each value is a PEM text or
/// the path of a PEM file (relative to the config file's directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTlsTerminationConfig {
    /// The certificate chain, leaf first.
    pub server_certificate: String,
    /// The leaf's private key.
    pub server_private_key: String,
    /// Client CAs; when present, clients must present a certificate chaining to one of them.
    #[serde(default)]
    pub mutual_tls_certificate_authorities: Vec<String>,
}

/// A compiled `agent_tls_termination`.
#[derive(Clone)]
pub struct AgentTls {
    config: Arc<ServerConfig>,
    mutual: bool,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTls")
            .field("mutual_tls", &self.mutual)
            .finish_non_exhaustive()
    }
}

/// Reads `value` as PEM text, or as the path of a PEM file.
fn pem_text(value: &str, base_dir: &Path, what: &str) -> Result<Vec<u8>, ConfigError> {
    if value.contains("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    let path = base_dir.join(value.trim());
    std::fs::read(&path).map_err(|e| {
        ConfigError::Invalid(format!(
            "agent_tls_termination `{what}`: cannot read `{}`: {e}",
            path.display()
        ))
    })
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ConfigError::Invalid(format!("agent_tls_termination `{what}`: invalid PEM: {e}"))
        })?;
    if certs.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "agent_tls_termination `{what}` holds no PEM certificate"
        )));
    }
    Ok(certs)
}

impl AgentTlsTerminationConfig {
    /// Loads the certificate, key and CAs and builds the server config.
    ///
    /// # Errors
    /// Unreadable files, PEM without a certificate or key, a key that does not match the
    /// certificate, or unusable CAs.
    pub fn compile(&self, base_dir: &Path) -> Result<AgentTls, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(format!("agent_tls_termination {m}"));
        let chain = certs(
            &pem_text(&self.server_certificate, base_dir, "server_certificate")?,
            "server_certificate",
        )?;
        let key_pem = pem_text(&self.server_private_key, base_dir, "server_private_key")?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| invalid(format!("`server_private_key`: invalid PEM: {e}")))?
            .ok_or_else(|| invalid("`server_private_key` holds no PEM private key".into()))?;
        let provider = crate::tls::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?;
        let mutual = !self.mutual_tls_certificate_authorities.is_empty();
        let builder = if mutual {
            let mut roots = rustls::RootCertStore::empty();
            for (i, ca) in self.mutual_tls_certificate_authorities.iter().enumerate() {
                let what = format!("mutual_tls_certificate_authorities[{i}]");
                for cert in certs(&pem_text(ca, base_dir, &what)?, &what)? {
                    roots
                        .add(cert)
                        .map_err(|e| invalid(format!("`{what}`: {e}")))?;
                }
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| invalid(format!("client certificate authorities: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| invalid(format!("`server_certificate`/`server_private_key`: {e}")))?;
        Ok(AgentTls {
            config: Arc::new(config),
            mutual,
        })
    }
}

impl AgentTls {
    /// Terminates the client's TLS on `tunnel` (the raw stream from the edge) and pipes the
    /// plaintext to `upstream` until either side ends or stays idle for `idle`.
    ///
    /// # Errors
    /// When the handshake fails or times out, or the pipe fails.
    pub async fn pipe<T, U>(
        &self,
        tunnel: T,
        upstream: &mut U,
        idle: Duration,
    ) -> std::io::Result<()>
    where
        T: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tunnel))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "tls handshake timed out")
            })??;
        crate::io::copy_with_idle(&mut tls, upstream, idle).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_pem_text_and_files_and_refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, chain, key) = crate::tls::generate_dev_ca(&["db.example.test".into()]).unwrap();
        std::fs::write(dir.path().join("key.pem"), &key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
        let cfg = AgentTlsTerminationConfig {
            server_certificate: chain.clone(),
            server_private_key: "key.pem".into(),
            mutual_tls_certificate_authorities: vec!["ca.pem".into()],
        };
        let t = cfg.compile(dir.path()).unwrap();
        assert!(t.mutual);
        let bad = |c: AgentTlsTerminationConfig, want: &str| {
            let e = c.compile(dir.path()).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted `{want}`)");
        };
        bad(
            AgentTlsTerminationConfig {
                server_private_key: "missing.pem".into(),
                ..cfg.clone()
            },
            "cannot read",
        );
        bad(
            AgentTlsTerminationConfig {
                server_certificate: "-----BEGIN X-----\n-----END X-----\n".into(),
                ..cfg.clone()
            },
            "no PEM certificate",
        );
        let (_, other, _) = crate::tls::generate_dev_ca(&["x.test".into()]).unwrap();
        bad(
            AgentTlsTerminationConfig {
                server_certificate: other,
                ..cfg.clone()
            },
            "server_certificate",
        );
    }
}
