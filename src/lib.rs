//! fleet: a local orchestrator and dev runtime for many services.
//!
//! # Theory of operation
//! `fleet up` loads `fleet.toml` ([`manifest`]) and starts one [`supervisor`] task,
//! which owns one runner task per service ([`service::runner`]). A runner feeds every
//! input (commands, exits, probe verdicts, build results, timers) to its service's pure
//! state machine ([`service::state`]) and carries out the effects it returns through
//! [`runtime`], the only module that makes process syscalls and Docker calls; each
//! instance is a [`runtime::Instance`], a process group or a container, and the runner
//! drives both the same way. Output goes straight from
//! the service's pipes into its log file ([`logs`]) and from there to live viewers.
//! The supervisor publishes a [`event::Snapshot`] and [`event::Event`]s; the CLI and
//! the TUI only ever read those.
//!
//! `fleet run` ([`run`]) launches the same supervisor under an identity of its own and
//! drives it from this process: waits for readiness ([`readiness`], shared with `up
//! --wait`), runs a command, tears down and checks that nothing is left.
//!
//! # Dependencies point one way
//! ```text
//! main -> cli -> { supervisor, control::client, tui, import, export, run }
//!   export -> { import (its YAML reader), manifest }    import -> manifest
//!   run -> { supervisor (launch), readiness, runtime }
//!   supervisor (launch, server, printer) -> { service, watch, control }
//!   service -> { health, runtime }
//!   health -> runtime
//!   runtime -> { logs, manifest, event, project }
//!   control -> { protocol, project }      tui -> { control::client, protocol, logs, event }
//!   logs -> { event, project }            watch -> { manifest, event }
//!   readiness -> { event, logs }
//!   protocol -> event                     manifest -> project
//!   event, project: leaves (std, serde)
//! ```
//! An arrow also means every module below the target may be used; no arrow points
//! back up, so there is no cycle. `supervisor::launch` takes the TUI as a
//! [`supervisor::launch::Front`] from `cli` rather than depending on `tui`, and the
//! control socket's server lives in [`supervisor::server`] because it serves a
//! [`supervisor::SupervisorHandle`]; `control` itself is only the client and the
//! socket's files.
//!
//! [`fuzzing`] (hidden) sits beside `main`: the fuzz targets' bodies, calling down
//! into `manifest`, `protocol`, `import` and `watch`; nothing calls it but `fuzz/` and
//! the test that replays its corpora.
/// Writes a line to stderr and ignores a stderr that is gone. `eprintln!` panics when
/// the terminal or pipe behind stderr has closed, and a supervisor whose terminal went
/// away must still stop its services cleanly.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod cli;
pub mod control;
pub mod event;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod import;
pub mod logs;
pub mod manifest;
pub mod project;
pub mod protocol;
pub mod readiness;
pub mod run;
pub mod runtime;
pub mod service;
pub mod supervisor;
pub mod tui;
pub mod watch;
