//! msglog's test kit: reference models written apart from the code on
//! purpose, invariant checks shared by the fuzz targets (`fuzz/`) and the
//! property tests, an in-memory session runner over the real session
//! engine, the fuzz seed catalogue, and a server to test against.
//!
//! Behind the `testkit` cargo feature: it is for msglog's own tests and
//! fuzzing, not part of the production API. Nothing in production code
//! imports it.
//!
//! # Layout
//!
//! - [`reference`]: a frame splitter and the state table, written straight
//!   from spec/protocol.md without `proto`: a bug has to be made twice, the
//!   same way, to go unseen.
//! - [`session`]: [`MemorySession`], a whole connection through the session
//!   engine with an in-memory log.
//! - [`check`]: the invariants (`frame_parser`, `session`, `engine`,
//!   `record_codec`), each returning [`check::Broken`] naming what failed.
//! - [`seeds`]: the committed fuzz corpus, built from code and spec/vectors.
//! - [`server`]: [`TestServer`], a real server on 127.0.0.1 in-process.

pub mod check;
pub mod reference;
pub mod seeds;
pub mod server;
pub mod session;

pub use server::TestServer;
pub use session::{MemorySession, SessionTranscript};
