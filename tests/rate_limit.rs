//! Rate limits without loss: a flooding client gets its rate, its
//! neighbours keep theirs, connections of one name share one, and every
//! message sent is acknowledged in the end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use msglog::proto::Frame;
use msglog::server::{Config, Limits, Rate};
use msglog::testkit::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server(limits: Limits) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(Config {
        bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        log_path: dir.path().join("messages.log"),
        limits,
        ..Config::default()
    })
    .await
    .unwrap();
    (server, dir)
}

fn wire(frames: &[Frame<'_>]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.to_bytes().unwrap()).collect()
}

async fn login(addr: SocketAddr, name: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&wire(&[Frame::Name(name), Frame::Pass(b"A")]))
        .await
        .unwrap();
    let mut acks = [0u8; 2];
    s.read_exact(&mut acks).await.unwrap();
    assert_eq!(acks, [0, 0]);
    s
}

/// Pipelines `count` messages at once, then counts the acks that came
/// within `window`; the rest are read to the end afterwards.
async fn flood(mut s: TcpStream, count: usize, window: Duration) -> (usize, usize) {
    let burst: Vec<u8> = (0..count)
        .flat_map(|i| wire(&[Frame::Msg(format!("flood {i}").as_bytes())]))
        .collect();
    let (mut read, mut write) = s.split();
    let writer = async { write.write_all(&burst).await.unwrap() };
    let reader = async {
        let started = Instant::now();
        let (mut in_window, mut total) = (0, 0);
        let mut buf = [0u8; 256];
        while total < count {
            let n = tokio::time::timeout(Duration::from_secs(30), read.read(&mut buf))
                .await
                .expect("acks keep coming")
                .unwrap();
            assert!(n > 0, "the server closed a client over its rate");
            assert!(buf[..n].iter().all(|&b| b == 0), "a message was rejected");
            total += n;
            if started.elapsed() <= window {
                in_window = total;
            }
        }
        (in_window, total)
    };
    let ((), counts) = tokio::join!(writer, reader);
    counts
}

//= spec/protocol.md#rate-limits
//= type=test
//# A server that limits the rate of messages MUST slow a client over its rate down by not reading from it, and MUST NOT reject, drop or lose any of its messages for its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_gets_its_rate_and_its_neighbour_keeps_its_own() {
    let (server, dir) = server(Limits {
        rate_per_connection: Some(Rate {
            per_second: 100.0,
            burst: 10.0,
        }),
        ..Limits::default()
    })
    .await;
    let flooder = login(server.addr, b"flooder").await;
    let mut neighbour = login(server.addr, b"neighbour").await;
    let window = Duration::from_secs(2);
    let flooding = tokio::spawn(flood(flooder, 300, window));
    // The neighbour sends 10 messages a second, within its own rate.
    let started = Instant::now();
    for i in 0..20 {
        neighbour
            .write_all(&wire(&[Frame::Msg(format!("calm {i}").as_bytes())]))
            .await
            .unwrap();
        let mut ack = [0u8; 1];
        let sent = Instant::now();
        neighbour.read_exact(&mut ack).await.unwrap();
        assert_eq!(ack, [0]);
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "the neighbour waited {:?} for an ack",
            sent.elapsed()
        );
        tokio::time::sleep_until((started + Duration::from_millis(100 * (i + 1))).into()).await;
    }
    let (in_window, total) = flooding.await.unwrap();
    eprintln!("flooder: {in_window} acks in the first {window:?}, {total} in all");
    // 100 a second plus the burst of 10: never more; at least half of it
    // even on a loaded machine.
    assert!(in_window <= 2 * 100 + 10 + 5, "{in_window} acks in 2 s");
    assert!(in_window >= 100, "{in_window} acks in 2 s");
    assert_eq!(total, 300, "every message is acknowledged in the end");
    server.stop().await.unwrap();
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("[flooder]")).count(),
        300
    );
    assert_eq!(
        log.lines().filter(|l| l.starts_with("[neighbour]")).count(),
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_of_one_name_share_its_rate() {
    let (server, _dir) = server(Limits {
        rate_per_name: Some(Rate {
            per_second: 100.0,
            burst: 10.0,
        }),
        ..Limits::default()
    })
    .await;
    let window = Duration::from_secs(2);
    let a = tokio::spawn(flood(login(server.addr, b"shared").await, 150, window));
    let b = tokio::spawn(flood(login(server.addr, b"shared").await, 150, window));
    let other = tokio::spawn(flood(login(server.addr, b"other").await, 150, window));
    let ((a, a_total), (b, b_total)) = (a.await.unwrap(), b.await.unwrap());
    let (o, _) = other.await.unwrap();
    eprintln!("shared name: {a} + {b} acks in {window:?}; another name: {o}");
    // Two connections of one name get one rate between them, a little debt
    // of each read aside; another name has its own.
    assert!(a + b <= 2 * 100 + 10 + 20, "{a} + {b}");
    assert!(o >= 100, "{o}");
    assert_eq!((a_total, b_total), (150, 150));
    server.stop().await.unwrap();
}
