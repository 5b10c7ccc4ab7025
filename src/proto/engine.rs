//! The session engine: one connection's whole protocol, without IO.
//!
//! The shell feeds it what happened (`handle_input`, `handle_eof`,
//! `handle_timeout`, `handle_shutdown`, `append_done`, `transmitted`) and
//! carries out what it asks for: records to append (through an
//! [`AppendSink`]), reply bytes to send (`poll_transmit`), when to wake it
//! (`poll_timeout`), and when and how to close (`poll_close`). Time comes in
//! as an argument; the engine never reads a clock. Every decision of the
//! spec about a connection is made here: framing, pipelining, the state
//! table (through [`step`]), backpressure, timeouts and shutdown.
//!
//! The shell is expected to read only while [`Engine::wants_input`] says
//! so: that is what keeps a connection's memory bounded (spec: #backpressure).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::assembler::FrameAssembler;
use super::frame::FrameError;
use super::machine::{fail, step, Effect, Response, State, Violation};

/// A reply buffer above this size is given back once its bytes are sent.
const REPLIES_KEEP: usize = 1024;

/// What a connection is held to; the same for every connection of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Largest payload accepted; at most 65535.
    pub max_payload: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// Where the records of accepted messages go. The shell encodes them in the
/// log's format into the batch it hands to the log; the engine decides which
/// messages are appended, and when.
pub trait AppendSink {
    fn append(&mut self, name: &[u8], message: &[u8]);
}

/// Why a connection ended, for diagnostics and for how to close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client sent CLOSE; it was confirmed with 0x00.
    Closed,
    /// A transaction broke a rule; it got 0xFF.
    Rejected(Violation),
    /// The client ended its stream at a frame boundary.
    ClientEnded,
    /// The client ended its stream with this many bytes of a frame pending.
    ClientEndedMidFrame { buffered: usize },
    /// An authenticated client sent nothing for the idle timeout.
    IdleTimeout,
    /// The client did not read its replies within the idle timeout.
    NotReading,
    /// The server shut down with the connection at a frame boundary.
    Shutdown,
    /// The server shut down while the client was not reading its replies;
    /// the shutdown timeout ended the wait.
    ShutdownNotReading,
}

impl End {
    /// Whether to close gracefully: shut down the sending side and drain
    /// what the client still sends, so that the last reply is not lost to a
    /// reset. Pointless when the client has gone or does not read.
    pub fn lingers(&self) -> bool {
        match self {
            End::Closed | End::Rejected(_) | End::IdleTimeout | End::Shutdown => true,
            End::ClientEnded
            | End::ClientEndedMidFrame { .. }
            | End::NotReading
            | End::ShutdownNotReading => false,
        }
    }
}

/// The deadlines a connection can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The shutdown timeout, from the shutdown.
    Shutdown,
    /// NAME and PASS, from the accept.
    Handshake,
    /// The rest of a frame in progress, from its start.
    Frame,
    /// The next frame of an authenticated client, from its last bytes.
    Idle,
    /// The client reading its replies, from when they were ready.
    NotReading,
}

/// What one `handle_input` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Processed {
    /// Frames completed (and answered or left to the append's outcome).
    pub frames: usize,
    /// Messages handed to the sink; their acks wait for `append_done`.
    pub appended: u64,
    /// Payload bytes of those messages.
    pub appended_bytes: u64,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Engine {
    state: State,
    frames: FrameAssembler,
    /// Replies not yet handed to the shell's socket.
    replies: Vec<u8>,
    /// Index in `replies` of the first ack of the batch whose records the
    /// log is writing; `Some` while that append is outstanding.
    append_pending: Option<usize>,
    end: Option<End>,
    /// The client ended its stream.
    input_ended: bool,
    /// Bytes that arrived after the close and were never processed.
    ignored: u64,
    accepted: Instant,
    last_input: Instant,
    /// When the frame in progress started to wait for its rest.
    partial_since: Option<Instant>,
    /// Since when replies have been waiting for the client to read them.
    replies_since: Option<Instant>,
    /// Set by a shutdown that found work in progress: when it must end.
    shutdown_deadline: Option<Instant>,
    settings: Arc<Settings>,
}

impl Engine {
    /// A connection accepted at `now`.
    pub fn new(settings: Arc<Settings>, now: Instant) -> Self {
        Engine {
            //= spec/protocol.md#states
            //# The server MUST start each connection in state C.
            state: State::Connected,
            frames: FrameAssembler::new(settings.max_payload),
            replies: Vec::new(),
            append_pending: None,
            end: None,
            input_ended: false,
            ignored: 0,
            accepted: now,
            last_input: now,
            partial_since: None,
            replies_since: None,
            shutdown_deadline: None,
            settings,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Bytes held as the start of an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.frames.buffered()
    }

    /// How many more bytes the frame in progress needs at least; 0 at a
    /// frame boundary.
    pub fn needed(&self) -> usize {
        self.frames.needed()
    }

    /// Why the connection ended, once it has.
    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// Bytes that arrived after the close and were not processed.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Whether the shell should read from the client now.
    //= spec/protocol.md#backpressure
    //# The server MUST NOT read more frames from a connection while
    //# replies to earlier frames wait to be sent on it.
    pub fn wants_input(&self) -> bool {
        self.end.is_none()
            && !self.input_ended
            && self.append_pending.is_none()
            && self.replies.is_empty()
    }

    /// Takes bytes as they came from the client, in any chunking: every
    /// complete frame among them is run through the state table in order,
    /// records go to `sink`, replies wait in the engine. When records were
    /// appended, their replies wait for [`append_done`](Self::append_done).
    //= spec/protocol.md#acknowledgement
    //# The server MUST process pipelined frames, sent without waiting for replies, in the order they arrived.
    //= spec/protocol.md#acknowledgement
    //# The server MUST send the replies of a connection in the order of the frames they answer.
    pub fn handle_input(
        &mut self,
        input: &[u8],
        now: Instant,
        sink: &mut impl AppendSink,
    ) -> Processed {
        debug_assert!(
            self.append_pending.is_none(),
            "input while an append is outstanding"
        );
        let mut processed = Processed::default();
        if self.end.is_some() {
            self.ignored += input.len() as u64;
            return processed;
        }
        self.last_input = now;
        let Engine {
            state,
            frames,
            replies,
            append_pending,
            end,
            ..
        } = self;
        let fed = frames.feed(input, |frame| {
            let taken = std::mem::replace(state, State::Closed);
            let (next, response, effect) = match frame {
                Ok(frame) => step(taken, frame),
                //= spec/protocol.md#limits
                //# A server with a lower payload limit MUST reject a frame whose length field exceeds that limit as soon as the length field is read, without reading the payload.
                Err(FrameError::PayloadOverLimit { len, max }) => {
                    fail(taken, Violation::PayloadOverLimit { len, max })
                }
            };
            *state = next;
            match effect {
                Some(Effect::Append { name, message }) => {
                    append_pending.get_or_insert(replies.len());
                    sink.append(&name, message);
                    processed.appended += 1;
                    processed.appended_bytes += message.len() as u64;
                }
                Some(Effect::Close) => {
                    *end = Some(match response {
                        Response::Reject(violation) => End::Rejected(violation),
                        Response::Ack | Response::Silent => End::Closed,
                    });
                }
                None => {}
            }
            replies.extend(response.byte());
            if end.is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        processed.frames = fed.frames;
        //= spec/protocol.md#states
        //# Once a connection is closed, the server MUST NOT process any
        //# further bytes from it.
        self.ignored += fed.left as u64;
        if self.frames.is_at_boundary() {
            self.partial_since = None;
        } else if fed.frames > 0 || self.partial_since.is_none() {
            // A new frame started waiting for its rest.
            self.partial_since = Some(now);
        }
        self.replies_waiting(now);
        self.shut_down_if_done();
        processed
    }

    /// The log's verdict on the records of the last `handle_input`. On
    /// failure, the batch's first MSG gets 0xFF and the replies after it are
    /// dropped: nothing of the batch is in the log.
    pub fn append_done(&mut self, result: Result<(), ()>, now: Instant) {
        let Some(first_ack) = self.append_pending.take() else {
            debug_assert!(false, "append_done without an outstanding append");
            return;
        };
        if result.is_err() {
            self.replies.truncate(first_ack);
            self.frames.clear();
            self.reject_in_progress(Violation::AppendFailed);
        }
        self.replies_waiting(now);
        self.shut_down_if_done();
    }

    /// The client ended its stream.
    //= spec/protocol.md#end-of-stream
    //# If the stream ends at a frame boundary, the server MUST close the
    //# connection without sending anything.
    //= spec/protocol.md#end-of-stream
    //# If the stream ends in the middle of a frame, the server MUST
    //# discard the partial frame without replying or writing to the log.
    pub fn handle_eof(&mut self) {
        self.input_ended = true;
        if self.end.is_some() {
            return;
        }
        let buffered = self.frames.buffered();
        self.frames.clear();
        self.state = State::Closed;
        self.end = Some(if buffered == 0 {
            End::ClientEnded
        } else {
            End::ClientEndedMidFrame { buffered }
        });
    }

    /// The server is shutting down: a connection at a frame boundary closes
    /// now; one with a frame in progress (or replies, or an append, still
    /// outstanding) gets the shutdown timeout to finish.
    //= spec/protocol.md#shutdown
    //# On SIGINT or SIGTERM the server MUST stop accepting connections and let each connection finish the frame in progress within the shutdown timeout.
    pub fn handle_shutdown(&mut self, now: Instant) {
        if self.poll_close().is_some() || self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(now + self.settings.shutdown_timeout);
        self.shut_down_if_done();
    }

    /// When the shell must call [`handle_timeout`](Self::handle_timeout)
    /// next, if the connection waits for anything that can time out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers().map(|(at, _)| at).min()
    }

    /// Time has come to `now`: applies the timeout that is due, if any.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = self
            .timers()
            .filter(|&(at, _)| at <= now)
            .min_by_key(|&(at, _)| at);
        let Some((_, timer)) = due else {
            return;
        };
        match timer {
            Timer::Shutdown if !self.replies.is_empty() => self.abandon(End::ShutdownNotReading),
            //= spec/protocol.md#shutdown
            //# A connection whose frame in progress does not complete within the shutdown timeout MUST get 0xFF and be closed.
            Timer::Shutdown => self.reject_in_progress(Violation::ShuttingDown),
            //= spec/protocol.md#timeouts
            //# The server MUST close a connection that has not completed NAME and
            //# PASS within the handshake timeout, replying 0xFF.
            Timer::Handshake => self.reject_in_progress(Violation::HandshakeTimeout),
            //= spec/protocol.md#timeouts
            //# The server MUST close a connection whose frame stays incomplete for longer than the handshake timeout, replying 0xFF.
            Timer::Frame => self.reject_in_progress(Violation::FrameTimeout),
            //= spec/protocol.md#timeouts
            //# The server MUST close an authenticated connection that sends nothing for
            //# the idle timeout.
            Timer::Idle => {
                self.state = State::Closed;
                self.end = Some(End::IdleTimeout);
            }
            //= spec/protocol.md#backpressure
            //# The server MAY close a connection whose client has not read its waiting replies within the idle timeout.
            Timer::NotReading => self.abandon(End::NotReading),
        }
        self.replies_waiting(now);
    }

    /// Every deadline that applies now, with what it ends.
    fn timers(&self) -> impl Iterator<Item = (Instant, Timer)> {
        let s = &self.settings;
        // While the log writes this connection's records, nothing of the
        // client's is awaited: the log answers.
        let live = self.append_pending.is_none();
        let open = live && self.end.is_none();
        let handshaking = matches!(self.state, State::Connected | State::Named { .. });
        let replies = self.replies_since.filter(|_| live);
        let shutdown = self
            .shutdown_deadline
            .filter(|_| live && (open || replies.is_some()));
        let handshake = (open && handshaking).then(|| self.accepted + s.handshake_timeout);
        let frame = self
            .partial_since
            .filter(|_| open && !handshaking)
            .map(|since| since + s.handshake_timeout);
        let idle = (open && !handshaking && frame.is_none() && replies.is_none())
            .then(|| self.last_input + s.idle_timeout);
        [
            (shutdown, Timer::Shutdown),
            (handshake, Timer::Handshake),
            (frame, Timer::Frame),
            (idle, Timer::Idle),
            (
                replies.map(|since| since + s.idle_timeout),
                Timer::NotReading,
            ),
        ]
        .into_iter()
        .filter_map(|(at, timer)| at.map(|at| (at, timer)))
    }

    /// Reply bytes to send now, in order. Empty while the log has not yet
    /// taken the records they acknowledge.
    //= spec/protocol.md#acknowledgement
    //# The server MUST send the 0x00 for a MSG only after the write(2) that
    //# appends its record to the log has returned.
    pub fn poll_transmit(&self) -> &[u8] {
        if self.append_pending.is_some() {
            return &[];
        }
        &self.replies
    }

    /// The shell sent the first `n` bytes `poll_transmit` gave.
    pub fn transmitted(&mut self, n: usize, now: Instant) {
        self.replies.drain(..n.min(self.replies.len()));
        if self.replies.is_empty() {
            self.replies_since = None;
            if self.replies.capacity() > REPLIES_KEEP {
                self.replies = Vec::new();
            }
            self.shut_down_if_done();
        } else {
            // The client read some: the wait starts again.
            self.replies_since = Some(now);
        }
    }

    /// How the connection ends, once every reply is sent: the shell then
    /// closes the socket (gracefully if [`End::lingers`]) and drops the engine.
    pub fn poll_close(&self) -> Option<End> {
        let end = self.end?;
        (self.append_pending.is_none() && self.replies.is_empty()).then_some(end)
    }

    /// Replies just became sendable: the client's time to read them starts.
    fn replies_waiting(&mut self, now: Instant) {
        if self.append_pending.is_none() && !self.replies.is_empty() {
            self.replies_since.get_or_insert(now);
        }
    }

    /// Rejects the transaction in progress (a frame not yet complete, an
    /// append that failed, a handshake not done) with 0xFF, and closes.
    fn reject_in_progress(&mut self, violation: Violation) {
        let taken = std::mem::replace(&mut self.state, State::Closed);
        let (next, response, _) = fail(taken, violation);
        self.state = next;
        self.replies.extend(response.byte());
        self.frames.clear();
        self.partial_since = None;
        if let Response::Reject(v) = response {
            self.end = Some(End::Rejected(v));
        }
    }

    /// Closes without another reply: the client is not reading them anyway.
    fn abandon(&mut self, end: End) {
        self.replies.clear();
        self.replies_since = None;
        self.frames.clear();
        self.state = State::Closed;
        self.end.get_or_insert(end);
    }

    /// During a shutdown, a connection closes as soon as it is at a frame
    /// boundary with nothing outstanding.
    //= spec/protocol.md#shutdown
    //# The server MUST NOT exit before every record it accepted was written to the log.
    fn shut_down_if_done(&mut self) {
        let idle = self.frames.is_at_boundary()
            && self.append_pending.is_none()
            && self.replies.is_empty();
        if self.shutdown_deadline.is_some() && self.end.is_none() && idle {
            self.state = State::Closed;
            self.end = Some(End::Shutdown);
        }
    }
}
