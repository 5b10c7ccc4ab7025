//! Judging what `conform server` observed on each connection against what
//! the spec expects: the replies, how the connection ended, and when. Pure:
//! observations come in as data (the IO is in `wire`), findings go to the
//! tally, each with a symptom worded so that one broken behaviour seen by
//! many checks can be counted once.

use std::time::Duration;

use crate::proto::frame::{parse_frame, Parsed};

use super::super::report::{hex, Failure, Tally};
use super::super::rules::{section_rule, violation_rule, Rule, REPLIES};
use super::super::vectors::{ClosedBy, SessionVector};
use super::liveness::Stopped;
use super::plan::frames_of;
use super::tasks::TaskFailure;

/// How a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailureKind {
    /// Refused, reset or aborted: nobody accepts on the port.
    Refused,
    /// No answer within the wait.
    TimedOut,
    Other,
}

/// A connection that could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure {
    pub kind: ConnectFailureKind,
    /// What the system said, for the report.
    pub message: String,
    /// When the attempt started, since the run started.
    pub at: Duration,
}

impl ConnectFailure {
    /// The behaviour, for grouping failures by symptom.
    pub fn symptom(&self) -> String {
        match self.kind {
            ConnectFailureKind::Refused => "a connection was refused".into(),
            ConnectFailureKind::TimedOut => "a connection was not accepted within the wait".into(),
            ConnectFailureKind::Other => {
                format!("a connection could not be opened: {}", self.message)
            }
        }
    }
}

/// How the server ended a connection, as seen by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEnd {
    Eof,
    Reset(String),
    /// The server neither closed nor sent anything more within the wait.
    Timeout,
    Unreachable(ConnectFailure),
    /// Not attempted: the server had already stopped accepting connections.
    NotRun,
}

/// What one connection of a vector run or probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub replies: Vec<u8>,
    pub end: ConnectionEnd,
    /// From the connection attempt to its end.
    pub elapsed: Duration,
    /// When it ended, since the run started.
    pub ended_at: Duration,
}

impl Observed {
    /// A check that was not run because the server had stopped.
    pub fn not_run() -> Observed {
        Observed {
            replies: Vec::new(),
            end: ConnectionEnd::NotRun,
            elapsed: Duration::ZERO,
            ended_at: Duration::ZERO,
        }
    }
}

/// Why a check says nothing about the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Void {
    /// Not attempted, or refused, once the server had stopped.
    NotRun,
    /// Connected, but lost its server before the replies that were due,
    /// after the last connection the server accepted.
    CutOff,
}

/// Whether an observation says nothing about the rules because the server
/// had stopped accepting connections: the check was not run, its connection
/// was refused with the stop, or, around the last connection the server
/// accepted or after, it lost its server before the replies that were due
/// (what a crash looks like from the client's side).
pub fn void_of(got: &Observed, expected: &[u8], stopped: Option<&Stopped>) -> Option<Void> {
    if got.end == ConnectionEnd::NotRun {
        return Some(Void::NotRun);
    }
    let stop = stopped?;
    match &got.end {
        ConnectionEnd::Unreachable(f) => (f.kind == ConnectFailureKind::Refused
            && f.at >= stop.cut_off_since())
        .then_some(Void::NotRun),
        // A reset cuts off even a connection whose replies were all there
        // (then it would fail graceful-close); a close only one whose
        // replies were not.
        ConnectionEnd::Eof | ConnectionEnd::Reset(_) => (got.ended_at >= stop.cut_off_since()
            && expected.starts_with(&got.replies)
            && (got.replies.len() < expected.len() || matches!(got.end, ConnectionEnd::Reset(_))))
        .then_some(Void::CutOff),
        ConnectionEnd::Timeout | ConnectionEnd::NotRun => None,
    }
}

/// A wire result that differs from what the spec says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub frame: Option<usize>,
    pub bytes: Vec<u8>,
    pub detail: String,
    /// The behaviour, without anything particular to this check.
    pub symptom: String,
    /// The replies were right as far as they came, but the server reset
    /// the connection: a graceful-close failure, not the vector's rule.
    pub reset: bool,
}

/// How a frame is named in symptoms: its kind and tag, the same in every
/// state and vector.
fn frame_label(frame: &[u8]) -> String {
    match (frame.first(), parse_frame(frame)) {
        (None, _) => "the end of the stream".into(),
        (Some(_), Parsed::Partial { .. }) => "an incomplete frame".into(),
        (Some(1), _) => "NAME (0x01)".into(),
        (Some(2), _) => "PASS (0x02)".into(),
        (Some(3), _) => "MSG (0x03)".into(),
        (Some(4), _) => "CLOSE (0x04)".into(),
        (Some(tag), _) => format!("a frame with unknown tag 0x{tag:02X}"),
    }
}

/// The symptom of a reply that differs from the one due: `frame` names
/// the frame answered, `ended` says how the connection ended when the
/// reply is missing.
pub(super) fn reply_symptom(
    frame: &str,
    got: Option<&u8>,
    due: Option<&u8>,
    ended: &str,
) -> String {
    match (got, due) {
        (Some(g), Some(e)) => format!("{frame} answered with 0x{g:02X} instead of 0x{e:02X}"),
        (Some(g), None) => format!("{frame} answered with 0x{g:02X} where no reply is due"),
        (None, Some(e)) => format!("{frame} got no reply (0x{e:02X} due): {ended}"),
        (None, None) => format!("{frame}: {ended}"),
    }
}

/// Compares the replies and the end of one connection with the vector's.
/// `split`: the client bytes went out in pieces.
pub fn compare(
    client: &[u8],
    expected: &[u8],
    closed_by: ClosedBy,
    got: &Observed,
    wait: Duration,
    split: bool,
) -> Result<(), Mismatch> {
    let frames = frames_of(client);
    let frame_bytes = |k: usize| {
        frames
            .get(k)
            .map_or(Vec::new(), |&(at, len)| client[at..at + len].to_vec())
    };
    let sent = if split { " sent in pieces" } else { "" };
    let wait_s = wait.as_secs_f64();
    match &got.end {
        ConnectionEnd::Unreachable(f) => {
            return Err(Mismatch {
                frame: None,
                bytes: Vec::new(),
                detail: f.message.clone(),
                symptom: f.symptom(),
                reset: false,
            })
        }
        ConnectionEnd::NotRun => {
            return Err(Mismatch {
                frame: None,
                bytes: Vec::new(),
                detail: "not run: the server had stopped accepting connections".into(),
                symptom: "the server had stopped accepting connections".into(),
                reset: false,
            })
        }
        _ => {}
    }
    let prefix_ok = expected.starts_with(&got.replies);
    if let (ConnectionEnd::Reset(e), true) = (&got.end, prefix_ok) {
        let k = got.replies.len().min(frames.len().saturating_sub(1));
        // After a split write, a reset is the split's doing (the server gave
        // up on a partial frame), not a graceful-close failure.
        let symptom = if split {
            format!(
                "{}{sent}: the server reset the connection",
                frame_label(&frame_bytes(k))
            )
        } else {
            "the server reset the connection instead of closing it gracefully".into()
        };
        return Err(Mismatch {
            frame: Some(k + 1),
            bytes: frame_bytes(got.replies.len()),
            detail: format!(
                "the connection was reset ({e}) after replies [{}] of [{}]: the server closed without draining, and the client can lose its last replies",
                hex(&got.replies),
                hex(expected)
            ),
            symptom,
            reset: !split,
        });
    }
    if got.replies != expected {
        let k = got
            .replies
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.replies.len().min(expected.len()));
        let label = frame_label(&frame_bytes(k));
        let ended = match got.end {
            ConnectionEnd::Timeout => "nothing came within the wait",
            ConnectionEnd::Reset(_) => "the server reset the connection",
            _ => "the server closed the connection",
        };
        let label = format!("{label}{sent}");
        let symptom = reply_symptom(&label, got.replies.get(k), expected.get(k), ended);
        let how = match got.end {
            ConnectionEnd::Timeout => format!(" (then nothing more for {wait_s} s)"),
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
            symptom,
            reset: false,
        });
    }
    if got.end == ConnectionEnd::Timeout {
        let after = match closed_by {
            ClosedBy::Server => "after its last reply",
            ClosedBy::Client => "after the client ended its stream",
        };
        return Err(Mismatch {
            frame: Some(frames.len().max(1)),
            bytes: frame_bytes(expected.len().min(frames.len().saturating_sub(1))),
            detail: format!(
                "the replies were right, but the server did not close the connection within {wait_s} s {after}"
            ),
            symptom: format!("the server did not close the connection {after}"),
            reset: false,
        });
    }
    Ok(())
}

/// The rule a vector's wire result is judged under: its rule, else its
/// first section that names a server rule.
pub fn vector_rule(v: &SessionVector) -> Rule {
    if let Some(r) = v.rule.as_deref().and_then(violation_rule) {
        return r;
    }
    v.sections()
        .filter(|s| !matches!(*s, "record-format" | "deviations" | "rules"))
        .find_map(section_rule)
        .unwrap_or(REPLIES)
}

fn graceful_close() -> Rule {
    section_rule("graceful-close").unwrap_or(REPLIES)
}

/// One check: a connection, what made it, and the rule it is judged under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    pub connection: usize,
    pub probe: String,
    pub rule: Rule,
}

/// Tallies one compared run. A server that closed by itself also passes
/// graceful-close; a reset fails it instead of the run's rule.
pub fn judge_run(
    tally: &mut Tally,
    run: &CheckRun,
    outcome: Result<(), Mismatch>,
    closed_by: ClosedBy,
) {
    match outcome {
        Ok(()) => {
            tally.pass(run.rule);
            if closed_by == ClosedBy::Server {
                tally.pass(graceful_close());
            }
        }
        Err(m) => {
            let rule = if m.reset { graceful_close() } else { run.rule };
            tally.fail(
                rule,
                Failure {
                    connection: Some(run.connection),
                    probe: Some(run.probe.clone()),
                    frame: m.frame,
                    bytes: hex(&m.bytes),
                    detail: m.detail,
                    symptom: Some(m.symptom),
                    ..Failure::default()
                },
            );
        }
    }
}

/// What judging one check came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    Passed,
    Failed,
    Void(Void),
}

/// What one check sent and expects.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    pub client: &'a [u8],
    pub replies: &'a [u8],
    pub closed_by: ClosedBy,
    /// The client bytes went out in pieces.
    pub split: bool,
}

/// Judges one check's observation (or its task's failure) and tallies it.
pub fn judge_observed(
    tally: &mut Tally,
    run: &CheckRun,
    want: Expectation<'_>,
    got: &Result<Observed, TaskFailure>,
    wait: Duration,
    stopped: Option<&Stopped>,
) -> Judged {
    let got = match got {
        Ok(got) => got,
        Err(failure) => {
            judge_task_failure(tally, run, failure);
            return Judged::Failed;
        }
    };
    if let Some(void) = void_of(got, want.replies, stopped) {
        tally.void(run.rule);
        return Judged::Void(void);
    }
    let outcome = compare(
        want.client,
        want.replies,
        want.closed_by,
        got,
        wait,
        want.split,
    );
    let judged = if outcome.is_ok() {
        Judged::Passed
    } else {
        Judged::Failed
    };
    judge_run(tally, run, outcome, want.closed_by);
    judged
}

/// Tallies a check whose own task failed: that is msglog conform's fault,
/// but the check did not pass, so it fails and says why.
fn judge_task_failure(tally: &mut Tally, run: &CheckRun, failure: &TaskFailure) {
    tally.fail(
        run.rule,
        Failure {
            connection: Some(run.connection),
            probe: Some(run.probe.clone()),
            detail: failure.to_string(),
            symptom: Some(
                "msglog conform's own check task failed (a bug in msglog conform)".into(),
            ),
            ..Failure::default()
        },
    );
}

/// A timeout probe: the replies must be right, and the 0xFF must come from
/// the timeout `handshake`, not at once.
pub fn judge_timing(
    tally: &mut Tally,
    run: &CheckRun,
    want: Expectation<'_>,
    got: &Result<Observed, TaskFailure>,
    handshake: Duration,
    wait: Duration,
    stopped: Option<&Stopped>,
) -> Judged {
    if let Ok(observed) = got {
        let early = observed.elapsed < handshake / 2;
        let right = compare(
            want.client,
            want.replies,
            ClosedBy::Server,
            observed,
            wait,
            false,
        )
        .is_ok();
        if early && right {
            tally.fail(
                run.rule,
                Failure {
                    connection: Some(run.connection),
                    probe: Some(run.probe.clone()),
                    bytes: hex(want.client),
                    detail: format!(
                        "the 0xFF came after {} ms, well before the handshake timeout of {} s",
                        observed.elapsed.as_millis(),
                        handshake.as_secs_f64()
                    ),
                    symptom: Some(
                        "the timeout's 0xFF came well before the handshake timeout".into(),
                    ),
                    ..Failure::default()
                },
            );
            return Judged::Failed;
        }
    }
    judge_observed(tally, run, want, got, wait + handshake, stopped)
}

#[cfg(test)]
mod tests {
    use super::super::super::report::ConformReport;
    use super::super::super::rules::SERVER_RULES;
    use super::super::liveness::Refusal;
    use super::super::plan::{frame, login};
    use super::*;
    use crate::proto::Frame;

    fn vector(client: &[u8]) -> SessionVector {
        SessionVector {
            id: "t".into(),
            description: String::new(),
            spec: vec!["protocol.md#close".into()],
            mid_frame: false,
            max_payload: None,
            client: client.to_vec(),
            replies: vec![0],
            closed_by: ClosedBy::Server,
            rule: None,
            log: vec![],
        }
    }

    fn observed(replies: &[u8], end: ConnectionEnd) -> Observed {
        Observed {
            replies: replies.to_vec(),
            end,
            elapsed: Duration::ZERO,
            ended_at: Duration::from_secs(5),
        }
    }

    fn report(tally: Tally) -> ConformReport {
        tally.into_report("server", String::new(), vec![], vec![])
    }

    #[test]
    fn vectors_are_judged_by_rule_then_section() {
        let mut v = vector(&[4]);
        assert_eq!(vector_rule(&v).name, "close");
        v.rule = Some("UnknownTag".into());
        assert_eq!(vector_rule(&v).name, "UnknownTag");
        v.rule = None;
        v.spec = vec!["protocol.md#record-format".into()];
        assert_eq!(vector_rule(&v).name, "replies");
    }

    #[test]
    fn compare_names_the_frame_whose_reply_differs() {
        let mut bytes = login(b"u");
        bytes.extend(frame(Frame::Msg(b"x")));
        let wait = Duration::from_secs(1);
        let got = observed(&[0, 0xFF], ConnectionEnd::Eof);
        let m = compare(&bytes, &[0, 0, 0], ClosedBy::Client, &got, wait, false).unwrap_err();
        assert_eq!(m.frame, Some(2));
        assert_eq!(m.bytes, frame(Frame::Pass(b"A")));
        assert_eq!(m.symptom, "PASS (0x02) answered with 0xFF instead of 0x00");
        assert!(!m.reset);
        let reset = observed(&[0], ConnectionEnd::Reset("reset".into()));
        let m = compare(&bytes, &[0, 0, 0], ClosedBy::Client, &reset, wait, false).unwrap_err();
        assert!(m.reset);
        assert_eq!(
            m.symptom,
            "the server reset the connection instead of closing it gracefully"
        );
    }

    /// The symptom of a wrong CLOSE is the same in every state and vector,
    /// so that the report can count it once.
    #[test]
    fn symptoms_do_not_depend_on_the_check() {
        let wait = Duration::from_secs(1);
        let in_c = compare(
            &[4],
            &[0],
            ClosedBy::Server,
            &observed(&[0xFF], ConnectionEnd::Eof),
            wait,
            false,
        );
        let mut in_p = login(b"someone");
        in_p.push(4);
        let in_p = compare(
            &in_p,
            &[0, 0, 0],
            ClosedBy::Server,
            &observed(&[0, 0, 0xFF], ConnectionEnd::Eof),
            wait,
            false,
        );
        let close = "CLOSE (0x04) answered with 0xFF instead of 0x00";
        assert_eq!(in_c.unwrap_err().symptom, close);
        assert_eq!(in_p.unwrap_err().symptom, close);
        let split = compare(
            &login(b"u"),
            &[0, 0],
            ClosedBy::Server,
            &observed(&[], ConnectionEnd::Eof),
            wait,
            true,
        );
        assert_eq!(
            split.unwrap_err().symptom,
            "NAME (0x01) sent in pieces got no reply (0x00 due): the server closed the connection"
        );
        let extra = compare(
            &[9],
            &[0xFF],
            ClosedBy::Server,
            &observed(&[0xFF, 0], ConnectionEnd::Eof),
            wait,
            false,
        );
        assert_eq!(
            extra.unwrap_err().symptom,
            "the end of the stream answered with 0x00 where no reply is due"
        );
        let open = compare(
            &[4],
            &[0],
            ClosedBy::Server,
            &observed(&[0], ConnectionEnd::Timeout),
            wait,
            false,
        );
        assert_eq!(
            open.unwrap_err().symptom,
            "the server did not close the connection after its last reply"
        );
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

    #[test]
    fn after_a_stop_refusals_and_cut_off_connections_are_void() {
        let refused_at = |s| {
            observed(
                &[],
                ConnectionEnd::Unreachable(ConnectFailure {
                    kind: ConnectFailureKind::Refused,
                    message: "cannot connect: refused".into(),
                    at: Duration::from_secs(s),
                }),
            )
        };
        let stop = stop_at(5, 4);
        assert_eq!(
            void_of(&Observed::not_run(), &[0], None),
            Some(Void::NotRun)
        );
        assert_eq!(
            void_of(&refused_at(6), &[0], None),
            None,
            "no stop, no void"
        );
        assert_eq!(
            void_of(&refused_at(6), &[0], Some(&stop)),
            Some(Void::NotRun)
        );
        assert_eq!(
            void_of(&refused_at(1), &[0], Some(&stop)),
            None,
            "an early refusal is a failure"
        );
        // Cut off after the last accepted connection, replies right so far.
        let cut = observed(&[0], ConnectionEnd::Eof);
        assert_eq!(void_of(&cut, &[0, 0], Some(&stop)), Some(Void::CutOff));
        // A wrong reply before the cut is still a failure.
        assert_eq!(
            void_of(&observed(&[0xFF], ConnectionEnd::Eof), &[0, 0], Some(&stop)),
            None
        );
        // A reset after all the replies is cut off too; a close is not.
        let reset = observed(&[0], ConnectionEnd::Reset("reset".into()));
        assert_eq!(void_of(&reset, &[0], Some(&stop)), Some(Void::CutOff));
        assert_eq!(
            void_of(&observed(&[0], ConnectionEnd::Eof), &[0], Some(&stop)),
            None
        );
        // So is a close before the server was last seen accepting.
        assert_eq!(void_of(&cut, &[0, 0], Some(&stop_at(10, 9))), None);
    }

    #[test]
    fn a_check_whose_task_failed_or_whose_0xff_came_at_once_fails() {
        let run = CheckRun {
            connection: 7,
            probe: "probe handshake timeout".into(),
            rule: REPLIES,
        };
        let want = Expectation {
            client: &[],
            replies: &[0xFF],
            closed_by: ClosedBy::Server,
            split: false,
        };
        let wait = Duration::from_secs(1);
        let mut tally = Tally::new(&SERVER_RULES);
        let task = Err(TaskFailure {
            how: "panicked: oops".into(),
        });
        assert_eq!(
            judge_observed(&mut tally, &run, want, &task, wait, None),
            Judged::Failed
        );
        let mut early = observed(&[0xFF], ConnectionEnd::Eof);
        early.elapsed = Duration::from_millis(10);
        let handshake = Duration::from_secs(2);
        assert_eq!(
            judge_timing(
                &mut tally,
                &run,
                want,
                &Ok(early.clone()),
                handshake,
                wait,
                None
            ),
            Judged::Failed
        );
        early.elapsed = Duration::from_millis(2100);
        assert_eq!(
            judge_timing(&mut tally, &run, want, &Ok(early), handshake, wait, None),
            Judged::Passed
        );
        let r = report(tally);
        let replies = r.rule("replies").unwrap();
        assert_eq!((replies.checks, replies.failed), (3, 2));
        assert!(replies.failures[0].detail.contains("panicked: oops"));
        assert!(replies.failures[1]
            .detail
            .contains("well before the handshake timeout"));
    }
}
