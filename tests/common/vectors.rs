//! The spec's language-neutral test vectors (`spec/vectors/*.json`, format in
//! `spec/README.md`), loaded once for every test that runs them: the
//! in-memory core (`tests/vectors_core.rs`) and the real server over TCP.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// Who ends the connection after the vector's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClosedBy {
    /// The server closes after its last reply (0xFF or a CLOSE confirmation).
    Server,
    /// The client ends its stream; the server sends nothing more.
    Client,
}

/// One connection: what the client sends and what the server must do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionVector {
    pub id: String,
    pub description: String,
    /// Sections exercised, `protocol.md#anchor`.
    pub spec: Vec<String>,
    /// The server's payload limit; `None` is the protocol's 65535.
    #[serde(default)]
    pub max_payload: Option<usize>,
    #[serde(deserialize_with = "from_hex")]
    pub client: Vec<u8>,
    #[serde(deserialize_with = "from_hex")]
    pub replies: Vec<u8>,
    pub closed_by: ClosedBy,
    /// The client's stream ends inside a frame (only with `ClosedBy::Client`).
    pub mid_frame: bool,
    /// Rule of the 0xFF in `replies`, if there is one.
    pub rule: Option<String>,
    /// Records appended, in order, exactly as written.
    pub log: Vec<String>,
}

impl SessionVector {
    /// The bytes the log grows by: every record, concatenated.
    pub fn log_bytes(&self) -> Vec<u8> {
        self.log.concat().into_bytes()
    }
}

/// A name and message and the one record they make.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordVector {
    pub id: String,
    #[serde(rename = "name_hex", deserialize_with = "from_hex")]
    pub name: Vec<u8>,
    #[serde(rename = "message_hex", deserialize_with = "from_hex")]
    pub message: Vec<u8>,
    pub record: String,
}

/// A line no encoder writes; decoders must reject it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidRecord {
    pub id: String,
    #[serde(rename = "line_hex", deserialize_with = "from_hex")]
    pub line: Vec<u8>,
    pub why: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordVectors {
    pub comment: String,
    pub records: Vec<RecordVector>,
    pub invalid: Vec<InvalidRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionFile {
    #[allow(dead_code)]
    comment: String,
    vectors: Vec<SessionVector>,
}

pub fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("spec")
}

pub fn vectors_dir() -> PathBuf {
    spec_dir().join("vectors")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read test vectors {}: {e}", path.display()))
}

/// Every session vector of every `spec/vectors/sessions*.json`, files in
/// name order. Panics on a malformed file or a duplicate id.
pub fn sessions() -> Vec<SessionVector> {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("sessions") && name.ends_with(".json")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no sessions*.json in {}", dir.display());
    let mut all = Vec::new();
    for path in files {
        let file: SessionFile = serde_json::from_str(&read(&path))
            .unwrap_or_else(|e| panic!("{} is not valid session vectors: {e}", path.display()));
        all.extend(file.vectors);
    }
    let mut seen = HashSet::new();
    for v in &all {
        assert!(seen.insert(v.id.clone()), "duplicate vector id {}", v.id);
    }
    all
}

/// `spec/vectors/records.json`.
pub fn records() -> RecordVectors {
    let path = vectors_dir().join("records.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid record vectors: {e}", path.display()))
}

/// Decodes lower- or upper-case hex without separators.
pub fn hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", s.len()));
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("{:?} is not a hex digit", c as char)),
    };
    s.as_bytes()
        .chunks(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn from_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    hex(&s).map_err(serde::de::Error::custom)
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
