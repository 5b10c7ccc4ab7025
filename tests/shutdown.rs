//! A stop is bounded by the shutdown timeout, whatever the clients do: a
//! client that pipelines messages and never reads its replies used to hold
//! SIGTERM off until the idle timeout (minutes by default).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::process::{serve_process, signal};

/// A client with a tiny receive buffer that sends `03 01 00 6d` (MSG "m")
/// without ever reading, until its own sends block.
fn flood_without_reading(port: u16) -> socket2::Socket {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut stream: std::net::TcpStream = socket.try_clone().unwrap().into();
    stream.write_all(&[1, 1, 0, b'u', 2, 1, 0, b'A']).unwrap();
    stream.set_nonblocking(true).unwrap();
    let msg = [3u8, 1, 0, b'm'];
    let burst: Vec<u8> = msg.iter().copied().cycle().take(4 * 1024).collect();
    let started = Instant::now();
    // Write until the socket stops taking bytes for a while: the server has
    // stopped reading because its replies wait for us.
    let mut stalled_since: Option<Instant> = None;
    // Where the next write starts within a 4-byte frame: a short write must
    // not shift the frames.
    let mut phase = 0;
    while started.elapsed() < Duration::from_secs(20) {
        match stream.write(&burst[phase..]) {
            Ok(n) => {
                phase = (phase + n) % msg.len();
                stalled_since = None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    return socket;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("the server closed on the flooding client: {e}"),
        }
    }
    panic!("the server kept reading from a client that never reads its replies");
}

//= spec/protocol.md#shutdown
//= type=test
//# On SIGINT or SIGTERM the server MUST stop accepting connections and let each connection finish the frame in progress within the shutdown timeout.
#[test]
fn sigterm_is_bounded_by_the_shutdown_timeout_when_a_client_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_process(
        dir.path(),
        0,
        &["--idle-timeout", "30", "--shutdown-timeout", "2"],
    );
    let _client = flood_without_reading(server.port);
    let stopped_at = Instant::now();
    signal(&server.child, "TERM");
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(15),
            "still running 15 s after SIGTERM with a 2 s shutdown timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = stopped_at.elapsed();
    assert!(status.success(), "exit status {status}");
    // The shutdown timeout, then at most the close linger (2 s): never the
    // 30 s idle timeout.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("stopped {took:?} after SIGTERM");
    while let Ok(line) = server.lines.try_recv() {
        eprintln!("server: {line}");
    }
    // Every acknowledged message the client could have seen is in the log.
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    assert!(log.lines().all(|l| l == "[u]: m"));
}
