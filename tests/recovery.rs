//! Recovery of the log at start and on SIGHUP (spec: #recovery), against the
//! real binary: every file is compared byte for byte before and after, and
//! what the server said is checked (exit status, the line naming the file,
//! the offset and the copy).
//!
//! Torn records come two ways here, and the tests say which: *real* ones,
//! left by `kill -9` while the server writes (rare: a write(2) to a file is
//! seldom torn by a kill), and *made* ones, a real record the server wrote
//! cut at each interesting point.

mod common;

use common::process::{serve_process, signal, ServeProcess, BIN};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use msglog::proto::{LogFormat, Record};

const LOG: &str = "messages.log";

/// What `msglog serve` said when it refused to start.
struct Refused {
    code: Option<i32>,
    stderr: String,
}

/// Runs `msglog serve` in `dir` with `--log LOG` and expects it to refuse:
/// it must exit within 10 s (if it serves instead, it is killed and the
/// test fails).
fn refuse(dir: &Path, extra: &[&str]) -> Refused {
    refuse_on(dir, 0, extra)
}

fn refuse_on(dir: &Path, port: u16, extra: &[&str]) -> Refused {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--log",
            LOG,
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("msglog serve {extra:?} started instead of refusing the log");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Refused {
        code: status.code(),
        stderr,
    }
}

fn serve(dir: &Path, extra: &[&str]) -> ServeProcess {
    let mut args = vec!["--log", LOG];
    args.extend_from_slice(extra);
    serve_process(dir, 0, &args)
}

/// Stops the server with SIGTERM and waits (at most 10 s) for exit 0.
fn stop(mut server: ServeProcess) {
    signal(&server.child, "TERM");
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One session: NAME, PASS `A`, each message, CLOSE; returns the replies.
fn send(port: u16, name: &[u8], messages: &[&[u8]]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    let frames = [(1u8, name), (2, b"A".as_slice())]
        .into_iter()
        .chain(messages.iter().map(|m| (3u8, *m)));
    for (tag, payload) in frames {
        bytes.push(tag);
        bytes.extend((payload.len() as u16).to_le_bytes());
        bytes.extend(payload);
    }
    bytes.push(4);
    stream.write_all(&bytes).unwrap();
    let mut replies = Vec::new();
    stream.read_to_end(&mut replies).unwrap();
    replies
}

/// Sends one message and checks it was acknowledged.
fn log_one(port: u16, message: &[u8]) {
    assert_eq!(send(port, b"after", &[message]), [0, 0, 0, 0]);
}

/// The next line the server prints that contains `what` (within 10 s).
fn line_with(server: &ServeProcess, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match server.lines.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {what:?}; saw {seen:#?}");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Files in `dir` other than the log: copies of torn records.
fn sidecars(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .collect();
    found.sort();
    found
}

/// Checks a refusal: exit 1, the message names the log and `words`, the
/// file is byte-identical and no copy was made.
fn assert_refused(dir: &Path, before: &[u8], refused: &Refused, words: &[&str]) {
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains(LOG), "{}", refused.stderr);
    for word in words {
        assert!(
            refused.stderr.contains(word),
            "{word:?} missing from: {}",
            refused.stderr
        );
    }
    assert_eq!(read(&dir.join(LOG)), before, "the refused log was changed");
    assert!(sidecars(dir).is_empty());
}

fn text_record(name: &[u8], message: &[u8]) -> Vec<u8> {
    msglog::proto::record(name, message)
}

//= spec/protocol.md#recovery
//= type=test
//# The server MUST refuse to open a log whose first line is a record line
//# or the start of a record of the other format than the configured one,
//# and say which format the log has.
#[test]
fn a_jsonl_log_restarted_as_text_is_refused_and_kept() {
    // The bug as it was found: three acknowledged messages, SIGTERM, start
    // again without --log-format jsonl: the log was emptied.
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--log-format", "jsonl"]);
    assert_eq!(
        send(server.port, b"u", &[b"one", b"two", b"three"]),
        [0, 0, 0, 0, 0, 0]
    );
    stop(server);
    let before = read(&dir.path().join(LOG));
    assert_eq!(before.iter().filter(|&&b| b == b'\n').count(), 3);
    let refused = refuse(dir.path(), &[]);
    assert_refused(
        dir.path(),
        &before,
        &refused,
        &["jsonl log", "--log-format jsonl", "Nothing was changed"],
    );
    // With the right flag it is appended to.
    let server = serve(dir.path(), &["--log-format", "jsonl"]);
    log_one(server.port, b"four");
    stop(server);
    let after = read(&dir.path().join(LOG));
    assert!(after.starts_with(&before));
    assert_eq!(after.iter().filter(|&&b| b == b'\n').count(), 4);
}

#[test]
fn a_text_log_restarted_as_jsonl_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    assert_eq!(send(server.port, b"u", &[b"one"]), [0, 0, 0, 0]);
    stop(server);
    let before = read(&dir.path().join(LOG));
    assert_eq!(before, b"[u]: one\r\n");
    let refused = refuse(dir.path(), &["--log-format", "jsonl"]);
    assert_refused(
        dir.path(),
        &before,
        &refused,
        &["text log", "--log-format text"],
    );
}

/// 1,790 bytes of text with LF line ends, as another tool writes it (the
/// size of the file a SIGHUP once emptied).
fn lf_text() -> Vec<u8> {
    let mut text: Vec<u8> = (0..45)
        .flat_map(|i| format!("[user{i:02}]: line {i:02} of a log with LF only\n").into_bytes())
        .collect();
    text.truncate(1789);
    text.push(b'\n');
    text
}

//= spec/protocol.md#recovery
//= type=test
//# The server MUST refuse to open a non-empty log whose first line is
//# neither a record line nor the start of a record, in either format.
//= spec/protocol.md#recovery
//= type=test
//# When the server refuses to open a log, it MUST leave the file unchanged
//# and report the file, the offset and what it found there.
#[test]
fn a_file_with_lf_line_ends_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let before = lf_text();
    std::fs::write(dir.path().join(LOG), &before).unwrap();
    for format in ["text", "jsonl"] {
        let refused = refuse(dir.path(), &["--log-format", format]);
        // The first LF, where CR LF should be, is at offset 39.
        assert_refused(
            dir.path(),
            &before,
            &refused,
            &["not a log of either format", "at offset 39", "\\n[user01]"],
        );
    }
}

#[test]
fn a_binary_file_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    // The start of an executable: a real binary file.
    let mut before = read(Path::new(BIN));
    before.truncate(64 * 1024);
    std::fs::write(dir.path().join(LOG), &before).unwrap();
    for format in ["text", "jsonl"] {
        let refused = refuse(dir.path(), &["--log-format", format]);
        assert_refused(dir.path(), &before, &refused, &["at offset 0", "\\x7fELF"]);
    }
}

#[test]
fn an_empty_file_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LOG), b"").unwrap();
    let server = serve(dir.path(), &[]);
    log_one(server.port, b"first");
    stop(server);
    assert_eq!(read(&dir.path().join(LOG)), b"[after]: first\r\n");
    assert!(sidecars(dir.path()).is_empty());
}

#[test]
fn a_log_of_the_original_server_is_appended_to() {
    // The reference does not escape: `]` in a name, raw bytes in a message.
    let dir = tempfile::tempdir().unwrap();
    let before = b"[a]b]: x]: y\r\n[bob]: raw \x01\xFF bytes\r\n[MyTestCase]: Hello!\r\n".to_vec();
    std::fs::write(dir.path().join(LOG), &before).unwrap();
    let server = serve(dir.path(), &[]);
    log_one(server.port, b"from msglog");
    stop(server);
    let mut expected = before;
    expected.extend(text_record(b"after", b"from msglog"));
    assert_eq!(read(&dir.path().join(LOG)), expected);
    assert!(sidecars(dir.path()).is_empty());
}

//= spec/protocol.md#recovery
//= type=test
//# The server MUST refuse to open a log whose tail is neither empty nor a
//# torn record.
#[test]
fn an_original_log_whose_last_line_ends_in_lf_only_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let before = b"[a]: one\r\n[b]: two\n".to_vec();
    std::fs::write(dir.path().join(LOG), &before).unwrap();
    let refused = refuse(dir.path(), &[]);
    assert_refused(
        dir.path(),
        &before,
        &refused,
        &[
            "9 bytes after its last line end, from offset 10",
            "at offset 18",
            "\"\\n\"",
        ],
    );
}

//= spec/protocol.md#recovery
//= type=test
//# The server MUST refuse to open a log whose last line is not a record
//# line of the configured format.
#[test]
fn garbage_in_the_middle_is_kept_and_as_the_last_line_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = b"GARBAGE \x00\xFF in the middle\r\n";
    let mut before = text_record(b"a", b"one");
    before.extend_from_slice(garbage);
    before.extend(text_record(b"a", b"two"));
    std::fs::write(dir.path().join(LOG), &before).unwrap();
    let server = serve(dir.path(), &[]);
    log_one(server.port, b"three");
    stop(server);
    let after = read(&dir.path().join(LOG));
    assert_eq!(after, [before, text_record(b"after", b"three")].concat());

    // The same garbage as the last line, with a tail after it.
    let mut before = text_record(b"a", b"one");
    before.extend_from_slice(garbage);
    before.extend_from_slice(b"[a]: tw");
    std::fs::write(dir.path().join(LOG), &before).unwrap();
    let refused = refuse(dir.path(), &[]);
    assert_refused(
        dir.path(),
        &before,
        &refused,
        &["last complete line (at offset 10", "GARBAGE"],
    );
}

/// Starts the server on a log that ends with a made torn record, and checks
/// that exactly that record was cut, its bytes are in the copy, the server
/// said so, and appending goes on right after the cut.
fn assert_torn_record_is_cut(format: &str, complete: &[u8], torn: &[u8], expect_new: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let before = [complete, torn].concat();
    std::fs::write(&path, &before).unwrap();
    let server = serve(dir.path(), &["--log-format", format]);
    let line = line_with(&server, "torn");
    let copies = sidecars(dir.path());
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy = &copies[0];
    let offset = complete.len();
    assert_eq!(
        copy.file_name().unwrap().to_string_lossy(),
        format!("{LOG}.torn-{offset}")
    );
    for word in [
        format!("offset={offset}"),
        format!("removed={}", torn.len()),
        // Named as the log is: relative to the server's directory.
        format!("sidecar={LOG}.torn-{offset}"),
    ] {
        assert!(line.contains(&word), "{word:?} missing from: {line}");
    }
    // Nothing lost: the log as it was is the log now and the copy.
    let after = read(&path);
    assert_eq!([after.as_slice(), &read(copy)].concat(), before);
    assert_eq!(after, complete);
    log_one(server.port, b"next");
    stop(server);
    let after = read(&path);
    assert!(after.starts_with(complete));
    assert!(
        after[complete.len()..].starts_with(expect_new),
        "{}",
        after[complete.len()..].escape_ascii()
    );
}

/// A log the server wrote: two records, the second full of what escaping
/// cares about. Returns the log and where the second record starts.
fn real_log(format: &str) -> (Vec<u8>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--log-format", format]);
    assert_eq!(send(server.port, b"first", &[b"one"]), [0, 0, 0, 0]);
    let message = "é␦\u{2028}\r\n\x01 x".as_bytes();
    assert_eq!(
        send(server.port, "na]mé".as_bytes(), &[message]),
        [0, 0, 0, 0]
    );
    // Not UTF-8: base64 in JSON lines.
    assert_eq!(
        send(server.port, b"n\xE9", &[&[0xFF, 0xFE, 0x00, 0x41]]),
        [0, 0, 0, 0]
    );
    stop(server);
    let log = read(&dir.path().join(LOG));
    let line_end = if format == "text" { "\r\n" } else { "\n" };
    let first_end = after(&log, line_end);
    (log, first_end)
}

fn after(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap_or_else(|| panic!("{needle:?} not in {}", haystack.escape_ascii()))
        + needle.len()
}

//= spec/protocol.md#recovery
//= type=test
//# When the server removes a torn record, it MUST report the offset, the
//# number of bytes removed and the file that holds the copy.
#[test]
fn made_torn_text_records_are_cut_at_every_interesting_point() {
    let (log, start) = real_log("text");
    let first = &log[..start];
    // The second and third records, as the server wrote them.
    let rest = &log[start..];
    let second_len = after(rest, "\r\n");
    let second = &rest[..second_len];
    let third = &rest[second_len..];
    let points = [
        1,                               // `[`
        3,                               // in the name
        after(second, "na"),             // before the name's `]` escape
        after(second, "na") + 2,         // inside the `␦` of `␦5D`
        after(second, "na␦"),            // after `␦`
        after(second, "na␦5"),           // after `␦5`
        after(second, "na␦5Dm") + 1,     // inside the name's `é`
        after(second, "]"),              // after the name
        after(second, "]:"),             // in the separator
        after(second, "]: "),            // message not begun
        after(second, "]: ") + 1,        // inside `é`
        after(second, "é␦E2"),           // in an escaped character
        after(second, "é␦E2␦90␦A6") + 1, // inside a `␦`
        after(second, "␍") - 1,          // inside a control picture
        second.len() - 1,                // CR written, LF not
    ];
    for k in points {
        assert_torn_record_is_cut("text", first, &second[..k], b"[after]: next\r\n");
    }
    // A name and a message that are not UTF-8, cut in both.
    for k in [after(third, "n␦E"), after(third, "␦FF")] {
        assert_torn_record_is_cut("text", first, &third[..k], b"[after]: next\r\n");
    }
    // The whole log is one torn record.
    assert_torn_record_is_cut("text", b"", &first[..5], b"[after]: next\r\n");
}

#[test]
fn made_torn_json_records_are_cut_at_every_interesting_point() {
    let (log, start) = real_log("jsonl");
    let first = &log[..start];
    let rest = &log[start..];
    let second_len = after(rest, "\n");
    let second = &rest[..second_len];
    let third = &rest[second_len..];
    let points = [
        1,                                    // `{`
        after(second, "{\"ts\":\"") + 4,      // in the year
        after(second, "{\"ts\":\"") + 11,     // in the time
        after(second, "\"peer\":\"") + 4,     // in the address
        after(second, "\"name\":\"na]"),      // in the name
        after(second, "\"message\":\"") + 1,  // inside `é`
        after(second, "\"message\":\"é") + 1, // inside `␦`
        after(second, "\\r"),                 // after an escape
        after(second, "\\u00"),               // inside `\u0001`
        second.len() - 2,                     // before `}`
        second.len() - 1,                     // `}` written, LF not
    ];
    for k in points {
        assert_torn_record_is_cut("jsonl", first, &second[..k], b"{\"ts\":\"");
    }
    // Base64 name and message, cut inside each and between them.
    for k in [
        after(third, "\"name\":\"") + 2,
        after(third, "\"name_encoding\":\"ba"),
        after(third, "\"message\":\"") + 3,
        after(third, "\"message_encoding\""),
    ] {
        assert_torn_record_is_cut("jsonl", first, &third[..k], b"{\"ts\":\"");
    }
}

#[test]
fn a_server_that_cannot_listen_does_not_cut() {
    // The cut would go unreported if the server stopped after it: it binds
    // its port before it opens the log.
    let busy = tempfile::tempdir().unwrap();
    let other = serve(busy.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let before = b"[a]: one\r\n[a]: tw".to_vec();
    std::fs::write(dir.path().join(LOG), &before).unwrap();
    let refused = refuse_on(dir.path(), other.port, &[]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("already in use"),
        "{}",
        refused.stderr
    );
    assert_eq!(read(&dir.path().join(LOG)), before);
    assert!(sidecars(dir.path()).is_empty());
    stop(other);
}

/// A blocking client that keeps sending big messages until the server dies;
/// returns the messages acknowledged.
fn send_until_killed(port: u16, round: usize, who: usize) -> Vec<Vec<u8>> {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let name = format!("c{who}");
    let mut hello = vec![1, name.len() as u8, 0];
    hello.extend_from_slice(name.as_bytes());
    hello.extend_from_slice(&[2, 1, 0, b'A']);
    let mut reply = [0u8; 2];
    if stream.write_all(&hello).is_err() || stream.read_exact(&mut reply).is_err() {
        return Vec::new();
    }
    let mut acknowledged = Vec::new();
    // Bounded, so that a round writes at most about 40 MB.
    for seq in 0..100 {
        // Records of about 180 KB (each 0x01 is written as three bytes): the
        // kernel checks for a kill between the pages of a write, so a kill
        // that lands in one can tear it.
        let body = format!("{round}-{who}-{seq}-{}", "\u{1}".repeat(60_000 + seq));
        let mut frame = vec![3];
        frame.extend((body.len() as u16).to_le_bytes());
        frame.extend_from_slice(body.as_bytes());
        let mut ack = [0u8];
        if stream.write_all(&frame).is_err() || stream.read_exact(&mut ack).is_err() || ack[0] != 0
        {
            break;
        }
        acknowledged.push(body.into_bytes());
    }
    acknowledged
}

#[test]
fn real_torn_records_from_kill_9_are_cut_with_a_copy() {
    const ROUNDS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let mut acknowledged = Vec::new();
    let mut torn_seen = 0;
    for round in 0..ROUNDS {
        let before_start = std::fs::read(&path).unwrap_or_default();
        let copies_before = sidecars(dir.path());
        let mut server = serve(dir.path(), &[]);
        let ends_torn = !before_start.is_empty() && !before_start.ends_with(b"\r\n");
        if ends_torn {
            // The previous kill tore a record: this start cut it off.
            torn_seen += 1;
            let line = line_with(&server, "torn");
            let new: Vec<PathBuf> = sidecars(dir.path())
                .into_iter()
                .filter(|c| !copies_before.contains(c))
                .collect();
            assert_eq!(new.len(), 1, "{new:?}");
            let copy = &new[0];
            let name = copy.file_name().unwrap().to_string_lossy();
            assert!(line.contains(&format!("sidecar={name}")), "{line}");
            assert_eq!([read(&path), read(copy)].concat(), before_start);
        } else {
            assert_eq!(
                read(&path),
                before_start,
                "round {round}: a clean log changed"
            );
        }
        let port = server.port;
        let clients: Vec<_> = (0..2)
            .map(|who| std::thread::spawn(move || send_until_killed(port, round, who)))
            .collect();
        std::thread::sleep(Duration::from_millis(150 + 50 * round as u64));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let before_kill = acknowledged.len();
        for client in clients {
            acknowledged.extend(client.join().unwrap());
        }
        assert!(
            acknowledged.len() > before_kill,
            "round {round}: nothing was acknowledged before the kill"
        );
    }
    // A last start recovers whatever the last kill left.
    let server = serve(dir.path(), &[]);
    stop(server);
    let log = read(&path);
    let records: Vec<Record> = msglog::proto::records(&log)
        .collect::<Result<_, _>>()
        .expect("the log holds only whole records");
    for message in &acknowledged {
        assert_eq!(
            records.iter().filter(|r| &r.message == message).count(),
            1,
            "an acknowledged message is missing or doubled"
        );
    }
    println!(
        "{} acknowledged messages over {ROUNDS} kills; real torn records seen: {torn_seen}",
        acknowledged.len()
    );
}

//= spec/protocol.md#recovery
//= type=test
//# A server that refuses a log when it reopens the log path MUST keep
//# writing to the log it had open and report why.
#[test]
fn sighup_leaves_a_foreign_file_alone_and_keeps_writing_to_the_old_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let rotated = dir.path().join("messages.log.1");
    let server = serve(dir.path(), &[]);
    assert_eq!(send(server.port, b"u", &[b"one"]), [0, 0, 0, 0]);
    std::fs::rename(&path, &rotated).unwrap();

    // A foreign file at the path: refused, left byte for byte.
    let foreign = lf_text();
    assert_eq!(foreign.len(), 1790);
    std::fs::write(&path, &foreign).unwrap();
    signal(&server.child, "HUP");
    let line = line_with(&server, "SIGHUP");
    for word in ["still writing to the old file", LOG, "at offset 39"] {
        assert!(line.contains(word), "{word:?} missing from: {line}");
    }
    assert_eq!(send(server.port, b"u", &[b"two"]), [0, 0, 0, 0]);
    assert_eq!(read(&path), foreign);

    // A log of the other format: refused, and the line says which flag.
    let jsonl = b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"127.0.0.1:1\",\"name\":\"a\",\"message\":\"b\"}\n";
    std::fs::write(&path, jsonl).unwrap();
    signal(&server.child, "HUP");
    let line = line_with(&server, "SIGHUP");
    assert!(line.contains("--log-format jsonl"), "{line}");
    assert_eq!(send(server.port, b"u", &[b"three"]), [0, 0, 0, 0]);
    assert_eq!(read(&path), jsonl);
    assert_eq!(read(&rotated), b"[u]: one\r\n[u]: two\r\n[u]: three\r\n");

    // A torn record at the path: copied, cut, and the new log is used.
    std::fs::write(&path, b"[a]: one\r\n[a]: tw").unwrap();
    signal(&server.child, "HUP");
    let line = line_with(&server, "torn");
    assert!(
        line.contains("offset=10") && line.contains("removed=7"),
        "{line}"
    );
    assert_eq!(read(&dir.path().join("messages.log.torn-10")), b"[a]: tw");
    assert_eq!(send(server.port, b"u", &[b"four"]), [0, 0, 0, 0]);
    stop(server);
    assert_eq!(read(&path), b"[a]: one\r\n[u]: four\r\n");
    assert_eq!(read(&rotated), b"[u]: one\r\n[u]: two\r\n[u]: three\r\n");
}

//= spec/protocol.md#log-file
//= type=test
//# The server MUST refuse to open a log file whose lock another process
//# holds, and leave the file unchanged.
//= spec/protocol.md#log-file
//= type=test
//# While it writes to a regular file, the server MUST hold an exclusive
//# lock on it, taken before it reads the file back.
#[test]
fn a_second_server_on_a_log_in_use_is_refused_and_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let first = serve(dir.path(), &[]);
    assert_eq!(send(first.port, b"u", &[b"one"]), [0, 0, 0, 0]);
    // A SIGHUP that finds the same file at the path keeps it, and its lock.
    signal(&first.child, "HUP");
    line_with(&first, "log reopened");
    assert_eq!(send(first.port, b"u", &[b"two"]), [0, 0, 0, 0]);
    // What the first server's next record looks like while it writes it:
    // the second server's recovery would take it for torn and cut it.
    let mut in_use = read(&path);
    in_use.extend_from_slice(b"[u]: thr");
    std::fs::write(&path, &in_use).unwrap();
    let refused = refuse(dir.path(), &[]);
    assert_refused(
        dir.path(),
        &in_use,
        &refused,
        &["locked by another process", "stop that server"],
    );
    // Through a symlink it is the same file, and as locked.
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&path, elsewhere.path().join(LOG)).unwrap();
    let refused = refuse(elsewhere.path(), &[]);
    assert_refused(elsewhere.path(), &in_use, &refused, &["locked"]);
    assert!(sidecars(dir.path()).is_empty());
    // Once the first server is gone, the lock goes with it and the next
    // server recovers the log as usual.
    stop(first);
    let second = serve(dir.path(), &[]);
    line_with(&second, "torn");
    assert_eq!(
        read(&dir.path().join(format!("{LOG}.torn-20"))),
        b"[u]: thr"
    );
    assert_eq!(send(second.port, b"u", &[b"three"]), [0, 0, 0, 0]);
    stop(second);
    assert_eq!(read(&path), b"[u]: one\r\n[u]: two\r\n[u]: three\r\n");
}

#[test]
fn a_symlink_to_a_foreign_file_is_refused_and_one_to_a_log_followed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("settings.conf");
    let foreign = lf_text();
    std::fs::write(&target, &foreign).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join(LOG)).unwrap();
    let refused = refuse(dir.path(), &[]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert_eq!(read(&target), foreign);

    let real = dir.path().join("real.log");
    std::fs::write(&real, b"[a]: one\r\n").unwrap();
    std::fs::remove_file(dir.path().join(LOG)).unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join(LOG)).unwrap();
    let server = serve(dir.path(), &[]);
    log_one(server.port, b"two");
    stop(server);
    assert_eq!(read(&real), b"[a]: one\r\n[after]: two\r\n");
}

/// A directory in which no new file can be made, also by root: a tmpfs
/// with room for one file, the log. Unmounted on drop.
struct OneFileFs {
    mount: PathBuf,
}

impl OneFileFs {
    fn mount(at: PathBuf) -> OneFileFs {
        std::fs::create_dir_all(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,nr_inodes=2", "tmpfs"])
            .arg(&at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a one-file tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OneFileFs { mount: at }
    }
}

impl Drop for OneFileFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

//= spec/protocol.md#recovery
//= type=test
//# If the copy cannot be written, the server MUST refuse to open the log.
#[test]
fn a_torn_record_that_cannot_be_copied_is_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let fs = OneFileFs::mount(dir.path().join("small"));
    let before = b"[a]: one\r\n[a]: tw".to_vec();
    std::fs::write(fs.mount.join(LOG), &before).unwrap();
    let refused = refuse(&fs.mount, &[]);
    assert_refused(
        &fs.mount,
        &before,
        &refused,
        &[
            "no copy of it could be kept",
            "messages.log.torn-10",
            "nothing was changed",
        ],
    );
}

mod random_files {
    //! Random logs of both formats, garbage and cuts, opened by the server's
    //! own `open_log`: the file is byte-identical afterwards, or only a
    //! torn record was cut and its copy holds exactly the cut bytes.

    use super::*;
    use msglog::proto::{encode_json_record, JsonContext};
    use msglog::server::open_log;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Piece {
        Text(Vec<u8>, Vec<u8>),
        Json(Vec<u8>, Vec<u8>),
        Garbage(Vec<u8>),
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => 0x20u8..0x7F,
                1 => any::<u8>(),
                1 => prop::sample::select(b"[]{}\"\\:\r\n".to_vec()),
            ],
            1..12,
        )
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        bytes().prop_map(|mut n| {
            if n[0] == 0 {
                n[0] = b'n';
            }
            n
        })
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            4 => (name(), bytes()).prop_map(|(n, m)| Piece::Text(n, m)),
            4 => (name(), bytes()).prop_map(|(n, m)| Piece::Json(n, m)),
            1 => bytes().prop_map(Piece::Garbage),
        ]
    }

    fn encode(pieces: &[Piece]) -> Vec<u8> {
        let context = JsonContext {
            timestamp: "2026-11-27T12:00:00.5Z".into(),
            peer: "[::1]:4000".into(),
        };
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Text(n, m) => msglog::proto::encode_record(&mut out, n, m),
                Piece::Json(n, m) => encode_json_record(&mut out, &context, n, m),
                Piece::Garbage(g) => out.extend_from_slice(g),
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        //= spec/protocol.md#recovery
        //= type=test
        //# A server MUST NOT remove any bytes from a log it opens other than a torn
        //# record.
        #[test]
        fn recovery_keeps_every_byte(
            pieces in prop::collection::vec(piece(), 0..6),
            one_format in any::<bool>(),
            cut in any::<prop::sample::Index>(),
            jsonl in any::<bool>(),
        ) {
            let format = if jsonl { LogFormat::Jsonl } else { LogFormat::Text };
            // Half the files are records of one format only (garbage aside).
            let pieces: Vec<Piece> = if one_format {
                pieces
                    .into_iter()
                    .map(|p| match (p, jsonl) {
                        (Piece::Text(n, m) | Piece::Json(n, m), true) => Piece::Json(n, m),
                        (Piece::Text(n, m) | Piece::Json(n, m), false) => Piece::Text(n, m),
                        (garbage, _) => garbage,
                    })
                    .collect()
            } else {
                pieces
            };
            let mut before = encode(&pieces);
            before.truncate(cut.index(before.len() + 1));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(LOG);
            std::fs::write(&path, &before).unwrap();
            // The file is closed at once, and its lock with it.
            let outcome = open_log(&path, format, None).map(|(_, recovery)| recovery);
            let after = read(&path);
            let copies = sidecars(dir.path());
            match outcome {
                Ok(Some(recovery)) => {
                    prop_assert_eq!(copies.clone(), vec![recovery.sidecar.clone()]);
                    let copy = read(&recovery.sidecar);
                    prop_assert_eq!([after.clone(), copy.clone()].concat(), before.clone());
                    prop_assert_eq!(recovery.offset, after.len() as u64);
                    prop_assert_eq!(recovery.removed, copy.len() as u64);
                    prop_assert!(!copy.is_empty());
                    prop_assert!(!copy.windows(format.terminator().len()).any(|w| w == format.terminator()));
                }
                Ok(None) | Err(_) => {
                    prop_assert_eq!(after, before.clone());
                    prop_assert!(copies.is_empty());
                }
            }
            // A log of whole records of one format, torn or not, is never
            // refused in that format, and a torn one is cut where its last
            // record began.
            let only = |text: bool| pieces.iter().all(|p| matches!((p, text), (Piece::Text(..), true) | (Piece::Json(..), false)));
            if !before.is_empty() && only(!jsonl) {
                let clean = encode(&pieces);
                let whole_records_end = (0..pieces.len())
                    .map(|i| encode(&pieces[..i]).len())
                    .take_while(|&end| end <= before.len())
                    .last()
                    .unwrap_or(0);
                let expected = if before.len() == clean.len() || before.len() == whole_records_end {
                    None
                } else {
                    Some(whole_records_end as u64)
                };
                // (Re-run on a fresh copy: the first run may have cut.)
                std::fs::write(&path, &before).unwrap();
                for copy in sidecars(dir.path()) {
                    std::fs::remove_file(copy).unwrap();
                }
                let got = open_log(&path, format, None).map(|(_, r)| r.map(|r| r.offset));
                prop_assert_eq!(got.ok(), Some(expected));
            }
        }
    }
}
