//! A real server in-process on 127.0.0.1, for tests and doc examples.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::server::{Config, ServeError, Server, Stats};

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
