//! The arguments of `msglog send`; the command is `msglog::client::cli`.

use std::ffi::OsString;
use std::time::Duration;

use msglog::client::cli::{SendOptions, EXIT_CODES_HELP};
use msglog::defaults;

use super::values::{seconds, secs_text, TIMEOUT};

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct SendArgs {
    /// Host name or IP address of the server.
    #[arg(long, env = "MSGLOG_HOST", default_value = defaults::SEND_HOST)]
    host: String,

    /// TCP port of the server.
    #[arg(long, env = "MSGLOG_PORT", default_value_t = defaults::PORT)]
    port: u16,

    /// Name the messages are logged under.
    #[arg(long)]
    name: OsString,

    /// Password. Prefer the MSGLOG_PASSWORD environment variable: a
    /// command-line argument is visible to other users in `ps`.
    #[arg(long, env = "MSGLOG_PASSWORD", hide_env_values = true)]
    password: OsString,

    /// Seconds to wait for the connection, and for each reply (0.1 to 3600).
    #[arg(long, value_name = "SECS", default_value = secs_text(defaults::SEND_TIMEOUT), value_parser = seconds(TIMEOUT))]
    timeout: Duration,

    /// Messages to send, one each. Without any, each line of standard input
    /// is sent as one message.
    #[arg(value_name = "MESSAGE")]
    messages: Vec<OsString>,

    #[command(flatten)]
    tls: super::tls::ClientTlsArgs,
}

impl From<SendArgs> for SendOptions {
    fn from(a: SendArgs) -> SendOptions {
        SendOptions {
            tls: a.tls.options(&a.host),
            host: a.host,
            port: a.port,
            name: a.name,
            password: a.password,
            timeout: a.timeout,
            messages: a.messages,
        }
    }
}
