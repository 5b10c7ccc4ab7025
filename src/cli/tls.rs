//! The TLS options of `msglog serve` and of the clients (`send`, `bench`,
//! `conform server`).

use std::path::PathBuf;

use msglog::client::TlsOptions;
use msglog::server::TlsFiles;

/// `msglog serve`: serve the protocol inside TLS.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeTlsArgs {
    /// Serve TLS 1.2/1.3 with this certificate chain (PEM, leaf first); needs --tls-key. Reloaded on SIGHUP.
    #[arg(
        long,
        env = "MSGLOG_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM, unencrypted). Reloaded on SIGHUP.
    #[arg(
        long,
        env = "MSGLOG_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Ask clients for a certificate signed by these CA certificates (PEM): mutual TLS. Reloaded on SIGHUP.
    #[arg(
        long,
        env = "MSGLOG_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
    /// Refuse clients that present no certificate (needs --tls-client-ca).
    #[arg(
        long,
        env = "MSGLOG_TLS_REQUIRE_CLIENT_CERT",
        requires = "tls_client_ca"
    )]
    tls_require_client_cert: bool,
    /// A NAME must be one of the client certificate's names (its CN or a DNS/URI SAN), byte for byte; needs --tls-client-ca.
    #[arg(long, env = "MSGLOG_TLS_NAME_FROM_CERT", requires = "tls_client_ca")]
    tls_name_from_cert: bool,
}

impl ServeTlsArgs {
    pub fn files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
            require_client_cert: self.tls_require_client_cert,
            name_from_cert: self.tls_name_from_cert,
        })
    }
}

/// The clients: speak TLS to the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientTlsArgs {
    /// Connect with TLS (1.2 or 1.3), verifying the server's certificate.
    #[arg(long, env = "MSGLOG_TLS")]
    tls: bool,
    /// CA certificates (PEM) to verify the server with, instead of the system's.
    #[arg(long, env = "MSGLOG_TLS_CA", value_name = "FILE", requires = "tls")]
    ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; needs --key.
    #[arg(long, env = "MSGLOG_CLIENT_CERT", value_name = "FILE", requires_all = ["tls", "key"])]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM, unencrypted).
    #[arg(long, env = "MSGLOG_CLIENT_KEY", value_name = "FILE", requires_all = ["tls", "cert"])]
    key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host connected to).
    #[arg(
        long,
        env = "MSGLOG_TLS_SERVER_NAME",
        value_name = "NAME",
        requires = "tls"
    )]
    tls_server_name: Option<String>,
}

impl ClientTlsArgs {
    /// The TLS options, `None` without --tls; the server's certificate must
    /// carry --tls-server-name, else `host`.
    pub fn options(&self, host: &str) -> Option<TlsOptions> {
        self.tls.then(|| TlsOptions {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            server_name: self
                .tls_server_name
                .clone()
                .unwrap_or_else(|| host.to_owned()),
        })
    }
}
