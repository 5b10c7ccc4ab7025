//! TLS through the binaries: `msglog serve --tls-*` and `msglog send
//! --tls`: what the server's diagnostics and the client's errors say when
//! one side speaks TLS and the other does not, or a NAME is not on the
//! certificate; and a new certificate served after SIGHUP.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::certs::{Ca, Pem, Validity};
use common::process::{serve_process, signal, ServeProcess, BIN};

/// Waits (at most 10 s) for a diagnostic line containing `needle`.
fn expect_line(server: &ServeProcess, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match server.lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no diagnostic line with {needle:?} within 10 s");
}

/// `msglog send --port PORT --host 127.0.0.1 --name NAME ARGS... MESSAGE`.
fn send(port: u16, name: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["send", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--name", name, "--password", "A", "--timeout", "5"])
        .args(args)
        .arg("hello")
        .stdin(Stdio::null())
        .env_remove("MSGLOG_PASSWORD")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tls_serve_args(cert: &Pem) -> Vec<&str> {
    vec![
        "--tls-cert",
        cert.cert.to_str().unwrap(),
        "--tls-key",
        cert.key.to_str().unwrap(),
    ]
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn send_speaks_tls_and_both_sides_say_what_to_do_when_only_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let cert = ca.server("server", Validity::Now);
    let tls_server = serve_process(dir.path(), 0, &tls_serve_args(&cert));
    let plain_dir = tempfile::tempdir().unwrap();
    let plain_server = serve_process(plain_dir.path(), 0, &[]);

    let ok = send(
        tls_server.port,
        "cli",
        &["--tls", "--ca", path(&ca.pem.cert)],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    assert_eq!(log, "[cli]: hello\r\n");

    // Plaintext to the TLS port.
    let plain = send(tls_server.port, "cli", &[]);
    assert_eq!(plain.status.code(), Some(3));
    assert!(stderr(&plain).contains("add --tls"), "{}", stderr(&plain));
    let line = expect_line(&tls_server, "plaintext client on a TLS port");
    assert!(line.contains("msglog send --tls"), "{line}");

    // TLS to the plaintext port.
    let tls = send(
        plain_server.port,
        "cli",
        &["--tls", "--ca", path(&ca.pem.cert)],
    );
    assert_eq!(tls.status.code(), Some(3));
    assert!(stderr(&tls).contains("drop --tls"), "{}", stderr(&tls));
    let line = expect_line(&plain_server, "this looks like a TLS client");
    assert!(line.contains("rule=\"UnknownTag\""), "{line}");
    assert!(line.contains("--tls-cert/--tls-key"), "{line}");

    // A CA file that is not there is a usage error, said as such.
    let missing = send(
        tls_server.port,
        "cli",
        &["--tls", "--ca", "/nonexistent/ca.pem"],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("--ca"), "{}", stderr(&missing));
}

#[test]
fn a_name_not_on_the_client_certificate_is_refused_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let cert = ca.server("server", Validity::Now);
    let alice = ca.client("alice", "alice", None, Validity::Now);
    let mut args = tls_serve_args(&cert);
    args.extend([
        "--tls-client-ca",
        path(&ca.pem.cert),
        "--tls-require-client-cert",
        "--tls-name-from-cert",
    ]);
    let server = serve_process(dir.path(), 0, &args);
    let client = [
        "--tls",
        "--ca",
        path(&ca.pem.cert),
        "--cert",
        path(&alice.cert),
        "--key",
        path(&alice.key),
    ];
    let ok = send(server.port, "alice", &client);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let bob = send(server.port, "bob", &client);
    assert_eq!(bob.status.code(), Some(5));
    assert!(
        stderr(&bob).contains("certificate's names"),
        "{}",
        stderr(&bob)
    );
    let line = expect_line(&server, "NAME is not one of the client certificate's names");
    assert!(line.contains("name=bob"), "{line}");
    let line = expect_line(&server, "connection closed after 0xFF");
    assert!(line.contains("rule=\"PasswordRejected\""), "{line}");
    // Without a certificate the handshake is refused.
    let anonymous = send(server.port, "alice", &["--tls", "--ca", path(&ca.pem.cert)]);
    assert_eq!(anonymous.status.code(), Some(3));
    assert!(
        stderr(&anonymous).contains("--cert"),
        "{}",
        stderr(&anonymous)
    );
    let line = expect_line(&server, "TLS handshake failed");
    assert!(line.contains("presented no certificate"), "{line}");
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap();
    assert_eq!(log, "[alice]: hello\r\n");
}

//= spec/protocol.md#tls
//= type=test
//# On a reload of its TLS files, a server MUST keep the configuration it has if a file cannot be used.
#[test]
fn sighup_reloads_the_certificate_and_keeps_the_old_one_when_the_new_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let first_ca = Ca::new(dir.path(), "first-ca");
    let second_ca = Ca::new(dir.path(), "second-ca");
    let first = first_ca.server("first", Validity::Now);
    let second = second_ca.server("second", Validity::Now);
    // The server reads these two paths; the tests swap what is in them.
    let live = Pem {
        cert: dir.path().join("live.pem"),
        key: dir.path().join("live.key"),
    };
    let install = |pem: &Pem| {
        std::fs::copy(&pem.cert, &live.cert).unwrap();
        std::fs::copy(&pem.key, &live.key).unwrap();
    };
    install(&first);
    let server = serve_process(dir.path(), 0, &tls_serve_args(&live));
    let trusting = |ca: &Ca| send(server.port, "hup", &["--tls", "--ca", path(&ca.pem.cert)]);
    assert!(trusting(&first_ca).status.success());
    assert!(!trusting(&second_ca).status.success());

    install(&second);
    signal(&server.child, "HUP");
    expect_line(&server, "TLS certificate, key and client CA reloaded");
    let old = trusting(&first_ca);
    assert!(
        stderr(&old).contains("not signed by a CA this client trusts"),
        "{}",
        stderr(&old)
    );
    let new = trusting(&second_ca);
    assert!(new.status.success(), "{}", stderr(&new));

    // A broken certificate file: the server says why and keeps serving the
    // second certificate.
    std::fs::write(&live.cert, "not a certificate\n").unwrap();
    signal(&server.child, "HUP");
    let line = expect_line(&server, "reloading TLS failed");
    assert!(line.contains("live.pem"), "{line}");
    assert!(trusting(&second_ca).status.success());
}

//= spec/protocol.md#tls
//= type=test
//# A server MUST take a TLS session that the client ends without close_notify as an end of stream.
#[test]
fn a_tls_client_that_drops_its_socket_has_ended_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let cert = ca.server("server", Validity::Now);
    let server = serve_process(dir.path(), 0, &tls_serve_args(&cert));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use msglog::client::{ClientTls, Stream, TlsOptions};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tls = ClientTls::new(&TlsOptions {
            ca: Some(ca.pem.cert.clone()),
            server_name: "127.0.0.1".into(),
            ..TlsOptions::default()
        })
        .unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
        let mut stream = Stream::connect(addr, Some(&tls)).await.unwrap();
        stream
            .write_all(b"\x01\x01\x00a\x02\x01\x00A")
            .await
            .unwrap();
        stream.flush().await.unwrap();
        let mut replies = [0u8; 2];
        stream.read_exact(&mut replies).await.unwrap();
        assert_eq!(replies, [0, 0]);
        // Gone without a TLS shutdown: only TCP says goodbye.
    });
    let line = expect_line(&server, "connection closed");
    assert!(line.contains("reason=ClientEnded"), "{line}");
}
