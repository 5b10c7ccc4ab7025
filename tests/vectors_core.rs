//! Runs every spec vector (`spec/vectors/`) through the sans-IO core: the
//! session engine (`MemorySession`) in many chunkings, the state table as written in
//! `spec/protocol.md`, and the record codec. The TCP test runs the same
//! vectors against the real server.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::vectors::{self, ClosedBy, SessionVector};
use msglog::proto::frame::MAX_PAYLOAD_LEN;
use msglog::proto::{
    decode_record, encode_record, fail, parse_frame, record, records, reference_rule_accepts, step,
    verdict, Effect, Frame, FrameAssembler, FrameError, Parsed, Record, Response, State, Violation,
};
use msglog::testkit::MemorySession;

/// Vectors up to this long are also split at every single byte offset.
const EVERY_SPLIT_UP_TO: usize = 2048;

fn session_for(v: &SessionVector) -> MemorySession {
    let limit = v
        .max_payload
        .map(|m| u16::try_from(m).expect("vector limits fit a u16"));
    MemorySession::new(limit)
}

/// Feeds `chunks` to a fresh session and checks everything the vector says.
fn check_session(v: &SessionVector, how: &str, chunks: &[&[u8]]) {
    let mut session = session_for(v);
    for chunk in chunks {
        session.feed(chunk);
    }
    let t = session.finish();
    let ctx = format!("vector {} fed {how}", v.id);
    assert_eq!(hex(&t.replies), hex(&v.replies), "{ctx}: replies");
    assert_eq!(
        String::from_utf8_lossy(&t.log),
        String::from_utf8_lossy(&v.log_bytes()),
        "{ctx}: log"
    );
    assert_eq!(t.log, v.log_bytes(), "{ctx}: log bytes");
    let closed_by = if t.closed_by_server {
        ClosedBy::Server
    } else {
        ClosedBy::Client
    };
    assert_eq!(closed_by, v.closed_by, "{ctx}: closed by");
    assert_eq!(t.mid_frame, v.mid_frame, "{ctx}: end of stream mid-frame");
    assert_eq!(t.rule, v.rule.as_deref(), "{ctx}: rule");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//= spec/protocol.md#frame
//= type=test
//# The server MUST accept a frame split across any number of reads, down to one byte per read.
//= spec/protocol.md#deviations
//= type=test
//# A frame that arrives in pieces MUST be processed as if it had arrived whole.
//= spec/protocol.md#frame
//= type=test
//# The length field MUST be read as an unsigned 16-bit integer in
//# little-endian byte order.
//= spec/protocol.md#replies
//= type=test
//# The server MUST answer each frame it processes with exactly one reply byte, 0x00 for success or 0xFF for failure.
//= spec/protocol.md#replies
//= type=test
//# After sending 0xFF the server MUST close the connection.
//= spec/protocol.md#replies
//= type=test
//# A rejected frame MUST have no effect other than its 0xFF reply and the close.
//= spec/protocol.md#states
//= type=test
//# The server MUST start each connection in state C.
//= spec/protocol.md#states
//= type=test
//# Once a connection is closed, the server MUST NOT process any
//# further bytes from it.
//= spec/protocol.md#name
//= type=test
//# The server MUST reject a NAME whose payload is empty.
//= spec/protocol.md#name
//= type=test
//# The server MUST reject a NAME whose first payload byte is 0x00.
//= spec/protocol.md#name
//= type=test
//# The server MUST keep the whole NAME payload as the name, including 0x00 bytes after the first byte.
//= spec/protocol.md#pass
//= type=test
//# The server MUST reject a PASS whose payload is empty.
//= spec/protocol.md#pass
//= type=test
//# With the reference's rule, a password MUST verify exactly when its first byte is odd.
//= spec/protocol.md#pass
//= type=test
//# The server MUST reply 0x00 to a PASS whose password verifies and move to state P, and MUST reject a PASS whose password does not verify.
//= spec/protocol.md#msg
//= type=test
//# The server MUST reject a MSG whose payload is empty.
//= spec/protocol.md#msg
//= type=test
//# For each accepted MSG, the server MUST append exactly one record to the log.
//= spec/protocol.md#close
//= type=test
//# The server MUST accept CLOSE in every state that is not closed, reply
//# 0x00, and then close the connection.
//= spec/protocol.md#close
//= type=test
//# A CLOSE frame MUST be the single byte 0x04, with no length field
//# and no payload.
//= spec/protocol.md#unknown-tags
//= type=test
//# A tag byte other than 1, 2, 3 or 4 MUST be treated as a complete frame
//# of one byte.
//= spec/protocol.md#unknown-tags
//= type=test
//# The server MUST reply 0xFF to a frame with an unknown tag.
//= spec/protocol.md#end-of-stream
//= type=test
//# If the stream ends in the middle of a frame, the server MUST
//# discard the partial frame without replying or writing to the log.
//= spec/protocol.md#acknowledgement
//= type=test
//# The server MUST send the replies of a connection in the order of the frames they answer.
//= spec/protocol.md#acknowledgement
//= type=test
//# The server MUST process pipelined frames, sent without waiting for replies, in the order they arrived.
//= spec/protocol.md#limits
//= type=test
//# The server MUST accept payloads of up to 65535 bytes unless it was configured with a lower payload limit.
//= spec/protocol.md#limits
//= type=test
//# A server MAY be configured with a payload limit lower than 65535 bytes.
//= spec/protocol.md#limits
//= type=test
//# A server with a lower payload limit MUST reject a frame whose length field exceeds that limit as soon as the length field is read, without reading the payload.
//= spec/protocol.md#rules
//= type=test
//# Each rejection MUST name exactly one rule from the following table.
#[test]
fn session_vectors_in_every_chunking() {
    let all = vectors::sessions();
    for v in &all {
        let len = v.client.len();
        for (how, sizes) in vectors::chunk_sizes(len) {
            check_session(v, &how, &vectors::split(&v.client, &sizes));
        }
        check_session(
            v,
            "as tag, length and payload",
            &vectors::split(&v.client, &vectors::frame_part_sizes(&v.client)),
        );
        if len <= EVERY_SPLIT_UP_TO {
            for cut in 0..=len {
                let (a, b) = v.client.split_at(cut);
                check_session(v, &format!("split at {cut}"), &[a, b]);
                if cut + 1 < len {
                    let (b1, b2) = b.split_at(1);
                    check_session(v, &format!("split at {cut} and {}", cut + 1), &[a, b1, b2]);
                }
            }
        }
    }
}

/// One row of the spec's state table, as written in `protocol.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    next: String,
    reply: Option<u8>,
    /// "close", "append" or "none".
    effect: &'static str,
    rule: Option<String>,
}

/// Parses the rows of the tables in `protocol.md#state-table`: frame rows
/// (`| C1 | C | NAME ... |`, 8 cells) and event rows (`| E1 | ... |`, 7 cells).
fn spec_table() -> BTreeMap<String, Row> {
    let path = vectors::spec_dir().join("protocol.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let section = text
        .split("{#state-table}")
        .nth(1)
        .expect("protocol.md has a {#state-table} section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let id = cells[0];
        let is_row = id.len() >= 2
            && "CNPXE".contains(&id[..1])
            && id[1..].chars().all(|c| c.is_ascii_digit());
        if !is_row {
            continue;
        }
        // Frame rows have a payload column; event rows do not.
        let tail = &cells[cells.len() - 4..];
        let (next, reply, effect, rule) = (tail[0], tail[1], tail[2], tail[3]);
        let reply = match reply {
            "0x00" => Some(0x00),
            "0xFF" => Some(0xFF),
            "none" => None,
            other => panic!("row {id}: reply {other:?} is not 0x00, 0xFF or none"),
        };
        let effect = if effect.starts_with("close") {
            "close"
        } else if effect.starts_with("append") {
            "append"
        } else {
            "none"
        };
        let rule = (rule != "—").then(|| rule.to_string());
        let row = Row {
            next: next.to_string(),
            reply,
            effect,
            rule,
        };
        assert!(rows.insert(id.to_string(), row).is_none(), "row {id} twice");
    }
    rows
}

/// Which row of the state table a frame in a state falls under; written from
/// the table's state, input and payload columns.
fn row_of(state: &State, frame: &Frame<'_>) -> &'static str {
    match (state.label(), frame) {
        ("X", _) => "X1",
        ("C", Frame::Name([])) => "C2",
        ("C", Frame::Name([0, ..])) => "C3",
        ("C", Frame::Name(_)) => "C1",
        ("C", Frame::Pass(_)) => "C4",
        ("C", Frame::Msg(_)) => "C5",
        ("C", Frame::Close) => "C6",
        ("C", Frame::Unknown(_)) => "C7",
        ("N", Frame::Name(_)) => "N1",
        ("N", Frame::Pass([])) => "N3",
        ("N", Frame::Pass([first, ..])) if first % 2 == 0 => "N4",
        ("N", Frame::Pass(_)) => "N2",
        ("N", Frame::Msg(_)) => "N5",
        ("N", Frame::Close) => "N6",
        ("N", Frame::Unknown(_)) => "N7",
        ("P", Frame::Name(_)) => "P1",
        ("P", Frame::Pass(_)) => "P2",
        ("P", Frame::Msg([])) => "P4",
        ("P", Frame::Msg(_)) => "P3",
        ("P", Frame::Close) => "P5",
        ("P", Frame::Unknown(_)) => "P6",
        (label, frame) => panic!("no row for {frame:?} in state {label}"),
    }
}

fn check_row(
    table: &BTreeMap<String, Row>,
    id: &str,
    ctx: &str,
    (next, response, effect): (&State, &Response, &str),
) {
    let row = table
        .get(id)
        .unwrap_or_else(|| panic!("{ctx}: row {id} is not in protocol.md"));
    let rule = match response {
        Response::Reject(v) => Some(v.rule().to_string()),
        _ => None,
    };
    let got = Row {
        next: next.label().to_string(),
        reply: response.byte(),
        effect: match effect {
            "close" => "close",
            "append" => "append",
            _ => "none",
        },
        rule,
    };
    assert_eq!(
        &got, row,
        "{ctx}: the core disagrees with row {id} of the spec"
    );
}

fn effect_kind(effect: &Option<Effect<'_>>) -> &'static str {
    match effect {
        Some(Effect::Close) => "close",
        Some(Effect::Append { .. }) => "append",
        Some(Effect::Verify { .. }) => "verify",
        None => "none",
    }
}

/// `step`, and for a PASS the verdict of the reference's password rule: the
/// whole transaction, as the rows N2 and N4 of the table describe it.
fn transaction<'a>(state: State, frame: Frame<'a>) -> (State, Response, Option<Effect<'a>>) {
    match step(state, frame) {
        (verifying, _, Some(Effect::Verify { password, .. })) => {
            verdict(verifying, reference_rule_accepts(password))
        }
        other => other,
    }
}

/// The state-table rows a vector goes through, in order, each checked
/// against the core's transition.
fn rows_of(v: &SessionVector, table: &BTreeMap<String, Row>) -> Vec<&'static str> {
    let mut frames = FrameAssembler::new(v.max_payload.unwrap_or(MAX_PAYLOAD_LEN));
    let mut state = State::Connected;
    let mut rows = Vec::new();
    let fed = frames.feed(&v.client, |frame| {
        let ctx = format!("vector {} transaction {}", v.id, rows.len() + 1);
        let taken = std::mem::replace(&mut state, State::Closed);
        let (id, (next, response, effect)) = match frame {
            Ok(frame) => (row_of(&taken, &frame), transaction(taken, frame)),
            Err(FrameError::PayloadOverLimit { len, max }) => {
                ("E1", fail(taken, Violation::PayloadOverLimit { len, max }))
            }
        };
        check_row(table, id, &ctx, (&next, &response, effect_kind(&effect)));
        rows.push(id);
        state = next;
        if state.is_closed() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    if state.is_closed() {
        // Everything after the closing frame is not processed.
        if fed.left > 0 {
            rows.push("X1");
        }
    } else {
        let id = if frames.is_at_boundary() { "E3" } else { "E4" };
        let ctx = format!("vector {} end of stream", v.id);
        // End of stream is the engine's event, not a frame: nothing is
        // replied, and the connection closes.
        check_row(
            table,
            id,
            &ctx,
            (&State::Closed, &Response::Silent, "close"),
        );
        rows.push(id);
    }
    rows
}

//= spec/protocol.md#states
//= type=test
//# For each frame, the server MUST move to the next state, send the reply and carry out the effect that the state table gives for the current state, the frame's tag and its payload.
//= spec/protocol.md#states
//= type=test
//# The server MUST reject a NAME, PASS or MSG frame whose tag is not the
//# one the current state expects.
#[test]
fn vectors_follow_the_spec_table_and_cover_every_row() {
    let table = spec_table();
    let frame_rows = table.keys().filter(|id| !id.starts_with('E')).count();
    assert_eq!(
        frame_rows, 21,
        "protocol.md's frame table should have rows C1..C7, N1..N7, P1..P6, X1"
    );
    let mut covered = BTreeSet::new();
    for v in vectors::sessions() {
        covered.extend(rows_of(&v, &table));
    }
    // E2 and E5..E10 need a failing log or a clock: the engine's tests cover
    // them on a simulated clock (src/proto/engine.rs).
    let needs_server = ["E2", "E5", "E6", "E7", "E8", "E9", "E10"];
    let missing: Vec<&String> = table
        .keys()
        .filter(|id| !covered.contains(id.as_str()) && !needs_server.contains(&id.as_str()))
        .collect();
    assert!(missing.is_empty(), "no vector covers rows {missing:?}");
    for id in needs_server {
        assert!(table.contains_key(id), "protocol.md lost row {id}");
    }
}

//= spec/protocol.md#msg
//= type=test
//# The server MUST NOT acknowledge a MSG before its record was
//# appended to the log.
#[test]
fn no_message_is_acknowledged_before_its_record_is_in_the_log() {
    let table = spec_table();
    for v in vectors::sessions() {
        // Transactions with a reply, in order: which of them append a record.
        let appends: Vec<bool> = rows_of(&v, &table)
            .into_iter()
            .filter(|id| table[*id].reply.is_some())
            .map(|id| table[id].effect == "append")
            .collect();
        let mut session = session_for(&v);
        for byte in &v.client {
            session.feed(std::slice::from_ref(byte));
            let acked = appends
                .iter()
                .take(session.replies().len())
                .filter(|a| **a)
                .count();
            let written = records(session.log()).count();
            assert!(
                written >= acked,
                "vector {}: {acked} messages acknowledged but only {written} records written",
                v.id
            );
        }
    }
}

//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST send CLOSE as the single byte 0x04.
//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST set the length field to the number of payload bytes that follow it, counted in encoded bytes, not characters.
#[test]
fn encoding_the_vectors_frames_gives_the_same_bytes() {
    for v in vectors::sessions() {
        let mut rest = &v.client[..];
        let mut encoded = Vec::new();
        while let Parsed::Complete { frame, len } = parse_frame(rest) {
            let start = encoded.len();
            frame.encode(&mut encoded).expect("a parsed payload fits");
            assert_eq!(
                &encoded[start..],
                &rest[..len],
                "vector {}: {frame:?}",
                v.id
            );
            rest = &rest[len..];
        }
        encoded.extend_from_slice(rest);
        assert_eq!(hex(&encoded), hex(&v.client), "vector {}", v.id);
    }
}

#[test]
fn vectors_cite_existing_sections_and_are_enough() {
    let spec = std::fs::read_to_string(vectors::spec_dir().join("protocol.md")).unwrap();
    let all = vectors::sessions();
    assert!(all.len() >= 40, "only {} session vectors", all.len());
    for v in &all {
        assert!(!v.spec.is_empty(), "vector {} cites no section", v.id);
        for cite in &v.spec {
            let anchor = cite
                .strip_prefix("protocol.md#")
                .unwrap_or_else(|| panic!("vector {}: {cite:?} is not protocol.md#anchor", v.id));
            assert!(
                spec.contains(&format!("{{#{anchor}}}")),
                "vector {}: protocol.md has no section #{anchor}",
                v.id
            );
        }
        assert!(
            !(v.mid_frame && v.closed_by == ClosedBy::Server),
            "vector {}: mid_frame only goes with a client end of stream",
            v.id
        );
    }
}

//= spec/protocol.md#record-format
//= type=test
//# Each record MUST be `[`, the escaped name, `]: `, the escaped message,
//# and CR LF.
//= spec/protocol.md#record-format
//= type=test
//# Printable ASCII bytes 0x20 to 0x7E MUST be written unchanged, except `]` in a name.
//= spec/protocol.md#record-format
//= type=test
//# In a name, the byte `]` (0x5D) MUST be written as `␦5D`.
//= spec/protocol.md#record-format
//= type=test
//# Bytes 0x00 to 0x1F MUST be written as the Unicode control
//# pictures U+2400 to U+241F, and 0x7F as U+2421.
//= spec/protocol.md#record-format
//= type=test
//# Characters outside ASCII that are valid UTF-8 MUST be written unchanged, except the characters in the following list.
//= spec/protocol.md#record-format
//= type=test
//# Bytes that are not part of valid UTF-8, and the bytes of the
//# characters listed above, MUST be written as `␦` followed by
//# two upper-case hexadecimal digits.
//= spec/protocol.md#record-format
//= type=test
//# A record MUST NOT contain the bytes CR or LF except for its final CR LF.
//= spec/protocol.md#record-format
//= type=test
//# Every record MUST be valid UTF-8.
//= spec/protocol.md#record-format
//= type=test
//# Decoding a record MUST give back exactly the name and message bytes it was made from.
#[test]
fn record_vectors_encode_and_decode_exactly() {
    let file = vectors::records();
    assert!(!file.records.is_empty());
    let mut log = Vec::new();
    for v in &file.records {
        let written = record(&v.name, &v.message);
        assert_eq!(
            String::from_utf8_lossy(&written),
            v.record,
            "record vector {}",
            v.id
        );
        assert_eq!(written, v.record.as_bytes(), "record vector {}", v.id);
        let body = &v.record.as_bytes()[..v.record.len() - 2];
        assert!(
            v.record.ends_with("\r\n") && !body.contains(&b'\r') && !body.contains(&b'\n'),
            "record vector {} is not one line",
            v.id
        );
        assert_eq!(
            decode_record(v.record.as_bytes()),
            Ok(Record {
                name: v.name.clone(),
                message: v.message.clone()
            }),
            "record vector {}",
            v.id
        );
        encode_record(&mut log, &v.name, &v.message);
    }
    let back: Vec<Record> = records(&log)
        .collect::<Result<_, _>>()
        .expect("a log of vector records splits back");
    assert_eq!(back.len(), file.records.len());
    for (r, v) in back.iter().zip(&file.records) {
        assert_eq!(
            (&r.name, &r.message),
            (&v.name, &v.message),
            "record vector {} in a log",
            v.id
        );
    }
}

//= spec/protocol.md#record-format
//= type=test
//# A decoder MUST reject a line that is not exactly what the encoder writes for some name and message.
#[test]
fn invalid_record_vectors_are_rejected() {
    let file = vectors::records();
    assert!(!file.invalid.is_empty());
    for v in &file.invalid {
        assert!(
            decode_record(&v.line).is_err(),
            "invalid record {} ({}) was accepted",
            v.id,
            v.why
        );
    }
}

#[test]
fn session_logs_are_records_that_decode() {
    for v in vectors::sessions() {
        for line in &v.log {
            let r = decode_record(line.as_bytes())
                .unwrap_or_else(|e| panic!("vector {}: {line:?} does not decode: {e}", v.id));
            assert_eq!(
                record(&r.name, &r.message),
                line.as_bytes(),
                "vector {}",
                v.id
            );
        }
    }
}
