//! The command line of the `msglog` binary: clap's argument definitions
//! (the library takes plain option structs and never compiles clap), the
//! parsers of option values, `msglog read` and `msglog passwd`.

pub mod bench;
pub mod conform;
pub mod generate;
pub mod nats;
pub mod notify;
pub mod passwd;
pub mod read;
pub mod send;
pub mod tls;
pub mod users;
pub mod values;

use msglog::proto::LogFormat;

/// A log format on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// `[NAME]: MESSAGE` CR LF, escaped (the original's format)
    Text,
    /// one JSON object per line
    Jsonl,
}

impl From<FormatArg> for LogFormat {
    fn from(f: FormatArg) -> LogFormat {
        match f {
            FormatArg::Text => LogFormat::Text,
            FormatArg::Jsonl => LogFormat::Jsonl,
        }
    }
}
