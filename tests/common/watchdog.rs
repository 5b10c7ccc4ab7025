//! A watchdog for property tests of the core.

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// Runs `f` on its own thread and waits at most 20 s. A core that stops
/// making progress then fails the run with its input instead of hanging it;
/// the process exits because the spinning thread cannot be stopped.
pub fn bounded<T: Send + 'static>(input: &[u8], f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(value) => value,
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
        Err(RecvTimeoutError::Timeout) => {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            // Straight to stderr: the test harness's capture of `eprintln!`
            // would be lost with the exit.
            let _ = writeln!(
                std::io::stderr(),
                "no progress after 20 s: the core loops forever on input {hex}"
            );
            std::process::exit(101);
        }
    }
}
