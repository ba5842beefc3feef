//! Placeholder: replaced by the manifest work in progress.
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub diagnostics: Vec<Diagnostic>,
}

impl ManifestError {
    pub fn not_found(start: &Path) -> Self {
        ManifestError { diagnostics: vec![Diagnostic { message: format!("no fleet.toml in {} or any parent folder", start.display()) }] }
    }
    pub fn unreadable(path: &Path, err: &std::io::Error) -> Self {
        ManifestError { diagnostics: vec![Diagnostic { message: format!("cannot read {}: {err}", path.display()) }] }
    }
    pub fn render(&self, _color: bool) -> String {
        self.diagnostics.iter().map(|d| format!("error: {}\n", d.message)).collect()
    }
}
