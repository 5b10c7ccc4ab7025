//! The spec's language-neutral test vectors (`spec/vectors/*.json`), read
//! from the spec directory with the crate's one loader (`msglog::vectors`),
//! and the ways the tests cut them into writes.

use std::path::{Path, PathBuf};

pub use msglog::vectors::{ClosedBy, RecordVectors, SessionVector};

pub fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("spec")
}

pub fn vectors_dir() -> PathBuf {
    spec_dir().join("vectors")
}

/// Every session vector of every `spec/vectors/sessions*.json`.
pub fn sessions() -> Vec<SessionVector> {
    msglog::vectors::load_sessions(&vectors_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// `spec/vectors/records.json`.
pub fn records() -> RecordVectors {
    let path = vectors_dir().join("records.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    msglog::vectors::parse_records(&path.display().to_string(), &text)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Ways to cut `len` bytes into writes, as lists of chunk lengths: whole,
/// one byte at a time, and a few fixed sizes. Runners over TCP use the
/// cheap ones; the in-memory runner adds every split point itself.
pub fn chunk_sizes(len: usize) -> Vec<(String, Vec<usize>)> {
    let mut ways = vec![("whole".to_string(), vec![len])];
    for size in [1, 2, 3, 7, 64, 4096] {
        if size < len {
            let mut sizes = vec![size; len / size];
            if len % size != 0 {
                sizes.push(len % size);
            }
            ways.push((format!("chunks of {size}"), sizes));
        }
    }
    ways
}

/// Splits `bytes` into consecutive slices of the given lengths.
pub fn split<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut rest = bytes;
    let mut out = Vec::with_capacity(sizes.len());
    for &n in sizes {
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    assert!(rest.is_empty(), "chunk sizes do not cover the input");
    out
}

/// Chunk lengths that cut every complete frame of `bytes` into tag, length
/// field and payload, the way the reference's C test client sends; a tail
/// that is not a complete frame is one more chunk.
pub fn frame_part_sizes(bytes: &[u8]) -> Vec<usize> {
    use msglog::proto::{parse_frame, Parsed};
    let mut sizes = Vec::new();
    let mut rest = bytes;
    while let Parsed::Complete { frame, len } = parse_frame(rest) {
        match frame.payload() {
            Some(p) if !p.is_empty() => sizes.extend([1, 2, p.len()]),
            Some(_) => sizes.extend([1, 2]),
            None => sizes.push(1),
        }
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        sizes.push(rest.len());
    }
    sizes
}
