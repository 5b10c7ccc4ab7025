//! No acknowledged message is ever lost: kill -9 at random moments, graceful
//! shutdown, and a disk that fills up. These run `msglog serve` as a process.

mod common;

use common::blocking::{Client, SmallFs};
use common::process::{serve_process, ServeProcess};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use msglog::proto::{records, Frame};

fn serve(log: &Path, extra: &[&str]) -> ServeProcess {
    let mut args = vec!["--log", log.to_str().unwrap()];
    args.extend_from_slice(extra);
    serve_process(log.parent().unwrap(), 0, &args)
}

/// Small deterministic generator for kill delays; the seed is printed so a
/// failing run can be repeated with MSGLOG_TEST_SEED.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn message_counts(log: &[u8]) -> HashMap<Vec<u8>, usize> {
    let mut counts = HashMap::new();
    for (i, r) in records(log).enumerate() {
        let r = r.unwrap_or_else(|e| panic!("record {i} is not a complete record: {e}"));
        *counts.entry(r.message).or_insert(0) += 1;
    }
    counts
}

//= spec/protocol.md#recovery
//= type=test
//# A server MUST NOT remove any bytes from a log it opens other than a torn
//# record.
#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_message() {
    const ROUNDS: usize = 10;
    const CLIENTS: usize = 20;
    let seed = std::env::var("MSGLOG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("MSGLOG_TEST_SEED={seed}");
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("messages.log");
    let mut acknowledged: HashSet<Vec<u8>> = HashSet::new();
    for round in 0..ROUNDS {
        let mut server = serve(&log, &[]);
        let port = server.port;
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let mut threads = Vec::new();
        for c in 0..CLIENTS {
            let tx = tx.clone();
            threads.push(std::thread::spawn(move || {
                let Some(mut client) = Client::login(port, &format!("c{c}")) else {
                    return;
                };
                for seq in 0.. {
                    // Sizes vary so records straddle write boundaries.
                    let body = format!("r{round}-c{c}-m{seq}-{}", "x".repeat(seq % 300));
                    match client.send(body.as_bytes()) {
                        Some(0) => {
                            if tx.send(body.into_bytes()).is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            }));
        }
        drop(tx);
        std::thread::sleep(Duration::from_millis(100 + rng.next() % 300));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let acked_this_round: Vec<_> = rx.into_iter().collect();
        assert!(
            !acked_this_round.is_empty(),
            "round {round}: no message was acknowledged before the kill"
        );
        acknowledged.extend(acked_this_round);
    }
    // One more start cuts a torn tail left by the last kill, then stop cleanly.
    let mut last = serve(&log, &[]);
    let _ = Command::new("kill")
        .args(["-TERM", &last.child.id().to_string()])
        .status();
    last.child.wait().unwrap();
    let counts = message_counts(&std::fs::read(&log).unwrap());
    for m in &acknowledged {
        assert_eq!(
            counts.get(m),
            Some(&1),
            "acknowledged message {:?} appears {:?} times",
            String::from_utf8_lossy(m),
            counts.get(m)
        );
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "a message was written twice"
    );
    println!(
        "{} acknowledged messages over {ROUNDS} kills; {} records in the log",
        acknowledged.len(),
        counts.len()
    );
}

//= spec/protocol.md#shutdown
//= type=test
//# On SIGINT or SIGTERM the server MUST stop accepting connections and let
//# each connection finish the frame in progress within the shutdown timeout.
//= spec/protocol.md#shutdown
//= type=test
//# The server MUST NOT exit before every record it accepted was written to the log.
#[test]
fn sigterm_lets_the_frame_in_progress_finish_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("messages.log");
    let mut server = serve(&log, &["--shutdown-timeout", "5"]);
    let mut busy = Client::login(server.port, "busy").unwrap();
    assert_eq!(busy.send(b"before"), Some(0));
    let mut idle = Client::login(server.port, "idle").unwrap();
    // Half a frame on the wire when the signal arrives.
    let frame = Frame::Msg(b"finished after the signal").to_bytes().unwrap();
    busy.0.write_all(&frame[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The idle connection is closed at once; no new connection is accepted.
    let mut rest = Vec::new();
    assert_eq!(idle.0.read_to_end(&mut rest).unwrap(), 0);
    assert!(
        Client::login(server.port, "late").is_none(),
        "a connection was accepted after SIGTERM"
    );
    busy.0.write_all(&frame[5..]).unwrap();
    assert_eq!(busy.reply(), Some(0));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "[busy]: before\r\n[busy]: finished after the signal\r\n"
    );
}

//= spec/protocol.md#durability
//= type=test
//# When an append fails, the server MUST NOT leave any part of the
//# affected records in the log.
#[test]
fn full_disk_rejects_with_0xff_keeps_serving_and_recovers() {
    // This test needs a real full filesystem: a tmpfs of 64 KiB, which needs
    // root (CI runs as root). It fails loudly rather than pretending.
    let dir = tempfile::tempdir().unwrap();
    let fs = SmallFs::mount(dir.path().join("small"), "64k").unwrap_or_else(|e| {
        panic!("cannot mount a small tmpfs for the disk-full test (needs root): {e}")
    });
    let filler = fs.mount.join("filler");
    std::fs::write(&filler, vec![0u8; 16 * 1024]).unwrap();
    let log = fs.mount.join("messages.log");
    let server = serve(&log, &[]);

    let mut bystander = Client::login(server.port, "bystander").unwrap();
    let mut writer = Client::login(server.port, "writer").unwrap();
    let mut acked = Vec::new();
    let mut rejected = 0;
    for i in 0..1000 {
        let body = format!("{i:04}-{}", "y".repeat(900));
        match writer.send(body.as_bytes()) {
            Some(0) => acked.push(body.into_bytes()),
            Some(0xFF) => {
                rejected += 1;
                break;
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert_eq!(rejected, 1, "the disk never filled");
    assert!(!acked.is_empty());
    // A second failing append in the same episode, from another connection.
    assert_eq!(bystander.send(&[b'z'; 4000]), Some(0xFF));
    // The server still serves: new connections authenticate.
    let mut later = Client::login(server.port, "later")
        .expect("server stopped serving while the disk was full");
    // Space returns; appends work again.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(later.send(b"space is back"), Some(0));
    acked.push(b"space is back".to_vec());

    let log_bytes = std::fs::read(&log).unwrap();
    let got: Vec<_> = records(&log_bytes)
        .map(|r| r.expect("partial record in the log").message)
        .collect();
    assert_eq!(got, acked);

    // One error line for the episode, not one per message; then recovery.
    // Both were printed before the last ack, so they are already in the pipe.
    let lines: Vec<String> =
        std::iter::from_fn(|| server.lines.recv_timeout(Duration::from_millis(500)).ok()).collect();
    let episodes = lines
        .iter()
        .filter(|l| l.contains("appending to the log failed"))
        .count();
    assert_eq!(episodes, 1, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("works again")),
        "{lines:#?}"
    );
}

//= spec/protocol.md#shutdown
//= type=test
//# A connection whose frame in progress does not complete within the
//# shutdown timeout MUST get 0xFF and be closed.
#[test]
fn sigterm_cuts_off_a_frame_that_never_completes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("messages.log");
    let mut server = serve(&log, &["--shutdown-timeout", "0.5"]);
    let mut stuck = Client::login(server.port, "stuck").unwrap();
    stuck.0.write_all(&[3, 10, 0, b'h']).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(stuck.reply(), Some(0xFF));
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "cut off after {waited:?}, before the shutdown timeout"
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(std::fs::read(&log).unwrap(), b"");
}
