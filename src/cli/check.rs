//! `check`: validates the manifest without starting anything.

use std::path::Path;

use super::{exit, CliError};
use crate::manifest;

/// Prints a one-line summary of a valid manifest; an invalid one is the error.
pub(super) fn check(path: &Path) -> Result<i32, CliError> {
    let manifest = manifest::load(path)?;
    let containers = manifest
        .services
        .iter()
        .filter(|s| s.is_container())
        .count();
    println!(
        "{}: ok, {} services ({} processes, {} containers)",
        path.display(),
        manifest.services.len(),
        manifest.services.len() - containers,
        containers
    );
    Ok(exit::SUCCESS)
}
