//! The NATS options of `msglog serve`, and `msglog read nats://...`: a
//! JetStream stream printed as `msglog read` prints a JSON-lines log.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use async_nats::ServerAddr;
use futures_util::StreamExt;
use msglog::defaults;
use msglog::proto::{encode_json_record, JsonContext};
use msglog::server::nats::{decode_stored, parse_servers};
use msglog::server::NatsOptions;

use super::read::{preview, Tally, EXIT_CANNOT_READ};
use super::values::{self, seconds, secs_text, whole};

/// The servers of a `--sink nats://...` value.
#[derive(Debug, Clone)]
pub struct NatsServers(pub Vec<ServerAddr>);

fn nats_servers(text: &str) -> Result<NatsServers, String> {
    parse_servers(text).map(NatsServers)
}

#[derive(Debug, clap::Args)]
pub struct NatsServeArgs {
    /// Store messages in a NATS JetStream stream instead of the log file:
    /// nats://HOST:PORT[,HOST:PORT...]. A MSG is acknowledged once the
    /// stream acknowledged its message.
    #[arg(long, env = "MSGLOG_SINK", value_name = "URL", value_parser = nats_servers, conflicts_with_all = ["log", "log_format", "fsync"])]
    sink: Option<NatsServers>,
    /// The JetStream stream to store messages in.
    #[arg(long, env = "MSGLOG_NATS_STREAM", value_name = "NAME", default_value = defaults::NATS_STREAM)]
    nats_stream: String,
    /// Subject prefix: a message goes to PREFIX.<name>, the name's bytes
    /// outside [A-Za-z0-9_-] as %HH.
    #[arg(long, env = "MSGLOG_NATS_SUBJECT", value_name = "PREFIX", default_value = defaults::NATS_SUBJECT)]
    nats_subject: String,
    /// Create the stream if it is missing (subjects PREFIX.>, file storage,
    /// --nats-replicas replicas, a two-minute duplicate window).
    #[arg(long, env = "MSGLOG_NATS_CREATE_STREAM")]
    nats_create_stream: bool,
    /// Replicas of a stream --nats-create-stream creates (1 to 5).
    #[arg(long, env = "MSGLOG_NATS_REPLICAS", value_name = "N", default_value_t = defaults::NATS_REPLICAS, value_parser = whole::<usize>(1, 5))]
    nats_replicas: usize,
    /// Seconds (0.1 to 60) the sink has to store a message, retries
    /// included; past it the MSG gets 0xFF and the connection closes.
    #[arg(long, env = "MSGLOG_SINK_TIMEOUT", value_name = "SECS", default_value = secs_text(defaults::SINK_TIMEOUT), value_parser = seconds(values::SINK_TIMEOUT))]
    sink_timeout: Duration,
    /// Publishes awaiting their acknowledgement across all connections (1 to
    /// 1000000); at the limit, connections stop reading until acks come.
    #[arg(long, env = "MSGLOG_NATS_MAX_IN_FLIGHT", value_name = "N", default_value_t = defaults::NATS_MAX_IN_FLIGHT, value_parser = whole::<usize>(1, 1_000_000))]
    nats_max_in_flight: usize,
}

impl NatsServeArgs {
    /// The NATS sink's options, when --sink names one.
    pub fn options(&self) -> Option<NatsOptions> {
        let servers = self.sink.as_ref()?;
        Some(NatsOptions {
            servers: servers.0.clone(),
            stream: self.nats_stream.clone(),
            subject_prefix: self.nats_subject.clone(),
            create_replicas: self.nats_create_stream.then_some(self.nats_replicas),
            timeout: self.sink_timeout,
            max_in_flight: self.nats_max_in_flight,
        })
    }
}

/// The sink for the server's first line.
pub fn describe(options: &NatsOptions) -> String {
    let servers: Vec<String> = options
        .servers
        .iter()
        .map(|s| format!("{}:{}", s.host(), s.port()))
        .collect();
    format!("stream {} on nats://{}", options.stream, servers.join(","))
}

/// What `msglog read` was asked, for a stream.
pub struct ReadStream<'a> {
    pub url: &'a str,
    pub stream: &'a str,
    pub check: bool,
    pub follow: bool,
    pub lenient: bool,
}

/// Why reading the stream ended early.
#[derive(Debug, thiserror::Error)]
enum StreamReadError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("cannot open the JetStream stream {stream:?}: {source}")]
    Stream {
        stream: String,
        source: jetstream::context::GetStreamError,
    },
    #[error("cannot read the JetStream stream {stream:?}: {source}")]
    Consume {
        stream: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot wait for Ctrl-C: {0}")]
    Signal(io::Error),
    #[error("cannot write the records: {0}")]
    Output(io::Error),
}

/// Runs `msglog read nats://... [--nats-stream NAME]`.
pub fn read(args: ReadStream<'_>) -> ExitCode {
    let servers = match parse_servers(args.url) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("msglog read: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("msglog read: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_CANNOT_READ);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut tally = Tally::default();
    let result = runtime.block_on(read_stream(&args, servers, &mut out, &mut tally));
    let flushed = out.flush();
    match result {
        Ok(()) => {}
        Err(StreamReadError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            eprintln!("msglog read: {e}");
            return ExitCode::from(EXIT_CANNOT_READ);
        }
    }
    if args.check {
        let _ = writeln!(io::stdout(), "{} records", tally.good);
    }
    if let Err(e) = flushed {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("msglog read: cannot write the records: {e}");
            return ExitCode::from(EXIT_CANNOT_READ);
        }
    }
    if args.lenient {
        eprintln!("msglog read: {}: {}", args.stream, tally.summary());
    }
    ExitCode::from(tally.exit_code())
}

async fn read_stream(
    args: &ReadStream<'_>,
    servers: Vec<ServerAddr>,
    out: &mut impl Write,
    tally: &mut Tally,
) -> Result<(), StreamReadError> {
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(StreamReadError::Signal)?;
    let client = async_nats::ConnectOptions::new()
        .name("msglog read")
        .connect(servers)
        .await
        .map_err(|source| StreamReadError::Connect {
            url: args.url.to_string(),
            source,
        })?;
    let jetstream = jetstream::new(client);
    let stream =
        jetstream
            .get_stream(args.stream)
            .await
            .map_err(|source| StreamReadError::Stream {
                stream: args.stream.to_string(),
                source,
            })?;
    let consume_error =
        |source: Box<dyn std::error::Error + Send + Sync>| StreamReadError::Consume {
            stream: args.stream.to_string(),
            source,
        };
    // Without --follow, reading ends at the last message stored when it began.
    let state = &stream.cached_info().state;
    let last = state.last_sequence;
    if !args.follow && state.messages == 0 {
        return Ok(());
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| consume_error(e.into()))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| consume_error(e.into()))?;
    let mut line = Vec::new();
    loop {
        let next = tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            next = messages.next() => next,
        };
        let Some(message) = next else { return Ok(()) };
        let message = message.map_err(|e| consume_error(e.into()))?;
        let info = message.info().map_err(consume_error)?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        match decode_stored(message.headers.as_ref(), message.payload.clone()) {
            Ok(stored) => {
                tally.good += 1;
                if !args.check {
                    line.clear();
                    let context = JsonContext {
                        timestamp: stored.timestamp,
                        peer: stored.peer,
                    };
                    encode_json_record(&mut line, &context, &stored.name, &stored.message);
                    out.write_all(&line).map_err(StreamReadError::Output)?;
                }
            }
            Err(why) => {
                tally.bad += 1;
                out.flush().map_err(StreamReadError::Output)?;
                eprintln!(
                    "msglog read: {}: message {sequence} on {}: not a message msglog stored: {why}: {}",
                    args.stream,
                    message.subject,
                    preview(&message.payload)
                );
                if !args.lenient {
                    return Ok(());
                }
            }
        }
        if pending == 0 {
            out.flush().map_err(StreamReadError::Output)?;
        }
        if !args.follow && sequence >= last {
            return Ok(());
        }
    }
}
