//! Shared helpers for tests that speak raw bytes to a real server over TCP.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use msglog::proto::Frame;
use msglog::proto::Record;
use msglog::server::{Config, Limits};
use msglog::testkit::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A server on a free loopback port with its log in a fresh temp dir.
pub struct Harness {
    pub server: TestServer,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("messages.log");
        let server = TestServer::start_with(Config {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            log_path: log_path.clone(),
            limits,
            ..Config::default()
        })
        .await
        .unwrap();
        Harness {
            server,
            log_path,
            _dir: dir,
        }
    }

    /// The records in the log now. Acks come after the write, so every
    /// acknowledged message is here.
    pub fn records(&self) -> Vec<Record> {
        msglog::proto::records(&self.log())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Stops the server (it writes everything it accepted first) and returns
    /// the final records: nothing can be added to them afterwards.
    pub async fn stop(self) -> Vec<Record> {
        let log = self.stop_raw().await;
        msglog::proto::records(&log)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Like `stop`, returning the log's bytes as they are.
    pub async fn stop_raw(self) -> Vec<u8> {
        let Harness {
            server,
            log_path,
            _dir,
        } = self;
        tokio::time::timeout(TIMEOUT, server.stop())
            .await
            .expect("server did not stop")
            .unwrap();
        std::fs::read(&log_path).unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr()).await.unwrap()
    }

    pub fn log(&self) -> Vec<u8> {
        std::fs::read(&self.log_path).unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        String::from_utf8(self.log()).unwrap()
    }
}

pub fn frame(f: Frame) -> Vec<u8> {
    f.to_bytes().unwrap()
}

pub fn frames(fs: &[Frame]) -> Vec<u8> {
    fs.iter().flat_map(|f| f.to_bytes().unwrap()).collect()
}

/// NAME, PASS "A" for `name`.
pub fn login(name: &[u8]) -> Vec<u8> {
    frames(&[Frame::Name(name), Frame::Pass(b"A")])
}

/// Reads exactly `n` bytes, failing the test after TIMEOUT.
pub async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut buf))
        .await
        .expect("timed out waiting for replies")
        .expect("connection failed while reading replies");
    buf
}

/// Reads until the server closes, failing the test after TIMEOUT.
pub async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut buf))
        .await
        .expect("timed out waiting for the server to close")
        .expect("connection failed (reset?) while reading to the end");
    buf
}

/// Sends `bytes`, then reads every reply until the server closes by itself.
pub async fn exchange_until_close(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).await.unwrap();
    read_to_end(stream).await
}

/// Waits until the log holds `n` records (the server acks only after writing,
/// but a connection may end without waiting for its acks).
pub async fn wait_for_records(h: &Harness, n: usize) -> Vec<msglog::proto::Record> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let log = h.log();
        let records: Vec<_> = msglog::proto::records(&log)
            .collect::<Result<_, _>>()
            .unwrap();
        if records.len() >= n || tokio::time::Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
