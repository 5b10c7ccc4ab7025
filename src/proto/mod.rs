//! The sans-IO core: frames, the frame assembler, the state machine, the
//! session engine that runs a whole connection around them, and log
//! records. No tokio, no clock, no sockets: time and peer addresses come in
//! as arguments.

pub mod assembler;
pub mod engine;
pub mod frame;
pub mod jsonl;
pub mod machine;
pub mod record;
pub mod recovery;

pub use assembler::FrameAssembler;
pub use engine::{AppendFailure, AppendSink, End, Engine, Settings};
pub use frame::{parse_frame, parse_frame_limited, Frame, FrameError, Parsed};
pub use jsonl::{
    decode_json_record, encode_json_record, json_records, JsonContext, JsonRecord, JsonRecordError,
    MAX_JSON_RECORD_LEN,
};
pub use machine::{
    fail, reference_rule_accepts, step, verdict, Effect, Response, State, Violation, ACK, NAK,
};
pub use record::{
    decode_record, encode_record, is_dangerous_char, record, records, Record, RecordError,
    MAX_TEXT_RECORD_LEN,
};

/// The two log formats (spec: #record-format, #log-format-jsonl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `[NAME]: MESSAGE\r\n`, escaped; the original's format.
    #[default]
    Text,
    /// One JSON object per line.
    Jsonl,
}

impl LogFormat {
    /// The bytes every complete record ends with.
    pub fn terminator(self) -> &'static [u8] {
        match self {
            LogFormat::Text => b"\r\n",
            LogFormat::Jsonl => b"\n",
        }
    }

    /// The longest record a server writes in this format, terminator
    /// included; decoders reject longer ones.
    pub const fn max_record_len(self) -> usize {
        match self {
            LogFormat::Text => MAX_TEXT_RECORD_LEN,
            LogFormat::Jsonl => MAX_JSON_RECORD_LEN,
        }
    }

    /// The format of an existing log, from its content: its first line is a
    /// record of that format (or, with no line end yet, the start of one).
    /// `None` for an empty log and for anything else.
    pub fn detect(log: &[u8]) -> Option<LogFormat> {
        recovery::detect(log)
    }

    /// The format whose records start with the first byte of `log` (`[` or
    /// `{`): which decoder to run on a log that may be damaged, so that the
    /// decoder can say what is wrong. [`detect`](Self::detect) is the strict
    /// judge of whether a file is a log of a format.
    pub fn by_first_byte(log: &[u8]) -> Option<LogFormat> {
        match log.first() {
            Some(b'[') => Some(LogFormat::Text),
            Some(b'{') => Some(LogFormat::Jsonl),
            _ => None,
        }
    }
}

impl std::fmt::Display for LogFormat {
    /// The name `--log-format` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Jsonl => "jsonl",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoder_to_run_is_chosen_by_the_first_byte() {
        assert_eq!(LogFormat::by_first_byte(b"[a]: b"), Some(LogFormat::Text));
        assert_eq!(LogFormat::by_first_byte(b"{\"ts\""), Some(LogFormat::Jsonl));
        assert_eq!(LogFormat::by_first_byte(b"damaged"), None);
        assert_eq!(LogFormat::by_first_byte(b""), None);
    }

    #[test]
    fn a_format_is_named_as_log_format_takes_it() {
        assert_eq!(LogFormat::Text.to_string(), "text");
        assert_eq!(LogFormat::Jsonl.to_string(), "jsonl");
        assert_eq!(LogFormat::Text.terminator(), b"\r\n");
        assert_eq!(LogFormat::Jsonl.terminator(), b"\n");
    }
}
