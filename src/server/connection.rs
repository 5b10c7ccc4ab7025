//! One connection's IO: the transport (TCP, or TLS over it; see
//! `transport`), the per-thread scratch buffers,
//! busy-polling, handing records to the log writer, writing replies, and
//! sleeping until the engine's next deadline. Every protocol decision
//! (framing, the state table, pipelining, backpressure, timeouts, shutdown)
//! is the session engine's (`proto::engine`); this file carries them out.
//!
//! Performance: a read goes into a per-thread scratch buffer and the engine
//! takes every complete frame in it without copying; only a trailing partial
//! frame is kept by the engine. The batch's records are encoded into a
//! per-thread buffer and staged with the log in one call, and all its
//! replies leave in one write. An idle connection thus owns no read or record
//! buffer, and the engine gives back its frame and reply buffers beyond a
//! few hundred bytes once they are empty. The timer is re-armed lazily: it only moves earlier when the
//! engine's next deadline does, and when it fires early it moves to the
//! engine's current one.
//!
//! Latency: with few connections, one that has just replied busy-polls its
//! socket for the next frame (reading it directly, yielding between tries)
//! for up to `Limits::busy_poll`, as long as its client has been answering
//! within that time. On a VM, letting the CPU go idle and waking it again
//! costs more than the whole exchange.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::sleep_until;

use crate::proto::engine::{
    AppendFailure, AppendSink, End, Engine, Processed, Settings, VerifyRequest,
};
use crate::proto::machine::Violation;
use crate::proto::record::encode_record;
use crate::proto::{encode_json_record, JsonContext, LogFormat};

use super::budget::{charge_for, read_limit, FrameBudget};
use super::rate::{ConnectionRate, NameBuckets, Rate};
use super::sink::{Encoding, Sink, SinkError, Staged};
use super::tls::TLS_HANDSHAKE_RECORD;
use super::transport::Transport;
use super::{Limits, Stats};

/// Size of each thread's read buffer: one read takes this many bytes of
/// pipelined frames at most.
const SCRATCH_LEN: usize = 64 * 1024;

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

/// Checks passwords for the session engine (spec: #pass): a users file
/// with argon2id, for example. Verification is slow on purpose, so it must
/// not run on the connection's task: the future it returns is awaited
/// beside the connection's timers. `peer` is the client's address and, with
/// mutual TLS, the names its certificate vouches for.
pub trait PasswordVerifier: Send + Sync + std::fmt::Debug + 'static {
    fn verify(&self, request: VerifyRequest, peer: &Peer) -> Verdict;
}

/// Who is at the other end of a connection, as far as the server knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The names the client's certificate vouches for (its subject's common
    /// names, its DNS and URI alternative names), verified against the
    /// server's client CA; empty without TLS or without a client
    /// certificate.
    pub certified_names: Box<[String]>,
}

impl Peer {
    /// A peer known only by its address.
    pub fn plain(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            certified_names: Box::default(),
        }
    }

    /// Whether `name` is exactly one of the certified names.
    pub fn certifies(&self, name: &[u8]) -> bool {
        self.certified_names.iter().any(|n| n.as_bytes() == name)
    }
}

/// A password verdict to come: `true` when the password verifies.
pub type Verdict = Pin<Box<dyn Future<Output = bool> + Send>>;

/// What every connection of a server shares.
pub(crate) struct ServerContext {
    pub sink: Sink,
    /// Asked for every PASS; without one the engine applies the
    /// reference's rule itself.
    pub verifier: Option<Arc<dyn PasswordVerifier>>,
    pub limits: Limits,
    pub settings: Arc<Settings>,
    pub log_format: LogFormat,
    pub stats: Arc<Stats>,
    pub budget: Arc<FrameBudget>,
    /// The rate every connection is held to, if any.
    pub rate: Option<Rate>,
    /// The buckets of the rate every name is held to, if any.
    pub name_rates: Option<Arc<NameBuckets>>,
}

pub(crate) struct Connection<S: Transport> {
    stream: S,
    peer: Peer,
    engine: Engine,
    ctx: Arc<ServerContext>,
    /// The peer address as the JSON log writes it; made once.
    peer_text: Box<str>,
    /// What this connection's partial frame is charged to the budget.
    charged: usize,
    /// Its rate limits; boxed, and only when configured, so that a
    /// connection without them pays one pointer.
    rate: Option<Box<ConnectionRate>>,
    /// Whether to busy-poll for the next frame after replying: true while
    /// the client's next frame has been coming within the busy-poll budget.
    busy_poll_pays: bool,
    /// The first byte the client sent, to tell a TLS client on a plaintext
    /// port in the closing diagnostic.
    first_byte: Option<u8>,
}

impl<S: Transport> Drop for Connection<S> {
    fn drop(&mut self) {
        self.ctx.budget.recharge(self.charged, 0);
    }
}

/// What one read brought.
enum Input {
    /// Bytes, all complete frames in them processed by the engine; `append`
    /// holds the batch's records if it had any.
    Batch {
        append: Option<Staged>,
        processed: Processed,
    },
    /// Nothing was read: the frame budget was spent when the bytes came.
    Deferred,
    /// End of stream.
    Eof,
}

/// How a connection ended, for the closing diagnostic.
enum Outcome {
    Ended(End),
    Io(std::io::Error),
}

/// Encodes each appended message as the sink takes it into the batch.
struct RecordEncoder<'a> {
    records: &'a mut Vec<u8>,
    encoding: Encoding,
    peer: &'a str,
    /// Made at most once per batch: the clock is read here, not in the core.
    json: Option<JsonContext>,
}

impl AppendSink for RecordEncoder<'_> {
    fn append(&mut self, name: &[u8], message: &[u8]) {
        match self.encoding {
            Encoding::Log(LogFormat::Text) => encode_record(self.records, name, message),
            Encoding::Log(LogFormat::Jsonl) => {
                let peer = self.peer;
                let context = self.json.get_or_insert_with(|| JsonContext {
                    timestamp: JsonContext::timestamp_of(SystemTime::now()),
                    peer: peer.to_owned(),
                });
                encode_json_record(self.records, context, name, message);
            }
            #[cfg(feature = "nats")]
            Encoding::Messages => super::nats::encode_message(self.records, name, message),
        }
    }
}

impl<S: Transport> Connection<S> {
    /// A connection accepted at `accepted`: the handshake timeout runs from
    /// then, TLS handshake included.
    pub(crate) fn new(stream: S, peer: Peer, ctx: Arc<ServerContext>, accepted: Instant) -> Self {
        Connection {
            stream,
            peer_text: match ctx.log_format {
                LogFormat::Jsonl => peer.addr.to_string().into(),
                LogFormat::Text => Box::default(),
            },
            peer,
            engine: Engine::new(ctx.settings.clone(), accepted),
            rate: (ctx.rate.is_some() || ctx.name_rates.is_some()).then(|| {
                Box::new(ConnectionRate::new(
                    ctx.rate,
                    ctx.name_rates.clone(),
                    Instant::now(),
                ))
            }),
            ctx,
            charged: 0,
            busy_poll_pays: true,
            first_byte: None,
        }
    }

    /// Charges the budget for what the partial frame holds now.
    //= spec/protocol.md#limits
    //# The memory a server holds in partial frames MUST stay bounded across all connections, whatever the clients send.
    fn settle_budget(&mut self) {
        let charge = charge_for(self.engine.allocated());
        if charge != self.charged {
            self.ctx.budget.recharge(self.charged, charge);
            self.charged = charge;
        }
    }

    /// Reports and counts the accepted connection now, and returns the
    /// future that serves it. Not an `async fn` itself: nesting one future
    /// in another would make every connection's task larger.
    pub(crate) fn run(self, shutdown: watch::Receiver<bool>) -> impl Future<Output = ()> {
        //= spec/protocol.md#diagnostics
        //# The server MUST report each accepted and each closed connection with the peer's address.
        tracing::info!(peer = %self.peer.addr, "connection accepted");
        self.ctx.stats.opened();
        self.run_announced(shutdown)
    }

    /// Serves a connection whose acceptance was already reported and
    /// counted (a TLS connection, after its handshake).
    ///
    /// Not an `async fn`: one of those keeps a second copy of its arguments
    /// (the whole connection) in its future, for every connection.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn run_announced(
        mut self,
        mut shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> {
        async move {
            let outcome = self.serve(&mut shutdown).await;
            self.ctx.stats.closed();
            let peer = self.peer.addr;
            let end = match outcome {
                Outcome::Io(e) => {
                    tracing::info!(peer = %peer, error = %e, "connection failed");
                    return;
                }
                Outcome::Ended(end) => end,
            };
            //= spec/protocol.md#diagnostics
            //# The server MUST report each rejection with the name of the rule that was broken.
            match end {
                //= spec/protocol.md#tls
                //# A server that does not serve TLS MUST answer a TLS handshake record as the unknown tag it is, and report it as a client that speaks TLS.
                End::Rejected(v @ Violation::UnknownTag(TLS_HANDSHAKE_RECORD))
                    if self.first_byte == Some(TLS_HANDSHAKE_RECORD) =>
                {
                    self.ctx.stats.rejected(&v);
                    tracing::warn!(peer = %peer, rule = v.rule(), reason = %v, "connection closed after 0xFF: this looks like a TLS client: start the server with --tls-cert/--tls-key, or connect without TLS")
                }
                End::Rejected(v) => {
                    self.ctx.stats.rejected(&v);
                    tracing::info!(peer = %peer, rule = v.rule(), reason = %v, "connection closed after 0xFF")
                }
                End::ClientEndedMidFrame { buffered } => {
                    tracing::info!(peer = %peer, buffered, "client ended its stream mid-frame; the partial frame was discarded")
                }
                other => tracing::info!(peer = %peer, reason = ?other, "connection closed"),
            }
            if end.lingers() {
                linger_close(&mut self.stream).await;
            } else if matches!(end, End::ClientEnded | End::ClientEndedMidFrame { .. }) {
                self.stream.finish(LINGER).await;
            }
        }
    }

    /// Carries out what the engine asks until it says the connection ends.
    async fn serve(&mut self, shutdown: &mut watch::Receiver<bool>) -> Outcome {
        let mut last_reply = Instant::now();
        // One timer for the whole connection, armed for the engine's earliest
        // deadline; a later deadline leaves it alone (it fires early, and is
        // then moved to the current one).
        let timer = sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        // Created once: registering with the watch on every read would cost
        // a lock shared by all connections.
        let stopping = shutdown.changed();
        tokio::pin!(stopping);
        let mut shutting_down = false;
        // The password check in progress, if a PASS waits for one.
        let mut verdict: Option<Verdict> = None;
        loop {
            if let Some(request) = self.engine.take_verify_request() {
                verdict = Some(match &self.ctx.verifier {
                    Some(verifier) => verifier.verify(request, &self.peer),
                    // Unreachable: without a verifier the engine decides.
                    None => Box::pin(std::future::ready(false)),
                });
            }
            self.settle_budget();
            if let Some(end) = self.engine.poll_close() {
                return Outcome::Ended(end);
            }
            if let Some(deadline) = self.engine.poll_timeout() {
                if armed.is_none_or(|a| deadline < a) {
                    timer
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(deadline));
                    armed = Some(deadline);
                }
            }
            if !self.engine.poll_transmit().is_empty() || self.stream.has_pending_output() {
                // Most often the socket takes the replies at once.
                match self.stream.try_send(self.engine.poll_transmit()) {
                    Ok(n) => {
                        if n > 0 {
                            self.engine.transmitted(n, Instant::now());
                            last_reply = Instant::now();
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Outcome::Io(e),
                }
                tokio::select! {
                    biased;
                    ready = self.stream.send_ready() => {
                        if let Err(e) = ready {
                            return Outcome::Io(e);
                        }
                    }
                    () = &mut timer, if armed.is_some() => {
                        armed = None;
                        self.engine.handle_timeout(Instant::now());
                    }
                    _ = &mut stopping, if !shutting_down => {
                        shutting_down = true;
                        self.engine.handle_shutdown(Instant::now());
                    }
                }
                continue;
            }
            if let Some(pending) = verdict.as_mut() {
                // Nothing is read until the verdict; the handshake timeout
                // and the shutdown still apply.
                tokio::select! {
                    verified = pending => {
                        verdict = None;
                        let input = self.run_engine(|engine, sink| {
                            engine.verify_done(verified, Instant::now(), sink)
                        });
                        if let Some((staged, processed)) = self.carry_out(input) {
                            let result = self.ctx.sink.outcome(staged).await;
                            self.append_settled(result, processed);
                        }
                    }
                    () = &mut timer, if armed.is_some() => {
                        armed = None;
                        self.engine.handle_timeout(Instant::now());
                    }
                    _ = &mut stopping, if !shutting_down => {
                        shutting_down = true;
                        self.engine.handle_shutdown(Instant::now());
                    }
                }
                continue;
            }
            if !self.engine.wants_input() {
                // Not closed, nothing to send, no verdict awaited, and yet no
                // input wanted: the engine never gets here; say so rather
                // than spin or hang.
                return Outcome::Io(std::io::Error::other(
                    "internal error: the session engine waits for nothing",
                ));
            }
            //= spec/protocol.md#limits
            //# A server MAY stop reading from a connection while the memory it holds in partial frames for all connections is at its limit, as long as the connection's timeouts keep running.
            if let Some(Err(ready)) = self.rate_limit() {
                // Over its rate: nothing is read until a token returns, so
                // TCP slows the client down; its timeouts keep running.
                self.ctx.stats.rate_waits.fetch_add(1, Relaxed);
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(ready)) => {}
                    () = &mut timer, if armed.is_some() => {
                        armed = None;
                        self.engine.handle_timeout(Instant::now());
                    }
                    _ = &mut stopping, if !shutting_down => {
                        shutting_down = true;
                        self.engine.handle_shutdown(Instant::now());
                    }
                }
                continue;
            }
            if self.read_limit().is_none() {
                // The budget is spent and this connection holds its share:
                // it waits, its frame timeout running, until memory frees.
                let ctx = self.ctx.clone();
                let budget = &ctx.budget;
                let freed = budget.freed();
                if !budget.spent() {
                    continue;
                }
                tokio::select! {
                    () = freed => {}
                    () = &mut timer, if armed.is_some() => {
                        armed = None;
                        self.engine.handle_timeout(Instant::now());
                    }
                    _ = &mut stopping, if !shutting_down => {
                        shutting_down = true;
                        self.engine.handle_shutdown(Instant::now());
                    }
                }
                continue;
            }
            let busy_poll = self.should_busy_poll();
            let input = tokio::select! {
                // While busy-polling, this future yields after every attempt,
                // so the select polls the timer and the shutdown each time.
                input = self.next_input(busy_poll) => match input {
                    Ok(input) => input,
                    Err(e) => return Outcome::Io(e),
                },
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.engine.handle_timeout(Instant::now());
                    continue;
                }
                _ = &mut stopping, if !shutting_down => {
                    shutting_down = true;
                    self.engine.handle_shutdown(Instant::now());
                    continue;
                }
            };
            let read_at = Instant::now();
            // Busy-polling pays only when the client answers quickly; a slow
            // client is waited for the cheap way until it speeds up again.
            self.busy_poll_pays =
                read_at.saturating_duration_since(last_reply) <= self.ctx.limits.busy_poll;
            if let Some((staged, processed)) = self.carry_out(input) {
                let result = self.ctx.sink.outcome(staged).await;
                self.append_settled(result, processed);
            }
        }
    }

    /// Carries out what one engine call asked for, short of waiting: the end
    /// of the stream, or a batch whose records the sink has and whose
    /// outcome the caller awaits (in `serve` itself: a helper `async fn`
    /// would keep a second copy of the batch in every connection's task).
    fn carry_out(&mut self, input: Input) -> Option<(Staged, Processed)> {
        match input {
            Input::Deferred | Input::Batch { append: None, .. } => None,
            Input::Eof => {
                self.engine.handle_eof();
                None
            }
            Input::Batch {
                append: Some(staged),
                processed,
            } => Some((staged, processed)),
        }
    }

    /// Hands the sink's outcome of a batch to the engine.
    fn append_settled(&mut self, result: Result<(), SinkError>, processed: Processed) {
        match &result {
            Ok(()) => self
                .ctx
                .stats
                .appended(processed.appended, processed.appended_bytes),
            Err(error) => {
                tracing::warn!(peer = %self.peer.addr, error = %error, "append failed; rejecting the message")
            }
        }
        self.engine.append_done(
            result.map_err(|e| AppendFailure { stored: e.stored() }),
            Instant::now(),
        );
    }

    /// Waits for bytes and runs them through the engine, all within one
    /// poll so that the per-thread buffers can be used.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Input>> {
        self.input_from(|stream, scratch| {
            let mut read = ReadBuf::new(scratch);
            match Pin::new(stream).poll_read(cx, &mut read) {
                Poll::Pending => Poll::Pending,
                //= spec/protocol.md#tls
                //# A server MUST take a TLS session that the client ends without close_notify as an end of stream.
                // TLS: the client closed its socket without a close_notify.
                Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(0))
                }
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
        S::BUSY_POLLS && self.busy_poll_pays && self.busy_poll_allowed()
    }

    fn busy_poll_allowed(&self) -> bool {
        !self.ctx.limits.busy_poll.is_zero()
            && self.ctx.stats.connections_open.load(Relaxed)
                <= self.ctx.limits.busy_poll_connections as u64
    }

    /// Reads the socket directly, without waiting for the runtime's readiness
    /// event, until bytes come or the busy-poll budget is spent (`None`).
    /// Between attempts the task yields, so other tasks and the runtime's
    /// own I/O polling still run; the CPU just never goes idle. On a VM an
    /// idle CPU halts, and waking it costs more than the whole exchange.
    async fn busy_poll(&mut self) -> Option<std::io::Result<Input>> {
        let start = Instant::now();
        self.ctx.stats.busy_polls.fetch_add(1, Relaxed);
        loop {
            let polled = self.input_from(|stream, scratch| stream.read_now(scratch));
            if let Poll::Ready(input) = polled {
                self.ctx.stats.busy_poll_hits.fetch_add(1, Relaxed);
                return Some(input);
            }
            if start.elapsed() >= self.ctx.limits.busy_poll || !self.busy_poll_allowed() {
                return None;
            }
            tokio::task::yield_now().await;
        }
    }

    /// How much the next read may take: decided when the read happens, so
    /// that a connection that went to sleep with budget to spare does not
    /// wake up to find it spent and read a whole frame anyway.
    fn read_limit(&mut self) -> Option<usize> {
        let budget = read_limit(
            self.ctx.budget.spent(),
            self.engine.allocated(),
            SCRATCH_LEN,
        )?;
        match self.rate_limit() {
            None => Some(budget),
            Some(Ok(rate)) => Some(budget.min(rate)),
            Some(Err(_)) => None,
        }
    }

    /// What the rate limits let the next read take (`None`: no limits), or
    /// when a token returns.
    //= spec/protocol.md#rate-limits
    //# A server that limits the rate of messages MUST slow a client over its rate down by not reading from it, and MUST NOT reject, drop or lose any of its messages for its rate.
    fn rate_limit(&mut self) -> Option<Result<usize, Instant>> {
        let rate = self.rate.as_mut()?;
        Some(rate.read_limit(self.engine.state().name(), Instant::now()))
    }

    /// Reads once with `read`, as much as the frame budget allows, into the
    /// per-thread buffer, runs the bytes through the engine, and stages the
    /// batch's records with the log.
    fn input_from(
        &mut self,
        read: impl FnOnce(&mut S, &mut [u8]) -> Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<Input>> {
        let Some(limit) = self.read_limit() else {
            return Poll::Ready(Ok(Input::Deferred));
        };
        SCRATCH.with_borrow_mut(|scratch| {
            let len = match read(&mut self.stream, &mut scratch[..limit]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(len)) => len,
            };
            if len == 0 {
                return Poll::Ready(Ok(Input::Eof));
            }
            let bytes = &scratch[..len];
            if self.first_byte.is_none() {
                self.first_byte = Some(bytes[0]);
            }
            Poll::Ready(Ok(self.run_engine(|engine, sink| {
                engine.handle_input(bytes, Instant::now(), sink)
            })))
        })
    }

    /// Runs one engine call with the per-thread record buffer as its sink,
    /// and stages the batch's records with the log in one call: with no
    /// write in progress they are written before this returns.
    fn run_engine(
        &mut self,
        call: impl FnOnce(&mut Engine, &mut RecordEncoder<'_>) -> Processed,
    ) -> Input {
        RECORDS.with_borrow_mut(|records| {
            records.clear();
            let mut encoder = RecordEncoder {
                records,
                encoding: self.ctx.sink.encoding(),
                peer: &self.peer_text,
                json: None,
            };
            let processed = call(&mut self.engine, &mut encoder);
            if processed.logins > 0 {
                self.ctx.stats.logged_in(processed.logins);
            }
            if let Some(rate) = self.rate.as_mut() {
                rate.spend(
                    self.engine.state().name(),
                    processed.appended,
                    Instant::now(),
                );
            }
            let append = (processed.appended > 0).then(|| {
                self.ctx
                    .sink
                    .stage(records, processed.appended, self.peer.addr)
            });
            Input::Batch { append, processed }
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
pub(crate) async fn linger_close<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S) {
    let deadline = sleep_until(tokio::time::Instant::now() + LINGER);
    tokio::pin!(deadline);
    // With TLS the shutdown sends close_notify first, which a client that
    // does not read can hold up: the linger bounds it too.
    tokio::select! {
        shut = stream.shutdown() => if shut.is_err() {
            return;
        },
        () = &mut deadline => return,
    }
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
fn poll_discard<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
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
    use crate::server::log_writer::{LogOptions, LogWriter};

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
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (_stop, stopped) = watch::channel(false);
        let limits = Limits::default();
        let ctx = ServerContext {
            sink: Sink::File {
                log,
                format: LogFormat::Text,
            },
            verifier: None,
            settings: Arc::new(limits.session_settings()),
            limits,
            log_format: LogFormat::Text,
            stats: Arc::new(Stats::default()),
            budget: Arc::new(FrameBudget::new(1 << 20)),
            rate: None,
            name_rates: None,
        };
        let connection = Connection::new(stream, Peer::plain(peer), Arc::new(ctx), Instant::now());
        let task = connection.run(stopped);
        let size = std::mem::size_of_val(&task);
        // About 1.2 KiB, debug or release; the server before the session
        // engine took 1.3 KiB. A read buffer in the task would add 4 KiB, an
        // `async fn` taking the connection by value another copy of it
        // (464 bytes), awaiting a batch in a helper `async fn` two copies of
        // it: each made idle connections cost more.
        assert!(size <= 1280, "a connection task takes {size} bytes");
        drop((task, client));
    }
}
