//! `msglog conform client`: run a client program against the checking
//! server and judge every connection it made.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::checker::{CheckingServer, Recording, Scenario};
use super::delivery::CommandEnd;
use super::judge::{judge_connection, ConnectionVerdict, ServerEndKind};
use super::report::{hex_up_to, ConformReport, Tally, TranscriptHex};
use super::rules::{
    CLIENT_ORDER, CLIENT_RULES, CLIENT_TAG, CLOSE_NOT_ONE_BYTE, LENGTH_NOT_BYTES, MESSAGE_LOST,
    PAYLOAD_TOO_LONG, SENT_AFTER_REJECT,
};
use super::scenario_outcome::describe_scenario;
use super::ConformError;

/// Bytes of the command's stderr kept for the report (the end of it).
const STDERR_KEPT: usize = 4096;
/// How long the command's stderr may stay open after it exited (a child
/// of its own may hold it) before the report goes on without the rest.
const STDERR_DRAIN: Duration = Duration::from_secs(1);

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

/// How the command ran: what the report says about it.
#[derive(Debug, Clone, Default)]
pub struct CommandRun {
    /// Its arguments after the program, `{port}` replaced.
    pub arguments: Vec<String>,
    pub end: Option<CommandEnd>,
    /// The end of what it printed on stderr.
    pub stderr_tail: Vec<u8>,
    /// How long it was allowed to run.
    pub timeout: Duration,
}

impl CommandRun {
    fn end(&self) -> CommandEnd {
        self.end.unwrap_or(CommandEnd::TimedOut)
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
        // Its stderr is passed on as it comes, and its end kept: what it
        // told its caller is part of the judgement.
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ConformError::Spawn {
        command: shown.clone(),
        source,
    })?;
    let stderr = child
        .stderr
        .take()
        .map(|pipe| tokio::spawn(pass_on_and_keep_tail(pipe)));
    let end = match tokio::time::timeout(opts.timeout, child.wait()).await {
        Ok(Ok(status)) => CommandEnd::Exited(status.code()),
        Ok(Err(_)) | Err(_) => {
            let _ = child.kill().await;
            CommandEnd::TimedOut
        }
    };
    let stderr_tail = match stderr {
        Some(task) => match tokio::time::timeout(STDERR_DRAIN, task).await {
            Ok(Ok(tail)) => tail,
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    let recording = server.finish().await;

    if let Some(path) = &opts.log {
        std::fs::write(path, &recording.log).map_err(|source| ConformError::WriteLog {
            path: path.clone(),
            source,
        })?;
    }
    let connections = recording.connections.len();
    let command = CommandRun {
        arguments: args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        end: Some(end),
        stderr_tail,
        timeout: opts.timeout,
    };
    let report = judge_recording(
        &recording,
        &opts.scenarios,
        &command,
        format!("`{shown}` against 127.0.0.1:{port}"),
        opts.log.as_ref(),
    );
    Ok(ClientOutcome {
        report,
        connections,
    })
}

/// Copies the command's stderr to ours as it comes, and returns its last
/// `STDERR_KEPT` bytes.
async fn pass_on_and_keep_tail(mut pipe: tokio::process::ChildStderr) -> Vec<u8> {
    use std::io::Write as _;
    let mut tail = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        // Small writes to our own stderr: a blocking write is brief.
        let _ = std::io::stderr().write_all(&chunk[..n]);
        tail.extend_from_slice(&chunk[..n]);
        let excess = tail.len().saturating_sub(STDERR_KEPT);
        tail.drain(..excess);
    }
    tail
}

/// Judges every recorded connection and describes the scenarios.
pub fn judge_recording(
    recording: &Recording,
    scenarios: &[Scenario],
    command: &CommandRun,
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
        command.end().describe(command.timeout),
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
        .map(|s| describe_scenario(*s, recording, &verdicts, command, &mut tally))
        .collect();
    note_unexercised(&mut tally, recording, &verdicts, scenarios, command);
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

/// Says, for each client rule nothing exercised, why not.
fn note_unexercised(
    tally: &mut Tally,
    recording: &Recording,
    verdicts: &[ConnectionVerdict],
    scenarios: &[Scenario],
    command: &CommandRun,
) {
    if verdicts.is_empty() {
        for rule in CLIENT_RULES {
            tally.note_if_unexercised(rule, "the command made no connection");
        }
        return;
    }
    let frames: usize = verdicts.iter().map(|v| v.frames).sum();
    if frames == 0 {
        for rule in [CLIENT_ORDER, CLIENT_TAG] {
            tally.note_if_unexercised(rule, "the client sent no complete frame");
        }
    }
    for rule in [LENGTH_NOT_BYTES, PAYLOAD_TOO_LONG] {
        tally.note_if_unexercised(
            rule,
            "the client sent no NAME, PASS or MSG frame whose length could be checked",
        );
    }
    tally.note_if_unexercised(
        CLOSE_NOT_ONE_BYTE,
        "the client never sent CLOSE (tag 0x04): it ended its connections without it",
    );
    let rejected = recording
        .connections
        .iter()
        .any(|c| c.transcript.server_end.map(|e| e.kind) == Some(ServerEndKind::Rejected));
    tally.note_if_unexercised(
        SENT_AFTER_REJECT,
        if rejected {
            "the only 0xFF answered bytes a wrong length had put out of step, so the client cannot have known it was rejected"
        } else {
            "the server never answered 0xFF, so there was nothing to stop after: --scenario reject-password or reject-message=N makes it"
        },
    );
    let refusing = scenarios
        .iter()
        .any(|s| matches!(s, Scenario::RejectMessage(_) | Scenario::CloseMidSession));
    let touched_a_message = recording.events.iter().any(|e| {
        matches!(
            e.scenario,
            Scenario::RejectMessage(_) | Scenario::CloseMidSession
        )
    });
    tally.note_if_unexercised(
        MESSAGE_LOST,
        match (refusing, touched_a_message, command.end()) {
            (false, _, _) => "no MSG was refused: --scenario reject-message=N or close-mid-session refuses one",
            (true, false, _) => "the client never sent the MSG the scenario refuses",
            (true, true, CommandEnd::TimedOut) => "the command was killed at the timeout, so what it would have told its caller about the lost message is unknown",
            (true, true, _) => "the scenario refused a MSG, but nothing was judged about it",
        },
    );
}
