//! What a client did under each fault scenario of `conform client`, in
//! words, and the MessageLost check for the scenarios that refuse a MSG.
//! Pure: the recording and the command's end come in as data.

use std::collections::HashSet;

use super::checker::{Recording, Scenario, ScenarioEvent};
use super::client::CommandRun;
use super::delivery::{self, DeliveryVerdict, Refused, SentOn};
use super::judge::{ConnectionVerdict, ServerEndKind};
use super::report::{hex, Failure, ScenarioResult, Tally};
use super::rules::MESSAGE_LOST;

/// The report's part for one scenario; tallies MessageLost for each MSG
/// the scenario refused.
pub fn describe_scenario(
    scenario: Scenario,
    recording: &Recording,
    verdicts: &[ConnectionVerdict],
    command: &CommandRun,
    tally: &mut Tally,
) -> ScenarioResult {
    let events: Vec<&ScenarioEvent> = recording
        .events
        .iter()
        .filter(|e| e.scenario == scenario)
        .collect();
    let verdict = |id: usize| verdicts.get(id.wrapping_sub(1));
    let later = |id: usize| recording.connections.len().saturating_sub(id);
    let mut obs = Vec::new();
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
                let n = later(e.connection);
                if n > 0 {
                    line.push_str(&format!("; it made {n} more connection(s) afterwards"));
                }
                obs.push(line);
                if what == "MSG" {
                    obs.extend(judge_delivery(
                        e,
                        "rejected with 0xFF",
                        recording,
                        verdicts,
                        command,
                        tally,
                    ));
                }
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
                    "connection {}: the server closed the connection right after MSG (frame {}, bytes {}) without replying, and did not log it",
                    e.connection,
                    e.frame,
                    hex(&e.payload)
                );
                let after = recording
                    .connections
                    .iter()
                    .find(|c| c.transcript.id == e.connection)
                    .map_or(0, |c| {
                        let t = &c.transcript;
                        t.received
                            .len()
                            .saturating_sub(t.server_end.map_or(0, |s| s.received_before))
                    });
                if after > 0 {
                    line.push_str(&format!(
                        "; the client then sent {after} more bytes on the closed connection"
                    ));
                }
                obs.push(line);
                obs.extend(judge_delivery(
                    e,
                    "dropped without a reply",
                    recording,
                    verdicts,
                    command,
                    tally,
                ));
            }
        }
    }
    ScenarioResult {
        scenario: scenario.to_string(),
        observations: obs,
    }
}

/// Where the refused message (and those behind it) ended up, and whether
/// the client sent it again or told its caller: one MessageLost check.
fn judge_delivery(
    event: &ScenarioEvent,
    how: &str,
    recording: &Recording,
    verdicts: &[ConnectionVerdict],
    command: &CommandRun,
    tally: &mut Tally,
) -> Vec<String> {
    let sent: Vec<SentOn<'_>> = recording
        .connections
        .iter()
        .zip(verdicts)
        .map(|(c, v)| SentOn {
            connection: c.transcript.id,
            messages: &v.messages,
        })
        .collect();
    let logged: HashSet<Vec<u8>> = crate::proto::records(&recording.log)
        .filter_map(Result::ok)
        .map(|r| r.message)
        .collect();
    let refused = Refused {
        connection: event.connection,
        message: &event.payload,
        how,
    };
    let account = delivery::account(refused, &sent, &logged, &command.arguments);
    let end = command.end.unwrap_or(delivery::CommandEnd::TimedOut);
    let verdict = delivery::judge(&account, end);
    match verdict {
        DeliveryVerdict::NothingLost | DeliveryVerdict::ReportedToCaller => {
            tally.pass(MESSAGE_LOST)
        }
        DeliveryVerdict::LostSilently => tally.fail(
            MESSAGE_LOST,
            Failure {
                connection: Some(event.connection),
                frame: Some(event.frame),
                bytes: hex(&event.payload),
                detail: delivery::failure_detail(refused, &account, end, command.timeout),
                symptom: Some(
                    "the client lost a refused message without telling its caller".into(),
                ),
                ..Failure::default()
            },
        ),
        DeliveryVerdict::Undecided => {}
    }
    delivery::describe(
        refused,
        &account,
        &verdict,
        end,
        &command.stderr_tail,
        command.timeout,
    )
}
