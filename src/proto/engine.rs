//! The session engine: one connection's whole protocol, without IO.
//!
//! The shell feeds it what happened (`handle_input`, `handle_eof`,
//! `handle_timeout`, `handle_shutdown`, `append_done`, `verify_done`,
//! `transmitted`) and carries out what it asks for: records to append
//! (through an [`AppendSink`]), a password to verify
//! (`take_verify_request`), reply bytes to send (`poll_transmit`), when to
//! wake it (`poll_timeout`), and when and how to close (`poll_close`). Time
//! comes in as an argument; the engine never reads a clock. Every decision
//! of the spec about a connection is made here: framing, pipelining, the
//! state table (through [`step`] and [`verdict`]), backpressure, timeouts
//! and shutdown.
//!
//! The shell is expected to read only while [`Engine::wants_input`] says
//! so: that is what keeps a connection's memory bounded (spec: #backpressure).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::assembler::FrameAssembler;
use super::frame::FrameError;
use super::machine::{
    fail, reference_rule_accepts, step, verdict, Effect, Response, State, Violation,
};

/// A reply buffer above this size is given back once its bytes are sent, so
/// that an idle connection holds next to nothing.
const REPLIES_KEEP: usize = 256;

/// How passwords are verified (spec: #pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordCheck {
    /// The reference's rule (first byte odd), decided inside the engine.
    #[default]
    ReferenceRule,
    /// The shell is asked ([`Engine::take_verify_request`]) and answers
    /// with [`Engine::verify_done`]: a users file, slow on purpose.
    Asked,
}

/// A password to verify for a name.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    pub name: Bytes,
    pub password: Vec<u8>,
}

//= spec/protocol.md#diagnostics
//# At level info and above, diagnostics MUST NOT contain message contents or
//# passwords.
impl std::fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("password", &format_args!("({} bytes)", self.password.len()))
            .finish()
    }
}

/// What a connection is held to; the same for every connection of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Largest payload accepted; at most 65535.
    pub max_payload: usize,
    /// How a PASS is verified.
    pub passwords: PasswordCheck,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// Why the records of a batch were not all appended: how many of its first
/// messages were stored all the same (a file append stores none of a
/// failed batch; a replicated stream may have stored some).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendFailure {
    pub stored: u64,
}

impl AppendFailure {
    /// Nothing of the batch was stored.
    pub const NOTHING_STORED: AppendFailure = AppendFailure { stored: 0 };
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
    /// PASS frames accepted: logins (for the server's counters).
    pub logins: u64,
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
    /// A password for the shell to verify, until it takes it.
    verify: Option<VerifyRequest>,
    /// Bytes that arrived behind a PASS waiting for its verdict.
    held: Vec<u8>,
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
            verify: None,
            held: Vec::new(),
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

    /// Bytes allocated for the frame in progress.
    pub fn allocated(&self) -> usize {
        self.frames.allocated() + self.held.capacity()
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
            && !matches!(self.state, State::Verifying { .. })
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
            self.end.is_some() || self.wants_input(),
            "input the engine did not ask for"
        );
        if self.end.is_some() {
            self.ignored += input.len() as u64;
            return Processed::default();
        }
        self.last_input = now;
        let processed = self.process(input, now, sink);
        self.replies_waiting(now);
        self.shut_down_if_done();
        processed
    }

    /// Runs the complete frames of `input` through the state table, until
    /// the connection closes or a PASS waits for its verdict; the bytes
    /// after such a PASS are held until then.
    fn process(&mut self, input: &[u8], now: Instant, sink: &mut impl AppendSink) -> Processed {
        let mut processed = Processed::default();
        let Engine {
            state,
            frames,
            replies,
            append_pending,
            end,
            verify,
            settings,
            ..
        } = self;
        let fed = frames.feed(input, |frame| {
            let taken = std::mem::replace(state, State::Closed);
            let was_named = matches!(taken, State::Named { .. });
            let (next, mut response, effect) = match frame {
                Ok(frame) => step(taken, frame),
                //= spec/protocol.md#limits
                //# A server with a lower payload limit MUST reject a frame whose length field exceeds that limit as soon as the length field is read, without reading the payload.
                Err(FrameError::PayloadOverLimit { len, max }) => {
                    fail(taken, Violation::PayloadOverLimit { len, max })
                }
            };
            *state = next;
            let mut closing = false;
            match effect {
                Some(Effect::Append { name, message }) => {
                    append_pending.get_or_insert(replies.len());
                    sink.append(&name, message);
                    processed.appended += 1;
                    processed.appended_bytes += message.len() as u64;
                }
                Some(Effect::Verify { name, password }) => match settings.passwords {
                    // The reference's rule is instant: decided here, with no
                    // round trip through the shell.
                    PasswordCheck::ReferenceRule => {
                        let taken = std::mem::replace(state, State::Closed);
                        let (next, verdict_response, verdict_effect) =
                            verdict(taken, reference_rule_accepts(password));
                        *state = next;
                        response = verdict_response;
                        closing = matches!(verdict_effect, Some(Effect::Close));
                    }
                    PasswordCheck::Asked => {
                        *verify = Some(VerifyRequest {
                            name,
                            password: password.to_vec(),
                        })
                    }
                },
                Some(Effect::Close) => closing = true,
                None => {}
            }
            // A login: the PASS verified (the reference's rule decides here).
            if was_named && matches!(state, State::Authenticated { .. }) {
                processed.logins += 1;
            }
            if closing {
                *end = Some(match response {
                    Response::Reject(violation) => End::Rejected(violation),
                    Response::Ack | Response::Pending | Response::Silent => End::Closed,
                });
            }
            replies.extend(response.byte());
            if end.is_some() || matches!(state, State::Verifying { .. }) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        processed.frames = fed.frames;
        let rest = &input[input.len() - fed.left..];
        if matches!(self.state, State::Verifying { .. }) {
            // Pipelined behind the PASS: processed after the verdict, in order.
            self.held.extend_from_slice(rest);
        } else {
            //= spec/protocol.md#states
            //# Once a connection is closed, the server MUST NOT process any
            //# further bytes from it.
            self.ignored += rest.len() as u64;
        }
        if self.frames.is_at_boundary() {
            self.partial_since = None;
        } else if fed.frames > 0 || self.partial_since.is_none() {
            // A new frame started waiting for its rest.
            self.partial_since = Some(now);
        }
        processed
    }

    /// The password the shell must verify, once: a PASS waits for it (only
    /// with [`PasswordCheck::Asked`]).
    pub fn take_verify_request(&mut self) -> Option<VerifyRequest> {
        self.verify.take()
    }

    /// The verdict on the password of [`take_verify_request`](Self::take_verify_request):
    /// the PASS gets its reply, and the frames held behind it are processed.
    /// Ignored once the connection has ended meanwhile (a timeout).
    pub fn verify_done(
        &mut self,
        verified: bool,
        now: Instant,
        sink: &mut impl AppendSink,
    ) -> Processed {
        if !matches!(self.state, State::Verifying { .. }) || self.end.is_some() {
            return Processed::default();
        }
        self.verify = None;
        let taken = std::mem::replace(&mut self.state, State::Closed);
        let (next, response, effect) = verdict(taken, verified);
        self.state = next;
        self.replies.extend(response.byte());
        if let (Some(Effect::Close), Response::Reject(v)) = (effect, response) {
            self.end = Some(End::Rejected(v));
        }
        let held = std::mem::take(&mut self.held);
        let mut processed = if self.end.is_some() {
            self.ignored += held.len() as u64;
            Processed::default()
        } else {
            self.process(&held, now, sink)
        };
        if verified {
            processed.logins += 1;
        }
        self.replies_waiting(now);
        self.shut_down_if_done();
        processed
    }

    /// The log's verdict on the records of the last `handle_input`. On
    /// failure, the first MSG of the batch that was not stored gets 0xFF,
    /// the ones before it their 0x00, and the replies after it are dropped.
    pub fn append_done(&mut self, result: Result<(), AppendFailure>, now: Instant) {
        let Some(first_ack) = self.append_pending.take() else {
            debug_assert!(false, "append_done without an outstanding append");
            return;
        };
        if let Err(AppendFailure { stored }) = result {
            // The first MSG not stored is the transaction that failed,
            // whatever came after it (even a CLOSE): it gets the 0xFF, and
            // the frames after it never happened. The MSGs before it are in
            // the log: their acks stand (the acks of a batch's MSGs are its
            // replies from the first one on).
            //= spec/protocol.md#acknowledgement
            //# When an append fails after the first messages of its batch were stored, the server MUST acknowledge each stored message and reject the first that was not.
            let stored = usize::try_from(stored).unwrap_or(usize::MAX);
            let kept = first_ack.saturating_add(stored).min(self.replies.len());
            let rejected = Response::Reject(Violation::AppendFailed);
            self.replies.truncate(kept);
            self.replies.extend(rejected.byte());
            self.frames.clear();
            self.state = State::Closed;
            self.end = Some(End::Rejected(Violation::AppendFailed));
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
        let handshaking = self.state.is_handshaking();
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
        self.verify = None;
        self.held = Vec::new();
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
            && self.replies.is_empty()
            && !matches!(self.state, State::Verifying { .. });
        if self.shutdown_deadline.is_some() && self.end.is_none() && idle {
            self.state = State::Closed;
            self.end = Some(End::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every timer row of the spec's event table (E5 to E10) on a simulated
    //! clock: `at(ms)` is a point in time, nothing sleeps.

    use super::*;
    use crate::proto::frame::Frame;
    use crate::proto::machine::{ACK, NAK};

    const HANDSHAKE: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(300);
    const SHUTDOWN: Duration = Duration::from_secs(5);

    #[derive(Default)]
    struct Log(Vec<(Vec<u8>, Vec<u8>)>);

    impl AppendSink for Log {
        fn append(&mut self, name: &[u8], message: &[u8]) {
            self.0.push((name.to_vec(), message.to_vec()));
        }
    }

    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn wire(frames: &[Frame<'_>]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.to_bytes().unwrap()).collect()
    }

    fn engine() -> (Engine, Clock, Log) {
        engine_checking(PasswordCheck::ReferenceRule)
    }

    fn engine_checking(passwords: PasswordCheck) -> (Engine, Clock, Log) {
        let clock = Clock(Instant::now());
        let settings = Settings {
            passwords,
            max_payload: 65_535,
            handshake_timeout: HANDSHAKE,
            idle_timeout: IDLE,
            shutdown_timeout: SHUTDOWN,
        };
        (
            Engine::new(Arc::new(settings), clock.at(0)),
            clock,
            Log::default(),
        )
    }

    /// Feeds bytes at `now`, lets the log take every append, and returns
    /// the replies the shell would send then.
    fn feed(e: &mut Engine, bytes: &[u8], now: Instant, log: &mut Log) -> Vec<u8> {
        let processed = e.handle_input(bytes, now, log);
        if processed.appended > 0 {
            e.append_done(Ok(()), now);
        }
        send_all(e, now)
    }

    fn send_all(e: &mut Engine, now: Instant) -> Vec<u8> {
        let out = e.poll_transmit().to_vec();
        e.transmitted(out.len(), now);
        out
    }

    fn logged_in(e: &mut Engine, now: Instant, log: &mut Log) {
        let login = wire(&[Frame::Name(b"u"), Frame::Pass(b"A")]);
        assert_eq!(feed(e, &login, now, log), [ACK, ACK]);
    }

    //= spec/protocol.md#timeouts
    //= type=test
    //# The server MUST close a connection that has not completed NAME and
    //# PASS within the handshake timeout, replying 0xFF.
    #[test]
    fn e5_handshake_timeout_in_c_and_in_n() {
        for named in [false, true] {
            let (mut e, clock, mut log) = engine();
            if named {
                assert_eq!(
                    feed(
                        &mut e,
                        &wire(&[Frame::Name(b"u")]),
                        clock.at(9_000),
                        &mut log
                    ),
                    [ACK]
                );
            }
            // Counted from the accept, whatever arrived since.
            assert_eq!(e.poll_timeout(), Some(clock.at(10_000)));
            e.handle_timeout(clock.at(9_999));
            assert!(e.poll_transmit().is_empty());
            assert!(e.poll_close().is_none());
            e.handle_timeout(clock.at(10_000));
            assert_eq!(send_all(&mut e, clock.at(10_000)), [NAK]);
            assert_eq!(
                e.poll_close(),
                Some(End::Rejected(Violation::HandshakeTimeout))
            );
        }
    }

    //= spec/protocol.md#timeouts
    //= type=test
    //# The server MUST close a connection whose frame stays incomplete for longer than the handshake timeout, replying 0xFF.
    #[test]
    fn e6_frame_timeout_counts_from_the_start_of_each_frame() {
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        let msg = wire(&[Frame::Msg(b"hello")]);
        // A frame completed in time is fine...
        feed(&mut e, &msg[..4], clock.at(1_000), &mut log);
        assert_eq!(e.poll_timeout(), Some(clock.at(11_000)));
        assert_eq!(feed(&mut e, &msg[4..], clock.at(10_999), &mut log), [ACK]);
        // ...and the next one gets its own time, from its first byte.
        feed(&mut e, &msg[..2], clock.at(12_000), &mut log);
        feed(&mut e, &msg[2..5], clock.at(20_000), &mut log);
        assert_eq!(e.poll_timeout(), Some(clock.at(22_000)));
        e.handle_timeout(clock.at(22_000));
        assert_eq!(send_all(&mut e, clock.at(22_000)), [NAK]);
        assert_eq!(e.poll_close(), Some(End::Rejected(Violation::FrameTimeout)));
        assert_eq!(log.0.len(), 1);
    }

    /// A read that completes one frame and starts the next restarts the
    /// frame timeout at that read.
    #[test]
    fn e6_a_frame_started_in_the_read_that_completed_another_gets_its_own_time() {
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        let msg = wire(&[Frame::Msg(b"hello")]);
        feed(&mut e, &msg[..4], clock.at(1_000), &mut log);
        let rest_and_next: Vec<u8> = msg[4..].iter().chain(&msg[..3]).copied().collect();
        assert_eq!(
            feed(&mut e, &rest_and_next, clock.at(9_000), &mut log),
            [ACK]
        );
        assert_eq!(e.poll_timeout(), Some(clock.at(19_000)));
        e.handle_timeout(clock.at(11_000));
        assert!(e.poll_close().is_none());
    }

    //= spec/protocol.md#timeouts
    //= type=test
    //# The server MUST close an authenticated connection that sends nothing for
    //# the idle timeout.
    #[test]
    fn e7_idle_timeout_closes_without_a_reply() {
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(2_000), &mut log);
        assert_eq!(e.poll_timeout(), Some(clock.at(302_000)));
        feed(
            &mut e,
            &wire(&[Frame::Msg(b"x")]),
            clock.at(100_000),
            &mut log,
        );
        // A timer armed for the earlier deadline fires early: nothing happens.
        e.handle_timeout(clock.at(302_000));
        assert!(e.poll_close().is_none());
        assert_eq!(e.poll_timeout(), Some(clock.at(400_000)));
        e.handle_timeout(clock.at(400_000));
        assert!(e.poll_transmit().is_empty());
        assert_eq!(e.poll_close(), Some(End::IdleTimeout));
        assert!(End::IdleTimeout.lingers());
    }

    #[test]
    fn e8_shutdown_at_a_frame_boundary_closes_at_once() {
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        e.handle_shutdown(clock.at(1_000));
        assert!(e.poll_transmit().is_empty());
        assert_eq!(e.poll_close(), Some(End::Shutdown));
    }

    //= spec/protocol.md#shutdown
    //= type=test
    //# On SIGINT or SIGTERM the server MUST stop accepting connections and let each connection finish the frame in progress within the shutdown timeout.
    //= spec/protocol.md#shutdown
    //= type=test
    //# A connection whose frame in progress does not complete within the shutdown timeout MUST get 0xFF and be closed.
    #[test]
    fn e9_shutdown_lets_the_frame_in_progress_finish_in_time() {
        let msg = wire(&[Frame::Msg(b"last words")]);
        // Finished in time: acked and logged, then closed.
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        feed(&mut e, &msg[..5], clock.at(1_000), &mut log);
        e.handle_shutdown(clock.at(2_000));
        assert!(e.poll_close().is_none());
        assert!(e.wants_input());
        assert_eq!(e.poll_timeout(), Some(clock.at(7_000)));
        assert_eq!(feed(&mut e, &msg[5..], clock.at(6_999), &mut log), [ACK]);
        assert_eq!(e.poll_close(), Some(End::Shutdown));
        assert_eq!(log.0, [(b"u".to_vec(), b"last words".to_vec())]);
        // Not finished in time: 0xFF, nothing logged.
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        feed(&mut e, &msg[..5], clock.at(1_000), &mut log);
        e.handle_shutdown(clock.at(2_000));
        e.handle_timeout(clock.at(7_000));
        assert_eq!(send_all(&mut e, clock.at(7_000)), [NAK]);
        assert_eq!(e.poll_close(), Some(End::Rejected(Violation::ShuttingDown)));
        assert!(log.0.is_empty());
    }

    //= spec/protocol.md#backpressure
    //= type=test
    //# The server MUST NOT read more frames from a connection while
    //# replies to earlier frames wait to be sent on it.
    //= spec/protocol.md#backpressure
    //= type=test
    //# The server MAY close a connection whose client has not read its waiting replies within the idle timeout.
    #[test]
    fn e10_a_client_that_does_not_read_its_replies_is_closed() {
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        let burst = wire(&[Frame::Msg(b"a"), Frame::Msg(b"b"), Frame::Msg(b"c")]);
        e.handle_input(&burst, clock.at(1_000), &mut log);
        e.append_done(Ok(()), clock.at(1_000));
        assert!(!e.wants_input());
        // The socket took one reply byte only.
        e.transmitted(1, clock.at(1_000));
        assert_eq!(e.poll_transmit(), [ACK, ACK]);
        assert!(!e.wants_input());
        assert_eq!(e.poll_timeout(), Some(clock.at(301_000)));
        // Reading some restarts the wait.
        e.transmitted(1, clock.at(200_000));
        assert_eq!(e.poll_timeout(), Some(clock.at(500_000)));
        e.handle_timeout(clock.at(500_000));
        assert!(e.poll_transmit().is_empty());
        assert_eq!(e.poll_close(), Some(End::NotReading));
        assert!(!End::NotReading.lingers());
    }

    /// The shutdown timeout bounds a stop even when a client does not read
    /// its replies (it used to wait for the idle timeout).
    #[test]
    fn shutdown_is_bounded_when_the_client_does_not_read() {
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        e.handle_input(&wire(&[Frame::Msg(b"a")]), clock.at(1_000), &mut log);
        e.append_done(Ok(()), clock.at(1_000));
        e.handle_shutdown(clock.at(2_000));
        assert_eq!(e.poll_timeout(), Some(clock.at(7_000)));
        e.handle_timeout(clock.at(7_000));
        assert_eq!(e.poll_close(), Some(End::ShutdownNotReading));
        // The same for a closing reply the client never reads.
        let (mut e, clock, mut log) = engine();
        e.handle_input(&[0xEE], clock.at(0), &mut log);
        e.handle_shutdown(clock.at(1_000));
        assert_eq!(e.poll_timeout(), Some(clock.at(6_000)));
        e.handle_timeout(clock.at(6_000));
        assert_eq!(
            e.poll_close(),
            Some(End::Rejected(Violation::UnknownTag(0xEE)))
        );
        assert!(e.poll_transmit().is_empty());
    }

    //= spec/protocol.md#acknowledgement
    //= type=test
    //# The server MUST send the 0x00 for a MSG only after the write(2) that
    //# appends its record to the log has returned.
    //= spec/protocol.md#msg
    //= type=test
    //# If the record of a MSG cannot be appended, the server MUST reply 0xFF and close the connection.
    #[test]
    fn acks_wait_for_the_log_and_a_failed_append_rejects_its_first_msg() {
        let (mut e, clock, mut log) = engine();
        let stream = wire(&[
            Frame::Name(b"u"),
            Frame::Pass(b"A"),
            Frame::Msg(b"one"),
            Frame::Msg(b"two"),
            Frame::Close,
        ]);
        let processed = e.handle_input(&stream, clock.at(0), &mut log);
        assert_eq!(processed.appended, 2);
        assert_eq!(processed.appended_bytes, 6);
        // Not even the login's replies go before the log answers.
        assert!(e.poll_transmit().is_empty());
        assert_eq!(e.poll_timeout(), None);
        e.append_done(Err(AppendFailure::NOTHING_STORED), clock.at(1));
        assert_eq!(send_all(&mut e, clock.at(1)), [ACK, ACK, NAK]);
        assert_eq!(e.poll_close(), Some(End::Rejected(Violation::AppendFailed)));
    }

    //= spec/protocol.md#acknowledgement
    //= type=test
    //# When an append fails after the first messages of its batch were stored, the server MUST acknowledge each stored message and reject the first that was not.
    #[test]
    fn a_partly_stored_batch_acknowledges_what_was_stored() {
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        let stream = wire(&[
            Frame::Msg(b"one"),
            Frame::Msg(b"two"),
            Frame::Msg(b"three"),
            Frame::Close,
        ]);
        assert_eq!(e.handle_input(&stream, clock.at(1), &mut log).appended, 3);
        e.append_done(Err(AppendFailure { stored: 2 }), clock.at(2));
        assert_eq!(send_all(&mut e, clock.at(2)), [ACK, ACK, NAK]);
        assert_eq!(e.poll_close(), Some(End::Rejected(Violation::AppendFailed)));
    }

    //= spec/protocol.md#end-of-stream
    //= type=test
    //# If the stream ends in the middle of a frame, the server MUST
    //# discard the partial frame without replying or writing to the log.
    //= spec/protocol.md#end-of-stream
    //= type=test
    //# If the stream ends at a frame boundary, the server MUST close the
    //# connection without sending anything.
    #[test]
    fn end_of_stream_at_and_between_frame_boundaries() {
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        feed(&mut e, &[3, 5, 0, b'h'], clock.at(1), &mut log);
        e.handle_eof();
        assert!(e.poll_transmit().is_empty());
        assert_eq!(
            e.poll_close(),
            Some(End::ClientEndedMidFrame { buffered: 4 })
        );
        assert!(log.0.is_empty());
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        e.handle_eof();
        assert_eq!(e.poll_close(), Some(End::ClientEnded));
        assert_eq!(e.poll_timeout(), None);
    }

    #[test]
    fn a_partial_frame_is_held_and_counted() {
        let (mut e, clock, mut log) = engine();
        logged_in(&mut e, clock.at(0), &mut log);
        feed(&mut e, &[3, 10, 0, b'a', b'b'], clock.at(1), &mut log);
        assert_eq!(e.buffered(), 5);
        assert!(e.allocated() >= 5);
        feed(&mut e, b"cdefghij", clock.at(2), &mut log);
        assert_eq!(e.buffered(), 0);
        assert_eq!(log.0, [(b"u".to_vec(), b"abcdefghij".to_vec())]);
    }

    #[test]
    fn bytes_after_the_close_are_counted_not_processed() {
        let (mut e, clock, mut log) = engine();
        let mut stream = wire(&[Frame::Name(b"u"), Frame::Close]);
        stream.extend(wire(&[Frame::Pass(b"A"), Frame::Msg(b"x")]));
        assert_eq!(feed(&mut e, &stream, clock.at(0), &mut log), [ACK, ACK]);
        assert_eq!(e.ignored(), 4 + 4);
        assert_eq!(e.poll_close(), Some(End::Closed));
        assert!(!e.wants_input());
    }

    //= spec/protocol.md#pass
    //= type=test
    //# The server MUST verify a non-empty PASS for the name before it replies, and MUST NOT process any frame after the PASS until the verdict.
    #[test]
    fn frames_behind_a_pass_wait_for_its_verdict_in_order() {
        let (mut e, clock, mut log) = engine_checking(PasswordCheck::Asked);
        let stream = wire(&[
            Frame::Name(b"alice"),
            Frame::Pass(b"Bsecret"),
            Frame::Msg(b"one"),
            Frame::Msg(b"two"),
        ]);
        e.handle_input(&stream, clock.at(0), &mut log);
        // The NAME's reply goes; the PASS's waits, and nothing after it ran.
        assert_eq!(send_all(&mut e, clock.at(0)), [ACK]);
        assert!(!e.wants_input());
        assert!(log.0.is_empty());
        let request = e.take_verify_request().expect("a password to verify");
        assert_eq!(
            (&request.name[..], &request.password[..]),
            (&b"alice"[..], &b"Bsecret"[..])
        );
        assert!(e.take_verify_request().is_none(), "asked once");
        assert!(
            format!("{request:?}").contains("7 bytes"),
            "no password in Debug"
        );
        assert!(
            e.allocated() >= 2 * 6,
            "held bytes count against the budget"
        );
        // The verdict comes; the held MSGs are processed, in order.
        let processed = e.verify_done(true, clock.at(500), &mut log);
        assert_eq!(processed.appended, 2);
        e.append_done(Ok(()), clock.at(500));
        assert_eq!(send_all(&mut e, clock.at(500)), [ACK, ACK, ACK]);
        assert_eq!(
            log.0,
            [
                (b"alice".to_vec(), b"one".to_vec()),
                (b"alice".to_vec(), b"two".to_vec())
            ]
        );
        assert!(e.wants_input());
    }

    //= spec/protocol.md#pass
    //= type=test
    //# The server MUST reply 0x00 to a PASS whose password verifies and move to state P, and MUST reject a PASS whose password does not verify.
    #[test]
    fn a_rejected_password_processes_nothing_after_it() {
        let (mut e, clock, mut log) = engine_checking(PasswordCheck::Asked);
        let stream = wire(&[Frame::Name(b"u"), Frame::Pass(b"Awrong"), Frame::Msg(b"x")]);
        e.handle_input(&stream, clock.at(0), &mut log);
        e.take_verify_request().unwrap();
        e.verify_done(false, clock.at(1), &mut log);
        assert_eq!(send_all(&mut e, clock.at(1)), [ACK, NAK]);
        assert_eq!(
            e.poll_close(),
            Some(End::Rejected(Violation::PasswordRejected))
        );
        assert_eq!(e.ignored(), 4);
        assert!(log.0.is_empty());
    }

    #[test]
    fn a_verdict_nobody_asked_for_changes_nothing() {
        let (mut e, clock, mut log) = engine_checking(PasswordCheck::Asked);
        e.handle_input(&wire(&[Frame::Name(b"u")]), clock.at(0), &mut log);
        send_all(&mut e, clock.at(0));
        let processed = e.verify_done(true, clock.at(1), &mut log);
        assert_eq!((processed.logins, processed.frames), (0, 0));
        assert!(e.poll_transmit().is_empty());
        assert_eq!(e.state().label(), "N");
    }

    #[test]
    fn a_verdict_later_than_the_handshake_timeout_comes_too_late() {
        let (mut e, clock, mut log) = engine_checking(PasswordCheck::Asked);
        e.handle_input(
            &wire(&[Frame::Name(b"u"), Frame::Pass(b"A")]),
            clock.at(0),
            &mut log,
        );
        e.take_verify_request().unwrap();
        assert_eq!(e.poll_timeout(), Some(clock.at(10_000)));
        e.handle_timeout(clock.at(10_000));
        assert_eq!(e.end(), Some(End::Rejected(Violation::HandshakeTimeout)));
        // The verdict arrives after the close: it changes nothing.
        e.verify_done(true, clock.at(10_001), &mut log);
        assert_eq!(send_all(&mut e, clock.at(10_001)), [ACK, NAK]);
        assert_eq!(e.state().label(), "X");
    }

    #[test]
    fn a_shutdown_waits_for_the_verdict_within_its_timeout() {
        let (mut e, clock, mut log) = engine_checking(PasswordCheck::Asked);
        e.handle_input(
            &wire(&[Frame::Name(b"u"), Frame::Pass(b"A")]),
            clock.at(0),
            &mut log,
        );
        e.handle_shutdown(clock.at(100));
        assert!(e.poll_close().is_none());
        e.verify_done(true, clock.at(200), &mut log);
        assert_eq!(send_all(&mut e, clock.at(200)), [ACK, ACK]);
        assert_eq!(e.poll_close(), Some(End::Shutdown));
    }

    /// A login is counted when its PASS is accepted, also when the same
    /// batch goes on to close the connection; a refused PASS is no login.
    #[test]
    fn logins_count_accepted_pass_frames() {
        let (mut e, clock, mut log) = engine();
        let batch = wire(&[
            Frame::Name(b"u"),
            Frame::Pass(b"A"),
            Frame::Msg(b"x"),
            Frame::Close,
        ]);
        let processed = e.handle_input(&batch, clock.at(0), &mut log);
        assert_eq!(processed.logins, 1);
        let (mut e, clock, mut log) = engine();
        let processed = e.handle_input(&wire(&[Frame::Name(b"u")]), clock.at(0), &mut log);
        assert_eq!(processed.logins, 0);
        send_all(&mut e, clock.at(0));
        let processed = e.handle_input(&wire(&[Frame::Pass(b"B")]), clock.at(1), &mut log);
        assert_eq!(processed.logins, 0);
        assert_eq!(e.end(), Some(End::Rejected(Violation::PasswordRejected)));
        // With a verifier, the login counts when the verdict comes.
        let (mut e, clock, mut log) = engine_checking(PasswordCheck::Asked);
        let processed = e.handle_input(
            &wire(&[Frame::Name(b"u"), Frame::Pass(b"pw")]),
            clock.at(0),
            &mut log,
        );
        assert_eq!(processed.logins, 0);
        assert_eq!(e.verify_done(true, clock.at(1), &mut log).logins, 1);
    }
}
