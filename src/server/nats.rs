//! The NATS JetStream sink: each accepted message is published to a
//! replicated stream, and its MSG is acknowledged only once JetStream's
//! publish acknowledgement for it came back (spec: #acknowledgement).
//!
//! A batch's publishes are pipelined: all go out before the first ack is
//! awaited, and the acks are then awaited in order, so a connection pays one
//! round trip per batch, not per message, and many connections' publishes
//! share the client's one TCP connection. Each message carries a
//! de-duplication id (`Nats-Msg-Id`: this process's id and a sequence
//! number), kept across the retries of a publish that got no ack, so that a
//! publish retried after a leader change is stored once. In-flight publishes
//! are capped by a semaphore: a connection waits for permits before it
//! publishes, and while it waits it reads nothing more from its client.
//!
//! The stored message is the payload as the client sent it, with headers
//! for the name (percent-encoded, exact), the peer, the server id and the
//! time the batch was accepted; the subject is `PREFIX.<name token>`.

use std::collections::VecDeque;
use std::fmt;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_nats::{HeaderMap, HeaderName, ServerAddr, Subject};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::proto::JsonContext;
use crate::server::LogStats;

/// Header: the message's name, percent-encoded ([`encode_header_name`]).
pub const HEADER_NAME: &str = "Msglog-Name";
/// Header: the client's address, as the JSON-lines log writes it.
pub const HEADER_PEER: &str = "Msglog-Peer";
/// Header: the id of the msglog process that accepted the message.
pub const HEADER_SERVER: &str = "Msglog-Server";
/// Header: when the message was accepted, as the JSON-lines log writes it.
pub const HEADER_TIMESTAMP: &str = "Msglog-Ts";
/// Header: JetStream's de-duplication id.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header, instead of [`HEADER_NAME`] for a name too long for it: the
/// payload starts with the name, this many bytes, and the message follows.
pub const HEADER_NAME_LENGTH: &str = "Msglog-Name-Length";

/// Characters of a name header at most; a longer name goes into the payload
/// ([`HEADER_NAME_LENGTH`]). JetStream refuses a message whose headers pass
/// 64 KiB, and a 65,535-byte name is up to three times that as a header;
/// this leaves room for the other headers.
pub const MAX_NAME_HEADER: usize = 32 * 1024;

/// Characters of a subject's name token at most; a longer one is cut and
/// ends in `~` (the name header stays exact).
const MAX_NAME_TOKEN: usize = 128;
/// One publish attempt waits this long for its ack at most before it is
/// retried (within the sink timeout).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before a retry, doubled each time up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// The duplicate window of a stream msglog creates: longer than any sink
/// timeout, so that a retried publish is always recognised.
pub const CREATED_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The longest delay between reconnection attempts to the cluster.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Where and how to store messages.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The cluster's servers; the client learns the others from them.
    pub servers: Vec<ServerAddr>,
    pub stream: String,
    /// Messages go to `PREFIX.<name token>`.
    pub subject_prefix: String,
    /// Create the stream if it is missing, with this many replicas.
    pub create_replicas: Option<usize>,
    /// A MSG whose message is not stored within this time gets 0xFF.
    pub timeout: Duration,
    /// Publishes awaiting their ack, across all connections, at most.
    pub max_in_flight: usize,
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsStartError {
    #[error("cannot connect to NATS at {servers}: {source}; check that the servers run and that the addresses are right")]
    Connect {
        servers: String,
        source: async_nats::ConnectError,
    },
    #[error("the JetStream stream {stream:?} does not exist on {servers}; create it (subjects `{prefix}.>`), or pass --nats-create-stream to let msglog create it")]
    StreamMissing {
        stream: String,
        servers: String,
        prefix: String,
    },
    #[error("cannot look up the JetStream stream {stream:?}: {source}; is JetStream enabled on the servers?")]
    Lookup {
        stream: String,
        source: jetstream::context::GetStreamError,
    },
    #[error("cannot create the JetStream stream {stream:?}: {source}")]
    Create {
        stream: String,
        source: jetstream::context::CreateStreamError,
    },
    #[error("the JetStream stream {stream:?} does not take the subject {subject:?} (its subjects: {subjects}); add `{prefix}.>` to its subjects or pass another --nats-subject")]
    SubjectNotCovered {
        stream: String,
        subject: String,
        subjects: String,
        prefix: String,
    },
    #[error("the JetStream stream {stream:?} keeps message ids for {window:?}, less than the sink timeout {timeout:?}: a publish retried after that could be stored twice; raise the stream's duplicate window or lower --sink-timeout")]
    DuplicateWindowTooShort {
        stream: String,
        window: Duration,
        timeout: Duration,
    },
    #[error("the subject prefix {prefix:?} is not a valid NATS subject: give dot-separated tokens of letters, digits, `_` and `-`")]
    BadPrefix { prefix: String },
}

/// A batch whose messages were not all stored: the first `stored` were,
/// the next one failed, and nothing is known of the ones after it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error} (the batch's first {stored} messages were stored)")]
pub struct NatsBatchError {
    pub stored: u64,
    pub error: NatsAppendError,
}

/// Why a message was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NatsAppendError {
    #[error(
        "the NATS cluster did not store the message within the sink timeout of {timeout:?}: {last}"
    )]
    TimedOut { timeout: Duration, last: String },
    #[error("the NATS cluster refused the message: {0}")]
    Refused(String),
    #[error("no publish permit within the sink timeout of {timeout:?}: {in_flight} publishes are waiting for the cluster")]
    Backlog { timeout: Duration, in_flight: usize },
}

/// A `--sink`/`nats://` value: comma-separated servers, each `HOST:PORT`
/// with or without `nats://`.
pub fn parse_servers(text: &str) -> Result<Vec<ServerAddr>, String> {
    let rest = text.strip_prefix("nats://").ok_or_else(|| {
        format!("{text:?} is not a NATS address: give nats://HOST:PORT[,HOST:PORT...]")
    })?;
    let servers = rest
        .split(',')
        .map(|s| {
            let s = s.trim().trim_start_matches("nats://");
            if s.is_empty() {
                return Err(format!(
                    "{text:?} names an empty server: give nats://HOST:PORT[,HOST:PORT...]"
                ));
            }
            ServerAddr::from_str(&format!("nats://{s}"))
                .map_err(|e| format!("{s:?} in {text:?} is not a server address: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(servers)
}

fn servers_text(servers: &[ServerAddr]) -> String {
    servers
        .iter()
        .map(|s| format!("{}:{}", s.host(), s.port()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a byte stays as it is in a subject token.
fn subject_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Whether a byte stays as it is in the name header: printable ASCII but `%`.
fn header_safe(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'%'
}

fn percent_encode(bytes: &[u8], keep: fn(u8) -> bool, out: &mut String) {
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The name as the name header holds it: printable ASCII but `%` as it is,
/// every other byte `%HH` (upper-case hex). Lossless: see [`decode_header_name`].
pub fn encode_header_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    percent_encode(name, header_safe, &mut out);
    out
}

/// Why a name header is not one msglog writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameHeaderError {
    #[error("the name is empty")]
    Empty,
    #[error("`%` at character {0} is not followed by two upper-case hex digits")]
    BadEscape(usize),
    #[error("the name is not in the canonical form msglog writes")]
    NotCanonical,
}

/// The exact name bytes of a name header; only the canonical form
/// [`encode_header_name`] writes is accepted.
pub fn decode_header_name(text: &str) -> Result<Vec<u8>, NameHeaderError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')))
                .ok_or(NameHeaderError::BadEscape(i))?;
            let hex = std::str::from_utf8(hex).map_err(|_| NameHeaderError::BadEscape(i))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| NameHeaderError::BadEscape(i))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.is_empty() {
        return Err(NameHeaderError::Empty);
    }
    if encode_header_name(&out) != text {
        return Err(NameHeaderError::NotCanonical);
    }
    Ok(out)
}

/// The subject a message of `name` is published to: `PREFIX.` and the name
/// with every byte outside `[A-Za-z0-9_-]` as `%HH`; past 128 characters the
/// token is cut (never inside a `%HH`) and ends in `~`, which an uncut token
/// never holds.
pub fn subject_for(prefix: &str, name: &[u8]) -> String {
    let mut token = String::with_capacity(name.len());
    percent_encode(name, subject_safe, &mut token);
    let mut subject = String::with_capacity(prefix.len() + 1 + token.len().min(MAX_NAME_TOKEN + 1));
    subject.push_str(prefix);
    subject.push('.');
    if token.len() <= MAX_NAME_TOKEN {
        subject.push_str(&token);
    } else {
        let mut cut = MAX_NAME_TOKEN;
        // Back off to the start of a `%HH` that the cut would split.
        for back in 1..=2 {
            if token.as_bytes()[cut - back] == b'%' {
                cut -= back;
                break;
            }
        }
        subject.push_str(&token[..cut]);
        subject.push('~');
    }
    subject
}

/// Whether `prefix` is a valid subject prefix: dot-separated non-empty
/// tokens of `[A-Za-z0-9_-]`.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .split('.')
            .all(|t| !t.is_empty() && t.bytes().all(subject_safe))
}

/// Whether the subject filter `filter` (with `*` and `>` wildcards) takes
/// every subject `PREFIX.<token>`.
fn filter_covers_prefix(filter: &str, prefix: &str) -> bool {
    let mut filter = filter.split('.');
    for token in prefix.split('.') {
        match filter.next() {
            Some(">") => return true,
            Some("*") => {}
            Some(t) if t == token => {}
            _ => return false,
        }
    }
    matches!(filter.next(), Some(">") | Some("*")) && filter.next().is_none()
}

/// The headers and payload the sink stores a message with. The headers: the
/// de-duplication id `SERVER_ID-SEQUENCE`, the name ([`encode_header_name`]),
/// the peer, the server id and the time; the payload: the message as sent.
/// A name whose header would pass [`MAX_NAME_HEADER`] characters is instead
/// the payload's first bytes, their number in [`HEADER_NAME_LENGTH`]. Public
/// so that tests and benchmarks store exactly what the sink does.
pub fn stored_form(
    server_id: &str,
    sequence: u64,
    name: &[u8],
    message: Bytes,
    peer: &str,
    timestamp: &str,
) -> (HeaderMap, Bytes) {
    // Static header names and owned values: every allocation here is paid
    // per message, and the sink's throughput is bound by CPU.
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static(HEADER_MSG_ID),
        format!("{server_id}-{sequence}"),
    );
    let encoded = encode_header_name(name);
    let payload = if encoded.len() <= MAX_NAME_HEADER {
        headers.insert(HeaderName::from_static(HEADER_NAME), encoded);
        message
    } else {
        headers.insert(
            HeaderName::from_static(HEADER_NAME_LENGTH),
            name.len().to_string(),
        );
        let mut both = Vec::with_capacity(name.len() + message.len());
        both.extend_from_slice(name);
        both.extend_from_slice(&message);
        Bytes::from(both)
    };
    headers.insert(HeaderName::from_static(HEADER_PEER), peer);
    headers.insert(HeaderName::from_static(HEADER_SERVER), server_id);
    headers.insert(HeaderName::from_static(HEADER_TIMESTAMP), timestamp);
    (headers, payload)
}

/// A message as it was stored, read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub name: Vec<u8>,
    pub message: Bytes,
    pub peer: String,
    pub timestamp: String,
    pub server: String,
}

/// Why a message in the stream is not one msglog stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredMessageError {
    #[error("it has no {0} header")]
    MissingHeader(&'static str),
    #[error("its {HEADER_NAME} header is bad: {0}")]
    BadName(NameHeaderError),
    #[error("its {HEADER_NAME_LENGTH} header is not a length msglog writes: {0:?}")]
    BadNameLength(String),
    #[error("it has both a {HEADER_NAME} and a {HEADER_NAME_LENGTH} header")]
    TwoNames,
    #[error("its message is empty")]
    EmptyMessage,
}

/// Reads a stored message's headers and payload back.
pub fn decode_stored(
    headers: Option<&HeaderMap>,
    payload: Bytes,
) -> Result<StoredMessage, StoredMessageError> {
    let header = |key: &'static str| {
        headers
            .and_then(|h| h.get(key))
            .map(|v| v.as_str().to_owned())
            .ok_or(StoredMessageError::MissingHeader(key))
    };
    let (name, message) = match (header(HEADER_NAME), header(HEADER_NAME_LENGTH)) {
        (Ok(_), Ok(_)) => return Err(StoredMessageError::TwoNames),
        (Ok(name), Err(_)) => (
            decode_header_name(&name).map_err(StoredMessageError::BadName)?,
            payload,
        ),
        (Err(missing), Err(_)) => return Err(missing),
        (Err(_), Ok(length)) => {
            let bad = || StoredMessageError::BadNameLength(length.clone());
            // Only the form msglog writes: decimal without a sign or
            // leading zeros, for a name too long for the name header.
            let len: usize = length
                .parse()
                .ok()
                .filter(|n: &usize| n.to_string() == length)
                .ok_or_else(bad)?;
            if len > payload.len() {
                return Err(bad());
            }
            let name = payload.slice(..len);
            if encode_header_name(&name).len() <= MAX_NAME_HEADER {
                return Err(bad());
            }
            (name.to_vec(), payload.slice(len..))
        }
    };
    if message.is_empty() {
        return Err(StoredMessageError::EmptyMessage);
    }
    Ok(StoredMessage {
        name,
        message,
        peer: header(HEADER_PEER)?,
        timestamp: header(HEADER_TIMESTAMP)?,
        server: header(HEADER_SERVER)?,
    })
}

/// Appends one accepted message to a batch buffer, as [`Batch`] reads it:
/// name length (u32 LE), name, message length (u32 LE), message.
pub fn encode_message(out: &mut Vec<u8>, name: &[u8], message: &[u8]) {
    for part in [name, message] {
        let len = u32::try_from(part.len()).expect("a frame payload fits in u32");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(part);
    }
}

/// The messages of a batch buffer, each as (name, message) slices of it.
fn decode_messages(bytes: &Bytes) -> impl Iterator<Item = (Bytes, Bytes)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let mut part = || {
            let len_bytes: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
            let len = u32::from_le_bytes(len_bytes) as usize;
            let part = bytes.slice(at + 4..at + 4 + len);
            at += 4 + len;
            Some(part)
        };
        Some((part()?, part()?))
    })
}

/// A batch of accepted messages, ready to publish.
pub(crate) struct Batch {
    messages: Bytes,
    count: usize,
    peer: SocketAddr,
}

/// The NATS sink; one for the whole server.
pub struct NatsSink {
    jetstream: jetstream::Context,
    prefix: String,
    /// This process's id: the first part of every de-duplication id.
    server_id: String,
    next_sequence: AtomicU64,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    timeout: Duration,
    /// How long one publish attempt waits for its ack (the client's own
    /// timeout on it).
    attempt: Duration,
    health: Arc<Health>,
    created_stream: bool,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("prefix", &self.prefix)
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

/// One publish: what it sends again if it is retried. The headers are made
/// from it at each attempt ([`stored_form`]), the same each time.
struct Outgoing {
    subject: Subject,
    name: Bytes,
    message: Bytes,
    sequence: u64,
    /// When this message's time is up.
    deadline: Instant,
}

/// What a batch's messages share: the peer and the time it was accepted.
struct Accepted {
    peer: String,
    timestamp: String,
}

/// A publish awaiting its ack, holding its permit.
struct InFlight {
    outgoing: Outgoing,
    ack: Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>,
    _permit: OwnedSemaphorePermit,
}

impl NatsSink {
    /// The sink's counters: whether publishes fail, for metrics and
    /// readiness.
    pub fn stats(&self) -> Arc<LogStats> {
        self.health.stats.clone()
    }

    /// Connects to the cluster and finds (or creates) the stream.
    pub async fn connect(options: &NatsOptions) -> Result<NatsSink, NatsStartError> {
        if !valid_prefix(&options.subject_prefix) {
            return Err(NatsStartError::BadPrefix {
                prefix: options.subject_prefix.clone(),
            });
        }
        let servers = servers_text(&options.servers);
        let health = Arc::new(Health::default());
        let events = health.clone();
        let client = async_nats::ConnectOptions::new()
            .name("msglog")
            .reconnect_delay_callback(|attempts| {
                (FIRST_BACKOFF * attempts.min(20) as u32).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let events = events.clone();
                async move { events.connection_event(event) }
            })
            .connect(options.servers.clone())
            .await
            .map_err(|source| NatsStartError::Connect {
                servers: servers.clone(),
                source,
            })?;
        let attempt = ATTEMPT_TIMEOUT.min(options.timeout);
        let jetstream = jetstream::context::ContextBuilder::new()
            .timeout(attempt)
            // msglog's own permits bound what is in flight; a publish whose
            // wait was given up keeps the client's permit until its ack
            // timeout, hence the margin.
            .max_ack_inflight(options.max_in_flight.saturating_mul(4))
            .backpressure_on_inflight(true)
            .ack_timeout(attempt)
            .build(client);
        let stream_name = &options.stream;
        let lookup = jetstream.get_stream(stream_name).await;
        let mut created_stream = false;
        let stream = match lookup {
            Ok(stream) => stream,
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                let Some(replicas) = options.create_replicas else {
                    return Err(NatsStartError::StreamMissing {
                        stream: stream_name.clone(),
                        servers,
                        prefix: options.subject_prefix.clone(),
                    });
                };
                let created = jetstream
                    .create_stream(stream::Config {
                        name: stream_name.clone(),
                        subjects: vec![format!("{}.>", options.subject_prefix)],
                        storage: stream::StorageType::File,
                        num_replicas: replicas,
                        duplicate_window: CREATED_DUPLICATE_WINDOW,
                        ..Default::default()
                    })
                    .await
                    .map_err(|source| NatsStartError::Create {
                        stream: stream_name.clone(),
                        source,
                    })?;
                created_stream = true;
                created
            }
            Err(source) => {
                return Err(NatsStartError::Lookup {
                    stream: stream_name.clone(),
                    source,
                })
            }
        };
        let config = &stream.cached_info().config;
        if !config
            .subjects
            .iter()
            .any(|f| filter_covers_prefix(f, &options.subject_prefix))
        {
            return Err(NatsStartError::SubjectNotCovered {
                stream: stream_name.clone(),
                subject: format!("{}.>", options.subject_prefix),
                subjects: config.subjects.join(", "),
                prefix: options.subject_prefix.clone(),
            });
        }
        if config.duplicate_window < options.timeout {
            return Err(NatsStartError::DuplicateWindowTooShort {
                stream: stream_name.clone(),
                window: config.duplicate_window,
                timeout: options.timeout,
            });
        }
        Ok(NatsSink {
            jetstream,
            prefix: options.subject_prefix.clone(),
            server_id: process_id(),
            next_sequence: AtomicU64::new(0),
            permits: Arc::new(Semaphore::new(options.max_in_flight)),
            max_in_flight: options.max_in_flight,
            timeout: options.timeout,
            attempt,
            health,
            created_stream,
        })
    }

    /// Whether the stream was missing and this sink created it.
    pub fn created_stream(&self) -> bool {
        self.created_stream
    }

    /// This process's id, as the messages' `Msglog-Server` header holds it.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Takes a batch buffer of [`encode_message`]s; nothing is sent yet.
    pub(crate) fn stage(&self, messages: &[u8], count: u64, peer: SocketAddr) -> Batch {
        Batch {
            messages: Bytes::copy_from_slice(messages),
            count: usize::try_from(count).unwrap_or(usize::MAX),
            peer,
        }
    }

    /// Publishes a batch and returns once every message of it is stored
    /// (`Ok`), or once one of them is found not to be within the timeout.
    //= spec/protocol.md#acknowledgement
    //# With the NATS sink, the server MUST send the 0x00 for a MSG only after
    //# JetStream's publish acknowledgement for its message has arrived.
    pub(crate) async fn store(&self, batch: Batch) -> Result<(), NatsBatchError> {
        let mut stored = 0;
        self.store_counting(batch, &mut stored)
            .await
            .map_err(|error| NatsBatchError { stored, error })
    }

    /// [`store`](Self::store), counting the messages stored in order before
    /// a failure.
    async fn store_counting(&self, batch: Batch, stored: &mut u64) -> Result<(), NatsAppendError> {
        let accepted = Accepted {
            peer: batch.peer.to_string(),
            timestamp: JsonContext::timestamp_of(SystemTime::now()),
        };
        // A connection has one name: its subject is made once per batch.
        let mut subject: Option<(Bytes, Subject)> = None;
        let first = self
            .next_sequence
            .fetch_add(batch.count as u64, Ordering::Relaxed);
        let mut pending: VecDeque<InFlight> = VecDeque::with_capacity(batch.count);
        for (sequence, (name, message)) in (first..).zip(decode_messages(&batch.messages)) {
            let permit = loop {
                match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => break permit,
                    // Our own oldest publish frees a permit once settled.
                    Err(_) if !pending.is_empty() => {
                        let oldest = pending.pop_front().expect("not empty");
                        self.settle(oldest, &accepted).await?;
                        *stored += 1;
                    }
                    //= spec/protocol.md#backpressure
                    //# With the NATS sink, the server MUST bound the publishes awaiting their
                    //# acknowledgement, and MUST NOT read more frames from a connection while
                    //# its messages wait for room.
                    Err(_) => {
                        match tokio::time::timeout(
                            self.timeout,
                            self.permits.clone().acquire_owned(),
                        )
                        .await
                        {
                            Ok(Ok(permit)) => break permit,
                            _ => {
                                return Err(NatsAppendError::Backlog {
                                    timeout: self.timeout,
                                    in_flight: self.max_in_flight,
                                })
                            }
                        }
                    }
                }
            };
            let subject = match &subject {
                Some((for_name, subject)) if *for_name == name => subject.clone(),
                _ => {
                    let made = Subject::from(subject_for(&self.prefix, &name));
                    subject.insert((name.clone(), made)).1.clone()
                }
            };
            //= spec/protocol.md#acknowledgement
            //# With the NATS sink, each message MUST carry a de-duplication id that
            //# stays the same when its publish is retried.
            // The sequence is taken once here; a retry sends the same `Outgoing`.
            let outgoing = Outgoing {
                subject,
                name,
                message,
                sequence,
                deadline: Instant::now() + self.timeout,
            };
            let ack = self.publish(&outgoing, &accepted).await;
            pending.push_back(InFlight {
                outgoing,
                ack,
                _permit: permit,
            });
        }
        while let Some(in_flight) = pending.pop_front() {
            self.settle(in_flight, &accepted).await?;
            *stored += 1;
        }
        Ok(())
    }

    async fn publish(
        &self,
        outgoing: &Outgoing,
        accepted: &Accepted,
    ) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
        let (headers, payload) = stored_form(
            &self.server_id,
            outgoing.sequence,
            &outgoing.name,
            outgoing.message.clone(),
            &accepted.peer,
            &accepted.timestamp,
        );
        let publish = jetstream::message::PublishMessage::build()
            .headers(headers)
            .payload(payload);
        match tokio::time::timeout_at(
            outgoing.deadline.into(),
            self.jetstream
                .send_publish(outgoing.subject.clone(), publish),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(PublishErrorKind::TimedOut.into()),
        }
    }

    /// Waits for one publish's ack, retrying it (same id) until its deadline.
    async fn settle(
        &self,
        in_flight: InFlight,
        accepted: &Accepted,
    ) -> Result<(), NatsAppendError> {
        let InFlight {
            outgoing,
            mut ack,
            _permit,
        } = in_flight;
        let mut backoff = FIRST_BACKOFF;
        // Held from this message's first failure until it is settled.
        let mut troubled: Option<Troubled<'_>> = None;
        loop {
            let result = match ack {
                // The client times the wait out itself after one attempt's
                // time; a second timer is needed only when the deadline
                // comes first.
                Ok(future) if Instant::now() + self.attempt <= outgoing.deadline => future.await,
                Ok(future) => {
                    match tokio::time::timeout_at(outgoing.deadline.into(), future.into_future())
                        .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(PublishErrorKind::TimedOut.into()),
                    }
                }
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(_) => {
                    drop(troubled);
                    self.health.stored();
                    return Ok(());
                }
                Err(e) => e,
            };
            if troubled.is_none() {
                troubled = Some(self.health.troubled());
            }
            // The cluster answered with a JetStream error: it will not store
            // this message however often it is sent.
            if error.kind() == PublishErrorKind::Other
                && std::error::Error::source(&error).is_some_and(|s| s.is::<jetstream::Error>())
            {
                self.health.failed(&error, self.timeout);
                return Err(NatsAppendError::Refused(error.to_string()));
            }
            self.health.failed(&error, self.timeout);
            let now = Instant::now();
            //= spec/protocol.md#durability
            //# With the NATS sink, the server MUST answer 0xFF to a MSG whose message the
            //# stream has not acknowledged within the sink timeout, and close the connection.
            // The error fails the batch: the engine answers 0xFF and closes.
            if now + backoff >= outgoing.deadline {
                return Err(NatsAppendError::TimedOut {
                    timeout: self.timeout,
                    last: error.to_string(),
                });
            }
            //= spec/protocol.md#acknowledgement
            //# With the NATS sink, the server SHOULD retry a publish that got no
            //# acknowledgement, with the same de-duplication id, until the sink timeout.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            ack = self.publish(&outgoing, accepted).await;
        }
    }
}

/// A process id unique enough across front-ends and restarts: the process
/// id and the start time in nanoseconds, both in hex.
fn process_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// Whether the cluster takes messages, to report a failure once per
/// episode and its end.
#[derive(Default)]
struct Health {
    /// Set while publishes fail: checked on every stored message, so that
    /// the healthy path takes no lock.
    failing: AtomicBool,
    /// Messages that failed at least once and are not settled yet: the
    /// episode ends only once none is left, so that the stragglers of an
    /// outage do not report it over and over.
    troubled: AtomicU64,
    episode: Mutex<Option<Episode>>,
    /// The first connection is made before the server says it listens, and
    /// goes unreported; later ones are reconnections.
    connected_before: AtomicBool,
    /// The sink's counters for metrics and readiness: failing while an
    /// episode lasts, one write error per failed attempt.
    stats: Arc<LogStats>,
}

/// A message that failed at least once, until it is settled (or dropped).
struct Troubled<'a>(&'a Health);

impl Drop for Troubled<'_> {
    fn drop(&mut self) {
        self.0.troubled.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Episode {
    since: Instant,
    failed_attempts: u64,
}

impl Health {
    fn failed(&self, error: &dyn fmt::Display, timeout: Duration) {
        self.stats.write_failed();
        let mut episode = self.episode.lock().unwrap_or_else(|p| p.into_inner());
        match episode.as_mut() {
            Some(e) => e.failed_attempts += 1,
            None => {
                //= spec/protocol.md#diagnostics
                //# With the NATS sink, the server MUST report once when publishes start
                //# failing, with the reason, and once when the cluster stores messages again.
                tracing::warn!(error = %error, timeout = ?timeout, "the NATS cluster is not storing messages; retrying each until the sink timeout, then answering 0xFF");
                self.stats.set_failing(true);
                *episode = Some(Episode {
                    since: Instant::now(),
                    failed_attempts: 1,
                });
                self.failing.store(true, Ordering::Relaxed);
            }
        }
    }

    fn troubled(&self) -> Troubled<'_> {
        self.troubled.fetch_add(1, Ordering::Relaxed);
        Troubled(self)
    }

    fn stored(&self) {
        if !self.failing.load(Ordering::Relaxed) || self.troubled.load(Ordering::Relaxed) > 0 {
            return;
        }
        let mut episode = self.episode.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = episode.take() {
            self.failing.store(false, Ordering::Relaxed);
            self.stats.set_failing(false);
            tracing::info!(
                after = ?e.since.elapsed(),
                failed_attempts = e.failed_attempts,
                "the NATS cluster stores messages again"
            );
        }
    }

    fn connection_event(&self, event: async_nats::Event) {
        match event {
            async_nats::Event::Connected => {
                if self.connected_before.swap(true, Ordering::Relaxed) {
                    tracing::info!("reconnected to the NATS cluster")
                }
            }
            async_nats::Event::Disconnected => {
                tracing::warn!("lost the connection to the NATS cluster; reconnecting")
            }
            async_nats::Event::Closed => {}
            other => tracing::warn!(event = %other, "NATS client event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_header_exactly() {
        for name in [
            &b"alice"[..],
            b"a b",
            b"100%",
            b"\x00\xff\r\n",
            "h\u{e9}llo".as_bytes(),
            b"[x]: y",
        ] {
            let header = encode_header_name(name);
            assert!(header.bytes().all(|b| b.is_ascii_graphic()), "{header}");
            assert_eq!(decode_header_name(&header).unwrap(), name);
        }
        assert_eq!(encode_header_name(b"a b%"), "a%20b%25");
    }

    #[test]
    fn only_the_canonical_name_header_is_read() {
        assert_eq!(decode_header_name(""), Err(NameHeaderError::Empty));
        assert_eq!(
            decode_header_name("a%2"),
            Err(NameHeaderError::BadEscape(1))
        );
        assert_eq!(
            decode_header_name("a%2f"),
            Err(NameHeaderError::BadEscape(1))
        );
        assert_eq!(
            decode_header_name("%61"),
            Err(NameHeaderError::NotCanonical)
        );
    }

    #[test]
    fn subjects_hold_only_safe_tokens_and_long_names_are_cut_at_an_escape() {
        assert_eq!(subject_for("msglog", b"alice_1-x"), "msglog.alice_1-x");
        assert_eq!(subject_for("m.x", b"a.b*>c d"), "m.x.a%2Eb%2A%3Ec%20d");
        assert_eq!(subject_for("m", b"\xff"), "m.%FF");
        let long = subject_for("m", &[b'.'; 100]);
        let token = long.strip_prefix("m.").unwrap();
        assert!(token.ends_with('~'));
        assert_eq!(token.len(), 126 + 1, "42 whole escapes and the mark");
        for len in 120..140 {
            let name = vec![b'a'; len];
            let mut name2 = name.clone();
            name2.insert(len / 2, b'.');
            for n in [name, name2] {
                let s = subject_for("m", &n);
                let token = s.strip_prefix("m.").unwrap();
                assert!(token.len() <= MAX_NAME_TOKEN + 1);
                assert!(!token.contains('.') && !token.contains('*') && !token.contains('>'));
                let body = token.trim_end_matches('~');
                assert!(body.split('%').skip(1).all(|esc| esc.len() >= 2), "{token}");
            }
        }
    }

    #[test]
    fn prefixes_and_stream_filters() {
        assert!(valid_prefix("msglog"));
        assert!(valid_prefix("a.b-c"));
        for bad in ["", "a.", ".a", "a b", "a.*", "a.>"] {
            assert!(!valid_prefix(bad), "{bad}");
        }
        assert!(filter_covers_prefix("msglog.>", "msglog"));
        assert!(filter_covers_prefix(">", "msglog"));
        assert!(filter_covers_prefix("*.>", "msglog"));
        assert!(filter_covers_prefix("a.*.>", "a.b"));
        assert!(!filter_covers_prefix("msglog.*.x", "msglog"));
        assert!(!filter_covers_prefix("msglog", "msglog"));
        assert!(!filter_covers_prefix("other.>", "msglog"));
        assert!(!filter_covers_prefix("msglog.a", "msglog"));
    }

    #[test]
    fn a_batch_buffer_gives_back_its_messages() {
        let mut buf = Vec::new();
        encode_message(&mut buf, b"n1", b"hello");
        encode_message(&mut buf, b"\x00", &[0xff; 300]);
        let bytes = Bytes::from(buf);
        let got: Vec<_> = decode_messages(&bytes).collect();
        assert_eq!(
            got,
            [
                (Bytes::from_static(b"n1"), Bytes::from_static(b"hello")),
                (Bytes::from_static(b"\x00"), Bytes::from(vec![0xff; 300])),
            ]
        );
    }

    #[test]
    fn server_addresses_are_parsed_or_refused_with_the_form() {
        let s = parse_servers("nats://127.0.0.1:4222,localhost:4223").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[1].host(), s[1].port()), ("localhost", 4223));
        assert!(parse_servers("127.0.0.1:4222")
            .unwrap_err()
            .contains("nats://HOST:PORT"));
        assert!(parse_servers("nats://a:1,,b:2")
            .unwrap_err()
            .contains("empty server"));
    }

    #[test]
    fn a_name_too_long_for_its_header_goes_into_the_payload_and_back() {
        let read = |(headers, payload): (HeaderMap, Bytes)| decode_stored(Some(&headers), payload);
        // Escaped, 3 characters a byte: the longest name that fits, and one more.
        let fits = vec![0xFF; MAX_NAME_HEADER / 3];
        let long = vec![0xFF; MAX_NAME_HEADER / 3 + 1];
        for (name, in_header) in [
            (fits, true),
            (long, false),
            (vec![b'n'; MAX_NAME_HEADER], true),
            (vec![b'n'; 65_535], false),
        ] {
            let message = Bytes::from_static(b"hello");
            let (headers, payload) = stored_form("s", 7, &name, message.clone(), "p", "t");
            assert_eq!(headers.get(HEADER_NAME).is_some(), in_header);
            assert_eq!(headers.get(HEADER_NAME_LENGTH).is_none(), in_header);
            // A standard header: looked up by its HeaderName, as a `&str`
            // key would make a custom one.
            let id = headers.get(HeaderName::from_static(HEADER_MSG_ID));
            assert_eq!(id.unwrap().as_str(), "s-7");
            assert_eq!(payload == message, in_header);
            let got = read((headers, payload)).unwrap();
            assert!(got.name == name && got.message == message);
        }
        let (mut headers, payload) =
            stored_form("s", 1, &[b'n'; 65_535], Bytes::from_static(b"m"), "p", "t");
        let length = |headers: &mut HeaderMap, value: &str| {
            headers.insert(HEADER_NAME_LENGTH, value);
            read((headers.clone(), payload.clone()))
        };
        for bad in ["065535", "+65535", "65537", "x", "", "1"] {
            assert_eq!(
                length(&mut headers, bad),
                Err(StoredMessageError::BadNameLength(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            length(&mut headers, "65536"),
            Err(StoredMessageError::EmptyMessage)
        );
        headers.insert(HEADER_NAME_LENGTH, "65535");
        headers.insert(HEADER_NAME, "n");
        assert_eq!(read((headers, payload)), Err(StoredMessageError::TwoNames));
    }

    #[test]
    fn a_stored_message_needs_msglogs_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_NAME, "a%20b");
        headers.insert(HEADER_PEER, "127.0.0.1:5");
        headers.insert(HEADER_TIMESTAMP, "2026-01-01T00:00:00.000000Z");
        headers.insert(HEADER_SERVER, "x");
        let got = decode_stored(Some(&headers), Bytes::from_static(b"m")).unwrap();
        assert_eq!(got.name, b"a b");
        assert_eq!(
            decode_stored(None, Bytes::from_static(b"m")),
            Err(StoredMessageError::MissingHeader(HEADER_NAME))
        );
        assert_eq!(
            decode_stored(Some(&headers), Bytes::new()),
            Err(StoredMessageError::EmptyMessage)
        );
    }
}
