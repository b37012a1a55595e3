//! TLS for the vendor tests: one CA made per test run (rcgen), written to a PEM file that
//! understudy is given as `vendors.ca_file`, and a TLS terminator on 127.0.0.1:0 (tokio-rustls)
//! that proxies bytes to a plain port (sockudo's, or the fault proxy's), as a hosted vendor's
//! TLS edge would. A terminator can present a certificate for other names (a wrong-host test),
//! and stops accepting when told (a killed vendor refuses connections).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use understudy::upstream::http::HttpConfig;
use understudy::upstream::tls::CaBundle;

/// The run's CA: its signing half and the PEM file of its certificate.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    file: PathBuf,
}

fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "understudy test vendor CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        let file =
            std::env::temp_dir().join(format!("understudy-it-ca-{}.pem", std::process::id()));
        std::fs::write(&file, cert.pem()).expect("write the CA file");
        TestCa {
            issuer: Issuer::new(params, key),
            file,
        }
    })
}

/// The PEM file of the run's CA (for `vendors.ca_file`).
pub(crate) fn ca_file() -> PathBuf {
    ca().file.clone()
}

/// `ca_file = "..."`, a line for a `[vendors]` section.
pub(crate) fn ca_file_toml() -> String {
    format!("ca_file = {:?}\n", ca_file().display().to_string())
}

/// Vendor HTTP settings that trust the run's CA.
pub(crate) fn http_config() -> HttpConfig {
    HttpConfig {
        ca: Some(CaBundle::read(&ca_file()).expect("the test CA file")),
        ..HttpConfig::default()
    }
}

/// A server configuration with a certificate from the run's CA naming `names` (IP addresses
/// become IP subjectAltNames).
fn server_config(names: &[&str]) -> Arc<rustls::ServerConfig> {
    let key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&key, &ca().issuer)
        .expect("server certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server TLS config");
    Arc::new(config)
}

/// A TLS terminator in front of a plain 127.0.0.1 port.
pub(crate) struct TlsTerminator {
    pub(crate) port: u16,
    accept: JoinHandle<()>,
}

impl TlsTerminator {
    /// Terminates TLS for `127.0.0.1` and `localhost` and forwards to `upstream_port`.
    pub(crate) async fn start(upstream_port: u16) -> TlsTerminator {
        TlsTerminator::start_for(upstream_port, &["127.0.0.1", "localhost"]).await
    }

    /// Like [`TlsTerminator::start`], with a certificate naming only `names`.
    pub(crate) async fn start_for(upstream_port: u16, names: &[&str]) -> TlsTerminator {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(names));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the TLS terminator");
        let port = listener.local_addr().expect("terminator address").port();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake (the wrong-CA tests) ends just this connection.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        TlsTerminator { port, accept }
    }

    /// Stops accepting: new connections are refused, as by a vendor that is gone.
    pub(crate) fn stop(&self) {
        self.accept.abort();
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
