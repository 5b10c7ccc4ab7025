//! Invariant checks over the core, shared by the fuzz targets (`fuzz/`) and
//! the property tests (`tests/model.rs`, `tests/chunking.rs`,
//! `tests/engine.rs`).
//!
//! Each check takes plain data (bytes, chunk sizes or an event script, an
//! optional payload limit) and returns `Err(Broken)` naming the invariant
//! that failed. A panic inside the core propagates: the fuzzer and proptest
//! report both.
//!
//! The checks compare the real code against the references of
//! [`super::reference`], written apart from it on purpose, straight from
//! spec/protocol.md.

use std::fmt;

mod engine;
mod frames;
mod records;
mod sessions;

pub use engine::{engine, Step};
pub use frames::frame_parser;
pub use records::{record_codec, record_line, record_pairs};
pub use sessions::{run_session, session};

/// An invariant that did not hold: the input that led here is a bug report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant broken: {invariant}: {detail} (a bug in msglog::proto: keep the input as a test case)")]
pub struct Broken {
    /// The invariant, as named in this module's docs.
    pub invariant: &'static str,
    /// What was seen, with enough context to start debugging.
    pub detail: String,
}

/// The result of one check.
pub type Checked = Result<(), Broken>;

pub(crate) fn ensure(
    cond: bool,
    invariant: &'static str,
    detail: impl FnOnce() -> String,
) -> Checked {
    if cond {
        Ok(())
    } else {
        Err(Broken {
            invariant,
            detail: detail(),
        })
    }
}

/// Shows bytes as hex, shortened: failure messages stay readable.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(64) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > 64 {
            write!(f, "..({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// Cuts `bytes` into chunks whose sizes are `sizes`, taken in a cycle. A size
/// of 0 is an empty chunk (a read that returned nothing). No sizes, or only
/// zeros, means the rest arrives in one chunk. `[1]` is one byte at a time.
pub fn chunks<'a>(bytes: &'a [u8], sizes: &[u16]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    if sizes.iter().any(|&s| s > 0) {
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(usize::from(size).min(rest.len()));
            out.push(chunk);
            rest = tail;
        }
    } else {
        out.extend(sizes.iter().map(|_| &rest[..0]));
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The chunkings every check tries besides the caller's: all at once, and
/// one byte at a time.
pub(crate) const ALL_AT_ONCE: &[u16] = &[];
pub(crate) const BYTEWISE: &[u16] = &[1];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_in_order() {
        let bytes: Vec<u8> = (0..10).collect();
        assert_eq!(chunks(&bytes, &[]), vec![&bytes[..]]);
        let none: &[u8] = &[];
        assert_eq!(chunks(&bytes, &[0, 0]), vec![none, none, &bytes[..]]);
        assert_eq!(
            chunks(&bytes, &[4]),
            vec![&bytes[..4], &bytes[4..8], &bytes[8..]]
        );
        assert_eq!(chunks(&bytes, &[1]).len(), 10);
        let mixed = chunks(&bytes, &[0, 3]);
        assert_eq!(mixed.concat(), bytes);
        assert_eq!(mixed[0], none);
    }
}
