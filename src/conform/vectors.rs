//! The session vectors of spec/vectors (format: spec/README.md), built into
//! the binary so that `conform server` works from anywhere; `--vectors DIR`
//! reads another copy instead.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConformError;

/// The session vector files, as they were when msglog was built.
pub const EMBEDDED: [(&str, &str); 2] = [
    (
        "sessions.json",
        include_str!("../../spec/vectors/sessions.json"),
    ),
    (
        "sessions-large.json",
        include_str!("../../spec/vectors/sessions-large.json"),
    ),
];

#[derive(Deserialize)]
struct VectorFile {
    vectors: Vec<RawVector>,
}

#[derive(Deserialize)]
struct RawVector {
    id: String,
    #[serde(default)]
    spec: Vec<String>,
    #[serde(default)]
    max_payload: Option<usize>,
    client: String,
    replies: String,
    closed_by: String,
    rule: Option<String>,
    #[serde(default)]
    log: Vec<String>,
}

/// Who closes the connection at the end of a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The server closes after its replies, without waiting for the client.
    Server,
    /// The client ends its stream after sending; then the server closes.
    Client,
}

/// One session vector: a connection from accept to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionVector {
    pub id: String,
    /// Section anchors it exercises (`close`, `states`, ...).
    pub sections: Vec<String>,
    pub max_payload: Option<usize>,
    pub client: Vec<u8>,
    pub replies: Vec<u8>,
    pub closed_by: ClosedBy,
    /// The rule of the vector's 0xFF, if any.
    pub rule: Option<String>,
    /// Records, exactly as the text log holds them.
    pub log: Vec<String>,
}

fn unhex(s: &str, what: &str, id: &str, file: &str) -> Result<Vec<u8>, ConformError> {
    let bad = || ConformError::Vectors {
        file: file.into(),
        reason: format!("vector {id}: `{what}` is not an even-length hex string"),
    };
    if s.len() % 2 != 0 {
        return Err(bad());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// Parses one `sessions*.json` file.
pub fn parse(file: &str, text: &str) -> Result<Vec<SessionVector>, ConformError> {
    let parsed: VectorFile = serde_json::from_str(text).map_err(|e| ConformError::Vectors {
        file: file.into(),
        reason: e.to_string(),
    })?;
    parsed
        .vectors
        .into_iter()
        .map(|r| {
            let closed_by = match r.closed_by.as_str() {
                "server" => ClosedBy::Server,
                "client" => ClosedBy::Client,
                other => {
                    return Err(ConformError::Vectors {
                        file: file.into(),
                        reason: format!(
                            "vector {}: closed_by is `{other}`, not `server` or `client`",
                            r.id
                        ),
                    })
                }
            };
            Ok(SessionVector {
                client: unhex(&r.client, "client", &r.id, file)?,
                replies: unhex(&r.replies, "replies", &r.id, file)?,
                sections: r
                    .spec
                    .iter()
                    .map(|s| {
                        s.rsplit_once('#')
                            .map_or(s.as_str(), |(_, a)| a)
                            .to_string()
                    })
                    .collect(),
                id: r.id,
                max_payload: r.max_payload,
                closed_by,
                rule: r.rule,
                log: r.log,
            })
        })
        .collect()
}

/// The vectors built into the binary.
pub fn embedded() -> Result<Vec<SessionVector>, ConformError> {
    let mut all = Vec::new();
    for (file, text) in EMBEDDED {
        all.extend(parse(file, text)?);
    }
    Ok(all)
}

/// Every `sessions*.json` file in `dir`.
pub fn load_dir(dir: &Path) -> Result<Vec<SessionVector>, ConformError> {
    let io = |source: std::io::Error| ConformError::VectorsDir {
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
        return Err(ConformError::Vectors {
            file: dir.display().to_string(),
            reason: "no sessions*.json file in this directory".into(),
        });
    }
    let mut all = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(io)?;
        all.extend(parse(&f.display().to_string(), &text)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_vectors_are_the_spec_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/vectors");
        let by_id = |mut v: Vec<SessionVector>| {
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        };
        let (built_in, on_disk) = (by_id(embedded().unwrap()), by_id(load_dir(&dir).unwrap()));
        let ids = |v: &[SessionVector]| v.iter().map(|v| v.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(&built_in),
            ids(&on_disk),
            "a vector file is not built in"
        );
        // Compared without printing: the vectors are large.
        assert!(
            built_in == on_disk,
            "the built-in vectors differ from spec/vectors"
        );
    }

    #[test]
    fn embedded_vectors_parse() {
        let all = embedded().unwrap();
        assert!(all.len() > 50);
        let close = all.iter().find(|v| v.id == "close-in-c").unwrap();
        assert_eq!(close.client, [0x04]);
        assert_eq!(close.replies, [0x00]);
        assert_eq!(close.closed_by, ClosedBy::Server);
        assert!(close.sections.contains(&"close".to_string()));
    }

    #[test]
    fn bad_files_are_reported() {
        assert!(parse("x", "{}").is_err());
        let odd = r#"{"vectors":[{"id":"a","client":"0","replies":"","closed_by":"server","rule":null}]}"#;
        assert!(parse("x", odd).is_err());
    }
}
