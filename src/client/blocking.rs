//! A blocking client for code without a Tokio runtime.
//!
//! Each [`Client`] owns a single-threaded runtime and runs the async
//! [`super::Client`] on it, so both behave the same way, errors included.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let log_path = dir.path().join("messages.log");
//! # let runtime = tokio::runtime::Runtime::new()?;
//! # let server = runtime.block_on(msglog::testkit::TestServer::start(&log_path))?;
//! # let addr = server.addr;
//! use msglog::client::blocking::Client;
//!
//! let mut client = Client::connect(addr, "MyUser", "A")?;
//! client.send("This is my message.")?;
//! let lines = ["one", "two", "three"];
//! assert_eq!(client.send_pipelined(lines, 8)?, 3);
//! client.close()?;
//! # runtime.block_on(server.stop())?;
//! # assert_eq!(msglog::proto::records(&std::fs::read(&log_path)?).count(), 4);
//! # Ok(())
//! # }
//! ```
//!
//! # Panics
//!
//! Every method panics when called from inside an async runtime (Tokio
//! cannot block a thread that drives async tasks); use the async
//! [`super::Client`] there.

use tokio::net::ToSocketAddrs;
use tokio::runtime::Runtime;

use super::{ClientError, Options, PipelineError};

/// A logged-in connection that blocks the calling thread; see
/// [`super::Client`] for the behaviour of each method.
#[derive(Debug)]
pub struct Client {
    // Declared before the runtime so the socket is dropped while its
    // runtime still exists.
    inner: super::Client,
    runtime: Runtime,
}

impl Client {
    /// Connects and logs in, with the default [`Options`].
    pub fn connect(
        addr: impl ToSocketAddrs,
        name: impl AsRef<[u8]>,
        password: impl AsRef<[u8]>,
    ) -> Result<Client, ClientError> {
        Client::connect_with(addr, name, password, Options::default())
    }

    /// Connects and logs in with the given timeouts.
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        name: impl AsRef<[u8]>,
        password: impl AsRef<[u8]>,
        options: Options,
    ) -> Result<Client, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let inner = runtime.block_on(super::Client::connect_with(addr, name, password, options))?;
        Ok(Client { inner, runtime })
    }

    /// Sends one message and returns once the server acknowledged it.
    pub fn send(&mut self, message: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.send(message))
    }

    /// Sends a batch with up to `window` messages in flight; returns how
    /// many were acknowledged. The iterator runs on the calling thread and
    /// may block (e.g. reading lines): each message is sent as soon as it
    /// is yielded.
    pub fn send_pipelined<I>(&mut self, messages: I, window: usize) -> Result<usize, PipelineError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.runtime
            .block_on(self.inner.send_pipelined(messages, window))
    }

    /// Sends CLOSE and waits for the server's confirmation.
    pub fn close(self) -> Result<(), ClientError> {
        let Client { inner, runtime } = self;
        runtime.block_on(inner.close())
    }
}
