//! The concurrency probe's clients: why one did not get through, whether
//! that says something about the server or only that it had stopped, and
//! the tally of them all, each client under its own connection number.
//! Pure: outcomes come in as data from `wire`.

use std::time::Duration;

use super::super::report::{hex, Failure, Tally};
use super::super::rules::Rule;
use super::liveness::Stopped;
use super::tasks::TaskFailure;
use super::verdict::{reply_symptom, ConnectFailure, ConnectFailureKind, Judged, Void};

/// The two exchanges of a concurrency-probe client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStep {
    /// NAME and PASS; the connection stays open.
    Login,
    /// One MSG and CLOSE; the server then closes.
    MessageAndClose,
}

impl ClientStep {
    fn frames(self) -> &'static str {
        match self {
            ClientStep::Login => "NAME and PASS",
            ClientStep::MessageAndClose => "MSG and CLOSE",
        }
    }

    /// How symptoms name the two frames of the step.
    fn frame_labels(self) -> [&'static str; 2] {
        match self {
            ClientStep::Login => ["NAME (0x01)", "PASS (0x02)"],
            ClientStep::MessageAndClose => ["MSG (0x03)", "CLOSE (0x04)"],
        }
    }

    fn awaited(self) -> &'static str {
        match self {
            ClientStep::Login => "[00 00]",
            ClientStep::MessageAndClose => "[00 00] and a close",
        }
    }
}

/// How the replies of a step ended when they were not the two 0x00.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepliesEnd {
    /// The server closed the connection (for a login: before two replies).
    Closed,
    ReadFailed(String),
    /// Nothing more within the wait.
    TimedOut(Duration),
}

/// Why one client of the concurrency probe did not get through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConcurrentFailureKind {
    NotConnected(ConnectFailure),
    /// Not attempted: the server had already stopped.
    NotRun,
    WriteFailed {
        step: ClientStep,
        error: String,
    },
    Replies {
        step: ClientStep,
        got: Vec<u8>,
        end: RepliesEnd,
    },
    Task(TaskFailure),
}

/// A concurrency-probe client that failed, and when (since the run started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrentFailure {
    pub kind: ConcurrentFailureKind,
    pub at: Duration,
}

const TWO_ACKS: [u8; 2] = [0, 0];

impl ConcurrentFailure {
    fn detail(&self) -> String {
        match &self.kind {
            ConcurrentFailureKind::NotConnected(f) => f.message.clone(),
            ConcurrentFailureKind::NotRun => {
                "not run: the server had stopped accepting connections".into()
            }
            ConcurrentFailureKind::WriteFailed { step, error } => {
                format!("sending {} failed: {error}", step.frames())
            }
            ConcurrentFailureKind::Replies { step, got, end } => match end {
                RepliesEnd::Closed => format!(
                    "{} got [{}], not {}",
                    step.frames(),
                    hex(got),
                    step.awaited()
                ),
                RepliesEnd::ReadFailed(e) => format!(
                    "reading the replies to {} failed: {e} (replies so far [{}])",
                    step.frames(),
                    hex(got)
                ),
                RepliesEnd::TimedOut(wait) => format!(
                    "{}: not {} within {} s (replies so far [{}])",
                    step.frames(),
                    step.awaited(),
                    wait.as_secs_f64(),
                    hex(got)
                ),
            },
            ConcurrentFailureKind::Task(t) => t.to_string(),
        }
    }

    fn symptom(&self) -> String {
        match &self.kind {
            ConcurrentFailureKind::NotConnected(f) => f.symptom(),
            ConcurrentFailureKind::NotRun => "the server had stopped accepting connections".into(),
            ConcurrentFailureKind::WriteFailed { step, .. } => {
                format!("sending {} to a logged-in client failed", step.frames())
            }
            // Worded as the vector runs word it, so that one wrong reply
            // (a CLOSE answered with 0xFF) counts as one root cause.
            ConcurrentFailureKind::Replies { step, got, end } => {
                let k = got
                    .iter()
                    .zip(TWO_ACKS)
                    .position(|(g, e)| *g != e)
                    .unwrap_or(got.len().min(TWO_ACKS.len()));
                let ended = match end {
                    RepliesEnd::Closed => "the server closed the connection",
                    RepliesEnd::ReadFailed(_) => "the connection failed",
                    RepliesEnd::TimedOut(_) => "nothing came within the wait",
                };
                let frame = step
                    .frame_labels()
                    .get(k)
                    .copied()
                    .unwrap_or("the end of the stream");
                reply_symptom(frame, got.get(k), TWO_ACKS.get(k), ended)
            }
            ConcurrentFailureKind::Task(_) => {
                "msglog conform's own check task failed (a bug in msglog conform)".into()
            }
        }
    }

    /// Whether the client failed before it was logged in.
    pub fn before_login(&self) -> bool {
        match &self.kind {
            ConcurrentFailureKind::NotConnected(_)
            | ConcurrentFailureKind::NotRun
            | ConcurrentFailureKind::Task(_) => true,
            ConcurrentFailureKind::WriteFailed { step, .. }
            | ConcurrentFailureKind::Replies { step, .. } => *step == ClientStep::Login,
        }
    }

    /// Whether the server acknowledged the client's MSG (its first reply
    /// after login), whatever came after: then the log must have it.
    pub fn message_acknowledged(&self) -> bool {
        matches!(&self.kind, ConcurrentFailureKind::Replies { step: ClientStep::MessageAndClose, got, .. } if got.first() == Some(&0))
    }

    /// See [`void_of`]: the same reading for a concurrency-probe client.
    pub fn void(&self, stopped: Option<&Stopped>) -> Option<Void> {
        if self.kind == ConcurrentFailureKind::NotRun {
            return Some(Void::NotRun);
        }
        let stop = stopped?;
        let after_last_accept = self.at >= stop.cut_off_since();
        match &self.kind {
            ConcurrentFailureKind::NotConnected(f) => (f.kind == ConnectFailureKind::Refused
                && f.at >= stop.cut_off_since())
            .then_some(Void::NotRun),
            ConcurrentFailureKind::WriteFailed { .. } => after_last_accept.then_some(Void::CutOff),
            ConcurrentFailureKind::Replies { got, end, .. } => {
                (!matches!(end, RepliesEnd::TimedOut(_))
                    && TWO_ACKS.starts_with(got)
                    && after_last_accept)
                    .then_some(Void::CutOff)
            }
            ConcurrentFailureKind::NotRun | ConcurrentFailureKind::Task(_) => None,
        }
    }
}

/// Tallies the concurrency probe, client `i` being connection
/// `first_connection + i`, and returns what each client came to.
pub fn judge_concurrent_clients(
    tally: &mut Tally,
    rule: Rule,
    outcomes: &[Result<(), ConcurrentFailure>],
    first_connection: usize,
    probe: &str,
    stopped: Option<&Stopped>,
) -> Vec<Judged> {
    outcomes
        .iter()
        .enumerate()
        .map(|(i, outcome)| match outcome {
            Ok(()) => {
                tally.pass(rule);
                Judged::Passed
            }
            Err(f) => match f.void(stopped) {
                Some(void) => {
                    tally.void(rule);
                    Judged::Void(void)
                }
                None => {
                    tally.fail(
                        rule,
                        Failure {
                            connection: Some(first_connection + i),
                            probe: Some(probe.to_string()),
                            detail: f.detail(),
                            symptom: Some(f.symptom()),
                            ..Failure::default()
                        },
                    );
                    Judged::Failed
                }
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::super::report::ConformReport;
    use super::super::super::rules::{LIMITS, SERVER_RULES};
    use super::super::liveness::Refusal;
    use super::*;

    fn report(tally: Tally) -> ConformReport {
        tally.into_report("server", String::new(), vec![], vec![])
    }

    fn stop_at(first_refusal_s: u64, last_accepted_s: u64) -> Stopped {
        Stopped {
            accepted: 10,
            last_accepted_at: Duration::from_secs(last_accepted_s),
            first_refusal: Refusal {
                connection: 11,
                probe: "vector x".into(),
                error: "refused".into(),
                at: Duration::from_secs(first_refusal_s),
            },
        }
    }

    /// The report attributes each concurrency client to its own connection,
    /// also when the task of one before it panicked.
    #[test]
    fn concurrent_clients_keep_their_connection_numbers() {
        let panicked = ConcurrentFailure {
            kind: ConcurrentFailureKind::Task(TaskFailure {
                how: "panicked: on purpose".into(),
            }),
            at: Duration::ZERO,
        };
        let third = ConcurrentFailure {
            kind: ConcurrentFailureKind::Replies {
                step: ClientStep::MessageAndClose,
                got: vec![0xFF],
                end: RepliesEnd::Closed,
            },
            at: Duration::ZERO,
        };
        let outcomes = vec![Ok(()), Err(panicked), Err(third), Ok(())];
        let mut tally = Tally::new(&SERVER_RULES);
        let judged = judge_concurrent_clients(&mut tally, LIMITS, &outcomes, 100, "probe", None);
        assert_eq!(
            judged,
            [
                Judged::Passed,
                Judged::Failed,
                Judged::Failed,
                Judged::Passed
            ]
        );
        let r = report(tally);
        let limits = r.rule("limits").unwrap();
        assert_eq!((limits.checks, limits.failed), (4, 2));
        assert_eq!(limits.failures[0].connection, Some(101));
        assert!(limits.failures[0].detail.contains("panicked: on purpose"));
        assert_eq!(limits.failures[1].connection, Some(102));
        assert_eq!(
            limits.failures[1].detail,
            "MSG and CLOSE got [ff], not [00 00] and a close"
        );
        assert_eq!(
            limits.failures[1].symptom.as_deref(),
            Some("MSG (0x03) answered with 0xFF instead of 0x00")
        );
        // A wrong CLOSE reads as it does in the vector runs.
        let close = ConcurrentFailure {
            kind: ConcurrentFailureKind::Replies {
                step: ClientStep::MessageAndClose,
                got: vec![0, 0xFF],
                end: RepliesEnd::Closed,
            },
            at: Duration::ZERO,
        };
        assert_eq!(
            close.symptom(),
            "CLOSE (0x04) answered with 0xFF instead of 0x00"
        );
        assert!(close.message_acknowledged());
    }

    #[test]
    fn concurrent_clients_cut_off_by_a_stop_are_void() {
        let cut = ConcurrentFailure {
            kind: ConcurrentFailureKind::Replies {
                step: ClientStep::MessageAndClose,
                got: vec![],
                end: RepliesEnd::Closed,
            },
            at: Duration::from_secs(9),
        };
        let outcomes = vec![Err(cut.clone()); 1000];
        let mut tally = Tally::new(&SERVER_RULES);
        let judged = judge_concurrent_clients(
            &mut tally,
            LIMITS,
            &outcomes,
            1,
            "probe",
            Some(&stop_at(10, 8)),
        );
        assert!(judged.iter().all(|j| *j == Judged::Void(Void::CutOff)));
        let r = report(tally);
        let limits = r.rule("limits").unwrap();
        assert_eq!((limits.checks, limits.failed, limits.void), (0, 0, 1000));
        // Without the stop, each is a failure with one shared symptom.
        let mut tally = Tally::new(&SERVER_RULES);
        judge_concurrent_clients(&mut tally, LIMITS, &outcomes, 1, "probe", None);
        let r = report(tally);
        assert_eq!(r.rule("limits").unwrap().failed, 1000);
        assert_eq!(
            r.root_causes[0].sentence(),
            "1000 failures of rule limits share one symptom: MSG (0x03) got no reply (0x00 due): the server closed the connection"
        );
    }
}
