//! What can go wrong for a client: one variant per cause, so callers (and the
//! `msglog send` exit codes) can tell them apart without reading messages.

use std::fmt;
use std::io;
use std::time::Duration;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered NAME with 0xFF, and the name breaks a NAME rule
    /// (it is empty or starts with a NUL byte).
    #[error("the server rejected the name and closed the connection; use a non-empty name that does not start with a NUL byte")]
    NameRejected,
    /// The server answered PASS with 0xFF: the password does not verify for
    /// the name, by the server's authenticator (the reference's rule, or a
    /// users file). The client cannot tell which the server uses, so this
    /// also covers a login slower than the server's handshake timeout.
    ///
    /// With mutual TLS the server may also take NAME from the client
    /// certificate: a NAME that is not one of its names fails the same way.
    #[error("the server rejected the password and closed the connection; check the password and connect again (with a client certificate, the server may also require NAME to be one of the certificate's names)")]
    PasswordRejected,
    /// The server answered NAME with 0xFF although the protocol's rules
    /// accept it: it refused the connection as a whole (it is at its
    /// connection limit, shutting down, or the login took longer than its
    /// handshake timeout).
    #[error("the server refused the connection although the name and password are valid (it is at its connection limit, shutting down, or the login was too slow); retry later")]
    Refused,
    /// The server answered a MSG with 0xFF and closed the connection.
    ///
    /// `index` is the message's position in the call that sent it: 0 for
    /// [`Client::send`](super::Client::send), its position in the batch for
    /// [`Client::send_pipelined`](super::Client::send_pipelined). Messages
    /// after it were not logged.
    #[error("the server rejected message {index} of this call and closed the connection; messages must be non-empty and within the server's size limit; connect again to send more")]
    MessageRejected { index: usize },
    /// The message does not fit a frame; nothing of it was sent and the
    /// connection is still usable.
    #[error("a message of {len} bytes is longer than the protocol's limit of 65535 bytes; nothing was sent; split it into several messages")]
    MessageTooLong { len: usize },
    /// The name does not fit a frame; nothing was sent.
    #[error("a name of {len} bytes is longer than the protocol's limit of 65535 bytes; nothing was sent; use a shorter name")]
    NameTooLong { len: usize },
    /// The password does not fit a frame; nothing was sent.
    #[error("a password of {len} bytes is longer than the protocol's limit of 65535 bytes; nothing was sent; use a shorter password")]
    PasswordTooLong { len: usize },
    /// The connection ended: the server closed or reset it, or an earlier
    /// error on this client left it unusable.
    #[error("the connection to the server is closed; check that the server is running and connect again")]
    ConnectionClosed,
    /// The server sent a byte that is neither 0x00 nor 0xFF.
    #[error("the server replied 0x{byte:02x}, which is neither 0x00 (ack) nor 0xFF (reject); check that the address is a msglog server")]
    UnexpectedReply { byte: u8 },
    /// Any other I/O error, e.g. connection refused or name resolution failed.
    #[error(
        "I/O error talking to the server: {0}; check the address and that the server is running"
    )]
    Io(#[from] io::Error),
    /// The server did not answer in time. The connection is unusable after
    /// this: a late reply would be taken for the next one.
    #[error("no answer from the server within {after:?} while {during}; check that the server is running and not overloaded, or raise the timeout")]
    Timeout { during: Operation, after: Duration },
    /// The client's TLS settings could not be loaded; nothing was sent.
    #[error(transparent)]
    TlsSetup(#[from] super::tls::TlsSetupError),
    /// The TLS handshake failed, or the server ended TLS with an alert
    /// (for instance because it refused the client's certificate).
    #[error("TLS with the server failed: {reason}; {advice}")]
    Tls {
        reason: String,
        advice: &'static str,
    },
    /// The server answered the TLS handshake with 0xFF: it speaks msglog
    /// without TLS, or it is at its connection limit (which it says with
    /// 0xFF before any TLS).
    #[error("the server answered the TLS handshake with 0xFF: it serves msglog without TLS (connect without TLS, or start the server with --tls-cert/--tls-key), or it is at its connection limit (retry later)")]
    NotTlsServer,
    /// The server answered NAME with a TLS alert: it serves msglog inside
    /// TLS.
    #[error("the server answered with a TLS alert: it serves msglog inside TLS; connect with TLS (msglog send --tls)")]
    TlsServer,
}

impl ClientError {
    /// An I/O error, with the ways a peer can end a connection folded into
    /// `ConnectionClosed`, so callers need not know the OS's error kinds.
    pub(crate) fn from_io(e: io::Error) -> Self {
        if let Some(tls) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return ClientError::Tls {
                reason: tls.to_string(),
                advice: super::tls::advice(tls),
            };
        }
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => ClientError::ConnectionClosed,
            _ => ClientError::Io(e),
        }
    }
}

/// What the client was doing when a timeout struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Resolving the address and opening the TCP connection.
    Connect,
    /// Sending NAME and waiting for its reply.
    Name,
    /// Sending PASS and waiting for its reply.
    Password,
    /// Sending MSG frames and waiting for their replies.
    Message,
    /// Sending CLOSE and waiting for its confirmation.
    Close,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Connect => "connecting",
            Operation::Name => "sending the name",
            Operation::Password => "sending the password",
            Operation::Message => "sending messages",
            Operation::Close => "closing the connection",
        })
    }
}

/// A pipelined send that stopped early.
///
/// The server acknowledges messages in order, so the first `acknowledged`
/// messages of the batch are in the log. For `MessageRejected` and
/// `MessageTooLong` the failing message is number `acknowledged` and none
/// after it was logged; after `ConnectionClosed`, `Io` or `Timeout`, messages
/// after the acknowledged ones may or may not have been logged.
#[derive(Debug, thiserror::Error)]
#[error("{error} ({acknowledged} message(s) of this call were acknowledged before that)")]
pub struct PipelineError {
    /// How many messages, from the start of the batch, the server acknowledged.
    pub acknowledged: usize,
    /// What stopped the batch.
    pub error: ClientError,
}

impl From<PipelineError> for ClientError {
    fn from(e: PipelineError) -> Self {
        e.error
    }
}
