//! The client library and `msglog send` against the real server, in-process
//! on 127.0.0.1, plus scripted listeners for what a real server never does
//! (stay silent, answer garbage) and to see the exact bytes a client sends.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use common::tcp::Harness;
use msglog::client::{self, Client, ClientError, Operation, Options, PipelineError};
use msglog::proto::Record;
use msglog::server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Upper bound on every wait in these tests.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("test step took longer than its bound")
}

fn rec(name: &[u8], message: &[u8]) -> Record {
    Record {
        name: name.to_vec(),
        message: message.to_vec(),
    }
}

fn short_timeouts() -> Options {
    Options {
        connect_timeout: Some(Duration::from_secs(5)),
        reply_timeout: Some(Duration::from_millis(300)),
        tls: None,
    }
}

/// A listener that accepts one connection and runs `script` on it.
async fn scripted<F, Fut, T>(script: F) -> (SocketAddr, JoinHandle<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(stream).await
    });
    (addr, task)
}

async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    bounded(stream.read_exact(&mut buf)).await.unwrap();
    buf
}

/// Everything the peer sends until it ends its stream.
async fn read_rest(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    bounded(stream.read_to_end(&mut buf)).await.unwrap();
    buf
}

// --- The async client against the real server ---

#[tokio::test]
async fn connect_send_close_writes_exact_records() {
    let h = Harness::start().await;
    let mut c = bounded(Client::connect(h.addr(), "MyUser", "A"))
        .await
        .unwrap();
    bounded(c.send("Hello!")).await.unwrap();
    bounded(c.send("wörld, ünïcode ✓")).await.unwrap();
    bounded(c.send(b"\x00binary\xff\r\n[admin]: forged".as_slice()))
        .await
        .unwrap();
    bounded(c.close()).await.unwrap();
    assert_eq!(
        h.records(),
        [
            rec(b"MyUser", b"Hello!"),
            rec(b"MyUser", "wörld, ünïcode ✓".as_bytes()),
            rec(b"MyUser", b"\x00binary\xff\r\n[admin]: forged"),
        ]
    );
}

#[tokio::test]
async fn non_ascii_and_binary_names_and_passwords() {
    let h = Harness::start().await;
    // 'É' is C3 89 in UTF-8: the first byte is odd, so it is a valid password.
    let mut c = bounded(Client::connect(h.addr(), "Zoë ]x", "É"))
        .await
        .unwrap();
    bounded(c.send("ok")).await.unwrap();
    bounded(c.close()).await.unwrap();
    let mut c = bounded(Client::connect(h.addr(), b"\xfe\x00raw".as_slice(), [1u8]))
        .await
        .unwrap();
    bounded(c.send("ok")).await.unwrap();
    bounded(c.close()).await.unwrap();
    assert_eq!(
        h.records(),
        [rec("Zoë ]x".as_bytes(), b"ok"), rec(b"\xfe\x00raw", b"ok")]
    );
}

#[tokio::test]
async fn pipelined_send_acknowledges_every_message_in_order() {
    let h = Harness::start().await;
    let mut c = bounded(Client::connect(h.addr(), "pipe", "A"))
        .await
        .unwrap();
    let messages: Vec<String> = (0..2000).map(|i| format!("message {i}")).collect();
    let acked = bounded(c.send_pipelined(&messages, 64)).await.unwrap();
    assert_eq!(acked, 2000);
    // Window 0 is taken as 1, a huge window as MAX_WINDOW: both still work.
    assert_eq!(bounded(c.send_pipelined(["w0"], 0)).await.unwrap(), 1);
    assert_eq!(
        bounded(c.send_pipelined(vec!["big"; 3000], usize::MAX))
            .await
            .unwrap(),
        3000
    );
    // An empty batch acknowledges nothing and leaves the connection usable.
    assert_eq!(
        bounded(c.send_pipelined(Vec::<&[u8]>::new(), 8))
            .await
            .unwrap(),
        0
    );
    bounded(c.close()).await.unwrap();

    let records = h.records();
    assert_eq!(records.len(), 5001);
    for (i, r) in records[..2000].iter().enumerate() {
        assert_eq!(*r, rec(b"pipe", format!("message {i}").as_bytes()));
    }
    assert_eq!(records[2000], rec(b"pipe", b"w0"));
    assert!(records[2001..].iter().all(|r| *r == rec(b"pipe", b"big")));
}

#[tokio::test]
async fn many_clients_at_once() {
    let h = Harness::start().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let addr = h.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr, format!("user{i}"), "A").await?;
            c.send(format!("hello from {i}")).await?;
            c.close().await
        }));
    }
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
    let mut got: Vec<_> = h
        .records()
        .into_iter()
        .map(|r| (r.name, r.message))
        .collect();
    got.sort();
    let mut want: Vec<_> = (0..20)
        .map(|i| {
            (
                format!("user{i}").into_bytes(),
                format!("hello from {i}").into_bytes(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn password_b_is_rejected() {
    let h = Harness::start().await;
    for password in [&b"B"[..], b"BAAA", b""] {
        let err = bounded(Client::connect(h.addr(), "u", password))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::PasswordRejected), "{err:?}");
    }
    assert_eq!(h.stop().await, []);
}

#[tokio::test]
async fn bad_names_are_rejected() {
    let h = Harness::start().await;
    for name in [&b""[..], b"\x00name"] {
        let err = bounded(Client::connect(h.addr(), name, "A"))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::NameRejected), "{err:?}");
    }
}

#[tokio::test]
async fn server_at_its_connection_limit_is_refused_not_name_rejected() {
    let h = Harness::start_with(Limits {
        max_connections: 1,
        ..Limits::default()
    })
    .await;
    let mut first = bounded(Client::connect(h.addr(), "first", "A"))
        .await
        .unwrap();
    let err = bounded(Client::connect(h.addr(), "second", "A"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Refused), "{err:?}");
    // The refusal does not affect the connection that holds the slot.
    bounded(first.send("still here")).await.unwrap();
    bounded(first.close()).await.unwrap();
    assert_eq!(h.stop().await, [rec(b"first", b"still here")]);
}

#[tokio::test]
async fn empty_message_is_rejected_and_the_connection_is_then_closed() {
    let h = Harness::start().await;
    let mut c = bounded(Client::connect(h.addr(), "u", "A")).await.unwrap();
    bounded(c.send("before")).await.unwrap();
    let err = bounded(c.send("")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::MessageRejected { index: 0 }),
        "{err:?}"
    );
    // Later calls fail at once, without touching the socket.
    let err = bounded(c.send("after")).await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectionClosed), "{err:?}");
    let err = bounded(c.close()).await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectionClosed), "{err:?}");
    assert_eq!(h.stop().await, [rec(b"u", b"before")]);
}

#[tokio::test]
async fn pipelined_rejection_names_the_message_and_nothing_after_it_is_logged() {
    let h = Harness::start().await;
    let mut c = bounded(Client::connect(h.addr(), "u", "A")).await.unwrap();
    let batch = ["a", "b", "", "d", "e"];
    let PipelineError {
        acknowledged,
        error,
    } = bounded(c.send_pipelined(batch, 8)).await.unwrap_err();
    assert_eq!(acknowledged, 2);
    assert!(
        matches!(error, ClientError::MessageRejected { index: 2 }),
        "{error:?}"
    );
    drop(c);
    assert_eq!(h.stop().await, [rec(b"u", b"a"), rec(b"u", b"b")]);
}

//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST NOT send a payload longer than 65535 bytes.
#[tokio::test]
async fn too_long_message_is_refused_before_sending_and_the_connection_stays_usable() {
    let h = Harness::start().await;
    let mut c = bounded(Client::connect(h.addr(), "u", "A")).await.unwrap();
    let longest = vec![b'x'; 65535];
    let too_long = vec![b'y'; 65536];

    let err = bounded(c.send(&too_long)).await.unwrap_err();
    assert!(
        matches!(err, ClientError::MessageTooLong { len: 65536 }),
        "{err:?}"
    );
    bounded(c.send(&longest)).await.unwrap();

    // In a batch: the ones before it are acknowledged, it and the rest are
    // not sent, and the connection goes on.
    let batch = [&b"first"[..], &too_long, b"never sent"];
    let err = bounded(c.send_pipelined(batch, 8)).await.unwrap_err();
    assert_eq!(err.acknowledged, 1);
    assert!(
        matches!(err.error, ClientError::MessageTooLong { len: 65536 }),
        "{err:?}"
    );
    bounded(c.send("last")).await.unwrap();
    bounded(c.close()).await.unwrap();
    assert_eq!(
        h.stop().await,
        [rec(b"u", &longest), rec(b"u", b"first"), rec(b"u", b"last")]
    );
}

#[tokio::test]
async fn too_long_name_or_password_fails_without_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let long = vec![b'A'; 65536];
    let err = bounded(Client::connect(addr, &long, "A"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::NameTooLong { len: 65536 }),
        "{err:?}"
    );
    let err = bounded(Client::connect(addr, "u", &long))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::PasswordTooLong { len: 65536 }),
        "{err:?}"
    );
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the client connected anyway");
}

#[tokio::test]
async fn server_gone_is_connection_closed_or_io() {
    let h = Harness::start().await;
    let addr = h.addr();
    let mut c = bounded(Client::connect(addr, "u", "A")).await.unwrap();
    bounded(c.send("one")).await.unwrap();
    assert_eq!(h.stop().await, [rec(b"u", b"one")]);

    let err = bounded(c.send("two")).await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectionClosed), "{err:?}");
    // Nobody listens there any more.
    let err = bounded(Client::connect(addr, "u", "A")).await.unwrap_err();
    match err {
        ClientError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected Io(ConnectionRefused), got {other:?}"),
    }
}

#[tokio::test]
async fn idle_close_by_the_server_is_noticed_before_sending() {
    let h = Harness::start_with(Limits {
        idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut c = bounded(Client::connect(h.addr(), "u", "A")).await.unwrap();
    bounded(c.send("early")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let err = bounded(c.send_pipelined(["late"], 4)).await.unwrap_err();
    assert_eq!(err.acknowledged, 0);
    assert!(
        matches!(err.error, ClientError::ConnectionClosed),
        "{err:?}"
    );
    assert_eq!(h.stop().await, [rec(b"u", b"early")]);
}

// --- Scripted listeners: the bytes on the wire, silence, garbage ---

//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST send NAME first, then PASS, then its MSG frames, and it can send CLOSE at any point.
//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST set the tag of each frame to the one the current state expects.
//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST set the length field to the number of payload bytes that follow it, counted in encoded bytes, not characters.
//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST send CLOSE as the single byte 0x04.
#[tokio::test]
async fn bytes_on_the_wire() {
    let (addr, server) = scripted(|mut s| async move {
        let mut seen = Vec::new();
        // NAME "Zoë" is 4 bytes, PASS "A", MSG "wörld" 6 bytes, then CLOSE.
        for len in [3 + 4, 3 + 1, 3 + 6, 1] {
            seen.extend(read_exact(&mut s, len).await);
            s.write_all(&[0x00]).await.unwrap();
        }
        seen.extend(read_rest(&mut s).await);
        seen
    })
    .await;
    let mut c = bounded(Client::connect(addr, "Zoë", "A")).await.unwrap();
    bounded(c.send("wörld")).await.unwrap();
    bounded(c.close()).await.unwrap();
    let mut want = vec![1, 4, 0];
    want.extend("Zoë".as_bytes());
    want.extend([2, 1, 0, b'A', 3, 6, 0]);
    want.extend("wörld".as_bytes());
    want.push(4);
    assert_eq!(bounded(server).await.unwrap(), want);
}

//= spec/protocol.md#client-requirements
//= type=test
//# A client MUST NOT send anything on a connection after it has received 0xFF.
#[tokio::test]
async fn nothing_is_sent_after_a_rejection() {
    let (addr, server) = scripted(|mut s| async move {
        read_exact(&mut s, 3 + 1).await;
        s.write_all(&[0x00]).await.unwrap();
        read_exact(&mut s, 3 + 1).await;
        s.write_all(&[0x00]).await.unwrap();
        read_exact(&mut s, 3 + 1).await;
        s.write_all(&[0xFF]).await.unwrap();
        // Everything the client sends from here until it hangs up.
        read_rest(&mut s).await
    })
    .await;
    let mut c = bounded(Client::connect(addr, "u", "A")).await.unwrap();
    let err = bounded(c.send("x")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::MessageRejected { index: 0 }),
        "{err:?}"
    );
    assert!(matches!(
        bounded(c.send("y")).await,
        Err(ClientError::ConnectionClosed)
    ));
    assert!(matches!(
        bounded(c.send_pipelined(["z"], 4)).await,
        Err(PipelineError {
            acknowledged: 0,
            error: ClientError::ConnectionClosed
        })
    ));
    assert!(matches!(
        bounded(c.close()).await,
        Err(ClientError::ConnectionClosed)
    ));
    assert_eq!(bounded(server).await.unwrap(), b"");
}

#[tokio::test]
async fn silent_listener_times_out_during_login() {
    let (addr, server) = scripted(|mut s| async move {
        // Read NAME, never answer; hold the connection until the client leaves.
        read_rest(&mut s).await
    })
    .await;
    let started = std::time::Instant::now();
    let err = bounded(Client::connect_with(addr, "u", "A", short_timeouts()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                during: Operation::Name,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Only NAME was sent; the client did not go on to PASS.
    assert_eq!(bounded(server).await.unwrap(), [1, 1, 0, b'u']);
}

#[tokio::test]
async fn silent_listener_times_out_during_messages_and_the_client_is_then_unusable() {
    let (addr, server) = scripted(|mut s| async move {
        read_exact(&mut s, 4).await;
        s.write_all(&[0x00]).await.unwrap();
        read_exact(&mut s, 4).await;
        s.write_all(&[0x00]).await.unwrap();
        read_rest(&mut s).await
    })
    .await;
    let mut c = bounded(Client::connect_with(addr, "u", "A", short_timeouts()))
        .await
        .unwrap();
    let err = bounded(c.send_pipelined(["a", "b"], 8)).await.unwrap_err();
    assert_eq!(err.acknowledged, 0);
    assert!(
        matches!(
            err.error,
            ClientError::Timeout {
                during: Operation::Message,
                after
            } if after == Duration::from_millis(300)
        ),
        "{err:?}"
    );
    assert!(matches!(
        bounded(c.send("c")).await,
        Err(ClientError::ConnectionClosed)
    ));
    drop(c);
    // Both frames of the batch went out before the wait; "c" did not.
    assert_eq!(
        bounded(server).await.unwrap(),
        [3, 1, 0, b'a', 3, 1, 0, b'b']
    );
}

#[tokio::test]
async fn reply_that_is_not_a_reply_byte() {
    let (addr, _server) = scripted(|mut s| async move {
        read_exact(&mut s, 4).await;
        s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await
            .unwrap();
        read_rest(&mut s).await
    })
    .await;
    let err = bounded(Client::connect(addr, "u", "A")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::UnexpectedReply { byte: b'H' }),
        "{err:?}"
    );
}

#[tokio::test]
async fn listener_that_hangs_up_is_connection_closed() {
    let (addr, _server) = scripted(|s| async move { drop(s) }).await;
    let err = bounded(Client::connect(addr, "u", "A")).await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectionClosed), "{err:?}");
}

// --- The blocking client ---

#[test]
fn blocking_client_against_the_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let h = runtime.block_on(Harness::start());
    let addr = h.addr();
    // The blocking client runs on a thread of its own, as in a program
    // without a runtime.
    let result = std::thread::spawn(move || {
        let mut c = client::blocking::Client::connect(addr, "sync", "A")?;
        c.send("one")?;
        let n = c.send_pipelined(["two", "three"], 2)?;
        c.close()?;
        let rejected = client::blocking::Client::connect(addr, "sync", "B").err();
        let mut c = client::blocking::Client::connect_with(addr, "sync", "A", Options::default())?;
        let too_long = c.send(vec![0u8; 70_000]).err();
        let empty = c.send_pipelined(["four", ""], 2).err();
        Ok::<_, ClientError>((n, rejected, too_long, empty))
    })
    .join()
    .unwrap();
    let (n, rejected, too_long, empty) = result.unwrap();
    assert_eq!(n, 2);
    assert!(matches!(rejected, Some(ClientError::PasswordRejected)));
    assert!(matches!(
        too_long,
        Some(ClientError::MessageTooLong { len: 70_000 })
    ));
    assert!(matches!(
        empty,
        Some(PipelineError {
            acknowledged: 1,
            error: ClientError::MessageRejected { index: 1 }
        })
    ));
    assert_eq!(
        runtime.block_on(h.stop()),
        [
            rec(b"sync", b"one"),
            rec(b"sync", b"two"),
            rec(b"sync", b"three"),
            rec(b"sync", b"four")
        ]
    );
}

// --- `msglog send`, the built binary ---

const EXIT_CONNECTION_FAILED: i32 = 3;
const EXIT_NAME_REJECTED: i32 = 4;
const EXIT_PASSWORD_REJECTED: i32 = 5;
const EXIT_MESSAGE_REJECTED: i32 = 6;

/// `msglog send` with `args`, no MSGLOG_* variables but `env`, and `stdin`
/// as its standard input.
fn send_command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_msglog"));
    cmd.arg("send").args(args);
    for var in ["MSGLOG_HOST", "MSGLOG_PORT", "MSGLOG_PASSWORD"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run_send(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = send_command(args, env).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    bounded(child.wait_with_output()).await.unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn port_args(h: &Harness) -> Vec<String> {
    vec![
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        h.addr().port().to_string(),
    ]
}

fn args<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

#[tokio::test]
async fn send_arguments_exit_0() {
    let h = Harness::start().await;
    let base = port_args(&h);
    let out = run_send(
        &args(&base, &["--name", "cli", "--password", "A", "one", "twö"]),
        &[],
        b"ignored: arguments were given",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(
        h.stop().await,
        [rec(b"cli", b"one"), rec(b"cli", "twö".as_bytes())]
    );
}

#[tokio::test]
async fn send_stdin_lines_with_settings_from_the_environment() {
    let h = Harness::start().await;
    let port = h.addr().port().to_string();
    let env = [
        ("MSGLOG_HOST", "127.0.0.1"),
        ("MSGLOG_PORT", port.as_str()),
        ("MSGLOG_PASSWORD", "C"),
    ];
    // LF and CR LF endings, an empty line (skipped), a last line without
    // newline, bytes that are not UTF-8.
    let out = run_send(
        &["--name", "stdin"],
        &env,
        b"first\nsecond\r\n\nthird \xff\r\nlast",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        h.stop().await,
        [
            rec(b"stdin", b"first"),
            rec(b"stdin", b"second"),
            rec(b"stdin", b"third \xff"),
            rec(b"stdin", b"last"),
        ]
    );
}

#[tokio::test]
async fn send_many_stdin_lines_pipelined() {
    let h = Harness::start().await;
    let base = port_args(&h);
    let input: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    let out = run_send(
        &args(&base, &["--name", "bulk", "--password", "A"]),
        &[],
        input.as_bytes(),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records = h.stop().await;
    assert_eq!(records.len(), 5000);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(*r, rec(b"bulk", format!("line {i}").as_bytes()));
    }
}

#[tokio::test]
async fn send_lines_as_they_arrive_and_reconnect_after_an_idle_close() {
    let h = Harness::start_with(Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let base = port_args(&h);
    let mut child = send_command(&args(&base, &["--name", "tail", "--password", "A"]), &[])
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"first\n").await.unwrap();
    // Each line is logged while the input stays open, like `tail -f`.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while h.records().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first line never logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Longer than the idle timeout: the server closes the connection.
    tokio::time::sleep(Duration::from_millis(900)).await;
    input.write_all(b"second\n").await.unwrap();
    drop(input);
    let out = bounded(child.wait_with_output()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        h.stop().await,
        [rec(b"tail", b"first"), rec(b"tail", b"second")]
    );
}

#[tokio::test]
async fn send_exit_codes() {
    let h = Harness::start().await;
    let base = port_args(&h);

    let out = run_send(
        &args(&base, &["--name", "u", "--password", "B", "x"]),
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(EXIT_PASSWORD_REJECTED));
    assert!(
        stderr(&out).contains("rejected the password"),
        "{}",
        stderr(&out)
    );

    let out = run_send(
        &args(&base, &["--name", "", "--password", "A", "x"]),
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(EXIT_NAME_REJECTED));
    assert!(
        stderr(&out).contains("rejected the name"),
        "{}",
        stderr(&out)
    );

    let out = run_send(
        &args(
            &base,
            &["--name", "u", "--password", "A", "kept", "", "not sent"],
        ),
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(EXIT_MESSAGE_REJECTED));
    assert!(
        stderr(&out).contains("message 2 (argument 2)"),
        "{}",
        stderr(&out)
    );

    let mut input = b"ok\n".to_vec();
    input.extend(vec![b'x'; 70_000]);
    input.extend(b"\nafter\n");
    let out = run_send(
        &args(&base, &["--name", "u", "--password", "A"]),
        &[],
        &input,
    )
    .await;
    assert_eq!(out.status.code(), Some(EXIT_MESSAGE_REJECTED));
    assert!(
        stderr(&out).contains("line 2 of standard input"),
        "{}",
        stderr(&out)
    );

    // Usage error: no password anywhere.
    let out = run_send(&args(&base, &["--name", "u", "x"]), &[], b"").await;
    assert_eq!(out.status.code(), Some(2));

    assert_eq!(h.stop().await, [rec(b"u", b"kept"), rec(b"u", b"ok")]);
}

#[tokio::test]
async fn send_connection_failure_exit_code() {
    // A port nobody listens on: bind, note it, and let it go.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let out = run_send(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--name",
            "u",
            "--password",
            "A",
            "x",
        ],
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(EXIT_CONNECTION_FAILED));
    let err = stderr(&out);
    assert!(
        err.contains("could not connect") && err.contains("msglog serve"),
        "{err}"
    );
}

#[tokio::test]
async fn send_connection_refused_by_a_full_server_exit_code() {
    let h = Harness::start_with(Limits {
        max_connections: 1,
        ..Limits::default()
    })
    .await;
    let holder = bounded(Client::connect(h.addr(), "holder", "A"))
        .await
        .unwrap();
    let base = port_args(&h);
    let out = run_send(
        &args(&base, &["--name", "u", "--password", "A", "x"]),
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(EXIT_CONNECTION_FAILED));
    assert!(
        stderr(&out).contains("refused the connection"),
        "{}",
        stderr(&out)
    );
    bounded(holder.close()).await.unwrap();
    assert_eq!(h.stop().await, []);
}
