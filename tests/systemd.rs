//! systemd's readiness protocol against the real binary: a test binds the
//! notification socket itself (a path, or an abstract name), starts
//! `msglog serve` with NOTIFY_SOCKET pointing at it, and reads what arrives.

mod common;

use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::blocking::Client;
use common::process::{signal, start_serving, ServeProcess, BIN};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `msglog serve` on 127.0.0.1 with NOTIFY_SOCKET set, on its own
/// thread: the caller reads the notifications meanwhile, without waiting
/// for the server's first line.
fn start(dir: &Path, notify_socket: OsString) -> std::thread::JoinHandle<ServeProcess> {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--bind", "127.0.0.1", "0"])
        .env("NOTIFY_SOCKET", notify_socket);
    let dir = dir.to_owned();
    std::thread::spawn(move || start_serving(&dir, command))
}

/// The next notification that is more than a STATUS refresh.
fn next(socket: &UnixDatagram) -> Vec<String> {
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    loop {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("no notification within 10 s");
        let lines: Vec<String> = std::str::from_utf8(&buf[..n])
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        if !lines.iter().all(|l| l.starts_with("STATUS=")) {
            return lines;
        }
    }
}

fn value<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// The port a READY=1 notification's STATUS names.
fn port_in_status(ready: &[String]) -> u16 {
    let status = value(ready, "STATUS").expect("READY=1 comes with a STATUS");
    status
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("STATUS names no address: {status}"))
}

#[test]
fn ready_once_serving_reloading_around_sighup_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let starting = start(dir.path(), path.into_os_string());

    // READY=1 is the first notification, and when it arrives the port
    // takes connections and the log takes messages.
    let ready = next(&socket);
    assert_eq!(value(&ready, "READY"), Some("1"), "{ready:?}");
    let port = port_in_status(&ready);
    let mut client = Client::login(port, "early").expect("READY=1 before the port accepts");
    assert_eq!(client.send(b"ready means ready"), Some(0));
    let mut server = starting.join().unwrap();
    assert_eq!(server.port, port);

    // A SIGHUP reopen: RELOADING=1 with the monotonic clock, then READY=1.
    let mut clocks = Vec::new();
    for _ in 0..2 {
        signal(&server.child, "HUP");
        let reloading = next(&socket);
        assert_eq!(value(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
        let usec: u64 = value(&reloading, "MONOTONIC_USEC")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
        clocks.push(usec);
        let done = next(&socket);
        assert_eq!(value(&done, "READY"), Some("1"), "{done:?}");
        assert!(
            value(&done, "STATUS").is_some_and(|s| s.contains("log reopened")),
            "{done:?}"
        );
    }
    assert!(clocks[0] > 0 && clocks[1] > clocks[0], "{clocks:?}");

    // SIGTERM: STOPPING=1, then a clean exit.
    signal(&server.child, "TERM");
    let stopping = next(&socket);
    assert_eq!(value(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    drop(client);
    let status = wait(&mut server);
    assert!(status.success(), "{status}");
}

#[test]
fn an_abstract_socket_name_is_notified_too() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!(
        "msglog-test-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    );
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    let mut server = start(dir.path(), format!("@{name}").into()).join().unwrap();
    let ready = next(&socket);
    assert_eq!(value(&ready, "READY"), Some("1"), "{ready:?}");
    assert_eq!(port_in_status(&ready), server.port);
    signal(&server.child, "INT");
    assert_eq!(value(&next(&socket), "STOPPING"), Some("1"));
    assert!(wait(&mut server).success());
}

#[test]
fn a_notify_socket_it_cannot_use_is_reported_and_serving_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "vsock:2:9999".into()).join().unwrap();
    let mut client = Client::login(server.port, "still").expect("the server does not serve");
    assert_eq!(client.send(b"served anyway"), Some(0));
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let line = server
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("no line says NOTIFY_SOCKET cannot be used");
        if line.contains("NOTIFY_SOCKET=\"vsock:2:9999\"") {
            assert!(line.contains("ERROR"), "{line}");
            break;
        }
    }
}

/// Waits (at most 10 s) for the server to exit.
fn wait(server: &mut ServeProcess) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
