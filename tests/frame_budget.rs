//! Memory held in partial frames stays bounded across connections: many
//! clients that each send all of a maximal MSG but its last byte do not pin
//! 64 KiB each, and a client sending whole small messages is still served.
//! Measured on the real binary's resident memory, against a control run
//! with the budget out of the way.

mod common;

use std::time::{Duration, Instant};

use common::process::{serve_process, ServeProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections that each hold a partial maximal frame.
const HOLDERS: usize = 1500;
const BUDGET_MIB: u64 = 8;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap().to_le_bytes();
    [&[tag][..], &len, payload].concat()
}

async fn logged_in(port: u16, name: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&[frame(1, name.as_bytes()), frame(2, b"A")].concat())
        .await
        .unwrap();
    let mut acks = [0u8; 2];
    s.read_exact(&mut acks).await.unwrap();
    assert_eq!(acks, [0, 0]);
    s
}

/// Opens `count` connections that each send a maximal MSG but its last
/// byte (as much as the server takes within a second), and returns them
/// with the server's resident memory growth in KiB.
async fn hold_partial_frames(server: &ServeProcess, count: usize) -> (Vec<TcpStream>, u64) {
    let before = rss_kib(server.child.id());
    let mut almost = vec![3, 0xFF, 0xFF];
    almost.resize(3 + 65_534, b'x');
    let almost = std::sync::Arc::new(almost);
    let mut tasks = Vec::new();
    for i in 0..count {
        let (port, almost) = (server.port, almost.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = logged_in(port, &format!("holder{i}")).await;
            // The server may stop reading: then the rest stays with TCP.
            let _ = tokio::time::timeout(Duration::from_secs(1), s.write_all(&almost)).await;
            s
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        held.push(t.await.unwrap());
    }
    // Let the server read what it will.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss_kib(server.child.id()).saturating_sub(before);
    eprintln!("{count} connections holding partial frames: server grew by {grown} KiB");
    (held, grown)
}

//= spec/protocol.md#limits
//= type=test
//# The memory a server holds in partial frames MUST stay bounded across all connections, whatever the clients send.
//= spec/protocol.md#limits
//= type=test
//# A server MAY stop reading from a connection while the memory it holds in partial frames for all connections is at its limit, as long as the connection's timeouts keep running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_stay_within_the_budget_and_small_messages_still_flow() {
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let budget = BUDGET_MIB.to_string();
    let server = serve_process(
        dir.path(),
        0,
        &[
            "--frame-buffer-budget",
            &budget,
            "--handshake-timeout",
            "60",
            "--stats-interval",
            "0",
        ],
    );
    let (held, grown) = hold_partial_frames(&server, HOLDERS).await;
    // The budget, plus each connection's allowance (4 KiB, at most twice that
    // allocated) and its task and socket state (a few KiB), plus slack for
    // the runtime and allocator.
    let bound = BUDGET_MIB * 1024 + HOLDERS as u64 * 12 + 16 * 1024;
    assert!(
        grown < bound,
        "{HOLDERS} connections holding partial frames grew the server by {grown} KiB, over {bound} KiB"
    );

    // Meanwhile a client sending whole small messages is served.
    let started = Instant::now();
    let mut honest = logged_in(server.port, "honest").await;
    for i in 0..20 {
        honest
            .write_all(&frame(3, format!("still here {i}").as_bytes()))
            .await
            .unwrap();
        let mut ack = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), honest.read_exact(&mut ack))
            .await
            .expect("a small message waited for the budget")
            .unwrap();
        assert_eq!(ack, [0]);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(held);
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("[honest]")).count(),
        20
    );
}

/// The control: with the budget out of the way, the same clients do pin
/// about 64 KiB each, so the bound above is a real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_budget_the_same_clients_pin_their_frames() {
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = serve_process(
        dir.path(),
        0,
        &[
            "--frame-buffer-budget",
            "65536",
            "--handshake-timeout",
            "60",
            "--stats-interval",
            "0",
        ],
    );
    let (_held, grown) = hold_partial_frames(&server, HOLDERS).await;
    let bound = BUDGET_MIB * 1024 + HOLDERS as u64 * 12 + 16 * 1024;
    assert!(
        grown > bound,
        "without a budget the server grew only {grown} KiB; the bounded test proves nothing"
    );
}

/// A connection that waits for the budget still has its frame timeout: the
/// holders are closed with 0xFF at the handshake timeout and their memory
/// comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_connections_still_time_out() {
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = serve_process(
        dir.path(),
        0,
        &[
            "--frame-buffer-budget",
            "1",
            "--handshake-timeout",
            "2",
            "--stats-interval",
            "0",
        ],
    );
    let (held, _) = hold_partial_frames(&server, 200).await;
    let started = Instant::now();
    for mut s in held {
        let mut reply = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut reply))
            .await
            .expect("a waiting connection never timed out")
            .unwrap();
        assert_eq!(reply, [0xFF]);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
