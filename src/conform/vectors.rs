//! The session vectors `msglog conform server` runs: loaded by the crate's
//! one vector loader ([`crate::vectors`]), built into the binary so that
//! `conform server` works from anywhere; `--vectors DIR` reads another copy.

use std::path::Path;

use crate::vectors::VectorError;
pub use crate::vectors::{ClosedBy, SessionVector};

use super::ConformError;

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

/// The vectors built into the binary.
pub fn embedded() -> Result<Vec<SessionVector>, ConformError> {
    Ok(crate::vectors::embedded_sessions()?)
}

/// Every `sessions*.json` file in `dir`.
pub fn load_dir(dir: &Path) -> Result<Vec<SessionVector>, ConformError> {
    Ok(crate::vectors::load_sessions(dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_vectors_parse() {
        let all = embedded().unwrap();
        assert!(all.len() > 50);
        let close = all.iter().find(|v| v.id == "close-in-c").unwrap();
        assert_eq!(close.client, [0x04]);
        assert_eq!(close.replies, [0x00]);
        assert_eq!(close.closed_by, ClosedBy::Server);
        assert!(close.sections().any(|s| s == "close"));
    }

    #[test]
    fn a_missing_directory_is_reported() {
        let err = load_dir(Path::new("/nonexistent-vectors-dir")).unwrap_err();
        assert!(matches!(err, ConformError::VectorsDir { .. }), "{err}");
    }
}
