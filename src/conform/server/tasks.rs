//! Running the checks of one phase as concurrent tasks and getting one
//! result back for each, in the order they were started: a result's slot is
//! what ties it to its connection number, so a task that panicked or was
//! cancelled keeps its slot and says so, instead of shifting every later
//! result onto the wrong connection.

use std::future::Future;

use tokio::task::JoinHandle;

/// A task that ended without a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("msglog conform's own check task {how}; this is a bug in msglog conform, please report it")]
pub struct TaskFailure {
    /// `panicked: MESSAGE` or `was cancelled`.
    pub how: String,
}

impl From<tokio::task::JoinError> for TaskFailure {
    fn from(e: tokio::task::JoinError) -> Self {
        let how = if e.is_panic() {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            format!("panicked: {message}")
        } else {
            "was cancelled".into()
        };
        TaskFailure { how }
    }
}

/// Starts every future as a task at once.
pub fn spawn_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<JoinHandle<T>>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    futures.into_iter().map(tokio::spawn).collect()
}

/// Waits for every task and returns exactly one result per task, in the
/// order of `handles`.
pub async fn join_in_order<T>(handles: Vec<JoinHandle<T>>) -> Vec<Result<T, TaskFailure>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.map_err(TaskFailure::from));
    }
    out
}

/// [`spawn_all`], then [`join_in_order`].
pub async fn run_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<Result<T, TaskFailure>>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    join_in_order(spawn_all(futures)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bug this module fixes: with the second of several tasks
    /// panicking, the third's result must still be in the third slot.
    #[tokio::test]
    async fn a_panicking_task_keeps_its_slot() {
        let results = run_all((1..=4).map(|i| async move {
            if i == 2 {
                panic!("task {i} fails on purpose");
            }
            i * 10
        }))
        .await;
        assert_eq!(results.len(), 4);
        assert_eq!(results[0], Ok(10));
        let failure = results[1].as_ref().unwrap_err();
        assert_eq!(failure.how, "panicked: task 2 fails on purpose");
        assert!(failure.to_string().contains("please report it"));
        assert_eq!(results[2], Ok(30));
        assert_eq!(results[3], Ok(40));
    }

    #[tokio::test]
    async fn a_cancelled_task_says_so() {
        let handles = spawn_all([std::future::pending::<u8>()]);
        handles[0].abort();
        let results = join_in_order(handles).await;
        assert_eq!(results[0].as_ref().unwrap_err().how, "was cancelled");
    }
}
