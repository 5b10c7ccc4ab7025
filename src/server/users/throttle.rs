//! Failed logins, per source address (spec: #authentication): after a
//! failure, each further login from that source waits before its password
//! is verified, twice as long after each further failure, up to a maximum;
//! a success or a quiet period forgets the source. Pure: time comes in as an
//! argument.
//!
//! The wait is a reservation, so attempts from one source that arrive
//! together are spaced out as well, not only those that follow each other.
//! The memory is bounded: at most `max_sources` sources are remembered; when
//! the map is full, forgotten ones go first, then the one whose last failure
//! is oldest. Each source's failure lines go through a [`Throttle`], so a
//! flood from one source is one line and a count per interval.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::server::diagnostics::{Suppressed, Throttle};

/// How failed logins are throttled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// The wait after one failure; zero turns throttling off.
    pub delay: Duration,
    /// The longest wait, however many failures.
    pub max_delay: Duration,
    /// A source with no failure for this long is forgotten.
    pub forget_after: Duration,
    /// Most sources remembered at once.
    pub max_sources: usize,
    /// At most one failure line per source per interval.
    pub report_interval: Duration,
}

/// Where logins come from: an IPv4 address, or an IPv6 /64 network (one
/// host commonly has a whole /64 to pick addresses from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d.
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                Source(IpAddr::V6(Ipv6Addr::from(network)))
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Failures from a source that were counted but not reported line by line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub source: Source,
    pub suppressed: Suppressed,
}

/// What a failed login means for its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Failures from the source since it was last forgotten, this one included.
    pub failures: u32,
    /// Whether to write this failure's line; otherwise it was counted.
    pub report_in_full: bool,
    /// Counted failures to report first, and those of sources evicted to
    /// make room.
    pub reports: Vec<Report>,
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    /// The earliest time the next attempt from this source may be verified.
    next_slot: Instant,
    lines: Throttle,
}

/// The failed logins of every source remembered.
#[derive(Debug)]
pub struct FailedLogins {
    settings: ThrottleSettings,
    entries: HashMap<Source, Entry>,
}

impl FailedLogins {
    pub fn new(settings: ThrottleSettings) -> FailedLogins {
        FailedLogins {
            settings,
            entries: HashMap::new(),
        }
    }

    /// Sources remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The wait before `failures` failures' next attempt is verified.
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (failures - 1).min(31);
        self.settings
            .delay
            .saturating_mul(1 << doublings)
            .min(self.settings.max_delay)
    }

    fn forgotten(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_failure) >= self.settings.forget_after
    }

    //= spec/protocol.md#authentication
    //# After a failed login from a source address, the server MUST wait before it verifies the next password from that address, longer after each further failure, until a login from there succeeds or none has failed for a while.
    /// An attempt from `source` starts at `now`: how long it waits before its
    /// password is verified. The wait is reserved, so the next attempt from
    /// the same source waits behind it.
    pub fn admit(&mut self, source: Source, now: Instant) -> Duration {
        let Some(entry) = self.entries.get(&source) else {
            return Duration::ZERO;
        };
        if self.forgotten(entry, now) {
            return Duration::ZERO;
        }
        let delay = self.delay_after(entry.failures);
        let entry = self.entries.get_mut(&source).expect("looked up above");
        let slot = entry.next_slot.max(now);
        entry.next_slot = slot + delay;
        slot - now
    }

    /// A login from `source` failed at `now`.
    pub fn failed(&mut self, source: Source, now: Instant) -> Failure {
        let mut reports = Vec::new();
        if !self.entries.contains_key(&source) {
            reports.extend(self.make_room(now));
            self.entries.insert(
                source,
                Entry {
                    failures: 0,
                    last_failure: now,
                    next_slot: now,
                    lines: Throttle::new(self.settings.report_interval),
                },
            );
        }
        let forgotten = self.forgotten(&self.entries[&source], now);
        let interval = self.settings.report_interval;
        let entry = self.entries.get_mut(&source).expect("inserted above");
        if forgotten {
            // A new episode: counted from one and reported in full again.
            if let Some(suppressed) = entry.lines.flush(now) {
                reports.push(Report { source, suppressed });
            }
            entry.failures = 0;
            entry.lines = Throttle::new(interval);
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        if let Some(suppressed) = entry.lines.summary(now) {
            reports.insert(0, Report { source, suppressed });
        }
        let report_in_full = entry.lines.event(now);
        let failures = entry.failures;
        let delay = self.delay_after(failures);
        let entry = self.entries.get_mut(&source).expect("inserted above");
        entry.next_slot = entry.next_slot.max(now + delay);
        Failure {
            failures,
            report_in_full,
            reports,
        }
    }

    /// A login from `source` succeeded: the source is forgotten, and what
    /// was counted of its failures is reported.
    pub fn succeeded(&mut self, source: Source, now: Instant) -> Option<Report> {
        let mut entry = self.entries.remove(&source)?;
        let suppressed = entry.lines.flush(now)?;
        Some(Report { source, suppressed })
    }

    /// Summaries that are due, and sources quiet long enough to forget
    /// (with what was counted of them); call it every second or so.
    pub fn sweep(&mut self, now: Instant) -> Vec<Report> {
        let mut reports = Vec::new();
        let forget_after = self.settings.forget_after;
        self.entries.retain(|&source, entry| {
            let forget = now.saturating_duration_since(entry.last_failure) >= forget_after;
            let summary = if forget {
                entry.lines.flush(now)
            } else {
                entry.lines.summary(now)
            };
            reports.extend(summary.map(|suppressed| Report { source, suppressed }));
            !forget
        });
        reports
    }

    /// Everything counted and not yet reported (the server stops).
    pub fn flush(&mut self, now: Instant) -> Vec<Report> {
        self.entries
            .iter_mut()
            .filter_map(|(&source, entry)| {
                let suppressed = entry.lines.flush(now)?;
                Some(Report { source, suppressed })
            })
            .collect()
    }

    //= spec/protocol.md#authentication
    //# The memory the server keeps about failed logins MUST stay bounded, however many addresses they come from.
    /// Makes room for one more source: forgets the quiet ones, then, if
    /// still full, the one whose last failure is oldest.
    fn make_room(&mut self, now: Instant) -> Vec<Report> {
        if self.entries.len() < self.settings.max_sources {
            return Vec::new();
        }
        let mut reports = self.sweep(now);
        while self.entries.len() >= self.settings.max_sources.max(1) {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_failure)
                .map(|(&source, _)| source)
            else {
                break;
            };
            let mut entry = self.entries.remove(&oldest).expect("found above");
            if let Some(suppressed) = entry.lines.flush(now) {
                reports.push(Report {
                    source: oldest,
                    suppressed,
                });
            }
        }
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            delay: 100 * MS,
            max_delay: 800 * MS,
            forget_after: Duration::from_secs(600),
            max_sources: 3,
            report_interval: Duration::from_secs(10),
        }
    }

    fn source(last: u8) -> Source {
        Source::of(IpAddr::from([192, 0, 2, last]))
    }

    //= spec/protocol.md#authentication
    //= type=test
    //# After a failed login from a source address, the server MUST wait before it verifies the next password from that address, longer after each further failure, until a login from there succeeds or none has failed for a while.
    #[test]
    fn each_failure_doubles_the_next_wait_up_to_the_maximum_and_a_success_resets() {
        let mut f = FailedLogins::new(settings());
        let mut now = Instant::now();
        let a = source(1);
        assert_eq!(
            f.admit(a, now),
            Duration::ZERO,
            "a new source does not wait"
        );
        let mut waits = Vec::new();
        for _ in 0..6 {
            f.failed(a, now);
            // The next attempt comes at once and waits its turn.
            let wait = f.admit(a, now);
            waits.push(wait.as_millis());
            now += wait;
        }
        assert_eq!(waits, [100, 200, 400, 800, 800, 800]);
        assert!(f.succeeded(a, now).is_some(), "5 failures were counted");
        assert_eq!(f.admit(a, now), Duration::ZERO);
        assert_eq!(f.failed(a, now).failures, 1);
    }

    #[test]
    fn attempts_that_arrive_together_are_spaced_out() {
        let mut f = FailedLogins::new(settings());
        let now = Instant::now();
        let a = source(1);
        f.failed(a, now);
        let waits: Vec<_> = (0..4).map(|_| f.admit(a, now).as_millis()).collect();
        assert_eq!(waits, [100, 200, 300, 400]);
        // Another source is not held up.
        assert_eq!(f.admit(source(2), now), Duration::ZERO);
    }

    #[test]
    fn a_quiet_source_is_forgotten() {
        let mut f = FailedLogins::new(settings());
        let now = Instant::now();
        let a = source(1);
        for _ in 0..3 {
            f.failed(a, now);
        }
        let later = now + Duration::from_secs(600);
        assert_eq!(f.admit(a, later), Duration::ZERO);
        let failure = f.failed(a, later);
        assert_eq!(failure.failures, 1, "counting starts again");
        assert!(failure.report_in_full);
        assert_eq!(failure.reports.len(), 1, "the two counted before");
        assert_eq!(failure.reports[0].suppressed.count, 2);
        // Quiet again: forgotten, with nothing left to report.
        assert!(f.sweep(later + Duration::from_secs(600)).is_empty());
        assert!(f.is_empty());
    }

    //= spec/protocol.md#authentication
    //= type=test
    //# The memory the server keeps about failed logins MUST stay bounded, however many addresses they come from.
    #[test]
    fn at_most_max_sources_are_remembered_and_the_oldest_goes_first() {
        let mut f = FailedLogins::new(settings());
        let start = Instant::now();
        for i in 0..200u8 {
            let now = start + Duration::from_millis(u64::from(i));
            f.failed(source(i), now);
            f.failed(source(i), now);
            assert!(f.len() <= 3);
        }
        // The newest three are the ones remembered.
        let now = start + Duration::from_millis(199);
        assert!(f.admit(source(199), now) > Duration::ZERO);
        assert!(f.admit(source(197), now) > Duration::ZERO);
        assert_eq!(f.admit(source(196), now), Duration::ZERO);
    }

    #[test]
    fn an_evicted_source_s_counted_failures_are_reported() {
        let mut f = FailedLogins::new(ThrottleSettings {
            max_sources: 1,
            ..settings()
        });
        let now = Instant::now();
        f.failed(source(1), now);
        f.failed(source(1), now);
        let failure = f.failed(source(2), now);
        assert_eq!(failure.reports.len(), 1);
        assert_eq!(failure.reports[0].source, source(1));
        assert_eq!(failure.reports[0].suppressed.count, 1);
    }

    #[test]
    fn a_flood_from_one_source_is_one_line_and_a_count_per_interval() {
        let mut f = FailedLogins::new(settings());
        let start = Instant::now();
        let a = source(1);
        let mut full = 0;
        let mut counted = 0;
        for i in 0..100u32 {
            let now = start + Duration::from_millis(u64::from(i) * 50);
            let failure = f.failed(a, now);
            full += u64::from(failure.report_in_full);
            counted += failure
                .reports
                .iter()
                .map(|r| r.suppressed.count)
                .sum::<u64>();
            counted += f.sweep(now).iter().map(|r| r.suppressed.count).sum::<u64>();
        }
        counted += f
            .flush(start + Duration::from_secs(5))
            .iter()
            .map(|r| r.suppressed.count)
            .sum::<u64>();
        assert_eq!(full, 1, "5 s of failures: one line in full");
        assert_eq!(full + counted, 100, "every failure is accounted for");
    }

    #[test]
    fn ipv6_sources_are_their_64_network_and_mapped_ipv4_is_ipv4() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(one), Source::of(two));
        assert_ne!(Source::of(one), Source::of(other));
        assert_eq!(Source::of(one).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Source::of(mapped), source(7));
        assert_eq!(source(7).to_string(), "192.0.2.7");
    }

    #[test]
    fn a_zero_delay_turns_waiting_off() {
        let mut f = FailedLogins::new(ThrottleSettings {
            delay: Duration::ZERO,
            ..settings()
        });
        let now = Instant::now();
        for _ in 0..10 {
            f.failed(source(1), now);
            assert_eq!(f.admit(source(1), now), Duration::ZERO);
        }
    }
}
