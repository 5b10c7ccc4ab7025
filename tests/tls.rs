//! TLS over real TCP against the real server (spec: #tls): the good path
//! in both TLS versions, certificates the client or the server must refuse,
//! mutual TLS and the name check, a plaintext client on a TLS port and the
//! other way round, and a stalled handshake. Certificates are made fresh in
//! each test (tests/common/certs.rs).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::{Ca, Pem, Validity};
use msglog::client::{Client, ClientError, ClientTls, Options, Stream, TlsOptions};
use msglog::proto::engine::VerifyRequest;
use msglog::proto::Frame;
use msglog::server::{Config, Limits, PasswordVerifier, Peer, TlsFiles, Verdict};
use msglog::testkit::TestServer;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// A CA, a server certificate it signed, and a directory for the rest.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server: Pem,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.server("server", Validity::Now);
    Pki { dir, ca, server }
}

fn serve_files(server: &Pem) -> TlsFiles {
    TlsFiles {
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_ca: None,
        require_client_cert: false,
        name_from_cert: false,
    }
}

struct Running {
    server: TestServer,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn records(self) -> Vec<msglog::proto::Record> {
        tokio::time::timeout(WAIT, self.server.stop())
            .await
            .expect("the server stops")
            .unwrap();
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        msglog::proto::records(&bytes)
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

async fn start(tls: Option<TlsFiles>, limits: Limits) -> Running {
    start_with(Config {
        tls,
        limits,
        ..Config::default()
    })
    .await
}

async fn start_with(config: Config) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("messages.log");
    let server = TestServer::start_with(Config {
        bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        log_path: log.clone(),
        ..config
    })
    .await
    .unwrap();
    Running {
        server,
        log,
        _dir: dir,
    }
}

fn client_tls(ca: &Ca, client: Option<&Pem>, server_name: &str) -> ClientTls {
    ClientTls::new(&TlsOptions {
        ca: Some(ca.pem.cert.clone()),
        cert: client.map(|c| c.cert.clone()),
        key: client.map(|c| c.key.clone()),
        server_name: server_name.into(),
    })
    .unwrap()
}

fn options(tls: Option<ClientTls>) -> Options {
    Options {
        connect_timeout: Some(WAIT),
        reply_timeout: Some(WAIT),
        tls,
    }
}

async fn log_in(
    addr: SocketAddr,
    tls: Option<ClientTls>,
    name: &str,
    password: &str,
) -> Result<Client, ClientError> {
    Client::connect_with(addr, name, password, options(tls)).await
}

/// The advice of a TLS error, or a panic naming what came instead.
fn tls_advice(result: Result<Client, ClientError>) -> &'static str {
    match result {
        Err(ClientError::Tls { advice, .. }) => advice,
        Err(other) => panic!("expected a TLS error, got {other:?}"),
        Ok(_) => panic!("expected a TLS error, but the login succeeded"),
    }
}

//= spec/protocol.md#tls
//= type=test
//# A server that serves TLS MUST offer TLS 1.3 and TLS 1.2, and no older version.
//= spec/protocol.md#tls
//= type=test
//# Inside TLS, client and server MUST speak the protocol of this document unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_travel_inside_tls_1_2_and_1_3() {
    let pki = pki();
    let server = start(Some(serve_files(&pki.server)), Limits::default()).await;
    let addr = server.server.addr;
    for (label, version) in [
        ("1.3", &rustls::version::TLS13),
        ("1.2", &rustls::version::TLS12),
    ] {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&pki.ca.pem.cert).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tls = ClientTls::from_config(Arc::new(config), "localhost").unwrap();
        let mut client = log_in(addr, Some(tls), "tls-user", "A").await.unwrap();
        client.send(format!("over TLS {label}")).await.unwrap();
        let batch = (0..100).map(|i| format!("pipelined {label} {i}"));
        assert_eq!(client.send_pipelined(batch, 16).await.unwrap(), 100);
        client.close().await.unwrap();
    }
    let records = server.records().await;
    assert_eq!(records.len(), 202);
    assert_eq!(records[0].name, b"tls-user");
    assert_eq!(records[0].message, b"over TLS 1.3");
    assert_eq!(records[101].message, b"over TLS 1.2");
}

//= spec/protocol.md#tls
//= type=test
//# A client that speaks TLS MUST offer only TLS 1.3 and TLS 1.2, and MUST verify the server's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_server_certificate_it_cannot_verify() {
    let pki = pki();
    let other_ca = Ca::new(pki.dir.path(), "other-ca");
    let expired = pki.ca.server("expired-server", Validity::Expired);
    let good = start(Some(serve_files(&pki.server)), Limits::default()).await;
    let stale = start(Some(serve_files(&expired)), Limits::default()).await;

    let wrong_ca = log_in(
        good.server.addr,
        Some(client_tls(&other_ca, None, "localhost")),
        "u",
        "A",
    )
    .await;
    assert!(tls_advice(wrong_ca).contains("--ca"));

    let wrong_name = log_in(
        good.server.addr,
        Some(client_tls(&pki.ca, None, "logs.example.net")),
        "u",
        "A",
    )
    .await;
    assert!(tls_advice(wrong_name).contains("--tls-server-name"));

    let outdated = log_in(
        stale.server.addr,
        Some(client_tls(&pki.ca, None, "127.0.0.1")),
        "u",
        "A",
    )
    .await;
    assert!(tls_advice(outdated).contains("expired"));

    assert!(good.records().await.is_empty());
    assert!(stale.records().await.is_empty());
}

//= spec/protocol.md#tls
//= type=test
//# A server configured with a client CA MUST ask every client for a certificate and MUST refuse the connection if the client presents one that the CA did not sign or that is not valid now.
//= spec/protocol.md#tls
//= type=test
//# A server configured to require client certificates MUST refuse a client that presents none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_missing_foreign_and_expired_client_certificates() {
    let pki = pki();
    let other_ca = Ca::new(pki.dir.path(), "other-ca");
    let alice = pki.ca.client("alice", "alice", None, Validity::Now);
    let stranger = other_ca.client("stranger", "alice", None, Validity::Now);
    let expired = pki.ca.client("expired", "alice", None, Validity::Expired);
    let mut files = serve_files(&pki.server);
    files.client_ca = Some(pki.ca.pem.cert.clone());
    let optional = start(Some(files.clone()), Limits::default()).await;
    files.require_client_cert = true;
    let required = start(Some(files), Limits::default()).await;

    for server in [&optional, &required] {
        let addr = server.server.addr;
        let tls = |client| Some(client_tls(&pki.ca, client, "localhost"));
        let mut ok = log_in(addr, tls(Some(&alice)), "alice", "A").await.unwrap();
        ok.send("certified").await.unwrap();
        ok.close().await.unwrap();
        for refused in [&stranger, &expired] {
            let advice = tls_advice(log_in(addr, tls(Some(refused)), "alice", "A").await);
            assert!(
                advice.contains("refused this client's certificate"),
                "{advice}"
            );
        }
    }
    // Without a certificate: fine where it is optional, refused where not.
    let tls = || Some(client_tls(&pki.ca, None, "localhost"));
    let mut anonymous = log_in(optional.server.addr, tls(), "anon", "A")
        .await
        .unwrap();
    anonymous.send("no certificate").await.unwrap();
    let advice = tls_advice(log_in(required.server.addr, tls(), "anon", "A").await);
    assert!(advice.contains("--cert"), "{advice}");

    assert_eq!(optional.records().await.len(), 2);
    assert_eq!(required.records().await.len(), 1);
}

/// Accepts only the password `secret`.
#[derive(Debug)]
struct Secret;

impl PasswordVerifier for Secret {
    fn verify(&self, request: VerifyRequest, _peer: &Peer) -> Verdict {
        Box::pin(std::future::ready(request.password == b"secret"))
    }
}

//= spec/protocol.md#tls
//= type=test
//# A server configured to take names from client certificates MUST reject the PASS of a connection whose NAME is not exactly one of its client certificate's names, with the rule PasswordRejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_names_from_certificates_a_name_must_be_on_the_certificate() {
    let pki = pki();
    let alice = pki
        .ca
        .client("alice", "alice", Some("urn:msglog:alice"), Validity::Now);
    let mut files = serve_files(&pki.server);
    files.client_ca = Some(pki.ca.pem.cert.clone());
    files.name_from_cert = true;
    for verifier in [None, Some(Arc::new(Secret) as Arc<dyn PasswordVerifier>)] {
        let password = if verifier.is_some() { "secret" } else { "A" };
        let server = start_with(Config {
            tls: Some(files.clone()),
            verifier: verifier.clone(),
            ..Config::default()
        })
        .await;
        let addr = server.server.addr;
        let tls = |client| Some(client_tls(&pki.ca, client, "localhost"));
        // Its common name and its URI name both do.
        for name in ["alice", "urn:msglog:alice"] {
            let mut c = log_in(addr, tls(Some(&alice)), name, password)
                .await
                .unwrap();
            c.send(format!("from {name}")).await.unwrap();
            c.close().await.unwrap();
        }
        // Another name does not, nor does a prefix; nor any name without
        // a certificate.
        for (name, cert) in [
            ("bob", Some(&alice)),
            ("alic", Some(&alice)),
            ("alice", None),
        ] {
            let refused = log_in(addr, tls(cert), name, password).await.unwrap_err();
            assert!(
                matches!(refused, ClientError::PasswordRejected),
                "{name}: {refused:?}"
            );
        }
        // On the wire: NAME is accepted, PASS gets 0xFF.
        let mut raw = Stream::connect(addr, tls(Some(&alice)).as_ref())
            .await
            .unwrap();
        raw.write_all(&wire(&[
            Frame::Name(b"mallory"),
            Frame::Pass(password.as_bytes()),
        ]))
        .await
        .unwrap();
        raw.flush().await.unwrap();
        assert_eq!(read_to_end(&mut raw).await, [0x00, 0xFF]);
        // The server's own verifier still decides the password.
        if verifier.is_some() {
            let wrong = log_in(addr, tls(Some(&alice)), "alice", "A")
                .await
                .unwrap_err();
            assert!(matches!(wrong, ClientError::PasswordRejected), "{wrong:?}");
        }
        let names: Vec<_> = server.records().await.into_iter().map(|r| r.name).collect();
        assert_eq!(names, [b"alice".to_vec(), b"urn:msglog:alice".to_vec()]);
    }
}

fn wire(frames: &[Frame<'_>]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.to_bytes().unwrap()).collect()
}

async fn read_to_end(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    match tokio::time::timeout(WAIT, stream.read_to_end(&mut got)).await {
        Ok(_) => got,
        Err(_) => panic!("the server did not close within {WAIT:?}; got {got:02x?}"),
    }
}

//= spec/protocol.md#tls
//= type=test
//# A server that serves TLS MUST close a connection whose first byte does not start a TLS handshake record, and report it as a client that does not speak TLS.
//= spec/protocol.md#tls
//= type=test
//# A client that does not speak TLS and gets a TLS alert record (first byte 0x15) in answer to its NAME MUST report that the server serves TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_on_a_tls_port_gets_an_alert_and_a_clear_error() {
    let pki = pki();
    let server = start(Some(serve_files(&pki.server)), Limits::default()).await;
    let addr = server.server.addr;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&wire(&[Frame::Name(b"plain"), Frame::Pass(b"A")]))
        .await
        .unwrap();
    let got = read_to_end(&mut raw).await;
    assert_eq!(got.first(), Some(&0x15), "a TLS alert record: {got:02x?}");
    // A lone first byte is enough to tell.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&[0x01]).await.unwrap();
    assert_eq!(read_to_end(&mut raw).await.first(), Some(&0x15));

    let error = log_in(addr, None, "plain", "A").await.unwrap_err();
    assert!(matches!(error, ClientError::TlsServer), "{error:?}");
    assert!(error.to_string().contains("connect with TLS"));
    assert!(server.records().await.is_empty());
}

//= spec/protocol.md#tls
//= type=test
//# A server that does not serve TLS MUST answer a TLS handshake record as the unknown tag it is, and report it as a client that speaks TLS.
//= spec/protocol.md#tls
//= type=test
//# A client that speaks TLS and gets 0xFF in answer to its TLS handshake MUST report that the server does not serve TLS or refused the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_on_a_plaintext_port_gets_0xff_and_a_clear_error() {
    let pki = pki();
    let server = start(None, Limits::default()).await;
    let tls = client_tls(&pki.ca, None, "localhost");
    let error = log_in(server.server.addr, Some(tls), "u", "A")
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::NotTlsServer), "{error:?}");
    assert!(error.to_string().contains("connect without TLS"));
    assert!(server.records().await.is_empty());
}

//= spec/protocol.md#tls
//= type=test
//# A server MUST close a connection whose TLS handshake is not completed within the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_at_the_handshake_timeout_and_holds_its_slot_till_then() {
    let pki = pki();
    let timeout = Duration::from_millis(500);
    let server = start(
        Some(serve_files(&pki.server)),
        Limits {
            handshake_timeout: timeout,
            max_connections: 1,
            ..Limits::default()
        },
    )
    .await;
    let addr = server.server.addr;
    // The start of a TLS record, and then nothing.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03]).await.unwrap();
    // While it stalls it holds the only connection slot.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_to_end(&mut refused).await, [0xFF]);
    // A TLS client gets the same 0xFF, before any TLS, and is told both
    // what it can mean.
    let tls = client_tls(&pki.ca, None, "localhost");
    let full = log_in(addr, Some(tls), "late", "A").await.unwrap_err();
    assert!(matches!(full, ClientError::NotTlsServer), "{full:?}");
    assert!(full.to_string().contains("connection limit"), "{full}");
    let got = read_to_end(&mut stalled).await;
    assert!(started.elapsed() >= timeout, "closed before the timeout");
    assert!(got.is_empty(), "no reply without a TLS session: {got:02x?}");
    // A client that sends nothing at all is closed the same way, and then
    // the slot is free again.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(read_to_end(&mut silent).await.is_empty());
    let tls = client_tls(&pki.ca, None, "localhost");
    let mut c = log_in(addr, Some(tls), "after", "A").await.unwrap();
    c.send("the slot is free").await.unwrap();
    c.close().await.unwrap();
    assert_eq!(server.records().await.len(), 1);
}

/// The blocking client takes the same options.
#[test]
fn the_blocking_client_speaks_tls_too() {
    let pki = pki();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(start(Some(serve_files(&pki.server)), Limits::default()));
    let tls = client_tls(&pki.ca, None, "localhost");
    let mut client = msglog::client::blocking::Client::connect_with(
        server.server.addr,
        "blocking",
        "A",
        options(Some(tls)),
    )
    .unwrap();
    client.send("without a runtime").unwrap();
    assert_eq!(client.send_pipelined(["a", "b", "c"], 2).unwrap(), 3);
    client.close().unwrap();
    let records = runtime.block_on(server.records());
    assert_eq!(records.len(), 4);
    assert_eq!(records[0].message, b"without a runtime");
}
