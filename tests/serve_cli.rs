//! `msglog serve` as a process: start-up line, errors and exit codes,
//! restart on the same port, signals.

mod common;

use common::process::{serve_process, signal, start_serving, ServeProcess, BIN};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

fn start(dir: &Path, port: u16, extra: &[&str]) -> ServeProcess {
    //= spec/protocol.md#diagnostics
    //= type=test
    //# The first line the server prints MUST name the addresses it listens on
    //# and the log file.
    //= spec/protocol.md#diagnostics
    //= type=test
    //# The server MUST write each diagnostic line as soon as it happens, also
    //# when its output is not a terminal.
    let server = serve_process(dir, port, extra);
    assert!(
        server.first_line.ends_with(", log messages.log"),
        "{}",
        server.first_line
    );
    server
}

fn session(port: u16, name: &str, message: &str) -> Vec<u8> {
    session_bytes(port, name.as_bytes(), message.as_bytes())
}

fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not exit within 10 s");
}

//= spec/protocol.md#listening
//= type=test
//# The server MUST set SO_REUSEADDR so that a restarted server can bind its
//# port at once.
#[test]
fn restart_on_the_same_port_at_once_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path(), 0, &[]);
    let port = first.port;
    assert_eq!(session(port, "before", "one"), [0, 0, 0, 0]);
    // Leave a connection open so the killed server's socket has TIME_WAIT / established peers.
    let _lingering = TcpStream::connect(("127.0.0.1", port)).unwrap();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let second = start(dir.path(), port, &[]);
    assert_eq!(second.port, port);
    assert_eq!(session(port, "after", "two"), [0, 0, 0, 0]);
    drop(second);
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    assert_eq!(log, "[before]: one\r\n[after]: two\r\n");
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), 0, &[]);
    assert_eq!(session(server.port, "u", "kept"), [0, 0, 0, 0]);
    signal(&server.child, "TERM");
    assert!(wait_for_exit(&mut server.child).success());
    // The forwarding thread may lag behind the exit; it ends at the pipe's end.
    let rest: Vec<String> =
        std::iter::from_fn(|| server.lines.recv_timeout(Duration::from_secs(5)).ok()).collect();
    assert!(rest.iter().any(|l| l.contains("log synced")), "{rest:?}");
}

#[test]
fn sighup_reopens_the_log_after_it_was_moved() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0, &[]);
    assert_eq!(session(server.port, "u", "old file"), [0, 0, 0, 0]);
    std::fs::rename(
        dir.path().join("messages.log"),
        dir.path().join("messages.log.1"),
    )
    .unwrap();
    signal(&server.child, "HUP");
    let reopened = server
        .lines
        .iter()
        .take(50)
        .any(|l| l.contains("log reopened"));
    assert!(reopened);
    assert_eq!(session(server.port, "u", "new file"), [0, 0, 0, 0]);
    let old = std::fs::read_to_string(dir.path().join("messages.log.1")).unwrap();
    let new = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    assert_eq!(old, "[u]: old file\r\n");
    assert_eq!(new, "[u]: new file\r\n");
}

fn run_failing(args: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_port_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_failing(&["serve", "70000"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("70000"), "{err}");
}

#[test]
fn address_in_use_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0, &[]);
    let port = server.port.to_string();
    let (code, err) = run_failing(
        &["serve", "--bind", "127.0.0.1", &port, "--log", "other.log"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn unwritable_log_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_failing(
        &[
            "serve",
            "--bind",
            "127.0.0.1",
            "0",
            "--log",
            "no/such/dir/messages.log",
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot open log file"), "{err}");
}

fn session_bytes(port: u16, name: &[u8], message: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = Vec::new();
    for (tag, payload) in [(1u8, name), (2, b"A"), (3, message)] {
        bytes.push(tag);
        bytes.extend((payload.len() as u16).to_le_bytes());
        bytes.extend(payload);
    }
    bytes.push(4);
    s.write_all(&bytes).unwrap();
    let mut replies = Vec::new();
    s.read_to_end(&mut replies).unwrap();
    replies
}

fn read_log(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .arg("read")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

//= spec/protocol.md#log-format-jsonl
//= type=test
//# Each record MUST be one JSON object on one line, ended by LF, with the
//# members `ts`, `peer`, `name` and `message`.
#[test]
fn jsonl_log_is_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0, &["--log-format", "jsonl"]);
    assert_eq!(
        session_bytes(server.port, b"alice", "héllo\r\n\"x\"".as_bytes()),
        [0; 4]
    );
    assert_eq!(
        session_bytes(server.port, b"bob", &[0xFF, 0x00, 0x41]),
        [0; 4]
    );
    drop(server);
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["name"], "alice");
    assert_eq!(lines[0]["message"], "héllo\r\n\"x\"");
    assert!(lines[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let ts = lines[0]["ts"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() >= 20 && &ts[4..5] == "-" && &ts[10..11] == "T",
        "{ts}"
    );
    assert_eq!(lines[1]["message"], "/wBB");
    assert_eq!(lines[1]["message_encoding"], "base64");
    let (code, out, _) = read_log(dir.path(), &["messages.log"]);
    assert_eq!(code, 0);
    assert_eq!(out, log);
    let (code, out, _) = read_log(dir.path(), &["--check", "messages.log"]);
    assert_eq!((code, out.as_str()), (0, "2 records\n"));
}

#[test]
fn text_log_reads_back_and_corruption_is_pinpointed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0, &[]);
    assert_eq!(session_bytes(server.port, b"u", b"one\r\ntwo"), [0; 4]);
    drop(server);
    let (code, out, _) = read_log(dir.path(), &["messages.log"]);
    assert_eq!(code, 0);
    assert_eq!(out, "{\"name\":\"u\",\"message\":\"one\\r\\ntwo\"}\n");
    let mut log = std::fs::read(dir.path().join("messages.log")).unwrap();
    log.extend_from_slice(b"[u]: raw\tTAB\r\n");
    std::fs::write(dir.path().join("messages.log"), log).unwrap();
    let (code, _, err) = read_log(dir.path(), &["--check", "messages.log"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("record 2") && err.contains("canonical"),
        "{err}"
    );
}

#[test]
fn stats_line_is_logged_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0, &["--stats-interval", "0.2"]);
    assert_eq!(session(server.port, "u", "counted"), [0, 0, 0, 0]);
    let stats = server
        .lines
        .iter()
        .take(100)
        .find(|l| l.contains("stats") && l.contains("messages_total=1"));
    assert!(stats.is_some());
}

//= spec/protocol.md#diagnostics
//= type=test
//# The server MUST report each accepted and each closed connection with the peer's address.
//= spec/protocol.md#diagnostics
//= type=test
//# The server MUST report each rejection with the name of the rule that was broken.
//= spec/protocol.md#diagnostics
//= type=test
//# At level info and above, diagnostics MUST NOT contain message contents or
//# passwords.
#[test]
fn diagnostics_name_peers_and_rules_but_never_contents() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0, &[]);
    let ok = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let peer = ok.local_addr().unwrap().to_string();
    drop(ok);
    assert_eq!(
        session(server.port, "u", "SECRET-MESSAGE-TEXT"),
        [0, 0, 0, 0]
    );
    // Password "Bsecret-password" is rejected (first byte even).
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = vec![1, 1, 0, b'v', 2, 16, 0];
    bytes.extend_from_slice(b"Bsecret-password");
    s.write_all(&bytes).unwrap();
    let mut replies = Vec::new();
    s.read_to_end(&mut replies).unwrap();
    assert_eq!(replies, [0, 0xFF]);
    signal(&server.child, "TERM");
    let lines: Vec<String> =
        std::iter::from_fn(|| server.lines.recv_timeout(Duration::from_secs(5)).ok()).collect();
    let about_peer: Vec<&String> = lines.iter().filter(|l| l.contains(&peer)).collect();
    assert!(
        about_peer.iter().any(|l| l.contains("connection accepted")),
        "{lines:#?}"
    );
    assert!(
        about_peer.iter().any(|l| l.contains("connection closed")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("rule=\"PasswordRejected\"")),
        "{lines:#?}"
    );
    for l in &lines {
        assert!(
            !l.contains("SECRET-MESSAGE-TEXT") && !l.contains("secret-password"),
            "{l}"
        );
    }
}

/// Runs `msglog ARGS` with `env` and no other MSGLOG_* variable; returns
/// its exit code and stderr. For commands that fail before doing anything.
fn usage(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(BIN);
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("MSGLOG_") {
            command.env_remove(key);
        }
    }
    let out = command
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that `args` is refused as a usage error whose message quotes
/// `value` as typed and names the allowed `range`.
fn refused(args: &[&str], env: &[(&str, &str)], value: &str, range: &str) {
    let (code, err) = usage(args, env);
    assert_eq!(code, 2, "{args:?} {env:?}: {err}");
    assert!(err.contains(&format!("'{value}'")), "{args:?}: {err}");
    assert!(err.contains(range), "{args:?}: {err}");
}

#[test]
fn harmful_option_values_are_refused_with_the_allowed_range() {
    // Each of these was accepted: a CPU spinning forever, a limit silently
    // raised to 1, every client rejected, every connection closed at login.
    refused(
        &["serve", "--busy-poll-us", "18446744073709551615"],
        &[],
        "18446744073709551615",
        "from 0 to 1000",
    );
    refused(
        &["serve", "--max-connections", "0"],
        &[],
        "0",
        "from 1 to 1000000",
    );
    refused(
        &["serve", "--handshake-timeout", "0"],
        &[],
        "0",
        "from 0.1 to 3600",
    );
    refused(
        &["serve", "--idle-timeout", "0"],
        &[],
        "0",
        "from 1 to 604800",
    );
    // A huge value is quoted as typed, not mangled through a float.
    refused(
        &["serve", "--idle-timeout", "18446744073709551615"],
        &[],
        "18446744073709551615",
        "from 1 to 604800",
    );
    refused(
        &["serve", "--shutdown-timeout=-1"],
        &[],
        "-1",
        "from 0 to 3600",
    );
    refused(
        &["serve", "--stats-interval", "0.01"],
        &[],
        "0.01",
        "0 (off) or a number of seconds from 0.1 to 86400",
    );
    refused(
        &["serve", "--handshake-timeout", "ten"],
        &[],
        "ten",
        "from 0.1 to 3600",
    );
    // The environment goes through the same parsers.
    refused(
        &["serve"],
        &[("MSGLOG_IDLE_TIMEOUT", "0")],
        "0",
        "from 1 to 604800",
    );
    refused(
        &["serve"],
        &[("MSGLOG_BUSY_POLL_US", "5000")],
        "5000",
        "from 0 to 1000",
    );
    // The other commands share the parsers.
    refused(
        &[
            "send",
            "--name",
            "u",
            "--password",
            "A",
            "--timeout",
            "0",
            "x",
        ],
        &[],
        "0",
        "from 0.1 to 3600",
    );
    refused(
        &["bench", "--duration", "1e300"],
        &[],
        "1e300",
        "from 0.1 to 86400",
    );
    refused(&["bench", "--conns", "0"], &[], "0", "from 1 to 1000000");
    refused(
        &["conform", "server", "127.0.0.1:1", "--max-payload", "70000"],
        &[],
        "70000",
        "from 1 to 65535",
    );
    refused(
        &[
            "conform",
            "server",
            "127.0.0.1:1",
            "--handshake-timeout",
            "0",
        ],
        &[],
        "0",
        "from 0.1 to 3600",
    );
    refused(
        &["conform", "client", "--timeout", "inf", "--", "true"],
        &[],
        "inf",
        "from 0.1 to 3600",
    );
}

#[test]
fn port_is_taken_as_an_option_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command.args(["serve", "--bind", "127.0.0.1", "--port", "0"]);
    let server = start_serving(dir.path(), command);
    assert_eq!(session(server.port, "u", "by --port"), [0, 0, 0, 0]);
    drop(server);
    // Both forms with the same value are fine.
    let server = start(dir.path(), 0, &["--port", "0"]);
    drop(server);
    // The command line beats the environment.
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--bind", "127.0.0.1", "0"])
        .env("MSGLOG_PORT", "1");
    let server = start_serving(dir.path(), command);
    assert_ne!(server.port, 1);
    drop(server);
    let (code, err) = usage(&["serve", "6000", "--port", "6001"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("PORT 6000 and --port 6001 disagree"), "{err}");
}

/// Lines from the server until it exits (after SIGTERM), at most 10 s apart.
fn lines_until_exit(server: &mut ServeProcess) -> Vec<String> {
    signal(&server.child, "TERM");
    assert!(wait_for_exit(&mut server.child).success());
    std::iter::from_fn(|| server.lines.recv_timeout(Duration::from_secs(10)).ok()).collect()
}

/// The number in `line` right after `prefix`.
fn count_after(line: &str, prefix: &str) -> u64 {
    let rest = &line[line.find(prefix).unwrap_or_else(|| panic!("{line}")) + prefix.len()..];
    rest.split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"))
}

//= spec/protocol.md#diagnostics
//= type=test
//# The server MUST rate-limit the diagnostics of refused connections and of
//# failed accepts: it reports the first in full, and counts the ones that
//# follow within an interval and reports their number in one line.
#[test]
fn a_flood_past_the_connection_limit_gives_two_lines_with_the_count() {
    const FLOOD: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), 0, &["--max-connections", "1"]);
    // One logged-in connection holds the only place.
    let mut holder = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    holder
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    holder.write_all(&[1, 1, 0, b'h', 2, 1, 0, b'A']).unwrap();
    let mut replies = [0xAA; 2];
    holder.read_exact(&mut replies).unwrap();
    assert_eq!(replies, [0, 0]);
    let flood_started = std::time::Instant::now();
    for _ in 0..FLOOD {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = [0u8; 1];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [0xFF]);
    }
    let intervals = flood_started.elapsed().as_secs() / 10;
    let lines = lines_until_exit(&mut server);
    let about: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("connection limit reached"))
        .collect();
    // The first in full, then the count of the rest when the server stops:
    // two lines (a host so slow that the flood took over 10 s adds a count,
    // and maybe a full line, per 10 s).
    assert!(about.len() >= 2, "{about:#?}");
    assert!(about.len() as u64 <= 2 * (intervals + 1), "{about:#?}");
    assert!(
        about[0].contains("refusing") && about[0].contains("peer="),
        "{about:#?}"
    );
    let reported: u64 = about
        .iter()
        .map(|l| {
            if l.contains("refusing") {
                1
            } else {
                count_after(l, "refused ")
            }
        })
        .sum();
    assert_eq!(reported, FLOOD, "{about:#?}");
    drop(holder);
}

#[test]
fn accept_failing_for_want_of_descriptors_is_reported_once_with_a_count() {
    const HELD: usize = 80;
    let dir = tempfile::tempdir().unwrap();
    // A server allowed 40 open files runs out of them accepting connections.
    let mut command = Command::new("bash");
    command.args([
        "-c",
        "ulimit -n 40 && exec \"$0\" serve --bind 127.0.0.1 0",
        BIN,
    ]);
    let mut server = start_serving(dir.path(), command);
    let held: Vec<TcpStream> = (0..HELD)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    // Wait until accept has failed, then for some retries (one per 50 ms:
    // 20 lines a second without the rate limit).
    let first = std::iter::from_fn(|| server.lines.recv_timeout(Duration::from_secs(10)).ok())
        .find(|l| l.contains("accept failed"))
        .expect("accept never failed");
    assert!(first.contains("error="), "{first}");
    let waited = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let intervals = waited.elapsed().as_secs() / 10;
    let lines = lines_until_exit(&mut server);
    let about: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("accept failed"))
        .collect();
    // The count, at the stop (plus a count and a full line per 10 s on a
    // host slow enough to take that long).
    assert!(!about.is_empty(), "{first}");
    assert!(about.len() as u64 <= 2 * (intervals + 1), "{about:#?}");
    assert!(
        about
            .iter()
            .any(|l| l.contains("more times") && count_after(l, "accept failed ") >= 1),
        "{about:#?}"
    );
    drop(held);
}
