//! `msglog conform client`: run a client program against the checking
//! server and judge every connection it made.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::checker::{CheckingServer, Recording, Scenario, ScenarioEvent};
use super::judge::{judge_connection, ConnectionVerdict, ServerEndKind};
use super::report::{hex, hex_up_to, ConformReport, ScenarioResult, Tally, TranscriptHex};
use super::rules::CLIENT_RULES;
use super::ConformError;

/// What `conform client` was asked to do.
#[derive(Debug, Clone)]
pub struct ClientCheck {
    /// Port of the checking server; 0 picks a free one.
    pub port: u16,
    pub scenarios: Vec<Scenario>,
    /// How long the command may run.
    pub timeout: Duration,
    /// Where to write the log of what the client sent.
    pub log: Option<PathBuf>,
    /// The command and its arguments; `{port}` in arguments is replaced.
    pub command: Vec<OsString>,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEnd {
    Exited(Option<i32>),
    /// It was still running at the timeout and was killed.
    TimedOut,
}

impl CommandEnd {
    fn describe(self, timeout: Duration) -> String {
        match self {
            CommandEnd::Exited(Some(code)) => format!("exited with status {code}"),
            CommandEnd::Exited(None) => "was ended by a signal".into(),
            CommandEnd::TimedOut => format!(
                "was still running after {} s and was killed (raise --timeout if it needs longer)",
                timeout.as_secs_f64()
            ),
        }
    }
}

/// The outcome of `conform client`: the report, and whether any connection
/// was made at all (without one there is nothing to judge).
pub struct ClientOutcome {
    pub report: ConformReport,
    pub connections: usize,
}

fn substitute(arg: &OsStr, port: u16) -> OsString {
    match arg.to_str() {
        Some(s) if s.contains("{port}") => s.replace("{port}", &port.to_string()).into(),
        _ => arg.to_os_string(),
    }
}

/// Runs the command against a checking server and judges what it sent.
pub async fn check_client(opts: &ClientCheck) -> Result<ClientOutcome, ConformError> {
    let (program, args) = opts.command.split_first().ok_or(ConformError::NoCommand)?;
    let server = CheckingServer::start(opts.port, opts.scenarios.clone())
        .await
        .map_err(|source| ConformError::Bind {
            port: opts.port,
            source,
        })?;
    let port = server.addr.port();
    let args: Vec<OsString> = args.iter().map(|a| substitute(a, port)).collect();
    let shown = std::iter::once(program.to_string_lossy().into_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&args)
        .env("MSGLOG_HOST", "127.0.0.1")
        .env("MSGLOG_PORT", port.to_string())
        .stdin(Stdio::null())
        // The command's output goes to stderr, so that stdout carries only
        // the report (JSON with --json).
        .stdout(Stdio::from(std::io::stderr()))
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ConformError::Spawn {
        command: shown.clone(),
        source,
    })?;
    let end = match tokio::time::timeout(opts.timeout, child.wait()).await {
        Ok(Ok(status)) => CommandEnd::Exited(status.code()),
        Ok(Err(_)) | Err(_) => {
            let _ = child.kill().await;
            CommandEnd::TimedOut
        }
    };
    let recording = server.finish().await;

    if let Some(path) = &opts.log {
        std::fs::write(path, &recording.log).map_err(|source| ConformError::WriteLog {
            path: path.clone(),
            source,
        })?;
    }
    let connections = recording.connections.len();
    let report = judge_recording(
        &recording,
        &opts.scenarios,
        end,
        opts.timeout,
        format!("`{shown}` against 127.0.0.1:{port}"),
        opts.log.as_ref(),
    );
    Ok(ClientOutcome {
        report,
        connections,
    })
}

/// Judges every recorded connection and describes the scenarios.
pub fn judge_recording(
    recording: &Recording,
    scenarios: &[Scenario],
    end: CommandEnd,
    timeout: Duration,
    target: String,
    log: Option<&PathBuf>,
) -> ConformReport {
    let mut tally = Tally::new(&CLIENT_RULES);
    let verdicts: Vec<ConnectionVerdict> = recording
        .connections
        .iter()
        .map(|c| judge_connection(&c.transcript, &mut tally))
        .collect();
    let mut notes = vec![format!(
        "the command {}; it made {} connection{}",
        end.describe(timeout),
        verdicts.len(),
        if verdicts.len() == 1 { "" } else { "s" }
    )];
    if verdicts.is_empty() {
        notes.push(
            "no connection was made, so nothing was judged: the command must connect to MSGLOG_HOST:MSGLOG_PORT (or the port given as {port})"
                .into(),
        );
    }
    notes.extend(verdicts.iter().map(|v| v.summary.clone()));
    if let Some(path) = log {
        notes.push(format!(
            "the log of what the client sent ({} records) is in {}",
            crate::proto::records(&recording.log).count(),
            path.display()
        ));
    }
    let scenario_results = scenarios
        .iter()
        .map(|s| describe_scenario(*s, recording, &verdicts, end, timeout))
        .collect();
    let mut report = tally.into_report("client", target, notes, scenario_results);
    report.connections = recording
        .connections
        .iter()
        .map(|c| {
            let t = &c.transcript;
            let replies: Vec<u8> = t.replies.iter().map(|r| r.byte).collect();
            TranscriptHex {
                connection: t.id,
                sent: hex_up_to(&t.received, TRANSCRIPT_BYTES),
                replies: hex_up_to(&replies, TRANSCRIPT_BYTES),
            }
        })
        .collect();
    report
}

/// Bytes of each connection's transcript shown in the JSON report.
const TRANSCRIPT_BYTES: usize = 4096;

fn describe_scenario(
    scenario: Scenario,
    recording: &Recording,
    verdicts: &[ConnectionVerdict],
    end: CommandEnd,
    timeout: Duration,
) -> ScenarioResult {
    let events: Vec<&ScenarioEvent> = recording
        .events
        .iter()
        .filter(|e| e.scenario == scenario)
        .collect();
    let mut obs = Vec::new();
    let conn = |id: usize| recording.connections.iter().find(|c| c.transcript.id == id);
    let verdict = |id: usize| verdicts.get(id.wrapping_sub(1));
    let later = |id: usize| recording.connections.len().saturating_sub(id);
    match scenario {
        Scenario::RejectPassword | Scenario::RejectMessage(_) => {
            let what = if scenario == Scenario::RejectPassword {
                "PASS"
            } else {
                "MSG"
            };
            if events.is_empty() {
                obs.push(format!(
                    "the client never sent the {what} this scenario rejects, so it was not exercised"
                ));
            }
            for e in &events {
                let after = verdict(e.connection).map_or(0, |v| v.after_end);
                let mut line = format!(
                    "connection {}: the server answered {what} (frame {}) with 0xFF; the client then ",
                    e.connection, e.frame
                );
                if after == 0 {
                    line.push_str("sent nothing more on that connection: meets SentAfterReject");
                } else {
                    line.push_str(&format!(
                        "sent {after} more bytes on it: breaks SentAfterReject"
                    ));
                }
                if what == "MSG" {
                    let resent = resent_on(recording, verdicts, e);
                    match resent {
                        Some(c) => line.push_str(&format!(
                            "; it sent the rejected message again on connection {c}"
                        )),
                        None => line.push_str("; it did not send the rejected message again"),
                    }
                }
                let n = later(e.connection);
                if n > 0 {
                    line.push_str(&format!("; it made {n} more connection(s) afterwards"));
                }
                obs.push(line);
            }
        }
        Scenario::DelayAcks(ms) => {
            obs.push(format!("every reply was sent {ms} ms late"));
            for c in &recording.connections {
                let t = &c.transcript;
                if t.server_end.map(|e| e.kind) == Some(ServerEndKind::Dropped) {
                    obs.push(format!(
                        "connection {}: dropped by the server (close-mid-session) after {} replies",
                        t.id,
                        t.replies.len()
                    ));
                } else if c.unanswered_at_client_eof > 0 {
                    obs.push(format!(
                        "connection {}: the client ended its stream with {} of its frames unanswered: it did not wait for the replies (a MSG counts as logged only once its 0x00 arrived, spec/protocol.md#acknowledgement)",
                        t.id, c.unanswered_at_client_eof
                    ));
                } else if !t.client_eof && t.server_end.is_none() {
                    obs.push(format!(
                        "connection {}: still open when the run ended, after {} replies",
                        t.id,
                        t.replies.len()
                    ));
                } else {
                    obs.push(format!(
                        "connection {}: the client waited for all {} replies",
                        t.id,
                        t.replies.len()
                    ));
                }
            }
            obs.push(
                "the client rules above were judged on these delayed connections as usual".into(),
            );
        }
        Scenario::CloseMidSession => {
            if events.is_empty() {
                obs.push("the client never sent a MSG, so it was not exercised".into());
            }
            for e in &events {
                let mut line = format!(
                    "connection {}: the server closed the connection right after MSG (frame {}, bytes {}) without replying, and did not log it; the client then ",
                    e.connection,
                    e.frame,
                    hex(&e.payload)
                );
                let after = conn(e.connection).map_or(0, |c| {
                    c.transcript
                        .received
                        .len()
                        .saturating_sub(c.transcript.server_end.map_or(0, |s| s.received_before))
                });
                if after > 0 {
                    line.push_str(&format!(
                        "sent {after} more bytes on the closed connection, "
                    ));
                }
                match resent_on(recording, verdicts, e) {
                    Some(c) => line.push_str(&format!(
                        "sent the unanswered message again on connection {c}: it did not take the missing 0x00 for success (spec/protocol.md#acknowledgement)"
                    )),
                    None => match end {
                        CommandEnd::Exited(Some(0)) => line.push_str(
                            "did not send the message again, and the command exited with status 0 although the message was never acknowledged: it is lost (spec/protocol.md#acknowledgement: only a 0x00 means logged)",
                        ),
                        other => line.push_str(&format!(
                            "did not send the message again; the command {}",
                            other.describe(timeout)
                        )),
                    },
                }
                obs.push(line);
            }
        }
    }
    ScenarioResult {
        scenario: scenario.to_string(),
        observations: obs,
    }
}

/// The connection, after the event's, on which the client sent the same
/// message again.
fn resent_on(
    recording: &Recording,
    verdicts: &[ConnectionVerdict],
    e: &ScenarioEvent,
) -> Option<usize> {
    recording
        .connections
        .iter()
        .zip(verdicts)
        .filter(|(c, _)| c.transcript.id > e.connection)
        .find(|(_, v)| v.messages.contains(&e.payload))
        .map(|(c, _)| c.transcript.id)
}
