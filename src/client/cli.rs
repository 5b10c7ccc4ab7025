//! `msglog send`: send messages from the command line or from a pipeline.
//!
//! Each MESSAGE argument is one message. Without arguments, each line of
//! standard input is one message (its LF or CR LF removed, empty lines
//! skipped because the protocol has no empty messages), sent as soon as it
//! is read, so `tail -f app.log | msglog send --name app` works. Lines are
//! pipelined for throughput, and each one is still acknowledged by the
//! server on its own.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, Read};
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Client, ClientError, ClientTls, Options, PipelineError, Source, TlsOptions};
use crate::proto::frame::MAX_PAYLOAD_LEN;

/// Exit code: a local failure: standard input could not be read, or the
/// runtime could not start.
pub const EXIT_LOCAL_FAILURE: u8 = 1;
/// Exit code: the server could not be reached, refused the connection, or
/// the connection failed (closed, reset, timed out) before every message was
/// acknowledged.
pub const EXIT_CONNECTION_FAILED: u8 = 3;
/// Exit code: the server rejected the name.
pub const EXIT_NAME_REJECTED: u8 = 4;
/// Exit code: the server rejected the password.
pub const EXIT_PASSWORD_REJECTED: u8 = 5;
/// Exit code: a message was rejected by the server, or was too long to send.
pub const EXIT_MESSAGE_REJECTED: u8 = 6;
/// Exit code: the options cannot be used (as for a command-line error): a
/// TLS file could not be read.
pub const EXIT_USAGE: u8 = 2;

/// Messages in flight at a time: enough to keep a loopback connection busy.
const WINDOW: usize = 256;

/// The exit statuses of `msglog send`, for its `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  every message was acknowledged (written to the server's log)
  1  reading standard input failed
  2  usage error, or a TLS file (--ca, --cert, --key) that cannot be used
  3  connection failed: server unreachable or refusing, connection lost,
     timeout, TLS failed (or used on one side only)
  4  the server rejected the name
  5  the server rejected the password
  6  a message was rejected by the server, or longer than 65535 bytes";

/// What `msglog send` is to do (the binary parses it from the command line).
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Host name or IP address of the server.
    pub host: String,
    /// TCP port of the server.
    pub port: u16,
    /// Name the messages are logged under.
    pub name: OsString,
    pub password: OsString,
    /// Limit on connecting, and on each reply.
    pub timeout: Duration,
    /// Messages to send, one each; empty: each line of standard input.
    pub messages: Vec<OsString>,
    /// Speak TLS to the server (spec: #tls).
    pub tls: Option<TlsOptions>,
}

/// Runs `msglog send` on a runtime of its own; prints errors to stderr and
/// returns the exit status (listed in the command's `--help`).
pub fn run_send(args: SendOptions) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(send(args)),
        Err(e) => Err(failure(
            EXIT_LOCAL_FAILURE,
            format!("cannot start the async runtime: {e}"),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("msglog send: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Why `msglog send` failed: an exit code and a message for the user.
struct Failure {
    code: u8,
    message: String,
}

fn failure(code: u8, message: String) -> Failure {
    Failure { code, message }
}

/// Where and as whom to log in; kept to log in again.
struct Login {
    host: String,
    port: u16,
    name: OsString,
    password: OsString,
    options: Options,
    server: String,
}

impl Login {
    async fn connect(&self) -> Result<Client, Failure> {
        Client::connect_with(
            (self.host.as_str(), self.port),
            self.name.as_encoded_bytes(),
            self.password.as_encoded_bytes(),
            self.options.clone(),
        )
        .await
        .map_err(|e| login_failure(e, self))
    }
}

async fn send(args: SendOptions) -> Result<(), Failure> {
    let tls = match &args.tls {
        Some(options) => {
            Some(ClientTls::new(options).map_err(|e| failure(EXIT_USAGE, e.to_string()))?)
        }
        None => None,
    };
    let login = Login {
        server: format!("{}:{}", args.host, args.port),
        host: args.host,
        port: args.port,
        name: args.name,
        password: args.password,
        options: Options {
            connect_timeout: Some(args.timeout),
            reply_timeout: Some(args.timeout),
            tls,
        },
    };
    let mut client = login.connect().await?;
    if args.messages.is_empty() {
        client = match send_stdin(client, &login).await? {
            Some(client) => client,
            None => return Ok(()),
        };
    } else {
        let messages = args.messages.iter().map(|m| m.as_encoded_bytes());
        if let Err(e) = client.send_pipelined(messages, WINDOW).await {
            let which = MessageRef::Argument(e.acknowledged + 1);
            return Err(send_failure(e, which, &login.server));
        }
    }
    // Every message is in the log by now; a failed CLOSE loses nothing.
    if let Err(e) = client.close().await {
        eprintln!("msglog send: warning: every message was logged, but closing the connection failed: {e}");
    }
    Ok(())
}

/// Which message a failure refers to, in the user's terms.
#[derive(Debug, Clone, Copy)]
enum MessageRef {
    /// 1-based position among the MESSAGE arguments.
    Argument(usize),
    /// 1-based line number of standard input.
    Line(u64),
    /// A line whose number was not kept (cannot happen with the window
    /// bound, but is not worth a panic).
    Unknown(usize),
}

impl fmt::Display for MessageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageRef::Argument(n) => write!(f, "message {n} (argument {n})"),
            MessageRef::Line(n) => write!(f, "line {n} of standard input"),
            MessageRef::Unknown(n) => write!(f, "non-empty line {n} of standard input"),
        }
    }
}

fn login_failure(error: ClientError, login: &Login) -> Failure {
    let server = &login.server;
    let name = String::from_utf8_lossy(login.name.as_encoded_bytes());
    match error {
        ClientError::NameRejected => failure(
            EXIT_NAME_REJECTED,
            format!("the server at {server} rejected the name {name:?}; use a non-empty name that does not start with a NUL byte"),
        ),
        ClientError::NameTooLong { len } => failure(
            EXIT_NAME_REJECTED,
            format!("the name is {len} bytes, over the protocol's limit of 65535; nothing was sent; use a shorter --name"),
        ),
        ClientError::PasswordRejected => failure(
            EXIT_PASSWORD_REJECTED,
            format!("the server at {server} rejected the password for {name:?}; check --password or MSGLOG_PASSWORD (with a client certificate, --cert, the server may also require --name to be one of the certificate's names)"),
        ),
        ClientError::PasswordTooLong { len } => failure(
            EXIT_PASSWORD_REJECTED,
            format!("the password is {len} bytes, over the protocol's limit of 65535; nothing was sent; check --password or MSGLOG_PASSWORD"),
        ),
        ClientError::Refused => failure(
            EXIT_CONNECTION_FAILED,
            format!("the server at {server} refused the connection although the name and password are valid: it is at its connection limit, shutting down, or the login was too slow; retry later"),
        ),
        ClientError::Io(e) => failure(
            EXIT_CONNECTION_FAILED,
            format!("could not connect to {server}: {e}; check that `msglog serve` is running there, or point --host/--port (MSGLOG_HOST/MSGLOG_PORT) at it"),
        ),
        ClientError::Timeout { during, after } => failure(
            EXIT_CONNECTION_FAILED,
            format!("no answer from {server} within {} s while {during}; check --host/--port, or raise --timeout", after.as_secs_f64()),
        ),
        ClientError::ConnectionClosed => failure(
            EXIT_CONNECTION_FAILED,
            format!("{server} closed the connection during login; check that it is a msglog server, then retry"),
        ),
        ClientError::UnexpectedReply { byte } => failure(
            EXIT_CONNECTION_FAILED,
            format!("{server} answered 0x{byte:02x}, which a msglog server never sends; check --host/--port"),
        ),
        ClientError::Tls { reason, advice } => failure(
            EXIT_CONNECTION_FAILED,
            format!("TLS with {server} failed: {reason}; {advice}"),
        ),
        ClientError::NotTlsServer => failure(
            EXIT_CONNECTION_FAILED,
            format!("{server} answered the TLS handshake with 0xFF: it serves msglog without TLS (drop --tls, or start the server with --tls-cert/--tls-key), or it is at its connection limit (retry later)"),
        ),
        ClientError::TlsServer => failure(
            EXIT_CONNECTION_FAILED,
            format!("{server} answered with a TLS alert: it serves msglog inside TLS; add --tls (and --ca FILE if its certificate is not signed by a CA this system trusts)"),
        ),
        // Not produced by a login; reported as they are.
        error @ (ClientError::MessageRejected { .. }
        | ClientError::MessageTooLong { .. }
        | ClientError::TlsSetup(_)) => {
            failure(EXIT_CONNECTION_FAILED, format!("login to {server} failed: {error}"))
        }
    }
}

fn send_failure(error: PipelineError, which: MessageRef, server: &str) -> Failure {
    let logged = error.acknowledged;
    match error.error {
        ClientError::MessageRejected { .. } => failure(
            EXIT_MESSAGE_REJECTED,
            format!("the server at {server} rejected {which} and closed the connection; the {logged} message(s) before it were logged, none after it; messages must be non-empty and within the server's size limit"),
        ),
        ClientError::MessageTooLong { len } => failure(
            EXIT_MESSAGE_REJECTED,
            format!("{which} is {len} bytes or more, over the protocol's limit of 65535, and was not sent; the {logged} message(s) before it were logged; split it into shorter messages"),
        ),
        error => failure(
            EXIT_CONNECTION_FAILED,
            format!("the connection to {server} failed after {logged} message(s) were acknowledged: {error}; messages after those may or may not have been logged: check the log and resend them"),
        ),
    }
}

/// Sends standard input line by line; returns the client to close, or
/// `None` when the connection already ended with every line acknowledged.
///
/// A thread reads the lines (stdin has no portable async reader) and hands
/// them over a bounded channel, so a slow producer never stalls replies or
/// timeouts.
async fn send_stdin(mut client: Client, login: &Login) -> Result<Option<Client>, Failure> {
    let (tx, rx) = mpsc::channel(WINDOW);
    // Not joined: after a failure the process exits while the thread may
    // still be blocked reading stdin.
    std::thread::spawn(move || read_lines(io::stdin().lock(), &tx));
    let mut lines = StdinLines {
        rx,
        pending: None,
        recent: VecDeque::with_capacity(WINDOW + 1),
        yielded: 0,
        read_error: None,
    };
    loop {
        let batch_start = lines.yielded;
        let result = client.pipeline(&mut lines, WINDOW).await;
        if let Some(e) = lines.read_error.take() {
            return Err(input_failure(e, &result));
        }
        match result {
            Ok(_) => return Ok(Some(client)),
            // The server closed the connection with every line acknowledged:
            // its idle timeout, or a restart. Nothing is lost; log in again
            // once the next line arrives (not before, so a server that keeps
            // closing cannot make this loop spin).
            Err(PipelineError {
                error: ClientError::ConnectionClosed,
                acknowledged,
            }) if batch_start + acknowledged == lines.yielded => {
                if !lines.wait_for_line().await {
                    return match lines.read_error.take() {
                        Some(e) => Err(input_failure(e, &Ok(acknowledged))),
                        None => Ok(None),
                    };
                }
                client = login.connect().await?;
            }
            Err(e) => {
                let which = lines.line_of(batch_start + e.acknowledged);
                return Err(send_failure(e, which, &login.server));
            }
        }
    }
}

fn input_failure(error: io::Error, result: &Result<usize, PipelineError>) -> Failure {
    let unacknowledged = match result {
        Ok(_) => "",
        Err(_) => " (the connection failed too; the last lines may not have been logged)",
    };
    failure(
        EXIT_LOCAL_FAILURE,
        format!(
            "reading standard input failed: {error}{unacknowledged}; the lines before it were sent"
        ),
    )
}

/// One message from standard input and where it came from.
type Line = (u64, Vec<u8>);

/// Reads lines until end of input, a read error, a line too long to send,
/// or the receiver going away.
fn read_lines(mut input: impl BufRead, tx: &mpsc::Sender<io::Result<Line>>) {
    // A longer line cannot be sent anyway: reading stops there instead of
    // buffering it whole. The 2 leaves room for CR LF.
    let limit = MAX_PAYLOAD_LEN as u64 + 2;
    let mut number = 0u64;
    loop {
        let mut line = Vec::new();
        match (&mut input).take(limit).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
        number += 1;
        let cut_short = line.len() as u64 == limit && line.last() != Some(&b'\n');
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        if line.is_empty() {
            continue;
        }
        if tx.blocking_send(Ok((number, line))).is_err() || cut_short {
            return;
        }
    }
}

/// The receiving end, as a message source for the send loop.
struct StdinLines {
    rx: mpsc::Receiver<io::Result<Line>>,
    /// A line received while no connection was open, sent first.
    pending: Option<Line>,
    /// Line numbers of the last messages handed out. The send loop keeps at
    /// most WINDOW in flight, so a failing message is among the last
    /// WINDOW + 1.
    recent: VecDeque<u64>,
    /// Messages handed out so far, over all connections.
    yielded: usize,
    read_error: Option<io::Error>,
}

impl StdinLines {
    /// The line that message `index` (0-based, over all connections) came from.
    fn line_of(&self, index: usize) -> MessageRef {
        let first_kept = self.yielded - self.recent.len();
        index
            .checked_sub(first_kept)
            .and_then(|i| self.recent.get(i))
            .map_or(MessageRef::Unknown(index + 1), |&n| MessageRef::Line(n))
    }

    /// Waits for the next line without handing it out; false at the end of
    /// input.
    async fn wait_for_line(&mut self) -> bool {
        if self.pending.is_none() {
            self.pending = self.receive().await;
        }
        self.pending.is_some()
    }

    async fn receive(&mut self) -> Option<Line> {
        match self.rx.recv().await? {
            Ok(line) => Some(line),
            Err(e) => {
                self.read_error = Some(e);
                None
            }
        }
    }
}

impl Source for &mut StdinLines {
    type Item = Vec<u8>;

    // `recv` is cancel-safe, and nothing else happens before it completes.
    async fn next(&mut self) -> Option<Vec<u8>> {
        let (number, line) = match self.pending.take() {
            Some(line) => line,
            None => self.receive().await?,
        };
        if self.recent.len() > WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(number);
        self.yielded += 1;
        Some(line)
    }
}
