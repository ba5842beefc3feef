//! Helpers shared by the watcher's unit tests. Test-only.

use std::error::Error;
use std::path::PathBuf;

use super::WatchSpec;

pub(super) type TestResult = Result<(), Box<dyn Error>>;

pub(super) fn spec(service: &str, watch: &[&str], ignore: &[&str]) -> WatchSpec {
    WatchSpec {
        service: service.into(),
        watch: watch.iter().map(|glob| glob.to_string()).collect(),
        ignore: ignore.iter().map(|glob| glob.to_string()).collect(),
    }
}

pub(super) fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}
