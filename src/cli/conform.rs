//! The arguments of `msglog conform`; the command is `msglog::conform`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use msglog::conform::checker::{Scenario, SCENARIO_NAMES};
use msglog::conform::{ClientOptions, ConformOptions, ServerOptions};
use msglog::defaults;
use msglog::proto::frame::MAX_PAYLOAD_LEN;

use super::values::{seconds, secs_text, whole, TIMEOUT};

/// `msglog conform`: check a client or a server against spec/protocol.md.
#[derive(Debug, clap::Args)]
pub struct ConformArgs {
    #[command(subcommand)]
    command: ConformCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConformCommand {
    /// Run a client program against a strict checking server on 127.0.0.1
    /// and judge every connection it makes against the client rules.
    Client(ClientArgs),
    /// Run the spec's vectors and probes against a live server and judge
    /// its replies (and, with --log, its records).
    Server(ServerArgs),
}

/// The exit statuses and environment of `msglog conform client`, for its `--help`.
const CLIENT_HELP: &str = "\
COMMAND gets MSGLOG_HOST=127.0.0.1 and MSGLOG_PORT in its environment, and
`{port}` in its arguments is replaced by the port. Its output goes to stderr.

Scenarios (repeatable):
  reject-password      answer every PASS with 0xFF
  reject-message=N     answer the Nth MSG of the run (from 1) with 0xFF
  delay-acks=MS        send every reply MS milliseconds late
  close-mid-session    close the first connection that sends a MSG right
                       after it, without a reply and without logging it

Exit status: 0 no rule failed, 1 a rule failed, 2 the check could not run
or COMMAND made no connection.";

/// The advice and exit statuses of `msglog conform server`, for its `--help`.
const SERVER_HELP: &str = "\
Run it against a server nobody else uses during the check: it makes about
1,300 connections and, with --log, expects the log to gain exactly the
records it sent.

Exit status: 0 no rule failed, 1 a rule failed, 2 the check could not run.";

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse()
}

#[derive(Debug, clap::Args)]
#[command(after_help = CLIENT_HELP)]
struct ClientArgs {
    /// Port of the checking server on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// A fault to play (repeatable).
    #[arg(long = "scenario", value_name = "NAME", value_parser = parse_scenario, help = format!("A fault to play (repeatable): {SCENARIO_NAMES}"))]
    scenarios: Vec<Scenario>,
    /// Seconds COMMAND may run; it is killed after that (0.1 to 3600).
    #[arg(long, value_name = "SECS", default_value = secs_text(defaults::CONFORM_CLIENT_TIMEOUT), value_parser = seconds(TIMEOUT))]
    timeout: Duration,
    /// Write what the client sent, as the server's log records, to PATH.
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The client command and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = SERVER_HELP)]
struct ServerArgs {
    /// The server, as HOST:PORT.
    #[arg(value_name = "HOST:PORT")]
    target: String,
    /// The server's log file: check the records it gains during the run.
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for a reply or for the server to close (0.1 to 3600).
    #[arg(long, value_name = "SECS", default_value = secs_text(defaults::CONFORM_SERVER_TIMEOUT), value_parser = seconds(TIMEOUT))]
    timeout: Duration,
    /// The server's payload limit, if below 65535 (1 to 65535): runs the
    /// vectors and the probe for PayloadOverLimit.
    #[arg(long, value_name = "BYTES", value_parser = whole::<usize>(1, MAX_PAYLOAD_LEN as u64))]
    max_payload: Option<usize>,
    /// The server's handshake timeout (0.1 to 3600): probes HandshakeTimeout and FrameTimeout.
    #[arg(long, value_name = "SECS", value_parser = seconds(TIMEOUT))]
    handshake_timeout: Option<Duration>,
    /// Clients of the concurrency probe, all logged in at the same time (0 to 5000).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = whole::<usize>(0, 5000))]
    clients: usize,
    /// Read the session vectors from DIR instead of the built-in copy of spec/vectors.
    #[arg(long, value_name = "DIR")]
    vectors: Option<PathBuf>,
    #[command(flatten)]
    tls: super::tls::ClientTlsArgs,
}

impl ConformArgs {
    /// Whether this is the server check, which needs many open files.
    pub fn checks_a_server(&self) -> bool {
        matches!(self.command, ConformCommand::Server(_))
    }
}

impl From<ConformArgs> for ConformOptions {
    fn from(args: ConformArgs) -> ConformOptions {
        match args.command {
            ConformCommand::Client(a) => ConformOptions::Client(ClientOptions {
                port: a.port,
                scenarios: a.scenarios,
                timeout: a.timeout,
                log: a.log,
                json: a.json,
                command: a.command,
            }),
            ConformCommand::Server(a) => ConformOptions::Server(ServerOptions {
                // The server's certificate must carry the host of HOST:PORT
                // unless --tls-server-name says otherwise.
                tls: a.tls.options(target_host(&a.target)),
                target: a.target,
                log: a.log,
                json: a.json,
                timeout: a.timeout,
                max_payload: a.max_payload,
                handshake_timeout: a.handshake_timeout,
                clients: a.clients,
                vectors: a.vectors,
            }),
        }
    }
}

/// The host of `HOST:PORT` (`[::1]:5555` gives `::1`).
fn target_host(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}
