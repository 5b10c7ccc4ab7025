//! The server-wide budget for memory held in partial frames.
//!
//! Each connection holds at most one partial frame, but thousands of
//! connections that each send all of a 64 KiB frame but its last byte pin
//! that much memory each until their frame timeout. So beyond a small
//! allowance per connection, partial frames draw on one shared budget. While
//! it is spent, a connection that holds more than its allowance stops
//! reading (TCP flow control slows its client; its frame timeout still
//! runs), and the others read only as much as fits their allowance: clients
//! that send whole small frames keep being served, and nothing is refused
//! or lost. Memory for partial frames thus stays under the budget plus the
//! allowance per connection plus one read per worker thread.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::sync::Notify;

/// Bytes of partial frame a connection may hold without drawing on the
/// budget: whole frames up to this size always get through.
pub(crate) const ALLOWANCE: usize = 4 * 1024;

#[derive(Debug)]
pub(crate) struct FrameBudget {
    /// Bytes charged by all connections: what each holds beyond its allowance.
    used: AtomicUsize,
    limit: usize,
    /// Woken when the budget stops being spent.
    freed: Notify,
}

impl FrameBudget {
    pub(crate) fn new(limit: usize) -> Self {
        FrameBudget {
            used: AtomicUsize::new(0),
            limit,
            freed: Notify::new(),
        }
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn spent(&self) -> bool {
        self.used() >= self.limit
    }

    /// Moves a connection's charge from `old` to `new` bytes.
    pub(crate) fn recharge(&self, old: usize, new: usize) {
        if new > old {
            self.used.fetch_add(new - old, Relaxed);
        } else if old > new {
            let before = self.used.fetch_sub(old - new, Relaxed);
            if before >= self.limit && before - (old - new) < self.limit {
                self.freed.notify_waiters();
            }
        }
    }

    /// Resolves once the budget stops being spent. Create it before checking
    /// `spent`, so that a release in between is not missed.
    pub(crate) fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}

/// What a connection charges for `allocated` bytes of partial frame.
pub(crate) fn charge_for(allocated: usize) -> usize {
    allocated.saturating_sub(ALLOWANCE)
}

/// How much a connection may read now, given the memory its partial frame
/// holds: everything while the budget lasts; once it is spent, only what
/// keeps it within its allowance, and nothing (`None`: wait) when it already
/// holds its allowance.
pub(crate) fn read_limit(spent: bool, allocated: usize, full: usize) -> Option<usize> {
    if !spent {
        return Some(full);
    }
    let room = ALLOWANCE.saturating_sub(allocated);
    (room > 0).then_some(room.min(full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_full_until_the_budget_is_spent_then_small_then_none() {
        assert_eq!(read_limit(false, 60_000, 65_536), Some(65_536));
        assert_eq!(read_limit(true, 0, 65_536), Some(ALLOWANCE));
        assert_eq!(read_limit(true, 1_000, 65_536), Some(ALLOWANCE - 1_000));
        assert_eq!(read_limit(true, ALLOWANCE, 65_536), None);
        assert_eq!(read_limit(true, 60_000, 65_536), None);
    }

    #[test]
    fn charges_only_beyond_the_allowance() {
        assert_eq!(charge_for(100), 0);
        assert_eq!(charge_for(ALLOWANCE + 10), 10);
    }

    #[tokio::test]
    async fn waiters_are_woken_when_the_budget_frees() {
        let budget = FrameBudget::new(100);
        budget.recharge(0, 150);
        assert!(budget.spent());
        let freed = budget.freed();
        tokio::pin!(freed);
        // Still spent after a partial release: no wake-up.
        budget.recharge(150, 120);
        assert!(futures_poll_once(freed.as_mut()).is_pending());
        budget.recharge(120, 20);
        assert!(!budget.spent());
        freed.await;
        assert_eq!(budget.used(), 20);
    }

    fn futures_poll_once<F: std::future::Future>(
        f: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        let waker = std::task::Waker::noop();
        f.poll(&mut std::task::Context::from_waker(waker))
    }
}
