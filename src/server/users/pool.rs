//! Where passwords are verified: on Tokio's blocking threads, never on the
//! workers that serve connections, and at most `size` at a time. A login
//! waits here for a slot; a connection that is already logged in never does.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Runs CPU-heavy work off the async workers, a bounded number at a time.
#[derive(Debug, Clone)]
pub struct VerifyPool {
    slots: Arc<Semaphore>,
    size: usize,
}

impl VerifyPool {
    /// A pool that runs at most `size` (at least 1) jobs at once.
    pub fn new(size: usize) -> VerifyPool {
        let size = size.max(1);
        VerifyPool {
            slots: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    //= spec/protocol.md#authentication
    //# The server MUST NOT verify passwords on the threads that serve connections, and MUST bound the number of verifications that run at once.
    /// Runs `work` once a slot is free; `None` if it panicked. Dropping the
    /// future while it waits for a slot gives up its place in the queue;
    /// once `work` has started it runs to the end and then frees its slot.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let slot = self.slots.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    //= spec/protocol.md#authentication
    //= type=test
    //# The server MUST NOT verify passwords on the threads that serve connections, and MUST bound the number of verifications that run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_leave_the_workers_free_and_no_more_than_size_run_at_once() {
        let pool = VerifyPool::new(2);
        // Two jobs that can only finish once a task on the workers has run
        // while both of them block: on the two workers they would deadlock.
        let started = Arc::new(AtomicUsize::new(0));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(std::sync::Mutex::new(released));
        let jobs: Vec<_> = (0..2)
            .map(|_| {
                let (pool, started, released) = (pool.clone(), started.clone(), released.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        let released = released.lock().unwrap();
                        released.recv_timeout(Duration::from_secs(10)).is_ok()
                    })
                    .await
                })
            })
            .collect();
        let waker = tokio::spawn(async move {
            while started.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            release.send(()).unwrap();
            release.send(()).unwrap();
        });
        for job in jobs {
            assert_eq!(job.await.unwrap(), Some(true), "a worker was blocked");
        }
        waker.await.unwrap();

        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..12)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for job in jobs {
            job.await.unwrap().expect("the job ran");
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
    }

    #[tokio::test]
    async fn a_panicking_job_is_none_and_frees_its_slot() {
        let pool = VerifyPool::new(1);
        assert_eq!(pool.run(|| panic!("boom")).await, None::<()>);
        assert_eq!(pool.run(|| 7).await, Some(7));
    }
}
