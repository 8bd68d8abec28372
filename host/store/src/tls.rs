//! TLS to PostgreSQL (rustls), chosen by the URL's `sslmode` as libpq
//! reads it:
//!
//! - `disable`: no TLS;
//! - `prefer`: TLS when the server offers it, without checking its
//!   certificate (tokio-postgres's default);
//! - `require`: TLS or no connection, without checking the certificate
//!   (encrypted against eavesdropping, not against an impostor);
//! - `verify-full`: TLS, the certificate checked against the system's roots
//!   or the PEM file in `sslrootcert=PATH`, and its name against the host.
//!
//! A URL that would send a password to another machine than this one
//! without TLS (no `sslmode`, or `prefer`) is refused unless it says
//! `sslmode=disable`.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// What the URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// A PostgreSQL URL split into what tokio-postgres reads and what this
/// module reads itself (`sslmode`, `sslrootcert`).
#[derive(Debug)]
pub(crate) struct Connection {
    /// The URL without `sslmode` and `sslrootcert`.
    pub url: String,
    pub mode: SslMode,
    /// Whether `sslmode` was written out.
    pub mode_given: bool,
    pub root_cert: Option<String>,
}

/// Splits `url` (`postgres://user:password@host:port/db?sslmode=...`).
pub(crate) fn parse(url: &str) -> Result<Connection, String> {
    // The query starts at the first `?` after the credentials (a password
    // may hold one).
    let after_credentials = url.rfind('@').map_or(0, |at| at + 1);
    let (base, query) = match url[after_credentials..].find('?') {
        Some(at) => (&url[..after_credentials + at], &url[after_credentials + at + 1..]),
        None => (url, ""),
    };
    let (mut mode, mut mode_given, mut root_cert, mut kept) = (SslMode::Prefer, false, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sslmode" => {
                mode_given = true;
                mode = match value {
                    "disable" => SslMode::Disable,
                    "prefer" | "allow" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-full" => SslMode::VerifyFull,
                    "verify-ca" => {
                        return Err("sslmode=verify-ca is not supported: use verify-full (the certificate and its host name are checked)".to_owned());
                    }
                    other => {
                        return Err(format!("sslmode={other} is not one of disable, prefer, require, verify-full"));
                    }
                };
            }
            "sslrootcert" => root_cert = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok(Connection { url, mode, mode_given, root_cert })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `host` is this machine: a loopback address, `localhost`, or a
/// Unix socket folder.
pub(crate) fn is_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.starts_with('/') || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The TLS connector for `mode`.
pub(crate) fn connector(mode: SslMode, root_cert: Option<&str>) -> Result<Rustls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match mode {
        SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match root_cert {
                Some(path) => {
                    let certificates = CertificateDer::pem_file_iter(Path::new(path))
                        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| format!("sslrootcert={path}: cannot read PEM certificates: {e}"))?;
                    for certificate in certificates {
                        roots.add(certificate).map_err(|e| format!("sslrootcert={path}: {e}"))?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    for certificate in found.certs {
                        let _ = roots.add(certificate);
                    }
                }
            }
            if roots.is_empty() {
                return Err("sslmode=verify-full: no root certificate to check the server against; give sslrootcert=PATH (a PEM file)".to_owned());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider.signature_verification_algorithms)))
            .with_no_client_auth(),
    };
    Ok(Rustls(tokio_rustls::TlsConnector::from(Arc::new(config))))
}

/// `require` and `prefer`: the handshake's signatures are checked (so the
/// session key is the server's), the certificate's chain and name are not.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// rustls as tokio-postgres's TLS: one per pool, cloned per connection.
#[derive(Clone)]
pub(crate) struct Rustls(tokio_rustls::TlsConnector);

/// The connector for one server name.
pub(crate) struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

/// A TLS connection to the server.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> MakeTlsConnect<S> for Rustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("`{domain}`: {e}")))?;
        Ok(RustlsConnect { connector: self.0.clone(), name })
    }
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move { self.connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // No SCRAM channel binding: its hash depends on the certificate's
        // signature algorithm, and a wrong one fails the login.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let c = parse("postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=3")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.url, "postgres://u:p@h:5432/db?connect_timeout=3");
        assert_eq!((c.mode, c.mode_given), (SslMode::VerifyFull, true));
        assert_eq!(c.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let c = parse("postgres://u@h/db").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.url.as_str(), c.mode, c.mode_given), ("postgres://u@h/db", SslMode::Prefer, false));
        assert!(parse("postgres://h/db?sslmode=verify-ca").is_err_and(|e| e.contains("verify-full")));
        assert!(parse("postgres://h/db?sslmode=always").is_err());
        let c = parse("postgres://u:p?w@h/db?sslmode=disable").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.url.as_str(), c.mode), ("postgres://u:p?w@h/db", SslMode::Disable));
    }

    #[test]
    fn only_loopback_and_sockets_are_local() {
        for local in ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "/var/run/postgresql"] {
            assert!(is_local(local), "{local}");
        }
        for remote in ["db.example.com", "10.0.0.5", "192.168.1.1", "2001:db8::1", "localhost.example.com"] {
            assert!(!is_local(remote), "{remote}");
        }
    }
}
