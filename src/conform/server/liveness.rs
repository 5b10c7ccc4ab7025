//! Whether the server under check is still accepting connections.
//!
//! A server that crashes mid-check refuses (or resets) every connection
//! after that; judged one by one, each of a thousand later checks would
//! "fail". Instead every connection attempt is reported here, and a few
//! refusals with no connection accepted after them mean the server
//! stopped: the checks after that are void, not failures, and the report
//! says so once, as the root cause.
//!
//! Attempts are ordered by when they started (a duration since the run
//! started), not by when their task got to report them: under load a task
//! can learn of its connection long after it was made, and the order of
//! reports says nothing. The last accepted attempt's start is then a time
//! before which the server surely still ran. Times are data, so the
//! decision is tested without sockets.

use std::sync::Mutex;
use std::time::Duration;

/// Refused connection attempts, started after the last one accepted, that
/// mean the server stopped accepting connections. More than one, so
/// that a single refusal (a full backlog on some systems) is a failure of
/// its own check rather than the end of the run.
pub const REFUSALS_TO_STOP: usize = 3;

/// How long before the last accepted attempt a connection that lost its
/// server, or an attempt that was refused, is still taken as cut off by the
/// stop: a dying server's sockets are torn down one by one (the kernel may
/// complete a connection or two meanwhile), and under load a task learns
/// late of what happened to its connection, so the moment of the stop is
/// known only roughly.
pub const STOP_SLACK: Duration = Duration::from_secs(1);

/// One connection attempt the server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The connection's number in the report.
    pub connection: usize,
    /// The vector or probe that made it.
    pub probe: String,
    /// The error, as the system said it.
    pub error: String,
    /// When the attempt started, since the run started.
    pub at: Duration,
}

/// The server stopped accepting connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Connections it accepted before it stopped.
    pub accepted: usize,
    /// When the last attempt it accepted started, since the run started:
    /// it was still running then, so a connection that lost its server
    /// after that may have been cut off by the stop.
    pub last_accepted_at: Duration,
    /// The earliest of the refusals that showed it.
    pub first_refusal: Refusal,
}

impl Stopped {
    /// From when on a connection that lost its server, or an attempt that
    /// was refused, is taken as cut off by the stop rather than as a
    /// failure of its own.
    pub fn cut_off_since(&self) -> Duration {
        self.last_accepted_at.saturating_sub(STOP_SLACK)
    }
}

/// What the connection attempts so far show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivenessState {
    accepted: usize,
    last_accepted_at: Duration,
    /// Refusals of attempts started after the last accepted one.
    refusals: Vec<Refusal>,
    stopped: Option<Stopped>,
}

impl LivenessState {
    /// The server accepted a connection attempt that started at `at`.
    pub fn accepted(&mut self, at: Duration) {
        if self.stopped.is_some() {
            return;
        }
        self.accepted += 1;
        self.last_accepted_at = self.last_accepted_at.max(at);
        let last = self.last_accepted_at;
        self.refusals.retain(|r| r.at > last);
    }

    /// The server refused (or reset) a connection attempt.
    pub fn refused(&mut self, refusal: Refusal) {
        if self.stopped.is_some() || refusal.at <= self.last_accepted_at {
            return;
        }
        self.refusals.push(refusal);
        if self.refusals.len() >= REFUSALS_TO_STOP {
            let first_refusal = self
                .refusals
                .iter()
                .min_by_key(|r| r.at)
                .cloned()
                .unwrap_or_else(|| self.refusals[0].clone());
            self.stopped = Some(Stopped {
                accepted: self.accepted,
                last_accepted_at: self.last_accepted_at,
                first_refusal,
            });
        }
    }

    pub fn stopped(&self) -> Option<&Stopped> {
        self.stopped.as_ref()
    }
}

/// [`LivenessState`] shared by the tasks of a run.
#[derive(Debug, Default)]
pub struct Liveness {
    state: Mutex<LivenessState>,
}

impl Liveness {
    pub fn accepted(&self, at: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.accepted(at);
        }
    }

    pub fn refused(&self, refusal: Refusal) {
        if let Ok(mut s) = self.state.lock() {
            s.refused(refusal);
        }
    }

    /// The stop, once one was seen.
    pub fn stopped(&self) -> Option<Stopped> {
        self.state.lock().ok().and_then(|s| s.stopped().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(connection: usize, ms: u64) -> Refusal {
        Refusal {
            connection,
            probe: format!("vector {connection}"),
            error: "Connection refused (os error 111)".into(),
            at: Duration::from_millis(ms),
        }
    }

    #[test]
    fn refusals_in_a_row_mean_the_server_stopped() {
        let mut s = LivenessState::default();
        for ms in [1, 2, 3] {
            s.accepted(Duration::from_millis(ms));
        }
        s.refused(refusal(4, 10));
        s.refused(refusal(5, 11));
        assert!(s.stopped().is_none(), "two refusals are not yet a stop");
        s.refused(refusal(6, 12));
        let stopped = s.stopped().unwrap();
        assert_eq!(stopped.accepted, 3);
        assert_eq!(stopped.last_accepted_at, Duration::from_millis(3));
        assert_eq!(stopped.first_refusal, refusal(4, 10));
        // Nothing after the stop changes what it says.
        s.accepted(Duration::from_millis(20));
        s.refused(refusal(9, 21));
        assert_eq!(s.stopped().unwrap().first_refusal.connection, 4);
        assert_eq!(s.stopped().unwrap().accepted, 3);
    }

    #[test]
    fn an_accepted_connection_breaks_the_run_of_refusals() {
        let mut s = LivenessState::default();
        s.refused(refusal(1, 1));
        s.refused(refusal(2, 2));
        s.accepted(Duration::from_millis(3));
        s.refused(refusal(4, 4));
        s.refused(refusal(5, 5));
        assert!(s.stopped().is_none());
        s.refused(refusal(6, 6));
        assert_eq!(s.stopped().unwrap().first_refusal.connection, 4);
    }

    /// Under load a task reports its accepted connection late: that must
    /// not hide refusals of attempts started after it.
    #[test]
    fn reports_are_ordered_by_when_the_attempt_started() {
        let mut s = LivenessState::default();
        s.refused(refusal(8, 30));
        s.refused(refusal(9, 31));
        s.accepted(Duration::from_millis(10));
        s.refused(refusal(10, 32));
        let stopped = s.stopped().unwrap();
        assert_eq!(stopped.first_refusal.connection, 8);
        assert_eq!(stopped.last_accepted_at, Duration::from_millis(10));
        // A refusal of an attempt older than an accepted one is left out.
        let mut s = LivenessState::default();
        s.accepted(Duration::from_millis(50));
        for c in 1..=3 {
            s.refused(refusal(c, 40));
        }
        assert!(s.stopped().is_none());
    }

    #[test]
    fn the_earliest_refusal_is_the_first_even_when_reported_late() {
        // Concurrent tasks report in any order.
        let mut s = LivenessState::default();
        s.refused(refusal(7, 30));
        s.refused(refusal(5, 10));
        s.refused(refusal(6, 20));
        assert_eq!(s.stopped().unwrap().first_refusal.connection, 5);
    }
}
