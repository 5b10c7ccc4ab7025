//! `msglog bench`: a load generator that measures a running server.
//!
//! Every connection authenticates before the clock starts. Then each keeps
//! `--window` messages in flight: it reads every reply that is there and
//! refills the window with one write. One read and one write per round, never
//! one syscall per frame, so the generator measures the server and not itself.
//! Every reply byte is checked: only 0x00 counts as acknowledged.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};

use crate::client::tls::Stream;
use crate::client::{ClientError, ClientTls, TlsOptions, TlsSetupError};
use crate::proto::frame::{Frame, TAG_CLOSE};
use crate::proto::machine::ACK;

/// What `msglog bench` is to do (the binary parses it from the command line).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Simultaneous connections, all authenticated before the clock starts.
    pub conns: u32,
    /// How many messages to send, or for how long.
    pub plan: Plan,
    /// Payload bytes per message (at least 1).
    pub size: u16,
    /// Messages in flight per connection (1 is ping-pong).
    pub window: u32,
    /// Print one JSON object on stdout instead of the text report.
    pub json: bool,
    /// Threads of the load generator's runtime (`None`: one per CPU).
    pub threads: Option<u32>,
    /// Connections being set up at the same time.
    pub connect_concurrency: u32,
    /// Time to keep every connection logged in but silent before sending,
    /// e.g. to measure the server's memory per idle connection meanwhile.
    pub hold: Duration,
    /// Time a connection waits for any reply (or to write) before it gives
    /// up; its messages in flight then count as failed.
    pub timeout: Duration,
    /// Speak TLS to the server (spec: #tls).
    pub tls: Option<TlsOptions>,
}

/// How much to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// This many messages in total, spread evenly over the connections.
    Total(u64),
    /// Keep sending for this long.
    For(Duration),
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start the load generator's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot resolve {host}:{port}: {source}")]
    Resolve {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("{host}:{port} resolved to no address")]
    NoAddress { host: String, port: u16 },
    #[error("{conns} connections need about {needed} open files but the limit is {limit}; raise the hard limit (ulimit -Hn) or use fewer --conns")]
    FileLimit { conns: u32, needed: u64, limit: u64 },
    #[error("connection {conn} to {addr} failed: {source}; is `msglog serve` running there?")]
    Connect {
        conn: u32,
        addr: SocketAddr,
        source: ClientError,
    },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("connection {conn}: NAME/PASS got replies {replies:02x?} instead of [00, 00]; the server refused the login")]
    LoginRejected { conn: u32, replies: Vec<u8> },
    #[error("connection {conn}: login failed: {source}")]
    Login { conn: u32, source: std::io::Error },
    #[error("connection {conn}: no reply to NAME/PASS within {secs} s")]
    LoginTimeout { conn: u32, secs: f64 },
}

/// What one run measured; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub target: String,
    pub conns: u32,
    pub window: u32,
    pub size: u16,
    /// Messages written to the server.
    pub sent: u64,
    /// Messages answered with 0x00.
    pub acked: u64,
    /// Messages answered with anything else.
    pub rejected: u64,
    /// Messages that got no reply: the connection ended or timed out first.
    pub failed: u64,
    /// Connections that ended with an error.
    pub conn_errors: u64,
    /// Seconds to connect and authenticate every connection (not measured time).
    pub setup_s: f64,
    /// Seconds from the start of sending to the last acknowledgement.
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    /// Acknowledged payload, in 10^6 bytes per second.
    pub mb_per_s: f64,
    pub latency_us: Latency,
}

/// Time from the write carrying a message to the read carrying its reply.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

/// Runs `msglog bench`: exit status 0 when every message sent was acknowledged.
pub fn run_bench(args: BenchOptions) -> ExitCode {
    let report = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("msglog bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("msglog bench: cannot write the JSON report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_text(&report);
    }
    if report.rejected == 0 && report.failed == 0 && report.acked == report.sent {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "msglog bench: {} of {} messages were not acknowledged ({} rejected, {} failed)",
            report.sent - report.acked,
            report.sent,
            report.rejected,
            report.failed
        );
        ExitCode::FAILURE
    }
}

/// Runs the benchmark the arguments describe and returns what it measured.
pub fn run(args: &BenchOptions) -> Result<BenchReport, BenchError> {
    raise_file_limit(args.conns)?;
    let threads = args.threads.map(|t| t as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    runtime.block_on(bench(args))
}

/// Each connection needs one descriptor; leave room for the runtime's own.
fn raise_file_limit(conns: u32) -> Result<(), BenchError> {
    let needed = u64::from(conns) + 64;
    let limit = rlimit::increase_nofile_limit(needed).unwrap_or(0);
    if limit != 0 && limit < needed {
        return Err(BenchError::FileLimit {
            conns,
            needed,
            limit,
        });
    }
    Ok(())
}

/// Read-only data every connection task shares.
struct Shared {
    /// `window` MSG frames back to back: a refill of k messages is one write
    /// of the first k frames.
    frames: Vec<u8>,
    frame_len: usize,
    window: usize,
    io_timeout: Duration,
    /// Latency histograms, a few so that connections rarely wait for a lock.
    latency: Vec<Mutex<Histogram<u64>>>,
    /// Acknowledged so far, for the progress bar only.
    progress: Option<AtomicU64>,
}

fn new_histogram() -> Histogram<u64> {
    // Nanoseconds, 3 significant digits, up to ten minutes.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

async fn bench(args: &BenchOptions) -> Result<BenchReport, BenchError> {
    let (plan, io_timeout) = (args.plan, args.timeout);
    let addr = resolve(&args.host, args.port).await?;
    let tls = match &args.tls {
        Some(options) => Some(Arc::new(ClientTls::new(options)?)),
        None => None,
    };
    let conns = args.conns;
    let window = args.window as usize;
    let size = usize::from(args.size);

    // Printable payload, so records are written unescaped like real text.
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let frame = Frame::Msg(&payload)
        .to_bytes()
        .expect("size is at most u16::MAX");
    let shards = (conns as usize).clamp(1, 32);
    let shared = Arc::new(Shared {
        frames: frame.repeat(window),
        frame_len: frame.len(),
        window,
        io_timeout,
        latency: (0..shards).map(|_| Mutex::new(new_histogram())).collect(),
        progress: std::io::stderr().is_terminal().then(|| AtomicU64::new(0)),
    });

    // Setup: connect and log in every connection before the clock starts.
    let setup_started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let mut logins = Vec::with_capacity(conns as usize);
    for conn in 0..conns {
        let gate = gate.clone();
        let tls = tls.clone();
        logins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            login(conn, addr, tls.as_deref(), io_timeout).await
        }));
    }
    let mut streams = Vec::with_capacity(conns as usize);
    let mut first_error = None;
    for task in logins {
        match task.await {
            Ok(Ok(s)) => streams.push(s),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let setup_s = setup_started.elapsed().as_secs_f64();
    if !args.hold.is_zero() {
        let hold = args.hold;
        eprintln!(
            "msglog bench: {conns} connections logged in; holding them idle for {} s",
            hold.as_secs_f64()
        );
        tokio::time::sleep(hold).await;
    }

    // Measurement.
    let quotas: Vec<u64> = match plan {
        Plan::Total(total) => {
            let n = u64::from(conns);
            (0..n)
                .map(|i| total / n + u64::from(i < total % n))
                .collect()
        }
        Plan::For(_) => vec![u64::MAX; conns as usize],
    };
    let start = Instant::now();
    let deadline = match plan {
        Plan::Total(_) => None,
        Plan::For(d) => Some(start + d),
    };
    let progress = shared
        .progress
        .is_some()
        .then(|| spawn_progress(shared.clone(), plan));
    let mut tasks = Vec::with_capacity(streams.len());
    for (i, (stream, quota)) in streams.into_iter().zip(quotas).enumerate() {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            drive(stream, &shared, i % shared.latency.len(), quota, deadline).await
        }));
    }
    let mut total = Tally::default();
    let mut last_ack = start;
    for task in tasks {
        let tally = match task.await {
            Ok(t) => t,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        if let Some(t) = tally.last_ack {
            last_ack = last_ack.max(t);
        }
        total.add(&tally);
    }
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }

    let elapsed_s = (last_ack - start).as_secs_f64();
    let mut histogram = new_histogram();
    for shard in &shared.latency {
        let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        histogram.add(&*shard).expect("histograms share bounds");
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let per_s = |x: f64| if elapsed_s > 0.0 { x / elapsed_s } else { 0.0 };
    Ok(BenchReport {
        target: addr.to_string(),
        conns,
        window: args.window,
        size: args.size,
        sent: total.sent,
        acked: total.acked,
        rejected: total.rejected,
        failed: total.failed,
        conn_errors: total.errors,
        setup_s,
        elapsed_s,
        msgs_per_s: per_s(total.acked as f64),
        mb_per_s: per_s(total.acked as f64 * f64::from(args.size)) / 1e6,
        latency_us: Latency {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p99_9: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            mean: histogram.mean() / 1000.0,
        },
    })
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, BenchError> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| BenchError::Resolve {
            host: host.to_owned(),
            port,
            source,
        })?;
    addrs.next().ok_or_else(|| BenchError::NoAddress {
        host: host.to_owned(),
        port,
    })
}

/// Connects (with TLS, if given) and sends NAME and PASS in one write; both
/// must be acknowledged.
async fn login(
    conn: u32,
    addr: SocketAddr,
    tls: Option<&ClientTls>,
    io_timeout: Duration,
) -> Result<Stream, BenchError> {
    let mut stream = match timeout(io_timeout, Stream::connect(addr, tls)).await {
        Ok(connected) => connected.map_err(|source| BenchError::Connect { conn, addr, source })?,
        Err(_) => {
            return Err(BenchError::LoginTimeout {
                conn,
                secs: io_timeout.as_secs_f64(),
            })
        }
    };
    let name = format!("bench-{conn}");
    let mut hello = Frame::Name(name.as_bytes()).to_bytes().expect("short name");
    Frame::Pass(b"A")
        .encode(&mut hello)
        .expect("short password");
    let mut replies = [0xAAu8; 2];
    let exchange = async {
        stream.write_all(&hello).await?;
        stream.flush().await?;
        stream.read_exact(&mut replies).await
    };
    match timeout(io_timeout, exchange).await {
        Err(_) => {
            return Err(BenchError::LoginTimeout {
                conn,
                secs: io_timeout.as_secs_f64(),
            })
        }
        Ok(Err(source)) => return Err(BenchError::Login { conn, source }),
        Ok(Ok(_)) => {}
    }
    if replies != [ACK, ACK] {
        return Err(BenchError::LoginRejected {
            conn,
            replies: replies.to_vec(),
        });
    }
    Ok(stream)
}

/// Counts of one connection, or of all of them.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    acked: u64,
    rejected: u64,
    failed: u64,
    errors: u64,
    last_ack: Option<Instant>,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.rejected += other.rejected;
        self.failed += other.failed;
        self.errors += other.errors;
    }
}

/// Keeps the window full until the quota is sent or the deadline passed,
/// then waits for the last replies and closes with CLOSE.
async fn drive(
    mut stream: Stream,
    shared: &Shared,
    shard: usize,
    quota: u64,
    deadline: Option<Instant>,
) -> Tally {
    let mut tally = Tally::default();
    let mut unsent = quota;
    // Writes still waiting for replies: when, and how many messages.
    let mut runs: VecDeque<(Instant, usize)> = VecDeque::with_capacity(shared.window.min(1024));
    let mut in_flight = 0usize;
    // At most `window` replies can be outstanding; one more byte shows excess.
    let mut replies = vec![0u8; shared.window + 1];
    loop {
        let now = Instant::now();
        let sending = deadline.is_none_or(|d| now < d);
        let room = (shared.window - in_flight).min(usize::try_from(unsent).unwrap_or(usize::MAX));
        if sending && room > 0 {
            let bytes = &shared.frames[..room * shared.frame_len];
            // TLS holds what it encrypted until flushed; for TCP the flush
            // does nothing.
            let write = async {
                stream.write_all(bytes).await?;
                stream.flush().await
            };
            match timeout(shared.io_timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    // Part of the write may have reached the server, but none
                    // of it can be acknowledged any more.
                    tally.sent += room as u64;
                    tally.failed += (in_flight + room) as u64;
                    tally.errors += 1;
                    return tally;
                }
            }
            runs.push_back((now, room));
            in_flight += room;
            unsent -= room as u64;
            tally.sent += room as u64;
        }
        if in_flight == 0 {
            break;
        }
        let n = match timeout(shared.io_timeout, stream.read(&mut replies)).await {
            Ok(Ok(n)) if n > 0 => n,
            // End of stream, error or timeout: what is in flight is lost.
            _ => {
                tally.failed += in_flight as u64;
                tally.errors += 1;
                return tally;
            }
        };
        let received = Instant::now();
        let got = &replies[..n];
        let acks = got.iter().position(|&b| b != ACK).unwrap_or(n);
        let acks = acks.min(in_flight);
        if acks > 0 {
            record_latency(shared, shard, &mut runs, acks, received);
            in_flight -= acks;
            tally.acked += acks as u64;
            tally.last_ack = Some(received);
            if let Some(p) = &shared.progress {
                p.fetch_add(acks as u64, Ordering::Relaxed);
            }
        }
        if acks < n {
            // A 0xFF (the server closes after it), or a reply to nothing.
            if in_flight > 0 {
                tally.rejected += 1;
                tally.failed += in_flight as u64 - 1;
            }
            tally.errors += 1;
            return tally;
        }
    }
    // Not part of the measurement: a clean CLOSE so the server logs a normal end.
    let _ = timeout(shared.io_timeout, async {
        stream.write_all(&[TAG_CLOSE]).await?;
        stream.flush().await?;
        stream.read(&mut replies[..1]).await
    })
    .await;
    tally
}

/// Records the latency of the oldest `acks` messages in flight.
fn record_latency(
    shared: &Shared,
    shard: usize,
    runs: &mut VecDeque<(Instant, usize)>,
    mut acks: usize,
    received: Instant,
) {
    let mut histogram = shared.latency[shard]
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    while acks > 0 {
        let Some((sent_at, count)) = runs.front_mut() else {
            break;
        };
        let take = acks.min(*count);
        let ns = u64::try_from((received - *sent_at).as_nanos()).unwrap_or(u64::MAX);
        histogram.saturating_record_n(ns.max(1), take as u64);
        *count -= take;
        acks -= take;
        if *count == 0 {
            runs.pop_front();
        }
    }
}

fn spawn_progress(
    shared: Arc<Shared>,
    plan: Plan,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = match plan {
        Plan::Total(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} acknowledged, {msg}, {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        Plan::For(d) => ProgressBar::new(d.as_secs()).with_style(
            ProgressStyle::with_template("{bar:40} {elapsed}/{len}s {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
    };
    let ticker_bar = bar.clone();
    let ticker = tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let acked = shared
                .progress
                .as_ref()
                .map_or(0, |p| p.load(Ordering::Relaxed));
            let secs = started.elapsed().as_secs_f64();
            let rate = acked as f64 / secs.max(1e-3);
            match plan {
                Plan::Total(_) => {
                    ticker_bar.set_position(acked);
                    ticker_bar.set_message(format!("{rate:.0} msgs/s"));
                }
                Plan::For(_) => {
                    ticker_bar.set_position(secs as u64);
                    ticker_bar.set_message(format!("{acked} acknowledged, {rate:.0} msgs/s"));
                }
            }
        }
    });
    (bar, ticker)
}

fn print_text(r: &BenchReport) {
    println!(
        "msglog bench: {} connection(s) x window {}, {}-byte messages, {}",
        r.conns, r.window, r.size, r.target
    );
    println!(
        "  acknowledged {} of {} sent (rejected {}, failed {}) in {:.3} s (setup {:.3} s)",
        r.acked, r.sent, r.rejected, r.failed, r.elapsed_s, r.setup_s
    );
    println!(
        "  throughput   {:.0} msgs/s, {:.2} MB/s of payload",
        r.msgs_per_s, r.mb_per_s
    );
    let l = &r.latency_us;
    println!(
        "  latency (us) p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
        l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
    );
}
