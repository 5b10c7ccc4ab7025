//! The server asks its password verifier for every PASS and carries out the
//! engine's verdict over real TCP: frames pipelined behind the PASS wait,
//! a slow check stalls nobody else, and a check that never answers is ended
//! by the handshake timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msglog::proto::engine::VerifyRequest;
use msglog::proto::Frame;
use msglog::server::{Config, Limits, PasswordVerifier, Peer, Verdict};
use msglog::testkit::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Accepts `secret` for every name, after `delay`; `never` never answers.
#[derive(Debug)]
struct Slow {
    delay: Duration,
    never: bool,
    asked: AtomicUsize,
}

impl PasswordVerifier for Slow {
    fn verify(&self, request: VerifyRequest, _peer: &Peer) -> Verdict {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let (delay, never) = (self.delay, self.never);
        Box::pin(async move {
            if never {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(delay).await;
            request.password == b"secret"
        })
    }
}

async fn server(verifier: Arc<Slow>, limits: Limits) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(Config {
        bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        log_path: dir.path().join("messages.log"),
        limits,
        verifier: Some(verifier),
        ..Config::default()
    })
    .await
    .unwrap();
    (server, dir)
}

fn wire(frames: &[Frame<'_>]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.to_bytes().unwrap()).collect()
}

async fn replies(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut out))
        .await
        .expect("replies within 10 s")
        .unwrap();
    out
}

//= spec/protocol.md#pass
//= type=test
//# The server MUST verify a non-empty PASS for the name before it replies, and MUST NOT process any frame after the PASS until the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_frames_wait_for_the_verdict_and_a_slow_check_stalls_no_one() {
    let verifier = Arc::new(Slow {
        delay: Duration::from_millis(1000),
        never: false,
        asked: AtomicUsize::new(0),
    });
    let (server, dir) = server(verifier.clone(), Limits::default()).await;
    // One client logs in first (its check takes a second too).
    let mut early = TcpStream::connect(server.addr).await.unwrap();
    early
        .write_all(&wire(&[Frame::Name(b"early"), Frame::Pass(b"secret")]))
        .await
        .unwrap();
    assert_eq!(replies(&mut early, 2).await, [0, 0]);
    // The next pipelines everything behind its PASS.
    let mut late = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    late.write_all(&wire(&[
        Frame::Name(b"late"),
        Frame::Pass(b"secret"),
        Frame::Msg(b"one"),
        Frame::Msg(b"two"),
    ]))
    .await
    .unwrap();
    // Meanwhile the logged-in client is served without waiting.
    for i in 0..5 {
        early
            .write_all(&wire(&[Frame::Msg(format!("during {i}").as_bytes())]))
            .await
            .unwrap();
        assert_eq!(replies(&mut early, 1).await, [0]);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "a logged-in client waited for someone else's password check"
    );
    assert_eq!(replies(&mut late, 4).await, [0, 0, 0, 0]);
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(verifier.asked.load(Ordering::SeqCst), 2);
    server.stop().await.unwrap();
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    assert!(log.ends_with("[late]: one\r\n[late]: two\r\n"), "{log}");
}

//= spec/protocol.md#pass
//= type=test
//# The server MUST reply 0x00 to a PASS whose password verifies and move to state P, and MUST reject a PASS whose password does not verify.
#[tokio::test]
async fn a_refused_password_gets_0xff_and_nothing_after_it_is_logged() {
    let verifier = Arc::new(Slow {
        delay: Duration::from_millis(10),
        never: false,
        asked: AtomicUsize::new(0),
    });
    let (server, dir) = server(verifier, Limits::default()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // `A` would pass the reference's rule; this verifier wants `secret`.
    s.write_all(&wire(&[
        Frame::Name(b"u"),
        Frame::Pass(b"A"),
        Frame::Msg(b"x"),
    ]))
    .await
    .unwrap();
    assert_eq!(replies(&mut s, 2).await, [0, 0xFF]);
    server.stop().await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("messages.log")).unwrap(), b"");
}

#[tokio::test]
async fn a_check_that_never_answers_ends_at_the_handshake_timeout() {
    let verifier = Arc::new(Slow {
        delay: Duration::ZERO,
        never: true,
        asked: AtomicUsize::new(0),
    });
    let limits = Limits {
        handshake_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (server, _dir) = server(verifier, limits).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&wire(&[Frame::Name(b"u"), Frame::Pass(b"secret")]))
        .await
        .unwrap();
    assert_eq!(replies(&mut s, 2).await, [0, 0xFF]);
    server.stop().await.unwrap();
}
