//! The arguments of `msglog bench`; the command is `msglog::bench`.

use std::time::Duration;

use msglog::bench::{BenchOptions, Plan};
use msglog::defaults;

use super::values::{seconds, secs_text, whole, PAUSE, PERIOD, TIMEOUT};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = defaults::PORT)]
    port: u16,
    /// Simultaneous connections, all authenticated before the clock starts (1 to 1000000).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = whole::<u32>(1, 1_000_000))]
    conns: u32,
    /// Messages to send in total, spread evenly over the connections (at least 1).
    #[arg(long, value_name = "M", conflicts_with = "duration", value_parser = whole::<u64>(1, u64::MAX))]
    msgs: Option<u64>,
    /// Seconds to keep sending (0.1 to 86400; the default is 10 unless --msgs is given).
    #[arg(long, value_name = "SECS", value_parser = seconds(PERIOD))]
    duration: Option<Duration>,
    /// Payload bytes per message (1 to 65535).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = whole::<u16>(1, 65_535))]
    size: u16,
    /// Messages in flight per connection (1 is ping-pong; up to 65536).
    #[arg(long, value_name = "W", default_value_t = 1, value_parser = whole::<u32>(1, 65_536))]
    window: u32,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    json: bool,
    /// Threads of the load generator's runtime (1 to 1024; default: one per CPU).
    #[arg(long, value_name = "N", value_parser = whole::<u32>(1, 1024))]
    threads: Option<u32>,
    /// Connections being set up at the same time (1 to 65536).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = whole::<u32>(1, 65_536))]
    connect_concurrency: u32,
    /// Seconds to keep every connection logged in but silent before sending,
    /// e.g. to measure the server's memory per idle connection meanwhile (0 to 86400).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = seconds(PAUSE))]
    hold: Duration,
    /// Seconds a connection waits for any reply (or to write) before it gives
    /// up; its messages in flight then count as failed (0.1 to 3600).
    #[arg(long, value_name = "SECS", default_value = secs_text(defaults::BENCH_TIMEOUT), value_parser = seconds(TIMEOUT))]
    timeout: Duration,
    #[command(flatten)]
    tls: super::tls::ClientTlsArgs,
}

impl From<BenchArgs> for BenchOptions {
    fn from(a: BenchArgs) -> BenchOptions {
        BenchOptions {
            tls: a.tls.options(&a.host),
            host: a.host,
            port: a.port,
            conns: a.conns,
            plan: match (a.msgs, a.duration) {
                (Some(total), _) => Plan::Total(total),
                (None, duration) => Plan::For(duration.unwrap_or(defaults::BENCH_DURATION)),
            },
            size: a.size,
            window: a.window,
            json: a.json,
            threads: a.threads,
            connect_concurrency: a.connect_concurrency,
            hold: a.hold,
            timeout: a.timeout,
        }
    }
}
