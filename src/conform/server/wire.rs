//! The network side of `conform server`: opening connections to the one
//! address under check, writing plans, reading replies until the server
//! closes, each bounded by the wait. Every connection attempt is reported
//! to [`Liveness`], and none is made once the server stopped accepting.
//! What it sees goes back as data for `verdict` to judge.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::tls::Stream;
use crate::client::ClientTls;
use tokio::time::{sleep, timeout, Instant};

use crate::proto::Frame;

use super::concurrent_clients::{ClientStep, ConcurrentFailure, ConcurrentFailureKind, RepliesEnd};
use super::liveness::{Liveness, Refusal, Stopped, REFUSALS_TO_STOP};
use super::plan::{frame, login, Plan};
use super::verdict::{ConnectFailure, ConnectFailureKind, ConnectionEnd, Observed};

/// Pause between the connection attempts of a liveness check.
const LIVENESS_RETRY: Duration = Duration::from_millis(100);

/// Why no connection was made for a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoConnection {
    Failed(ConnectFailure),
    /// The server had stopped accepting: not attempted.
    NotRun,
}

/// The server under check, and what the run has seen of it so far.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Longest wait for a connection, a reply or a close.
    pub wait: Duration,
    started: Instant,
    liveness: Arc<Liveness>,
    /// Speak TLS to the server: every connection starts with a handshake.
    tls: Option<ClientTls>,
}

impl Target {
    pub fn new(addr: SocketAddr, wait: Duration, tls: Option<ClientTls>) -> Target {
        Target {
            addr,
            wait,
            started: Instant::now(),
            liveness: Arc::default(),
            tls,
        }
    }

    fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    /// The stop, once the server was seen to stop accepting connections.
    pub fn stopped(&self) -> Option<Stopped> {
        self.liveness.stopped()
    }

    /// Opens connection number `connection` for `probe`, within `wait`
    /// (the TLS handshake included).
    pub async fn connect(
        &self,
        connection: usize,
        probe: &str,
        wait: Duration,
    ) -> Result<Stream, NoConnection> {
        if self.liveness.stopped().is_some() {
            return Err(NoConnection::NotRun);
        }
        // Attempts are ordered by their start: see `liveness`.
        let at = self.since_start();
        let deadline = Instant::now() + wait;
        let attempt = timeout(wait, TcpStream::connect(self.addr)).await;
        match attempt {
            Ok(Ok(s)) => {
                self.liveness.accepted(at);
                // Frames are written as the plan says, not coalesced.
                let _ = s.set_nodelay(true);
                let Some(tls) = &self.tls else {
                    return Ok(Stream::Plain(s));
                };
                let failed = |message: String| {
                    Err(NoConnection::Failed(ConnectFailure {
                        kind: ConnectFailureKind::Other,
                        message,
                        at,
                    }))
                };
                match tokio::time::timeout_at(deadline, tls.handshake(s)).await {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => failed(format!("TLS handshake failed: {e}")),
                    Err(_) => failed(format!("no TLS handshake within {} s", wait.as_secs_f64())),
                }
            }
            Ok(Err(e)) => {
                let message = format!("cannot connect: {e}");
                let kind = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted => ConnectFailureKind::Refused,
                    _ => ConnectFailureKind::Other,
                };
                if kind == ConnectFailureKind::Refused {
                    self.liveness.refused(Refusal {
                        connection,
                        probe: probe.to_string(),
                        error: e.to_string(),
                        at,
                    });
                }
                Err(NoConnection::Failed(ConnectFailure { kind, message, at }))
            }
            Err(_) => Err(NoConnection::Failed(ConnectFailure {
                kind: ConnectFailureKind::TimedOut,
                message: format!("no connection within {} s", wait.as_secs_f64()),
                at,
            })),
        }
    }

    /// Runs `plan` on a new connection and reads until the server closes,
    /// or `wait` after the last write.
    pub async fn exchange(
        &self,
        connection: usize,
        probe: &str,
        plan: &Plan,
        wait: Duration,
    ) -> Observed {
        let started = Instant::now();
        let stream = match self.connect(connection, probe, wait).await {
            Ok(s) => s,
            Err(NoConnection::NotRun) => return Observed::not_run(),
            Err(NoConnection::Failed(f)) => {
                return Observed {
                    replies: Vec::new(),
                    end: ConnectionEnd::Unreachable(f),
                    elapsed: started.elapsed(),
                    ended_at: self.since_start(),
                }
            }
        };
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut replies = Vec::new();
        let writer = async {
            for (pause, w) in &plan.writes {
                if !pause.is_zero() {
                    sleep(*pause).await;
                }
                // A server that closed early makes writes fail; what it sent
                // before is still read below. Each write leaves at once (with
                // TLS, as a record of its own).
                if wr.write_all(w).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
            }
            if plan.shutdown {
                let _ = wr.shutdown().await;
            }
        };
        let reader = timeout(
            plan.duration() + wait,
            read_until_end(&mut rd, &mut replies),
        );
        let ((), end) = tokio::join!(writer, reader);
        // `wr` lives until here: dropping it earlier would end our stream.
        drop(wr);
        Observed {
            replies,
            end: end.unwrap_or(ConnectionEnd::Timeout),
            elapsed: started.elapsed(),
            ended_at: self.since_start(),
        }
    }

    /// A concurrency-probe client: connects and logs in as `name`; the
    /// connection stays open for [`Target::message_and_close`].
    pub async fn log_in(
        &self,
        connection: usize,
        probe: &str,
        name: &[u8],
    ) -> Result<Stream, ConcurrentFailure> {
        let step = ClientStep::Login;
        let mut s = match self.connect(connection, probe, self.wait).await {
            Ok(s) => s,
            Err(NoConnection::NotRun) => return Err(self.failure(ConcurrentFailureKind::NotRun)),
            Err(NoConnection::Failed(f)) => {
                return Err(self.failure(ConcurrentFailureKind::NotConnected(f)))
            }
        };
        let written = match s.write_all(&login(name)).await {
            Ok(()) => s.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            return Err(self.failure(ConcurrentFailureKind::WriteFailed {
                step,
                error: e.to_string(),
            }));
        }
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while got.len() < 2 {
            let end = match timeout(self.wait, s.read(&mut byte)).await {
                Ok(Ok(0)) => RepliesEnd::Closed,
                Ok(Ok(_)) => {
                    got.push(byte[0]);
                    continue;
                }
                Ok(Err(e)) => RepliesEnd::ReadFailed(e.to_string()),
                Err(_) => RepliesEnd::TimedOut(self.wait),
            };
            return Err(self.failure(ConcurrentFailureKind::Replies { step, got, end }));
        }
        if got != [0, 0] {
            return Err(self.failure(ConcurrentFailureKind::Replies {
                step,
                got,
                end: RepliesEnd::Closed,
            }));
        }
        Ok(s)
    }

    /// Sends one MSG and CLOSE on a logged-in connection and reads until
    /// the server closes: the replies must be two 0x00.
    pub async fn message_and_close(
        &self,
        mut s: Stream,
        message: &[u8],
    ) -> Result<(), ConcurrentFailure> {
        let step = ClientStep::MessageAndClose;
        let mut bytes = frame(Frame::Msg(message));
        bytes.push(4);
        let written = match s.write_all(&bytes).await {
            Ok(()) => s.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            return Err(self.failure(ConcurrentFailureKind::WriteFailed {
                step,
                error: e.to_string(),
            }));
        }
        let mut got = Vec::new();
        let end = match timeout(self.wait, s.read_to_end(&mut got)).await {
            Ok(Ok(_)) if got == [0, 0] => return Ok(()),
            Ok(Ok(_)) => RepliesEnd::Closed,
            Ok(Err(e)) => RepliesEnd::ReadFailed(e.to_string()),
            Err(_) => RepliesEnd::TimedOut(self.wait),
        };
        Err(self.failure(ConcurrentFailureKind::Replies { step, got, end }))
    }

    fn failure(&self, kind: ConcurrentFailureKind) -> ConcurrentFailure {
        ConcurrentFailure {
            kind,
            at: self.since_start(),
        }
    }

    /// Whether the server still accepts connections: opens and closes one
    /// (numbered `connection`, for the report), and after a refusal tries
    /// again, up to the number of refusals that mean it stopped.
    pub async fn still_accepting(&self, connection: usize, probe: &str) -> bool {
        for attempt in 0..REFUSALS_TO_STOP {
            if attempt > 0 {
                sleep(LIVENESS_RETRY).await;
            }
            match self.connect(connection, probe, self.wait).await {
                Ok(_) => return true,
                Err(NoConnection::NotRun) => return false,
                Err(NoConnection::Failed(f)) if f.kind == ConnectFailureKind::Refused => {}
                // A slow or odd answer is not a refusal: nothing to conclude.
                Err(NoConnection::Failed(_)) => return true,
            }
        }
        self.liveness.stopped().is_none()
    }
}

async fn read_until_end(rd: &mut (impl AsyncRead + Unpin), out: &mut Vec<u8>) -> ConnectionEnd {
    let mut chunk = [0u8; 4096];
    loop {
        match rd.read(&mut chunk).await {
            Ok(0) => return ConnectionEnd::Eof,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => return ConnectionEnd::Reset(e.to_string()),
        }
    }
}
