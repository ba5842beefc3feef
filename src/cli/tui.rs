//! The terminal UI: `fleet tui` on a running fleet, and the UI beside a foreground
//! `fleet up`. The TUI itself is [`crate::tui`]; this only connects it.

use super::say;
use std::path::Path;
use std::sync::Arc;

use super::{exit, supervisor_runtime, CliError};
use crate::event::Command;
use crate::manifest;
use crate::supervisor::launch::{ForegroundUi, UiExit, UiFeed};
use crate::supervisor::SupervisorHandle;

/// The terminal UI beside a supervisor that `fleet up` runs in the foreground.
pub(super) fn foreground() -> ForegroundUi {
    Box::new(|feed: UiFeed| {
        let source = crate::tui::TuiSource {
            snapshots: feed.handle.snapshot.clone(),
            events: crate::tui::forward_events(feed.handle.events.subscribe()),
            logs: crate::tui::forward_logs(feed.logs),
            send: command_sender(feed.handle),
            read_tail: crate::tui::TuiSource::read_tail_in(feed.log_dir),
        };
        Box::pin(async move {
            let outcome = crate::tui::run(source, crate::tui::TuiMode::Up).await;
            if let Err(err) = &outcome {
                crate::note!("fleet: the terminal UI failed: {err}");
            }
            match outcome {
                Ok(crate::tui::TuiExit::FleetEnded) => UiExit::FleetEnded,
                _ => UiExit::Left,
            }
        })
    })
}

/// Commands from the TUI go to the supervisor like any client's.
fn command_sender(handle: SupervisorHandle) -> crate::tui::SendCommand {
    Arc::new(move |command: Command| {
        let handle = handle.clone();
        Box::pin(async move { handle.send(command).await.map_err(|err| err.message) })
    })
}

/// `fleet tui`: the terminal UI on a running fleet; quitting leaves the fleet running.
pub(super) fn attach(path: &Path) -> Result<i32, CliError> {
    let manifest = manifest::load(path)?;
    let runtime = supervisor_runtime()?;
    runtime.block_on(async {
        let names = manifest.services.iter().map(|s| s.name.clone()).collect();
        let source = crate::tui::remote::attach(&manifest.path, manifest.log_dir(), names).await?;
        match crate::tui::run(source, crate::tui::TuiMode::Attach).await {
            Ok(crate::tui::TuiExit::FleetEnded) => {
                say!("fleet: the fleet stopped");
                Ok(exit::SUCCESS)
            }
            Ok(_) => Ok(exit::SUCCESS),
            Err(err) => Err(CliError::new(
                exit::FAILURE,
                format!("fleet: the terminal UI failed: {err}"),
            )),
        }
    })
}
