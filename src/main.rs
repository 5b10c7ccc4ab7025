//! `msglog`: one binary, one subcommand per job.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use msglog::proto::jsonl::encode_json_line;
use msglog::proto::{encode_json_record, JsonContext, LogFormat};
use msglog::server::{Config, Limits, Server};

#[derive(Parser)]
#[command(name = "msglog", version, about = "A message-log server and its tools", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: accept clients and append their messages to the log.
    Serve(ServeArgs),
    /// Read a log back (either format), check every record, print them as JSON lines.
    Read(ReadArgs),
    /// Send messages to a server: each MESSAGE, or else each line of standard input.
    Send(msglog::client::cli::SendArgs),
    /// Check a client or a server against the spec, rule by rule.
    Conform(msglog::conform::ConformArgs),
    /// Measure a running server: throughput, latency, every reply checked.
    Bench(msglog::bench::BenchArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// `[NAME]: MESSAGE` CR LF, escaped (the original's format)
    Text,
    /// one JSON object per line
    Jsonl,
}

impl From<FormatArg> for LogFormat {
    fn from(f: FormatArg) -> LogFormat {
        match f {
            FormatArg::Text => LogFormat::Text,
            FormatArg::Jsonl => LogFormat::Jsonl,
        }
    }
}

#[derive(clap::Args)]
struct ReadArgs {
    /// The log file.
    path: PathBuf,
    /// Format of the log; by default guessed from its first byte.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Only check the log and print the number of records.
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TCP port to listen on; 0 picks a free one.
    #[arg(env = "MSGLOG_PORT", default_value_t = 5555)]
    port: u16,
    /// Address to listen on (repeatable). Default: every IPv6 and IPv4 interface.
    #[arg(long, env = "MSGLOG_BIND", value_delimiter = ',')]
    bind: Vec<IpAddr>,
    /// Log file; created if missing, appended to otherwise.
    #[arg(long, env = "MSGLOG_LOG", default_value = "messages.log")]
    log: PathBuf,
    /// Format of the log records.
    #[arg(long, env = "MSGLOG_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: FormatArg,
    /// Flush each group of records to stable storage (fdatasync) before acknowledging it.
    #[arg(long, env = "MSGLOG_FSYNC")]
    fsync: bool,
    /// Most simultaneous connections; further ones get 0xFF and are closed.
    #[arg(long, env = "MSGLOG_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a client has to complete NAME and PASS, and to finish any frame it started.
    #[arg(long, env = "MSGLOG_HANDSHAKE_TIMEOUT", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Seconds an authenticated connection may stay silent before it is closed.
    #[arg(long, env = "MSGLOG_IDLE_TIMEOUT", default_value_t = 300.0)]
    idle_timeout: f64,
    /// Seconds connections get to finish their frame in progress on SIGINT/SIGTERM.
    #[arg(long, env = "MSGLOG_SHUTDOWN_TIMEOUT", default_value_t = 5.0)]
    shutdown_timeout: f64,
    /// Seconds between stats lines (connections, messages/s, bytes/s); 0 turns them off.
    #[arg(long, env = "MSGLOG_STATS_INTERVAL", default_value_t = 60.0)]
    stats_interval: f64,
    /// Microseconds a connection keeps polling for its client's next frame
    /// after replying, instead of sleeping, while no more connections are
    /// open than there are CPUs; 0 turns it off. Cuts latency, costs CPU.
    #[arg(long, env = "MSGLOG_BUSY_POLL_US", default_value_t = 50)]
    busy_poll_us: u64,
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a non-negative number of seconds, got {value}"))
}

impl ServeArgs {
    fn config(&self) -> Result<Config, String> {
        let bind = if self.bind.is_empty() {
            vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, self.port))]
        } else {
            self.bind
                .iter()
                .map(|ip| SocketAddr::new(*ip, self.port))
                .collect()
        };
        Ok(Config {
            bind,
            log_path: self.log.clone(),
            log_format: self.log_format.into(),
            fsync: self.fsync,
            stats_interval: Some(seconds("stats-interval", self.stats_interval)?)
                .filter(|d| !d.is_zero()),
            limits: Limits {
                max_connections: self.max_connections.max(1),
                handshake_timeout: seconds("handshake-timeout", self.handshake_timeout)?,
                idle_timeout: seconds("idle-timeout", self.idle_timeout)?,
                shutdown_timeout: seconds("shutdown-timeout", self.shutdown_timeout)?,
                busy_poll: Duration::from_micros(self.busy_poll_us),
                ..Limits::default()
            },
        })
    }
}

//= spec/protocol.md#diagnostics
//# The server MUST write each diagnostic line as soon as it happens, also
//# when its output is not a terminal.
// Rust's stdout is line-buffered whether or not it is a terminal.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .init();
}

fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("msglog serve: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("msglog serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let log_path = config.log_path.clone();
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("msglog serve: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("msglog serve: cannot install the SIGINT/SIGTERM handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        spawn_reopen_on_sighup(server.log_reopener());
        let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
        //= spec/protocol.md#diagnostics
        //# The first line the server prints MUST name the addresses it listens on
        //# and the log file.
        println!(
            "msglog listening on {}, log {}",
            addrs.join(" and "),
            log_path.display()
        );
        if let Some(r) = server.recovery() {
            tracing::warn!(offset = r.offset, removed = r.removed, sidecar = %r.sidecar.display(), "{r}");
        }
        match server.run_until(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("msglog serve: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Registers SIGINT and SIGTERM handlers now (before the server announces
/// itself, so an early signal is never lost) and returns a future that ends
/// at the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

fn spawn_reopen_on_sighup(log: msglog::server::LogReopener) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; log reopening is unavailable");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match log.reopen().await {
                Ok(()) => tracing::info!("SIGHUP: log reopened"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: reopening the log failed; still writing to the old file")
                }
            }
        }
    });
}

fn read(args: ReadArgs) -> ExitCode {
    use std::io::Write;
    let log = match std::fs::read(&args.path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("msglog read: cannot read {}: {e}", args.path.display());
            return ExitCode::FAILURE;
        }
    };
    let Some(format) = args
        .format
        .map(LogFormat::from)
        .or_else(|| LogFormat::detect(&log))
    else {
        if log.is_empty() {
            if args.check {
                println!("0 records");
            }
            return ExitCode::SUCCESS;
        }
        eprintln!("msglog read: {} is neither a text log (starts with `[`) nor a JSON-lines log (starts with `{{`); pass --format", args.path.display());
        return ExitCode::FAILURE;
    };
    let entries: Box<dyn Iterator<Item = Result<Vec<u8>, String>>> = match format {
        LogFormat::Text => Box::new(msglog::proto::records(&log).map(|r| {
            let r = r.map_err(|e| e.to_string())?;
            let mut line = Vec::new();
            encode_json_line(&mut line, None, &r.name, &r.message);
            Ok(line)
        })),
        LogFormat::Jsonl => Box::new(msglog::proto::json_records(&log).map(|r| {
            let r = r.map_err(|e| e.to_string())?;
            let context = JsonContext {
                timestamp: r.timestamp,
                peer: r.peer,
            };
            let mut line = Vec::new();
            encode_json_record(&mut line, &context, &r.name, &r.message);
            Ok(line)
        })),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    for (i, entry) in entries.enumerate() {
        match entry {
            Ok(line) => {
                count += 1;
                if !args.check && out.write_all(&line).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                let _ = out.flush();
                eprintln!(
                    "msglog read: record {} of {}: {e}",
                    i + 1,
                    args.path.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    if args.check {
        let _ = writeln!(out, "{count} records");
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Read(args) => read(args),
        Command::Send(args) => msglog::client::cli::run_send(args),
        Command::Conform(args) => msglog::conform::run_conform(args),
        Command::Bench(args) => msglog::bench::run_bench(args),
    }
}
