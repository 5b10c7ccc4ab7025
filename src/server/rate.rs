//! Rate limits without loss (spec: #rate-limits): a client over its rate is
//! slowed down, never dropped or rejected. The server reads from it only as
//! many bytes as its tokens can pay for (a MSG frame is at least 4 bytes, so
//! a read of `4 × tokens` bytes holds at most `tokens` messages) and, with
//! no token left, stops reading until tokens return: TCP flow control does
//! the rest, and nothing the client sent is lost.
//!
//! Buckets take time as an argument, so they are tested without a clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The smallest MSG frame: tag, two length bytes and one payload byte.
pub(crate) const MIN_MSG_FRAME: usize = 4;
/// Names whose buckets are kept at most; a full bucket (an idle name) is
/// forgotten first, as it carries no debt.
const MAX_NAMES: usize = 65_536;

/// A rate: messages per second, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// Parses `MSGS_PER_SEC[:BURST]`; the burst defaults to one second's worth.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let number = |s: &str, what: &str| -> Result<f64, String> {
            let n: f64 = s
                .parse()
                .map_err(|_| format!("{what} `{s}` is not a number"))?;
            if !(1.0..=1e9).contains(&n) {
                return Err(format!("{what} `{s}` must be from 1 to 1000000000"));
            }
            Ok(n)
        };
        let (rate, burst) = match text.split_once(':') {
            Some((rate, burst)) => (number(rate, "rate")?, Some(number(burst, "burst")?)),
            None => (number(text, "rate")?, None),
        };
        Ok(Rate {
            per_second: rate,
            burst: burst.unwrap_or(rate.max(1.0)),
        })
    }
}

/// A token bucket that may go into debt: the messages of one read are paid
/// after they arrived, and the debt delays the next read.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            rate,
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.at = self.at.max(now);
    }

    /// Whole tokens available now.
    pub(crate) fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens.max(0.0).floor() as u64
    }

    /// Pays for `messages` that were accepted.
    pub(crate) fn spend(&mut self, messages: u64, now: Instant) {
        self.refill(now);
        self.tokens -= messages as f64;
    }

    /// When at least one token will be available.
    pub(crate) fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        let missing = 1.0 - self.tokens;
        // Counted from the bucket's own time, which a caller's `now` from
        // before its last refill cannot move back.
        let from = self.at.max(now);
        if missing <= 0.0 {
            return from;
        }
        from + Duration::from_secs_f64(missing / self.rate.per_second)
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.rate.burst
    }
}

/// The buckets of every name, shared by all connections.
#[derive(Debug)]
pub(crate) struct NameBuckets {
    rate: Rate,
    buckets: Mutex<HashMap<Bytes, TokenBucket>>,
}

impl NameBuckets {
    pub(crate) fn new(rate: Rate) -> Arc<Self> {
        Arc::new(NameBuckets {
            rate,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn with<R>(&self, name: &Bytes, now: Instant, f: impl FnOnce(&mut TokenBucket) -> R) -> R {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(name) && buckets.len() >= MAX_NAMES {
            buckets.retain(|_, b| !b.is_full(now));
        }
        let bucket = buckets
            .entry(name.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, now));
        f(bucket)
    }
}

/// The limits one connection is held to: its own bucket and, once it has a
/// name, that name's.
#[derive(Debug)]
pub(crate) struct ConnectionRate {
    own: Option<TokenBucket>,
    names: Option<Arc<NameBuckets>>,
}

impl ConnectionRate {
    pub(crate) fn new(
        per_connection: Option<Rate>,
        names: Option<Arc<NameBuckets>>,
        now: Instant,
    ) -> Self {
        ConnectionRate {
            own: per_connection.map(|r| TokenBucket::new(r, now)),
            names,
        }
    }

    /// How many bytes the next read may take: `None` when a token must come
    /// first, with when it will.
    pub(crate) fn read_limit(
        &mut self,
        name: Option<&Bytes>,
        now: Instant,
    ) -> Result<usize, Instant> {
        let mut tokens = u64::MAX;
        let mut ready = now;
        if let Some(own) = &mut self.own {
            tokens = tokens.min(own.available(now));
            ready = ready.max(own.ready_at(now));
        }
        if let (Some(names), Some(name)) = (&self.names, name) {
            names.with(name, now, |b| {
                tokens = tokens.min(b.available(now));
                ready = ready.max(b.ready_at(now));
            });
        }
        if tokens == 0 {
            return Err(ready);
        }
        Ok(usize::try_from(tokens)
            .unwrap_or(usize::MAX)
            .saturating_mul(MIN_MSG_FRAME))
    }

    /// Pays for the messages one read brought.
    pub(crate) fn spend(&mut self, name: Option<&Bytes>, messages: u64, now: Instant) {
        if messages == 0 {
            return;
        }
        if let Some(own) = &mut self.own {
            own.spend(messages, now);
        }
        if let (Some(names), Some(name)) = (&self.names, name) {
            names.with(name, now, |b| b.spend(messages, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: f64) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn rates_parse_with_and_without_a_burst() {
        assert_eq!(Rate::parse("100"), Ok(rate(100.0, 100.0)));
        assert_eq!(Rate::parse("100:500"), Ok(rate(100.0, 500.0)));
        assert_eq!(Rate::parse("2.5"), Ok(rate(2.5, 2.5)));
        for bad in ["", "x", "0", "-1", "100:0", "nan", "inf", "100:x"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10.0, 5.0), t0);
        assert_eq!(b.available(t0), 5);
        b.spend(5, t0);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.ready_at(t0), t0 + Duration::from_millis(100));
        assert_eq!(b.available(t0 + Duration::from_millis(300)), 3);
        assert_eq!(b.available(t0 + Duration::from_secs(60)), 5);
    }

    #[test]
    fn debt_from_one_read_delays_the_next() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10.0, 1.0), t0);
        // A read allowed for one token brought three messages after all.
        b.spend(3, t0);
        assert_eq!(b.available(t0 + Duration::from_millis(250)), 0);
        assert_eq!(b.ready_at(t0), t0 + Duration::from_millis(300));
    }

    #[test]
    fn a_read_takes_only_what_the_tokens_pay_for() {
        let t0 = Instant::now();
        let mut c = ConnectionRate::new(Some(rate(100.0, 3.0)), None, t0);
        assert_eq!(c.read_limit(None, t0), Ok(3 * MIN_MSG_FRAME));
        c.spend(None, 3, t0);
        assert_eq!(c.read_limit(None, t0), Err(t0 + Duration::from_millis(10)));
    }

    #[test]
    fn connections_of_one_name_share_its_bucket() {
        let t0 = Instant::now();
        let names = NameBuckets::new(rate(10.0, 4.0));
        let alice = Bytes::from_static(b"alice");
        let mut a = ConnectionRate::new(None, Some(names.clone()), t0);
        let mut b = ConnectionRate::new(None, Some(names), t0);
        // Before a name is known, nothing limits.
        assert_eq!(a.read_limit(None, t0), Ok(usize::MAX));
        a.spend(Some(&alice), 4, t0);
        assert!(b.read_limit(Some(&alice), t0).is_err());
        assert_eq!(
            b.read_limit(Some(&Bytes::from_static(b"bob")), t0),
            Ok(4 * MIN_MSG_FRAME)
        );
    }

    #[test]
    fn the_name_table_forgets_idle_names_when_full() {
        let t0 = Instant::now();
        let names = NameBuckets::new(rate(1.0, 1.0));
        for i in 0..MAX_NAMES {
            names.with(&Bytes::from(i.to_string()), t0, |_| ());
        }
        let later = t0 + Duration::from_secs(5);
        names.with(&Bytes::from_static(b"new"), later, |_| ());
        assert!(names.buckets.lock().unwrap().len() <= 2);
    }
}
