//! `check`: validates the manifest without starting anything.

use super::say;
use std::path::Path;

use super::{exit, CliError};
use crate::manifest::{self, Activation};

/// Prints a one-line summary of a valid manifest; an invalid one is the error. With
/// profiles, also checks that what they run does not depend on what they do not.
pub(super) fn check(path: &Path, activation: &Activation) -> Result<i32, CliError> {
    let manifest = manifest::load_with(path, activation)?;
    manifest
        .check_activation(activation)
        .map_err(|problem| CliError::new(exit::INVALID, format!("error: {problem}")))?;
    let containers = manifest
        .services
        .iter()
        .filter(|s| s.is_container())
        .count();
    say!(
        "{}: ok, {} services ({} processes, {} containers)",
        path.display(),
        manifest.services.len(),
        manifest.services.len() - containers,
        containers
    );
    Ok(exit::SUCCESS)
}
