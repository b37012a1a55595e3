//! TLS to vendors: the one rustls [`ClientConfig`] a vendor side builds and shares between REST
//! (reqwest) and realtime (tokio-tungstenite), trusting the platform's roots plus an operator's
//! CA bundle ([`CaBundle`], `vendors.ca_file`), with normal host-name verification (an IP address
//! in a vendor URL must match an IP subjectAltName). Also what a failed handshake means
//! ([`TlsProblem`]): every one of them needs an operator, so the failover side treats it as a
//! fatal configuration error, never as a lost canary.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

pub use super::error::TlsProblem;
use super::BuildError;

/// An operator's CA bundle (PEM), read and checked when the configuration loads, so a bad file
/// stops start-up (or a reload) with the problem named instead of failing every handshake.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    path: PathBuf,
    /// At least one certificate, each usable as a trust anchor.
    certs: Arc<[CertificateDer<'static>]>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("certificates", &self.certs.len())
            .finish()
    }
}

/// Why a CA bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    #[error("{path}: cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}: not a PEM file: {reason}")]
    NotPem { path: String, reason: String },
    #[error("{path}: no certificate in it (expected PEM blocks `-----BEGIN CERTIFICATE-----`)")]
    Empty { path: String },
    #[error("{path}: certificate {index} cannot be a trust anchor: {reason}")]
    Unusable {
        path: String,
        index: usize,
        reason: String,
    },
}

impl CaBundle {
    /// Reads `path`: every PEM certificate in it, at least one, each parseable as a root.
    pub fn read(path: &Path) -> Result<CaBundle, CaError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| CaError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaError::NotPem {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(CaError::Empty { path: shown });
        }
        for (index, cert) in certs.iter().enumerate() {
            RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| CaError::Unusable {
                    path: shown.clone(),
                    index: index + 1,
                    reason: e.to_string(),
                })?;
        }
        Ok(CaBundle {
            path: path.to_owned(),
            certs: certs.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many certificates the bundle holds (at least one).
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Always false: an empty bundle is refused by [`CaBundle::read`].
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// The client configuration of a vendor side: platform roots (the system store, which honours
/// `SSL_CERT_FILE`) plus `extra`. Built once per side and shared, so REST and realtime trust the
/// same roots. Only HTTP/1.1 is offered: both clients speak nothing else.
pub fn client_config(extra: Option<&CaBundle>) -> Result<Arc<ClientConfig>, BuildError> {
    let mut roots = RootCertStore::empty();
    let platform = rustls_native_certs::load_native_certs();
    if !platform.errors.is_empty() {
        // Some stores on some machines hold a bad file; the rest still counts.
        tracing::debug!(errors = ?platform.errors, "some platform certificates could not be read");
    }
    let (_, ignored) = roots.add_parsable_certificates(platform.certs);
    if ignored > 0 {
        tracing::debug!(
            ignored,
            "platform certificates that are not usable as roots"
        );
    }
    if let Some(bundle) = extra {
        for cert in bundle.certs.iter() {
            // Checked when the bundle was read.
            roots
                .add(cert.clone())
                .map_err(|e| BuildError::Tls(format!("{}: {e}", bundle.path.display())))?;
        }
    }
    if roots.is_empty() {
        tracing::warn!("no trusted TLS roots (the platform store is empty and vendors.ca_file is not set): every vendor URL with tls=true will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl TlsProblem {
    /// The rustls error somewhere in `error`'s chain, classified; `None` when the failure was
    /// not TLS's (refused, reset, time-out).
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Option<TlsProblem> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(rustls) = e.downcast_ref::<rustls::Error>() {
                return Some(TlsProblem::classify(rustls));
            }
            // `io::Error::source` skips the error it wraps (and connectors wrap io errors in io
            // errors): step into the wrapped one instead.
            next = match e.downcast_ref::<std::io::Error>() {
                Some(io) => io
                    .get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            };
        }
        None
    }

    fn classify(error: &rustls::Error) -> TlsProblem {
        let rustls::Error::InvalidCertificate(cert) = error else {
            return TlsProblem::Handshake;
        };
        match cert {
            CertificateError::UnknownIssuer => TlsProblem::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsProblem::NotValidForName
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsProblem::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsProblem::NotValidYet
            }
            CertificateError::Revoked => TlsProblem::Revoked,
            _ => TlsProblem::BadCertificate,
        }
    }
}
