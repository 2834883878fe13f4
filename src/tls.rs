//! TLS client settings for campeer's outgoing connections (the MQTT broker, TURN servers):
//! rustls with ring, the system's trusted certificates plus any the operator names, and an
//! optional client certificate. Reading the files blocks; callers run this off the async
//! workers.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the certificates in {key} {path}: {reason}")]
    CaFile {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("no certificate to check the server against: the system has none and {key} names none")]
    NoTrustedCertificates { key: &'static str },
    #[error("cannot read the client certificate or key {path}: {reason}")]
    ClientCertificate { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A client configuration. `ca_key` names the setting `ca_file` came from, for errors.
pub fn client_config(
    ca_key: &'static str,
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let roots = trusted_roots(ca_key, ca_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let cert_error = |path: &Path, reason: String| TlsSetupError::ClientCertificate {
                path: path.to_owned(),
                reason,
            };
            let chain = CertificateDer::pem_file_iter(cert_path)
                .map_err(|e| cert_error(cert_path, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| cert_error(cert_path, e.to_string()))?;
            if chain.is_empty() {
                return Err(cert_error(cert_path, "it holds no PEM certificate".into()));
            }
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| cert_error(key_path, e.to_string()))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

fn trusted_roots(
    key: &'static str,
    ca_file: Option<&Path>,
) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!("a system certificate could not be read: {error}");
    }
    let (added, _ignored) = roots.add_parsable_certificates(system.certs);
    tracing::debug!("{added} system certificates trusted");
    if let Some(path) = ca_file {
        let ca_error = |reason: String| TlsSetupError::CaFile {
            key,
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
        let mut found = 0;
        for cert in certs {
            let cert = cert.map_err(|e| ca_error(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            found += 1;
        }
        if found == 0 {
            return Err(ca_error("it holds no PEM certificate".into()));
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoTrustedCertificates { key });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_certificates_are_clear_errors() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a certificate\n").unwrap();
        let error = client_config("mqtt.ca_file", Some(file.path()), None).unwrap_err();
        assert!(
            matches!(
                error,
                TlsSetupError::CaFile {
                    key: "mqtt.ca_file",
                    ..
                }
            ),
            "{error}"
        );
        let error =
            client_config("mqtt.ca_file", None, Some((file.path(), file.path()))).unwrap_err();
        assert!(
            matches!(error, TlsSetupError::ClientCertificate { .. }),
            "{error}"
        );
    }
}
