//! The sans-IO core: frames, the state machine, log records, and a session
//! runner that ties them together over an in-memory log. No tokio, no
//! clock, no sockets: time and peer addresses come in as arguments.

pub mod check;
pub mod frame;
pub mod jsonl;
pub mod machine;
pub mod record;
pub mod recovery;
pub mod session;

pub use frame::{parse_frame, parse_frame_limited, Decoder, Frame, FrameError, Parsed};
pub use jsonl::{decode_json_record, encode_json_record, json_records, JsonContext, JsonRecord};
pub use machine::{fail, step, Effect, Response, State, Violation, ACK, NAK};
pub use record::{decode_record, encode_record, record, records, Record, RecordError};
pub use session::{Session, Transcript};

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

    /// The format of an existing log, from its content: its first line is a
    /// record of that format (or, with no line end yet, the start of one).
    /// `None` for an empty log and for anything else.
    pub fn detect(log: &[u8]) -> Option<LogFormat> {
        recovery::detect(log)
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
