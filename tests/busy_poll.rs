//! Busy-polling (`--busy-poll-us`): after replying, a connection reads its
//! socket directly for a while instead of sleeping until the runtime reports
//! readiness. These tests check that frames taken that way are handled like
//! any other, that it happens only when it pays, and that a spinning
//! connection still sees its timers and the shutdown.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::tcp::{frame, login, read_n, read_to_end, Harness, TIMEOUT};
use msglog::proto::Frame;
use msglog::server::{Limits, Stats};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Long enough that a client on the same machine always answers within it,
/// loaded CI machine or not.
const LONG: Duration = Duration::from_secs(30);

fn limits(busy_poll: Duration) -> Limits {
    Limits {
        busy_poll,
        busy_poll_connections: 2,
        ..Limits::default()
    }
}

fn polls(stats: &Stats) -> (u64, u64) {
    (
        stats.busy_polls.load(Relaxed),
        stats.busy_poll_hits.load(Relaxed),
    )
}

async fn logged_in(h: &Harness, name: &[u8]) -> TcpStream {
    let mut s = h.connect().await;
    s.set_nodelay(true).unwrap();
    s.write_all(&login(name)).await.unwrap();
    assert_eq!(read_n(&mut s, 2).await, [0, 0]);
    s
}

async fn ping_pong(s: &mut TcpStream, messages: usize) {
    for i in 0..messages {
        s.write_all(&frame(Frame::Msg(format!("message {i}").as_bytes())))
            .await
            .unwrap();
        assert_eq!(read_n(s, 1).await, [0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_quick_frame_is_read_by_busy_polling_and_logged() {
    let h = Harness::start_with(limits(LONG)).await;
    let mut s = logged_in(&h, b"quick").await;
    let before = polls(&h.server.stats);
    ping_pong(&mut s, 200).await;
    let after = polls(&h.server.stats);
    // Each MSG came while the server was spinning for it.
    assert_eq!(after.1 - before.1, 200, "busy-poll hits");
    s.write_all(&[0x04]).await.unwrap();
    assert_eq!(read_to_end(&mut s).await, [0]);
    let records = h.stop().await;
    assert_eq!(records.len(), 200);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.name == b"quick" && r.message == format!("message {i}").as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_busy_polling_off_nothing_spins() {
    let h = Harness::start_with(limits(Duration::ZERO)).await;
    let mut s = logged_in(&h, b"calm").await;
    ping_pong(&mut s, 50).await;
    assert_eq!(polls(&h.server.stats), (0, 0));
    drop(s);
    assert_eq!(h.stop().await.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slower_than_the_budget_is_not_spun_for() {
    let h = Harness::start_with(limits(Duration::from_millis(1))).await;
    let mut s = logged_in(&h, b"slow").await;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(&frame(Frame::Msg(format!("m{i}").as_bytes())))
            .await
            .unwrap();
        assert_eq!(read_n(&mut s, 1).await, [0]);
    }
    // At most NAME, PASS and the first MSG were spun for: once a frame came
    // later than the budget, the connection sleeps until one comes quickly.
    let (spins, _) = polls(&h.server.stats);
    assert!(
        spins <= 3,
        "{spins} busy-polls for a client 20x slower than the budget"
    );
    drop(s);
    assert_eq!(h.stop().await.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_spins_while_more_are_open_than_allowed() {
    let h = Harness::start_with(limits(LONG)).await;
    let mut a = logged_in(&h, b"a").await;
    let mut b = logged_in(&h, b"b").await;
    let mut c = logged_in(&h, b"c").await;
    let (spins_before, _) = polls(&h.server.stats);
    for s in [&mut a, &mut b, &mut c] {
        ping_pong(s, 10).await;
    }
    let (spins_after, _) = polls(&h.server.stats);
    assert_eq!(
        spins_after, spins_before,
        "3 connections open, 2 allowed to spin"
    );
    drop((a, b, c));
    assert_eq!(h.stop().await.len(), 30);
}

//= spec/protocol.md#timeouts
//= type=test
//# The server MUST close an authenticated connection that sends nothing for
//# the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_connection_still_times_out() {
    let h = Harness::start_with(Limits {
        idle_timeout: Duration::from_millis(300),
        ..limits(LONG)
    })
    .await;
    let mut s = logged_in(&h, b"idle").await;
    let started = tokio::time::Instant::now();
    // Closed at the idle timeout, not after the 30 s busy-poll budget.
    assert_eq!(read_to_end(&mut s).await, b"");
    assert!(started.elapsed() < TIMEOUT);
    h.stop().await;
}

//= spec/protocol.md#shutdown
//= type=test
//# On SIGINT or SIGTERM the server MUST stop accepting connections and let
//# each connection finish the frame in progress within the shutdown timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_connection_still_sees_the_shutdown() {
    let h = Harness::start_with(limits(LONG)).await;
    let mut quiet = logged_in(&h, b"quiet").await;
    let mut busy = logged_in(&h, b"busy").await;
    // `busy` keeps its server side spinning with a frame every few
    // microseconds while the server is told to stop.
    let sender = tokio::spawn(async move {
        let mut acked = 0;
        loop {
            let sent = busy.write_all(&frame(Frame::Msg(b"x"))).await;
            let mut reply = [0u8; 1];
            match (
                sent,
                tokio::io::AsyncReadExt::read(&mut busy, &mut reply).await,
            ) {
                (Ok(()), Ok(1)) if reply == [0] => acked += 1,
                _ => return acked,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Stops within the harness's timeout, far below the busy-poll budget.
    let records = h.stop().await;
    let acked = tokio::time::timeout(TIMEOUT, sender)
        .await
        .unwrap()
        .unwrap();
    assert!(acked > 0);
    // Every acknowledged message is in the log.
    assert_eq!(records.len(), acked);
    assert_eq!(read_to_end(&mut quiet).await, b"");
}
