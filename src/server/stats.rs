//! The server's counters: one set of atomics that the stats line and the
//! metrics endpoint both read, so they cannot disagree. They are updated
//! once per batch, per connection or per write of the log, never per
//! message, and with no lock or allocation: a relaxed atomic add each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::budget::FrameBudget;
use crate::proto::machine::Violation;

/// How many rules the spec names (spec: #rules).
pub const RULE_COUNT: usize = 12;

/// One violation of each of the spec's rules, in the order of its rules
/// table; only their rule names are used.
const RULES: [Violation; RULE_COUNT] = [
    Violation::EmptyName,
    Violation::NameStartsWithNul,
    Violation::EmptyPassword,
    Violation::PasswordRejected,
    Violation::EmptyMessage,
    Violation::OutOfOrder { state: "C", tag: 3 },
    Violation::UnknownTag(0),
    Violation::PayloadOverLimit { len: 0, max: 0 },
    Violation::AppendFailed,
    Violation::HandshakeTimeout,
    Violation::FrameTimeout,
    Violation::ShuttingDown,
];

/// Where a violation is counted in `RULES` order. Exhaustive, so that a new
/// rule cannot go uncounted.
fn rule_index(v: &Violation) -> usize {
    match v {
        Violation::EmptyName => 0,
        Violation::NameStartsWithNul => 1,
        Violation::EmptyPassword => 2,
        Violation::PasswordRejected => 3,
        Violation::EmptyMessage => 4,
        Violation::OutOfOrder { .. } => 5,
        Violation::UnknownTag(_) => 6,
        Violation::PayloadOverLimit { .. } => 7,
        Violation::AppendFailed => 8,
        Violation::HandshakeTimeout => 9,
        Violation::FrameTimeout => 10,
        Violation::ShuttingDown => 11,
    }
}

/// Whether a rule refuses a NAME or a PASS: a login rejected.
fn refuses_login(v: &Violation) -> bool {
    matches!(
        v,
        Violation::EmptyName
            | Violation::NameStartsWithNul
            | Violation::EmptyPassword
            | Violation::PasswordRejected
    )
}

/// The counters of the connections and their sessions.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    /// Connections refused at the connection limit.
    pub connections_refused: AtomicU64,
    /// PASS frames accepted.
    pub logins: AtomicU64,
    pub messages: AtomicU64,
    pub message_bytes: AtomicU64,
    /// Connections that ended with 0xFF, by rule, in `RULES` order.
    rejections: [AtomicU64; RULE_COUNT],
    /// Times a connection started busy-polling for its next frame, and
    /// times the frame came while it did.
    pub busy_polls: AtomicU64,
    pub busy_poll_hits: AtomicU64,
    /// Times a connection over its rate waited for a token.
    pub rate_waits: AtomicU64,
    /// The server accepts connections: from its bind to its shutdown.
    accepting: AtomicBool,
}

impl Stats {
    pub(crate) fn opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn logged_in(&self, logins: u64) {
        self.logins.fetch_add(logins, Relaxed);
    }

    pub(crate) fn appended(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Relaxed);
        self.message_bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn rejected(&self, violation: &Violation) {
        self.rejections[rule_index(violation)].fetch_add(1, Relaxed);
    }

    pub(crate) fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Relaxed);
    }
}

/// Upper bounds of the latency buckets: from a write to the page cache
/// (microseconds) to a sync on a struggling disk (seconds).
const LATENCY_BOUNDS: [Duration; 20] = [
    Duration::from_micros(5),
    Duration::from_micros(10),
    Duration::from_micros(25),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// A latency histogram of atomics: an observation is two relaxed adds, no
/// lock (prometheus-client's own histogram takes a mutex per observation).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is over every bound.
    counts: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, took: Duration) {
        let bucket = LATENCY_BOUNDS.partition_point(|&bound| bound < took);
        self.counts[bucket].fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let bounds = LATENCY_BOUNDS
            .iter()
            .map(Duration::as_secs_f64)
            .chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(self.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|&(_, n)| n).sum(),
            buckets,
            sum_seconds: Duration::from_nanos(self.sum_nanos.load(Relaxed)).as_secs_f64(),
        }
    }
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bound in seconds (the last is infinity) and the observations
    /// in that bucket alone (not cumulative).
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// The counters of the log: whether appends fail, errors, reopens, and how
/// long its writes and syncs take (one observation per group written).
#[derive(Debug, Default)]
pub struct LogStats {
    /// Appends are failing: from the first failed write of an episode to
    /// the next write that works.
    failing: AtomicBool,
    write_errors: AtomicU64,
    reopens: AtomicU64,
    reopen_failures: AtomicU64,
    pub(crate) append_latency: LatencyHistogram,
    pub(crate) sync_latency: LatencyHistogram,
}

impl LogStats {
    pub(crate) fn write_failed(&self) {
        self.write_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Relaxed);
    }

    pub(crate) fn reopened(&self, ok: bool) {
        let counter = if ok {
            &self.reopens
        } else {
            &self.reopen_failures
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Whether appends are failing now (disk full, I/O errors).
    pub fn failing(&self) -> bool {
        self.failing.load(Relaxed)
    }
}

/// Whether the server can take messages now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not accepting connections: shutting down.
    NotAccepting,
    /// Appends to the log fail; they are rejected until one works again.
    LogFailing,
}

impl Readiness {
    /// For a person: what the state is, and for the not-ready states why.
    pub fn describe(&self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::NotAccepting => "not ready: not accepting connections (shutting down)",
            Readiness::LogFailing => {
                "not ready: appending to the log fails (disk full or I/O error); see the server's diagnostics"
            }
        }
    }
}

/// Everything a running server counts, read at one moment (each counter
/// on its own: the set is not one atomic snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub logins_accepted: u64,
    /// NAME or PASS refused (EmptyName, NameStartsWithNul, EmptyPassword,
    /// PasswordRejected).
    pub logins_rejected: u64,
    pub messages: u64,
    pub message_bytes: u64,
    /// Connections rejected with 0xFF, for every rule of the spec (rule
    /// name, count), in the order of its rules table.
    pub rejections: [(&'static str, u64); RULE_COUNT],
    pub busy_polls: u64,
    pub busy_poll_hits: u64,
    /// Times a connection over its rate waited for a token.
    pub rate_waits: u64,
    /// Bytes of partial frames charged to the frame budget, and its limit.
    pub frame_budget_used: u64,
    pub frame_budget_limit: u64,
    pub readiness: Readiness,
    pub log_failing: bool,
    pub log_write_errors: u64,
    pub log_reopens: u64,
    pub log_reopen_failures: u64,
    pub append_latency: HistogramSnapshot,
    /// Only with fsync.
    pub sync_latency: Option<HistogramSnapshot>,
}

impl Snapshot {
    pub fn rejected_total(&self) -> u64 {
        self.rejections.iter().map(|&(_, n)| n).sum()
    }
}

/// A read-only view of a server's counters and state, for the stats line,
/// metrics and health checks; cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerView {
    pub(crate) stats: Arc<Stats>,
    pub(crate) log: Arc<LogStats>,
    pub(crate) budget: Arc<FrameBudget>,
    pub(crate) fsync: bool,
}

impl ServerView {
    pub fn readiness(&self) -> Readiness {
        if !self.stats.accepting.load(Relaxed) {
            Readiness::NotAccepting
        } else if self.log.failing() {
            Readiness::LogFailing
        } else {
            Readiness::Ready
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let (stats, log) = (&*self.stats, &*self.log);
        let rejections =
            std::array::from_fn(|i| (RULES[i].rule(), stats.rejections[i].load(Relaxed)));
        Snapshot {
            connections_open: stats.connections_open.load(Relaxed),
            connections_accepted: stats.connections_total.load(Relaxed),
            connections_refused: stats.connections_refused.load(Relaxed),
            logins_accepted: stats.logins.load(Relaxed),
            logins_rejected: RULES
                .iter()
                .zip(&stats.rejections)
                .filter(|(rule, _)| refuses_login(rule))
                .map(|(_, n)| n.load(Relaxed))
                .sum(),
            messages: stats.messages.load(Relaxed),
            message_bytes: stats.message_bytes.load(Relaxed),
            rejections,
            busy_polls: stats.busy_polls.load(Relaxed),
            busy_poll_hits: stats.busy_poll_hits.load(Relaxed),
            rate_waits: stats.rate_waits.load(Relaxed),
            frame_budget_used: self.budget.used() as u64,
            frame_budget_limit: self.budget.limit() as u64,
            readiness: self.readiness(),
            log_failing: log.failing(),
            log_write_errors: log.write_errors.load(Relaxed),
            log_reopens: log.reopens.load(Relaxed),
            log_reopen_failures: log.reopen_failures.load(Relaxed),
            append_latency: log.append_latency.snapshot(),
            sync_latency: self.fsync.then(|| log.sync_latency.snapshot()),
        }
    }
}

/// Logs one line every `every` until shutdown: open connections, messages
/// and bytes per second since the last line, and how much of the partial
/// frame budget is in use.
pub(crate) async fn report_every(
    view: ServerView,
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
        let now = view.snapshot();
        let secs = every.as_secs_f64();
        tracing::info!(
            connections = now.connections_open,
            accepted_total = now.connections_accepted,
            refused_total = now.connections_refused,
            messages_per_s = ((now.messages - messages) as f64 / secs).round() as u64,
            bytes_per_s = ((now.message_bytes - bytes) as f64 / secs).round() as u64,
            messages_total = now.messages,
            rejected_total = now.rejected_total(),
            busy_polls_total = now.busy_polls,
            busy_poll_hits_total = now.busy_poll_hits,
            partial_frame_bytes_over_allowance = now.frame_budget_used,
            rate_waits_total = now.rate_waits,
            "stats"
        );
        (messages, bytes) = (now.messages, now.message_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_its_own_counter_under_its_own_name() {
        for (i, rule) in RULES.iter().enumerate() {
            assert_eq!(rule_index(rule), i, "{}", rule.rule());
        }
        let mut names: Vec<_> = RULES.iter().map(Violation::rule).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RULE_COUNT, "two counters share a rule name");
    }

    /// The rules are those of the spec's rules table, in its order.
    #[test]
    fn rules_are_the_spec_table() {
        let spec = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/protocol.md"),
        )
        .unwrap();
        let table = spec.split("## Rules {#rules}").nth(1).unwrap();
        let in_spec: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("| rule "))
            .take_while(|l| l.starts_with('|'))
            .skip(2) // the header and its separator
            .filter_map(|l| l.trim_start_matches('|').split_whitespace().next())
            .collect();
        let ours: Vec<&str> = RULES.iter().map(Violation::rule).collect();
        assert_eq!(ours, in_spec);
    }

    #[test]
    fn rejections_count_by_rule_and_logins_from_name_and_pass_rules() {
        let view = ServerView {
            stats: Arc::new(Stats::default()),
            log: Arc::new(LogStats::default()),
            budget: Arc::new(FrameBudget::new(100)),
            fsync: false,
        };
        view.stats.rejected(&Violation::PasswordRejected);
        view.stats.rejected(&Violation::PasswordRejected);
        view.stats.rejected(&Violation::EmptyName);
        view.stats
            .rejected(&Violation::OutOfOrder { state: "N", tag: 1 });
        let now = view.snapshot();
        assert_eq!(now.rejections[3], ("PasswordRejected", 2));
        assert_eq!(now.rejections[0], ("EmptyName", 1));
        assert_eq!(now.rejections[5], ("OutOfOrder", 1));
        assert_eq!(now.rejected_total(), 4);
        assert_eq!(now.logins_rejected, 3);
        assert_eq!(now.sync_latency, None);
    }

    #[test]
    fn latencies_land_in_the_first_bucket_that_holds_them() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(5)); // on a bound: that bucket
        h.observe(Duration::from_nanos(5_001));
        h.observe(Duration::from_secs(60)); // over every bound
        h.observe(Duration::ZERO);
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), LATENCY_BOUNDS.len() + 1);
        assert_eq!(s.buckets[0], (0.000_005, 2));
        assert_eq!(s.buckets[1], (0.000_01, 1));
        assert_eq!(s.buckets[LATENCY_BOUNDS.len()], (f64::INFINITY, 1));
        assert!(
            (s.sum_seconds - 60.000_010_001).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
    }

    #[test]
    fn readiness_follows_accepting_and_the_log() {
        let view = ServerView {
            stats: Arc::new(Stats::default()),
            log: Arc::new(LogStats::default()),
            budget: Arc::new(FrameBudget::new(100)),
            fsync: true,
        };
        assert_eq!(view.readiness(), Readiness::NotAccepting);
        view.stats.set_accepting(true);
        assert_eq!(view.readiness(), Readiness::Ready);
        view.log.set_failing(true);
        assert_eq!(view.readiness(), Readiness::LogFailing);
        view.log.set_failing(false);
        assert_eq!(view.readiness(), Readiness::Ready);
        assert!(view.snapshot().sync_latency.is_some());
    }
}
