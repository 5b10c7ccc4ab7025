//! Every session vector in spec/vectors over TLS and over plain TCP against
//! the real server: the replies and the log are the same both ways, and
//! the vector's. Whole, frame by frame (tag / length / payload, each its own
//! TLS record), and one byte per record for the short ones.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::certs::{Ca, Validity};
use common::vectors::{self, ClosedBy, SessionVector};
use msglog::client::{ClientTls, Stream, TlsOptions};
use msglog::server::{Config, Limits, TlsFiles};
use msglog::testkit::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What one run of a vector gave: the replies and the log.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    replies: Vec<u8>,
    log: Vec<u8>,
}

async fn run(
    vector: &SessionVector,
    sizes: &[usize],
    tls: Option<(&TlsFiles, &ClientTls)>,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("messages.log");
    let defaults = Limits::default();
    let server = TestServer::start_with(Config {
        bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        log_path: log_path.clone(),
        limits: Limits {
            max_payload: vector.max_payload.unwrap_or(defaults.max_payload),
            ..defaults
        },
        tls: tls.map(|(files, _)| files.clone()),
        ..Config::default()
    })
    .await
    .unwrap();
    let stream = Stream::connect(server.addr, tls.map(|(_, client)| client))
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let send = async {
        for chunk in vectors::split(&vector.client, sizes) {
            // The server may close before the client is done: bytes after
            // the closing frame are never processed, so a failed write is
            // fine. Each chunk leaves on its own (with TLS, its own record).
            if wr.write_all(chunk).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            if sizes.len() > 1 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if vector.closed_by == ClosedBy::Client {
            let _ = wr.shutdown().await;
        }
    };
    let receive = async {
        let mut replies = Vec::new();
        // Over TLS too the server ends every session cleanly (close_notify):
        // a cut-off session would fail this read.
        tokio::time::timeout(TIMEOUT, rd.read_to_end(&mut replies))
            .await
            .unwrap_or_else(|_| panic!("{}: the server did not close", vector.id))
            .unwrap_or_else(|e| panic!("{}: connection failed: {e}", vector.id));
        replies
    };
    let ((), replies) = tokio::join!(send, receive);
    drop((rd, wr));
    tokio::time::timeout(TIMEOUT, server.stop())
        .await
        .expect("the server stops")
        .unwrap();
    Outcome {
        replies,
        log: std::fs::read(&log_path).unwrap_or_default(),
    }
}

//= spec/protocol.md#tls
//= type=test
//# Inside TLS, client and server MUST speak the protocol of this document unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vector_is_the_same_inside_tls_as_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let cert = ca.server("server", Validity::Now);
    let files = TlsFiles {
        cert: cert.cert,
        key: cert.key,
        client_ca: None,
        require_client_cert: false,
        name_from_cert: false,
    };
    let client = ClientTls::new(&TlsOptions {
        ca: Some(ca.pem.cert.clone()),
        server_name: "localhost".into(),
        ..TlsOptions::default()
    })
    .unwrap();
    let all = vectors::sessions();
    assert!(all.len() >= 40, "only {} vectors", all.len());
    for vector in &all {
        let mut ways = vec![
            ("whole", vec![vector.client.len()]),
            (
                "tag/length/payload",
                vectors::frame_part_sizes(&vector.client),
            ),
        ];
        if vector.client.len() <= 64 {
            ways.push(("one byte at a time", vec![1; vector.client.len()]));
        }
        for (way, sizes) in ways {
            let plain = run(vector, &sizes, None).await;
            let tls = run(vector, &sizes, Some((&files, &client))).await;
            assert_eq!(tls, plain, "{} ({way}): TLS and TCP differ", vector.id);
            assert_eq!(
                plain.replies, vector.replies,
                "{} ({way}): replies",
                vector.id
            );
            assert_eq!(
                String::from_utf8_lossy(&plain.log),
                String::from_utf8_lossy(&vector.log_bytes()),
                "{} ({way}): log",
                vector.id
            );
        }
    }
}
