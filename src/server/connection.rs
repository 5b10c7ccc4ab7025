//! One connection: read -> parse -> step -> append -> reply -> close.
//! Every protocol decision is the core's; this file only carries them out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::proto::frame::{parse_frame_limited, Parsed, HEADER_LEN};
use crate::proto::machine::{fail, step, Effect, Response, State, Violation};
use crate::proto::record::encode_record;
use crate::proto::{encode_json_record, JsonContext, LogFormat};

use super::log_writer::LogWriter;
use super::{Limits, Stats};

/// Smallest read: big enough for a window of small pipelined frames.
const READ_CHUNK: usize = 4096;
/// A buffer this large is given back once it is empty, so a connection that
/// once sent a 64 KiB message does not keep 64 KiB while idle.
const SHRINK_ABOVE: usize = 16 * 1024;
/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so its last reply is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 1 << 20;

pub(crate) struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    buf: BytesMut,
    replies: Vec<u8>,
    records: Vec<u8>,
    log: LogWriter,
    limits: Arc<Limits>,
    log_format: LogFormat,
    /// The peer address as the JSON log writes it; made once.
    peer_text: String,
    stats: Arc<Stats>,
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
            records: Vec::new(),
            log,
            limits,
            log_format,
            peer_text: match log_format {
                LogFormat::Jsonl => peer.to_string(),
                LogFormat::Text => String::new(),
            },
            stats,
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
        let mut shutdown_deadline: Option<Instant> = None;
        let mut partial_since: Option<Instant> = None;
        loop {
            let end = self.process_buffered().await;
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
            }
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
                partial_since = Some(Instant::now());
            }

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
                (_, None) => (Instant::now() + self.limits.idle_timeout, None),
            };
            let deadline = shutdown_deadline.map_or(deadline, |s| s.min(deadline));

            let needed = match parse_frame_limited(&self.buf, self.limits.max_payload) {
                Ok(Parsed::Partial { needed }) => needed,
                _ => 0,
            };
            self.buf.reserve(needed.max(READ_CHUNK));
            tokio::select! {
                read = self.stream.read_buf(&mut self.buf) => match read {
                    //= spec/protocol.md#end-of-stream
                    //# If the stream ends at a frame boundary, the server MUST close the
                    //# connection without sending anything.
                    Ok(0) if self.buf.is_empty() => return End::ClientEnded,
                    //= spec/protocol.md#end-of-stream
                    //# If the stream ends in the middle of a frame, the server MUST
                    //# discard the partial frame without replying or writing to the log.
                    Ok(0) => return End::ClientEndedMidFrame(self.buf.len()),
                    Ok(_) => {}
                    Err(e) => return End::Io(e),
                },
                () = sleep_until(deadline) => {
                    //= spec/protocol.md#shutdown
                    //# A connection whose frame in progress does not complete within the
                    //# shutdown timeout MUST get 0xFF and be closed.
                    if shutdown_deadline.is_some_and(|s| s <= Instant::now()) {
                        return self.reject(Violation::ShuttingDown).await;
                    }
                    return match on_timeout {
                        Some(v) => self.reject(v).await,
                        None => End::IdleTimeout,
                    };
                }
                changed = shutdown.changed(), if shutdown_deadline.is_none() => {
                    let _ = changed;
                    if self.buf.is_empty() {
                        return End::Shutdown;
                    }
                    // Let the frame in progress finish, within the shutdown timeout.
                    shutdown_deadline = Some(Instant::now() + self.limits.shutdown_timeout);
                }
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

    /// Runs every complete frame in the buffer through the core, appends the
    /// batch's records in one request, and leaves the replies in
    /// `self.replies` in frame order. Returns how the connection ends, if it does.
    async fn process_buffered(&mut self) -> Option<End> {
        let mut end = None;
        // Index in `replies` of the first MSG ack of this batch: if the append
        // fails, that MSG is the one rejected and nothing after it is replied.
        let mut first_append_reply = None;
        let (mut appended, mut appended_bytes) = (0u64, 0u64);
        // Made at most once per batch: the clock is read here, not in the core.
        let mut json_context: Option<JsonContext> = None;
        while !self.state.is_closed() {
            let state = std::mem::replace(&mut self.state, State::Closed);
            let (next, response, effect, consumed) =
                match parse_frame_limited(&self.buf, self.limits.max_payload) {
                    Ok(Parsed::Complete { frame, len }) => {
                        let (next, response, effect) = step(state, frame);
                        let effect = match effect {
                            Some(Effect::Append { name, message }) => {
                                first_append_reply.get_or_insert(self.replies.len());
                                appended += 1;
                                appended_bytes += message.len() as u64;
                                match self.log_format {
                                    LogFormat::Text => {
                                        encode_record(&mut self.records, &name, message)
                                    }
                                    LogFormat::Jsonl => {
                                        let context =
                                            json_context.get_or_insert_with(|| JsonContext {
                                                timestamp: JsonContext::timestamp_of(
                                                    SystemTime::now(),
                                                ),
                                                peer: self.peer_text.clone(),
                                            });
                                        encode_json_record(
                                            &mut self.records,
                                            context,
                                            &name,
                                            message,
                                        );
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
            self.buf.advance(consumed);
            self.state = next;
            self.replies.extend(response.byte());
            match response {
                Response::Reject(v) => end = Some(End::Rejected(v)),
                Response::Ack if effect.is_some() => end = Some(End::Closed),
                _ => {}
            }
        }
        if self.state.is_closed() {
            // Bytes after the closing frame are never processed.
            self.buf.clear();
        }

        if let Some(first) = first_append_reply {
            let records = std::mem::take(&mut self.records);
            //= spec/protocol.md#acknowledgement
            //# The server MUST send the 0x00 for a MSG only after the write(2) that
            //# appends its record to the log has returned.
            match self.log.append(records).await {
                Ok(buffer) => {
                    self.records = buffer;
                    self.stats.appended(appended, appended_bytes);
                    // A batch of large messages leaves a large buffer; do not keep it idle.
                    if self.records.capacity() > SHRINK_ABOVE {
                        self.records = Vec::new();
                    }
                }
                Err((buffer, error)) => {
                    self.records = buffer;
                    tracing::warn!(peer = %self.peer, error = %error, "append failed; rejecting the message");
                    self.replies.truncate(first);
                    let state = std::mem::replace(&mut self.state, State::Closed);
                    let (next, response, _) = fail(state, Violation::AppendFailed);
                    self.state = next;
                    self.replies.extend(response.byte());
                    self.buf.clear();
                    return Some(End::Rejected(Violation::AppendFailed));
                }
            }
        }
        end
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
    let deadline = Instant::now() + LINGER;
    let mut discarded = 0;
    let mut scratch = [0u8; 4096];
    while discarded < LINGER_MAX_BYTES {
        tokio::select! {
            read = stream.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            },
            () = sleep_until(deadline) => return,
        }
    }
}
