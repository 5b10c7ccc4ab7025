//! The spec's language-neutral test vectors (`spec/vectors/*.json`, format
//! in `spec/README.md`): the one loader for `msglog conform server`, the
//! tests and the fuzz seeds. The files are built into the binary, so that
//! `msglog conform server` works from anywhere; a directory can be read
//! instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// The session vector files, as they were when msglog was built.
pub const EMBEDDED_SESSIONS: [(&str, &str); 2] = [
    (
        "sessions.json",
        include_str!("../spec/vectors/sessions.json"),
    ),
    (
        "sessions-large.json",
        include_str!("../spec/vectors/sessions-large.json"),
    ),
];

/// The record vectors, as they were when msglog was built.
pub const EMBEDDED_RECORDS: (&str, &str) =
    ("records.json", include_str!("../spec/vectors/records.json"));

/// Why vectors could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("{file} is not a valid vector file: {reason}; see spec/README.md for the format")]
    Malformed { file: String, reason: String },
    #[error("cannot read vectors from {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("no sessions*.json file in {}; point at a copy of spec/vectors", dir.display())]
    NoSessionFiles { dir: PathBuf },
    #[error("vector id {id} appears twice (second time in {file}); ids must be unique")]
    DuplicateId { id: String, file: String },
}

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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionVector {
    pub id: String,
    pub description: String,
    /// Sections exercised, as `protocol.md#anchor`.
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
    /// Records appended, in order, exactly as the text log holds them.
    pub log: Vec<String>,
}

impl SessionVector {
    /// The section anchors it exercises (`close`, `states`, ...).
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.spec
            .iter()
            .map(|s| s.rsplit_once('#').map_or(s.as_str(), |(_, anchor)| anchor))
    }

    /// The bytes the text log grows by: every record, concatenated.
    pub fn log_bytes(&self) -> Vec<u8> {
        self.log.concat().into_bytes()
    }
}

/// A name and message and the one record they make.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidRecord {
    pub id: String,
    #[serde(rename = "line_hex", deserialize_with = "from_hex")]
    pub line: Vec<u8>,
    pub why: String,
}

/// `records.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

/// Parses one `sessions*.json` file.
pub fn parse_sessions(file: &str, text: &str) -> Result<Vec<SessionVector>, VectorError> {
    let parsed: SessionFile = serde_json::from_str(text).map_err(|e| VectorError::Malformed {
        file: file.into(),
        reason: e.to_string(),
    })?;
    Ok(parsed.vectors)
}

/// Parses `records.json`.
pub fn parse_records(file: &str, text: &str) -> Result<RecordVectors, VectorError> {
    serde_json::from_str(text).map_err(|e| VectorError::Malformed {
        file: file.into(),
        reason: e.to_string(),
    })
}

/// Every session vector built into the binary.
pub fn embedded_sessions() -> Result<Vec<SessionVector>, VectorError> {
    unique(
        EMBEDDED_SESSIONS
            .iter()
            .map(|(file, text)| Ok((file.to_string(), parse_sessions(file, text)?))),
    )
}

/// The record vectors built into the binary.
pub fn embedded_records() -> Result<RecordVectors, VectorError> {
    parse_records(EMBEDDED_RECORDS.0, EMBEDDED_RECORDS.1)
}

/// Every `sessions*.json` file in `dir`, in name order.
pub fn load_sessions(dir: &Path) -> Result<Vec<SessionVector>, VectorError> {
    let io = |source| VectorError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sessions") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(VectorError::NoSessionFiles {
            dir: dir.to_path_buf(),
        });
    }
    unique(files.iter().map(|f| {
        let file = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(io)?;
        let vectors = parse_sessions(&file, &text)?;
        Ok((file, vectors))
    }))
}

fn unique(
    files: impl Iterator<Item = Result<(String, Vec<SessionVector>), VectorError>>,
) -> Result<Vec<SessionVector>, VectorError> {
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    for file in files {
        let (file, vectors) = file?;
        for v in vectors {
            if !seen.insert(v.id.clone()) {
                return Err(VectorError::DuplicateId { id: v.id, file });
            }
            all.push(v);
        }
    }
    Ok(all)
}

/// Decodes hex digits (either case, no separators) into bytes.
pub fn hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", s.len()));
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("{:?} is not a hex digit", char::from(c))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_vectors_load_and_have_unique_ids() {
        let sessions = embedded_sessions().unwrap();
        assert!(sessions.len() >= 40, "only {} vectors", sessions.len());
        let records = embedded_records().unwrap();
        assert!(!records.records.is_empty() && !records.invalid.is_empty());
    }

    #[test]
    fn the_spec_directory_and_the_embedded_copy_agree() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/vectors");
        let by_id = |mut v: Vec<SessionVector>| {
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        };
        let (on_disk, built_in) = (
            by_id(load_sessions(&dir).unwrap()),
            by_id(embedded_sessions().unwrap()),
        );
        // Compared without printing: the vectors are large.
        assert!(
            on_disk == built_in,
            "the built-in vectors differ from spec/vectors"
        );
    }

    #[test]
    fn hex_decodes_both_cases_and_refuses_the_rest() {
        assert_eq!(hex("00ffA1"), Ok(vec![0, 0xFF, 0xA1]));
        assert!(hex("0").is_err());
        assert!(hex("zz").is_err());
    }

    #[test]
    fn a_duplicate_id_is_refused() {
        let text = r#"{"comment":"","vectors":[
            {"id":"a","description":"","spec":[],"client":"04","replies":"00","closed_by":"server","mid_frame":false,"rule":null,"log":[]}]}"#;
        let twice = [("one", text), ("two", text)];
        let err = unique(
            twice
                .iter()
                .map(|(f, t)| Ok((f.to_string(), parse_sessions(f, t)?))),
        )
        .unwrap_err();
        assert!(matches!(err, VectorError::DuplicateId { ref id, .. } if id == "a"));
    }
}
