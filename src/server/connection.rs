//! One connection: read -> parse -> step -> append -> reply -> close.
//! Every protocol decision is the core's; this file only carries them out.
//!
//! Performance: a read goes into a per-thread scratch buffer and every
//! complete frame in it is run through the core at once; only a trailing
//! partial frame is copied into the connection's own buffer. The batch's
//! records are encoded into a per-thread buffer and staged with the log in one
//! call, and all its replies leave in one write. An idle connection thus owns
//! no read or record buffer. Timers are re-armed lazily: a read only notes
//! the time, and the timer, when it fires early, moves itself forward.
//!
//! Latency: with few connections, one that has just replied busy-polls its
//! socket for the next frame (reading it directly, yielding between tries)
//! for up to `Limits::busy_poll`, as long as its client has been answering
//! within that time. On a VM, letting the CPU go idle and waking it again
//! costs more than the whole exchange.

use std::cell::RefCell;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::proto::frame::{parse_frame_limited, Parsed, HEADER_LEN};
use crate::proto::machine::{fail, step, Effect, Response, State, Violation};
use crate::proto::record::encode_record;
use crate::proto::{encode_json_record, JsonContext, LogFormat};

use super::log_writer::{AppendError, LogWriter, Staged};
use super::{Limits, Stats};

/// Size of each thread's read buffer: one read takes this many bytes of
/// pipelined frames at most.
const SCRATCH_LEN: usize = 64 * 1024;
/// A buffer this large is given back once it is empty, so a connection that
/// once sent a 64 KiB message does not keep 64 KiB while idle.
const SHRINK_ABOVE: usize = 16 * 1024;
/// Reply buffers above this are given back once the replies are sent.
const REPLIES_KEEP: usize = 1024;

thread_local! {
    /// Where every read lands; used only within one poll, so every
    /// connection on the thread can share it.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
    /// Where a batch's records are encoded before they are staged.
    static RECORDS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so its last reply is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 1 << 20;

pub(crate) struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    /// A partial frame (and what follows it) waiting for more bytes.
    buf: BytesMut,
    replies: Vec<u8>,
    /// Index in `replies` of the current batch's first MSG ack.
    first_append_reply: Option<usize>,
    log: LogWriter,
    limits: Arc<Limits>,
    log_format: LogFormat,
    /// The peer address as the JSON log writes it; made once.
    peer_text: String,
    stats: Arc<Stats>,
    /// Whether to busy-poll for the next frame after replying: true while
    /// the client's next frame has been coming within the busy-poll budget.
    busy_poll_pays: bool,
}

/// What one read brought.
enum Input {
    /// Bytes, all complete frames in them processed: their replies are in
    /// `replies`; `append` says whether the batch had records (and how the
    /// log took them), `end` whether the connection ends after the replies.
    Batch {
        append: Option<Staged>,
        /// Messages and payload bytes in `append`, for the stats.
        appended: (u64, u64),
        end: Option<End>,
    },
    /// End of stream.
    Eof,
}

/// Why a connection ended, for the closing diagnostic.
#[derive(Debug)]
enum End {
    Closed,
    Rejected(Violation),
    ClientEnded,
    ClientEndedMidFrame(usize),
    IdleTimeout,
    /// The client did not read its replies within the idle timeout.
    NotReading,
    Shutdown,
    Io(std::io::Error),
}

impl Connection {
    pub(crate) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        log: LogWriter,
        limits: Arc<Limits>,
        log_format: LogFormat,
        stats: Arc<Stats>,
    ) -> Self {
        let _ = stream.set_nodelay(true);
        Connection {
            stream,
            peer,
            state: State::Connected,
            buf: BytesMut::new(),
            replies: Vec::new(),
            first_append_reply: None,
            log,
            limits,
            log_format,
            peer_text: match log_format {
                LogFormat::Jsonl => peer.to_string(),
                LogFormat::Text => String::new(),
            },
            stats,
            busy_poll_pays: true,
        }
    }

    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        //= spec/protocol.md#diagnostics
        //# The server MUST report each accepted and each closed connection with the peer's address.
        tracing::info!(peer = %self.peer, "connection accepted");
        self.stats.opened();
        let end = self.serve(&mut shutdown).await;
        self.stats.closed();
        if matches!(end, End::Rejected(_)) {
            self.stats
                .rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        //= spec/protocol.md#diagnostics
        //# The server MUST report each rejection with the name of the rule that was broken.
        match &end {
            End::Rejected(v) => {
                tracing::info!(peer = %self.peer, rule = v.rule(), reason = %v, "connection closed after 0xFF")
            }
            End::ClientEndedMidFrame(n) => {
                tracing::info!(peer = %self.peer, buffered = n, "client ended its stream mid-frame; the partial frame was discarded")
            }
            End::Io(e) => tracing::info!(peer = %self.peer, error = %e, "connection failed"),
            other => tracing::info!(peer = %self.peer, reason = ?other, "connection closed"),
        }
        if !matches!(
            end,
            End::Io(_) | End::ClientEnded | End::ClientEndedMidFrame(_) | End::NotReading
        ) {
            linger_close(&mut self.stream).await;
        }
    }

    async fn serve(&mut self, shutdown: &mut watch::Receiver<bool>) -> End {
        let accepted = Instant::now();
        let mut last_read = accepted;
        let mut last_reply = accepted;
        let mut shutdown_deadline: Option<Instant> = None;
        let mut partial_since: Option<Instant> = None;
        // One timer for the whole connection, armed for the earliest deadline
        // that can apply; when it fires early it is moved to the current one.
        let timer = sleep_until(accepted + self.limits.handshake_timeout);
        tokio::pin!(timer);
        let mut armed = accepted + self.limits.handshake_timeout;
        // Created once: registering with the watch on every read would cost
        // a lock shared by all connections.
        let stopping = shutdown.changed();
        tokio::pin!(stopping);
        loop {
            //= spec/protocol.md#timeouts
            //# The server MUST close a connection that has not completed NAME and
            //# PASS within the handshake timeout, replying 0xFF.
            let (deadline, on_timeout) = match (&self.state, partial_since) {
                (State::Connected | State::Named { .. }, _) => (
                    accepted + self.limits.handshake_timeout,
                    Some(Violation::HandshakeTimeout),
                ),
                //= spec/protocol.md#timeouts
                //# The server MUST close a connection whose frame stays incomplete for
                //# longer than the handshake timeout, replying 0xFF.
                (_, Some(since)) => (
                    since + self.limits.handshake_timeout,
                    Some(Violation::FrameTimeout),
                ),
                //= spec/protocol.md#timeouts
                //# The server MUST close an authenticated connection that sends nothing for
                //# the idle timeout.
                (_, None) => (last_read + self.limits.idle_timeout, None),
            };
            let deadline = shutdown_deadline.map_or(deadline, |s| s.min(deadline));
            if deadline < armed {
                timer.as_mut().reset(deadline);
                armed = deadline;
            }

            let busy_poll = self.should_busy_poll();
            let input = tokio::select! {
                // While busy-polling, this future yields after every attempt,
                // so the select polls the timer and the shutdown each time.
                input = self.next_input(busy_poll) => match input {
                    Ok(input) => input,
                    Err(e) => return End::Io(e),
                },
                () = &mut timer => {
                    let now = Instant::now();
                    if now < deadline {
                        // Armed for an earlier deadline that no longer applies.
                        timer.as_mut().reset(deadline);
                        armed = deadline;
                        continue;
                    }
                    //= spec/protocol.md#shutdown
                    //# A connection whose frame in progress does not complete within the
                    //# shutdown timeout MUST get 0xFF and be closed.
                    if shutdown_deadline.is_some_and(|s| s <= now) {
                        return self.reject(Violation::ShuttingDown).await;
                    }
                    return match on_timeout {
                        Some(v) => self.reject(v).await,
                        None => End::IdleTimeout,
                    };
                }
                changed = &mut stopping, if shutdown_deadline.is_none() => {
                    let _ = changed;
                    if self.buf.is_empty() {
                        return End::Shutdown;
                    }
                    // Let the frame in progress finish, within the shutdown timeout.
                    shutdown_deadline = Some(Instant::now() + self.limits.shutdown_timeout);
                    continue;
                }
            };
            let (append, appended, mut end) = match input {
                Input::Batch {
                    append,
                    appended,
                    end,
                } => (append, appended, end),
                //= spec/protocol.md#end-of-stream
                //# If the stream ends at a frame boundary, the server MUST close the
                //# connection without sending anything.
                Input::Eof if self.buf.is_empty() => return End::ClientEnded,
                //= spec/protocol.md#end-of-stream
                //# If the stream ends in the middle of a frame, the server MUST
                //# discard the partial frame without replying or writing to the log.
                Input::Eof => return End::ClientEndedMidFrame(self.buf.len()),
            };
            let replied_before = last_reply;
            last_read = Instant::now();
            // Busy-polling pays only when the client answers quickly; a slow
            // client is waited for the cheap way until it speeds up again.
            self.busy_poll_pays =
                last_read.saturating_duration_since(replied_before) <= self.limits.busy_poll;
            if let Some(staged) = append {
                match self.log.outcome(staged).await {
                    Ok(()) => self.stats.appended(appended.0, appended.1),
                    Err(error) => end = Some(self.append_failed(&error)),
                }
            }
            if !self.replies.is_empty() {
                //= spec/protocol.md#backpressure
                //# The server MUST NOT read more frames from a connection while
                //# replies to earlier frames wait to be sent on it.
                let write = self.stream.write_all(&self.replies);
                match tokio::time::timeout(self.limits.idle_timeout, write).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return End::Io(e),
                    //= spec/protocol.md#backpressure
                    //# The server MAY close a connection whose client has not read its
                    //# waiting replies within the idle timeout.
                    Err(_) => return End::NotReading,
                }
                self.replies.clear();
                if self.replies.capacity() > REPLIES_KEEP {
                    self.replies = Vec::new();
                }
            }
            last_reply = Instant::now();
            if let Some(end) = end {
                return end;
            }
            if self.buf.is_empty() {
                partial_since = None;
                if self.buf.capacity() > SHRINK_ABOVE {
                    self.buf = BytesMut::new();
                }
                if shutdown_deadline.is_some() {
                    return End::Shutdown;
                }
            } else if partial_since.is_none() {
                partial_since = Some(last_read);
            }
        }
    }

    async fn reject(&mut self, violation: Violation) -> End {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let (next, response, _) = fail(state, violation);
        self.state = next;
        if let Some(byte) = response.byte() {
            if let Err(e) = self.stream.write_all(&[byte]).await {
                return End::Io(e);
            }
        }
        End::Rejected(violation)
    }

    /// The batch's records could not be written: its first MSG is rejected
    /// and nothing after it is replied.
    fn append_failed(&mut self, error: &AppendError) -> End {
        tracing::warn!(peer = %self.peer, error = %error, "append failed; rejecting the message");
        if let Some(first) = self.first_append_reply.take() {
            self.replies.truncate(first);
        }
        let state = std::mem::replace(&mut self.state, State::Closed);
        let (next, response, _) = fail(state, Violation::AppendFailed);
        self.state = next;
        self.replies.extend(response.byte());
        self.buf.clear();
        End::Rejected(Violation::AppendFailed)
    }

    /// Waits for bytes and runs every complete frame among them through the
    /// core, all within one poll so that the per-thread buffers can be used.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Input>> {
        self.input_from(|stream, scratch| {
            let mut read = ReadBuf::new(scratch);
            match Pin::new(stream).poll_read(cx, &mut read) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
            }
        })
    }

    /// The next read's input: first by busy-polling, if asked to and the
    /// budget allows, then by waiting for the runtime's readiness event.
    async fn next_input(&mut self, busy_poll: bool) -> std::io::Result<Input> {
        if busy_poll {
            if let Some(input) = self.busy_poll().await {
                return input;
            }
        }
        std::future::poll_fn(|cx| self.poll_input(cx)).await
    }

    /// Whether to spin for the next frame instead of sleeping until the
    /// runtime reports it: only for a client that answers quickly, and only
    /// while no more connections are open than there are CPUs, so that
    /// spinning only uses a CPU that would otherwise sit idle.
    fn should_busy_poll(&self) -> bool {
        self.busy_poll_pays && self.busy_poll_allowed()
    }

    fn busy_poll_allowed(&self) -> bool {
        !self.limits.busy_poll.is_zero()
            && self.stats.connections_open.load(Relaxed) <= self.limits.busy_poll_connections as u64
    }

    /// Reads the socket directly, without waiting for the runtime's readiness
    /// event, until bytes come or the busy-poll budget is spent (`None`).
    /// Between attempts the task yields, so other tasks and the runtime's
    /// own I/O polling still run; the CPU just never goes idle. On a VM an
    /// idle CPU halts, and waking it costs more than the whole exchange.
    async fn busy_poll(&mut self) -> Option<std::io::Result<Input>> {
        let start = std::time::Instant::now();
        self.stats.busy_polls.fetch_add(1, Relaxed);
        loop {
            let polled = self.input_from(|stream, scratch| {
                match (&*socket2::SockRef::from(&*stream)).read(scratch) {
                    Ok(n) => Poll::Ready(Ok(n)),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        Poll::Pending
                    }
                    Err(e) => Poll::Ready(Err(e)),
                }
            });
            if let Poll::Ready(input) = polled {
                self.stats.busy_poll_hits.fetch_add(1, Relaxed);
                return Some(input);
            }
            if start.elapsed() >= self.limits.busy_poll || !self.busy_poll_allowed() {
                return None;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Reads once with `read` into the per-thread buffer and runs every
    /// complete frame through the core.
    fn input_from(
        &mut self,
        read: impl FnOnce(&mut TcpStream, &mut [u8]) -> Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<Input>> {
        SCRATCH.with_borrow_mut(|scratch| {
            let len = match read(&mut self.stream, scratch) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(len)) => len,
            };
            let bytes = &scratch[..len];
            if bytes.is_empty() {
                return Poll::Ready(Ok(Input::Eof));
            }
            let input = if self.buf.is_empty() {
                let (consumed, input) = self.process(bytes);
                if !self.state.is_closed() {
                    self.buf.extend_from_slice(&bytes[consumed..]);
                }
                input
            } else {
                // A frame was partial: the new bytes complete it (or not).
                let mut buf = std::mem::take(&mut self.buf);
                buf.extend_from_slice(bytes);
                let (consumed, input) = self.process(&buf);
                buf.advance(consumed);
                self.buf = buf;
                input
            };
            if self.state.is_closed() {
                // Bytes after the closing frame are never processed.
                self.buf.clear();
            }
            Poll::Ready(Ok(input))
        })
    }

    /// Runs every complete frame at the start of `bytes` through the core,
    /// stages the batch's records with the log in one call, and leaves the
    /// replies in `self.replies` in frame order. Returns how many bytes it
    /// consumed; with the connection closed, the rest is never processed.
    fn process(&mut self, mut bytes: &[u8]) -> (usize, Input) {
        let total = bytes.len();
        let mut end = None;
        let (mut appended, mut appended_bytes) = (0u64, 0u64);
        // Made at most once per batch: the clock is read here, not in the core.
        let mut json_context: Option<JsonContext> = None;
        // Index in `replies` of the first MSG ack of this batch: if the append
        // fails, that MSG is the one rejected and nothing after it is replied.
        self.first_append_reply = None;
        RECORDS.with_borrow_mut(|records| {
            records.clear();
            while !self.state.is_closed() {
                let state = std::mem::replace(&mut self.state, State::Closed);
                let (next, response, effect, consumed) =
                    match parse_frame_limited(bytes, self.limits.max_payload) {
                        Ok(Parsed::Complete { frame, len }) => {
                            let (next, response, effect) = step(state, frame);
                            let effect = match effect {
                                Some(Effect::Append { name, message }) => {
                                    self.first_append_reply.get_or_insert(self.replies.len());
                                    appended += 1;
                                    appended_bytes += message.len() as u64;
                                    match self.log_format {
                                        LogFormat::Text => encode_record(records, &name, message),
                                        LogFormat::Jsonl => {
                                            let context =
                                                json_context.get_or_insert_with(|| JsonContext {
                                                    timestamp: JsonContext::timestamp_of(
                                                        SystemTime::now(),
                                                    ),
                                                    peer: self.peer_text.clone(),
                                                });
                                            encode_json_record(records, context, &name, message);
                                        }
                                    }
                                    None
                                }
                                other => other.map(|_| ()),
                            };
                            (next, response, effect, len)
                        }
                        Ok(Parsed::Partial { .. }) => {
                            self.state = state;
                            break;
                        }
                        Err(e) => {
                            let violation = match e {
                                crate::proto::FrameError::PayloadOverLimit { len, max } => {
                                    Violation::PayloadOverLimit { len, max }
                                }
                            };
                            let (next, response, effect) = fail(state, violation);
                            (next, response, effect.map(|_| ()), HEADER_LEN)
                        }
                    };
                bytes = &bytes[consumed.min(bytes.len())..];
                self.state = next;
                self.replies.extend(response.byte());
                match response {
                    Response::Reject(v) => end = Some(End::Rejected(v)),
                    Response::Ack if effect.is_some() => end = Some(End::Closed),
                    _ => {}
                }
            }
            //= spec/protocol.md#acknowledgement
            //# The server MUST send the 0x00 for a MSG only after the write(2) that
            //# appends its record to the log has returned.
            let append = (!records.is_empty()).then(|| self.log.stage(records));
            let input = Input::Batch {
                append,
                appended: (appended, appended_bytes),
                end,
            };
            (total - bytes.len(), input)
        })
    }
}

/// Closes gracefully: shut down the sending side, then read and discard
/// what the client still sends (bounded in time and bytes), so the kernel
/// does not answer those bytes with a reset that destroys our last reply.
//= spec/protocol.md#graceful-close
//# After its last reply the server MUST shut down its sending side and
//# keep reading until the client's end of stream or a bounded time, so that
//# the client can read that reply.
pub(crate) async fn linger_close(stream: &mut TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = sleep_until(Instant::now() + LINGER);
    tokio::pin!(deadline);
    let mut discarded = 0;
    while discarded < LINGER_MAX_BYTES {
        tokio::select! {
            read = std::future::poll_fn(|cx| poll_discard(stream, cx)) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            },
            () = &mut deadline => return,
        }
    }
}

/// Reads and drops what the client still sends, into the per-thread buffer:
/// a buffer in the task itself would cost every connection its size for its
/// whole life.
fn poll_discard(stream: &mut TcpStream, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let mut read = ReadBuf::new(scratch);
        Pin::new(stream)
            .poll_read(cx, &mut read)
            .map_ok(|()| read.filled().len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::log_writer::LogOptions;

    /// Every connection keeps its task for its whole life, idle or not: the
    /// task must stay small (no buffers inside it).
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _, _keeper) = LogWriter::open(LogOptions {
            path: dir.path().join("m.log"),
            format: LogFormat::Text,
            fsync: false,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (_stop, stopped) = watch::channel(false);
        let connection = Connection::new(
            stream,
            peer,
            log,
            Arc::new(Limits::default()),
            LogFormat::Text,
            Arc::new(Stats::default()),
        );
        let task = connection.run(stopped);
        let size = std::mem::size_of_val(&task);
        // About 1.1 KiB in a debug build, less in release; a read buffer in
        // the task would add at least 4 KiB.
        assert!(size < 2048, "a connection task takes {size} bytes");
        drop((task, client));
    }
}
