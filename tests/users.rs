//! Real logins against the real binary (`msglog serve --users FILE`): who
//! gets in, what a failure costs and tells, how failures are throttled,
//! that a flood of logins leaves logged-in clients their throughput, and
//! reloading on SIGHUP.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{serve_process, signal, start_serving, ServeProcess, BIN};
use common::users::{cheap, login, login_on, median_ms, message, write_users};
use msglog::server::users::default_params;
use tokio::net::TcpStream;

fn addr(server: &ServeProcess) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], server.port))
}

/// Serves with `users` (a path relative to `dir`) and `extra` options.
fn serve_users(dir: &Path, users: &str, extra: &[&str]) -> ServeProcess {
    let mut args = vec!["--users", users];
    args.extend_from_slice(extra);
    serve_process(dir, 0, &args)
}

/// The server's lines until one contains `what` (at most 20 s); all of them.
fn lines_until(server: &ServeProcess, what: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(what);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!(
                "no line with {what:?} within 20 s; saw:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Every line the server printed so far.
fn lines_now(server: &ServeProcess) -> Vec<String> {
    std::iter::from_fn(|| server.lines.recv_timeout(Duration::from_millis(200)).ok()).collect()
}

//= spec/protocol.md#authentication
//= type=test
//# With a users file, a password MUST verify exactly when the NAME is in the file and the password hashes, with the salt and parameters of the NAME's PHC string, to its hash.
//= spec/protocol.md#authentication
//= type=test
//# The server MUST NOT write a password, or a hash from the users file, to its diagnostics at any level.
#[tokio::test]
async fn only_a_known_name_with_its_password_gets_in_and_no_password_is_ever_logged() {
    let dir = tempfile::tempdir().unwrap();
    let users = [
        (b"alice".as_slice(), b"Wonderland-7".as_slice()),
        (b"b:o%b".as_slice(), b"Builder-42".as_slice()),
    ];
    write_users(&dir.path().join("users.txt"), &users, &cheap());
    let hashes = std::fs::read_to_string(dir.path().join("users.txt")).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--bind", "127.0.0.1", "--port", "0"])
        .args(["--users", "users.txt", "--login-failure-delay", "0"])
        // Everything the server library writes, at every level (the
        // binary's own start-up lines stay at info, so that the first line
        // is still the one naming the port).
        .env("RUST_LOG", "info,msglog::server=trace,msglog::proto=trace");
    let server = start_serving(dir.path(), command);
    let addr = addr(&server);

    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(login_on(&mut s, b"alice", b"Wonderland-7").await.0, [0, 0]);
    assert_eq!(message(&mut s, b"hello from alice").await, 0);
    drop(s);
    // An unknown name with a real password, someone else's password, a
    // wrong one, the reference rule's `A`, and a name that differs in case.
    for (name, password) in [
        (b"mallory".as_slice(), b"Wonderland-7".as_slice()),
        (b"alice", b"Builder-42"),
        (b"alice", b"Wonderland-8"),
        (b"alice", b"A"),
        (b"Alice", b"Wonderland-7"),
    ] {
        assert_eq!(
            login(addr, name, password).await.0,
            [0, 0xFF],
            "{name:?} with {password:?}"
        );
    }
    assert_eq!(login(addr, b"b:o%b", b"Builder-42").await.0, [0, 0]);
    let lines = lines_until(&server, "login peer=127.0.0.1:");
    let lines = [lines, lines_until(&server, "login peer=127.0.0.1:")].concat();
    let text = lines.join("\n");
    // The first failure from the address in full, the others counted and
    // reported when a login from there succeeded; names as the users file
    // writes them.
    assert!(
        text.contains("login failed peer=127.0.0.1:")
            && text.contains("name=\"mallory\" reason=\"unknown name\" failures=1"),
        "{text}"
    );
    assert!(
        text.contains("failed logins from 127.0.0.1: 4 more in the last"),
        "{text}"
    );
    assert!(text.contains("name=\"b%3Ao%25b\""), "{text}");
    let all = [text, lines_now(&server).join("\n")].join("\n");
    for secret in ["Wonderland", "Builder-42"] {
        assert!(!all.contains(secret), "a password was logged: {all}");
    }
    for hash in hashes.lines().map(|l| l.rsplit_once('$').unwrap().1) {
        assert!(!all.contains(hash), "a hash was logged");
    }
    drop(server);
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    assert_eq!(log, "[alice]: hello from alice\r\n");
}

//= spec/protocol.md#authentication
//= type=test
//# A PASS for a NAME that is not in the users file MUST cost the server the same work as a wrong password for a NAME that is.
#[tokio::test]
async fn an_unknown_name_takes_as_long_as_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    // The parameters `msglog passwd` writes: verification dominates the
    // round trip, as it does in production.
    write_users(
        &dir.path().join("users.txt"),
        &[(b"alice", b"right"), (b"bob", b"right")],
        &default_params(),
    );
    let server = serve_users(dir.path(), "users.txt", &["--login-failure-delay", "0"]);
    let addr = addr(&server);
    const N: usize = 15;
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    // Interleaved, so that a change in the machine's load hits both alike.
    for i in 0..N {
        let (replies, took) = login(addr, format!("nobody{i}").as_bytes(), b"wrong").await;
        assert_eq!(replies, [0, 0xFF]);
        unknown.push(took);
        let (replies, took) = login(addr, b"alice", b"wrong").await;
        assert_eq!(replies, [0, 0xFF]);
        wrong.push(took);
    }
    let (unknown, wrong) = (median_ms(unknown), median_ms(wrong));
    let ratio = unknown / wrong;
    println!(
        "median of {N} logins: unknown name {unknown:.2} ms, wrong password {wrong:.2} ms, ratio {ratio:.2}"
    );
    assert!(
        (0.5..=2.0).contains(&ratio),
        "an unknown name takes {unknown:.2} ms, a wrong password {wrong:.2} ms"
    );
}

//= spec/protocol.md#authentication
//= type=test
//# After a failed login from a source address, the server MUST wait before it verifies the next password from that address, longer after each further failure, until a login from there succeeds or none has failed for a while.
//= spec/protocol.md#authentication
//= type=test
//# The server MUST report each failed login with the peer's address and the name, and MUST limit how many such reports one source address can cause per interval.
#[tokio::test]
async fn each_failure_makes_the_next_login_wait_longer_until_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    write_users(
        &dir.path().join("users.txt"),
        &[(b"alice", b"right")],
        &cheap(),
    );
    let delay = Duration::from_millis(100);
    let server = serve_users(dir.path(), "users.txt", &["--login-failure-delay", "0.1"]);
    let addr = addr(&server);
    // The wait runs from the failure before, which the server records after
    // that attempt started: so from the start of one attempt to the reply
    // to the next, at least that long.
    let mut previous = Instant::now();
    let mut attempt = |password: &'static [u8]| {
        let started = Instant::now();
        let since = std::mem::replace(&mut previous, started);
        async move {
            let (replies, _) = login(addr, b"alice", password).await;
            (replies, since.elapsed())
        }
    };
    // The Nth failure waited for the N-1 before it: 0, 1, 2, 4 times the delay.
    for (n, factor) in [0, 1, 2, 4].into_iter().enumerate() {
        let (replies, span) = attempt(b"wrong").await;
        assert_eq!(replies, [0, 0xFF]);
        println!("failure {}: {:.0} ms", n + 1, span.as_secs_f64() * 1000.0);
        assert!(span >= delay * factor, "failure {}: {span:?}", n + 1);
    }
    // The right password waits its turn too (8 times), then resets.
    let (replies, span) = attempt(b"right").await;
    assert_eq!(replies, [0, 0]);
    println!("success: {:.0} ms", span.as_secs_f64() * 1000.0);
    assert!(span >= delay * 8, "{span:?}");
    let (replies, _) = login(addr, b"alice", b"wrong again").await;
    assert_eq!(replies, [0, 0xFF]);
    let lines = lines_until(&server, "waited_ms=0");
    let lines = [lines, lines_until(&server, "waited_ms=0")].concat();
    let failures: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("login failed"))
        .collect();
    // One line in full, three counted and reported when the success reset
    // the count, then a line in full again, the count starting afresh.
    assert_eq!(failures.len(), 2, "{lines:#?}");
    assert!(failures
        .iter()
        .all(|l| l.contains("failures=1 waited_ms=0")));
    assert!(failures[0].contains("peer=127.0.0.1:"));
    assert!(failures[0].contains("name=\"alice\" reason=\"wrong password\""));
    let summary = lines
        .iter()
        .position(|l| l.contains("failed logins from 127.0.0.1: 3 more in the last"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let success = lines
        .iter()
        .position(|l| l.contains("login peer="))
        .unwrap();
    assert!(summary < success, "{lines:#?}");
}

#[tokio::test]
async fn a_login_that_would_wait_past_the_handshake_timeout_gets_0xff_in_time() {
    let dir = tempfile::tempdir().unwrap();
    write_users(
        &dir.path().join("users.txt"),
        &[(b"alice", b"right")],
        &cheap(),
    );
    let server = serve_users(
        dir.path(),
        "users.txt",
        &["--login-failure-delay", "30", "--handshake-timeout", "0.5"],
    );
    let addr = addr(&server);
    assert_eq!(login(addr, b"alice", b"wrong").await.0, [0, 0xFF]);
    let (replies, took) = login(addr, b"alice", b"right").await;
    assert_eq!(replies, [0, 0xFF], "ended by the handshake timeout");
    assert!(took < Duration::from_secs(25), "waited {took:?}");
    lines_until(&server, "rule=\"HandshakeTimeout\"");
}

//= spec/protocol.md#authentication
//= type=test
//# The server MUST NOT verify passwords on the threads that serve connections, and MUST bound the number of verifications that run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_logins_leaves_logged_in_clients_their_throughput() {
    const CLIENTS: usize = 10;
    const LOGINS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    write_users(
        &dir.path().join("users.txt"),
        &[(b"alice", b"right")],
        &default_params(),
    );
    // A queue of 200 logins must not run into the handshake timeout on a
    // busy machine: this test is about the clients already logged in.
    let server = serve_users(dir.path(), "users.txt", &["--handshake-timeout", "120"]);
    let addr = addr(&server);
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(login_on(&mut s, b"alice", b"right").await.0, [0, 0]);
        let (acked, stop) = (acked.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(message(&mut s, b"tick").await, 0);
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let rate = |from: (Instant, u64)| {
        let (count, at) = (acked.load(Ordering::Relaxed), Instant::now());
        (count - from.1) as f64 / at.duration_since(from.0).as_secs_f64()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = (Instant::now(), acked.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = rate(start);

    let flood_start = (Instant::now(), acked.load(Ordering::Relaxed));
    let logins: Vec<_> = (0..LOGINS)
        .map(|_| tokio::spawn(async move { login(addr, b"alice", b"right").await.0 }))
        .collect();
    for l in logins {
        assert_eq!(l.await.unwrap(), [0, 0]);
    }
    let flood = flood_start.0.elapsed();
    let during = rate(flood_start);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let ratio = during / before;
    println!(
        "{CLIENTS} logged-in clients: {before:.0} messages acked/s before, {during:.0}/s during {LOGINS} concurrent logins ({:.2} s, {:.0} logins/s); ratio {ratio:.2}",
        flood.as_secs_f64(),
        LOGINS as f64 / flood.as_secs_f64()
    );
    // With the verifications on the connections' own threads the clients
    // would get next to nothing while the logins run; sharing two CPUs
    // with them, they keep a good part.
    assert!(
        ratio >= 0.2,
        "throughput fell from {before:.0}/s to {during:.0}/s"
    );
}

//= spec/protocol.md#authentication
//= type=test
//# On SIGHUP the server MUST read the users file again; if the file cannot be used it MUST keep the users it had and report why, naming the file and the line.
#[tokio::test]
async fn sighup_reloads_the_users_file_and_a_broken_one_keeps_the_old_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_users(
        &dir.path().join("users.txt"),
        &[(b"alice", b"right")],
        &cheap(),
    );
    let server = serve_users(dir.path(), "users.txt", &["--login-failure-delay", "0"]);
    let addr = addr(&server);
    assert_eq!(login(addr, b"bob", b"builder").await.0, [0, 0xFF]);
    let passwd = Command::new(BIN)
        .args(["passwd", "users.txt", "bob"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    passwd
        .stdin
        .as_ref()
        .unwrap()
        .write_all(b"builder\n")
        .unwrap();
    assert!(passwd.wait_with_output().unwrap().status.success());
    signal(&server.child, "HUP");
    let lines = lines_until(&server, "users file reloaded");
    assert!(lines.last().unwrap().contains("users=2"), "{lines:?}");
    assert_eq!(login(addr, b"bob", b"builder").await.0, [0, 0]);

    let mut broken = std::fs::read(&path).unwrap();
    broken.extend_from_slice(b"# carol next\ncarol=secret\n");
    std::fs::write(&path, broken).unwrap();
    signal(&server.child, "HUP");
    let lines = lines_until(&server, "stay in force");
    assert!(
        lines.last().unwrap().contains(
            "users file users.txt, line 4: no ':' after the name; a user line is NAME:PHC"
        ),
        "{lines:?}"
    );
    assert_eq!(login(addr, b"alice", b"right").await.0, [0, 0]);
    assert_eq!(login(addr, b"bob", b"builder").await.0, [0, 0]);
}

//= spec/protocol.md#authentication
//= type=test
//# A server MUST refuse a users file with a line that breaks these rules, or with two lines for the same name, and say which file, which line and what is wrong.
#[test]
fn a_malformed_or_missing_users_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_users(&dir.path().join("good.txt"), &[(b"a", b"1")], &cheap());
    let mut bad = std::fs::read(&good).unwrap();
    bad.extend_from_slice(
        b"\n  \nb:$argon2i$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n",
    );
    std::fs::write(dir.path().join("bad.txt"), bad).unwrap();
    for (file, expected) in [
        (
            "bad.txt",
            "msglog serve: users file bad.txt, line 4: the password hash is argon2i; only argon2id is accepted",
        ),
        ("missing.txt", "msglog serve: cannot read the users file missing.txt: "),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1", "--port", "0", "--users", file])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.starts_with(expected), "{stderr}");
        assert!(out.stdout.is_empty(), "it never listened");
        assert!(!dir.path().join("messages.log").exists());
    }
}

//= spec/protocol.md#authentication
//= type=test
//# Without a users file the server MUST verify passwords by the reference's rule, and MUST say when it starts, in one line, that any client can log in under any name with any password whose first byte is odd.
#[tokio::test]
async fn without_a_users_file_the_server_says_anyone_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_process(dir.path(), 0, &[]);
    let line = server.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        line.contains("WARN")
            && line.contains(
                "any client can log in under any name with any password whose first byte is odd"
            ),
        "{line}"
    );
    let addr = addr(&server);
    assert_eq!(login(addr, b"anyone", b"A").await.0, [0, 0]);
    assert_eq!(login(addr, b"anyone", b"B").await.0, [0, 0xFF]);
}

#[test]
fn login_options_need_a_users_file() {
    let out = Command::new(BIN)
        .args(["serve", "--max-verifications", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--users <FILE>"));
}
