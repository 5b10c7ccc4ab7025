//! The JSON-lines log format (spec: #log-format-jsonl): one object per line
//! with an RFC 3339 UTC timestamp, the peer address, the name and the
//! message. Text that is not valid UTF-8 is written in base64 and flagged.
//! The clock is the caller's: the timestamp comes in as an argument.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;

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

fn push_field(out: &mut Vec<u8>, key: &str, bytes: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    match std::str::from_utf8(bytes) {
        //= spec/protocol.md#log-format-jsonl
        //# A name or message that is valid UTF-8 MUST be written as a JSON
        //# string; any other MUST be written in base64 with the flag
        //# `"<field>_encoding":"base64"`.
        Ok(text) => {
            // Serializing a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, text);
        }
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
        let _ = serde_json::to_writer(&mut *out, &context.timestamp);
        out.extend_from_slice(b",\"peer\":");
        let _ = serde_json::to_writer(&mut *out, &context.peer);
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
    let body = line
        .strip_suffix(b"\n")
        .ok_or(JsonRecordError::MissingTerminator)?;
    let wire: Wire =
        serde_json::from_slice(body).map_err(|e| JsonRecordError::Malformed(e.to_string()))?;
    Ok(JsonRecord {
        timestamp: wire.ts,
        peer: wire.peer,
        name: field_bytes("name", wire.name, wire.name_encoding)?,
        message: field_bytes("message", wire.message, wire.message_encoding)?,
    })
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

    quickcheck! {
        fn json_roundtrip_one_line(name: Vec<u8>, message: Vec<u8>) -> bool {
            let mut out = Vec::new();
            encode_json_record(&mut out, &ctx(), &name, &message);
            let one_line = out.iter().filter(|&&b| b == b'\n').count() == 1 && out.ends_with(b"\n");
            let back: Vec<_> = json_records(&out).collect();
            one_line && back == vec![Ok(JsonRecord {
                timestamp: ctx().timestamp,
                peer: ctx().peer,
                name,
                message,
            })]
        }
    }
}
