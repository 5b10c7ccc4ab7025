//! What the connection shell needs of its byte stream, for plain TCP and
//! for TLS. The shell is generic over it and monomorphized, so plaintext
//! keeps its direct socket calls (`try_write`, `writable`, busy-polling on
//! the raw socket) and pays nothing for TLS.

use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether the shell may busy-poll this transport with [`read_now`].
    ///
    /// [`read_now`]: Transport::read_now
    const BUSY_POLLS: bool;

    /// Sends what it can of `buf` at once, without waiting; `WouldBlock`
    /// when nothing could go. With an empty `buf`, pushes out what an
    /// earlier call left buffered ([`has_pending_output`]).
    ///
    /// [`has_pending_output`]: Transport::has_pending_output
    fn try_send(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// Completes once [`try_send`](Transport::try_send) can make progress.
    fn send_ready(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Bytes that `try_send` took but that have not reached the socket yet.
    fn has_pending_output(&self) -> bool;

    /// Ends the session after the client ended its stream, within `limit`:
    /// nothing to do for TCP, where dropping the socket does it; TLS says
    /// close_notify, so the client knows the session was not cut off.
    fn finish(&mut self, limit: std::time::Duration) -> impl Future<Output = ()> + Send;

    /// Reads from the socket without waiting for the runtime's readiness
    /// event: `Pending` when nothing is there. Only called when
    /// [`BUSY_POLLS`](Transport::BUSY_POLLS).
    fn read_now(&mut self, buf: &mut [u8]) -> Poll<io::Result<usize>>;
}

impl Transport for TcpStream {
    const BUSY_POLLS: bool = true;

    #[inline]
    fn try_send(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.try_write(buf)
    }

    async fn send_ready(&mut self) -> io::Result<()> {
        self.writable().await
    }

    #[inline]
    fn has_pending_output(&self) -> bool {
        false
    }

    fn finish(&mut self, _limit: std::time::Duration) -> impl Future<Output = ()> + Send {
        // A future of no size: the connection task does not grow for it.
        std::future::ready(())
    }

    #[inline]
    fn read_now(&mut self, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match (&*socket2::SockRef::from(&*self)).read(buf) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// TLS through rustls. Writes go into rustls, which encrypts them into its
/// own buffer and sends what the socket takes; the rest is pending output
/// that the shell pushes out before it waits for the client. Busy-polling is
/// off: a read must go through rustls and the runtime's readiness (see
/// BENCHMARKS.md for what that costs a lone ping-pong client).
impl Transport for TlsStream<TcpStream> {
    const BUSY_POLLS: bool = false;

    fn try_send(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Polled without a waker of our own: a `Pending` here is followed by
        // `send_ready`, which registers the task's waker.
        let mut cx = Context::from_waker(Waker::noop());
        let taken = if buf.is_empty() {
            0
        } else {
            match Pin::new(&mut *self).poll_write(&mut cx, buf) {
                Poll::Ready(result) => result?,
                Poll::Pending => 0,
            }
        };
        if let Poll::Ready(Err(e)) = Pin::new(&mut *self).poll_flush(&mut cx) {
            return Err(e);
        }
        if taken == 0 && (!buf.is_empty() || self.has_pending_output()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    async fn send_ready(&mut self) -> io::Result<()> {
        // Done once rustls has handed everything it holds to the socket,
        // which is when it takes more again.
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_flush(cx)).await
    }

    fn has_pending_output(&self) -> bool {
        self.get_ref().1.wants_write()
    }

    async fn finish(&mut self, limit: std::time::Duration) {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(limit, self.shutdown()).await;
    }

    fn read_now(&mut self, _buf: &mut [u8]) -> Poll<io::Result<usize>> {
        // Not called (BUSY_POLLS is false); were it, "nothing there yet"
        // would send the shell to wait for readiness, which is correct.
        Poll::Pending
    }
}
