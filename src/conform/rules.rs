//! The rules `msglog conform` judges, each with the spec section it cites.
//!
//! Server rules are the spec's rule names (spec/protocol.md#rules, the
//! `Violation` variants) plus, for requirements without a rule name, the
//! anchor of their section (`close`, `frame`, ...). Client rules are the
//! sentences of spec/protocol.md#client-requirements; where a sentence is
//! the client's side of a server rule, the report uses that rule's name.

use crate::proto::Violation;

/// One rule: its name in reports and the section of spec/protocol.md it cites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    /// The section's anchor in spec/protocol.md.
    pub section: &'static str,
    /// The requirement, quoted from the spec word for word.
    pub requirement: &'static str,
}

impl Rule {
    /// The citation printed in reports: `spec/protocol.md#section`.
    pub fn citation(&self) -> String {
        format!("spec/protocol.md#{}", self.section)
    }
}

const fn rule(name: &'static str, section: &'static str, requirement: &'static str) -> Rule {
    Rule {
        name,
        section,
        requirement,
    }
}

// --- Client rules: spec/protocol.md#client-requirements, one per sentence ---

pub const CLIENT_ORDER: Rule = rule(
    "OutOfOrder",
    "client-requirements",
    "A client MUST send NAME first, then PASS, then its MSG frames, and it can send CLOSE at any point.",
);
pub const CLIENT_TAG: Rule = rule(
    "UnknownTag",
    "client-requirements",
    "A client MUST set the tag of each frame to the one the current state expects.",
);
pub const LENGTH_NOT_BYTES: Rule = rule(
    "LengthNotBytes",
    "client-requirements",
    "A client MUST set the length field to the number of payload bytes that follow it, counted in encoded bytes, not characters.",
);
pub const PAYLOAD_TOO_LONG: Rule = rule(
    "PayloadTooLong",
    "client-requirements",
    "A client MUST NOT send a payload longer than 65535 bytes.",
);
pub const CLOSE_NOT_ONE_BYTE: Rule = rule(
    "CloseNotOneByte",
    "client-requirements",
    "A client MUST send CLOSE as the single byte 0x04.",
);
pub const SENT_AFTER_REJECT: Rule = rule(
    "SentAfterReject",
    "client-requirements",
    "A client MUST NOT send anything on a connection after it has received 0xFF.",
);

pub const MESSAGE_LOST: Rule = rule(
    "MessageLost",
    "client-requirements",
    "A client whose MSG got 0xFF, or no reply before its connection ended, MUST send that message again or report to its caller that it was not logged.",
);

/// Every client rule, in report order.
pub const CLIENT_RULES: [Rule; 7] = [
    CLIENT_ORDER,
    CLIENT_TAG,
    LENGTH_NOT_BYTES,
    PAYLOAD_TOO_LONG,
    CLOSE_NOT_ONE_BYTE,
    SENT_AFTER_REJECT,
    MESSAGE_LOST,
];

// --- Server rules: the spec's rule names, then requirements by section ---

/// The rule of spec/protocol.md#rules that a server's 0xFF names.
pub fn violation_rule(name: &str) -> Option<Rule> {
    SERVER_RULES
        .iter()
        .take(VIOLATION_RULES)
        .find(|r| r.name == name)
        .copied()
}

/// The server rule for a core `Violation`.
pub fn rule_of(violation: &Violation) -> Rule {
    violation_rule(violation.rule()).unwrap_or(REPLIES)
}

pub const REPLIES: Rule = rule(
    "replies",
    "replies",
    "The server MUST answer each frame it processes with exactly one reply byte, 0x00 for success or 0xFF for failure.",
);
pub const FRAME: Rule = rule(
    "frame",
    "frame",
    "The server MUST accept a frame split across any number of reads, down to one byte per read.",
);
pub const ACKNOWLEDGEMENT: Rule = rule(
    "acknowledgement",
    "acknowledgement",
    "The server MUST process pipelined frames, sent without waiting for replies, in the order they arrived.",
);
pub const LIMITS: Rule = rule(
    "limits",
    "limits",
    "A server MUST serve at least 1000 simultaneous connections unless configured with a lower connection limit.",
);
pub const RECORD_FORMAT: Rule = rule(
    "record-format",
    "record-format",
    "Each record MUST be `[`, the escaped name, `]: `, the escaped message, and CR LF.",
);
pub const MSG_RECORDS: Rule = rule(
    "msg",
    "msg",
    "For each accepted MSG, the server MUST append exactly one record to the log.",
);

/// The record check of a JSON-lines log (reported only for such logs).
pub const LOG_FORMAT_JSONL: Rule = rule(
    "log-format-jsonl",
    "log-format-jsonl",
    "Each record MUST be one JSON object on one line, ended by LF, with the members `ts`, `peer`, `name` and `message`.",
);

/// How many entries at the start of `SERVER_RULES` are spec rule names.
const VIOLATION_RULES: usize = 12;

/// Every server rule, in report order: the spec's rule names first.
pub const SERVER_RULES: [Rule; 24] = [
    rule(
        "EmptyName",
        "name",
        "The server MUST reject a NAME whose payload is empty.",
    ),
    rule(
        "NameStartsWithNul",
        "name",
        "The server MUST reject a NAME whose first payload byte is 0x00.",
    ),
    rule(
        "EmptyPassword",
        "pass",
        "The server MUST reject a PASS whose payload is empty.",
    ),
    rule(
        "PasswordRejected",
        "pass",
        "With the reference's rule, a password MUST verify exactly when its first byte is odd.",
    ),
    rule(
        "EmptyMessage",
        "msg",
        "The server MUST reject a MSG whose payload is empty.",
    ),
    rule(
        "OutOfOrder",
        "states",
        "The server MUST reject a NAME, PASS or MSG frame whose tag is not the one the current state expects.",
    ),
    rule(
        "UnknownTag",
        "unknown-tags",
        "The server MUST reply 0xFF to a frame with an unknown tag.",
    ),
    rule(
        "PayloadOverLimit",
        "limits",
        "A server with a lower payload limit MUST reject a frame whose length field exceeds that limit as soon as the length field is read, without reading the payload.",
    ),
    rule(
        "AppendFailed",
        "msg",
        "If the record of a MSG cannot be appended, the server MUST reply 0xFF and close the connection.",
    ),
    rule(
        "HandshakeTimeout",
        "timeouts",
        "The server MUST close a connection that has not completed NAME and PASS within the handshake timeout, replying 0xFF.",
    ),
    rule(
        "FrameTimeout",
        "timeouts",
        "The server MUST close a connection whose frame stays incomplete for longer than the handshake timeout, replying 0xFF.",
    ),
    rule(
        "ShuttingDown",
        "shutdown",
        "A connection whose frame in progress does not complete within the shutdown timeout MUST get 0xFF and be closed.",
    ),
    rule(
        "states",
        "states",
        "For each frame, the server MUST move to the next state, send the reply and carry out the effect that the state table gives for the current state, the frame's tag and its payload.",
    ),
    rule(
        "name",
        "name",
        "The server MUST keep the whole NAME payload as the name, including 0x00 bytes after the first byte.",
    ),
    rule(
        "pass",
        "pass",
        "The server MUST reply 0x00 to a PASS whose password verifies and move to state P, and MUST reject a PASS whose password does not verify.",
    ),
    MSG_RECORDS,
    rule(
        "close",
        "close",
        "The server MUST accept CLOSE in every state that is not closed, reply 0x00, and then close the connection.",
    ),
    REPLIES,
    rule(
        "end-of-stream",
        "end-of-stream",
        "If the stream ends in the middle of a frame, the server MUST discard the partial frame without replying or writing to the log.",
    ),
    FRAME,
    ACKNOWLEDGEMENT,
    LIMITS,
    RECORD_FORMAT,
    rule(
        "graceful-close",
        "graceful-close",
        "After its last reply the server MUST shut down its sending side and keep reading until the client's end of stream or a bounded time, so that the client can read that reply.",
    ),
];

/// The server rule a section anchor names, for vectors without a rule.
pub fn section_rule(section: &str) -> Option<Rule> {
    SERVER_RULES
        .iter()
        .skip(VIOLATION_RULES)
        .find(|r| r.name == section)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_has_its_rule() {
        let all = [
            Violation::EmptyName,
            Violation::NameStartsWithNul,
            Violation::EmptyPassword,
            Violation::PasswordRejected,
            Violation::EmptyMessage,
            Violation::OutOfOrder { state: "C", tag: 3 },
            Violation::UnknownTag(9),
            Violation::PayloadOverLimit { len: 2, max: 1 },
            Violation::AppendFailed,
            Violation::HandshakeTimeout,
            Violation::FrameTimeout,
            Violation::ShuttingDown,
        ];
        assert_eq!(all.len(), VIOLATION_RULES);
        for v in all {
            assert_eq!(rule_of(&v).name, v.rule());
        }
    }

    /// Every rule cites a section that exists and quotes a requirement of
    /// it word for word, so that a report never cites something the spec
    /// does not say.
    #[test]
    fn rules_quote_the_spec() {
        let spec = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/protocol.md"),
        )
        .unwrap();
        let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = flat(&spec);
        for r in CLIENT_RULES
            .iter()
            .chain(&SERVER_RULES)
            .chain([&LOG_FORMAT_JSONL])
        {
            assert!(
                spec.contains(&format!("{{#{}}}", r.section)),
                "{}: no section {}",
                r.name,
                r.section
            );
            assert!(
                text.contains(&flat(r.requirement)),
                "{}: not in the spec: {}",
                r.name,
                r.requirement
            );
        }
    }

    #[test]
    fn rule_names_are_unique_per_side() {
        for rules in [&CLIENT_RULES[..], &SERVER_RULES[..]] {
            let mut names: Vec<_> = rules.iter().map(|r| r.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), rules.len());
        }
    }
}
