//! TLS for the clients (spec: #tls): the client's rustls configuration from
//! PEM files, the connection (TCP, or TLS over it) that the client, `msglog
//! bench` and `msglog conform server` share, and what a failed handshake or
//! a TLS alert means for a person.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::ClientError;
use crate::proto::machine::NAK;

/// The first byte of a TLS alert record: what a TLS server answers a
/// plaintext client with, and no msglog reply.
pub const TLS_ALERT_RECORD: u8 = 0x15;

/// Where a client's TLS settings come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificates (PEM) that sign the server's certificate; `None`
    /// trusts the operating system's CA certificates.
    pub ca: Option<PathBuf>,
    /// The client's certificate chain (PEM), for mutual TLS.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM).
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry: a DNS name or an IP
    /// address; usually the host connected to.
    pub server_name: String,
}

/// Why the client's TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA certificates from {}: {source}; give the CA that signed the server's certificate in PEM (--ca)", path.display())]
    Ca {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{} holds no usable CA certificate{}; give the CA that signed the server's certificate in PEM (--ca)", path.display(), reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    NoCa {
        path: PathBuf,
        reason: Option<String>,
    },
    #[error("the operating system has no CA certificates to verify the server with; give the CA that signed the server's certificate (--ca)")]
    NoSystemCa,
    #[error("cannot read the client certificate {}: {source}; give the certificate chain in PEM (--cert)", path.display())]
    Cert {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{} holds no certificate; give the client certificate chain in PEM (--cert)", path.display())]
    NoCert { path: PathBuf },
    #[error("cannot read the private key {}: {source}; give the key of the client certificate in PEM, unencrypted (--key)", path.display())]
    Key {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error(
        "a client certificate needs its key and the other way round: give both --cert and --key"
    )]
    CertWithoutKey,
    #[error("the client certificate and key cannot be used together: {0}; check that the key belongs to the certificate")]
    CertifiedKey(rustls::Error),
    #[error("{name:?} is no valid server name for TLS (a DNS name or an IP address); pass another --tls-server-name")]
    ServerName { name: String },
}

/// A client's prepared TLS settings: cheap to clone, used for every
/// connection.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Loads the files of `options`.
    pub fn new(options: &TlsOptions) -> Result<ClientTls, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &options.ca {
            Some(path) => {
                let no_ca = |reason: Option<String>| TlsSetupError::NoCa {
                    path: path.clone(),
                    reason,
                };
                for ca in read_certificates(path).map_err(|source| TlsSetupError::Ca {
                    path: path.clone(),
                    source,
                })? {
                    roots.add(ca).map_err(|e| no_ca(Some(e.to_string())))?;
                }
                if roots.is_empty() {
                    return Err(no_ca(None));
                }
            }
            None => {
                // Unreadable system certificates are skipped; none at all
                // is an error that names --ca.
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(TlsSetupError::NoSystemCa);
                }
            }
        }
        //= spec/protocol.md#tls
        //# A client that speaks TLS MUST offer only TLS 1.3 and TLS 1.2, and MUST verify the server's certificate.
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots);
        let config = match (&options.cert, &options.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certificates(cert).map_err(|source| TlsSetupError::Cert {
                    path: cert.clone(),
                    source,
                })?;
                if chain.is_empty() {
                    return Err(TlsSetupError::NoCert { path: cert.clone() });
                }
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|source| TlsSetupError::Key {
                        path: key.clone(),
                        source,
                    })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsSetupError::CertifiedKey)?
            }
            _ => return Err(TlsSetupError::CertWithoutKey),
        };
        ClientTls::from_config(Arc::new(config), &options.server_name)
    }

    /// Uses a rustls configuration made elsewhere; `server_name` is the
    /// name the server's certificate must carry.
    pub fn from_config(
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> Result<ClientTls, TlsSetupError> {
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            TlsSetupError::ServerName {
                name: server_name.to_owned(),
            }
        })?;
        Ok(ClientTls {
            connector: TlsConnector::from(config),
            server_name,
        })
    }

    /// The TLS handshake over `tcp`. A server that answers it with 0xFF is
    /// a msglog server without TLS, and is reported as such.
    pub(crate) async fn handshake(&self, tcp: TcpStream) -> Result<Stream, ClientError> {
        let sniffed = Sniff {
            inner: tcp,
            first: None,
        };
        match self
            .connector
            .connect(self.server_name.clone(), sniffed)
            .into_fallible()
            .await
        {
            Ok(stream) => Ok(Stream::Tls(Box::new(stream))),
            //= spec/protocol.md#tls
            //# A client that speaks TLS and gets 0xFF in answer to its TLS handshake MUST report that the server does not serve TLS or refused the connection.
            Err((_, sniffed)) if sniffed.first == Some(NAK) => Err(ClientError::NotTlsServer),
            Err((error, _)) => Err(ClientError::from_io(error)),
        }
    }
}

fn read_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, rustls_pki_types::pem::Error> {
    CertificateDer::pem_file_iter(path)?.collect()
}

/// A connection to a server: plain TCP, or TLS over it (used by the
/// client, `msglog bench` and `msglog conform server`).
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<Sniff<TcpStream>>>),
}

impl Stream {
    //= spec/protocol.md#tls
    //# Inside TLS, client and server MUST speak the protocol of this document unchanged.
    /// Opens a connection to `addr`, inside TLS when `tls` is given, for
    /// speaking the protocol's bytes directly. Writes to a TLS stream leave
    /// only when flushed.
    pub async fn connect(
        addr: impl tokio::net::ToSocketAddrs,
        tls: Option<&ClientTls>,
    ) -> Result<Stream, ClientError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(ClientError::from_io)?;
        // Frames are small and each waits for a reply: Nagle's algorithm
        // would only add delay.
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(tls) => tls.handshake(tcp).await,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A stream that remembers the first byte the server sent: a 0xFF there, where a TLS
/// record should be, is a msglog server without TLS.
#[derive(Debug)]
pub struct Sniff<S> {
    inner: S,
    first: Option<u8>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.first.is_none() {
            this.first = buf.filled().get(before).copied();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What a TLS failure means for the person running the client: the part
/// of the error message that says what to do.
pub(crate) fn advice(error: &rustls::Error) -> &'static str {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
    match error {
        Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
            "the server's certificate is not signed by a CA this client trusts: pass the CA that signed it (--ca)"
        }
        Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the server's certificate has expired: the server needs a new one"
        }
        Error::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet: check the clocks, or the certificate's dates"
        }
        Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            "the server's certificate is for another name: connect by a name it carries, or pass --tls-server-name"
        }
        Error::InvalidCertificate(_) => "the server's certificate cannot be used: check it and --ca",
        Error::AlertReceived(Alert::CertificateRequired | Alert::HandshakeFailure) => {
            "the server requires a client certificate that it accepts: pass --cert and --key"
        }
        Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::CertificateUnknown
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied,
        ) => "the server refused this client's certificate: it must be signed by the server's client CA and valid now",
        Error::AlertReceived(Alert::ProtocolVersion) => {
            "the server offers no TLS version this client speaks (1.2 or 1.3)"
        }
        _ => "check that the server serves TLS at this address, and the TLS options on both sides",
    }
}
