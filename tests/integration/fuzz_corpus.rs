//! The fuzz corpora as regression tests: every file under `fuzz/corpus/TARGET/` and
//! `fuzz/artifacts/TARGET/` (the crashes found and fixed) goes through the function the
//! fuzz target calls (`fleet::fuzzing`), on stable and without libFuzzer, so an input
//! that once broke an invariant fails `cargo test` if it breaks it again.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn every_fuzz_corpus_and_artifact_input_holds_its_invariants() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (target, run) in fleet::fuzzing::TARGETS {
        let corpus = fuzz.join("corpus").join(target);
        let mut inputs = files(&corpus);
        assert!(
            !inputs.is_empty(),
            "no seed corpus for fuzz target `{target}` in {}",
            corpus.display()
        );
        inputs.extend(files(&fuzz.join("artifacts").join(target)));
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                failures.push(format!("{target}: {}: {message}", input.display()));
            }
            replayed += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} fuzz inputs fail (replay one with `cargo +nightly fuzz run TARGET FILE`):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The files in `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}
