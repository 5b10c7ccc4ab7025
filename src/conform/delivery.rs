//! Whether a client lost messages when the checking server refused or
//! dropped one (`--scenario reject-message=N`, `close-mid-session`), and
//! whether it told its caller. Pure: the client's bytes, the checking
//! server's log, and how the command ended come in as data.
//!
//! What can be known: every message the client put on the wire, on every
//! connection, and which of them the checking server logged (a message is
//! known by its bytes); the command's exit status and what it printed on
//! stderr; and its arguments, when they hold the messages it sent. What it
//! meant to send but never put on the wire is known only from those
//! arguments (its stdin is empty): the report says which of these it used.

use std::collections::HashSet;
use std::time::Duration;

use super::report::escaped;

/// Messages named one by one in the report at most.
const MESSAGES_NAMED: usize = 5;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEnd {
    Exited(Option<i32>),
    /// It was still running at the timeout and was killed.
    TimedOut,
}

impl CommandEnd {
    /// `exited with status 6`, for the report.
    pub fn describe(self, timeout: Duration) -> String {
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

/// The messages one connection carried, as the client meant them.
#[derive(Debug, Clone, Copy)]
pub struct SentOn<'a> {
    pub connection: usize,
    pub messages: &'a [Vec<u8>],
}

/// A MSG the checking server refused (0xFF) or dropped (no reply) on
/// purpose.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    pub connection: usize,
    pub message: &'a [u8],
    /// `rejected with 0xFF` or `dropped without a reply`.
    pub how: &'a str,
}

/// Where each message the scenario touched ended up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryAccount {
    /// Distinct messages the client sent over the whole run.
    pub sent: usize,
    /// Of those, the ones the checking server logged.
    pub logged: usize,
    /// Whether the refused message was logged later, and on which
    /// connection the client sent it again.
    pub resent_on: Option<usize>,
    pub refused_logged: bool,
    /// Messages the client had sent behind the refused one on its
    /// connection, which the server never processed.
    pub behind: Vec<Vec<u8>>,
    /// Messages sent on later connections.
    pub sent_later: usize,
    /// Of the refused message and those behind it, the ones never logged.
    pub lost: Vec<Vec<u8>>,
    /// Arguments of the command that look like messages it never sent:
    /// those after the first argument it did send as a message.
    pub unsent_arguments: Vec<String>,
    /// Whether any argument is a message it sent: then the arguments show
    /// what it meant to send.
    pub arguments_hold_messages: bool,
}

/// Counts where the refused message, and those behind it, ended up.
pub fn account(
    refused: Refused<'_>,
    connections: &[SentOn<'_>],
    logged: &HashSet<Vec<u8>>,
    arguments: &[String],
) -> DeliveryAccount {
    let mut a = DeliveryAccount::default();
    let all: HashSet<&[u8]> = connections
        .iter()
        .flat_map(|c| c.messages.iter().map(Vec::as_slice))
        .collect();
    a.sent = all.len();
    a.logged = all.iter().filter(|m| logged.contains(**m)).count();
    a.refused_logged = logged.contains(refused.message);
    a.resent_on = connections
        .iter()
        .filter(|c| c.connection > refused.connection)
        .find(|c| c.messages.iter().any(|m| m == refused.message))
        .map(|c| c.connection);
    if let Some(c) = connections
        .iter()
        .find(|c| c.connection == refused.connection)
    {
        if let Some(at) = c.messages.iter().position(|m| m == refused.message) {
            a.behind = c.messages[at + 1..].to_vec();
        }
    }
    a.sent_later = connections
        .iter()
        .filter(|c| c.connection > refused.connection)
        .map(|c| c.messages.len())
        .sum();
    let mut lost: Vec<Vec<u8>> = std::iter::once(refused.message.to_vec())
        .chain(a.behind.iter().cloned())
        .filter(|m| !logged.contains(m))
        .collect();
    lost.dedup();
    a.lost = lost;
    let first_sent = arguments
        .iter()
        .position(|arg| all.contains(arg.as_bytes()));
    a.arguments_hold_messages = first_sent.is_some();
    if let Some(first) = first_sent {
        a.unsent_arguments = arguments[first..]
            .iter()
            .filter(|arg| !arg.starts_with('-') && !all.contains(arg.as_bytes()))
            .cloned()
            .collect();
    }
    a
}

/// What the client's behaviour comes to under MessageLost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryVerdict {
    /// Every message it sent was logged in the end.
    NothingLost,
    /// Messages were lost, and the command said so with its exit status.
    ReportedToCaller,
    /// Messages were lost, and the command exited 0 as if all were logged.
    LostSilently,
    /// Messages were lost, but the command was killed at the timeout: what
    /// it would have told its caller is unknown.
    Undecided,
}

/// Judges an account: a loss is allowed only when the caller hears of it.
pub fn judge(a: &DeliveryAccount, end: CommandEnd) -> DeliveryVerdict {
    if a.lost.is_empty() {
        return DeliveryVerdict::NothingLost;
    }
    match end {
        CommandEnd::Exited(Some(0)) => DeliveryVerdict::LostSilently,
        CommandEnd::Exited(_) => DeliveryVerdict::ReportedToCaller,
        CommandEnd::TimedOut => DeliveryVerdict::Undecided,
    }
}

/// `"a", "b" and 3 more`.
fn name_messages<T: AsRef<[u8]>>(messages: &[T]) -> String {
    let mut named: Vec<String> = messages
        .iter()
        .take(MESSAGES_NAMED)
        .map(|m| escaped(m.as_ref()))
        .collect();
    if messages.len() > MESSAGES_NAMED {
        named.push(format!("{} more", messages.len() - MESSAGES_NAMED));
    }
    named.join(", ")
}

/// The last non-empty line the command printed on stderr, if any.
pub fn last_stderr_line(stderr: &[u8]) -> Option<String> {
    stderr
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .rfind(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(escaped)
}

/// The report's lines: what happened to the messages, what the command
/// told its caller, the verdict, and what was and was not checked.
pub fn describe(
    refused: Refused<'_>,
    a: &DeliveryAccount,
    verdict: &DeliveryVerdict,
    end: CommandEnd,
    stderr: &[u8],
    timeout: Duration,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fate = format!(
        "messages: the client sent {} distinct message{} over the run and {} of them {} logged; the message {} ({}) ",
        a.sent,
        if a.sent == 1 { "" } else { "s" },
        a.logged,
        if a.logged == 1 { "was" } else { "were" },
        refused.how,
        escaped(refused.message)
    );
    match (a.resent_on, a.refused_logged) {
        (Some(c), true) => fate.push_str(&format!("was sent again on connection {c} and logged")),
        (Some(c), false) => {
            fate.push_str(&format!("was sent again on connection {c} but not logged"))
        }
        (None, true) => fate.push_str("was logged all the same"),
        (None, false) => fate.push_str("was not sent again"),
    }
    if !a.behind.is_empty() {
        fate.push_str(&format!(
            "; {} message{} sent behind it on that connection never processed: {}",
            a.behind.len(),
            if a.behind.len() == 1 {
                " it had"
            } else {
                "s it had"
            },
            name_messages(&a.behind)
        ));
    }
    fate.push_str(&format!(
        "; it sent {} message{} on later connections",
        a.sent_later,
        if a.sent_later == 1 { "" } else { "s" }
    ));
    lines.push(fate);
    let said = match last_stderr_line(stderr) {
        Some(line) => format!(", and its last line on stderr was {line}"),
        None => " and printed nothing on stderr".into(),
    };
    let told = format!("the command {}{said}", end.describe(timeout));
    lines.push(match verdict {
        DeliveryVerdict::NothingLost => format!(
            "no message was lost: meets MessageLost; {told}"
        ),
        DeliveryVerdict::ReportedToCaller => format!(
            "{} never logged ({}); {told}: the client reported the failure to its caller: meets MessageLost",
            count_messages(a.lost.len()),
            name_messages(&a.lost)
        ),
        DeliveryVerdict::LostSilently => format!(
            "{} never logged ({}) and not sent again; {told}, so its caller takes {} for logged: the client carried on as if nothing happened: breaks MessageLost",
            count_messages(a.lost.len()),
            name_messages(&a.lost),
            if a.lost.len() == 1 { "it" } else { "them" }
        ),
        DeliveryVerdict::Undecided => format!(
            "{} never logged ({}); {told}: whether it would have told its caller is unknown, so MessageLost was not judged",
            count_messages(a.lost.len()),
            name_messages(&a.lost)
        ),
    });
    let mut checked = String::from(
        "checked: the messages in the client's bytes on every connection, the checking server's log, the command's exit status and stderr",
    );
    if a.arguments_hold_messages {
        checked.push_str(", and its arguments, which hold the messages it sent");
        let n = a.unsent_arguments.len();
        if n > 0 {
            checked.push_str(&format!(
                ": {n} of them {} never sent ({}): if {}, {} lost before reaching the wire",
                if n == 1 { "was" } else { "were" },
                name_messages(&a.unsent_arguments),
                if n == 1 {
                    "it is a message"
                } else {
                    "they are messages"
                },
                if n == 1 { "it was" } else { "they were" },
            ));
        }
        checked.push_str("; not checked: messages it meant to send that are neither on the wire nor in its arguments (its stdin was empty)");
    } else {
        checked.push_str("; not checked: messages it meant to send but never put on the wire (its stdin was empty and its arguments hold none of the messages it sent)");
    }
    lines.push(checked);
    lines
}

fn count_messages(n: usize) -> String {
    if n == 1 {
        "1 message was".into()
    } else {
        format!("{n} messages were")
    }
}

/// The MessageLost failure's detail, for a client that lost messages
/// silently.
pub fn failure_detail(
    refused: Refused<'_>,
    a: &DeliveryAccount,
    end: CommandEnd,
    timeout: Duration,
) -> String {
    let mut detail = format!(
        "the message {} was {} on this connection; {} never logged ({}) and the client did not send {} again, yet the command {}: it lost {} without telling its caller",
        escaped(refused.message),
        refused.how,
        count_messages(a.lost.len()),
        name_messages(&a.lost),
        if a.lost.len() == 1 { "it" } else { "them" },
        end.describe(timeout),
        if a.lost.len() == 1 { "it" } else { "them" },
    );
    if !a.unsent_arguments.is_empty() {
        detail.push_str(&format!(
            "; its arguments {} were never sent either",
            name_messages(&a.unsent_arguments)
        ));
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|m| m.as_bytes().to_vec()).collect()
    }

    fn logged(list: &[&str]) -> HashSet<Vec<u8>> {
        msgs(list).into_iter().collect()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    const REJECTED: &str = "rejected with 0xFF";

    #[test]
    fn a_client_that_drops_the_rejected_message_and_stops_lost_it() {
        let first = msgs(&["one", "two"]);
        let sent = [SentOn {
            connection: 1,
            messages: &first,
        }];
        let refused = Refused {
            connection: 1,
            message: b"two",
            how: REJECTED,
        };
        let arguments = args(&["--name", "x", "one", "two", "three"]);
        let a = account(refused, &sent, &logged(&["one"]), &arguments);
        assert_eq!(a.lost, msgs(&["two"]));
        assert_eq!((a.sent, a.logged, a.resent_on), (2, 1, None));
        assert_eq!(a.unsent_arguments, ["three"]);
        let end = CommandEnd::Exited(Some(0));
        let verdict = judge(&a, end);
        assert_eq!(verdict, DeliveryVerdict::LostSilently);
        let lines = describe(refused, &a, &verdict, end, b"", Duration::from_secs(1));
        assert!(lines[1].contains("breaks MessageLost"), "{lines:?}");
        assert!(
            lines[1].contains("carried on as if nothing happened"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("1 of them was never sent (\"three\")"),
            "{lines:?}"
        );
        let detail = failure_detail(refused, &a, end, Duration::from_secs(1));
        assert!(
            detail.contains("its arguments \"three\" were never sent either"),
            "{detail}"
        );
        // The same loss, reported with a non-zero status, is allowed.
        let end = CommandEnd::Exited(Some(6));
        let verdict = judge(&a, end);
        assert_eq!(verdict, DeliveryVerdict::ReportedToCaller);
        let lines = describe(
            refused,
            &a,
            &verdict,
            end,
            b"error: message 2 rejected\n",
            Duration::from_secs(1),
        );
        assert!(
            lines[1].contains("exited with status 6, and its last line on stderr was \"error: message 2 rejected\"")
                && lines[1].contains("reported the failure to its caller: meets MessageLost"),
            "{lines:?}"
        );
        assert_eq!(judge(&a, CommandEnd::TimedOut), DeliveryVerdict::Undecided);
    }

    #[test]
    fn a_retry_on_a_new_connection_loses_nothing() {
        let (first, second) = (msgs(&["one", "two"]), msgs(&["two", "three"]));
        let sent = [
            SentOn {
                connection: 1,
                messages: &first,
            },
            SentOn {
                connection: 2,
                messages: &second,
            },
        ];
        let refused = Refused {
            connection: 1,
            message: b"two",
            how: REJECTED,
        };
        let a = account(refused, &sent, &logged(&["one", "two", "three"]), &[]);
        assert!(a.lost.is_empty());
        assert_eq!(
            (a.resent_on, a.refused_logged, a.sent_later),
            (Some(2), true, 2)
        );
        assert_eq!(
            judge(&a, CommandEnd::Exited(Some(0))),
            DeliveryVerdict::NothingLost
        );
        let lines = describe(
            refused,
            &a,
            &DeliveryVerdict::NothingLost,
            CommandEnd::Exited(Some(0)),
            b"",
            Duration::ZERO,
        );
        assert!(
            lines[0].contains("was sent again on connection 2 and logged"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("its arguments hold none of the messages it sent"),
            "{lines:?}"
        );
    }

    #[test]
    fn messages_in_flight_behind_the_refused_one_are_lost_too() {
        let first = msgs(&["one", "two", "three", "four"]);
        let sent = [SentOn {
            connection: 1,
            messages: &first,
        }];
        let refused = Refused {
            connection: 1,
            message: b"two",
            how: REJECTED,
        };
        let a = account(
            refused,
            &sent,
            &logged(&["one"]),
            &args(&["one", "two", "three", "four"]),
        );
        assert_eq!(a.behind, msgs(&["three", "four"]));
        assert_eq!(a.lost, msgs(&["two", "three", "four"]));
        assert!(a.arguments_hold_messages && a.unsent_arguments.is_empty());
    }

    #[test]
    fn the_last_stderr_line_is_found_and_escaped() {
        assert_eq!(
            last_stderr_line(b"one\ntwo\t!\r\n\n"),
            Some("\"two\\t!\"".into())
        );
        assert_eq!(last_stderr_line(b" \n"), None);
    }
}
