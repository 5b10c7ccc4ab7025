//! `msglog serve` as a child process on 127.0.0.1, its diagnostics
//! forwarded line by line (so the pipe is always drained).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_msglog");

pub struct ServeProcess {
    pub child: Child,
    pub port: u16,
    /// Every line the server printed after the first.
    pub lines: mpsc::Receiver<String>,
    /// The first line: where it listens and its log.
    pub first_line: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `msglog serve --bind 127.0.0.1 PORT EXTRA...` in `dir` and waits
/// (at most 10 s) for its first line, which names the port.
pub fn serve_process(dir: &Path, port: u16, extra: &[&str]) -> ServeProcess {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .args(extra);
    start_serving(dir, command)
}

/// Starts `command` (a `msglog serve` on 127.0.0.1) in `dir` and waits (at
/// most 10 s) for its first line, which names the port.
pub fn start_serving(dir: &Path, mut command: Command) -> ServeProcess {
    // At level info unless the test asked for another.
    if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
        command.env("RUST_LOG", "info");
    }
    let mut child = command
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // A server that does not start as expected is stopped before the test
    // fails, so that it does not outlive the test.
    let fail = |mut child: Child, why: String| -> ! {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{why}");
    };
    let first_line = match lines.recv_timeout(Duration::from_secs(10)) {
        Ok(line) => line,
        Err(_) => fail(
            child,
            "no start-up line within 10 s while stdout is a pipe".into(),
        ),
    };
    let port = match first_line
        .strip_prefix("msglog listening on 127.0.0.1:")
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse().ok())
    {
        Some(port) => port,
        None => fail(child, format!("unexpected first line: {first_line}")),
    };
    ServeProcess {
        child,
        port,
        lines,
        first_line,
    }
}

/// Sends `kill -SIG` to the server.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}
