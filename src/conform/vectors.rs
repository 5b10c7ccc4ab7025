//! The session vectors of spec/vectors as `msglog conform server` runs
//! them: loaded by the crate's one vector loader ([`crate::vectors`]),
//! built into the binary so that `conform server` works from anywhere;
//! `--vectors DIR` reads another copy instead.

use std::path::Path;

pub use crate::vectors::ClosedBy;
use crate::vectors::{SessionVector, VectorError};

use super::ConformError;

/// One session vector: a connection from accept to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vector {
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

impl From<SessionVector> for Vector {
    fn from(v: SessionVector) -> Vector {
        Vector {
            sections: v.sections().map(str::to_string).collect(),
            id: v.id,
            max_payload: v.max_payload,
            client: v.client,
            replies: v.replies,
            closed_by: v.closed_by,
            rule: v.rule,
            log: v.log,
        }
    }
}

impl From<VectorError> for ConformError {
    fn from(e: VectorError) -> ConformError {
        match e {
            VectorError::Io { dir, source } => ConformError::VectorsDir { dir, source },
            VectorError::Malformed { file, reason } => ConformError::Vectors { file, reason },
            VectorError::NoSessionFiles { dir } => ConformError::Vectors {
                file: dir.display().to_string(),
                reason: "no sessions*.json file in this directory".into(),
            },
            VectorError::DuplicateId { id, file } => ConformError::Vectors {
                file,
                reason: format!("vector id {id} appears in more than one place"),
            },
        }
    }
}

fn views(vectors: Vec<SessionVector>) -> Vec<Vector> {
    vectors.into_iter().map(Vector::from).collect()
}

/// Parses one `sessions*.json` file.
pub fn parse(file: &str, text: &str) -> Result<Vec<Vector>, ConformError> {
    Ok(views(crate::vectors::parse_sessions(file, text)?))
}

/// The vectors built into the binary.
pub fn embedded() -> Result<Vec<Vector>, ConformError> {
    Ok(views(crate::vectors::embedded_sessions()?))
}

/// Every `sessions*.json` file in `dir`.
pub fn load_dir(dir: &Path) -> Result<Vec<Vector>, ConformError> {
    Ok(views(crate::vectors::load_sessions(dir)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_vectors_are_the_spec_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/vectors");
        let by_id = |mut v: Vec<Vector>| {
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        };
        let (built_in, on_disk) = (by_id(embedded().unwrap()), by_id(load_dir(&dir).unwrap()));
        let ids = |v: &[Vector]| v.iter().map(|v| v.id.clone()).collect::<Vec<_>>();
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
