//! `msglog conform` end to end, through the binary: msglog's own clients and
//! server pass; each deliberately broken fixture (tests/fixtures, Python
//! stdlib) fails exactly the rule it breaks.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

mod common;

fn msglog() -> Command {
    Command::new(env!("CARGO_BIN_EXE_msglog"))
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Runs `msglog conform ARGS --json` and returns its exit status and report.
fn conform(args: &[&str]) -> (i32, Value) {
    let out = msglog()
        .arg("conform")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run msglog conform");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// `msglog conform client --json [OPTIONS] -- python3 FIXTURE [ARGS]`.
fn conform_client(options: &[&str], script: &str, script_args: &[&str]) -> (i32, Value) {
    let script = fixture(script);
    let mut args = vec!["client", "--json", "--timeout", "20"];
    args.extend_from_slice(options);
    args.extend(["--", "python3", script.as_str()]);
    args.extend_from_slice(script_args);
    conform(&args)
}

fn with_status<'a>(report: &'a Value, status: &str) -> Vec<&'a str> {
    report["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["status"] == status)
        .map(|r| r["rule"].as_str().expect("rule name"))
        .collect()
}

fn failed(report: &Value) -> Vec<&str> {
    with_status(report, "fail")
}

fn rule<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["rule"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in the report"))
}

/// The first failure of `name`: it must say where and show the bytes.
fn first_failure<'a>(report: &'a Value, name: &str) -> &'a Value {
    let r = rule(report, name);
    assert_eq!(r["status"], "fail", "{name}: {r}");
    let f = &r["failures"][0];
    assert!(f["bytes"].as_str().is_some_and(|b| !b.is_empty()), "{f}");
    assert!(r["spec"].as_str().unwrap().starts_with("spec/protocol.md#"));
    f
}

// ---------------------------------------------------------------- clients

/// msglog's own Rust client, as `msglog send` (it pipelines its messages).
#[test]
fn rust_client_passes() {
    let bin = env!("CARGO_BIN_EXE_msglog");
    let (status, report) = conform(&[
        "client",
        "--json",
        "--timeout",
        "20",
        "--",
        bin,
        "send",
        "--name",
        "conform-rust",
        "--password",
        "A",
        "Hello!",
        "héllo wörld ✓ 日本 😀",
        "third",
    ]);
    assert_eq!(status, 0, "{report:#}");
    assert!(failed(&report).is_empty(), "{report:#}");
    for exercised in [
        "OutOfOrder",
        "UnknownTag",
        "LengthNotBytes",
        "PayloadTooLong",
        "CloseNotOneByte",
    ] {
        assert_eq!(rule(&report, exercised)["status"], "pass", "{report:#}");
    }
    assert_eq!(report["connections"][0]["replies"], "00 00 00 00 00 00");
}

/// With a message rejected in the middle of its pipeline, the Rust client
/// sends nothing more on that connection and exits with its "message
/// rejected" status.
#[test]
fn rust_client_stops_after_a_rejected_message() {
    let bin = env!("CARGO_BIN_EXE_msglog");
    let (status, report) = conform(&[
        "client",
        "--json",
        "--timeout",
        "20",
        "--scenario",
        "reject-message=2",
        "--",
        bin,
        "send",
        "--name",
        "conform-rust",
        "--password",
        "A",
        "one",
        "two",
        "three",
        "four",
    ]);
    assert_eq!(status, 0, "{report:#}");
    assert_eq!(
        rule(&report, "SentAfterReject")["status"],
        "pass",
        "{report:#}"
    );
    assert!(
        report["notes"][0]
            .as_str()
            .unwrap()
            .contains("exited with status 6"),
        "{report:#}"
    );
    // It lost "two" and the messages pipelined behind it, and said so.
    assert_eq!(rule(&report, "MessageLost")["status"], "pass", "{report:#}");
    let observations = report["scenarios"][0]["observations"].to_string();
    assert!(
        observations.contains(r#"3 messages were never logged (\"two\", \"three\", \"four\")"#)
            && observations.contains("its last line on stderr was")
            && observations
                .contains("the client reported the failure to its caller: meets MessageLost")
            && observations.contains("its arguments, which hold the messages it sent"),
        "{observations}"
    );
}

/// msglog's own Python client (clients/python/client.py), driven by a tiny
/// script that sends text, non-ASCII text and binary, and reconnects.
//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST send NAME first, then PASS, then its MSG frames, and it can send CLOSE at any point.
//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST set the tag of each frame to the one the current state expects.
//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST set the length field to the number of payload bytes that follow it, counted in encoded bytes, not characters.
//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST send CLOSE as the single byte 0x04.
#[test]
fn python_client_passes() {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let dir = clients.display().to_string();
    let (status, report) = conform_client(&[], "python_client_driver.py", &[&dir]);
    assert_eq!(status, 0, "{report:#}");
    assert!(failed(&report).is_empty(), "{report:#}");
    for exercised in [
        "OutOfOrder",
        "UnknownTag",
        "LengthNotBytes",
        "PayloadTooLong",
        "CloseNotOneByte",
    ] {
        assert_eq!(rule(&report, exercised)["status"], "pass", "{report:#}");
    }
    let notes = report["notes"].to_string();
    assert!(notes.contains("it made 2 connections"), "{notes}");
}

/// After a rejected message the Python client stops sending on that
/// connection and raises, so the driver exits non-zero.
//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST NOT send anything on a connection after it has received 0xFF.
#[test]
fn python_client_stops_after_a_rejected_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients/python")
        .display()
        .to_string();
    let (status, report) = conform_client(
        &["--scenario", "reject-message=2"],
        "python_client_driver.py",
        &[&dir],
    );
    assert_eq!(status, 0, "{report:#}");
    assert_eq!(rule(&report, "SentAfterReject")["status"], "pass");
    let scenario = report["scenarios"][0].to_string();
    assert!(scenario.contains("reject-message=2"), "{scenario}");
    assert!(
        scenario.contains("sent nothing more on that connection: meets SentAfterReject"),
        "{scenario}"
    );
    assert!(
        report["notes"][0]
            .as_str()
            .unwrap()
            .contains("exited with status 1"),
        "{report:#}"
    );
    assert_eq!(rule(&report, "MessageLost")["status"], "pass", "{report:#}");
    assert!(
        scenario.contains("the client reported the failure to its caller"),
        "{scenario}"
    );
}

/// A hand-written well-behaved client passes, also with delayed replies,
/// and `--log` writes what it sent in the server's record format.
#[test]
fn well_behaved_client_passes_and_its_log_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sent.log");
    let log_arg = log.display().to_string();
    let (status, report) = conform_client(
        &["--log", &log_arg, "--scenario", "delay-acks=100"],
        "client_good.py",
        &[],
    );
    assert_eq!(status, 0, "{report:#}");
    assert!(failed(&report).is_empty(), "{report:#}");
    let scenario = report["scenarios"][0]["observations"].to_string();
    assert!(
        scenario.contains("connection 1: the client waited for all 6 replies"),
        "{scenario}"
    );
    let transcript = &report["connections"][0];
    assert!(
        transcript["sent"]
            .as_str()
            .unwrap()
            .starts_with("01 0c 00 63 6f 6e 66 6f 72 6d"),
        "{transcript}"
    );
    assert_eq!(transcript["replies"], "00 00 00 00 00 00");
    let written = std::fs::read(&log).unwrap();
    let records: Vec<_> = msglog::proto::records(&written)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[1].message, "héllo wörld ✓ 日本 😀".as_bytes());
    assert_eq!(records[2].message, (0..=255u8).collect::<Vec<_>>());
    assert_eq!(records[3].name, "Jürgen".as_bytes());
}

#[test]
fn lengths_in_characters_fail_length_not_bytes_only() {
    let (status, report) = conform_client(&[], "client_chars_length.py", &[]);
    assert_eq!(status, 1);
    assert_eq!(failed(&report), ["LengthNotBytes"], "{report:#}");
    let f = first_failure(&report, "LengthNotBytes");
    assert_eq!(f["connection"], 1);
    assert_eq!(f["frame"], 3);
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("counts characters, not encoded bytes"),
        "{f}"
    );
    // 11 characters announced, 13 bytes sent.
    assert!(
        f["bytes"]
            .as_str()
            .unwrap()
            .starts_with("03 0b 00 68 c3 a9"),
        "{f}"
    );
}

#[test]
fn a_wrong_tag_fails_unknown_tag_only() {
    let (status, report) = conform_client(&[], "client_wrong_tag.py", &[]);
    assert_eq!(status, 1);
    assert_eq!(failed(&report), ["UnknownTag"], "{report:#}");
    let f = first_failure(&report, "UnknownTag");
    assert_eq!(f["frame"], 1);
    assert!(f["bytes"].as_str().unwrap().starts_with("00 11 00"), "{f}");
}

#[test]
fn msg_before_pass_fails_out_of_order_only() {
    let (status, report) = conform_client(&[], "client_msg_before_pass.py", &[]);
    assert_eq!(status, 1);
    assert_eq!(failed(&report), ["OutOfOrder"], "{report:#}");
    let f = first_failure(&report, "OutOfOrder");
    assert_eq!(f["frame"], 2);
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("MSG sent in state N"),
        "{f}"
    );
}

#[test]
fn sending_after_0xff_fails_sent_after_reject_only() {
    // The fixture never looks at replies; the scenario makes one a 0xFF.
    let (status, report) = conform_client(
        &["--scenario", "reject-password"],
        "client_ignores_reject.py",
        &[],
    );
    assert_eq!(status, 1);
    assert_eq!(failed(&report), ["SentAfterReject"], "{report:#}");
    let f = first_failure(&report, "SentAfterReject");
    assert_eq!(f["frame"], 3);
    assert!(
        f["bytes"]
            .as_str()
            .unwrap()
            .starts_with("03 03 00 6f 6e 65"),
        "{f}"
    );
    let scenario = report["scenarios"][0]["observations"][0].as_str().unwrap();
    assert!(scenario.contains("breaks SentAfterReject"), "{scenario}");
    // Without the scenario nothing is rejected, and nothing fails; the
    // rules left unexercised say why.
    let (status, report) = conform_client(&[], "client_ignores_reject.py", &[]);
    assert_eq!(status, 0, "{report:#}");
    let sent_after = rule(&report, "SentAfterReject");
    assert_eq!(sent_after["status"], "not-exercised");
    assert!(
        sent_after["note"]
            .as_str()
            .unwrap()
            .contains("never answered 0xFF"),
        "{sent_after}"
    );
    assert!(
        rule(&report, "MessageLost")["note"]
            .as_str()
            .unwrap()
            .contains("no MSG was refused"),
        "{report:#}"
    );
}

#[test]
fn close_with_a_length_fails_close_not_one_byte_only() {
    let (status, report) = conform_client(&[], "client_close_with_length.py", &[]);
    assert_eq!(status, 1);
    assert_eq!(failed(&report), ["CloseNotOneByte"], "{report:#}");
    let f = first_failure(&report, "CloseNotOneByte");
    assert_eq!(f["frame"], 4);
    assert_eq!(f["bytes"], "04 03 00 62 79 65");
}

/// Frames a pipelining client sent before the 0xFF reached it were in
/// flight: they are not traffic after the 0xFF.
#[test]
fn pipelined_frames_in_flight_are_not_sent_after_reject() {
    let (status, report) = conform_client(
        &["--scenario", "reject-message=2"],
        "client_pipelining.py",
        &[],
    );
    assert_eq!(status, 0, "{report:#}");
    assert_eq!(
        rule(&report, "SentAfterReject")["status"],
        "pass",
        "{report:#}"
    );
    let connection = report["notes"][1].as_str().unwrap();
    assert!(
        connection.contains("replies [00 00 00 ff]")
            && connection.contains("the server rejected frame 4 (scenario reject-message)"),
        "{connection}"
    );
    // The four messages from the rejected one on were lost, and it said so.
    assert_eq!(rule(&report, "MessageLost")["status"], "pass", "{report:#}");
}

/// A client that drops the rejected message and stops, exiting 0 as if
/// all were logged, loses it silently: MessageLost fails, and says which
/// messages were lost.
//= spec/protocol.md#client-requirements
//= type=test
//# A client whose MSG got 0xFF, or no reply before its connection ended, MUST send that message again or report to its caller that it was not logged.
#[test]
fn a_client_that_drops_a_rejected_message_fails_message_lost_only() {
    let (status, report) = conform_client(
        &["--scenario", "reject-message=2"],
        "client_drops_rejected.py",
        &["one", "two", "three"],
    );
    assert_eq!(status, 1, "{report:#}");
    assert_eq!(failed(&report), ["MessageLost"], "{report:#}");
    let f = first_failure(&report, "MessageLost");
    assert_eq!(
        (f["connection"].as_u64(), f["frame"].as_u64()),
        (Some(1), Some(4))
    );
    let detail = f["detail"].as_str().unwrap();
    assert!(
        detail.contains(r#"1 message was never logged ("two")"#)
            && detail.contains("exited with status 0")
            && detail.contains(r#"its arguments "three" were never sent either"#),
        "{detail}"
    );
    let observations = report["scenarios"][0]["observations"].to_string();
    assert!(
        observations.contains("carried on as if nothing happened: breaks MessageLost"),
        "{observations}"
    );
}

/// The same scenario with a client that logs in again and resends the
/// rejected message: nothing is lost, everything passes.
#[test]
fn a_client_that_retries_a_rejected_message_passes() {
    let (status, report) = conform_client(
        &["--scenario", "reject-message=2"],
        "client_retries_rejected.py",
        &["one", "two", "three"],
    );
    assert_eq!(status, 0, "{report:#}");
    assert!(failed(&report).is_empty(), "{report:#}");
    assert_eq!(rule(&report, "MessageLost")["status"], "pass");
    let observations = report["scenarios"][0]["observations"].to_string();
    assert!(
        observations.contains("was sent again on connection 2 and logged")
            && observations.contains("no message was lost: meets MessageLost"),
        "{observations}"
    );
}

#[test]
fn a_message_lost_to_a_dropped_connection_is_reported() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients/python")
        .display()
        .to_string();
    let (status, report) = conform_client(
        &["--scenario", "close-mid-session"],
        "python_client_driver.py",
        &[&dir],
    );
    // No client rule is broken; the client raised, so the driver failed.
    assert_eq!(status, 0, "{report:#}");
    let observations = report["scenarios"][0]["observations"].to_string();
    assert!(
        observations.contains("closed the connection right after MSG (frame 3")
            && observations.contains("exited with status 1"),
        "{observations}"
    );
    assert_eq!(rule(&report, "MessageLost")["status"], "pass", "{report:#}");
}

#[test]
fn a_command_that_never_connects_is_an_error() {
    let (status, report) = conform(&["client", "--json", "--", "python3", "-c", "pass"]);
    assert_eq!(status, 2);
    assert_eq!(with_status(&report, "not-exercised").len(), 7);
    for r in report["rules"].as_array().unwrap() {
        assert_eq!(r["note"], "the command made no connection", "{r}");
    }
    assert!(report["notes"]
        .to_string()
        .contains("no connection was made"));
}

// ---------------------------------------------------------------- servers

/// A server process, killed when dropped.
struct ServerProcess {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `command` with `--log` added; its first stdout line names
    /// `127.0.0.1:PORT`.
    fn start(mut command: Command) -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("messages.log");
        let mut child = command
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port = first
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no 127.0.0.1:PORT in {first:?}"));
        // Keep draining, so that diagnostics can never block the server.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink);
        });
        ServerProcess {
            child,
            port,
            _dir: dir,
            log,
        }
    }

    fn python(script: &str) -> ServerProcess {
        let mut c = Command::new("python3");
        c.arg(fixture(script));
        Self::start(c)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//= spec/protocol.md#frame
//= type=test
//# The server MUST accept a frame split across any number of reads, down to one byte per read.
//= spec/protocol.md#limits
//= type=test
//# A server MUST serve at least 1000 simultaneous connections unless configured with a lower connection limit.
//= spec/protocol.md#acknowledgement
//= type=test
//# The server MUST process pipelined frames, sent without waiting for replies, in the order they arrived.
#[test]
fn msglog_serve_passes_conform_server() {
    let mut serve = msglog();
    serve
        .args(["serve", "0", "--bind", "127.0.0.1"])
        .args(["--handshake-timeout", "1", "--stats-interval", "0"])
        .env("RUST_LOG", "warn");
    let server = ServerProcess::start(serve);
    let log = server.log.display().to_string();
    let (status, report) = conform(&[
        "server",
        &server.addr(),
        "--json",
        "--log",
        &log,
        "--handshake-timeout",
        "1",
    ]);
    assert_eq!(status, 0, "{report:#}");
    assert!(failed(&report).is_empty(), "{report:#}");
    // Everything that can be probed over the network was.
    assert_eq!(
        with_status(&report, "not-exercised"),
        ["PayloadOverLimit", "AppendFailed", "ShuttingDown"],
        "{report:#}"
    );
    for name in with_status(&report, "not-exercised") {
        let note = rule(&report, name)["note"].as_str().unwrap_or_default();
        assert!(
            !note.is_empty(),
            "{name} does not say why it was not exercised"
        );
    }
    assert!(report.get("root_causes").is_none(), "{report:#}");
    assert_eq!(rule(&report, "limits")["failed"], 0);
    assert!(rule(&report, "limits")["checks"].as_u64().unwrap() >= 1000);
    assert!(rule(&report, "msg")["checks"].as_u64().unwrap() >= 2000);
    let summary = &report["summary"];
    assert_eq!(summary["fail"], 0);
}

//= spec/protocol.md#tls
//= type=test
//# Inside TLS, client and server MUST speak the protocol of this document unchanged.
#[test]
fn msglog_serve_with_tls_passes_conform_server_with_tls() {
    use common::certs::{Ca, Validity};
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new(certs.path(), "ca");
    let cert = ca.server("server", Validity::Now);
    let mut serve = msglog();
    serve
        .args(["serve", "0", "--bind", "127.0.0.1"])
        .args(["--handshake-timeout", "1", "--stats-interval", "0"])
        .arg("--tls-cert")
        .arg(&cert.cert)
        .arg("--tls-key")
        .arg(&cert.key)
        .env("RUST_LOG", "warn");
    let server = ServerProcess::start(serve);
    let log = server.log.display().to_string();
    let ca_file = ca.pem.cert.display().to_string();
    let (status, report) = conform(&[
        "server",
        &server.addr(),
        "--json",
        "--log",
        &log,
        "--handshake-timeout",
        "1",
        "--clients",
        "200",
        "--tls",
        "--ca",
        &ca_file,
    ]);
    assert_eq!(status, 0, "{report:#}");
    assert!(failed(&report).is_empty(), "{report:#}");
    assert_eq!(
        with_status(&report, "not-exercised"),
        ["PayloadOverLimit", "AppendFailed", "ShuttingDown"],
        "{report:#}"
    );
    assert!(rule(&report, "msg")["checks"].as_u64().unwrap() >= 200);
    // Without --tls the check cannot even start: the server wants TLS.
    let (status, _) = {
        let out = msglog()
            .args(["conform", "server", &server.addr(), "--clients", "0"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), out)
    };
    assert_ne!(status, Some(0));
}

/// The same with the JSON-lines log: its records are checked too.
#[test]
fn msglog_serve_with_a_json_lines_log_passes() {
    let mut serve = msglog();
    serve
        .args(["serve", "0", "--bind", "127.0.0.1", "--log-format", "jsonl"])
        .args(["--stats-interval", "0"])
        .env("RUST_LOG", "warn");
    let server = ServerProcess::start(serve);
    let log = server.log.display().to_string();
    let (status, report) = conform(&[
        "server",
        &server.addr(),
        "--json",
        "--log",
        &log,
        "--clients",
        "20",
    ]);
    assert_eq!(status, 0, "{report:#}");
    let jsonl = rule(&report, "log-format-jsonl");
    assert_eq!(jsonl["status"], "pass", "{report:#}");
    assert!(jsonl["checks"].as_u64().unwrap() > 1000, "{jsonl}");
}

/// A server with a lower payload limit (in process) passes the limit
/// vectors and the over-limit probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_limit_is_probed_when_given() {
    use msglog::server::{Config, Limits};
    use msglog::testkit::TestServer;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(Config {
        bind: vec![([127, 0, 0, 1], 0).into()],
        log_path: dir.path().join("messages.log"),
        limits: Limits {
            max_payload: 16,
            ..Limits::default()
        },
        ..Config::default()
    })
    .await
    .unwrap();
    let addr = server.addr.to_string();
    let (status, report) = tokio::task::spawn_blocking(move || {
        conform(&[
            "server",
            &addr,
            "--json",
            "--max-payload",
            "16",
            "--clients",
            "10",
        ])
    })
    .await
    .unwrap();
    assert_eq!(status, 0, "{report:#}");
    let over = rule(&report, "PayloadOverLimit");
    assert_eq!(over["status"], "pass", "{report:#}");
    // The spec's three over-limit vectors and the probe, each also split.
    assert!(over["checks"].as_u64().unwrap() >= 4, "{over}");
    server.stop().await.unwrap();
}

/// A third-party server written from the spec (Python) passes too,
/// records included: the checks are about the spec, not about msglog.
#[test]
fn a_correct_python_server_passes() {
    let server = ServerProcess::python("server_base.py");
    let log = server.log.display().to_string();
    let (status, report) = conform(&[
        "server",
        &server.addr(),
        "--json",
        "--log",
        &log,
        "--clients",
        "200",
    ]);
    assert_eq!(status, 0, "{report:#}");
    assert!(failed(&report).is_empty(), "{report:#}");
    assert!(rule(&report, "record-format")["checks"].as_u64().unwrap() > 100);
}

#[test]
fn a_server_that_drops_split_frames_fails_frame_only() {
    let server = ServerProcess::python("server_drops_split_frames.py");
    let (status, report) = conform(&[
        "server",
        &server.addr(),
        "--json",
        "--timeout",
        "2",
        "--clients",
        "200",
    ]);
    assert_eq!(status, 1);
    assert_eq!(failed(&report), ["frame"], "{report:#}");
    let f = first_failure(&report, "frame");
    let probe = f["probe"].as_str().unwrap();
    assert!(
        probe.contains("one byte per write") || probe.contains("separate writes"),
        "{f}"
    );
}

#[test]
fn a_server_that_does_not_check_the_tag_fails_out_of_order_and_unknown_tag() {
    let server = ServerProcess::python("server_no_tag_check.py");
    let (status, report) = conform(&[
        "server",
        &server.addr(),
        "--json",
        "--timeout",
        "2",
        "--clients",
        "200",
    ]);
    assert_eq!(status, 1);
    assert_eq!(failed(&report), ["OutOfOrder", "UnknownTag"], "{report:#}");
    let f = first_failure(&report, "OutOfOrder");
    assert!(f["probe"].as_str().unwrap().starts_with("vector "), "{f}");
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .starts_with("expected replies [ff]"),
        "{f}"
    );
}

/// A server that dies mid-check (tests/fixtures/server_crashes.py exits at
/// its 150th connection): the report says so once, first, as the root
/// cause, and what came after is void, not a thousand failures.
#[test]
fn a_server_that_crashes_mid_check_is_one_root_cause() {
    let server = ServerProcess::python("server_crashes.py");
    let (status, report) = conform(&[
        "server",
        &server.addr(),
        "--json",
        "--timeout",
        "2",
        "--clients",
        "200",
    ]);
    assert_eq!(status, 1, "{report:#}");
    let cause = &report["root_causes"][0];
    assert_eq!(cause["kind"], "server-stopped", "{report:#}");
    let explanation = cause["explanation"].as_str().unwrap();
    assert!(
        explanation.starts_with("the server stopped accepting connections after ")
            && explanation.contains("(the first refused was connection ")
            && explanation.contains("every later check is void"),
        "{explanation}"
    );
    // Nothing is blamed on the rules: the checks after the stop are void.
    assert_eq!(report["summary"]["fail"], 0, "{report:#}");
    let limits = rule(&report, "limits");
    assert!(limits["void"].as_u64().unwrap() >= 200, "{limits}");
    assert!(
        limits["note"].as_str().unwrap().contains("void"),
        "{limits}"
    );
    assert!(cause["void_checks"].as_u64().unwrap() >= 200, "{cause}");
}

/// One wrong behaviour, a CLOSE answered with 0xFF, fails checks under
/// many rules: the report opens with it as one root cause, and the
/// messages the server did acknowledge are not blamed on its log.
#[test]
fn a_wrong_close_reply_is_one_root_cause_across_rules() {
    let server = ServerProcess::python("server_close_nak.py");
    let log = server.log.display().to_string();
    let (status, report) = conform(&[
        "server",
        &server.addr(),
        "--json",
        "--timeout",
        "2",
        "--clients",
        "50",
        "--log",
        &log,
    ]);
    assert_eq!(status, 1, "{report:#}");
    let causes = report["root_causes"].as_array().unwrap();
    assert_eq!(causes.len(), 1, "{report:#}");
    assert_eq!(causes[0]["kind"], "shared-symptom");
    assert_eq!(
        causes[0]["symptom"],
        "CLOSE (0x04) answered with 0xFF instead of 0x00"
    );
    let failed_checks: u64 = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(causes[0]["failures"], failed_checks, "{report:#}");
    let rules = causes[0]["rules"].as_array().unwrap();
    assert!(rules.len() >= 5, "{rules:?}");
    assert_eq!(rule(&report, "msg")["failed"], 0, "{report:#}");
    assert!(rule(&report, "msg")["checks"].as_u64().unwrap() > 1000);
}

#[test]
fn an_unreachable_server_is_an_error_not_a_report() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = msglog()
        .args(["conform", "server", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
}
