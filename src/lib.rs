//! msglog: a message-log server with a formally specified wire protocol.
//!
//! # Layout
//!
//! - [`proto`]: the sans-IO core (frames, state machine, the session
//!   engine, log records). No tokio, no clock, no sockets.
//! - [`server`]: the Tokio shell that runs the core over TCP and owns the
//!   log file.
//! - [`client`]: async and blocking Rust clients, and `msglog send`.
//! - [`conform`]: `msglog conform`, conformance checks of third-party
//!   clients and servers against the spec, rule by rule.
//! - `testkit` (cargo feature `testkit`): reference models, invariant
//!   checks, an in-memory session and a test server, for msglog's own tests
//!   and fuzz targets; not part of the production API.
//! - [`vectors`]: the spec's test vectors (`spec/vectors`), one loader for
//!   the conformance checker, the tests and the fuzz seeds.
//! - [`bench`]: `msglog bench`, a load generator that measures a running
//!   server (throughput, latency, every acknowledgement checked); with the
//!   `bench` feature (on by default).
//! - [`defaults`]: every default setting, in one place.
//!
//! The command line (argument parsing with clap) lives in the `msglog`
//! binary, behind the default `cli` feature: with
//! `msglog = { version = "...", default-features = false }` the library
//! builds without clap, indicatif, hdrhistogram, tracing-subscriber, rlimit,
//! rpassword and tempfile (for `msglog passwd`), the metrics endpoint's
//! prometheus-client and hyper (feature `metrics`) and the NATS client
//! (feature `nats`).
//!
//! The specification is `spec/protocol.md`; code that implements one of its
//! requirements quotes it (`//= spec/protocol.md#section`).

#![forbid(unsafe_code)]

#[cfg(feature = "bench")]
pub mod bench;
pub mod client;
pub mod conform;
pub mod defaults;
pub mod proto;
pub mod server;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod vectors;
