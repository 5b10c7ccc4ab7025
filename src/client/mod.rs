//! The client side: an async [`Client`], a [`blocking::Client`] for code
//! without a runtime, and the `msglog send` command ([`cli`]).
//!
//! A [`Client`] is one logged-in connection. [`Client::connect`] sends NAME
//! and PASS and waits for each reply; [`Client::send`] sends one MSG and
//! returns once the server acknowledged it, which the server does only after
//! the record is in its log; [`Client::send_pipelined`] keeps up to `window`
//! messages in flight for throughput and says how many were acknowledged;
//! [`Client::close`] sends CLOSE and waits for its confirmation.
//!
//! Frames are encoded by the same core code the server decodes them with
//! ([`crate::proto::Frame::encode`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let log_path = dir.path().join("messages.log");
//! # let server = msglog::testkit::TestServer::start(&log_path).await?;
//! # let addr = server.addr;
//! use msglog::client::{Client, ClientError};
//!
//! let mut client = Client::connect(addr, "MyUser", "A").await?;
//! client.send("This is my message.").await?;
//! client.send(b"bytes are fine too: \x00\xff").await?;
//!
//! // Ten messages in flight at a time; all ten acknowledged.
//! let batch = (0..10).map(|i| format!("message {i}"));
//! assert_eq!(client.send_pipelined(batch, 4).await?, 10);
//!
//! // The server rejects an empty message and closes the connection.
//! let err = client.send("").await.unwrap_err();
//! assert!(matches!(err, ClientError::MessageRejected { index: 0 }));
//! drop(client);
//!
//! // A password whose first byte is even is rejected.
//! let err = Client::connect(addr, "MyUser", "B").await.unwrap_err();
//! assert!(matches!(err, ClientError::PasswordRejected));
//!
//! let mut client = Client::connect(addr, "Other", "C").await?;
//! client.send("bye").await?;
//! client.close().await?;
//! # server.stop().await?;
//! # let log = std::fs::read(&log_path)?;
//! # assert_eq!(msglog::proto::records(&log).count(), 13);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::ToSocketAddrs;
use tokio::time::Instant;

use crate::defaults;
use crate::proto::{step, Frame, Response, State, ACK, NAK};

pub mod blocking;
pub mod cli;
mod error;
pub(crate) mod tls;

pub use error::{ClientError, Operation, PipelineError};
use tls::TLS_ALERT_RECORD;
pub use tls::{ClientTls, Sniff, Stream, TlsOptions, TlsSetupError};

/// The most messages [`Client::send_pipelined`] keeps in flight. Larger
/// windows are clamped to it: it keeps the unread replies (one byte each)
/// far below a socket buffer, so the server can never block on them while
/// this client blocks on writing.
pub const MAX_WINDOW: usize = 1024;

/// Timeouts of a [`Client`], and TLS. A timeout of `None` waits as long as
/// the operating system does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Limit on resolving the address and opening the TCP connection.
    pub connect_timeout: Option<Duration>,
    /// Limit on each wait for the server: writing a frame, or the next reply
    /// while a transaction is unanswered.
    pub reply_timeout: Option<Duration>,
    /// Speak the protocol inside TLS (spec: #tls); `None`: in clear text.
    /// The connect timeout covers the TLS handshake.
    pub tls: Option<ClientTls>,
}

impl Default for Options {
    /// 10 seconds to connect, 30 seconds for each reply, no TLS.
    fn default() -> Self {
        Options {
            connect_timeout: Some(defaults::CONNECT_TIMEOUT),
            reply_timeout: Some(defaults::REPLY_TIMEOUT),
            tls: None,
        }
    }
}

/// A logged-in connection to a msglog server.
///
/// After the server rejected something, or after an I/O error or a timeout,
/// the connection is unusable and every further call returns
/// [`ClientError::ConnectionClosed`]; connect again. `MessageTooLong` is the
/// exception: nothing was sent, so the connection stays usable.
///
/// A server may close a connection that stays idle longer than its idle
/// timeout (msglog's default: 300 seconds). The next send then fails with
/// `ConnectionClosed`, normally before sending anything (the close is
/// noticed first); connect again and resend what was not acknowledged.
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    options: Options,
    /// Encoding buffer, reused so that a send does not allocate.
    out: Vec<u8>,
    open: bool,
}

impl Client {
    /// Connects to `addr` and logs in with `name` and `password`, with the
    /// default [`Options`].
    ///
    /// `addr` is anything tokio can resolve: `"localhost:5555"`,
    /// `("::1", 5555)`, a `SocketAddr`. Names, passwords and messages are
    /// bytes: `&str`, `String`, `&[u8]` and `Vec<u8>` all work.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        name: impl AsRef<[u8]>,
        password: impl AsRef<[u8]>,
    ) -> Result<Client, ClientError> {
        Client::connect_with(addr, name, password, Options::default()).await
    }

    /// Like [`Client::connect`], with the given timeouts.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        name: impl AsRef<[u8]>,
        password: impl AsRef<[u8]>,
        options: Options,
    ) -> Result<Client, ClientError> {
        // Both frames are encoded before connecting, so a name or password
        // that cannot be sent fails without any network traffic.
        let name_frame = Frame::Name(name.as_ref())
            .to_bytes()
            .map_err(|e| ClientError::NameTooLong { len: e.len })?;
        let pass_frame = Frame::Pass(password.as_ref())
            .to_bytes()
            .map_err(|e| ClientError::PasswordTooLong { len: e.len })?;

        let stream = within(
            options.connect_timeout,
            Operation::Connect,
            Stream::connect(addr, options.tls.as_ref()),
        )
        .await??;
        let mut client = Client {
            stream,
            options,
            out: Vec::new(),
            open: true,
        };

        //= spec/protocol.md#client-requirements
        //# A client MUST send NAME first, then PASS, then its MSG frames, and it can send CLOSE at any point.
        //= spec/protocol.md#client-requirements
        //# A client MUST set the tag of each frame to the one the current state expects.
        // One frame at a time, as the reference client does: a server that
        // rejects NAME then never sees the password.
        match client.transact(&name_frame, Operation::Name).await? {
            ACK => {}
            NAK => {
                let frame = Frame::Name(name.as_ref());
                return Err(login_rejection(
                    State::Connected,
                    frame,
                    ClientError::NameRejected,
                ));
            }
            //= spec/protocol.md#tls
            //# A client that does not speak TLS and gets a TLS alert record (first byte 0x15) in answer to its NAME MUST report that the server serves TLS.
            TLS_ALERT_RECORD if !client.stream.is_tls() => return Err(ClientError::TlsServer),
            byte => return Err(ClientError::UnexpectedReply { byte }),
        }
        match client.transact(&pass_frame, Operation::Password).await? {
            ACK => Ok(client),
            NAK => {
                let named = State::Named {
                    name: bytes::Bytes::copy_from_slice(name.as_ref()),
                };
                let frame = Frame::Pass(password.as_ref());
                Err(login_rejection(named, frame, ClientError::PasswordRejected))
            }
            byte => Err(ClientError::UnexpectedReply { byte }),
        }
    }

    /// Sends one message and returns once the server acknowledged it, that
    /// is, once its record is in the log.
    ///
    /// A message over 65,535 bytes fails with `MessageTooLong` before
    /// anything is sent. An empty message is sent, and the server rejects it.
    pub async fn send(&mut self, message: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.send_pipelined(std::iter::once(message), 1)
            .await
            .map(drop)
            .map_err(|e| e.error)
    }

    /// Sends every message of `messages`, keeping up to `window` of them
    /// unacknowledged at a time (clamped to `1..=MAX_WINDOW`), and returns
    /// how many were acknowledged: all of them, on success.
    ///
    /// Each message is encoded and sent as soon as the iterator yields it.
    /// On failure, [`PipelineError::acknowledged`] says how many messages
    /// from the start of the batch are in the log. A message that is too
    /// long stops the batch before it is sent; the ones before it are still
    /// waited for, and the connection stays usable.
    pub async fn send_pipelined<I>(
        &mut self,
        messages: I,
        window: usize,
    ) -> Result<usize, PipelineError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.pipeline(IterSource(messages.into_iter()), window)
            .await
    }

    /// Sends CLOSE and waits for the server's confirmation (0x00).
    pub async fn close(mut self) -> Result<(), ClientError> {
        let mut frame = std::mem::take(&mut self.out);
        frame.clear();
        //= spec/protocol.md#client-requirements
        //# A client MUST send CLOSE as the single byte 0x04.
        // CLOSE has no payload, so encoding cannot fail.
        Frame::Close
            .encode(&mut frame)
            .expect("CLOSE has no payload");
        match self.transact(&frame, Operation::Close).await? {
            ACK => Ok(()),
            byte => Err(ClientError::UnexpectedReply { byte }),
        }
    }

    /// Writes one frame and reads its one-byte reply. Anything but an ack
    /// leaves the connection unusable: after 0xFF the server closes it, and
    /// after an error or timeout the next byte could be a late reply.
    async fn transact(&mut self, frame: &[u8], during: Operation) -> Result<u8, ClientError> {
        if !self.open {
            return Err(ClientError::ConnectionClosed);
        }
        let stream = &mut self.stream;
        let result = within(self.options.reply_timeout, during, async {
            // TLS holds what it encrypted until flushed.
            let written = match stream.write_all(frame).await {
                Ok(()) => stream.flush().await,
                Err(e) => Err(e),
            };
            // A server that refuses the connection sends 0xFF and closes
            // without reading, so the write may fail with that 0xFF already
            // here: it explains more than the write error does.
            match stream.read_u8().await {
                Ok(byte) => Ok(byte),
                Err(read_error) => Err(written.err().unwrap_or(read_error)),
            }
        })
        .await
        .and_then(|read| read.map_err(ClientError::from_io));
        //= spec/protocol.md#client-requirements
        //# A client MUST NOT send anything on a connection after it has received 0xFF.
        self.open = matches!(result, Ok(ACK));
        result
    }

    /// The pipelined send loop, for any source of messages: an iterator, or
    /// (for `msglog send`) lines arriving from another thread.
    ///
    /// It waits on three things at once: a reply, the reply deadline, and
    /// the next message (while the window has room). Replies are read even
    /// with nothing in flight, so a server that goes away is noticed while
    /// a slow source (`tail -f`) has nothing to send.
    async fn pipeline<S: Source>(
        &mut self,
        mut source: S,
        window: usize,
    ) -> Result<usize, PipelineError> {
        let window = window.clamp(1, MAX_WINDOW);
        let reply_timeout = self.options.reply_timeout;
        let mut sent = 0usize;
        let mut acked = 0usize;
        let mut exhausted = false;
        // Set by a message too long to send; reported once the messages
        // before it are answered, so that `acknowledged` is exact.
        let mut too_long = None;
        // Start of the current wait for a reply: the deadline runs from the
        // last progress, not from the start of the batch.
        let mut waiting_since = Instant::now();
        let mut replies = [0u8; 256];

        if !self.open {
            return Err(self.broken(0, ClientError::ConnectionClosed));
        }
        loop {
            let in_flight = sent - acked;
            if exhausted && in_flight == 0 {
                return match too_long {
                    Some(len) => Err(PipelineError {
                        acknowledged: acked,
                        error: ClientError::MessageTooLong { len },
                    }),
                    None => Ok(acked),
                };
            }
            let deadline = reply_timeout
                .filter(|_| in_flight > 0)
                .map(|t| waiting_since + t);
            // Never read more bytes than replies are due: a byte beyond
            // those is the server misbehaving, and must be seen as such.
            let want = in_flight.clamp(1, replies.len());
            let event = tokio::select! {
                biased;
                read = self.stream.read(&mut replies[..want]) => Event::Replies(read),
                () = sleep_until(deadline) => Event::Deadline,
                next = source.next(), if !exhausted && in_flight < window => Event::Next(next),
            };
            match event {
                Event::Replies(Ok(0)) => {
                    return Err(self.broken(acked, ClientError::ConnectionClosed));
                }
                Event::Replies(Ok(n)) => {
                    for &byte in &replies[..n] {
                        let error = match byte {
                            ACK if sent > acked => {
                                acked += 1;
                                waiting_since = Instant::now();
                                continue;
                            }
                            NAK if sent > acked => ClientError::MessageRejected { index: acked },
                            byte => ClientError::UnexpectedReply { byte },
                        };
                        return Err(self.broken(acked, error));
                    }
                }
                Event::Replies(Err(e)) => {
                    return Err(self.broken(acked, ClientError::from_io(e)));
                }
                Event::Deadline => {
                    let error = ClientError::Timeout {
                        during: Operation::Message,
                        after: reply_timeout.unwrap_or_default(),
                    };
                    return Err(self.broken(acked, error));
                }
                Event::Next(None) => exhausted = true,
                Event::Next(Some(message)) => {
                    self.out.clear();
                    //= spec/protocol.md#client-requirements
                    //# A client MUST NOT send a payload longer than 65535 bytes.
                    //= spec/protocol.md#client-requirements
                    //# A client MUST set the length field to the number of payload bytes that follow it, counted in encoded bytes, not characters.
                    if let Err(e) = Frame::Msg(message.as_ref()).encode(&mut self.out) {
                        too_long = Some(e.len);
                        exhausted = true;
                        continue;
                    }
                    if in_flight == 0 {
                        waiting_since = Instant::now();
                    }
                    let stream = &mut self.stream;
                    let out = &self.out;
                    let write = within(reply_timeout, Operation::Message, async {
                        stream.write_all(out).await?;
                        stream.flush().await
                    })
                    .await;
                    match write {
                        Ok(Ok(())) => sent += 1,
                        Ok(Err(e)) => {
                            let (acked, error) = self.explain_write_error(acked, sent, e).await;
                            return Err(self.broken(acked, error));
                        }
                        Err(timeout) => return Err(self.broken(acked, timeout)),
                    }
                }
            }
        }
    }

    /// A write failed. The likely cause is that the server rejected an
    /// earlier message and closed the connection: its 0xFF (and the acks
    /// before it) may already be here, and explain the failure better than
    /// the write error does.
    async fn explain_write_error(
        &mut self,
        mut acked: usize,
        sent: usize,
        error: io::Error,
    ) -> (usize, ClientError) {
        let grace = self
            .options
            .reply_timeout
            .unwrap_or(Options::default().reply_timeout.unwrap_or_default());
        let mut byte = [0u8; 1];
        while sent > acked {
            match tokio::time::timeout(grace, self.stream.read(&mut byte)).await {
                Ok(Ok(1)) if byte[0] == ACK => acked += 1,
                Ok(Ok(1)) if byte[0] == NAK => {
                    return (acked, ClientError::MessageRejected { index: acked })
                }
                Ok(Ok(1)) => return (acked, ClientError::UnexpectedReply { byte: byte[0] }),
                _ => break,
            }
        }
        (acked, ClientError::from_io(error))
    }

    fn broken(&mut self, acknowledged: usize, error: ClientError) -> PipelineError {
        //= spec/protocol.md#client-requirements
        //# A client MUST NOT send anything on a connection after it has received 0xFF.
        //= spec/protocol.md#client-requirements
        //# A client whose MSG got 0xFF, or no reply before its connection ended, MUST send that message again or report to its caller that it was not logged.
        self.open = false;
        PipelineError {
            acknowledged,
            error,
        }
    }
}

/// Where a pipelined send takes its messages from.
trait Source {
    type Item: AsRef<[u8]>;
    /// The next message, `None` at the end. Must be cancel-safe: the send
    /// loop drops this future when a reply arrives first.
    fn next(&mut self) -> impl Future<Output = Option<Self::Item>>;
}

struct IterSource<I>(I);

impl<I> Source for IterSource<I>
where
    I: Iterator,
    I::Item: AsRef<[u8]>,
{
    type Item = I::Item;
    // The iterator is only called when the future is polled, so dropping an
    // unpolled future loses nothing.
    async fn next(&mut self) -> Option<I::Item> {
        self.0.next()
    }
}

enum Event<M> {
    Replies(io::Result<usize>),
    Deadline,
    Next(Option<M>),
}

/// Names the cause of a 0xFF to NAME or PASS. The server decides NAME with
/// the same core: if the core accepts the frame, the 0xFF was not about the
/// frame but about the connection (limit, shutdown, handshake timeout). A
/// PASS the core sends to be verified is the server's authenticator's to
/// judge, so its 0xFF stays a rejected password.
fn login_rejection(state: State, frame: Frame<'_>, rejected: ClientError) -> ClientError {
    match step(state, frame) {
        (_, Response::Ack, _) => ClientError::Refused,
        _ => rejected,
    }
}

/// Runs `fut` under an optional time limit.
async fn within<T>(
    limit: Option<Duration>,
    during: Operation,
    fut: impl Future<Output = T>,
) -> Result<T, ClientError> {
    match limit {
        None => Ok(fut.await),
        Some(after) => tokio::time::timeout(after, fut)
            .await
            .map_err(|_| ClientError::Timeout { during, after }),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
