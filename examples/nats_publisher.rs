//! A plain async-nats JetStream publisher: the ceiling a NATS sink can reach
//! on this machine, for BENCHMARKS.md (`scripts/run_nats_benchmarks.py`).
//!
//! It publishes as msglog's sink does, minus msglog: one NATS connection
//! (the sink's one client), `--tasks` tasks each keeping `--window` publishes
//! in flight (a task stands for one msglog connection with a window of
//! messages), 64-byte payloads with the headers msglog sends (a unique
//! `Nats-Msg-Id`, name, peer, server id and time, of the same sizes), and
//! the same JetStream context settings. It counts acknowledged publishes
//! for `--duration` seconds and prints one JSON object.
//!
//!     cargo run --release --example nats_publisher -- \
//!         --server nats://127.0.0.1:4222 --tasks 50 --window 16 --duration 10

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use async_nats::HeaderMap;
use bytes::Bytes;
use msglog::server::nats::{parse_servers, stored_form};

struct Options {
    servers: String,
    tasks: usize,
    window: usize,
    duration: Duration,
    size: usize,
    subject_prefix: String,
}

const USAGE: &str = "usage: nats_publisher [--server nats://HOST:PORT[,...]] [--tasks N] [--window W] [--duration SECS] [--size BYTES] [--subject PREFIX]";

fn options() -> Result<Options, String> {
    let mut o = Options {
        servers: "nats://127.0.0.1:4222".into(),
        tasks: 1,
        window: 1,
        duration: Duration::from_secs(10),
        size: 64,
        subject_prefix: "msglog".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?;
        let number = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{flag} takes a whole number above 0, not {v:?}"))
        };
        match flag.as_str() {
            "--server" => o.servers = value,
            "--tasks" => o.tasks = number(&value)?,
            "--window" => o.window = number(&value)?,
            "--size" => o.size = number(&value)?,
            "--subject" => o.subject_prefix = value,
            "--duration" => {
                o.duration = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("--duration takes seconds above 0, not {value:?}"))?
            }
            _ => return Err(format!("unknown option {flag:?}; {USAGE}")),
        }
    }
    Ok(o)
}

/// What one task did.
#[derive(Default)]
struct TaskResult {
    acked: u64,
    failed: u64,
    /// Microseconds from each publish to its ack.
    latencies_us: Vec<u32>,
}

/// The headers and payload msglog's sink stores a message from connection
/// `task` with, made by the sink's own function.
fn stored(
    server_id: &str,
    task: usize,
    sequence: u64,
    payload: Bytes,
    timestamp: &str,
) -> (HeaderMap, Bytes) {
    let name = format!("bench-{task}");
    let peer = format!("127.0.0.1:{}", 40000 + task);
    stored_form(
        server_id,
        sequence,
        name.as_bytes(),
        payload,
        &peer,
        timestamp,
    )
}

async fn run_task(
    jetstream: jetstream::Context,
    options: Arc<Options>,
    task: usize,
    server_id: Arc<str>,
    sequence: Arc<AtomicU64>,
    until: Instant,
) -> Result<TaskResult, String> {
    let subject = format!("{}.bench-{task}", options.subject_prefix);
    let payload = Bytes::from(vec![b'x'; options.size]);
    let mut result = TaskResult::default();
    let mut pending: VecDeque<(Instant, PublishAckFuture)> =
        VecDeque::with_capacity(options.window);
    let mut timestamp = String::new();
    let mut sent = 0u64;
    while Instant::now() < until {
        // msglog stamps each batch with its time; a window is this one's batch.
        if sent % options.window as u64 == 0 {
            timestamp = msglog::proto::JsonContext::timestamp_of(SystemTime::now());
        }
        sent += 1;
        let seq = sequence.fetch_add(1, Ordering::Relaxed);
        let (headers, payload) = stored(&server_id, task, seq, payload.clone(), &timestamp);
        let publish = PublishMessage::build().headers(headers).payload(payload);
        let ack = jetstream
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| format!("publish failed: {e}"))?;
        pending.push_back((Instant::now(), ack));
        if pending.len() >= options.window {
            let (at, ack) = pending.pop_front().expect("not empty");
            settle(at, ack, &mut result).await;
        }
    }
    while let Some((at, ack)) = pending.pop_front() {
        settle(at, ack, &mut result).await;
    }
    Ok(result)
}

async fn settle(sent: Instant, ack: PublishAckFuture, result: &mut TaskResult) {
    match ack.into_future().await {
        Ok(_) => {
            result.acked += 1;
            let us = sent.elapsed().as_micros();
            result
                .latencies_us
                .push(u32::try_from(us).unwrap_or(u32::MAX));
        }
        Err(_) => result.failed += 1,
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[at])
}

async fn run(options: Options) -> Result<serde_json::Value, String> {
    let servers = parse_servers(&options.servers)?;
    let client = async_nats::ConnectOptions::new()
        .name("nats_publisher")
        .connect(servers)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", options.servers))?;
    let in_flight = options.tasks * options.window;
    // As msglog's sink builds its context (src/server/nats.rs), with the
    // default --nats-max-in-flight 4096 or what this run keeps in flight.
    let jetstream = jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .max_ack_inflight(in_flight.max(4096).saturating_mul(4))
        .backpressure_on_inflight(true)
        .ack_timeout(Duration::from_secs(2))
        .build(client.clone());
    let server_id: Arc<str> = format!(
        "{:x}{:x}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
    .into();
    let options = Arc::new(options);
    let sequence = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + options.duration;
    let tasks: Vec<_> = (0..options.tasks)
        .map(|task| {
            tokio::spawn(run_task(
                jetstream.clone(),
                options.clone(),
                task,
                server_id.clone(),
                sequence.clone(),
                until,
            ))
        })
        .collect();
    let mut acked = 0;
    let mut failed = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let r = task.await.map_err(|e| format!("a task panicked: {e}"))??;
        acked += r.acked;
        failed += r.failed;
        latencies.extend(r.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(serde_json::json!({
        "target": options.servers,
        "connections": 1,
        "tasks": options.tasks,
        "window": options.window,
        "size": options.size,
        "acked": acked,
        "failed": failed,
        "elapsed_s": elapsed,
        "msgs_per_s": acked as f64 / elapsed,
        "latency_us": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
    }))
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("nats_publisher: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nats_publisher: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(report) => {
            println!("{report}");
            if report["failed"] == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("nats_publisher: {e}");
            ExitCode::FAILURE
        }
    }
}
