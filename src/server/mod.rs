//! The Tokio shell: binds, accepts, runs one task per connection, and owns
//! the log through a single writer. It executes what the core decides.

mod budget;
mod connection;
pub mod diagnostics;
pub mod listener;
pub mod log_file;
pub mod log_writer;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "nats")]
pub mod nats;
mod rate;
mod sink;
mod stats;
mod tls;
mod transport;
pub mod users;

use std::future::Future;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::defaults;
use crate::proto::engine::{PasswordCheck, Settings};
use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::LogFormat;
pub use connection::{PasswordVerifier, Peer, Verdict};
pub use listener::ServeError;
pub use log_file::{open_log, OpenError, Recovery};
pub use log_writer::{AppendError, LogOptions, LogReopener, LogWriter, Staged};
#[cfg(feature = "nats")]
pub use nats::{NatsOptions, NatsSink};
pub use rate::Rate;
pub use sink::SinkError;
pub use stats::{
    HistogramSnapshot, LatencyHistogram, LogStats, Readiness, ServerView, Snapshot, Stats,
};
pub use tls::{certified_names, TlsConfigError, TlsFiles, TlsReloader};

/// Refused connections (over the limit) that may linger at once.
const MAX_LINGERING_REFUSALS: usize = 256;

/// Limits every connection is held to.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub max_payload: usize,
    /// How long a connection that has just replied keeps polling its socket
    /// for the next frame before it sleeps; zero turns busy-polling off.
    pub busy_poll: Duration,
    /// Busy-poll only while at most this many connections are open.
    pub busy_poll_connections: usize,
    /// Memory all connections together may hold in partial frames beyond a
    /// small allowance each; past it, the connections holding the most wait.
    pub frame_budget: usize,
    /// Messages per second each connection may send (spec: #rate-limits).
    pub rate_per_connection: Option<Rate>,
    /// Messages per second all connections of one name may send together.
    pub rate_per_name: Option<Rate>,
}

impl Limits {
    /// What the session engine of each connection is held to.
    pub fn session_settings(&self) -> Settings {
        Settings {
            max_payload: self.max_payload,
            passwords: PasswordCheck::ReferenceRule,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

impl Default for Limits {
    //= spec/protocol.md#limits
    //# A server MUST serve at least 1000 simultaneous connections unless
    //# configured with a lower connection limit.
    fn default() -> Self {
        Limits {
            max_connections: defaults::MAX_CONNECTIONS,
            handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
            idle_timeout: defaults::IDLE_TIMEOUT,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            max_payload: MAX_PAYLOAD_LEN,
            busy_poll: defaults::BUSY_POLL,
            busy_poll_connections: std::thread::available_parallelism().map_or(1, |n| n.get()),
            frame_budget: (defaults::FRAME_BUDGET_MIB << 20) as usize,
            rate_per_connection: None,
            rate_per_name: None,
        }
    }
}

/// Everything `msglog serve` can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on. `[::]` listens on IPv6 and IPv4 alike.
    pub bind: Vec<SocketAddr>,
    pub log_path: PathBuf,
    pub log_format: LogFormat,
    pub fsync: bool,
    pub limits: Limits,
    /// How often to log a stats line; `None` turns it off.
    pub stats_interval: Option<Duration>,
    /// Checks every password; `None` applies the reference's rule (any
    /// password whose first byte is odd).
    pub verifier: Option<Arc<dyn PasswordVerifier>>,
    /// Store messages in this NATS JetStream stream instead of the log file
    /// (`log_path`, `log_format` and `fsync` then do not apply).
    #[cfg(feature = "nats")]
    pub nats: Option<NatsOptions>,
    /// Serve the protocol inside TLS; `None` serves it in clear text.
    pub tls: Option<TlsFiles>,
}

impl Default for Config {
    //= spec/protocol.md#listening
    //# By default the server MUST listen on TCP port 5555 on every IPv6 and IPv4 interface.
    fn default() -> Self {
        Config {
            bind: vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, defaults::PORT))],
            log_path: PathBuf::from(defaults::LOG_PATH),
            log_format: LogFormat::Text,
            fsync: false,
            limits: Limits::default(),
            stats_interval: None,
            verifier: None,
            #[cfg(feature = "nats")]
            nats: None,
            tls: None,
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    listeners: Vec<tokio::net::TcpListener>,
    local_addrs: Vec<SocketAddr>,
    sink: sink::Sink,
    /// The log writer's thread, with the file sink.
    log_thread: Option<log_writer::KeeperThread>,
    /// The counters of the sink: whether appends fail, and how long they take.
    sink_stats: Arc<LogStats>,
    recovery: Option<Recovery>,
    config: Config,
    tls: Option<Arc<tls::TlsState>>,
    stats: Arc<Stats>,
    budget: Arc<budget::FrameBudget>,
}

impl Server {
    /// Opens the log and binds every address; nothing is accepted yet.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        // The TLS files and the bind first: opening the log may cut a torn
        // record, and nothing may fail after that, so that the cut is always
        // reported.
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::TlsState::load(files.clone())?)),
            None => None,
        };
        let listeners = listener::bind_all(&config.bind)?;
        let local_addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServeError::Io)?;
        let stats = Arc::new(Stats::default());
        stats.set_accepting(true);
        let budget = Arc::new(budget::FrameBudget::new(config.limits.frame_budget));
        #[cfg(feature = "nats")]
        if let Some(options) = &config.nats {
            let nats = NatsSink::connect(options).await?;
            return Ok(Server {
                listeners,
                local_addrs,
                sink_stats: nats.stats(),
                sink: sink::Sink::Nats(Arc::new(nats)),
                log_thread: None,
                recovery: None,
                budget,
                config,
                tls,
                stats,
            });
        }
        let (log, recovery, log_thread) = LogWriter::open(LogOptions {
            path: config.log_path.clone(),
            format: config.log_format,
            fsync: config.fsync,
        })?;
        Ok(Server {
            listeners,
            local_addrs,
            sink_stats: log.stats(),
            sink: sink::Sink::File {
                log,
                format: config.log_format,
            },
            log_thread: Some(log_thread),
            recovery,
            budget,
            config,
            tls,
            stats,
        })
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The torn record cut off the log when it was opened, if any.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// A handle that reloads the TLS certificate, key and client CA (for
    /// SIGHUP); `None` without TLS.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.clone().map(TlsReloader)
    }

    /// The server's live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// A read-only view of the server's counters and state, for metrics and
    /// health checks; it stays valid after the server stopped.
    pub fn view(&self) -> ServerView {
        ServerView {
            stats: self.stats.clone(),
            log: self.sink_stats.clone(),
            budget: self.budget.clone(),
            fsync: self.config.fsync,
        }
    }

    /// A handle that reopens the log (for SIGHUP) without keeping it open;
    /// `None` when messages go to NATS.
    pub fn log_reopener(&self) -> Option<LogReopener> {
        match &self.sink {
            sink::Sink::File { log, .. } => Some(log.reopener()),
            #[cfg(feature = "nats")]
            sink::Sink::Nats(_) => None,
        }
    }

    /// The NATS sink, when messages go to NATS.
    #[cfg(feature = "nats")]
    pub fn nats_sink(&self) -> Option<&NatsSink> {
        match &self.sink {
            sink::Sink::Nats(nats) => Some(nats),
            sink::Sink::File { .. } => None,
        }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each
    /// connection finish the frame in progress (within the shutdown timeout),
    /// and returns once every accepted record is written and synced.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let view = self.view();
        let Server {
            listeners,
            sink,
            log_thread,
            config,
            stats,
            budget,
            tls,
            ..
        } = self;
        let permits = Arc::new(Semaphore::new(config.limits.max_connections));
        // Dropped by the acceptors and the connections; the last one gone
        // drops the log writer, whose thread then syncs and ends.
        let (rate_per_connection, rate_per_name) = (
            config.limits.rate_per_connection,
            config.limits.rate_per_name,
        );
        let mut settings = config.limits.session_settings();
        let verifier = match &tls {
            // The certificate's names are checked with every PASS, before
            // the server's own verifier.
            Some(state) if state.name_from_cert() => Some(Arc::new(tls::CertifiedNameCheck {
                inner: config.verifier,
            })
                as Arc<dyn PasswordVerifier>),
            _ => config.verifier,
        };
        if verifier.is_some() {
            settings.passwords = PasswordCheck::Asked;
        }
        let context = Arc::new(connection::ServerContext {
            sink,
            verifier,
            settings: Arc::new(settings),
            limits: config.limits,
            log_format: config.log_format,
            stats: stats.clone(),
            budget: budget.clone(),
            rate: rate_per_connection,
            name_rates: rate_per_name.map(rate::NameBuckets::new),
        });
        let refusals = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a clone; when all are dropped, every
        // connection has ended (mini-redis's shutdown pattern).
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        if let Some(every) = config.stats_interval {
            tokio::spawn(stats::report_every(view, every, stop_rx.clone()));
        }
        let mut acceptors = JoinSet::new();
        for listener in listeners {
            acceptors.spawn(listener::accept_loop(
                listener,
                listener::Shared {
                    permits: permits.clone(),
                    refusals: refusals.clone(),
                    context: context.clone(),
                    tls: tls.clone(),
                    stop: stop_rx.clone(),
                    alive: alive_tx.clone(),
                },
            ));
        }
        drop((context, alive_tx));
        shutdown.await;
        //= spec/protocol.md#shutdown
        //# On SIGINT or SIGTERM the server MUST stop accepting connections and let
        //# each connection finish the frame in progress within the shutdown timeout.
        tracing::info!("shutting down: no new connections; finishing frames in progress");
        stats.set_accepting(false);
        let _ = stop_tx.send(true);
        while acceptors.join_next().await.is_some() {}
        // Connections end within the shutdown timeout plus the close linger.
        let _ = alive_rx.recv().await;
        //= spec/protocol.md#shutdown
        //# The server MUST NOT exit before every record it accepted was written to the log.
        // The writer thread syncs and exits once the last handle is gone.
        // With NATS, every accepted message was awaited by its connection.
        if let Some(log_thread) = log_thread {
            tokio::task::spawn_blocking(move || log_thread.join())
                .await
                .ok();
            tracing::info!("log synced; bye");
        } else {
            tracing::info!("every accepted message is stored; bye");
        }
        Ok(())
    }
}
