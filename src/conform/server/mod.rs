//! `msglog conform server`: runs the spec's session vectors, and probes that
//! need timing or many connections, against a live server, then judges what
//! came back and builds the report.
//!
//! - [`observation`]: runs every phase and gathers what it saw.
//! - [`judgement`]: judges all of it and finds the root causes.
//! - [`plan`]: what is sent (pure).
//! - [`wire`]: connections, writes, replies, waits (the only IO).
//! - [`liveness`]: whether the server still accepts connections.
//! - [`verdict`]: one connection's observation against the spec (pure).
//! - [`concurrent_clients`]: the same for the concurrency probe (pure).
//! - [`records`]: the records the server's log gained (pure).
//! - [`tasks`]: concurrent checks, one result per check, in order.
//!
//! Traffic goes only to the one address given; every connection is bounded
//! in time, and the number of connections is fixed by the vectors and the
//! options. All observing happens first, then all judging: whether the
//! server stopped accepting connections, which voids what came after, is
//! known only at the end.

pub mod concurrent_clients;
pub mod judgement;
pub mod liveness;
pub mod observation;
pub mod plan;
pub mod records;
pub mod tasks;
pub mod verdict;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::report::{ConformReport, Failure, Tally};
use super::rules::{MSG_RECORDS, RECORD_FORMAT, SERVER_RULES};
use super::vectors::SessionVector;
use super::ConformError;
use crate::proto::frame::MAX_PAYLOAD_LEN;

use wire::{NoConnection, Target};

/// What `conform server` was asked to do.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    /// `HOST:PORT` as given.
    pub target: String,
    /// The server's log file, to check the records it gained.
    pub log: Option<PathBuf>,
    pub vectors: Vec<SessionVector>,
    /// Longest wait for a reply or for the server to close.
    pub timeout: Duration,
    /// The server's payload limit, if it has one below 65535.
    pub max_payload: Option<usize>,
    /// The server's handshake timeout, to probe HandshakeTimeout and FrameTimeout.
    pub handshake_timeout: Option<Duration>,
    /// Simultaneous clients of the concurrency probe.
    pub clients: usize,
    /// Speak TLS to the server (spec: #tls): the protocol inside it is the
    /// same, and so is every check.
    pub tls: Option<crate::client::ClientTls>,
}

/// Runs the whole check and builds the report.
pub async fn check_server(opts: &ServerCheck) -> Result<ConformReport, ConformError> {
    let addr = resolve(&opts.target).await?;
    let target = Target::new(addr, opts.timeout, opts.tls.clone());
    // One connection first: a wrong address should say so, not fail 300 probes.
    if let Err(e) = target.connect(0, "a first connection", opts.timeout).await {
        let reason = match e {
            NoConnection::Failed(f) => f.message,
            NoConnection::NotRun => "it stopped accepting connections".into(),
        };
        return Err(ConformError::Connect {
            target: opts.target.clone(),
            reason,
        });
    }
    let log_start = opts
        .log
        .as_ref()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()));
    let mut vectors = opts.vectors.clone();
    if let Some(n) = opts.max_payload.filter(|&n| n < MAX_PAYLOAD_LEN) {
        vectors.push(plan::over_limit_vector(n));
    }
    let seen = observation::observe(&target, opts, &vectors).await?;

    let mut tally = Tally::new(&SERVER_RULES);
    let mut notes = Vec::new();
    let expected = judgement::judge(&mut tally, &mut notes, opts, &seen);
    let skipped = vectors.len() - seen.runnable.len();
    if skipped > 0 {
        notes.push(format!(
            "{skipped} vectors were skipped: they need a server payload limit other than {} (--max-payload)",
            opts.max_payload
                .map_or("the protocol's 65535".to_string(), |m| m.to_string())
        ));
    }
    match (&opts.log, log_start) {
        (Some(path), Some(start)) => {
            let start = usize::try_from(start).unwrap_or(usize::MAX);
            match std::fs::read(path) {
                Ok(whole) => records::check_log(
                    &path.display().to_string(),
                    &whole,
                    start,
                    &expected,
                    &mut tally,
                    &mut notes,
                ),
                Err(e) => tally.fail(
                    MSG_RECORDS,
                    Failure {
                        probe: Some(format!("log {}", path.display())),
                        detail: format!("cannot read the log after the run: {e}"),
                        ..Failure::default()
                    },
                ),
            }
        }
        _ => {
            for rule in [RECORD_FORMAT, MSG_RECORDS] {
                tally.note(
                    rule,
                    "pass --log PATH, the server's log file, to check the records",
                );
            }
        }
    }
    for rule in SERVER_RULES {
        tally.note_if_unexercised(
            rule,
            format!(
                "none of the {} session vectors run is judged under it",
                seen.runnable.len()
            ),
        );
    }
    notes.push(format!(
        "{} connections planned to {}: {} vector runs, 1 pipelining probe, {} concurrent clients{}",
        seen.connections,
        seen.addr,
        seen.runs.len(),
        opts.clients,
        if opts.handshake_timeout.is_some() {
            ", 3 timeout probes"
        } else {
            ""
        }
    ));
    let target_name = if opts.target == addr.to_string() {
        opts.target.clone()
    } else {
        format!("{} ({addr})", opts.target)
    };
    Ok(tally.into_report("server", target_name, notes, Vec::new()))
}

async fn resolve(target: &str) -> Result<SocketAddr, ConformError> {
    let resolve_error = |reason: String| ConformError::Resolve {
        target: target.to_string(),
        reason,
    };
    tokio::net::lookup_host(target)
        .await
        .map_err(|e| resolve_error(e.to_string()))?
        .next()
        .ok_or_else(|| resolve_error("it resolves to no address".into()))
}
