//! The Tokio shell: binds, accepts, runs one task per connection, and owns
//! the log through a single writer. It executes what the core decides.

mod connection;
pub mod listener;
pub mod log_file;
pub mod log_writer;
mod stats;

use std::future::Future;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::LogFormat;
pub use listener::ServeError;
pub use log_file::{open_log, OpenError, Recovery};
pub use log_writer::{AppendError, LogOptions, LogReopener, LogWriter, Staged};
pub use stats::Stats;

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
}

impl Default for Limits {
    //= spec/protocol.md#limits
    //# A server MUST serve at least 1000 simultaneous connections unless
    //# configured with a lower connection limit.
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(5),
            max_payload: MAX_PAYLOAD_LEN,
            busy_poll: Duration::from_micros(50),
            busy_poll_connections: std::thread::available_parallelism().map_or(1, |n| n.get()),
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
}

impl Default for Config {
    //= spec/protocol.md#listening
    //# By default the server MUST listen on TCP port 5555 on every IPv6 and IPv4 interface.
    fn default() -> Self {
        Config {
            bind: vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, 5555))],
            log_path: PathBuf::from("messages.log"),
            log_format: LogFormat::Text,
            fsync: false,
            limits: Limits::default(),
            stats_interval: None,
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    listeners: Vec<tokio::net::TcpListener>,
    local_addrs: Vec<SocketAddr>,
    log: LogWriter,
    log_thread: std::thread::JoinHandle<()>,
    recovery: Option<Recovery>,
    config: Config,
    stats: Arc<Stats>,
}

impl Server {
    /// Opens the log and binds every address; nothing is accepted yet.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        // Bind first: opening the log may cut a torn record, and nothing may
        // fail after that, so that the cut is always reported.
        let listeners = listener::bind_all(&config.bind)?;
        let local_addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServeError::Io)?;
        let (log, recovery, log_thread) = LogWriter::open(LogOptions {
            path: config.log_path.clone(),
            format: config.log_format,
            fsync: config.fsync,
        })?;
        Ok(Server {
            listeners,
            local_addrs,
            log,
            log_thread,
            recovery,
            config,
            stats: Arc::new(Stats::default()),
        })
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The torn record cut off the log when it was opened, if any.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// The server's live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// A handle that reopens the log (for SIGHUP) without keeping it open.
    pub fn log_reopener(&self) -> LogReopener {
        self.log.reopener()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each
    /// connection finish the frame in progress (within the shutdown timeout),
    /// and returns once every accepted record is written and synced.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server {
            listeners,
            log,
            log_thread,
            config,
            stats,
            ..
        } = self;
        let limits = Arc::new(config.limits);
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let refusals = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a clone; when all are dropped, every
        // connection has ended (mini-redis's shutdown pattern).
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        if let Some(every) = config.stats_interval {
            tokio::spawn(stats::report_every(stats.clone(), every, stop_rx.clone()));
        }
        let mut acceptors = JoinSet::new();
        for listener in listeners {
            acceptors.spawn(listener::accept_loop(
                listener,
                listener::Shared {
                    permits: permits.clone(),
                    refusals: refusals.clone(),
                    log: log.clone(),
                    limits: limits.clone(),
                    log_format: config.log_format,
                    stats: stats.clone(),
                    stop: stop_rx.clone(),
                    alive: alive_tx.clone(),
                },
            ));
        }
        drop((log, alive_tx));
        shutdown.await;
        //= spec/protocol.md#shutdown
        //# On SIGINT or SIGTERM the server MUST stop accepting connections and let
        //# each connection finish the frame in progress within the shutdown timeout.
        tracing::info!("shutting down: no new connections; finishing frames in progress");
        let _ = stop_tx.send(true);
        while acceptors.join_next().await.is_some() {}
        // Connections end within the shutdown timeout plus the close linger.
        let _ = alive_rx.recv().await;
        //= spec/protocol.md#shutdown
        //# The server MUST NOT exit before every record it accepted was written to the log.
        // The writer thread syncs and exits once the last handle is gone.
        tokio::task::spawn_blocking(move || log_thread.join())
            .await
            .ok();
        tracing::info!("log synced; bye");
        Ok(())
    }
}

/// A server on 127.0.0.1 with a free port, for tests and doc examples.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Starts a server with default limits writing to `log_path`.
    pub async fn start(log_path: impl Into<PathBuf>) -> Result<TestServer, ServeError> {
        Self::start_with(Config {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            log_path: log_path.into(),
            ..Config::default()
        })
        .await
    }

    pub async fn start_with(config: Config) -> Result<TestServer, ServeError> {
        let server = Server::bind(config).await?;
        let addr = server.local_addrs()[0];
        let stats = server.stats();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Ok(TestServer {
            addr,
            stats,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
