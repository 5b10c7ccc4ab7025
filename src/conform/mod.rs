//! `msglog conform`: checks a third-party client or server against
//! spec/protocol.md, rule by rule, and shows the offending bytes.
//!
//! - `conform client -- COMMAND [ARGS]...` runs COMMAND against a strict
//!   checking server on 127.0.0.1 ([`checker`]), records every byte of every
//!   connection it makes, and judges each against the spec's client
//!   requirements ([`judge`], sans-IO). Fault scenarios make the checking
//!   server reject a password or a message, delay its replies, or drop a
//!   connection, and the report says what the client did about it.
//! - `conform server HOST:PORT` runs every session vector of spec/vectors
//!   ([`vectors`]), whole and split, plus probes that need timing or many
//!   connections ([`server`]), and with `--log` checks the records the
//!   server's log gained.
//!
//! Both print a [`report::ConformReport`]: each rule pass / FAIL / not exercised,
//! with connection, frame, bytes and spec section for each failure; the exit
//! status is 0 only when no rule failed.

pub mod checker;
pub mod client;
pub mod delivery;
pub mod judge;
pub mod report;
pub mod root_cause;
pub mod rules;
pub mod scenario_outcome;
pub mod server;
pub mod vectors;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use checker::Scenario;
use report::ConformReport;

/// Exit status when a rule failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status when the check could not run (or the client made no
/// connection, so nothing was judged).
pub const EXIT_ERROR: u8 = 2;

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    #[error("no COMMAND given: put the client command after `--`, e.g. `msglog conform client -- python3 my_client.py`")]
    NoCommand,
    #[error(
        "cannot listen on 127.0.0.1:{port}: {source}; pick another --port (0 picks a free one)"
    )]
    Bind { port: u16, source: std::io::Error },
    #[error("cannot start `{command}`: {source}; check that the program exists and is executable")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error(
        "cannot write the log to {path}: {source}; check that its directory exists and is writable"
    )]
    WriteLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot resolve `{target}`: {reason}; give the server as HOST:PORT, e.g. 127.0.0.1:5555"
    )]
    Resolve { target: String, reason: String },
    #[error("cannot reach the server at {target}: {reason}; check that it is running and listening there")]
    Connect { target: String, reason: String },
    #[error(transparent)]
    Tls(crate::client::TlsSetupError),
    #[error("bad vector file {file}: {reason}")]
    Vectors { file: String, reason: String },
    #[error("cannot read the vectors in {dir}: {source}")]
    VectorsDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("internal error: {0}; please report it")]
    Internal(String),
}

/// What `msglog conform` is to check (the binary parses it from the command line).
#[derive(Debug)]
pub enum ConformOptions {
    /// Run a client program against a strict checking server on 127.0.0.1
    /// and judge every connection it makes against the client rules.
    Client(ClientOptions),
    /// Run the spec's vectors and probes against a live server and judge
    /// its replies (and, with a log, its records).
    Server(ServerOptions),
}

/// `msglog conform client`.
#[derive(Debug)]
pub struct ClientOptions {
    /// Port of the checking server on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Faults to play.
    pub scenarios: Vec<Scenario>,
    /// Time COMMAND may run; it is killed after that.
    pub timeout: Duration,
    /// Write what the client sent, as the server's log records, here.
    pub log: Option<PathBuf>,
    /// Print the report as JSON.
    pub json: bool,
    /// The client command and its arguments.
    pub command: Vec<OsString>,
}

/// `msglog conform server`.
#[derive(Debug)]
pub struct ServerOptions {
    /// The server, as HOST:PORT.
    pub target: String,
    /// The server's log file: check the records it gains during the run.
    pub log: Option<PathBuf>,
    /// Print the report as JSON.
    pub json: bool,
    /// Time to wait for a reply or for the server to close.
    pub timeout: Duration,
    /// The server's payload limit, if below 65535.
    pub max_payload: Option<usize>,
    /// The server's handshake timeout: probes HandshakeTimeout and FrameTimeout.
    pub handshake_timeout: Option<Duration>,
    /// Clients of the concurrency probe, all logged in at the same time.
    pub clients: usize,
    /// Read the session vectors from this directory instead of the built-in
    /// copy of spec/vectors.
    pub vectors: Option<PathBuf>,
    /// Speak TLS to the server.
    pub tls: Option<crate::client::TlsOptions>,
}

fn print(report: &ConformReport, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
}

/// Runs `msglog conform` and returns its exit status. The server check
/// holds a thousand sockets open at once: raise the open-file limit first.
pub fn run_conform(options: ConformOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return error(&ConformError::Runtime(e)),
    };
    let (report, json, judged) = match options {
        ConformOptions::Client(a) => {
            let check = client::ClientCheck {
                port: a.port,
                scenarios: a.scenarios,
                timeout: a.timeout,
                log: a.log,
                command: a.command,
            };
            match runtime.block_on(client::check_client(&check)) {
                Ok(outcome) => (outcome.report, a.json, outcome.connections > 0),
                Err(e) => return error(&e),
            }
        }
        ConformOptions::Server(a) => {
            let vectors = match &a.vectors {
                Some(dir) => vectors::load_dir(dir),
                None => vectors::embedded(),
            };
            let vectors = match vectors {
                Ok(v) => v,
                Err(e) => return error(&e),
            };
            let tls = match a
                .tls
                .as_ref()
                .map(crate::client::ClientTls::new)
                .transpose()
            {
                Ok(tls) => tls,
                Err(e) => return error(&ConformError::Tls(e)),
            };
            let check = server::ServerCheck {
                tls,
                target: a.target,
                log: a.log,
                vectors,
                timeout: a.timeout,
                max_payload: a.max_payload,
                handshake_timeout: a.handshake_timeout,
                clients: a.clients,
            };
            match runtime.block_on(server::check_server(&check)) {
                Ok(report) => (report, a.json, true),
                Err(e) => return error(&e),
            }
        }
    };
    print(&report, json);
    if !report.passed() {
        ExitCode::from(EXIT_FAILED)
    } else if !judged {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

fn error(e: &ConformError) -> ExitCode {
    eprintln!("msglog conform: {e}");
    ExitCode::from(EXIT_ERROR)
}
