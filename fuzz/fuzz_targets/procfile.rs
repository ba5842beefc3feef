//! `fleet::fuzzing::procfile`: what it feeds and what it checks are documented there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fleet::fuzzing::procfile(data));
