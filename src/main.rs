//! `msglog`: one binary, one subcommand per job.

#![forbid(unsafe_code)]

mod cli;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use cli::values::{self, seconds, seconds_or_off, secs_text, whole};
use cli::FormatArg;
use msglog::defaults;
use msglog::server::metrics::MetricsListener;
use msglog::server::users::UsersVerifier;
use msglog::server::{Config, Limits, PasswordVerifier, Rate, Server};

#[derive(Parser)]
#[command(name = "msglog", version, about = "A message-log server and its tools", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: accept clients and append their messages to the log.
    Serve(Box<ServeArgs>),
    /// Read a log back (either format, a file or `-`), check every record, print them as JSON lines.
    Read(cli::read::ReadArgs),
    /// Send messages to a server: each MESSAGE, or else each line of standard input.
    Send(cli::send::SendArgs),
    /// Check a client or a server against the spec, rule by rule.
    Conform(cli::conform::ConformArgs),
    /// Measure a running server: throughput, latency, every reply checked.
    Bench(cli::bench::BenchArgs),
    /// Print a shell completion script (bash, zsh or fish) to standard output.
    Completions(cli::generate::CompletionsArgs),
    /// Print the man page (roff) to standard output.
    Man,
    /// Set (add or replace) or remove a user of a users file (`serve --users`).
    Passwd(cli::passwd::PasswdArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TCP port to listen on; 0 picks a free one. The same as --port.
    #[arg(value_name = "PORT")]
    port_arg: Option<u16>,
    /// TCP port to listen on; 0 picks a free one.
    #[arg(long, env = "MSGLOG_PORT", default_value_t = defaults::PORT)]
    port: u16,
    /// Whether --port was given on the command line (not by the
    /// environment or the default), to tell a conflict from an override.
    #[arg(skip)]
    port_on_command_line: bool,
    /// Address to listen on (repeatable). Default: every IPv6 and IPv4 interface.
    #[arg(long, env = "MSGLOG_BIND", value_delimiter = ',')]
    bind: Vec<IpAddr>,
    /// Log file; created if missing, appended to otherwise.
    #[arg(long, env = "MSGLOG_LOG", default_value = defaults::LOG_PATH)]
    log: PathBuf,
    /// Format of the log records.
    #[arg(long, env = "MSGLOG_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: FormatArg,
    /// Flush each group of records to stable storage (fdatasync) before acknowledging it.
    #[arg(long, env = "MSGLOG_FSYNC")]
    fsync: bool,
    /// Most simultaneous connections (1 to 1000000); further ones get 0xFF and are closed.
    #[arg(long, env = "MSGLOG_MAX_CONNECTIONS", value_name = "N", default_value_t = defaults::MAX_CONNECTIONS, value_parser = whole::<usize>(1, 1_000_000))]
    max_connections: usize,
    /// Seconds a client has to complete NAME and PASS, and to finish any frame it started (0.1 to 3600).
    #[arg(long, env = "MSGLOG_HANDSHAKE_TIMEOUT", value_name = "SECS", default_value = secs_text(defaults::HANDSHAKE_TIMEOUT), value_parser = seconds(values::TIMEOUT))]
    handshake_timeout: Duration,
    /// Seconds an authenticated connection may stay silent before it is closed (1 to 604800).
    #[arg(long, env = "MSGLOG_IDLE_TIMEOUT", value_name = "SECS", default_value = secs_text(defaults::IDLE_TIMEOUT), value_parser = seconds(values::IDLE_TIMEOUT))]
    idle_timeout: Duration,
    /// Seconds connections get to finish their frame in progress on SIGINT/SIGTERM (0 to 3600).
    #[arg(long, env = "MSGLOG_SHUTDOWN_TIMEOUT", value_name = "SECS", default_value = secs_text(defaults::SHUTDOWN_TIMEOUT), value_parser = seconds(values::SHUTDOWN_TIMEOUT))]
    shutdown_timeout: Duration,
    /// Seconds between stats lines (connections, messages/s, bytes/s): 0.1 to 86400, or 0 for none.
    #[arg(long, env = "MSGLOG_STATS_INTERVAL", value_name = "SECS", default_value = secs_text(defaults::STATS_INTERVAL), value_parser = seconds_or_off(values::PERIOD))]
    // Spelled out so that clap takes the parser's `None` (0, off) as a value
    // instead of making the option optional.
    stats_interval: ::std::option::Option<Duration>,
    /// Microseconds (0 to 1000) a connection keeps polling for its client's
    /// next frame after replying, instead of sleeping, while no more
    /// connections are open than there are CPUs; 0 turns it off. Cuts
    /// latency, costs CPU.
    #[arg(long, env = "MSGLOG_BUSY_POLL_US", value_name = "MICROS", default_value_t = defaults::BUSY_POLL.as_micros() as u64, value_parser = whole::<u64>(0, 1000))]
    busy_poll_us: u64,
    /// MiB (1 to 65536) all connections together may hold in partial frames
    /// beyond 4 KiB each; while it is spent, the connections holding the most
    /// stop reading until memory frees or their frame timeout closes them.
    #[arg(long, env = "MSGLOG_FRAME_BUFFER_BUDGET", value_name = "MIB", default_value_t = defaults::FRAME_BUDGET_MIB, value_parser = whole::<u64>(1, 65_536))]
    frame_buffer_budget: u64,
    /// Messages per second each connection may send, and how many at once
    /// (MSGS_PER_SEC[:BURST], burst default one second's worth). A client
    /// over its rate is slowed down (the server stops reading from it until
    /// tokens return), never rejected. Default: no limit.
    #[arg(long, env = "MSGLOG_RATE_LIMIT", value_name = "MSGS_PER_SEC[:BURST]", value_parser = Rate::parse)]
    rate_limit: Option<Rate>,
    /// The same, shared by all connections of one name.
    #[arg(long, env = "MSGLOG_RATE_LIMIT_PER_NAME", value_name = "MSGS_PER_SEC[:BURST]", value_parser = Rate::parse)]
    rate_limit_per_name: Option<Rate>,
    /// Serve Prometheus metrics at /metrics and health checks at /healthz
    /// and /readyz over HTTP on this address (e.g. 127.0.0.1:9464). Off by default.
    #[arg(long, env = "MSGLOG_METRICS", value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    #[command(flatten)]
    nats: cli::nats::NatsServeArgs,
    #[command(flatten)]
    users: cli::users::UsersArgs,
    #[command(flatten)]
    tls: cli::tls::ServeTlsArgs,
}

/// Why `msglog serve`'s options cannot be used together.
#[derive(Debug, thiserror::Error)]
enum ServeArgsError {
    #[error("PORT {positional} and --port {option} disagree; give the port once (either form)")]
    PortConflict { positional: u16, option: u16 },
}

impl ServeArgs {
    /// PORT, else --port (command line, MSGLOG_PORT, or the default). Both on
    /// the command line must agree.
    fn port(&self) -> Result<u16, ServeArgsError> {
        match self.port_arg {
            Some(positional) if self.port_on_command_line && positional != self.port => {
                Err(ServeArgsError::PortConflict {
                    positional,
                    option: self.port,
                })
            }
            Some(positional) => Ok(positional),
            None => Ok(self.port),
        }
    }

    fn config(&self) -> Result<Config, ServeArgsError> {
        let port = self.port()?;
        let bind = if self.bind.is_empty() {
            vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))]
        } else {
            self.bind
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect()
        };
        Ok(Config {
            bind,
            log_path: self.log.clone(),
            log_format: self.log_format.into(),
            fsync: self.fsync,
            stats_interval: self.stats_interval,
            verifier: None,
            nats: self.nats.options(),
            tls: self.tls.files(),
            limits: Limits {
                max_connections: self.max_connections,
                handshake_timeout: self.handshake_timeout,
                idle_timeout: self.idle_timeout,
                shutdown_timeout: self.shutdown_timeout,
                busy_poll: Duration::from_micros(self.busy_poll_us),
                // Larger than the address space is no limit at all.
                frame_budget: usize::try_from(self.frame_buffer_budget << 20).unwrap_or(usize::MAX),
                rate_per_connection: self.rate_limit,
                rate_per_name: self.rate_limit_per_name,
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
    // The NATS client's own info lines (every connect) would come before
    // the server's first line; msglog reports what matters of them itself.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
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
    let mut config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("msglog serve: {e}");
            return ExitCode::from(2);
        }
    };
    let users = match args.users.options().map(UsersVerifier::load).transpose() {
        Ok(users) => users,
        Err(e) => {
            eprintln!("msglog serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.verifier = users
        .clone()
        .map(|u| Arc::new(u) as Arc<dyn PasswordVerifier>);
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
    let tls_summary = match &config.tls {
        None => "",
        Some(tls) if tls.name_from_cert => ", TLS, names from client certificates",
        Some(tls) if tls.require_client_cert => ", TLS, client certificates required",
        Some(tls) if tls.client_ca.is_some() => ", TLS, client certificates checked",
        Some(_) => ", TLS",
    };
    // A NOTIFY_SOCKET that cannot be used is reported after the first line
    // and otherwise ignored: serving matters more.
    let (notifier, notify_error) = match cli::notify::Notifier::from_env() {
        Ok(notifier) => (notifier.map(Arc::new), None),
        Err(e) => (None, Some(e)),
    };
    runtime.block_on(async move {
        let sink_text = match &config.nats {
            Some(nats) => cli::nats::describe(nats),
            None => format!("log {}", config.log_path.display()),
        };
        // Before the server: its bind may cut a torn record off the log, and
        // nothing may fail after that.
        let metrics = match args.metrics {
            Some(addr) => match MetricsListener::bind(addr).await {
                Ok(listener) => Some(listener),
                Err(e) => {
                    eprintln!("msglog serve: {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
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
        // With NATS there is no file to reopen; SIGHUP is still handled, so
        // that a logrotate meant for another setup does not end the server,
        // and it reloads the users file and the TLS files.
        spawn_reload_on_sighup(
            server.log_reopener(),
            server.tls_reloader(),
            notifier.clone(),
            users.clone(),
        );
        let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
        //= spec/protocol.md#diagnostics
        //# The first line the server prints MUST name the addresses it listens on
        //# and the log file.
        println!(
            "msglog listening on {}, {sink_text}{tls_summary}",
            addrs.join(" and ")
        );
        if let Some(nats) = server.nats_sink() {
            tracing::info!(server_id = nats.server_id(), created_stream = nats.created_stream(), "storing messages in NATS JetStream");
        }
        if let Some(e) = notify_error {
            tracing::error!("{e}");
        }
        let view = server.view();
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(metrics) = metrics {
            println!(
                "msglog metrics on http://{0}/metrics, health on http://{0}/healthz and /readyz",
                metrics.local_addr()
            );
            tokio::spawn(metrics.serve(view.clone(), async {
                let _ = metrics_stopped.await;
            }));
        }
        msglog::server::users::announce(users.as_ref());
        if let Some(r) = server.recovery() {
            tracing::warn!(offset = r.offset, removed = r.removed, sidecar = %r.sidecar.display(), "{r}");
        }
        if let Some(notifier) = &notifier {
            notifier.ready(&format!("serving on {}, {sink_text}", addrs.join(" and ")));
            cli::notify::spawn_status_updates(notifier.clone(), view.clone());
        }
        let shutdown = async {
            shutdown.await;
            if let Some(notifier) = &notifier {
                notifier.stopping("stopping: finishing frames in progress, then syncing the log");
            }
        };
        let result = server.run_until(shutdown).await;
        drop(stop_metrics);
        match result {
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

fn spawn_reload_on_sighup(
    log: Option<msglog::server::LogReopener>,
    tls: Option<msglog::server::TlsReloader>,
    notifier: Option<Arc<cli::notify::Notifier>>,
    users: Option<UsersVerifier>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; log reopening is unavailable");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if let Some(notifier) = &notifier {
                notifier
                    .reloading("SIGHUP: reopening the log, reloading the users file and TLS files");
            }
            let status = match &log {
                None => {
                    tracing::info!("SIGHUP: messages go to NATS; there is no log file to reopen");
                    "serving; messages go to NATS".to_owned()
                }
                Some(log) => match log.reopen().await {
                    Ok(()) => {
                        tracing::info!("SIGHUP: log reopened");
                        "serving; log reopened after SIGHUP".to_owned()
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: reopening the log failed; still writing to the old file");
                        format!(
                            "serving; reopening the log failed ({e}); still writing to the old file"
                        )
                    }
                },
            };
            if let Some(users) = &users {
                users.reload_and_report().await;
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate, key and client CA reloaded; new connections use them"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: reloading TLS failed; still serving the previous certificate")
                    }
                }
            }
            if let Some(notifier) = &notifier {
                notifier.ready(&status);
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate, key and client CA reloaded; new connections use them"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: reloading TLS failed; still serving the previous certificate")
                    }
                }
            }
        }
    });
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(mut args) => {
            args.port_on_command_line = matches
                .subcommand_matches("serve")
                .and_then(|m| m.value_source("port"))
                == Some(ValueSource::CommandLine);
            serve(*args)
        }
        Command::Read(args) => cli::read::run(args),
        Command::Send(args) => msglog::client::cli::run_send(args.into()),
        Command::Conform(args) => {
            if args.checks_a_server() {
                // The concurrency probe holds a thousand sockets open at once.
                let _ = rlimit::increase_nofile_limit(u64::MAX);
            }
            msglog::conform::run_conform(args.into())
        }
        Command::Bench(args) => msglog::bench::run_bench(args.into()),
        Command::Completions(args) => {
            cli::generate::completions(args.shell, Cli::command(), &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => match cli::generate::man(Cli::command(), &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("msglog man: cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Passwd(args) => cli::passwd::run(args),
    }
}
