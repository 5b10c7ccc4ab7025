//! CI smoke of `msglog bench`: a short run against an in-process server must
//! see every message acknowledged and every record in the log. No timing is
//! asserted: CI machines are too noisy for that.

mod common;

use std::time::Duration;

use common::tcp::Harness;
use msglog::proto::records;

const BIN: &str = env!("CARGO_BIN_EXE_msglog");

/// Runs `msglog bench --json` against `h` and returns its exit status and report.
async fn bench(h: &Harness, args: &[&str]) -> (std::process::ExitStatus, serde_json::Value) {
    let port = h.addr().port().to_string();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(["bench", "--host", "127.0.0.1", "--port", &port, "--json"])
            .args(["--timeout", "20"])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("msglog bench did not finish within 60 s")
    .expect("msglog bench could not be started");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout: {stdout}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_acknowledged_and_logged() {
    let h = Harness::start().await;
    let (status, report) = bench(
        &h,
        &[
            "--conns", "4", "--msgs", "2000", "--window", "8", "--size", "64",
        ],
    )
    .await;
    assert!(status.success(), "bench failed: {report}");
    assert_eq!(report["sent"], 2000, "{report}");
    assert_eq!(report["acked"], 2000, "{report}");
    assert_eq!(report["rejected"], 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["conn_errors"], 0, "{report}");
    assert!(report["latency_us"]["max"].as_f64().unwrap() > 0.0);

    // Acked means written: the log holds every record, 500 per connection.
    let log = h.log();
    let mut per_conn = std::collections::BTreeMap::new();
    for r in records(&log) {
        let r = r.expect("every record decodes");
        assert_eq!(r.message.len(), 64);
        *per_conn.entry(r.name).or_insert(0) += 1;
    }
    let expected: std::collections::BTreeMap<Vec<u8>, i32> = (0..4)
        .map(|i| (format!("bench-{i}").into_bytes(), 500))
        .collect();
    assert_eq!(per_conn, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_and_large_messages() {
    let h = Harness::start().await;
    let (status, report) = bench(
        &h,
        &[
            "--conns", "2", "--msgs", "50", "--window", "1", "--size", "65535",
        ],
    )
    .await;
    assert!(status.success(), "bench failed: {report}");
    assert_eq!(report["acked"], 50, "{report}");
    assert_eq!(records(&h.log()).count(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_is_an_error_not_a_result() {
    // Nothing listens on a port that was bound and closed again, so the bench
    // must fail with a message instead of reporting a result.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let output = tokio::process::Command::new(BIN)
        .args(["bench", "--port", &port, "--conns", "1", "--msgs", "1"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is `msglog serve` running"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_is_counted_and_fails_the_run() {
    // A fake server: accepts the login, acks three messages, rejects the fourth.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let fake = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut login = [0u8; 3 + "bench-0".len() + 3 + 1];
        s.read_exact(&mut login).await.unwrap();
        s.write_all(&[0x00, 0x00]).await.unwrap();
        for reply in [0x00, 0x00, 0x00, 0xFF] {
            let mut msg = [0u8; 3 + 8];
            s.read_exact(&mut msg).await.unwrap();
            assert_eq!(msg[..3], [3, 8, 0]);
            s.write_all(&[reply]).await.unwrap();
        }
    });
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(["bench", "--port", &port, "--json", "--conns", "1"])
            .args([
                "--msgs",
                "10",
                "--window",
                "1",
                "--size",
                "8",
                "--timeout",
                "20",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    fake.await.unwrap();
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["sent"], 4, "{report}");
    assert_eq!(report["acked"], 3, "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
}
