//! Judging a `conform server` run from its observations: each check under
//! its rule, void where the server had stopped, the stop as the first root
//! cause, and the records the log must have gained as a result.

use std::collections::HashMap;
use std::time::Duration;

use super::super::report::Tally;
use super::super::root_cause::RootCause;
use super::super::rules::{violation_rule, LIMITS};
use super::super::vectors::ClosedBy;
use super::concurrent_clients;
use super::liveness::Stopped;
use super::observation::{Observations, TimingObservations, VectorRun};
use super::plan::{self, SplitMode};
use super::records::ExpectedRecords;
use super::tasks::TaskFailure;
use super::verdict::{self, CheckRun, Expectation, Judged, Observed, Void};
use super::ServerCheck;
use crate::proto::decode_record;
use crate::proto::frame::MAX_PAYLOAD_LEN;

/// Cut-off connections named in the report when the server stopped.
const CUT_OFF_NAMED: usize = 5;

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

/// Judges every observation, puts a stop first among the root causes, and
/// returns the records the server's log must (and may) have gained.
pub fn judge(
    tally: &mut Tally,
    notes: &mut Vec<String>,
    opts: &ServerCheck,
    seen: &Observations<'_>,
) -> ExpectedRecords {
    let limit = opts.max_payload.unwrap_or(MAX_PAYLOAD_LEN);
    let stopped = seen.stopped.as_ref();
    let mut expected = ExpectedRecords::default();
    let mut void = VoidChecks::default();
    judge_vector_runs(
        tally,
        &seen.runs,
        &seen.vector_results,
        opts.timeout,
        stopped,
        &mut expected,
        &mut void,
    );

    let (pipelined, check) = (&seen.pipelined, &seen.pipeline_check);
    let want = Expectation {
        client: &pipelined.bytes,
        replies: &pipelined.replies,
        closed_by: ClosedBy::Server,
        split: false,
    };
    let judged = verdict::judge_observed(
        tally,
        check,
        want,
        &seen.pipeline_result,
        opts.timeout,
        stopped,
    );
    void.add(judged, check.connection, &check.probe);
    if let Ok(got) = &seen.pipeline_result {
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
            &check.probe,
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
    let (first, probe) = (seen.clients_first, &seen.clients_probe);
    let judged = concurrent_clients::judge_concurrent_clients(
        tally,
        LIMITS,
        &seen.clients,
        first,
        probe,
        stopped,
    );
    for (i, (judged, outcome)) in judged.into_iter().zip(&seen.clients).enumerate() {
        void.add(judged, first + i, probe);
        let record = (
            plan::concurrent_name(i, limit),
            plan::concurrent_message(i, limit),
        );
        match outcome {
            Err(f) if !f.message_acknowledged() => expected.optional.push(record),
            _ => expected.required.push((record, probe.clone())),
        }
    }
    if opts.clients > 0 {
        let logged_in = seen
            .clients
            .iter()
            .filter(|r| !matches!(r, Err(f) if f.before_login()))
            .count();
        notes.push(format!(
            "{logged_in} of {} clients were logged in at the same time ({} ms to open, log in and close all)",
            opts.clients,
            seen.clients_time.as_millis()
        ));
    }

    match &seen.timing {
        Some(t) => judge_timing_probes(tally, t, stopped, &mut void),
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
    note_unprobeable_rules(tally, opts);
    if let Some(stop) = stopped {
        tally.root_cause(stop_root_cause(stop, &void));
    }
    expected
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

fn judge_timing_probes(
    tally: &mut Tally,
    timing: &TimingObservations,
    stopped: Option<&Stopped>,
    void: &mut VoidChecks,
) {
    let run = &timing.run;
    for (i, (p, got)) in timing.probes.iter().zip(&timing.results).enumerate() {
        let check = CheckRun {
            connection: run.first + i,
            probe: p.probe.clone(),
            rule: p.rule,
        };
        let want = Expectation {
            client: &p.client,
            replies: &p.replies,
            closed_by: ClosedBy::Server,
            split: false,
        };
        let judged =
            verdict::judge_timing(tally, &check, want, got, run.handshake, run.wait, stopped);
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
