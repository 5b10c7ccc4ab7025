//! Every default setting of the server, the clients and the command line,
//! in one place: the library's `Default` impls and `msglog --help` both
//! read them from here, so they cannot disagree.

use std::time::Duration;

/// TCP port the server listens on and the clients connect to.
pub const PORT: u16 = 5555;

/// Log file of `msglog serve`, in its working directory.
pub const LOG_PATH: &str = "messages.log";

/// Simultaneous connections the server serves; more are refused.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Time a client has to complete NAME and PASS, and to finish any frame.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time an authenticated connection may stay silent.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Time connections get to finish their frame in progress on shutdown.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Period of the server's stats line (`msglog serve`; the library's
/// [`crate::server::Config`] has none unless asked).
pub const STATS_INTERVAL: Duration = Duration::from_secs(60);

/// Time a connection keeps polling for its client's next frame after replying.
pub const BUSY_POLL: Duration = Duration::from_micros(50);

/// MiB all connections together may hold in partial frames beyond their
/// allowance (spec: #limits).
pub const FRAME_BUDGET_MIB: u64 = 32;

/// Time the client library waits to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time the client library waits for each reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Time `msglog send` waits to connect, and for each reply.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Host `msglog send` connects to.
pub const SEND_HOST: &str = "localhost";

/// Time `msglog bench` sends for unless told a number of messages.
pub const BENCH_DURATION: Duration = Duration::from_secs(10);

/// Time `msglog bench` waits for any reply before a connection gives up.
pub const BENCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Time `msglog conform client` lets the client command run.
pub const CONFORM_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Time `msglog conform server` waits for each reply or close.
pub const CONFORM_SERVER_TIMEOUT: Duration = Duration::from_secs(5);

/// JetStream stream `msglog serve --sink nats://...` stores messages in,
/// and `msglog read nats://...` reads.
pub const NATS_STREAM: &str = "msglog";

/// Subject prefix of the NATS sink: a message goes to `PREFIX.<name>`.
pub const NATS_SUBJECT: &str = "msglog";

/// Replicas of a stream `msglog serve --nats-create-stream` creates.
pub const NATS_REPLICAS: usize = 3;

/// Time a sink has to store a message before its MSG gets 0xFF.
pub const SINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes to NATS awaiting their acknowledgement, across all connections.
pub const NATS_MAX_IN_FLIGHT: usize = 4096;

/// argon2id parameters of the password hashes `msglog passwd` writes:
/// OWASP's recommendation (Password Storage Cheat Sheet), memory in KiB,
/// passes and lanes. Each hash records its own parameters, so changing these
/// applies to passwords set afterwards and every older hash still verifies.
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

/// Password verifications `msglog serve --users` runs at once: one per CPU.
pub fn max_verifications() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// After a failed login, the next login from the same source address waits
/// this long before its password is verified; twice as long after each
/// further failure.
pub const LOGIN_FAILURE_DELAY: Duration = Duration::from_millis(250);

/// The longest such wait, as a multiple of the first: 32 × 0.25 s = 8 s,
/// within the default handshake timeout.
pub const LOGIN_FAILURE_DELAY_MAX_FACTOR: u32 = 32;

/// A source address's failed logins are forgotten after this long without one.
pub const LOGIN_FAILURES_FORGOTTEN_AFTER: Duration = Duration::from_secs(600);

/// Source addresses whose failed logins are remembered at once.
pub const LOGIN_FAILURE_SOURCES: usize = 10_000;
