//! The record codec's invariants.

use super::{ensure, Broken, Checked, Hex};
use crate::proto::record::{decode_record, encode_record, record, records, Record, RecordError};

/// Characters that must never appear raw in a record body: they end lines,
/// or hide or reorder text, for some reader.
fn forbidden_in_record(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{61C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// The record codec's invariants over `bytes` cut into pieces of the
/// lengths `cuts` (the rest is the last piece): consecutive pieces are
/// (name, message) pairs for [`record_pairs`], and every piece, and the
/// whole input, is a line for [`record_line`].
pub fn record_codec(bytes: &[u8], cuts: &[u16]) -> Checked {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut rest = bytes;
    for &cut in cuts {
        let (piece, tail) = rest.split_at(usize::from(cut).min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    let pairs: Vec<(&[u8], &[u8])> = pieces
        .chunks(2)
        .map(|pair| (pair[0], pair.get(1).copied().unwrap_or_default()))
        .collect();
    record_pairs(&pairs)?;
    for piece in pieces {
        record_line(piece)?;
    }
    record_line(bytes)
}

/// Encoding invariants, for each (name, message) of `pairs`:
///
/// - decode(encode(name, message)) == (name, message);
/// - a record is valid UTF-8 and exactly one line: CR LF at the end and no
///   CR, LF or other line break or control character before it;
/// - the name ends at the first `]: `;
/// - no record can be read as two (`records` finds exactly one);
/// - printable ASCII and readable UTF-8 pass unchanged (`]` in names
///   aside);
/// - records concatenated into a log split back into the pairs.
pub fn record_pairs(pairs: &[(&[u8], &[u8])]) -> Checked {
    let mut log = Vec::new();
    for &(name, message) in pairs {
        let r = record(name, message);
        let mut appended = Vec::new();
        encode_record(&mut appended, name, message);
        ensure(appended == r, "encode_record and record agree", || {
            format!("{} vs {}", Hex(&appended), Hex(&r))
        })?;
        let text = std::str::from_utf8(&r).map_err(|e| Broken {
            invariant: "a record is valid UTF-8",
            detail: format!("{e}: {}", Hex(&r)),
        })?;
        let body = text.strip_suffix("\r\n").ok_or_else(|| Broken {
            invariant: "a record ends with CR LF",
            detail: Hex(&r).to_string(),
        })?;
        ensure(
            !body.chars().any(forbidden_in_record),
            "a record is one line: no line break or control character inside",
            || format!("{body:?}"),
        )?;
        let escaped_name = body
            .strip_prefix('[')
            .and_then(|b| b.split_once("]: "))
            .map(|(n, _)| n);
        ensure(
            escaped_name.is_some_and(|n| !n.contains(']')),
            "the name ends at the first `]: `",
            || format!("{body:?}"),
        )?;
        let back = decode_record(&r);
        // A server writes no empty name or message: the decoder refuses them.
        let want = if name.is_empty() {
            Err(RecordError::EmptyName)
        } else if message.is_empty() {
            Err(RecordError::EmptyMessage)
        } else {
            Ok(Record {
                name: name.to_vec(),
                message: message.to_vec(),
            })
        };
        ensure(
            back == want,
            "decode(encode(name, message)) == (name, message), and empty ones are refused",
            || format!("{back:?} from {}", Hex(&r)),
        )?;
        ensure(
            records(&r).count() == 1,
            "no record can be read as two",
            || format!("{body:?}"),
        )?;
        // Readable text stays readable: UTF-8 with nothing to escape is
        // copied as it is.
        let readable = |bytes: &[u8], name: bool| {
            std::str::from_utf8(bytes).is_ok_and(|t| {
                !t.chars().any(|c| {
                    forbidden_in_record(c)
                        || ('\u{2400}'..='\u{2426}').contains(&c)
                        || name && c == ']'
                })
            })
        };
        if readable(name, true) && readable(message, false) {
            let plain = [b"[", name, b"]: ", message, b"\r\n"].concat();
            ensure(r == plain, "readable UTF-8 passes unchanged", || {
                format!("{body:?}")
            })?;
        }
        let printable = |b: &u8| (0x20..0x7F).contains(b);
        if name.iter().all(|b| printable(b) && *b != b']') && message.iter().all(printable) {
            let plain = [b"[", name, b"]: ", message, b"\r\n"].concat();
            ensure(r == plain, "printable ASCII passes unchanged", || {
                format!("{body:?}")
            })?;
        }
        log.extend_from_slice(&r);
    }
    let back: Vec<_> = records(&log)
        .map(|r| r.map(|Record { name, message }| (name, message)))
        .collect();
    let want: Vec<_> = pairs
        .iter()
        .map(|&(n, m)| match (n.is_empty(), m.is_empty()) {
            (true, _) => Err(RecordError::EmptyName),
            (_, true) => Err(RecordError::EmptyMessage),
            _ => Ok((n.to_vec(), m.to_vec())),
        })
        .collect();
    ensure(back == want, "concatenated records split back", || {
        format!("{} records read back, {} written", back.len(), want.len())
    })?;
    Ok(())
}

/// Decoding invariants for an arbitrary `line`: decoding never panics; a
/// line that decodes is the canonical encoding of what it decodes to (a
/// record has one reading only); every record `records` finds in it
/// re-encodes to one record.
pub fn record_line(line: &[u8]) -> Checked {
    if let Ok(rec) = decode_record(line) {
        let again = record(&rec.name, &rec.message);
        ensure(
            again == line,
            "a decodable line is the canonical encoding of its record",
            || {
                format!(
                    "{} decodes to {rec:?}, which encodes to {}",
                    Hex(line),
                    Hex(&again)
                )
            },
        )?;
    }
    for (i, r) in records(line).enumerate() {
        if let Ok(rec) = r {
            ensure(
                records(&record(&rec.name, &rec.message)).count() == 1,
                "no record can be read as two",
                || format!("record {i} of {}", Hex(line)),
            )?;
        }
    }
    Ok(())
}
