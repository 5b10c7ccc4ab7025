//! `msglog read` as a process: files and standard input, bad records shown
//! with their number and offset, --lenient on a log of the original server,
//! --follow on a growing and rotated log, and the exit codes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::process::{signal, BIN};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `msglog read ARGS` in `dir` with `stdin` as its input.
fn read(dir: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .arg("read")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // Written from a thread: a large input must not block on a full pipe
    // while the output waits to be read.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let dir = tempfile::tempdir().unwrap();
    let r = read(dir.path(), &["-"], "[u]: one\r\n[v]: tw␍␊o\r\n".as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "{\"name\":\"u\",\"message\":\"one\"}\n{\"name\":\"v\",\"message\":\"tw\\r\\no\"}\n"
    );
    let r = read(dir.path(), &["--check", "-"], b"");
    assert_eq!((r.code, r.stdout.as_str()), (0, "0 records\n"));
}

#[test]
fn json_lines_keep_ts_and_peer() {
    let dir = tempfile::tempdir().unwrap();
    let log = "{\"ts\":\"2026-11-27T12:00:00.5Z\",\"peer\":\"[::1]:4000\",\"name\":\"u\",\"message\":\"m\"}\n";
    std::fs::write(dir.path().join("log.jsonl"), log).unwrap();
    let r = read(dir.path(), &["log.jsonl"], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, log);
}

//= spec/protocol.md#record-format
//= type=test
//# A decoder MUST reject a record whose name or message is empty, or that
//# is longer than 655,356 bytes including its CR LF.
#[test]
fn check_refuses_what_no_server_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut ten_mb = b"[a]: ".to_vec();
    ten_mb.resize(10 << 20, b'x');
    ten_mb.extend_from_slice(b"\r\n");
    for (log, why) in [
        (b"[]: x\r\n".to_vec(), "empty name"),
        (b"[a]: \r\n".to_vec(), "empty message"),
        (ten_mb, "longer than any record a server writes"),
    ] {
        let r = read(dir.path(), &["--check", "-"], &log);
        assert_eq!(r.code, 1, "{why}: {}", r.stderr);
        assert!(r.stderr.contains("record 1 at byte 0"), "{}", r.stderr);
        assert!(r.stderr.contains(why), "{}", r.stderr);
        assert!(r.stderr.len() < 1000, "the report is short: {}", r.stderr);
    }
}

//= spec/protocol.md#log-format-jsonl
//= type=test
//# A decoder MUST reject a JSON record whose name or message is empty, or
//# that is longer than 786,676 bytes including its LF.
#[test]
fn check_refuses_json_records_no_server_writes() {
    let dir = tempfile::tempdir().unwrap();
    let line = |name: &str, message: &str| {
        format!("{{\"ts\":\"t\",\"peer\":\"p\",\"name\":\"{name}\",\"message\":\"{message}\"}}\n")
    };
    for (log, why) in [
        (line("", "x"), "empty name"),
        (line("a", ""), "empty message"),
        (line("a", &"x".repeat(1 << 20)), "longer than any record"),
    ] {
        let r = read(dir.path(), &["--check", "-"], log.as_bytes());
        assert_eq!(r.code, 1, "{why}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{}", r.stderr);
    }
}

#[test]
fn a_bad_record_is_shown_escaped_with_its_number_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = b"[u]: good\r\n[u]: raw\t\x1b[31mred \xff\r\n[u]: after\r\n";
    let r = read(dir.path(), &["-"], log);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "{\"name\":\"u\",\"message\":\"good\"}\n");
    assert!(
        r.stderr.contains("standard input: record 2 at byte 11:"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(r#""[u]: raw\t\u{001b}[31mred \xff\r\n""#),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

/// What the original server could write: a `]` in a name, raw bytes that
/// are not UTF-8, a raw control byte, and a last line without CR LF.
const ORIGINAL_LOG: &[u8] =
    b"[alice]: hello\r\n[a]b]: x]: y\r\n[bob]: caf\xe9\r\n[carol]: ok\r\n[dave]: beep\x07\r\n[eve]: last";

#[test]
fn lenient_reading_skips_and_counts_what_the_original_server_wrote() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("original.log"), ORIGINAL_LOG).unwrap();
    let r = read(dir.path(), &["--lenient", "original.log"], b"");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "{\"name\":\"alice\",\"message\":\"hello\"}\n{\"name\":\"carol\",\"message\":\"ok\"}\n"
    );
    for (number, offset) in [(2, 16), (3, 30), (5, 56), (6, 71)] {
        assert!(
            r.stderr
                .contains(&format!("record {number} at byte {offset}:")),
            "record {number}: {}",
            r.stderr
        );
    }
    assert!(r.stderr.contains(r#""[a]b]: x]: y\r\n""#), "{}", r.stderr);
    assert!(r.stderr.contains(r#"caf\xe9"#), "{}", r.stderr);
    assert!(
        r.stderr
            .ends_with("original.log: 2 valid records read, 4 bad records skipped\n"),
        "{}",
        r.stderr
    );
    // Without --lenient, reading stops at the first.
    let r = read(dir.path(), &["original.log"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "{\"name\":\"alice\",\"message\":\"hello\"}\n");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    // --check --lenient counts the good ones.
    let r = read(dir.path(), &["--check", "--lenient", "original.log"], b"");
    assert_eq!((r.code, r.stdout.as_str()), (1, "2 records\n"));
}

#[test]
fn exit_codes_for_what_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let r = read(dir.path(), &["no-such.log"], b"");
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("cannot read no-such.log"), "{}", r.stderr);
    let r = read(dir.path(), &["-"], b"hello\n");
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("pass --format"), "{}", r.stderr);
    let r = read(dir.path(), &["--follow", "-"], b"");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--follow needs a file"), "{}", r.stderr);
}

/// `msglog read --follow --lenient LOG` in `dir`, its output line by line.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(dir: &Path, log: &str) -> Follower {
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .args(["read", "--follow", "--lenient", log])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
        Follower { child, lines }
    }

    fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("no record within 10 s")
    }

    /// Ctrl-C; the exit code and stderr.
    fn interrupt(mut self) -> (i32, String) {
        signal(&self.child, "INT");
        let mut status = None;
        for _ in 0..200 {
            status = self.child.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = status.expect("read --follow did not end within 10 s of Ctrl-C");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status.code().unwrap_or(-1), stderr)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

fn json(name: &str, message: &str) -> String {
    format!("{{\"name\":\"{name}\",\"message\":\"{message}\"}}")
}

#[test]
fn follow_prints_records_as_they_are_appended_and_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("messages.log");
    append(&log, b"[u]: first\r\n");
    let follower = Follower::start(dir.path(), "messages.log");
    assert_eq!(follower.next(), json("u", "first"));
    // A torn record is waited for, not reported.
    append(&log, b"[u]: sec");
    std::thread::sleep(Duration::from_millis(500));
    append(&log, b"ond\r\n[u]: third\r\n");
    assert_eq!(follower.next(), json("u", "second"));
    assert_eq!(follower.next(), json("u", "third"));
    // Rotated: moved away, a last record still written to the old file,
    // then the new file.
    std::fs::rename(&log, dir.path().join("messages.log.1")).unwrap();
    append(&dir.path().join("messages.log.1"), b"[u]: old file\r\n");
    append(&log, b"[u]: new file\r\n");
    assert_eq!(follower.next(), json("u", "old file"));
    assert_eq!(follower.next(), json("u", "new file"));
    append(&log, b"[u]: more\r\n[u]: torn at the end");
    assert_eq!(follower.next(), json("u", "more"));
    let (code, stderr) = follower.interrupt();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        "msglog read: messages.log: 6 valid records read, 0 bad records skipped\n"
    );
}
