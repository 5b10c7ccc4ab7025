//! The JSON-lines log format (spec: #log-format-jsonl): one object per line
//! with an RFC 3339 UTC timestamp, the peer address, the name and the
//! message. Text that is not valid UTF-8 is written in base64 and flagged.
//! The clock is the caller's: the timestamp comes in as an argument.

use std::io;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::frame::MAX_PAYLOAD_LEN;
use super::record::is_dangerous_char;

/// No JSON record a server writes is longer than this, LF included: every
/// byte of a 65,535-byte name and message escaped to six bytes (`\u0000`),
/// plus 256 bytes for the timestamp, the peer address and the punctuation.
/// A decoder rejects anything longer.
pub const MAX_JSON_RECORD_LEN: usize = 2 * 6 * MAX_PAYLOAD_LEN + 256;

/// Per-batch context of a JSON record: when and from whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonContext {
    /// RFC 3339 UTC, e.g. `2026-11-27T12:00:00.123456Z`.
    pub timestamp: String,
    /// The peer's socket address, e.g. `127.0.0.1:50312`.
    pub peer: String,
}

impl JsonContext {
    /// Formats a point in time as RFC 3339 UTC.
    pub fn timestamp_of(time: std::time::SystemTime) -> String {
        let t = time::OffsetDateTime::from(time);
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
    }
}

/// serde_json's compact output, and `\uXXXX` for every dangerous character
/// (serde_json escapes only what JSON requires: `"`, `\\` and C0 controls).
struct EscapeDangerous;

impl serde_json::ser::Formatter for EscapeDangerous {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| is_dangerous_char(c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            // Every dangerous character is in the Basic Multilingual Plane:
            // one `\uXXXX` escape, no surrogate pair.
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// Appends `text` as a JSON string, dangerous characters escaped.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    //= spec/protocol.md#log-format-jsonl
    //# A JSON record MUST NOT contain raw any character that the text format
    //# escapes as dangerous (U+0000 to U+001F, U+007F, and the list in Record
    //# format other than U+2400 to U+2426); each MUST be written as a JSON
    //# escape.
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, EscapeDangerous);
    // Serializing a &str into a Vec cannot fail.
    let _ = text.serialize(&mut serializer);
}

fn push_field(out: &mut Vec<u8>, key: &str, bytes: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    match std::str::from_utf8(bytes) {
        //= spec/protocol.md#log-format-jsonl
        //# A name or message that is valid UTF-8 MUST be written as a JSON
        //# string; any other MUST be written in base64 with the flag
        //# `"<field>_encoding":"base64"`.
        Ok(text) => push_json_string(out, text),
        Err(_) => {
            out.push(b'"');
            out.extend_from_slice(BASE64.encode(bytes).as_bytes());
            out.extend_from_slice(b"\",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"_encoding\":\"base64\"");
        }
    }
}

/// Appends one JSON line for one message to `out`.
//= spec/protocol.md#log-format-jsonl
//# Each record MUST be one JSON object on one line, ended by LF, with the
//# members `ts`, `peer`, `name` and `message`.
pub fn encode_json_record(out: &mut Vec<u8>, context: &JsonContext, name: &[u8], message: &[u8]) {
    encode_json_line(out, Some(context), name, message);
}

/// Like `encode_json_record`; without a context the line has only `name`
/// and `message` (how `msglog read` prints records of a text log).
pub fn encode_json_line(
    out: &mut Vec<u8>,
    context: Option<&JsonContext>,
    name: &[u8],
    message: &[u8],
) {
    out.push(b'{');
    if let Some(context) = context {
        out.extend_from_slice(b"\"ts\":");
        push_json_string(out, &context.timestamp);
        out.extend_from_slice(b",\"peer\":");
        push_json_string(out, &context.peer);
        out.push(b',');
    }
    push_field(out, "name", name);
    out.push(b',');
    push_field(out, "message", message);
    out.extend_from_slice(b"}\n");
}

/// One decoded JSON record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRecord {
    pub timestamp: String,
    pub peer: String,
    pub name: Vec<u8>,
    pub message: Vec<u8>,
}

/// Why a line is not a JSON record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonRecordError {
    #[error("JSON record does not end with LF")]
    MissingTerminator,
    #[error("not a JSON record: {0}")]
    Malformed(String),
    #[error("field {0} is flagged base64 but is not valid base64")]
    BadBase64(&'static str),
    #[error("field {field} has unknown encoding {encoding:?}; only \"base64\" is defined")]
    UnknownEncoding {
        field: &'static str,
        encoding: String,
    },
    #[error("JSON record has an empty name, which no server writes (the protocol rejects an empty NAME)")]
    EmptyName,
    #[error("JSON record has an empty message, which no server writes (the protocol rejects an empty MSG)")]
    EmptyMessage,
    #[error("JSON record is {len} bytes or more, longer than any record a server writes ({MAX_JSON_RECORD_LEN} bytes)")]
    TooLong { len: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    ts: String,
    peer: String,
    name: String,
    message: String,
    name_encoding: Option<String>,
    message_encoding: Option<String>,
}

fn field_bytes(
    field: &'static str,
    text: String,
    encoding: Option<String>,
) -> Result<Vec<u8>, JsonRecordError> {
    match encoding.as_deref() {
        None => Ok(text.into_bytes()),
        Some("base64") => BASE64
            .decode(text)
            .map_err(|_| JsonRecordError::BadBase64(field)),
        Some(other) => Err(JsonRecordError::UnknownEncoding {
            field,
            encoding: other.to_owned(),
        }),
    }
}

/// Decodes one JSON line, including its LF.
pub fn decode_json_record(line: &[u8]) -> Result<JsonRecord, JsonRecordError> {
    //= spec/protocol.md#log-format-jsonl
    //# A decoder MUST reject a JSON record whose name or message is empty, or
    //# that is longer than 786,676 bytes including its LF.
    if line.len() > MAX_JSON_RECORD_LEN {
        return Err(JsonRecordError::TooLong { len: line.len() });
    }
    let body = line
        .strip_suffix(b"\n")
        .ok_or(JsonRecordError::MissingTerminator)?;
    let wire: Wire =
        serde_json::from_slice(body).map_err(|e| JsonRecordError::Malformed(e.to_string()))?;
    let record = JsonRecord {
        timestamp: wire.ts,
        peer: wire.peer,
        name: field_bytes("name", wire.name, wire.name_encoding)?,
        message: field_bytes("message", wire.message, wire.message_encoding)?,
    };
    if record.name.is_empty() {
        return Err(JsonRecordError::EmptyName);
    }
    if record.message.is_empty() {
        return Err(JsonRecordError::EmptyMessage);
    }
    Ok(record)
}

/// Splits a JSON-lines log into records; a last piece without LF (a torn
/// write) comes out as `Err(MissingTerminator)`.
pub fn json_records(log: &[u8]) -> impl Iterator<Item = Result<JsonRecord, JsonRecordError>> + '_ {
    let mut rest = log;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(len);
        rest = tail;
        Some(decode_json_record(line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn ctx() -> JsonContext {
        JsonContext {
            timestamp: "2026-11-27T12:00:00.5Z".into(),
            peer: "[::1]:4000".into(),
        }
    }

    //= spec/protocol.md#log-format-jsonl
    //= type=test
    //# Each record MUST be one JSON object on one line, ended by LF, with the
    //# members `ts`, `peer`, `name` and `message`.
    #[test]
    fn text_record_is_plain_json() {
        let mut out = Vec::new();
        encode_json_record(&mut out, &ctx(), b"alice", "hi\r\n\"there\" ✓".as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ts\":\"2026-11-27T12:00:00.5Z\",\"peer\":\"[::1]:4000\",\"name\":\"alice\",\"message\":\"hi\\r\\n\\\"there\\\" ✓\"}\n"
        );
    }

    //= spec/protocol.md#log-format-jsonl
    //= type=test
    //# A name or message that is valid UTF-8 MUST be written as a JSON
    //# string; any other MUST be written in base64 with the flag
    //# `"<field>_encoding":"base64"`.
    #[test]
    fn binary_is_base64_and_flagged() {
        let mut out = Vec::new();
        encode_json_record(&mut out, &ctx(), b"bob", &[0xFF, 0x00, 0x41]);
        let line = String::from_utf8(out.clone()).unwrap();
        assert!(
            line.contains("\"message\":\"/wBB\",\"message_encoding\":\"base64\""),
            "{line}"
        );
        let back = decode_json_record(&out).unwrap();
        assert_eq!(back.message, [0xFF, 0x00, 0x41]);
        assert_eq!(back.name, b"bob");
    }

    #[test]
    fn timestamp_is_rfc3339_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_781_405_123);
        assert_eq!(JsonContext::timestamp_of(t), "2026-11-27T12:10:05.123Z");
    }

    //= spec/protocol.md#log-format-jsonl
    //= type=test
    //# A JSON record MUST NOT contain raw any character that the text format
    //# escapes as dangerous (U+0000 to U+001F, U+007F, and the list in Record
    //# format other than U+2400 to U+2426); each MUST be written as a JSON
    //# escape.
    #[test]
    fn line_breaking_and_bidi_characters_are_escaped() {
        let message = "a\u{85}b\u{2028}c\u{2029}d\u{202E}e\u{2066}f\u{2069}g\u{7F}h\u{1B}i␍✓";
        let mut out = Vec::new();
        encode_json_record(&mut out, &ctx(), "\u{202E}n".as_bytes(), message.as_bytes());
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "{\"ts\":\"2026-11-27T12:00:00.5Z\",\"peer\":\"[::1]:4000\",\"name\":\"\\u202en\",\
             \"message\":\"a\\u0085b\\u2028c\\u2029d\\u202ee\\u2066f\\u2069g\\u007fh\\u001bi␍✓\"}\n"
        );
        let back = decode_json_record(&out).unwrap();
        assert_eq!(back.message, message.as_bytes());
        assert_eq!(back.name, "\u{202E}n".as_bytes());
    }

    //= spec/protocol.md#log-format-jsonl
    //= type=test
    //# A decoder MUST reject a JSON record whose name or message is empty, or
    //# that is longer than 786,676 bytes including its LF.
    #[test]
    fn decoder_rejects_what_no_server_writes() {
        let line = |name: &str, message: &str| {
            format!(
                "{{\"ts\":\"t\",\"peer\":\"p\",\"name\":\"{name}\",\"message\":\"{message}\"}}\n"
            )
        };
        assert_eq!(
            decode_json_record(line("", "x").as_bytes()),
            Err(JsonRecordError::EmptyName)
        );
        assert_eq!(
            decode_json_record(line("a", "").as_bytes()),
            Err(JsonRecordError::EmptyMessage)
        );
        let flagged = "{\"ts\":\"t\",\"peer\":\"p\",\"name\":\"a\",\"message\":\"\",\"message_encoding\":\"base64\"}\n";
        assert_eq!(
            decode_json_record(flagged.as_bytes()),
            Err(JsonRecordError::EmptyMessage)
        );
        // The longest record: every byte of a maximal name and message
        // escaped to six bytes, with the longest timestamp and peer address.
        let context = JsonContext {
            timestamp: "2026-11-27T12:00:00.123456789Z".into(),
            peer: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535".into(),
        };
        let mut longest = Vec::new();
        encode_json_record(
            &mut longest,
            &context,
            &[0x01; MAX_PAYLOAD_LEN],
            &[0x01; MAX_PAYLOAD_LEN],
        );
        assert!(longest.len() <= MAX_JSON_RECORD_LEN, "{}", longest.len());
        assert!(decode_json_record(&longest).is_ok());
        assert_eq!(MAX_JSON_RECORD_LEN, 786_676);
        // The bound is inclusive: a line of exactly MAX_JSON_RECORD_LEN bytes
        // (padded with JSON's own whitespace) is taken, one byte more is not.
        let mut padded = longest.clone();
        let spaces = MAX_JSON_RECORD_LEN - padded.len();
        padded.splice(1..1, std::iter::repeat_n(b' ', spaces));
        assert_eq!(padded.len(), MAX_JSON_RECORD_LEN);
        assert!(decode_json_record(&padded).is_ok());
        padded.insert(1, b' ');
        assert_eq!(
            decode_json_record(&padded),
            Err(JsonRecordError::TooLong {
                len: MAX_JSON_RECORD_LEN + 1
            })
        );
        let ten_mb = line("a", &"x".repeat(10 << 20));
        assert_eq!(
            decode_json_record(ten_mb.as_bytes()),
            Err(JsonRecordError::TooLong { len: ten_mb.len() })
        );
    }

    /// Bytes biased towards the characters that break lines or reorder text.
    fn tricky(bytes: Vec<u8>) -> Vec<u8> {
        const TRICKY: [char; 12] = [
            '\u{85}', '\u{2028}', '\u{2029}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}',
            '\u{7F}', '\n', '\r', '"', '\\',
        ];
        let mut out = Vec::new();
        for b in bytes {
            match TRICKY.get(usize::from(b % 32)) {
                Some(c) => out.extend_from_slice(c.to_string().as_bytes()),
                None => out.push(b),
            }
        }
        out
    }

    quickcheck! {
        fn json_roundtrip_one_line(name: Vec<u8>, message: Vec<u8>) -> bool {
            let (name, message) = (tricky(name), tricky(message));
            let mut out = Vec::new();
            encode_json_record(&mut out, &ctx(), &name, &message);
            let one_line = out.iter().filter(|&&b| b == b'\n').count() == 1 && out.ends_with(b"\n");
            // Valid UTF-8 by construction (base64 is ASCII), and nothing
            // dangerous raw: Python's `splitlines` sees one line.
            let text = String::from_utf8(out.clone()).unwrap_or_default();
            let body = text.strip_suffix('\n').unwrap_or(&text);
            let nothing_raw = !body.is_empty() && !body.chars().any(is_dangerous_char);
            let want = if name.is_empty() {
                Err(JsonRecordError::EmptyName)
            } else if message.is_empty() {
                Err(JsonRecordError::EmptyMessage)
            } else {
                Ok(JsonRecord { timestamp: ctx().timestamp, peer: ctx().peer, name, message })
            };
            let back: Vec<_> = json_records(&out).collect();
            one_line && nothing_raw && back == vec![want]
        }
    }
}
