//! Judging the records the server's log gained during a `conform server`
//! run (`--log`): each must be well formed, each acknowledged MSG must have
//! exactly one, nothing else may appear, and pipelined messages keep their
//! order. Pure: the log's bytes come in as data.

use std::collections::HashMap;

use crate::proto::frame::TAG_MSG;
use crate::proto::{decode_json_record, decode_record, LogFormat, ACK};

use super::super::report::{escaped, hex, Failure, Tally};
use super::super::rules::{ACKNOWLEDGEMENT, LOG_FORMAT_JSONL, MSG_RECORDS, RECORD_FORMAT};
use super::plan::frames_of;

/// A (name, message) pair, as a record holds it.
pub type NamedMessage = (Vec<u8>, Vec<u8>);

/// Records the run should have added to the log, and records it may have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedRecords {
    /// Acknowledged messages, each with the check that sent it.
    pub required: Vec<(NamedMessage, String)>,
    /// Messages of checks that failed: the server may have logged them.
    pub optional: Vec<NamedMessage>,
    /// Messages of one name that must appear in this order.
    pub ordered: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl ExpectedRecords {
    /// The records one connection's replies call for: a message the server
    /// acknowledged (0x00) must be in the log, whatever happened after on
    /// that connection; one it did not acknowledge may be.
    ///
    /// `records` are the records the session makes when every reply is the
    /// one `due`, in the order of its acknowledged MSG frames; when they
    /// cannot be matched to those frames one by one, they are required
    /// only if every reply was right.
    pub fn expect(
        &mut self,
        client: &[u8],
        due: &[u8],
        records: Vec<NamedMessage>,
        got: &[u8],
        from: &str,
    ) {
        let acknowledged_msgs: Vec<usize> = frames_of(client)
            .iter()
            .enumerate()
            .filter(|&(k, &(at, _))| client[at] == TAG_MSG && due.get(k) == Some(&ACK))
            .map(|(k, _)| k)
            .collect();
        let acked: Vec<bool> = if acknowledged_msgs.len() == records.len() {
            acknowledged_msgs
                .iter()
                .map(|&k| got.get(k) == Some(&ACK))
                .collect()
        } else {
            vec![got == due; records.len()]
        };
        for (record, acked) in records.into_iter().zip(acked) {
            if acked {
                self.required.push((record, from.to_string()));
            } else {
                self.optional.push(record);
            }
        }
    }
}

/// One line of the log that the run added.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NewLine<'a> {
    /// 1-based, counted from the start of the file, as an editor shows it.
    line: usize,
    bytes: &'a [u8],
}

/// The records added after byte `start`, cut as the format's decoder cuts
/// them (CR LF or LF; a last piece without one is a torn record), each with
/// its line number in the whole file.
fn new_lines(whole: &[u8], start: usize, format: LogFormat) -> Vec<NewLine<'_>> {
    let terminator = format.terminator();
    let mut line = 1 + whole[..start].iter().filter(|&&b| b == b'\n').count();
    let mut rest = &whole[start..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = rest
            .windows(terminator.len())
            .position(|w| w == terminator)
            .map_or(rest.len(), |i| i + terminator.len());
        let (bytes, tail) = rest.split_at(len);
        out.push(NewLine { line, bytes });
        line += bytes.iter().filter(|&&b| b == b'\n').count();
        rest = tail;
    }
    out
}

fn decode(format: LogFormat, line: &[u8]) -> Result<NamedMessage, String> {
    match format {
        LogFormat::Jsonl => decode_json_record(line)
            .map(|r| (r.name, r.message))
            .map_err(|e| e.to_string()),
        LogFormat::Text => decode_record(line)
            .map(|r| (r.name, r.message))
            .map_err(|e| e.to_string()),
    }
}

/// Judges the log `whole` (named `path` in the report), of which the run
/// added the bytes from `start` on.
pub fn check_log(
    path: &str,
    whole: &[u8],
    start: usize,
    expected: &ExpectedRecords,
    tally: &mut Tally,
    notes: &mut Vec<String>,
) {
    let in_log = || Some(format!("log {path}"));
    let Some(new) = whole.get(start..) else {
        tally.fail(
            MSG_RECORDS,
            Failure {
                probe: in_log(),
                detail: format!(
                    "the log shrank during the run (from {start} to {} bytes); was it rotated?",
                    whole.len()
                ),
                symptom: Some("the log shrank during the run".into()),
                ..Failure::default()
            },
        );
        return;
    };
    let format = LogFormat::detect(new)
        .or_else(|| LogFormat::detect(whole))
        .unwrap_or_default();
    let format_rule = match format {
        LogFormat::Jsonl => LOG_FORMAT_JSONL,
        LogFormat::Text => RECORD_FORMAT,
    };
    let lines = new_lines(whole, start, format);
    let mut seen: Vec<NamedMessage> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        match decode(format, l.bytes) {
            Ok(r) => seen.push(r),
            Err(e) => tally.fail(
                format_rule,
                Failure {
                    probe: in_log(),
                    line: Some(l.line),
                    record: Some(escaped(l.bytes)),
                    detail: format!("new record {}: {e}", i + 1),
                    symptom: Some(format!("a log record is malformed: {e}")),
                    ..Failure::default()
                },
            ),
        }
    }
    tally.pass_n(format_rule, seen.len());
    if format_rule != RECORD_FORMAT {
        tally.note(
            RECORD_FORMAT,
            "the log is in the JSON-lines format; see log-format-jsonl",
        );
    }
    let missing_or_extra = |detail: String, message: &[u8], symptom: &str| Failure {
        probe: in_log(),
        bytes: hex(message),
        detail,
        symptom: Some(symptom.into()),
        ..Failure::default()
    };

    // Multiset match: each required record once, optional ones if present.
    let mut pool: HashMap<&NamedMessage, usize> = HashMap::new();
    for r in &seen {
        *pool.entry(r).or_default() += 1;
    }
    for (record, from) in &expected.required {
        match pool.get_mut(record) {
            Some(n) if *n > 0 => {
                *n -= 1;
                tally.pass(MSG_RECORDS);
            }
            _ => tally.fail(
                MSG_RECORDS,
                missing_or_extra(
                    format!(
                        "no record for an acknowledged MSG of {from}: name {}, message {}",
                        escaped(&record.0),
                        escaped(&record.1)
                    ),
                    &record.1,
                    "an acknowledged MSG has no record in the log",
                ),
            ),
        }
    }
    for record in &expected.optional {
        if let Some(n) = pool.get_mut(record) {
            *n = n.saturating_sub(1);
        }
    }
    let mut extra: Vec<_> = pool.into_iter().filter(|(_, n)| *n > 0).collect();
    extra.sort();
    for ((name, message), n) in extra {
        tally.fail(
            MSG_RECORDS,
            missing_or_extra(
                format!(
                    "{} record{} that no accepted MSG of this run explains (forged, duplicated, a frame that was not a MSG, or another client's): name {}, message {}",
                    n,
                    if n == 1 { "" } else { "s" },
                    escaped(name),
                    escaped(message)
                ),
                message,
                "the log has records that no accepted MSG explains",
            ),
        );
    }
    for (name, messages) in &expected.ordered {
        let order = seen.iter().filter(|(n, _)| n == name).map(|(_, m)| m);
        if order.eq(messages.iter()) {
            tally.pass(ACKNOWLEDGEMENT);
        } else {
            tally.fail(
                ACKNOWLEDGEMENT,
                Failure {
                    probe: in_log(),
                    detail: format!(
                        "the records of {} are not in the order the pipelined MSG frames were sent",
                        escaped(name)
                    ),
                    symptom: Some("pipelined messages were logged out of order".into()),
                    ..Failure::default()
                },
            );
        }
    }
    notes.push(format!(
        "the log {path} gained {} records ({} bytes) during the run{}",
        lines.len(),
        new.len(),
        match format {
            LogFormat::Jsonl => ", in the JSON-lines format",
            LogFormat::Text => "",
        }
    ));
}

#[cfg(test)]
mod tests {
    use super::super::super::rules::SERVER_RULES;
    use super::*;
    use crate::proto::encode_record;

    fn text_log(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, message) in records {
            encode_record(&mut out, name, message);
        }
        out
    }

    fn required(records: &[(&[u8], &[u8])]) -> ExpectedRecords {
        ExpectedRecords {
            required: records
                .iter()
                .map(|(n, m)| ((n.to_vec(), m.to_vec()), "vector t".to_string()))
                .collect(),
            ..ExpectedRecords::default()
        }
    }

    #[test]
    fn a_malformed_record_is_shown_with_its_line() {
        let before = text_log(&[(b"old", b"one"), (b"old", b"two")]);
        let mut whole = before.clone();
        whole.extend(text_log(&[(b"u", b"fine")]));
        whole.extend_from_slice("[u]: tab\there\r\n".as_bytes());
        let mut tally = Tally::new(&SERVER_RULES);
        let mut notes = Vec::new();
        check_log(
            "m.log",
            &whole,
            before.len(),
            &required(&[(b"u", b"fine")]),
            &mut tally,
            &mut notes,
        );
        let report = tally.into_report("server", String::new(), notes, vec![]);
        let format = report.rule("record-format").unwrap();
        assert_eq!((format.checks, format.failed), (2, 1));
        let f = &format.failures[0];
        assert_eq!(f.line, Some(4));
        assert_eq!(f.record.as_deref(), Some(r#""[u]: tab\there\r\n""#));
        assert!(f.detail.starts_with("new record 2: "), "{}", f.detail);
        let text = report.to_text();
        assert!(text.contains("log m.log, line 4: new record 2:"), "{text}");
        assert!(text.contains(r#"record: "[u]: tab\there\r\n""#), "{text}");
        assert!(
            report.notes[0].contains("gained 2 records"),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn missing_extra_and_reordered_records_fail() {
        let whole = text_log(&[(b"p", b"2"), (b"p", b"1"), (b"x", b"forged")]);
        let mut expected = required(&[(b"p", b"1"), (b"p", b"2"), (b"u", b"lost")]);
        expected
            .ordered
            .push((b"p".to_vec(), vec![b"1".to_vec(), b"2".to_vec()]));
        let mut tally = Tally::new(&SERVER_RULES);
        check_log("m.log", &whole, 0, &expected, &mut tally, &mut Vec::new());
        let report = tally.into_report("server", String::new(), vec![], vec![]);
        let msg = report.rule("msg").unwrap();
        assert_eq!((msg.checks, msg.failed), (4, 2));
        assert!(msg.failures[0]
            .detail
            .contains("no record for an acknowledged MSG"));
        assert!(msg.failures[1]
            .detail
            .contains("1 record that no accepted MSG"));
        assert_eq!(report.rule("acknowledgement").unwrap().failed, 1);
    }

    #[test]
    fn acknowledged_messages_are_required_whatever_came_after() {
        use super::super::plan::{frame, login};
        use crate::proto::Frame;
        let mut client = login(b"u");
        client.extend(frame(Frame::Msg(b"one")));
        client.extend(frame(Frame::Msg(b"two")));
        client.push(4);
        let due = [0, 0, 0, 0, 0];
        let records = || {
            vec![
                (b"u".to_vec(), b"one".to_vec()),
                (b"u".to_vec(), b"two".to_vec()),
            ]
        };
        // CLOSE answered wrong: both messages were still acknowledged.
        let mut e = ExpectedRecords::default();
        e.expect(&client, &due, records(), &[0, 0, 0, 0, 0xFF], "vector t");
        assert_eq!(e.required.len(), 2);
        // Cut off after the first message's 0x00: the second may be logged.
        let mut e = ExpectedRecords::default();
        e.expect(&client, &due, records(), &[0, 0, 0], "vector t");
        assert_eq!(
            e.required,
            vec![((b"u".to_vec(), b"one".to_vec()), "vector t".to_string())]
        );
        assert_eq!(e.optional, vec![(b"u".to_vec(), b"two".to_vec())]);
    }

    #[test]
    fn json_lines_are_cut_at_lf_and_numbered() {
        let whole = b"{\"ts\":\"t\",\"peer\":\"p\",\"name\":\"u\",\"message\":\"a\"}\nnot json\n";
        let lines = new_lines(whole, 0, LogFormat::Jsonl);
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[1].line, lines[1].bytes), (2, &b"not json\n"[..]));
        let mut tally = Tally::new(&SERVER_RULES);
        check_log(
            "j.log",
            whole,
            0,
            &ExpectedRecords::default(),
            &mut tally,
            &mut Vec::new(),
        );
        let report = tally.into_report("server", String::new(), vec![], vec![]);
        let jsonl = report.rule("log-format-jsonl").unwrap();
        assert_eq!((jsonl.checks, jsonl.failed), (2, 1));
        assert_eq!(jsonl.failures[0].line, Some(2));
        assert_eq!(jsonl.failures[0].record.as_deref(), Some(r#""not json\n""#));
    }
}
