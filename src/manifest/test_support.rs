//! Helpers for the manifest's unit tests: parse a manifest written in the test and
//! compare the rendered errors with the exact expected text. Test-only; touches
//! nothing but the `parse` entry point.

use std::path::Path;

use super::Manifest;

/// Parses `source` as `fleet.toml` in the current folder (the crate root under
/// `cargo test`) and returns the rendered error, without color.
pub(super) fn render(source: &str) -> String {
    match super::parse(Path::new("fleet.toml"), source) {
        Ok(manifest) => panic!("expected errors, got {manifest:#?}"),
        Err(err) => err.render(false),
    }
}

/// Compares against a raw string literal that starts with a newline (for
/// readability); shows both texts whole on a mismatch.
#[track_caller]
pub(super) fn check(source: &str, expected: &str) {
    let expected = expected.strip_prefix('\n').unwrap_or(expected);
    let actual = render(source);
    assert!(
        actual == expected,
        "rendered:\n{actual}\n\nexpected:\n{expected}\n"
    );
}

pub(super) fn parse_ok(source: &str) -> Manifest {
    match super::parse(Path::new("fleet.toml"), source) {
        Ok(manifest) => manifest,
        Err(err) => panic!("expected a manifest, got:\n{}", err.render(false)),
    }
}
