//! The checking server of `conform client`: a strict server on 127.0.0.1
//! that answers as msglog's session engine does (the same engine the server
//! runs), records every byte of every connection, and can play fault
//! scenarios through the engine's own events: a password verdict, a failed
//! append.
//!
//! Rejections wait for a short quiet period before the 0xFF is written, so
//! that frames a pipelining client already had in flight are not taken for
//! traffic after the 0xFF. After its last reply the server half-closes and
//! keeps recording what the client still sends, for a bounded time.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use crate::proto::engine::{AppendFailure, AppendSink, End, Engine, PasswordCheck, Settings};
use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::machine::reference_rule_accepts;
use crate::proto::{encode_record, ACK};

use super::judge::{CheckerReply, ClientTranscript, ReplyCause, ServerEnd, ServerEndKind};

/// Client bytes kept per connection; more are counted, not kept.
const MAX_RECORDED: usize = 8 << 20;
/// How long the server keeps recording after its last reply.
const LINGER: Duration = Duration::from_secs(1);
/// A 0xFF waits until the client has been silent this long...
const QUIET: Duration = Duration::from_millis(50);
/// ...but no longer than this.
const QUIET_MAX: Duration = Duration::from_millis(500);

/// A fault the checking server plays, chosen with `--scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `reject-password`: answer every PASS with 0xFF, whatever the password.
    RejectPassword,
    /// `reject-message=N`: answer the Nth MSG of the run (1-based) with 0xFF.
    RejectMessage(usize),
    /// `delay-acks=MS`: send every reply MS milliseconds late.
    DelayAcks(u64),
    /// `close-mid-session`: close the first connection that sends a MSG
    /// right after that MSG arrives, without replying or logging it.
    CloseMidSession,
}

/// The scenario names, for help texts and errors.
pub const SCENARIO_NAMES: &str =
    "reject-password, reject-message=N, delay-acks=MS, close-mid-session";

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |v: &str, what: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{what} in `{s}` must be a whole number, got `{v}`"))
        };
        match s.split_once('=') {
            None if s == "reject-password" => Ok(Scenario::RejectPassword),
            None if s == "close-mid-session" => Ok(Scenario::CloseMidSession),
            Some(("reject-message", n)) => match number(n, "N")? {
                0 => Err("reject-message=N counts messages from 1; use N >= 1".into()),
                n => Ok(Scenario::RejectMessage(n as usize)),
            },
            Some(("delay-acks", ms)) => match number(ms, "MS")? {
                ms if ms > 60_000 => Err(format!(
                    "delay-acks={ms} is over a minute; use at most 60000 milliseconds"
                )),
                ms => Ok(Scenario::DelayAcks(ms)),
            },
            _ => Err(format!(
                "unknown scenario `{s}`; the scenarios are {SCENARIO_NAMES}"
            )),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::RejectPassword => write!(f, "reject-password"),
            Scenario::RejectMessage(n) => write!(f, "reject-message={n}"),
            Scenario::DelayAcks(ms) => write!(f, "delay-acks={ms}"),
            Scenario::CloseMidSession => write!(f, "close-mid-session"),
        }
    }
}

/// Something a scenario did, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioEvent {
    pub scenario: Scenario,
    pub connection: usize,
    pub frame: usize,
    /// The payload of the frame it acted on.
    pub payload: Vec<u8>,
}

/// What one connection left behind.
#[derive(Debug, Clone, Default)]
pub struct RecordedConnection {
    pub transcript: ClientTranscript,
    /// Replies still waiting (delay-acks) when the client ended its stream.
    pub unanswered_at_client_eof: usize,
}

#[derive(Default)]
struct Shared {
    scenarios: Vec<Scenario>,
    accepted_messages: AtomicUsize,
    dropped_one: AtomicBool,
    log: Mutex<Vec<u8>>,
    events: Mutex<Vec<ScenarioEvent>>,
}

impl Shared {
    fn has(&self, want: impl Fn(&Scenario) -> bool) -> Option<Scenario> {
        self.scenarios.iter().copied().find(|s| want(s))
    }

    fn delay(&self) -> Duration {
        self.scenarios
            .iter()
            .find_map(|s| match s {
                Scenario::DelayAcks(ms) => Some(Duration::from_millis(*ms)),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn event(&self, scenario: Scenario, connection: usize, frame: usize, payload: &[u8]) {
        if let Ok(mut events) = self.events.lock() {
            events.push(ScenarioEvent {
                scenario,
                connection,
                frame,
                payload: payload.to_vec(),
            });
        }
    }
}

/// Everything the checking server saw, once it has stopped.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// Connections in accept order.
    pub connections: Vec<RecordedConnection>,
    /// The log a server would have written, in the server's record format.
    pub log: Vec<u8>,
    pub events: Vec<ScenarioEvent>,
}

/// A running checking server.
pub struct CheckingServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<RecordedConnection>>,
    shared: Arc<Shared>,
}

impl CheckingServer {
    /// Binds 127.0.0.1:`port` (0: a free port) and starts accepting.
    pub async fn start(port: u16, scenarios: Vec<Scenario>) -> std::io::Result<CheckingServer> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            scenarios,
            ..Shared::default()
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        Ok(CheckingServer {
            addr,
            stop,
            task,
            shared,
        })
    }

    /// Stops accepting, gives open connections `GRACE` to end by
    /// themselves, ends the rest, and returns what was recorded.
    pub async fn finish(self) -> Recording {
        let _ = self.stop.send(true);
        let connections = self.task.await.unwrap_or_default();
        let log = self
            .shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        let events = self
            .shared
            .events
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        Recording {
            connections,
            log,
            events,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Vec<RecordedConnection> {
    let mut tasks = JoinSet::new();
    let mut next_id = 0;
    // Connections are told to end a grace period after the run ends.
    let (end_tx, end_rx) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _peer)) = accepted {
                    next_id += 1;
                    tasks.spawn(Connection::new(next_id, stream, shared.clone()).run(end_rx.clone()));
                }
            }
            _ = stop.changed() => break,
        }
    }
    // A connection the command made just before it exited may still wait
    // in the backlog.
    while let Ok(Ok((stream, _))) = tokio::time::timeout(BACKLOG_DRAIN, listener.accept()).await {
        next_id += 1;
        tasks.spawn(Connection::new(next_id, stream, shared.clone()).run(end_rx.clone()));
    }
    drop(listener);
    let ended = async {
        let mut records = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Ok(r) = r {
                records.push(r);
            }
        }
        records
    };
    tokio::pin!(ended);
    let mut records = tokio::select! {
        r = &mut ended => r,
        () = tokio::time::sleep(GRACE) => {
            let _ = end_tx.send(true);
            ended.await
        }
    };
    records.sort_by_key(|r| r.transcript.id);
    records
}

/// How long to look for connections still in the backlog after the command exited.
const BACKLOG_DRAIN: Duration = Duration::from_millis(20);

/// Time open connections get, after the command exited, to end by themselves.
pub const GRACE: Duration = Duration::from_millis(1500);

/// A reply (or a drop) waiting to be written.
struct Pending {
    due: Instant,
    /// A closing reply waits for the client to fall quiet, up to this.
    latest: Instant,
    reply: Option<CheckerReply>,
    end: Option<ServerEndKind>,
}

struct Connection {
    id: usize,
    stream: TcpStream,
    shared: Arc<Shared>,
    accepted: Instant,
    engine: Engine,
    /// The scenario `close-mid-session` dropped this connection.
    dropped: bool,
    frames: usize,
    queue: VecDeque<Pending>,
    record: RecordedConnection,
    last_read: Instant,
}

impl Connection {
    fn new(id: usize, stream: TcpStream, shared: Arc<Shared>) -> Self {
        let _ = stream.set_nodelay(true);
        let now = Instant::now();
        Connection {
            id,
            stream,
            shared,
            accepted: now,
            engine: Engine::new(Arc::new(engine_settings()), now.into_std()),
            dropped: false,
            frames: 0,
            queue: VecDeque::new(),
            record: RecordedConnection {
                transcript: ClientTranscript {
                    id,
                    ..ClientTranscript::default()
                },
                unanswered_at_client_eof: 0,
            },
            last_read: now,
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.accepted).as_millis()).unwrap_or(u64::MAX)
    }

    fn received(&self) -> usize {
        self.record.transcript.received.len() + self.record.transcript.not_recorded
    }

    async fn run(mut self, mut end: watch::Receiver<bool>) -> RecordedConnection {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut reading = true;
        let mut linger_until: Option<Instant> = None;
        loop {
            if !reading && self.queue.is_empty() {
                break;
            }
            if linger_until.is_some_and(|l| l <= Instant::now()) {
                break;
            }
            let next_due = self.queue.front().map(|p| p.due);
            tokio::select! {
                read = self.stream.read(&mut chunk), if reading => match read {
                    Ok(0) | Err(_) => {
                        reading = false;
                        self.record.transcript.client_eof = true;
                        self.record.unanswered_at_client_eof =
                            self.queue.iter().filter(|p| p.reply.is_some()).count();
                        if linger_until.is_some() {
                            break;
                        }
                    }
                    Ok(n) => {
                        self.last_read = Instant::now();
                        self.record.transcript.last_byte_ms = self.ms(self.last_read);
                        let t = &mut self.record.transcript;
                        let keep = n.min(MAX_RECORDED.saturating_sub(t.received.len()));
                        t.received.extend_from_slice(&chunk[..keep]);
                        t.not_recorded += n - keep;
                        if !self.dropped {
                            self.process(&chunk[..n]);
                        }
                    }
                },
                () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    if let Some(l) = self.write_due().await {
                        linger_until = Some(l);
                        if !reading {
                            break;
                        }
                    }
                }
                () = sleep_until(linger_until.unwrap_or_else(Instant::now)), if linger_until.is_some() => break,
                _ = end.changed() => break,
            }
        }
        let now = Instant::now();
        self.record.transcript.end_ms = self.ms(now);
        self.record
    }

    /// Writes the reply at the head of the queue, if its time has come.
    /// Returns the end of the linger period once the connection is closed.
    async fn write_due(&mut self) -> Option<Instant> {
        let head = self.queue.front()?;
        let closing = head.end.is_some();
        let now = Instant::now();
        if closing {
            // Let frames already in flight arrive before the 0xFF, so that
            // they are not counted as sent after it.
            let quiet_since = self.last_read + QUIET;
            if quiet_since > now && now < head.latest {
                let due = quiet_since.min(head.latest);
                if let Some(h) = self.queue.front_mut() {
                    h.due = due;
                }
                return None;
            }
        }
        let p = self.queue.pop_front()?;
        if let Some(reply) = p.reply {
            if self.stream.write_all(&[reply.byte]).await.is_err() {
                self.queue.clear();
                return Some(Instant::now());
            }
            self.record.transcript.replies.push(reply);
        }
        let kind = p.end?;
        self.record.transcript.server_end = Some(ServerEnd {
            kind,
            received_before: self.received(),
        });
        self.queue.clear();
        let _ = self.stream.shutdown().await;
        Some(Instant::now() + LINGER)
    }

    /// Runs the bytes through the engine one at a time, so that each call
    /// completes at most one frame: every reply is tied to its frame, and a
    /// scenario acts on exactly the frame it names.
    fn process(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.dropped || self.engine.end().is_some() {
                return;
            }
            let now = Instant::now().into_std();
            let mut appended = Appended(None);
            let processed = self.engine.handle_input(&[byte], now, &mut appended);
            if processed.frames == 0 {
                continue;
            }
            self.frames += 1;
            let (number, id) = (self.frames, self.id);
            let mut scenario_cause = None;
            if let Some(request) = self.engine.take_verify_request() {
                let rejected = self.shared.has(|s| *s == Scenario::RejectPassword);
                if let Some(s) = rejected {
                    self.shared.event(s, id, number, &request.password);
                    scenario_cause = Some(ReplyCause::Scenario("reject-password"));
                }
                let verified = rejected.is_none() && reference_rule_accepts(&request.password);
                self.engine.verify_done(verified, now, &mut appended);
            }
            if let Some((name, message)) = appended.0.take() {
                let shared = &self.shared;
                let drop_it = shared
                    .has(|s| *s == Scenario::CloseMidSession)
                    .filter(|_| !shared.dropped_one.swap(true, Ordering::SeqCst));
                if let Some(s) = drop_it {
                    shared.event(s, id, number, &message);
                    self.dropped = true;
                    self.queue_reply(None, Some(ServerEndKind::Dropped));
                    return;
                }
                let n = shared.accepted_messages.fetch_add(1, Ordering::SeqCst) + 1;
                let rejected = shared.has(|s| *s == Scenario::RejectMessage(n));
                if let Some(s) = rejected {
                    shared.event(s, id, number, &message);
                    scenario_cause = Some(ReplyCause::Scenario("reject-message"));
                } else if let Ok(mut log) = shared.log.lock() {
                    encode_record(&mut log, &name, &message);
                }
                let result = match rejected {
                    Some(_) => Err(AppendFailure::NOTHING_STORED),
                    None => Ok(()),
                };
                self.engine.append_done(result, now);
            }
            let replies = self.engine.poll_transmit().to_vec();
            self.engine.transmitted(replies.len(), now);
            let end = match self.engine.poll_close() {
                Some(End::Rejected(_)) => Some(ServerEndKind::Rejected),
                Some(_) => Some(ServerEndKind::Closed),
                None => None,
            };
            let reply = replies.first().map(|&byte| CheckerReply {
                byte,
                frame: number,
                cause: match (byte, scenario_cause, self.engine.end()) {
                    (ACK, _, _) => ReplyCause::Accepted,
                    (_, Some(cause), _) => cause,
                    (_, None, Some(End::Rejected(v))) => ReplyCause::Rule(v),
                    (_, None, _) => ReplyCause::Accepted,
                },
            });
            self.queue_reply(reply, end);
        }
    }

    fn queue_reply(&mut self, reply: Option<CheckerReply>, end: Option<ServerEndKind>) {
        let due = Instant::now() + self.shared.delay();
        self.queue.push_back(Pending {
            due,
            latest: due + QUIET_MAX,
            reply,
            end,
        });
    }
}

/// The messages the engine appends, one at a time.
struct Appended(Option<(Vec<u8>, Vec<u8>)>);

impl AppendSink for Appended {
    fn append(&mut self, name: &[u8], message: &[u8]) {
        self.0 = Some((name.to_vec(), message.to_vec()));
    }
}

/// The engine of every checking connection: the protocol's limits, the
/// password asked of the checker (so a scenario can refuse it), and no
/// timeouts that could fire within a run.
fn engine_settings() -> Settings {
    Settings {
        max_payload: MAX_PAYLOAD_LEN,
        passwords: PasswordCheck::Asked,
        handshake_timeout: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(3600),
        shutdown_timeout: Duration::from_secs(3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_and_print() {
        for s in [
            "reject-password",
            "reject-message=3",
            "delay-acks=250",
            "close-mid-session",
        ] {
            assert_eq!(s.parse::<Scenario>().unwrap().to_string(), s);
        }
        for bad in ["reject-message=0", "reject-message=x", "delay-acks", "nope"] {
            assert!(bad.parse::<Scenario>().is_err(), "{bad}");
        }
    }
}
