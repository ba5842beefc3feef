//! Placeholder.
use super::{Manifest, ManifestError};
use std::path::Path;
pub fn validate(path: &Path, _source: &str) -> Result<Manifest, ManifestError> {
    Err(ManifestError::not_found(path))
}
