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

use checker::{Scenario, SCENARIO_NAMES};
use report::ConformReport as Report;

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

/// `msglog conform`: check a client or a server against spec/protocol.md.
#[derive(Debug, clap::Args)]
pub struct ConformArgs {
    #[command(subcommand)]
    pub command: ConformCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConformCommand {
    /// Run a client program against a strict checking server on 127.0.0.1
    /// and judge every connection it makes against the client rules.
    Client(ClientArgs),
    /// Run the spec's vectors and probes against a live server and judge
    /// its replies (and, with --log, its records).
    Server(ServerArgs),
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}`: give a positive number of seconds"))
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse()
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
COMMAND gets MSGLOG_HOST=127.0.0.1 and MSGLOG_PORT in its environment, and
`{port}` in its arguments is replaced by the port. Its output goes to stderr.

Scenarios (repeatable):
  reject-password      answer every PASS with 0xFF
  reject-message=N     answer the Nth MSG of the run (from 1) with 0xFF
  delay-acks=MS        send every reply MS milliseconds late
  close-mid-session    close the first connection that sends a MSG right
                       after it, without a reply and without logging it

Exit status: 0 no rule failed, 1 a rule failed, 2 the check could not run
or COMMAND made no connection.")]
pub struct ClientArgs {
    /// Port of the checking server on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// A fault to play (repeatable).
    #[arg(long = "scenario", value_name = "NAME", value_parser = parse_scenario, help = format!("A fault to play (repeatable): {SCENARIO_NAMES}"))]
    pub scenarios: Vec<Scenario>,
    /// Seconds COMMAND may run; it is killed after that.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Write what the client sent, as the server's log records, to PATH.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The client command and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Run it against a server nobody else uses during the check: it makes about
1,300 connections and, with --log, expects the log to gain exactly the
records it sent.

Exit status: 0 no rule failed, 1 a rule failed, 2 the check could not run.")]
pub struct ServerArgs {
    /// The server, as HOST:PORT.
    #[arg(value_name = "HOST:PORT")]
    pub target: String,
    /// The server's log file: check the records it gains during the run.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for a reply or for the server to close.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// The server's payload limit, if below 65535: runs the vectors and the
    /// probe for PayloadOverLimit.
    #[arg(long, value_name = "BYTES")]
    pub max_payload: Option<usize>,
    /// The server's handshake timeout: probes HandshakeTimeout and FrameTimeout.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub handshake_timeout: Option<Duration>,
    /// Clients of the concurrency probe, all logged in at the same time.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u16).range(0..=5000))]
    pub clients: u16,
    /// Read the session vectors from DIR instead of the built-in copy of spec/vectors.
    #[arg(long, value_name = "DIR")]
    pub vectors: Option<PathBuf>,
}

fn print(report: &Report, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
}

/// Runs `msglog conform` and returns its exit status.
pub fn run_conform(args: ConformArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return error(&ConformError::Runtime(e)),
    };
    let (report, json, judged) = match args.command {
        ConformCommand::Client(a) => {
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
        ConformCommand::Server(a) => {
            // The concurrency probe holds a thousand sockets open at once.
            let _ = rlimit::increase_nofile_limit(u64::MAX);
            let vectors = match &a.vectors {
                Some(dir) => vectors::load_dir(dir),
                None => vectors::embedded(),
            };
            let vectors = match vectors {
                Ok(v) => v,
                Err(e) => return error(&e),
            };
            let check = server::ServerCheck {
                target: a.target,
                log: a.log,
                vectors,
                timeout: a.timeout,
                max_payload: a.max_payload,
                handshake_timeout: a.handshake_timeout,
                clients: usize::from(a.clients),
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
