//! The realtime socket: `wss://` against an in-test rustls server with a CA made for the test
//! (a trusted one completes the WebSocket handshake; an untrusted CA, another host's
//! certificate and a plain peer are fatal TLS errors), plus redaction and fatality rules.

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::SinkExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::*;
use crate::upstream::tls::{client_config, CaBundle};

/// A CA made for one test, and its certificate as a bundle file.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    bundle: CaBundle,
}

fn test_ca() -> TestCa {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "understudy realtime test CA");
    let cert = params.self_signed(&key).unwrap();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "understudy-realtime-ca-{}-{n}.pem",
        std::process::id()
    ));
    std::fs::write(&path, cert.pem()).unwrap();
    let bundle = CaBundle::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    TestCa {
        issuer: Issuer::new(params, key),
        bundle,
    }
}

/// A WebSocket server over TLS on 127.0.0.1 whose certificate names `names` (IP addresses
/// become IP SANs); it sends `hello` to each client. Returns its port.
async fn wss_server(ca: &TestCa, names: &[&str]) -> u16 {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake is what some tests want; the server just moves on.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                let _ = ws.send(Message::text("hello")).await;
                let _ = ws.next().await;
            });
        }
    });
    port
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn wss(port: u16) -> url::Url {
    url::Url::parse(&format!("wss://127.0.0.1:{port}/app/k?key=a:secret")).unwrap()
}

#[tokio::test]
async fn wss_completes_the_websocket_handshake_when_the_ca_is_trusted() {
    let ca = test_ca();
    let port = wss_server(&ca, &["127.0.0.1"]).await;
    let tls = client_config(Some(&ca.bundle)).unwrap();
    let mut socket = Socket::connect(&wss(port), &tls, soon())
        .await
        .expect("TLS and WebSocket handshakes complete");
    assert_eq!(
        socket.text_until(soon()).await.unwrap().as_deref(),
        Some("hello")
    );
    socket.close().await;
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_a_fatal_tls_error() {
    let ca = test_ca();
    let port = wss_server(&ca, &["127.0.0.1"]).await;
    let platform_only = client_config(None).unwrap();
    let error = Socket::connect(&wss(port), &platform_only, soon())
        .await
        .err()
        .expect("untrusted");
    let RealtimeError::Tls { problem, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*problem, TlsProblem::UnknownIssuer);
    assert!(error.is_fatal());
    let shown = error.to_string();
    assert!(
        shown.starts_with("TLS certificate not trusted (UnknownIssuer): set vendors.ca_file"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");
}

#[tokio::test]
async fn a_certificate_for_another_host_is_a_fatal_tls_error() {
    let ca = test_ca();
    // The URL says 127.0.0.1; the certificate names only a DNS host.
    let port = wss_server(&ca, &["vendor.test"]).await;
    let tls = client_config(Some(&ca.bundle)).unwrap();
    let error = Socket::connect(&wss(port), &tls, soon())
        .await
        .err()
        .expect("wrong host");
    assert!(
        matches!(
            error,
            RealtimeError::Tls {
                problem: TlsProblem::NotValidForName,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_fatal());
}

/// `tls=true` against a plain HTTP port: a handshake error, told as such, without the key.
#[tokio::test]
async fn a_plain_peer_is_a_tls_handshake_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let tls = client_config(None).unwrap();
    let error = Socket::connect(&wss(port), &tls, soon())
        .await
        .err()
        .expect("no TLS peer");
    assert!(
        matches!(
            error,
            RealtimeError::Tls {
                problem: TlsProblem::Handshake,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.to_string().contains("secret"), "{error}");
}

#[test]
fn query_strings_are_redacted() {
    assert_eq!(
        strip_query("HTTP error: 401 for ws://h/?key=a:b rest"),
        "HTTP error: 401 for ws://h/?<redacted> rest"
    );
    assert_eq!(strip_query("plain"), "plain");
}

#[test]
fn refused_and_tls_are_fatal_closed_is_not() {
    assert!(RealtimeError::Refused {
        code: 4001,
        message: String::new()
    }
    .is_fatal());
    assert!(RealtimeError::Tls {
        problem: TlsProblem::UnknownIssuer,
        detail: String::new()
    }
    .is_fatal());
    assert!(!RealtimeError::Closed {
        code: 4200,
        reason: String::new()
    }
    .is_fatal());
    assert!(!RealtimeError::Dead.is_fatal());
}
