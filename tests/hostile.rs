//! Hostile and broken clients: stalls, slow drips, floods past the
//! connection limit, clients that never read, idle clients.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::tcp::*;
use msglog::proto::Frame;
use msglog::server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ACK: u8 = 0x00;
const NAK: u8 = 0xFF;

/// A full well-behaved session; returns how long it took.
async fn good_session(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for f in [
        Frame::Name(b"good"),
        Frame::Pass(b"A"),
        Frame::Msg(b"still served"),
    ] {
        s.write_all(&frame(f)).await.unwrap();
        assert_eq!(read_n(&mut s, 1).await, [ACK]);
    }
    assert_eq!(exchange_until_close(&mut s, &[0x04]).await, [ACK]);
    started.elapsed()
}

//= spec/protocol.md#timeouts
//= type=test
//# The server MUST close a connection that has not completed NAME and
//# PASS within the handshake timeout, replying 0xFF.
#[tokio::test]
async fn stalled_connections_do_not_delay_others_and_are_closed_at_the_handshake_timeout() {
    rlimit::increase_nofile_limit(4096).unwrap();
    let handshake = Duration::from_secs(2);
    let server = Harness::start_with(Limits {
        handshake_timeout: handshake,
        ..Limits::default()
    })
    .await;
    let opened = Instant::now();
    let mut stalled = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        let name = frame(Frame::Name(b"stalled"));
        match i % 4 {
            0 => {}                                      // says nothing at all
            1 => s.write_all(&name[..2]).await.unwrap(), // half a NAME header
            2 => s.write_all(&name[..5]).await.unwrap(), // NAME header and part of its payload
            _ => {
                // named, then half a PASS
                s.write_all(&name).await.unwrap();
                s.write_all(&[2, 1]).await.unwrap();
            }
        }
        stalled.push((i % 4, s));
    }
    // A well-behaved client is served at once despite the 1,000 stalls.
    let mut timings: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        timings.push(good_session(server.addr()).await);
    }
    timings.sort();
    println!(
        "well-behaved session beside 1,000 stalled ones: median {:?}, max {:?}",
        timings[2], timings[4]
    );
    // Generous bound: far below the handshake timeout the stalls wait for.
    assert!(timings[2] < Duration::from_millis(1000), "{timings:?}");
    assert!(
        opened.elapsed() < handshake,
        "setup took too long for the test to mean anything"
    );

    // Every stalled connection gets 0xFF and is closed once its time is up.
    for (kind, mut s) in stalled {
        let mut got = Vec::new();
        tokio::time::timeout(handshake + Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .expect("stalled connection was not closed after the handshake timeout")
            .unwrap();
        let want: &[u8] = if kind == 3 { &[ACK, NAK] } else { &[NAK] };
        assert_eq!(got, want, "stall kind {kind}");
    }
    assert!(opened.elapsed() >= handshake);
}

//= spec/protocol.md#timeouts
//= type=test
//# The server MUST close a connection whose frame stays incomplete for
//# longer than the handshake timeout, replying 0xFF.
#[tokio::test]
async fn slow_drip_of_one_frame_is_cut_off() {
    let server = Harness::start_with(Limits {
        handshake_timeout: Duration::from_millis(600),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(&login(b"drip")).await.unwrap();
    assert_eq!(read_n(&mut s, 2).await, [ACK, ACK]);
    // After the handshake (600 ms), one byte every 150 ms of a long frame.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let msg = frame(Frame::Msg(&[b'd'; 100]));
    let started = Instant::now();
    let mut replies = Vec::new();
    for b in &msg {
        if s.write_all(std::slice::from_ref(b)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut buf = [0u8; 8];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            replies.extend_from_slice(&buf[..n]);
            if n == 0 {
                break;
            }
        }
    }
    replies.extend(read_to_end(&mut s).await);
    assert_eq!(replies, [NAK]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.log(), b"");
}

//= spec/protocol.md#limits
//= type=test
//# A server at its connection limit MUST reply 0xFF to a new
//# connection and close it, without affecting existing connections.
#[tokio::test]
async fn connection_limit_refuses_new_connections_only() {
    let server = Harness::start_with(Limits {
        max_connections: 10,
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for i in 0..10 {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        s.write_all(&login(format!("held{i}").as_bytes()))
            .await
            .unwrap();
        assert_eq!(read_n(&mut s, 2).await, [ACK, ACK]);
        held.push(s);
    }
    for i in 0..6 {
        let mut extra = TcpStream::connect(server.addr()).await.unwrap();
        if i % 2 == 1 {
            // Bytes already sent must not turn the refusal into a reset.
            extra.write_all(&login(b"extra")).await.unwrap();
        }
        assert_eq!(read_to_end(&mut extra).await, [NAK]);
    }
    // Existing connections are untouched.
    for s in &mut held {
        s.write_all(&frame(Frame::Msg(b"still here")))
            .await
            .unwrap();
        assert_eq!(read_n(s, 1).await, [ACK]);
    }
    // A freed slot is usable again.
    let mut first = held.remove(0);
    assert_eq!(exchange_until_close(&mut first, &[0x04]).await, [ACK]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        s.write_all(&login(b"newcomer")).await.unwrap();
        let mut two = [0u8; 2];
        let n = s.read(&mut two).await.unwrap();
        if n >= 1 && two[0] == ACK {
            break;
        }
        // The slot frees once the closed connection finished lingering.
        assert!(Instant::now() < deadline, "freed slot never became usable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

//= spec/protocol.md#backpressure
//= type=test
//# The server MUST NOT read more frames from a connection while
//# replies to earlier frames wait to be sent on it.
//= spec/protocol.md#backpressure
//= type=test
//# The server MAY close a connection whose client has not read its
//# waiting replies within the idle timeout.
#[tokio::test]
async fn client_that_never_reads_is_throttled_not_buffered() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_msglog"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "0",
            "--idle-timeout",
            "3",
            "--handshake-timeout",
            "2",
            "--log",
        ])
        .arg(dir.path().join("messages.log"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // Keep draining the server's diagnostics so it never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let port: u16 = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let pid = child.id();
    let rss_before = rss_kib(pid);

    // A small receive buffer so unread replies pile up quickly.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(&login(b"flood")).await.unwrap();
    let one = frame(Frame::Msg(b"0123456789abcdef0123456789abcdef"));
    let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
    // Write without reading until the server stops taking bytes.
    let mut sent = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), wr.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(e)) => panic!("write failed before the server pushed back: {e}"),
            Err(_) => break, // blocked: the server stopped reading
        }
        assert!(
            sent < 1 << 30,
            "server kept reading 1 GiB from a client that reads no reply"
        );
    }
    let rss_after = rss_kib(pid);
    println!("server took {sent} bytes from a client that never read; server RSS {rss_before} KiB -> {rss_after} KiB");
    // The server holds at most one read buffer and one batch of replies and
    // records for the connection, whatever the client sends.
    assert!(
        rss_after < rss_before + 16 * 1024,
        "server RSS grew from {rss_before} to {rss_after} KiB"
    );
    // The client that never reads is closed after the idle timeout.
    let mut replies = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => replies.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(read.is_ok(), "server never closed the non-reading client");
    // Whatever replies arrived before the close are acks (the close may be a
    // reset, as the server does not wait for a client that does not read).
    // The cut-off write left half a frame on the wire: once the client reads
    // again, that frame times out with 0xFF.
    let acks = replies.strip_suffix(&[NAK]).unwrap_or(&replies);
    assert!(acks.iter().all(|&b| b == ACK), "unexpected reply bytes");
}

//= spec/protocol.md#timeouts
//= type=test
//# The server MUST close an authenticated connection that sends nothing for
//# the idle timeout.
#[tokio::test]
async fn idle_connection_is_closed_after_the_idle_timeout() {
    let server = Harness::start_with(Limits {
        idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(&login(b"sleepy")).await.unwrap();
    let started = Instant::now();
    let replies = read_to_end(&mut s).await;
    assert_eq!(replies, [ACK, ACK]);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "closed too early: {waited:?}"
    );
}
