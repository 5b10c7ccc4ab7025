//! Counters for the periodic stats line; updated once per batch, not per message.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::budget::FrameBudget;

#[derive(Debug, Default)]
pub struct Stats {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub messages: AtomicU64,
    pub message_bytes: AtomicU64,
    pub rejected: AtomicU64,
    /// Times a connection started busy-polling for its next frame, and
    /// times the frame came while it did.
    pub busy_polls: AtomicU64,
    pub busy_poll_hits: AtomicU64,
    /// Times a connection over its rate waited for a token.
    pub rate_waits: AtomicU64,
}

impl Stats {
    pub(crate) fn opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub(crate) fn appended(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Relaxed);
        self.message_bytes.fetch_add(bytes, Relaxed);
    }
}

/// Logs one line every `every` until shutdown: open connections, messages
/// and bytes per second since the last line, and how much of the partial
/// frame budget is in use.
pub(crate) async fn report_every(
    stats: Arc<Stats>,
    budget: Arc<FrameBudget>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let (mut messages, mut bytes) = (0, 0);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let (m, b) = (
            stats.messages.load(Relaxed),
            stats.message_bytes.load(Relaxed),
        );
        let secs = every.as_secs_f64();
        tracing::info!(
            connections = stats.connections_open.load(Relaxed),
            accepted_total = stats.connections_total.load(Relaxed),
            messages_per_s = ((m - messages) as f64 / secs).round() as u64,
            bytes_per_s = ((b - bytes) as f64 / secs).round() as u64,
            messages_total = m,
            rejected_total = stats.rejected.load(Relaxed),
            busy_polls_total = stats.busy_polls.load(Relaxed),
            busy_poll_hits_total = stats.busy_poll_hits.load(Relaxed),
            partial_frame_bytes_over_allowance = budget.used(),
            rate_waits_total = stats.rate_waits.load(Relaxed),
            "stats"
        );
        (messages, bytes) = (m, b);
    }
}
