//! msglog: a message-log server with a formally specified wire protocol.
//!
//! # Layout
//!
//! - [`proto`]: the sans-IO core (frames, state machine, log records,
//!   in-memory session runner). No tokio, no clock, no sockets.
//! - [`server`]: the Tokio shell that runs the core over TCP and owns the
//!   log file.
//! - [`client`]: async and blocking Rust clients, and `msglog send`.
//! - [`conform`]: `msglog conform`, conformance checks of third-party
//!   clients and servers against the spec, rule by rule.
//! - [`bench`]: `msglog bench`, a load generator that measures a running
//!   server (throughput, latency, every acknowledgement checked); with the
//!   `bench` feature (on by default).
//! - [`defaults`]: every default setting, in one place.
//!
//! The command line (argument parsing with clap) lives in the `msglog`
//! binary, behind the default `cli` feature: with
//! `msglog = { version = "...", default-features = false }` the library
//! builds without clap, indicatif, hdrhistogram, tracing-subscriber and rlimit.
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
