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
