//! Rate limiting for diagnostics that can repeat without bound: a flood of
//! connections past the limit, or `accept` failing while the process is out
//! of file descriptors, would otherwise print a line per event.
//!
//! [`Throttle`] is pure (time comes in as an argument): the first event is
//! reported in full, the ones that follow within [`INTERVAL`] are only
//! counted, and the count is reported as one line when the interval is over
//! (or when the server stops). Then the next interval starts.

use std::time::{Duration, Instant};

/// At most one line per this interval for each repeated diagnostic.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// What was not reported in full since the last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed {
    /// Events counted but not reported.
    pub count: u64,
    /// Time since the last line about this diagnostic.
    pub over: Duration,
}

impl Suppressed {
    /// `over` for a person: whole seconds, or milliseconds below one second.
    pub fn over_text(&self) -> String {
        if self.over >= Duration::from_secs(1) {
            format!("{} s", self.over.as_secs_f64().round())
        } else {
            format!("{} ms", self.over.as_millis())
        }
    }
}

/// Rate limiter of one repeated diagnostic.
#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    /// When the last line (full or summary) was written.
    last_line: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last_line: None,
            suppressed: 0,
        }
    }

    /// An event at `now`: true when it is to be reported in full, false when
    /// it was counted for the next summary. Call [`Throttle::summary`] first,
    /// so that a summary that is due comes out before the next full line.
    pub fn event(&mut self, now: Instant) -> bool {
        match self.last_line {
            Some(last) if now < last + self.interval => {
                self.suppressed += 1;
                false
            }
            _ => {
                self.last_line = Some(now);
                true
            }
        }
    }

    /// When the summary of the counted events is due; `None` when nothing
    /// was counted.
    pub fn due(&self) -> Option<Instant> {
        match self.last_line {
            Some(last) if self.suppressed > 0 => Some(last + self.interval),
            _ => None,
        }
    }

    /// The summary to report, if one is due at `now`; it starts the next
    /// interval.
    pub fn summary(&mut self, now: Instant) -> Option<Suppressed> {
        let due = self.due()?;
        if now < due {
            return None;
        }
        self.take(now)
    }

    /// The summary of whatever was counted, due or not (the server is
    /// stopping: nothing counted may go unreported).
    pub fn flush(&mut self, now: Instant) -> Option<Suppressed> {
        self.due()?;
        self.take(now)
    }

    fn take(&mut self, now: Instant) -> Option<Suppressed> {
        let last = self.last_line.replace(now)?;
        Some(Suppressed {
            count: std::mem::take(&mut self.suppressed),
            over: now.saturating_duration_since(last),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Runs events at the given offsets (in seconds) through a throttle of
    /// 10 s, taking summaries whenever they are due, as the listener does;
    /// returns the lines written: `Full(t)` or `Summary(t, count, over)`.
    #[derive(Debug, PartialEq)]
    enum Line {
        Full(f64),
        Summary(f64, u64, f64),
    }

    fn run(events: &[f64], end: f64) -> Vec<Line> {
        let start = Instant::now();
        let at = |t: f64| start + Duration::from_secs_f64(t);
        let mut throttle = Throttle::new(10 * S);
        let mut lines = Vec::new();
        let summary_until = |throttle: &mut Throttle, t: f64, lines: &mut Vec<Line>| {
            // The listener's timer fires at `due`.
            while let Some(due) = throttle.due().filter(|&d| d <= at(t)) {
                let s = throttle.summary(due).expect("due");
                let when = (due - start).as_secs_f64();
                lines.push(Line::Summary(when, s.count, s.over.as_secs_f64()));
            }
        };
        for &t in events {
            summary_until(&mut throttle, t, &mut lines);
            if throttle.event(at(t)) {
                lines.push(Line::Full(t));
            }
        }
        summary_until(&mut throttle, end, &mut lines);
        lines
    }

    #[test]
    fn a_lone_event_is_one_full_line() {
        assert_eq!(run(&[0.0], 100.0), [Line::Full(0.0)]);
    }

    #[test]
    fn a_burst_is_one_line_and_one_summary_with_its_count() {
        let burst: Vec<f64> = (0..3100).map(|i| f64::from(i) * 0.001).collect();
        assert_eq!(
            run(&burst, 100.0),
            [Line::Full(0.0), Line::Summary(10.0, 3099, 10.0)]
        );
    }

    #[test]
    fn a_steady_flood_is_one_line_per_interval_and_every_event_is_counted() {
        // 20 events per second for 60 s, as `accept failed` did.
        let flood: Vec<f64> = (0..1200).map(|i| f64::from(i) * 0.05).collect();
        let lines = run(&flood, 200.0);
        assert_eq!(lines[0], Line::Full(0.0));
        assert_eq!(lines.len(), 7, "{lines:?}");
        let mut counted = 1;
        for (i, line) in lines[1..].iter().enumerate() {
            let Line::Summary(when, count, over) = *line else {
                panic!("{line:?}")
            };
            assert_eq!(when, 10.0 * (i + 1) as f64);
            assert_eq!(over, 10.0);
            counted += count;
        }
        assert_eq!(counted, 1200);
    }

    #[test]
    fn after_a_quiet_interval_the_next_event_is_reported_in_full_again() {
        assert_eq!(
            run(&[0.0, 1.0, 2.0, 35.0, 36.0], 100.0),
            [
                Line::Full(0.0),
                Line::Summary(10.0, 2, 10.0),
                Line::Full(35.0),
                Line::Summary(45.0, 1, 10.0),
            ]
        );
    }

    #[test]
    fn an_event_right_after_a_summary_waits_for_the_next_one() {
        assert_eq!(
            run(&[0.0, 5.0, 12.0, 19.0], 100.0),
            [
                Line::Full(0.0),
                Line::Summary(10.0, 1, 10.0),
                Line::Summary(20.0, 2, 10.0),
            ]
        );
    }

    #[test]
    fn nothing_is_due_before_the_interval_and_flush_reports_early() {
        let start = Instant::now();
        let mut throttle = Throttle::new(10 * S);
        assert_eq!(throttle.due(), None);
        assert_eq!(throttle.flush(start), None);
        assert!(throttle.event(start));
        assert_eq!(throttle.due(), None, "nothing counted yet");
        assert!(!throttle.event(start + S));
        assert!(!throttle.event(start + 2 * S));
        assert_eq!(throttle.due(), Some(start + 10 * S));
        assert_eq!(throttle.summary(start + 9 * S), None);
        let s = throttle.flush(start + 3 * S).unwrap();
        assert_eq!((s.count, s.over), (2, 3 * S));
        assert_eq!(s.over_text(), "3 s");
        assert_eq!(throttle.flush(start + 4 * S), None);
    }

    #[test]
    fn short_spans_are_written_in_milliseconds() {
        let s = Suppressed {
            count: 1,
            over: Duration::from_millis(250),
        };
        assert_eq!(s.over_text(), "250 ms");
    }
}
