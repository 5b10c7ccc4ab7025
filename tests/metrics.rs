//! `msglog serve --metrics`: what a real server reports over HTTP matches
//! what its clients did, /readyz follows the log's health, and the endpoint
//! answers only what it knows. These run `msglog serve` as a process and
//! scrape it with a real HTTP client.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::blocking::{bytes_of, Client, SmallFs};
use common::process::{serve_process, signal, ServeProcess, BIN};
use msglog::proto::Frame;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A server with its metrics endpoint, whose base URL it printed.
struct Served {
    server: ServeProcess,
    base: String,
}

fn serve_with_metrics(dir: &Path, extra: &[&str]) -> Served {
    let mut args = vec!["--metrics", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = serve_process(dir, 0, &args);
    // The line naming the metrics address comes right after the first one,
    // before any diagnostic.
    let line = server
        .lines
        .recv_timeout(TIMEOUT)
        .expect("no line naming the metrics address");
    let base = line
        .strip_prefix("msglog metrics on ")
        .and_then(|rest| rest.split("/metrics").next())
        .unwrap_or_else(|| panic!("unexpected second line: {line}"))
        .to_owned();
    Served { server, base }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into()
}

/// GET `path`: the status and the body.
fn get(base: &str, path: &str) -> (u16, String) {
    let mut response = agent().get(format!("{base}{path}")).call().unwrap();
    let body = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), body)
}

fn scrape(base: &str) -> String {
    let (status, body) = get(base, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `name` (labels included, as written).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{metrics}"))
}

/// Reads until the server closes: by then it has counted how the
/// connection ended.
fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    rest
}

fn wait_for_line(server: &ServeProcess, needle: &str) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Ok(line) = server.lines.recv_timeout(Duration::from_millis(100)) {
            if line.contains(needle) {
                return;
            }
        }
    }
    panic!("the server never printed {needle:?}");
}

/// Connects and sends `frames`, connecting again while the server refuses
/// the connection (at --max-connections, until the slot of a connection
/// that just closed is free again); counts those refusals. Returns the
/// stream and the first reply.
fn session(port: u16, frames: &[Frame], refusals: &mut u64) -> (TcpStream, u8) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        // A refused connection may be closed before this arrives.
        let _ = stream.write_all(&bytes_of(frames));
        let mut first = [0u8];
        stream.read_exact(&mut first).unwrap();
        // Refused: 0xFF before anything else, then the close. (A rejected
        // frame gets 0xFF too, but only after NAME's 0x00.)
        if first[0] == 0xFF && frames.first().is_some_and(|f| matches!(f, Frame::Name(_))) {
            assert!(read_to_end(&mut stream).is_empty());
            *refusals += 1;
            assert!(
                std::time::Instant::now() < deadline,
                "no connection slot came free"
            );
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return (stream, first[0]);
    }
}

fn login(name: &str) -> [Frame<'_>; 2] {
    [Frame::Name(name.as_bytes()), Frame::Pass(b"A")]
}

#[test]
fn counters_match_what_the_clients_did() {
    const MESSAGES: usize = 25;
    const SIZE: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let Served { server, base } =
        serve_with_metrics(dir.path(), &["--max-connections", "3", "--fsync"]);
    let port = server.port;
    let mut refusals = 0;

    // N messages of M bytes, then CLOSE.
    let (stream, first) = session(port, &login("writer"), &mut refusals);
    assert_eq!(first, 0);
    let mut writer = Client(stream);
    assert_eq!(writer.reply(), Some(0));
    for i in 0..MESSAGES {
        let body = format!("{i:03}{}", "m".repeat(SIZE - 3));
        assert_eq!(writer.send(body.as_bytes()), Some(0));
    }
    writer.0.write_all(&bytes_of(&[Frame::Close])).unwrap();
    assert_eq!(writer.reply(), Some(0));
    read_to_end(&mut writer.0);
    drop(writer);

    // A PASS the server rejects.
    let (mut rejected, first) = session(
        port,
        &[Frame::Name(b"eve"), Frame::Pass(b"B")],
        &mut refusals,
    );
    assert_eq!(first, 0x00);
    assert_eq!(read_to_end(&mut rejected), [0xFF]);
    drop(rejected);

    // Three connections fill --max-connections; the fourth is refused.
    let holders: Vec<Client> = (0..3)
        .map(|i| {
            let (holder, first) = session(port, &login(&format!("h{i}")), &mut refusals);
            let mut holder = Client(holder);
            assert_eq!((first, holder.reply()), (0, Some(0)));
            holder
        })
        .collect();
    let mut over = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(read_to_end(&mut over), [0xFF]);
    refusals += 1;

    let metrics = scrape(&base);
    assert_eq!(sample(&metrics, "msglog_connections_open"), 3.0);
    assert_eq!(sample(&metrics, "msglog_connections_accepted_total"), 5.0);
    assert_eq!(
        sample(&metrics, "msglog_connections_refused_total"),
        refusals as f64
    );
    assert_eq!(sample(&metrics, "msglog_logins_accepted_total"), 4.0);
    assert_eq!(sample(&metrics, "msglog_logins_rejected_total"), 1.0);
    assert_eq!(
        sample(&metrics, "msglog_messages_appended_total"),
        MESSAGES as f64
    );
    assert_eq!(
        sample(&metrics, "msglog_messages_appended_payload_bytes_total"),
        (MESSAGES * SIZE) as f64
    );
    assert_eq!(
        sample(
            &metrics,
            r#"msglog_rejections_total{rule="PasswordRejected"}"#
        ),
        1.0
    );
    let rejections: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("msglog_rejections_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(rejections, 1.0, "{metrics}");
    // Each ping-pong message went out in its own group, written and synced.
    let writes = sample(&metrics, "msglog_log_append_duration_seconds_count");
    assert!((1.0..=MESSAGES as f64).contains(&writes), "{writes}");
    assert_eq!(
        sample(&metrics, "msglog_log_sync_duration_seconds_count"),
        writes
    );
    assert_eq!(
        sample(
            &metrics,
            r#"msglog_log_append_duration_seconds_bucket{le="+Inf"}"#
        ),
        writes
    );
    assert_eq!(sample(&metrics, "msglog_log_failing"), 0.0);
    assert_eq!(sample(&metrics, "msglog_ready"), 1.0);
    assert_eq!(sample(&metrics, "msglog_log_reopens_total"), 0.0);

    // A reopen (logrotate's SIGHUP) is counted once it is done.
    signal(&server.child, "HUP");
    wait_for_line(&server, "SIGHUP: log reopened");
    assert_eq!(sample(&scrape(&base), "msglog_log_reopens_total"), 1.0);
    drop(holders);
}

#[test]
fn the_endpoint_answers_health_and_nothing_it_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let Served {
        server: _server,
        base,
    } = serve_with_metrics(dir.path(), &[]);
    assert_eq!(get(&base, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(&base, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(get(&base, "/").0, 404);
    assert_eq!(get(&base, "/metrics/extra").0, 404);
    let response = agent().post(format!("{base}/metrics")).send("x").unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let metrics = agent().get(format!("{base}/metrics")).call().unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[test]
fn readyz_is_503_while_appends_fail_and_200_once_they_work_again() {
    // A real full filesystem: a tmpfs of 64 KiB, which needs root (CI runs
    // as root). It fails loudly rather than pretending.
    let dir = tempfile::tempdir().unwrap();
    let fs = SmallFs::mount(dir.path().join("small"), "64k").unwrap_or_else(|e| {
        panic!("cannot mount a small tmpfs for the disk-full test (needs root): {e}")
    });
    let filler = fs.mount.join("filler");
    std::fs::write(&filler, vec![0u8; 16 * 1024]).unwrap();
    let log = fs.mount.join("messages.log");
    let Served { server, base } = serve_with_metrics(&fs.mount, &["--log", log.to_str().unwrap()]);
    assert_eq!(get(&base, "/readyz").0, 200);

    let mut writer = Client::login(server.port, "writer").unwrap();
    let mut filled = false;
    for i in 0..1000 {
        let body = format!("{i:04}-{}", "y".repeat(900));
        match writer.send(body.as_bytes()) {
            Some(0) => {}
            Some(0xFF) => {
                filled = true;
                break;
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(filled, "the disk never filled");
    read_to_end(&mut writer.0);

    let (status, body) = get(&base, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("appending to the log fails"), "{body}");
    let metrics = scrape(&base);
    assert_eq!(sample(&metrics, "msglog_log_failing"), 1.0);
    assert_eq!(sample(&metrics, "msglog_ready"), 0.0);
    assert_eq!(sample(&metrics, "msglog_log_write_errors_total"), 1.0);
    assert_eq!(
        sample(&metrics, r#"msglog_rejections_total{rule="AppendFailed"}"#),
        1.0
    );
    // Still alive, though not ready.
    assert_eq!(get(&base, "/healthz").0, 200);

    // Space returns; the next append works and ends the episode.
    std::fs::remove_file(&filler).unwrap();
    let mut later = Client::login(server.port, "later").unwrap();
    assert_eq!(later.send(b"space is back"), Some(0));
    assert_eq!(get(&base, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(sample(&scrape(&base), "msglog_log_failing"), 0.0);
}

#[test]
fn a_metrics_port_in_use_stops_the_start_before_the_log_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1", "0", "--metrics", &addr])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("metrics address {addr} is already in use")),
        "{stderr}"
    );
    assert!(!dir.path().join("messages.log").exists());
}
