//! `msglog conform server`: runs the spec's session vectors and probes that
//! need timing or many connections against a live server, and judges each
//! against the spec. Traffic goes only to the one address given; every
//! connection is bounded in time, and the number of connections is fixed by
//! the vectors and the options.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout, Instant};

use crate::proto::frame::{parse_frame, Frame, Parsed, HEADER_LEN};
use crate::proto::{decode_record, json_records, records, LogFormat};

use super::report::{hex, ConformReport, Failure, Tally};
use super::rules::{
    section_rule, violation_rule, Rule, ACKNOWLEDGEMENT, FRAME, LIMITS, LOG_FORMAT_JSONL,
    MSG_RECORDS, RECORD_FORMAT, REPLIES, SERVER_RULES,
};
use super::vectors::{ClosedBy, SessionVector};
use super::ConformError;

/// Vector runs in flight at once.
const PARALLEL: usize = 32;
/// Connections being opened at once by the concurrency probe.
const PARALLEL_CONNECTS: usize = 64;
/// Vectors up to this long are also sent one byte per write.
const BYTEWISE_UP_TO: usize = 1024;
/// Pause between the writes of a split vector, so that the server reads
/// each piece on its own.
const SPLIT_PAUSE: Duration = Duration::from_millis(1);
/// In one-byte-per-write runs, the first bytes of each frame are each
/// written after a pause...
const BYTEWISE_PAUSED_HEAD: usize = 6;
/// ...and then every this many bytes.
const BYTEWISE_PAUSE_EVERY: usize = 32;
/// Messages of the pipelining probe.
const PIPELINED: usize = 1000;

/// What `conform server` was asked to do.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    /// `HOST:PORT` as given.
    pub target: String,
    /// The server's log file, to check the records it gained.
    pub log: Option<PathBuf>,
    pub vectors: Vec<SessionVector>,
    /// Longest wait for a reply or for the server to close.
    pub timeout: Duration,
    /// The server's payload limit, if it has one below 65535.
    pub max_payload: Option<usize>,
    /// The server's handshake timeout, to probe HandshakeTimeout and FrameTimeout.
    pub handshake_timeout: Option<Duration>,
    /// Simultaneous clients of the concurrency probe.
    pub clients: usize,
}

/// How a vector is split into writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Bytewise,
    HeaderSplit,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Whole => "",
            Mode::Bytewise => ", one byte per write",
            Mode::HeaderSplit => ", tag, length and payload in separate writes",
        }
    }
}

/// One connection's plan: writes, each after a pause.
#[derive(Debug, Clone, Default)]
struct Plan {
    writes: Vec<(Duration, Vec<u8>)>,
    /// End the client's stream after the writes.
    shutdown: bool,
}

impl Plan {
    fn whole(bytes: Vec<u8>) -> Plan {
        Plan {
            writes: vec![(Duration::ZERO, bytes)],
            shutdown: false,
        }
    }

    fn duration(&self) -> Duration {
        self.writes.iter().map(|(p, _)| *p).sum()
    }
}

/// How the server ended a connection, as seen by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Eof,
    Reset(String),
    /// The server neither closed nor sent anything more within the wait.
    Timeout,
    Unreachable(String),
}

#[derive(Debug, Clone)]
struct Observed {
    replies: Vec<u8>,
    end: End,
    elapsed: Duration,
}

async fn read_until_end(rd: &mut tokio::net::tcp::OwnedReadHalf, out: &mut Vec<u8>) -> End {
    let mut chunk = [0u8; 4096];
    loop {
        match rd.read(&mut chunk).await {
            Ok(0) => return End::Eof,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => return End::Reset(e.to_string()),
        }
    }
}

async fn connect(addr: SocketAddr, wait: Duration) -> Result<TcpStream, String> {
    match timeout(wait, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("cannot connect: {e}")),
        Err(_) => Err(format!("no connection within {} s", wait.as_secs_f64())),
    }
}

/// Runs one plan on a new connection and reads until the server closes.
async fn exchange(addr: SocketAddr, plan: &Plan, wait: Duration) -> Observed {
    let started = Instant::now();
    let stream = match connect(addr, wait).await {
        Ok(s) => s,
        Err(e) => {
            return Observed {
                replies: Vec::new(),
                end: End::Unreachable(e),
                elapsed: started.elapsed(),
            }
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let mut replies = Vec::new();
    let writer = async {
        for (pause, w) in &plan.writes {
            if !pause.is_zero() {
                sleep(*pause).await;
            }
            // A server that closed early makes writes fail; what it sent
            // before is still read below.
            if wr.write_all(w).await.is_err() {
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
        end: end.unwrap_or(End::Timeout),
        elapsed: started.elapsed(),
    }
}

/// The frames of a byte string, as (offset, length); a partial frame at the
/// end is the rest.
fn frames_of(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match parse_frame(&bytes[pos..]) {
            Parsed::Complete { len, .. } => {
                out.push((pos, len));
                pos += len;
            }
            Parsed::Partial { .. } => {
                out.push((pos, bytes.len() - pos));
                break;
            }
        }
    }
    out
}

fn plan_for(v: &SessionVector, mode: Mode) -> Plan {
    let mut writes: Vec<(Duration, Vec<u8>)> = Vec::new();
    match mode {
        Mode::Whole => writes.push((Duration::ZERO, v.client.clone())),
        // Every byte is its own write (and, with TCP_NODELAY, its own
        // segment). The server is made to wait for the next byte inside the
        // header and the start of the payload, and every so often after:
        // a pause before every byte would make a long NAME outlast a short
        // handshake timeout.
        Mode::Bytewise => {
            for (at, len) in frames_of(&v.client) {
                for i in 0..len {
                    let pause = if i < BYTEWISE_PAUSED_HEAD || i % BYTEWISE_PAUSE_EVERY == 0 {
                        SPLIT_PAUSE
                    } else {
                        Duration::ZERO
                    };
                    writes.push((pause, vec![v.client[at + i]]));
                }
            }
        }
        Mode::HeaderSplit => {
            for (at, len) in frames_of(&v.client) {
                let f = &v.client[at..at + len];
                if len <= 1 || !(1..=3).contains(&f[0]) {
                    writes.push((SPLIT_PAUSE, f.to_vec()));
                } else {
                    writes.push((SPLIT_PAUSE, f[..1].to_vec()));
                    writes.push((SPLIT_PAUSE, f[1..len.min(HEADER_LEN)].to_vec()));
                    if len > HEADER_LEN {
                        writes.push((SPLIT_PAUSE, f[HEADER_LEN..].to_vec()));
                    }
                }
            }
        }
    }
    if let Some(first) = writes.first_mut() {
        first.0 = Duration::ZERO;
    }
    Plan {
        writes: writes.into_iter().filter(|(_, w)| !w.is_empty()).collect(),
        shutdown: v.closed_by == ClosedBy::Client,
    }
}

/// The rule a vector's wire result is judged under: its rule, else its
/// first section that names a server rule.
fn vector_rule(v: &SessionVector) -> Rule {
    if let Some(r) = v.rule.as_deref().and_then(violation_rule) {
        return r;
    }
    v.sections
        .iter()
        .filter(|s| !matches!(s.as_str(), "record-format" | "deviations" | "rules"))
        .find_map(|s| section_rule(s))
        .unwrap_or(REPLIES)
}

/// A wire result that differs from what the spec says.
struct Mismatch {
    frame: Option<usize>,
    bytes: Vec<u8>,
    detail: String,
    /// The replies were right as far as they came, but the server reset
    /// the connection: a graceful-close failure, not the vector's rule.
    reset: bool,
}

fn compare(
    client: &[u8],
    expected: &[u8],
    closed_by: ClosedBy,
    got: &Observed,
    wait: Duration,
) -> Result<(), Mismatch> {
    let frames = frames_of(client);
    let frame_bytes = |k: usize| {
        frames
            .get(k)
            .map_or(Vec::new(), |&(at, len)| client[at..at + len].to_vec())
    };
    if let End::Unreachable(e) = &got.end {
        return Err(Mismatch {
            frame: None,
            bytes: Vec::new(),
            detail: e.clone(),
            reset: false,
        });
    }
    let prefix_ok = expected.starts_with(&got.replies);
    if let End::Reset(e) = &got.end {
        if prefix_ok {
            return Err(Mismatch {
                frame: Some(got.replies.len().min(frames.len().saturating_sub(1)) + 1),
                bytes: frame_bytes(got.replies.len()),
                detail: format!(
                    "the connection was reset ({e}) after replies [{}] of [{}]: the server closed without draining, and the client can lose its last replies",
                    hex(&got.replies),
                    hex(expected)
                ),
                reset: true,
            });
        }
    }
    if got.replies != expected {
        let k = got
            .replies
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.replies.len().min(expected.len()));
        let how = match got.end {
            End::Timeout => format!(" (then nothing more for {} s)", wait.as_secs_f64()),
            _ => String::new(),
        };
        return Err(Mismatch {
            frame: (k < frames.len()).then_some(k + 1),
            bytes: frame_bytes(k),
            detail: format!(
                "expected replies [{}], got [{}]{how}",
                hex(expected),
                hex(&got.replies)
            ),
            reset: false,
        });
    }
    if got.end == End::Timeout {
        let detail = match closed_by {
            ClosedBy::Server => format!(
                "the replies were right, but the server did not close the connection within {} s after its last reply",
                wait.as_secs_f64()
            ),
            ClosedBy::Client => format!(
                "the replies were right, but the server did not close the connection within {} s after the client ended its stream",
                wait.as_secs_f64()
            ),
        };
        return Err(Mismatch {
            frame: Some(frames.len().max(1)),
            bytes: frame_bytes(expected.len().min(frames.len().saturating_sub(1))),
            detail,
            reset: false,
        });
    }
    Ok(())
}

/// Records the run should have added to the log, and records it may have.
#[derive(Default)]
struct Expected {
    /// (name, message, where from)
    required: Vec<(Vec<u8>, Vec<u8>, String)>,
    optional: Vec<(Vec<u8>, Vec<u8>)>,
    /// Messages of one name that must appear in this order.
    ordered: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

struct Run {
    connection: usize,
    probe: String,
    rule: Rule,
}

/// Runs the whole check and builds the report.
pub async fn check_server(opts: &ServerCheck) -> Result<ConformReport, ConformError> {
    let addr = tokio::net::lookup_host(&opts.target)
        .await
        .map_err(|source| ConformError::Resolve {
            target: opts.target.clone(),
            reason: source.to_string(),
        })?
        .next()
        .ok_or_else(|| ConformError::Resolve {
            target: opts.target.clone(),
            reason: "it resolves to no address".into(),
        })?;
    // One connection first: a wrong address should say so, not fail 300 probes.
    match connect(addr, opts.timeout).await {
        Ok(s) => drop(s),
        Err(reason) => {
            return Err(ConformError::Connect {
                target: opts.target.clone(),
                reason,
            })
        }
    }
    let log_start = opts
        .log
        .as_ref()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()));

    let mut tally = Tally::new(&SERVER_RULES);
    let mut notes = Vec::new();
    let mut expected = Expected::default();
    // Connections are numbered in the order they are planned.
    let mut connections = 0usize;

    // Timing probes first: they mostly wait, in parallel with the rest.
    let timing = opts
        .handshake_timeout
        .map(|t| tokio::spawn(timing_probes(addr, t, opts.timeout)));
    let timing_first = connections + 1;
    if opts.handshake_timeout.is_some() {
        connections += 3;
    }

    // Session vectors, each whole, one byte per write, and header-split.
    let limit = opts
        .max_payload
        .unwrap_or(crate::proto::frame::MAX_PAYLOAD_LEN);
    let mut skipped = 0;
    let mut vectors = opts.vectors.clone();
    if let Some(n) = opts
        .max_payload
        .filter(|&n| n < crate::proto::frame::MAX_PAYLOAD_LEN)
    {
        vectors.push(over_limit_vector(n));
    }
    let runnable: Vec<&SessionVector> = vectors
        .iter()
        .filter(|v| {
            let ok = match v.max_payload {
                Some(m) => Some(m) == opts.max_payload,
                None => frames_of(&v.client).iter().all(|&(at, len)| {
                    len <= HEADER_LEN || v.client[at] == 4 || len - HEADER_LEN <= limit
                }),
            };
            if !ok {
                skipped += 1;
            }
            ok
        })
        .collect();
    if skipped > 0 {
        notes.push(format!(
            "{skipped} vectors were skipped: they need a server payload limit other than {} (--max-payload)",
            opts.max_payload
                .map_or("the protocol's 65535".to_string(), |m| m.to_string())
        ));
    }
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut jobs = Vec::new();
    for v in &runnable {
        for mode in [Mode::Whole, Mode::Bytewise, Mode::HeaderSplit] {
            if mode == Mode::Bytewise && v.client.len() > BYTEWISE_UP_TO {
                continue;
            }
            let plan = plan_for(v, mode);
            let gate = gate.clone();
            let wait = opts.timeout;
            connections += 1;
            let connection = connections;
            jobs.push((
                *v,
                mode,
                connection,
                tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    exchange(addr, &plan, wait).await
                }),
            ));
        }
    }
    let mut whole_ok: HashMap<&str, bool> = HashMap::new();
    let mut results = Vec::new();
    for (v, mode, connection, job) in jobs {
        let got = job
            .await
            .map_err(|e| ConformError::Internal(e.to_string()))?;
        results.push((v, mode, connection, got));
    }
    for (v, mode, connection, got) in &results {
        let run = Run {
            connection: *connection,
            probe: format!("vector {}{}", v.id, mode.label()),
            rule: vector_rule(v),
        };
        let outcome = compare(&v.client, &v.replies, v.closed_by, got, opts.timeout);
        let records = v
            .log
            .iter()
            .filter_map(|l| decode_record(l.as_bytes()).ok());
        if outcome.is_ok() {
            for r in records {
                expected
                    .required
                    .push((r.name, r.message, run.probe.clone()));
            }
        } else {
            expected
                .optional
                .extend(records.map(|r| (r.name, r.message)));
        }
        match mode {
            Mode::Whole => {
                whole_ok.insert(&v.id, outcome.is_ok());
                judge_run(&mut tally, &run, outcome, v.closed_by);
            }
            // A split run is judged only where the whole run was right:
            // then a difference is the split's doing.
            _ if whole_ok.get(v.id.as_str()) == Some(&true) => {
                let run = Run { rule: FRAME, ..run };
                // A reset here comes from the split too: the server gave up
                // on a partial frame.
                let outcome = outcome.map_err(|m| Mismatch { reset: false, ..m });
                judge_run(&mut tally, &run, outcome, v.closed_by);
            }
            _ => {}
        }
    }

    // Pipelining: a thousand messages in one write.
    {
        connections += 1;
        let connection = connections;
        let name = fitted("conform-pipeline".into(), "p".into(), limit);
        let messages: Vec<Vec<u8>> = (0..PIPELINED)
            .map(|i| fitted(format!("pipelined message {i}"), format!("{i}"), limit))
            .collect();
        let mut bytes = login(&name);
        for m in &messages {
            bytes.extend(frame(Frame::Msg(m)));
        }
        bytes.push(4);
        let got = exchange(addr, &Plan::whole(bytes.clone()), opts.timeout).await;
        let want = vec![0u8; PIPELINED + 3];
        let run = Run {
            connection,
            probe: format!("probe pipelining: NAME, PASS, {PIPELINED} MSG and CLOSE in one write"),
            rule: ACKNOWLEDGEMENT,
        };
        let outcome = compare(&bytes, &want, ClosedBy::Server, &got, opts.timeout);
        if outcome.is_ok() {
            for m in &messages {
                expected
                    .required
                    .push((name.clone(), m.clone(), run.probe.clone()));
            }
            expected.ordered.push((name.clone(), messages));
        }
        judge_run(&mut tally, &run, outcome, ClosedBy::Server);
    }

    // Many clients at once.
    let first = connections + 1;
    connections += opts.clients;
    concurrency_probe(
        addr,
        opts,
        limit,
        first,
        &mut tally,
        &mut expected,
        &mut notes,
    )
    .await;

    if let (Some(task), Some(t)) = (timing, opts.handshake_timeout) {
        let outcomes = task
            .await
            .map_err(|e| ConformError::Internal(e.to_string()))?;
        for (i, (rule, probe, client, want, got)) in outcomes.into_iter().enumerate() {
            let run = Run {
                connection: timing_first + i,
                probe,
                rule,
            };
            let mut outcome = compare(&client, &want, ClosedBy::Server, &got, opts.timeout + t);
            if outcome.is_ok() && got.elapsed < t / 2 {
                // The 0xFF must come from the timeout, not at once.
                outcome = Err(Mismatch {
                    frame: None,
                    bytes: client.clone(),
                    detail: format!(
                        "the 0xFF came after {} ms, well before the handshake timeout of {} s",
                        got.elapsed.as_millis(),
                        t.as_secs_f64()
                    ),
                    reset: false,
                });
            }
            judge_run(&mut tally, &run, outcome, ClosedBy::Server);
        }
    } else {
        for name in ["HandshakeTimeout", "FrameTimeout"] {
            if let Some(r) = violation_rule(name) {
                tally.note(
                    r,
                    "pass --handshake-timeout SECS, the server's setting, to probe it",
                );
            }
        }
    }
    if let Some(r) = violation_rule("PayloadOverLimit") {
        tally.note(
            r,
            "pass --max-payload N if the server has a payload limit below 65535",
        );
    }
    if let Some(r) = violation_rule("AppendFailed") {
        tally.note(
            r,
            "needs a log write to fail; cannot be probed over the network",
        );
    }
    if let Some(r) = violation_rule("ShuttingDown") {
        tally.note(
            r,
            "needs the server to shut down mid-frame; cannot be probed over the network",
        );
    }

    match (&opts.log, log_start) {
        (Some(path), Some(start)) => check_log(path, start, &expected, &mut tally, &mut notes),
        _ => {
            tally.note(
                RECORD_FORMAT,
                "pass --log PATH, the server's log file, to check the records",
            );
            tally.note(
                MSG_RECORDS,
                "pass --log PATH, the server's log file, to check the records",
            );
        }
    }
    notes.push(format!(
        "{connections} connections to {addr}: {} vector runs, 1 pipelining probe, {} concurrent clients{}",
        results.len(),
        opts.clients,
        if opts.handshake_timeout.is_some() {
            ", 3 timeout probes"
        } else {
            ""
        }
    ));
    let target = if opts.target == addr.to_string() {
        opts.target.clone()
    } else {
        format!("{} ({addr})", opts.target)
    };
    Ok(tally.into_report("server", target, notes, Vec::new()))
}

/// Only the header of a MSG one byte over the server's limit: the 0xFF must
/// come without the payload.
fn over_limit_vector(max: usize) -> SessionVector {
    let mut client = login(b"conform-limit");
    client.push(3);
    client.extend_from_slice(&u16::try_from(max + 1).unwrap_or(u16::MAX).to_le_bytes());
    SessionVector {
        id: format!("probe-over-limit-{max}"),
        sections: vec!["limits".into()],
        max_payload: Some(max),
        client,
        replies: vec![0, 0, 0xFF],
        closed_by: ClosedBy::Server,
        rule: Some("PayloadOverLimit".into()),
        log: Vec::new(),
    }
}

fn judge_run(tally: &mut Tally, run: &Run, outcome: Result<(), Mismatch>, closed_by: ClosedBy) {
    let graceful = SERVER_RULES
        .iter()
        .find(|r| r.name == "graceful-close")
        .copied()
        .unwrap_or(REPLIES);
    match outcome {
        Ok(()) => {
            tally.pass(run.rule);
            if closed_by == ClosedBy::Server {
                tally.pass(graceful);
            }
        }
        Err(m) => {
            let rule = if m.reset { graceful } else { run.rule };
            tally.fail(
                rule,
                Failure {
                    connection: Some(run.connection),
                    probe: Some(run.probe.clone()),
                    frame: m.frame,
                    bytes: hex(&m.bytes),
                    detail: m.detail,
                },
            );
        }
    }
}

/// `long` if it fits the server's payload limit, else `short`, cut to fit.
fn fitted(long: String, short: String, limit: usize) -> Vec<u8> {
    let mut bytes = if long.len() <= limit { long } else { short }.into_bytes();
    bytes.truncate(limit.max(1));
    bytes
}

fn frame(f: Frame<'_>) -> Vec<u8> {
    f.to_bytes().unwrap_or_default()
}

fn login(name: &[u8]) -> Vec<u8> {
    let mut out = frame(Frame::Name(name));
    out.extend(frame(Frame::Pass(b"A")));
    out
}

type TimingOutcome = (Rule, String, Vec<u8>, Vec<u8>, Observed);

/// A silent client, a client that stops after NAME, and one that stops in
/// the middle of a MSG: each must get 0xFF once the handshake timeout passed.
async fn timing_probes(addr: SocketAddr, t: Duration, wait: Duration) -> Vec<TimingOutcome> {
    let handshake = violation_rule("HandshakeTimeout").unwrap_or(REPLIES);
    let frame_timeout = violation_rule("FrameTimeout").unwrap_or(REPLIES);
    let mut partial = login(b"conform-timeout");
    partial.extend_from_slice(&[3, 5, 0, b'h', b'e']);
    let cases = vec![
        (
            handshake,
            "probe handshake timeout: connect and send nothing".to_string(),
            Vec::new(),
            vec![0xFF],
        ),
        (
            handshake,
            "probe handshake timeout: NAME, then nothing".to_string(),
            frame(Frame::Name(b"conform-timeout")),
            vec![0x00, 0xFF],
        ),
        (
            frame_timeout,
            "probe frame timeout: NAME, PASS, then half a MSG".to_string(),
            partial,
            vec![0x00, 0x00, 0xFF],
        ),
    ];
    let runs = cases
        .into_iter()
        .map(|(rule, probe, client, want)| async move {
            let got = exchange(addr, &Plan::whole(client.clone()), t + wait).await;
            (rule, probe, client, want, got)
        });
    futures_join_all(runs).await
}

/// Runs futures concurrently and keeps their order (no extra dependency).
async fn futures_join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// `clients` connections logged in at the same time, then each sends one
/// message and CLOSE.
async fn concurrency_probe(
    addr: SocketAddr,
    opts: &ServerCheck,
    limit: usize,
    first: usize,
    tally: &mut Tally,
    expected: &mut Expected,
    notes: &mut Vec<String>,
) {
    let n = opts.clients;
    if n == 0 {
        tally.note(LIMITS, "the concurrency probe was turned off (--clients 0)");
        return;
    }
    let wait = opts.timeout;
    let gate = Arc::new(Semaphore::new(PARALLEL_CONNECTS));
    let started = Instant::now();
    let name_of = move |i: usize| fitted(format!("conform-client-{i}"), format!("c{i}"), limit);
    let logins = (0..n).map(|i| {
        let gate = gate.clone();
        async move {
            let name = name_of(i);
            let permit = gate.acquire_owned().await;
            let mut s = connect(addr, wait).await?;
            drop(permit);
            let bytes = login(&name);
            s.write_all(&bytes)
                .await
                .map_err(|e| format!("sending NAME and PASS failed: {e}"))?;
            let mut r = [0u8; 2];
            match timeout(wait, s.read_exact(&mut r)).await {
                Ok(Ok(_)) if r == [0, 0] => Ok(s),
                Ok(Ok(_)) => Err(format!("NAME and PASS got [{}], not [00 00]", hex(&r))),
                Ok(Err(e)) => Err(format!("reading the replies to NAME and PASS failed: {e}")),
                Err(_) => Err(format!(
                    "no replies to NAME and PASS within {} s",
                    wait.as_secs_f64()
                )),
            }
        }
    });
    let logged_in = futures_join_all(logins).await;
    let open = logged_in.iter().filter(|r| r.is_ok()).count();
    let login_time = started.elapsed();
    // Every connection that logged in is still open here: that is the
    // simultaneity the rule asks for.
    let sends = logged_in.into_iter().enumerate().map(|(i, r)| async move {
        let mut s = r?;
        let message = fitted(format!("concurrent message {i}"), format!("{i}"), limit);
        let mut bytes = frame(Frame::Msg(&message));
        bytes.push(4);
        s.write_all(&bytes)
            .await
            .map_err(|e| format!("sending MSG and CLOSE failed: {e}"))?;
        let mut replies = Vec::new();
        match timeout(wait, s.read_to_end(&mut replies)).await {
            Ok(Ok(_)) if replies == [0, 0] => Ok(message),
            Ok(Ok(_)) => Err(format!(
                "MSG and CLOSE got [{}], not [00 00] and a close",
                hex(&replies)
            )),
            Ok(Err(e)) => Err(format!("reading the replies to MSG and CLOSE failed: {e}")),
            Err(_) => Err(format!(
                "MSG and CLOSE: no close within {} s (replies so far [{}])",
                wait.as_secs_f64(),
                hex(&replies)
            )),
        }
    });
    let results = futures_join_all(sends).await;
    let probe = format!("probe: {n} clients logged in at the same time");
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(message) => {
                tally.pass(LIMITS);
                expected.required.push((name_of(i), message, probe.clone()));
            }
            Err(detail) => tally.fail(
                LIMITS,
                Failure {
                    connection: Some(first + i),
                    probe: Some(probe.clone()),
                    frame: None,
                    bytes: String::new(),
                    detail,
                },
            ),
        }
    }
    notes.push(format!(
        "{open} of {n} clients were logged in at the same time ({} ms to open and log in all)",
        login_time.as_millis()
    ));
}

/// Checks the records the server's log gained during the run.
fn check_log(
    path: &PathBuf,
    start: u64,
    expected: &Expected,
    tally: &mut Tally,
    notes: &mut Vec<String>,
) {
    let log_failure = |detail: String, bytes: &[u8]| Failure {
        connection: None,
        probe: Some(format!("log {}", path.display())),
        frame: None,
        bytes: hex(bytes),
        detail,
    };
    let whole = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            tally.fail(
                MSG_RECORDS,
                log_failure(format!("cannot read the log after the run: {e}"), &[]),
            );
            return;
        }
    };
    let start = usize::try_from(start).unwrap_or(usize::MAX);
    let Some(new) = whole.get(start..) else {
        tally.fail(
            MSG_RECORDS,
            log_failure(
                format!(
                    "the log shrank during the run (from {start} to {} bytes); was it rotated?",
                    whole.len()
                ),
                &[],
            ),
        );
        return;
    };
    let format = LogFormat::detect(new).or_else(|| LogFormat::detect(&whole));
    let format_rule = match format {
        Some(LogFormat::Jsonl) => LOG_FORMAT_JSONL,
        _ => RECORD_FORMAT,
    };
    let mut seen: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut bad = 0;
    let mut record_error = |tally: &mut Tally, i: usize, e: String| {
        bad += 1;
        tally.fail(
            format_rule,
            log_failure(format!("new record {}: {e}", i + 1), &[]),
        );
    };
    match format {
        Some(LogFormat::Jsonl) => {
            for (i, r) in json_records(new).enumerate() {
                match r {
                    Ok(r) => seen.push((r.name, r.message)),
                    Err(e) => record_error(tally, i, e.to_string()),
                }
            }
        }
        _ => {
            for (i, r) in records(new).enumerate() {
                match r {
                    Ok(r) => seen.push((r.name, r.message)),
                    Err(e) => record_error(tally, i, e.to_string()),
                }
            }
        }
    }
    tally.pass_n(format_rule, seen.len());
    if format_rule != RECORD_FORMAT {
        tally.note(
            RECORD_FORMAT,
            "the log is in the JSON-lines format; see log-format-jsonl",
        );
    }

    // Multiset match: each required record once, optional ones if present.
    let mut pool: HashMap<(Vec<u8>, Vec<u8>), usize> = HashMap::new();
    for r in &seen {
        *pool.entry(r.clone()).or_default() += 1;
    }
    for (name, message, from) in &expected.required {
        match pool.get_mut(&(name.clone(), message.clone())) {
            Some(n) if *n > 0 => {
                *n -= 1;
                tally.pass(MSG_RECORDS);
            }
            _ => tally.fail(
                MSG_RECORDS,
                log_failure(
                    format!(
                        "no record for an acknowledged MSG of {from}: [{}]: {}",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(message)
                    ),
                    message,
                ),
            ),
        }
    }
    for (name, message) in &expected.optional {
        if let Some(n) = pool.get_mut(&(name.clone(), message.clone())) {
            *n = n.saturating_sub(1);
        }
    }
    let mut extra: Vec<_> = pool.into_iter().filter(|(_, n)| *n > 0).collect();
    extra.sort();
    for ((name, message), n) in extra {
        tally.fail(
            MSG_RECORDS,
            log_failure(
                format!(
                    "{} record{} that no accepted MSG of this run explains (forged, duplicated, a frame that was not a MSG, or another client's): [{}]: {}",
                    n,
                    if n == 1 { "" } else { "s" },
                    String::from_utf8_lossy(&name),
                    String::from_utf8_lossy(&message)
                ),
                &message,
            ),
        );
    }
    for (name, messages) in &expected.ordered {
        let order: Vec<&Vec<u8>> = seen
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, m)| m)
            .collect();
        if order.iter().copied().eq(messages.iter()) {
            tally.pass(ACKNOWLEDGEMENT);
        } else {
            tally.fail(
                ACKNOWLEDGEMENT,
                log_failure(
                    format!(
                        "the records of [{}] are not in the order the pipelined MSG frames were sent",
                        String::from_utf8_lossy(name)
                    ),
                    &[],
                ),
            );
        }
    }
    notes.push(format!(
        "the log {} gained {} records ({} bytes) during the run{}",
        path.display(),
        seen.len() + bad,
        new.len(),
        match format {
            Some(LogFormat::Jsonl) => ", in the JSON-lines format",
            _ => "",
        }
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(client: &[u8]) -> SessionVector {
        SessionVector {
            id: "t".into(),
            sections: vec!["close".into()],
            max_payload: None,
            client: client.to_vec(),
            replies: vec![0],
            closed_by: ClosedBy::Server,
            rule: None,
            log: vec![],
        }
    }

    #[test]
    fn header_split_separates_tag_length_payload() {
        let mut bytes = login(b"u");
        bytes.push(4);
        let plan = plan_for(&v(&bytes), Mode::HeaderSplit);
        let writes: Vec<Vec<u8>> = plan.writes.into_iter().map(|(_, w)| w).collect();
        assert_eq!(
            writes,
            vec![
                vec![1],
                vec![1, 0],
                b"u".to_vec(),
                vec![2],
                vec![1, 0],
                b"A".to_vec(),
                vec![4]
            ]
        );
        assert_eq!(
            plan_for(&v(&bytes), Mode::Bytewise).writes.len(),
            bytes.len()
        );
    }

    #[test]
    fn vectors_are_judged_by_rule_then_section() {
        let mut vector = v(&[4]);
        assert_eq!(vector_rule(&vector).name, "close");
        vector.rule = Some("UnknownTag".into());
        assert_eq!(vector_rule(&vector).name, "UnknownTag");
        vector.rule = None;
        vector.sections = vec!["record-format".into()];
        assert_eq!(vector_rule(&vector).name, "replies");
    }

    #[test]
    fn compare_names_the_frame_whose_reply_differs() {
        let mut bytes = login(b"u");
        bytes.extend(frame(Frame::Msg(b"x")));
        let got = Observed {
            replies: vec![0, 0xFF],
            end: End::Eof,
            elapsed: Duration::ZERO,
        };
        let m = compare(
            &bytes,
            &[0, 0, 0],
            ClosedBy::Client,
            &got,
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert_eq!(m.frame, Some(2));
        assert_eq!(m.bytes, frame(Frame::Pass(b"A")));
        assert!(!m.reset);
        let reset = Observed {
            replies: vec![0],
            end: End::Reset("reset".into()),
            elapsed: Duration::ZERO,
        };
        assert!(
            compare(
                &bytes,
                &[0, 0, 0],
                ClosedBy::Client,
                &reset,
                Duration::from_secs(1)
            )
            .err()
            .unwrap()
            .reset
        );
    }
}
