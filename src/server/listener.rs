//! Binding and accepting: SO_REUSEADDR, dual-stack `[::]`, the connection
//! limit, and stopping on shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use super::connection::{linger_close, Connection, Peer, ServerContext};
use super::diagnostics::{self, Suppressed, Throttle};
use super::log_writer::OpenError;
use super::tls::{self, TlsState};
use crate::proto::machine::NAK;

const BACKLOG: i32 = 1024;

/// Why `msglog serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("address {addr} is already in use; stop the other server or pick another port")]
    AddressInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Log(#[from] OpenError),
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Nats(#[from] super::nats::NatsStartError),
    #[error(transparent)]
    Tls(#[from] super::tls::TlsConfigError),
    #[error("{0}")]
    Io(io::Error),
}

/// Binds every address. `[::]` is bound dual-stack so it takes IPv4 too; on
/// a host without IPv6 it falls back to `0.0.0.0`.
pub fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ServeError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let listener = match bind_one(addr) {
            Err(ServeError::Bind { source, .. })
                if addr.ip().is_unspecified()
                    && addr.is_ipv6()
                    && source.kind() == io::ErrorKind::AddrNotAvailable =>
            {
                bind_one(SocketAddr::from(([0, 0, 0, 0], addr.port())))?
            }
            other => other?,
        };
        listeners.push(listener);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::AddrInUse {
            ServeError::AddressInUse { addr }
        } else {
            ServeError::Bind { addr, source }
        }
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(bind_err)?;
    //= spec/protocol.md#listening
    //# The server MUST set SO_REUSEADDR so that a restarted server can bind its
    //# port at once.
    socket.set_reuse_address(true).map_err(bind_err)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false).map_err(bind_err)?;
    }
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    socket.listen(BACKLOG).map_err(bind_err)?;
    TcpListener::from_std(socket.into()).map_err(bind_err)
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub permits: Arc<Semaphore>,
    /// Refused connections still lingering; bounded separately.
    pub refusals: Arc<Semaphore>,
    pub context: Arc<ServerContext>,
    /// Set when the server serves TLS.
    pub tls: Option<Arc<TlsState>>,
    pub stop: watch::Receiver<bool>,
    pub alive: mpsc::Sender<()>,
}

pub(crate) async fn accept_loop(listener: TcpListener, mut shared: Shared) {
    //= spec/protocol.md#diagnostics
    //# The server MUST rate-limit the diagnostics of refused connections and of
    //# failed accepts: it reports the first in full, and counts the ones that
    //# follow within an interval and reports their number in one line.
    let mut refused = Throttle::new(diagnostics::INTERVAL);
    let mut accept_failed = Throttle::new(diagnostics::INTERVAL);
    let mut last_accept_error = String::new();
    loop {
        let due = [refused.due(), accept_failed.due()]
            .into_iter()
            .flatten()
            .min();
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.stop.changed() => break,
            _ = sleep_until_due(due) => {
                let now = Instant::now();
                report_refused(refused.summary(now), shared.context.limits.max_connections);
                report_accept_failed(accept_failed.summary(now), &last_accept_error);
                continue;
            }
        };
        let now = Instant::now();
        let (mut stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                report_accept_failed(accept_failed.summary(now), &last_accept_error);
                last_accept_error = e.to_string();
                if accept_failed.event(now) {
                    tracing::warn!(error = %e, "accept failed");
                }
                // Out of descriptors or the like: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            //= spec/protocol.md#limits
            //# A server at its connection limit MUST reply 0xFF to a new
            //# connection and close it, without affecting existing connections.
            shared.context.stats.refused();
            report_refused(refused.summary(now), shared.context.limits.max_connections);
            if refused.event(now) {
                tracing::warn!(peer = %peer, limit = shared.context.limits.max_connections, "connection limit reached; refusing");
            }
            // Refusals linger too (so the 0xFF is not lost to a reset), but
            // only so many at once: a flood past the limit must stay cheap.
            match shared.refusals.clone().try_acquire_owned() {
                Ok(refusal) => {
                    tokio::spawn(async move {
                        if stream.write_all(&[NAK]).await.is_ok() {
                            linger_close(&mut stream).await;
                        }
                        drop(refusal);
                    });
                }
                Err(_) => {
                    let _ = stream.try_write(&[NAK]);
                }
            }
            continue;
        };
        let stop = shared.stop.clone();
        let alive = shared.alive.clone();
        //= spec/protocol.md#listening
        //# A failure on one connection MUST NOT affect any other connection.
        // Each connection is its own task; its errors end only that task. A
        // TLS connection holds its permit from the accept, handshake included.
        match &shared.tls {
            None => {
                let _ = stream.set_nodelay(true);
                let connection =
                    Connection::new(stream, Peer::plain(peer), shared.context.clone(), now);
                tokio::spawn(async move {
                    connection.run(stop).await;
                    drop((permit, alive));
                });
            }
            Some(state) => {
                let (context, state) = (shared.context.clone(), state.clone());
                tokio::spawn(async move {
                    tls::serve(stream, peer, context, state, stop).await;
                    drop((permit, alive));
                });
            }
        }
    }
    // Stopping: what was counted is reported now, not lost.
    let now = Instant::now();
    report_refused(refused.flush(now), shared.context.limits.max_connections);
    report_accept_failed(accept_failed.flush(now), &last_accept_error);
}

async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

fn report_refused(suppressed: Option<Suppressed>, limit: usize) {
    if let Some(s) = suppressed {
        tracing::warn!(
            refused = s.count,
            limit,
            "refused {} more connections in the last {}: connection limit reached",
            s.count,
            s.over_text()
        );
    }
}

fn report_accept_failed(suppressed: Option<Suppressed>, last_error: &str) {
    if let Some(s) = suppressed {
        tracing::warn!(
            failed = s.count,
            error = %last_error,
            "accept failed {} more times in the last {}",
            s.count,
            s.over_text()
        );
    }
}
