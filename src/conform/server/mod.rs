//! `msglog conform server`: runs the spec's session vectors, and probes that
//! need timing or many connections, against a live server, then judges what
//! came back and builds the report.
//!
//! - [`plan`]: what is sent (pure).
//! - [`wire`]: connections, writes, replies, waits (the only IO).
//! - [`liveness`]: whether the server still accepts connections.
//! - [`verdict`]: the observations judged against the spec (pure).
//! - [`records`]: the records the server's log gained (pure).
//! - [`tasks`]: concurrent checks, one result per check, in order.
//!
//! Traffic goes only to the one address given; every connection is bounded
//! in time, and the number of connections is fixed by the vectors and the
//! options. All observing happens first, then all judging: whether the
//! server stopped accepting connections, which voids what came after, is
//! known only at the end.

pub mod liveness;
pub mod plan;
pub mod records;
pub mod tasks;
pub mod verdict;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::report::{ConformReport, Tally};
use super::root_cause::RootCause;
use super::rules::{
    violation_rule, ACKNOWLEDGEMENT, FRAME, LIMITS, MSG_RECORDS, RECORD_FORMAT, SERVER_RULES,
};
use super::vectors::{ClosedBy, SessionVector};
use super::ConformError;
use crate::proto::decode_record;
use crate::proto::frame::MAX_PAYLOAD_LEN;

use liveness::Stopped;
use plan::{SplitMode, TimingProbe};
use records::ExpectedRecords;
use tasks::{run_all, TaskFailure};
use verdict::{
    CheckRun, ConcurrentFailure, ConcurrentFailureKind, Expectation, Judged, Observed, Void,
};
use wire::{NoConnection, Target};

/// Vector runs in flight at once.
const PARALLEL: usize = 32;
/// Connections being opened at once by the concurrency probe.
const PARALLEL_CONNECTS: usize = 64;
/// Cut-off connections named in the report when the server stopped.
const CUT_OFF_NAMED: usize = 5;

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

/// One vector sent one way on one connection.
struct VectorRun<'a> {
    vector: &'a SessionVector,
    mode: SplitMode,
    check: CheckRun,
}

/// Checks made void by a stop, for the root cause.
#[derive(Default)]
struct VoidChecks {
    not_run: usize,
    /// (connection, probe) of the connections the stop cut off.
    cut_off: Vec<(usize, String)>,
}

impl VoidChecks {
    fn add(&mut self, judged: Judged, connection: usize, probe: &str) {
        match judged {
            Judged::Void(Void::NotRun) => self.not_run += 1,
            Judged::Void(Void::CutOff) => self.cut_off.push((connection, probe.to_string())),
            Judged::Passed | Judged::Failed => {}
        }
    }
}

/// Runs the whole check and builds the report.
pub async fn check_server(opts: &ServerCheck) -> Result<ConformReport, ConformError> {
    let addr = resolve(&opts.target).await?;
    let target = Target::new(addr, opts.timeout);
    // One connection first: a wrong address should say so, not fail 300 probes.
    if let Err(e) = target.connect(0, "a first connection", opts.timeout).await {
        let reason = match e {
            NoConnection::Failed(f) => f.message,
            NoConnection::NotRun => "it stopped accepting connections".into(),
        };
        return Err(ConformError::Connect {
            target: opts.target.clone(),
            reason,
        });
    }
    let log_start = opts
        .log
        .as_ref()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()));
    let limit = opts.max_payload.unwrap_or(MAX_PAYLOAD_LEN);
    // Connections are numbered in the order they are planned.
    let mut next_connection = 1;

    // Observe. The timing probes mostly wait: they run beside the rest.
    let timing = opts.handshake_timeout.map(|handshake| {
        let first = next_connection;
        let probes = plan::timing_probes();
        next_connection += probes.len();
        let target = target.clone();
        let observed = probes.clone().into_iter().enumerate().map(move |(i, p)| {
            let target = target.clone();
            async move {
                let plan = plan::Plan::whole(p.client.clone());
                target
                    .exchange(first + i, &p.probe, &plan, handshake + target.wait)
                    .await
            }
        });
        (first, handshake, probes, tokio::spawn(run_all(observed)))
    });
    let mut vectors = opts.vectors.clone();
    if let Some(n) = opts.max_payload.filter(|&n| n < MAX_PAYLOAD_LEN) {
        vectors.push(plan::over_limit_vector(n));
    }
    let runnable: Vec<&SessionVector> = vectors
        .iter()
        .filter(|v| plan::fits_server(v, opts.max_payload))
        .collect();
    let runs = plan_vector_runs(&runnable, &mut next_connection);
    let vector_results = observe_vector_runs(&target, &runs).await;

    let pipelined = plan::pipelined_session(limit);
    let pipeline_check = CheckRun {
        connection: next_connection,
        probe: format!(
            "probe pipelining: NAME, PASS, {} MSG and CLOSE in one write",
            plan::PIPELINED
        ),
        rule: ACKNOWLEDGEMENT,
    };
    next_connection += 1;
    let pipeline_result = Ok(target
        .exchange(
            pipeline_check.connection,
            &pipeline_check.probe,
            &plan::Plan::whole(pipelined.bytes.clone()),
            opts.timeout,
        )
        .await);

    let crowd_first = next_connection;
    next_connection += opts.clients;
    let crowd_probe = format!("probe: {} clients logged in at the same time", opts.clients);
    let started = Instant::now();
    let crowd =
        observe_concurrent_clients(&target, opts.clients, limit, crowd_first, &crowd_probe).await;
    let crowd_time = started.elapsed();

    let timing = match timing {
        Some((first, handshake, probes, task)) => {
            let results = task
                .await
                .map_err(|e| ConformError::Internal(TaskFailure::from(e).to_string()))?;
            Some((first, handshake, probes, results))
        }
        None => None,
    };
    let liveness_probe = "a check that the server still accepts connections, at the end of the run";
    target
        .still_accepting(next_connection, liveness_probe)
        .await;
    let stopped = target.stopped();
    let stopped = stopped.as_ref();

    // Judge.
    let mut tally = Tally::new(&SERVER_RULES);
    let mut notes = Vec::new();
    let mut expected = ExpectedRecords::default();
    let mut void = VoidChecks::default();
    judge_vector_runs(
        &mut tally,
        &runs,
        &vector_results,
        opts.timeout,
        stopped,
        &mut expected,
        &mut void,
    );

    let judged = verdict::judge_observed(
        &mut tally,
        &pipeline_check,
        Expectation {
            client: &pipelined.bytes,
            replies: &pipelined.replies,
            closed_by: ClosedBy::Server,
            split: false,
        },
        &pipeline_result,
        opts.timeout,
        stopped,
    );
    void.add(judged, pipeline_check.connection, &pipeline_check.probe);
    if let Ok(got) = &pipeline_result {
        let records = pipelined
            .messages
            .iter()
            .map(|m| (pipelined.name.clone(), m.clone()))
            .collect();
        expected.expect(
            &pipelined.bytes,
            &pipelined.replies,
            records,
            &got.replies,
            &pipeline_check.probe,
        );
    }
    if judged == Judged::Passed {
        expected
            .ordered
            .push((pipelined.name.clone(), pipelined.messages.clone()));
    }

    if opts.clients == 0 {
        tally.note(LIMITS, "the concurrency probe was turned off (--clients 0)");
    }
    let crowd_judged = verdict::judge_concurrent_clients(
        &mut tally,
        LIMITS,
        &crowd,
        crowd_first,
        &crowd_probe,
        stopped,
    );
    for (i, (judged, outcome)) in crowd_judged.into_iter().zip(&crowd).enumerate() {
        void.add(judged, crowd_first + i, &crowd_probe);
        let record = (
            plan::concurrent_name(i, limit),
            plan::concurrent_message(i, limit),
        );
        match outcome {
            Ok(()) => expected.required.push((record, crowd_probe.clone())),
            Err(f) if f.message_acknowledged() => {
                expected.required.push((record, crowd_probe.clone()))
            }
            Err(_) => expected.optional.push(record),
        }
    }
    if opts.clients > 0 {
        let logged_in = crowd
            .iter()
            .filter(|r| !matches!(r, Err(f) if is_login_failure(f)))
            .count();
        notes.push(format!(
            "{logged_in} of {} clients were logged in at the same time ({} ms to open, log in and close all)",
            opts.clients,
            crowd_time.as_millis()
        ));
    }

    match &timing {
        Some((first, handshake, probes, results)) => judge_timing_probes(
            &mut tally,
            *first,
            *handshake,
            probes,
            results,
            opts.timeout,
            stopped,
            &mut void,
        ),
        None => {
            for name in ["HandshakeTimeout", "FrameTimeout"] {
                if let Some(r) = violation_rule(name) {
                    tally.note(
                        r,
                        "pass --handshake-timeout SECS, the server's setting, to probe it",
                    );
                }
            }
        }
    }
    note_unprobeable_rules(&mut tally, opts);
    let skipped = vectors.len() - runnable.len();
    if skipped > 0 {
        notes.push(format!(
            "{skipped} vectors were skipped: they need a server payload limit other than {} (--max-payload)",
            opts.max_payload
                .map_or("the protocol's 65535".to_string(), |m| m.to_string())
        ));
    }
    if let Some(stop) = stopped {
        tally.root_cause(stop_root_cause(stop, &void));
    }

    match (&opts.log, log_start) {
        (Some(path), Some(start)) => {
            let start = usize::try_from(start).unwrap_or(usize::MAX);
            match std::fs::read(path) {
                Ok(whole) => records::check_log(
                    &path.display().to_string(),
                    &whole,
                    start,
                    &expected,
                    &mut tally,
                    &mut notes,
                ),
                Err(e) => tally.fail(
                    MSG_RECORDS,
                    super::report::Failure {
                        probe: Some(format!("log {}", path.display())),
                        detail: format!("cannot read the log after the run: {e}"),
                        ..Default::default()
                    },
                ),
            }
        }
        _ => {
            for rule in [RECORD_FORMAT, MSG_RECORDS] {
                tally.note(
                    rule,
                    "pass --log PATH, the server's log file, to check the records",
                );
            }
        }
    }
    for rule in SERVER_RULES {
        tally.note_if_unexercised(
            rule,
            format!(
                "none of the {} session vectors run is judged under it",
                runnable.len()
            ),
        );
    }
    notes.push(format!(
        "{} connections planned to {addr}: {} vector runs, 1 pipelining probe, {} concurrent clients{}",
        next_connection - 1,
        runs.len(),
        opts.clients,
        if opts.handshake_timeout.is_some() {
            ", 3 timeout probes"
        } else {
            ""
        }
    ));
    let target_name = if opts.target == addr.to_string() {
        opts.target.clone()
    } else {
        format!("{} ({addr})", opts.target)
    };
    Ok(tally.into_report("server", target_name, notes, Vec::new()))
}

async fn resolve(target: &str) -> Result<SocketAddr, ConformError> {
    let resolve_error = |reason: String| ConformError::Resolve {
        target: target.to_string(),
        reason,
    };
    tokio::net::lookup_host(target)
        .await
        .map_err(|e| resolve_error(e.to_string()))?
        .next()
        .ok_or_else(|| resolve_error("it resolves to no address".into()))
}

/// Each vector whole, one byte per write, and tag, length and payload in
/// separate writes, numbered from `next_connection` on.
fn plan_vector_runs<'a>(
    vectors: &[&'a SessionVector],
    next_connection: &mut usize,
) -> Vec<VectorRun<'a>> {
    let mut runs = Vec::new();
    for v in vectors {
        for mode in SplitMode::ALL {
            if !mode.applies_to(v) {
                continue;
            }
            runs.push(VectorRun {
                vector: v,
                mode,
                check: CheckRun {
                    connection: *next_connection,
                    probe: format!("vector {}{}", v.id, mode.label()),
                    rule: if mode == SplitMode::Whole {
                        verdict::vector_rule(v)
                    } else {
                        FRAME
                    },
                },
            });
            *next_connection += 1;
        }
    }
    runs
}

async fn observe_vector_runs(
    target: &Target,
    runs: &[VectorRun<'_>],
) -> Vec<Result<Observed, TaskFailure>> {
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let jobs = runs.iter().map(|run| {
        let plan = plan::plan_for(run.vector, run.mode);
        let (gate, target) = (gate.clone(), target.clone());
        let (connection, probe) = (run.check.connection, run.check.probe.clone());
        async move {
            let _permit = gate.acquire_owned().await;
            target
                .exchange(connection, &probe, &plan, target.wait)
                .await
        }
    });
    run_all(jobs).await
}

/// Whole runs are judged under the vector's rule; a split run only where
/// the whole run was right, under `frame`: then a difference is the
/// split's doing.
fn judge_vector_runs(
    tally: &mut Tally,
    runs: &[VectorRun<'_>],
    results: &[Result<Observed, TaskFailure>],
    wait: Duration,
    stopped: Option<&Stopped>,
    expected: &mut ExpectedRecords,
    void: &mut VoidChecks,
) {
    let mut whole_ok: HashMap<&str, bool> = HashMap::new();
    for (run, got) in runs.iter().zip(results) {
        let v = run.vector;
        let records = v
            .log
            .iter()
            .filter_map(|l| decode_record(l.as_bytes()).ok())
            .map(|r| (r.name, r.message))
            .collect();
        let replies = got.as_ref().map_or(&[][..], |g| &g.replies[..]);
        expected.expect(&v.client, &v.replies, records, replies, &run.check.probe);
        if run.mode != SplitMode::Whole && whole_ok.get(v.id.as_str()) != Some(&true) {
            continue;
        }
        let want = Expectation {
            client: &v.client,
            replies: &v.replies,
            closed_by: v.closed_by,
            split: run.mode != SplitMode::Whole,
        };
        let judged = verdict::judge_observed(tally, &run.check, want, got, wait, stopped);
        void.add(judged, run.check.connection, &run.check.probe);
        if run.mode == SplitMode::Whole {
            whole_ok.insert(&v.id, judged == Judged::Passed);
        }
    }
}

/// `clients` connections logged in at the same time, then each sends one
/// message and CLOSE. One outcome per client, in order.
async fn observe_concurrent_clients(
    target: &Target,
    clients: usize,
    limit: usize,
    first_connection: usize,
    probe: &str,
) -> Vec<Result<(), ConcurrentFailure>> {
    let gate = Arc::new(Semaphore::new(PARALLEL_CONNECTS));
    let logins = (0..clients).map(|i| {
        let (gate, target, probe) = (gate.clone(), target.clone(), probe.to_string());
        async move {
            // Only the connecting is gated: every logged-in connection
            // stays open until all are, which is the simultaneity the rule
            // asks for.
            let permit = gate.acquire_owned().await;
            let name = plan::concurrent_name(i, limit);
            let stream = target.log_in(first_connection + i, &probe, &name).await;
            drop(permit);
            stream
        }
    });
    let logged_in = run_all(logins).await;
    let sends = logged_in.into_iter().enumerate().map(|(i, login)| {
        let target = target.clone();
        async move {
            let stream = login.map_err(task_failed)??;
            target
                .message_and_close(stream, &plan::concurrent_message(i, limit))
                .await
        }
    });
    run_all(sends)
        .await
        .into_iter()
        .map(|r| r.map_err(task_failed).and_then(|r| r))
        .collect()
}

fn task_failed(failure: TaskFailure) -> ConcurrentFailure {
    ConcurrentFailure {
        kind: ConcurrentFailureKind::Task(failure),
        at: Duration::ZERO,
    }
}

fn is_login_failure(f: &ConcurrentFailure) -> bool {
    match &f.kind {
        ConcurrentFailureKind::NotConnected(_)
        | ConcurrentFailureKind::NotRun
        | ConcurrentFailureKind::Task(_) => true,
        ConcurrentFailureKind::WriteFailed { step, .. }
        | ConcurrentFailureKind::Replies { step, .. } => *step == verdict::ClientStep::Login,
    }
}

#[allow(clippy::too_many_arguments)]
fn judge_timing_probes(
    tally: &mut Tally,
    first: usize,
    handshake: Duration,
    probes: &[TimingProbe],
    results: &[Result<Observed, TaskFailure>],
    wait: Duration,
    stopped: Option<&Stopped>,
    void: &mut VoidChecks,
) {
    for (i, (p, got)) in probes.iter().zip(results).enumerate() {
        let check = CheckRun {
            connection: first + i,
            probe: p.probe.clone(),
            rule: p.rule,
        };
        let want = Expectation {
            client: &p.client,
            replies: &p.replies,
            closed_by: ClosedBy::Server,
            split: false,
        };
        let judged = verdict::judge_timing(tally, &check, want, got, handshake, wait, stopped);
        void.add(judged, check.connection, &check.probe);
    }
}

/// Rules no network probe can reach, or only with an option.
fn note_unprobeable_rules(tally: &mut Tally, opts: &ServerCheck) {
    let notes = [
        (
            "PayloadOverLimit",
            "pass --max-payload N if the server has a payload limit below 65535",
        ),
        (
            "AppendFailed",
            "needs a log write to fail; cannot be probed over the network",
        ),
        (
            "ShuttingDown",
            "needs the server to shut down mid-frame; cannot be probed over the network",
        ),
    ];
    for (name, note) in notes {
        if name == "PayloadOverLimit" && opts.max_payload.is_some() {
            continue;
        }
        if let Some(r) = violation_rule(name) {
            tally.note(r, note);
        }
    }
}

/// The root cause a stop puts first in the report.
fn stop_root_cause(stop: &Stopped, void: &VoidChecks) -> RootCause {
    let refusal = &stop.first_refusal;
    let mut explanation = format!(
        "the server stopped accepting connections after {} connections (the first refused was connection {}, {}, {:.1} s into the run: {}): every later check is void",
        stop.accepted,
        refusal.connection,
        refusal.probe,
        refusal.at.as_secs_f64(),
        refusal.error
    );
    explanation.push_str(&format!(
        ": {} check{} not run",
        void.not_run,
        if void.not_run == 1 { " was" } else { "s were" }
    ));
    if !void.cut_off.is_empty() {
        let mut named: Vec<String> = void
            .cut_off
            .iter()
            .take(CUT_OFF_NAMED)
            .map(|(c, p)| format!("connection {c}, {p}"))
            .collect();
        if void.cut_off.len() > CUT_OFF_NAMED {
            named.push(format!("{} more", void.cut_off.len() - CUT_OFF_NAMED));
        }
        explanation.push_str(&format!(
            ", and {} that were open when it stopped lost their server before their replies ({}): one of those may be what stopped it",
            void.cut_off.len(),
            named.join("; ")
        ));
    }
    RootCause::ServerStopped {
        explanation,
        void_checks: void.not_run + void.cut_off.len(),
    }
}
