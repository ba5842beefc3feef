//! Integration tests: the real `fleet` binary runs manifests written into temp folders,
//! and the tests check real effects: pids gone, ports answering, lines in log files.
//!
//! Everything builds into this one test binary (one link, one `cargo test --test
//! integration`). `support` is the harness; each other module covers one area. The
//! services are `examples/helper.rs`, a program that plays any well- or badly-behaved
//! service on request (see its flags at the top of that file).

// A test binary: an unwrap or expect that fails is a failed test with its message, and
// `pub` in a module here means "visible to the other test modules", not an API.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

mod containers;
mod control;
mod editors;
mod export;
mod faults;
mod fuzz_corpus;
mod harness;
mod health;
mod hostile;
mod import;
mod logs;
mod manifest_errors;
mod real_servers;
mod redeploy;
mod replicas;
mod restart;
mod run;
mod stop;
mod tui;
mod up;
