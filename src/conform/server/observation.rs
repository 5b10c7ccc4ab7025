//! Observing a `conform server` run: every phase's connections are made
//! (vectors whole and split, the pipelining probe, the concurrency probe,
//! the timing probes beside them), then one more shows whether the server
//! still accepts connections. Nothing is judged here: see `judgement`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::super::rules::ACKNOWLEDGEMENT;
use super::super::rules::FRAME;
use super::super::vectors::SessionVector;
use super::super::ConformError;
use super::concurrent_clients::{ConcurrentFailure, ConcurrentFailureKind};
use super::liveness::Stopped;
use super::plan::{self, SplitMode, TimingProbe};
use super::tasks::{run_all, TaskFailure};
use super::verdict::{self, CheckRun, Observed};
use super::wire::Target;
use super::ServerCheck;
use crate::proto::frame::MAX_PAYLOAD_LEN;

/// Vector runs in flight at once.
const PARALLEL: usize = 32;
/// Connections being opened at once by the concurrency probe.
const PARALLEL_CONNECTS: usize = 64;

/// One vector sent one way on one connection.
pub struct VectorRun<'a> {
    pub vector: &'a SessionVector,
    pub mode: SplitMode,
    pub check: CheckRun,
}

/// Everything the run saw, before any of it is judged.
pub struct Observations<'a> {
    pub addr: SocketAddr,
    /// The vectors that fit the server's payload limit.
    pub runnable: Vec<&'a SessionVector>,
    pub runs: Vec<VectorRun<'a>>,
    /// One per run, in the same order.
    pub vector_results: Vec<Result<Observed, TaskFailure>>,
    pub pipelined: plan::PipelinedSession,
    pub pipeline_check: CheckRun,
    pub pipeline_result: Result<Observed, TaskFailure>,
    /// The concurrency probe's first connection number and name.
    pub clients_first: usize,
    pub clients_probe: String,
    /// One per client, in order.
    pub clients: Vec<Result<(), ConcurrentFailure>>,
    pub clients_time: Duration,
    pub timing: Option<TimingObservations>,
    /// Connections planned.
    pub connections: usize,
    pub stopped: Option<Stopped>,
}

/// Where the timing probes' connections start, and their timeouts.
pub struct TimingRun {
    pub first: usize,
    /// The server's handshake timeout.
    pub handshake: Duration,
    /// The wait on top of it.
    pub wait: Duration,
}

/// The timing probes and what each saw, in the same order.
pub struct TimingObservations {
    pub run: TimingRun,
    pub probes: Vec<TimingProbe>,
    pub results: Vec<Result<Observed, TaskFailure>>,
}

/// Makes every connection of the run, then checks that the server still
/// accepts one.
pub async fn observe<'a>(
    target: &Target,
    opts: &ServerCheck,
    vectors: &'a [SessionVector],
) -> Result<Observations<'a>, ConformError> {
    let limit = opts.max_payload.unwrap_or(MAX_PAYLOAD_LEN);
    // Connections are numbered in the order they are planned.
    let mut next_connection = 1;

    // The timing probes mostly wait: they run beside the rest.
    let timing = opts.handshake_timeout.map(|handshake| {
        let first = next_connection;
        let probes = plan::timing_probes();
        next_connection += probes.len();
        let target = target.clone();
        let observed = probes.clone().into_iter().enumerate().map(move |(i, p)| {
            let target = target.clone();
            async move {
                let plan = plan::Plan::whole(p.client.clone());
                let wait = handshake + target.wait;
                target.exchange(first + i, &p.probe, &plan, wait).await
            }
        });
        let run = TimingRun {
            first,
            handshake,
            wait: opts.timeout,
        };
        (run, probes, tokio::spawn(run_all(observed)))
    });

    let runnable: Vec<&SessionVector> = vectors
        .iter()
        .filter(|v| plan::fits_server(v, opts.max_payload))
        .collect();
    let runs = plan_vector_runs(&runnable, &mut next_connection);
    let vector_results = observe_vector_runs(target, &runs).await;

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
    let pipeline_plan = plan::Plan::whole(pipelined.bytes.clone());
    let (connection, probe) = (pipeline_check.connection, &pipeline_check.probe);
    let pipeline_result = Ok(target
        .exchange(connection, probe, &pipeline_plan, opts.timeout)
        .await);

    let clients_first = next_connection;
    next_connection += opts.clients;
    let clients_probe = format!("probe: {} clients logged in at the same time", opts.clients);
    let started = Instant::now();
    let clients =
        observe_concurrent_clients(target, opts.clients, limit, clients_first, &clients_probe)
            .await;
    let clients_time = started.elapsed();

    let timing = match timing {
        Some((run, probes, task)) => {
            let results = task
                .await
                .map_err(|e| ConformError::Internal(TaskFailure::from(e).to_string()))?;
            Some(TimingObservations {
                run,
                probes,
                results,
            })
        }
        None => None,
    };
    // Connections cut off at the very end (the concurrency probe's) show a
    // stop only to a connection attempt after them.
    let liveness_probe = "a check that the server still accepts connections, at the end of the run";
    target
        .still_accepting(next_connection, liveness_probe)
        .await;
    Ok(Observations {
        addr: target.addr,
        runnable,
        runs,
        vector_results,
        pipelined,
        pipeline_check,
        pipeline_result,
        clients_first,
        clients_probe,
        clients,
        clients_time,
        timing,
        connections: next_connection - 1,
        stopped: target.stopped(),
    })
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
