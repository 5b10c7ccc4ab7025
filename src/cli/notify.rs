//! systemd's readiness protocol (sd_notify(3)) for `msglog serve`. When the
//! service manager sets NOTIFY_SOCKET, the server sends it newline-separated
//! `KEY=VALUE` lines, one datagram per notification: READY=1 once it listens
//! and the log is open, RELOADING=1 (with MONOTONIC_USEC, as systemd 253 and
//! later require for Type=notify-reload) and READY=1 around a SIGHUP reopen,
//! STOPPING=1 at shutdown, and STATUS= lines that say what it is doing.
//! Without NOTIFY_SOCKET nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use msglog::server::{Readiness, ServerView};

/// The environment variable systemd passes the socket's address in.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// How often the STATUS line is refreshed with the server's counters.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// A notification must not wait on a stuck service manager longer.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why notifications cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{NOTIFY_SOCKET}={value:?} is neither a socket path (starting with /) nor an abstract socket name (starting with @); msglog cannot tell the service manager it is ready")]
    Unsupported { value: String },
    #[error("{NOTIFY_SOCKET}={value:?}: cannot use that socket: {source}")]
    Socket { value: String, source: io::Error },
}

/// Where NOTIFY_SOCKET points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address<'a> {
    Path(&'a Path),
    /// Linux's abstract namespace: `@name` is the name without the `@`.
    Abstract(&'a [u8]),
}

fn parse_address(value: &OsStr) -> Option<Address<'_>> {
    let bytes = value.as_bytes();
    match bytes.first()? {
        b'/' => Some(Address::Path(Path::new(value))),
        b'@' if bytes.len() > 1 => Some(Address::Abstract(&bytes[1..])),
        // Relative paths and vsock: addresses (systemd 253 and later, for
        // virtual machines) are not supported.
        _ => None,
    }
}

/// One notification: `KEY=VALUE` lines. A value cannot hold a line break
/// (it would start another key); in a status one becomes a space.
fn message(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(key, value)| format!("{key}={}\n", value.replace(['\n', '\r'], " ")))
        .collect()
}

/// CLOCK_MONOTONIC in microseconds, as MONOTONIC_USEC wants it.
fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1_000).unwrap_or(0);
    secs * 1_000_000 + micros
}

/// Sends notifications to the service manager.
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The notifier NOTIFY_SOCKET asks for; `None` when it is not set.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os(NOTIFY_SOCKET) {
            None => Ok(None),
            Some(value) => Notifier::to(&value).map(Some),
        }
    }

    fn to(value: &OsStr) -> Result<Notifier, NotifyError> {
        let shown = || value.to_string_lossy().into_owned();
        let socket_error = |source| NotifyError::Socket {
            value: shown(),
            source,
        };
        let address = match parse_address(value) {
            Some(Address::Path(path)) => SocketAddr::from_pathname(path),
            Some(Address::Abstract(name)) => SocketAddr::from_abstract_name(name),
            None => return Err(NotifyError::Unsupported { value: shown() }),
        }
        .map_err(socket_error)?;
        let socket = UnixDatagram::unbound().map_err(socket_error)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(socket_error)?;
        Ok(Notifier { socket, address })
    }

    fn send(&self, fields: &[(&str, &str)]) {
        let message = message(fields);
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            tracing::warn!(error = %e, "cannot notify the service manager ({NOTIFY_SOCKET})");
        }
    }

    /// Listening, the log open: serving.
    pub fn ready(&self, status: &str) {
        self.send(&[("READY", "1"), ("STATUS", status)]);
    }

    /// A reload (the log's reopen) starts.
    pub fn reloading(&self, status: &str) {
        let now = monotonic_usec().to_string();
        self.send(&[
            ("RELOADING", "1"),
            ("MONOTONIC_USEC", &now),
            ("STATUS", status),
        ]);
    }

    /// Shutdown started.
    pub fn stopping(&self, status: &str) {
        self.send(&[("STOPPING", "1"), ("STATUS", status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[("STATUS", status)]);
    }
}

/// What the STATUS line says while serving: the state, open connections,
/// and the message rate since the last update.
pub fn serving_status(view: &ServerView, messages_per_s: u64) -> String {
    let now = view.snapshot();
    let state = match now.readiness {
        Readiness::Ready => "serving",
        Readiness::NotAccepting => "stopping: finishing frames in progress",
        Readiness::LogFailing => "appending to the log fails; messages are rejected until it works",
    };
    format!(
        "{state}; {} connections open, {messages_per_s} messages/s, {} messages since start",
        now.connections_open, now.messages
    )
}

/// Refreshes the STATUS line every few seconds while the runtime runs.
pub fn spawn_status_updates(notifier: Arc<Notifier>, view: ServerView) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(STATUS_INTERVAL);
        ticker.tick().await;
        let mut messages = view.snapshot().messages;
        loop {
            ticker.tick().await;
            let total = view.snapshot().messages;
            let per_s = (total - messages) as f64 / STATUS_INTERVAL.as_secs_f64();
            messages = total;
            notifier.status(&serving_status(&view, per_s.round() as u64));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_abstract_names_are_understood_the_rest_refused() {
        assert_eq!(
            parse_address(OsStr::new("/run/systemd/notify")),
            Some(Address::Path(Path::new("/run/systemd/notify")))
        );
        assert_eq!(
            parse_address(OsStr::new("@/org/freedesktop/systemd1/notify/42")),
            Some(Address::Abstract(b"/org/freedesktop/systemd1/notify/42"))
        );
        assert_eq!(parse_address(OsStr::new("@")), None);
        assert_eq!(parse_address(OsStr::new("")), None);
        assert_eq!(parse_address(OsStr::new("vsock:2:1234")), None);
        assert_eq!(parse_address(OsStr::new("relative/notify")), None);
        let refused = Notifier::to(OsStr::new("vsock:2:1234")).err().unwrap();
        assert!(refused.to_string().contains("vsock:2:1234"), "{refused}");
    }

    #[test]
    fn a_message_is_one_line_per_field_and_a_status_stays_one_line() {
        assert_eq!(
            message(&[("READY", "1"), ("STATUS", "serving\nport 5555\r")]),
            "READY=1\nSTATUS=serving port 5555 \n"
        );
    }

    #[test]
    fn monotonic_usec_is_the_monotonic_clock() {
        // Instant is CLOCK_MONOTONIC on Linux: both advance together.
        let (a, start) = (monotonic_usec(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (b, took) = (monotonic_usec(), start.elapsed());
        let elapsed = b - a;
        assert!(elapsed >= 20_000, "{elapsed}");
        assert!(
            elapsed <= took.as_micros() as u64 + 1_000,
            "{elapsed} vs {took:?}"
        );
    }

    /// Both kinds of address deliver, checked against a real socket.
    #[test]
    fn notifications_arrive_at_a_path_and_at_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let by_path = UnixDatagram::bind(&path).unwrap();
        let name = format!("msglog-test-{}", std::process::id());
        let by_name =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        for (value, socket) in [
            (path.as_os_str().to_owned(), &by_path),
            (format!("@{name}").into(), &by_name),
        ] {
            let notifier = Notifier::to(&value).unwrap();
            notifier.reloading("reopening the log");
            let mut buf = [0; 256];
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let n = socket.recv(&mut buf).unwrap();
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], "RELOADING=1");
            let usec: u64 = lines[1]
                .strip_prefix("MONOTONIC_USEC=")
                .unwrap()
                .parse()
                .unwrap();
            assert!(usec > 0);
            assert_eq!(lines[2], "STATUS=reopening the log");
        }
    }
}
