//! TLS for the server (spec: #tls): the certificate, key and client CA from
//! PEM files, reloadable on SIGHUP; the handshake of each connection, inside
//! the handshake timeout; telling a plaintext client on a TLS port; and the
//! names a client certificate vouches for, with the check that NAME is one
//! of them.
//!
//! The protocol inside TLS is unchanged: once the handshake is done, the
//! connection runs the same shell and engine as a plaintext one, over
//! `tokio_rustls::server::TlsStream` instead of `TcpStream`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::connection::{linger_close, Connection, PasswordVerifier, Peer, ServerContext, Verdict};
use crate::proto::engine::VerifyRequest;
use crate::proto::machine::reference_rule_accepts;

/// The first byte of every TLS record that opens a handshake (content type
/// 22, handshake): a ClientHello starts with it.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A fatal TLS alert, `unexpected_message`, in a TLS 1.2 record (RFC 8446
/// 6 and B.2): what the server answers a plaintext client with. Its first
/// byte, 0x15, is no msglog reply, so msglog's clients recognise it.
const UNEXPECTED_MESSAGE_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a];

/// The TLS files and options of `msglog serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates are verified
    /// against; with it the server asks every client for a certificate.
    pub client_ca: Option<PathBuf>,
    /// Refuse a client without a certificate (needs `client_ca`).
    pub require_client_cert: bool,
    /// A NAME must be one of the client certificate's names (needs
    /// `client_ca`).
    pub name_from_cert: bool,
}

/// Why the TLS configuration could not be loaded. Each says which file and
/// what to do; at start the server refuses to run, on SIGHUP it keeps the
/// configuration it has.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read the certificate file {}: {source}; give a PEM file with the server's certificate chain (--tls-cert)", path.display())]
    Certificate {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("the certificate file {} holds no certificate (no -----BEGIN CERTIFICATE----- block); give the server's certificate chain in PEM (--tls-cert)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("cannot read a private key from {}: {source}; give the server's private key in PEM, unencrypted (--tls-key)", path.display())]
    Key {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("the certificate {} and the key {} cannot be used together: {source}; check that the key belongs to the certificate", cert.display(), key.display())]
    CertifiedKey {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot read the client CA file {}: {source}; give the CA certificates that sign client certificates in PEM (--tls-client-ca)", path.display())]
    ClientCa {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("the client CA file {} holds no usable CA certificate{}; give the CA certificates that sign client certificates in PEM (--tls-client-ca)", path.display(), reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    NoClientCa {
        path: PathBuf,
        reason: Option<String>,
    },
    #[error("--tls-require-client-cert and --tls-name-from-cert need --tls-client-ca, the CA that client certificates are checked against")]
    NeedsClientCa,
}

/// The server's TLS state: the files, and the configuration loaded from
/// them, replaced whole on reload. Each handshake takes the configuration
/// current when it starts.
#[derive(Debug)]
pub(crate) struct TlsState {
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
}

impl TlsState {
    pub(crate) fn load(files: TlsFiles) -> Result<TlsState, TlsConfigError> {
        let config = server_config(&files)?;
        Ok(TlsState {
            files,
            config: RwLock::new(Arc::new(config)),
        })
    }

    fn acceptor(&self) -> TlsAcceptor {
        let config = self.config.read().unwrap_or_else(|p| p.into_inner());
        TlsAcceptor::from(config.clone())
    }

    pub(crate) fn name_from_cert(&self) -> bool {
        self.files.name_from_cert
    }
}

/// Reloads the certificate, key and client CA from their files (for
/// SIGHUP). A file that cannot be used leaves the configuration as it was.
#[derive(Debug, Clone)]
pub struct TlsReloader(pub(crate) Arc<TlsState>);

impl TlsReloader {
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        //= spec/protocol.md#tls
        //# On a reload of its TLS files, a server MUST keep the configuration it has if a file cannot be used.
        let config = server_config(&self.0.files)?;
        *self.0.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
fn read_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, rustls_pki_types::pem::Error> {
    CertificateDer::pem_file_iter(path)?.collect()
}

/// Builds the server's TLS configuration from its files.
//= spec/protocol.md#tls
//# A server that serves TLS MUST offer TLS 1.3 and TLS 1.2, and no older version.
fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsConfigError> {
    if (files.require_client_cert || files.name_from_cert) && files.client_ca.is_none() {
        return Err(TlsConfigError::NeedsClientCa);
    }
    let chain = read_certificates(&files.cert).map_err(|source| TlsConfigError::Certificate {
        path: files.cert.clone(),
        source,
    })?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsConfigError::Key {
        path: files.key.clone(),
        source,
    })?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let no_ca = |reason: Option<String>| TlsConfigError::NoClientCa {
                path: path.clone(),
                reason,
            };
            let cas = read_certificates(path).map_err(|source| TlsConfigError::ClientCa {
                path: path.clone(),
                source,
            })?;
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots.add(ca).map_err(|e| no_ca(Some(e.to_string())))?;
            }
            if roots.is_empty() {
                return Err(no_ca(None));
            }
            //= spec/protocol.md#tls
            //# A server configured with a client CA MUST ask every client for a certificate and MUST refuse the connection if the client presents one that the CA did not sign or that is not valid now.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            //= spec/protocol.md#tls
            //# A server configured to require client certificates MUST refuse a client that presents none.
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| no_ca(Some(e.to_string())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsConfigError::CertifiedKey {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })
}

/// The names a certificate vouches for: its subject's common names, and its
/// DNS and URI subject alternative names. A certificate that cannot be
/// parsed vouches for none.
pub fn certified_names(certificate: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(certificate) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) => names.push((*n).to_owned()),
                _ => {}
            }
        }
    }
    names
}

/// Runs one connection accepted on a TLS port: tells a plaintext client,
/// does the handshake within the handshake timeout (and the shutdown), then
/// serves the protocol inside TLS with the same shell as plaintext.
pub(crate) async fn serve(
    tcp: TcpStream,
    addr: std::net::SocketAddr,
    ctx: Arc<ServerContext>,
    tls: Arc<TlsState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let accepted = Instant::now();
    let _ = tcp.set_nodelay(true);
    //= spec/protocol.md#diagnostics
    //# The server MUST report each accepted and each closed connection with the peer's address.
    tracing::info!(peer = %addr, tls = true, "connection accepted");
    ctx.stats.opened();
    let deadline = tokio::time::Instant::from_std(accepted + ctx.limits.handshake_timeout);
    let stopping = shutdown.changed();
    //= spec/protocol.md#tls
    //# A server MUST close a connection whose TLS handshake is not completed within the handshake timeout.
    let outcome = tokio::select! {
        outcome = handshake(tcp, addr, &tls) => outcome,
        () = tokio::time::sleep_until(deadline) => Err(NoSession::HandshakeTimeout),
        _ = stopping => Err(NoSession::ShuttingDown),
    };
    match outcome {
        Ok(stream) => {
            let names = match stream.get_ref().1.peer_certificates() {
                Some([leaf, ..]) => certified_names(leaf),
                _ => Vec::new(),
            };
            let (_, session) = stream.get_ref();
            tracing::debug!(peer = %addr, version = ?session.protocol_version(), certified_names = ?names, "TLS handshake done");
            let peer = Peer {
                addr,
                certified_names: names.into(),
            };
            //= spec/protocol.md#tls
            //# Inside TLS, client and server MUST speak the protocol of this document unchanged.
            // The same shell and engine as plaintext, over the TLS stream.
            Connection::new(stream, peer, ctx, accepted)
                .run_announced(shutdown)
                .await;
        }
        Err(reason) => {
            ctx.stats.closed();
            tracing::info!(peer = %addr, reason = %reason, "connection closed");
        }
    }
}

/// Why a connection on a TLS port never got to the protocol, for its
/// closing diagnostic.
#[derive(Debug, thiserror::Error)]
enum NoSession {
    #[error("TLS handshake not completed within the handshake timeout")]
    HandshakeTimeout,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the client closed before sending anything")]
    ClosedAtOnce,
    #[error("connection failed: {0}")]
    Io(std::io::Error),
    #[error("not a TLS client")]
    Plaintext,
    #[error("TLS handshake failed")]
    HandshakeFailed,
}

/// The TLS handshake on a fresh connection, or why there is none (a
/// plaintext client and a failed handshake are reported here). A first
/// byte that is no TLS record is a plaintext client: it gets a TLS alert,
/// which no msglog reply can be mistaken for.
async fn handshake(
    mut tcp: TcpStream,
    addr: std::net::SocketAddr,
    tls: &TlsState,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, NoSession> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => return Err(NoSession::ClosedAtOnce),
        Err(e) => return Err(NoSession::Io(e)),
        Ok(_) => {}
    }
    //= spec/protocol.md#tls
    //# A server that serves TLS MUST close a connection whose first byte does not start a TLS handshake record, and report it as a client that does not speak TLS.
    if first[0] != TLS_HANDSHAKE_RECORD {
        tracing::warn!(peer = %addr, first_byte = format_args!("0x{:02x}", first[0]), "this looks like a plaintext client on a TLS port: its first byte is no TLS record; it must connect with TLS (msglog send --tls), or the server must run without --tls-cert/--tls-key");
        use tokio::io::AsyncWriteExt;
        if tcp.write_all(&UNEXPECTED_MESSAGE_ALERT).await.is_ok() {
            linger_close(&mut tcp).await;
        }
        return Err(NoSession::Plaintext);
    }
    match tls.acceptor().accept(tcp).into_fallible().await {
        Ok(stream) => Ok(stream),
        Err((error, mut tcp)) => {
            // tokio-rustls has sent the alert that explains the failure;
            // linger so that it is not lost to a reset.
            tracing::warn!(peer = %addr, error = %error, "TLS handshake failed{}", handshake_hint(&error));
            linger_close(&mut tcp).await;
            Err(NoSession::HandshakeFailed)
        }
    }
}

/// What a person can do about a failed handshake, where the error says.
fn handshake_hint(error: &std::io::Error) -> &'static str {
    use rustls::Error;
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    {
        Some(Error::NoCertificatesPresented) => {
            "; the client presented no certificate, which this server requires (--tls-require-client-cert)"
        }
        Some(Error::InvalidCertificate(_)) => {
            "; the client's certificate is not signed by --tls-client-ca, or is expired or not yet valid"
        }
        Some(Error::PeerIncompatible(_)) => {
            "; the client offers no TLS version or cipher suite this server accepts (TLS 1.2 or 1.3)"
        }
        _ => "",
    }
}

/// Verifies each PASS only for a NAME that the connection's client
/// certificate vouches for (`--tls-name-from-cert`), then with the server's
/// own verifier, or the reference's rule without one.
#[derive(Debug)]
pub(crate) struct CertifiedNameCheck {
    pub inner: Option<Arc<dyn PasswordVerifier>>,
}

impl PasswordVerifier for CertifiedNameCheck {
    fn verify(&self, request: VerifyRequest, peer: &Peer) -> Verdict {
        //= spec/protocol.md#tls
        //# A server configured to take names from client certificates MUST reject the PASS of a connection whose NAME is not exactly one of its client certificate's names, with the rule PasswordRejected.
        if !peer.certifies(&request.name) {
            tracing::warn!(
                peer = %peer.addr,
                name = %String::from_utf8_lossy(&request.name).escape_debug(),
                certified_names = ?peer.certified_names,
                "NAME is not one of the client certificate's names; rejecting the PASS"
            );
            return Box::pin(std::future::ready(false));
        }
        match &self.inner {
            Some(verifier) => verifier.verify(request, peer),
            None => Box::pin(std::future::ready(reference_rule_accepts(
                &request.password,
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn certificate(common_name: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_vouches_for_its_common_name_and_its_dns_and_uri_names_only() {
        let der = certificate(
            Some("alice"),
            vec![
                SanType::DnsName("alice.example".try_into().unwrap()),
                SanType::URI("urn:msglog:alice".try_into().unwrap()),
                SanType::IpAddress([192, 0, 2, 1].into()),
                SanType::Rfc822Name("alice@example.org".try_into().unwrap()),
            ],
        );
        let names = certified_names(&der);
        assert_eq!(names, ["alice", "alice.example", "urn:msglog:alice"]);
        let peer = Peer {
            addr: "127.0.0.1:1".parse().unwrap(),
            certified_names: names.into(),
        };
        for name in ["alice", "alice.example", "urn:msglog:alice"] {
            assert!(peer.certifies(name.as_bytes()), "{name}");
        }
        for name in [
            "Alice",
            "alic",
            "alice ",
            "192.0.2.1",
            "alice@example.org",
            "",
        ] {
            assert!(!peer.certifies(name.as_bytes()), "{name}");
        }
        assert!(certified_names(&certificate(None, Vec::new())).is_empty());
        assert!(certified_names(b"not a certificate").is_empty());
        assert!(!Peer::plain(peer.addr).certifies(b"alice"));
    }
}
