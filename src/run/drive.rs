//! The driver: what `fleet run` does while its supervisor runs. It waits until the
//! selected services are ready, runs CMD with the fleet's addresses, stops CMD on
//! Ctrl-C or `--timeout`, keeps the fleet up after a failure when asked, and hands back
//! what happened. Returning is what stops the fleet (`launch` then sends `down`).
//!
//! # Signals
//! The driver owns them (`launch` forwards none to a driver). Ctrl-C reaches CMD from
//! the terminal, as CMD is in `fleet run`'s process group; the driver only waits for
//! CMD to end, and escalates (SIGTERM, then SIGKILL) if it does not within
//! [`INTERRUPT_GRACE`], for a SIGINT sent to `fleet run` alone. SIGTERM and SIGHUP are
//! passed on to CMD's processes at once. A second signal kills CMD, and during teardown
//! kills every service at once, as a second Ctrl-C does for `fleet up`.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::command::{self, CommandSpec, NotStarted};
use super::record::{record, Phase, Recording};
use super::summary::LeftProcess;
use crate::event::{now_ms, Command, ExitStatus, Snapshot};
use crate::logs::ServiceLog;
use crate::readiness::{laggard_report, selected_rows, verdict, Verdict};
use crate::runtime::container::Docker;
use crate::supervisor::launch::{Driver, DriverFeed};
use crate::supervisor::SupervisorHandle;

/// How long CMD has to end by itself after Ctrl-C before it gets SIGTERM.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// How long CMD has after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The signals `fleet run` handles, listened for from its start.
pub(super) struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal's number.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::SIGINT as i32,
            _ = self.terminate.recv() => Signal::SIGTERM as i32,
            _ = self.hangup.recv() => Signal::SIGHUP as i32,
        }
    }
}

/// What the driver needs besides its feed.
pub(super) struct Setup {
    pub(super) started_at_ms: u64,
    /// The services the run selected (with their dependencies).
    pub(super) selected: Vec<String>,
    pub(super) wait_timeout: Duration,
    pub(super) timeout: Option<Duration>,
    /// CMD; its marker is filled in from the feed.
    pub(super) command: CommandSpec,
    pub(super) cmd_log: Arc<ServiceLog>,
    pub(super) keep_on_failure: bool,
    /// The run's manifest, for the hint that says how to reach a kept fleet.
    pub(super) run_manifest: std::path::PathBuf,
    pub(super) signals: Signals,
    pub(super) docker: Option<Docker>,
}

/// How the wait for readiness ended.
#[derive(Debug)]
pub(super) enum WaitEnd {
    Ready,
    /// Not ready in time, or failed: the report names each laggard.
    NotReady {
        reason: String,
        report: String,
    },
    Interrupted,
}

/// What became of CMD.
#[derive(Debug)]
pub(super) enum CommandEnd {
    /// It never started: the fleet was not ready, or the run was interrupted first.
    NotRun,
    NotStarted(NotStarted),
    Exited {
        pid: u32,
        status: ExitStatus,
        timed_out: bool,
        left_running: Vec<LeftProcess>,
    },
}

/// Everything the driver saw, handed back when it ends.
pub(super) struct Driven {
    /// When the driver started: the supervisor was about to start the services.
    pub(super) driving_at_ms: u64,
    pub(super) wait: WaitEnd,
    pub(super) waited_at_ms: u64,
    pub(super) command: CommandEnd,
    pub(super) command_ms: Option<u64>,
    /// The signal that interrupted the run (not one that only ended a kept fleet).
    pub(super) interrupted: Option<i32>,
    pub(super) kept: bool,
    /// The fleet when CMD ended (or the wait did).
    pub(super) end: Arc<Snapshot>,
    pub(super) teardown_at_ms: u64,
    pub(super) run_marker: String,
    /// Ends once the supervisor is gone.
    pub(super) recorder: JoinHandle<Recording>,
    /// Kills every service on another signal during teardown; abort it after.
    pub(super) late_signals: JoinHandle<()>,
}

/// The driver `launch` runs; what it saw arrives on `done`.
pub(super) fn driver(setup: Setup, done: oneshot::Sender<Driven>) -> Driver {
    Box::new(move |feed: DriverFeed| {
        // The recorder subscribes now, before the supervisor runs, and misses nothing.
        let (phase, phase_seen) = watch::channel(Phase::Wait);
        let handle = feed.ui.handle.clone();
        let recorder = tokio::spawn(record(
            handle.snapshot.clone(),
            handle.events.subscribe(),
            phase_seen,
            setup.started_at_ms,
            setup.docker.clone(),
        ));
        Box::pin(async move {
            let driven = drive(feed, setup, phase, recorder).await;
            let _ = done.send(driven);
        })
    })
}

async fn drive(
    feed: DriverFeed,
    mut setup: Setup,
    phase: watch::Sender<Phase>,
    recorder: JoinHandle<Recording>,
) -> Driven {
    let driving_at_ms = now_ms();
    let handle = feed.ui.handle;
    let wait = wait_ready(&handle, &mut setup, &feed.ui.log_dir).await;
    let waited_at_ms = now_ms();
    let mut interrupted = None;
    let mut command = CommandEnd::NotRun;
    let mut command_ms = None;
    let mut kept = false;
    match &wait {
        WaitEnd::Ready => {
            crate::note!(
                "fleet: {} ready after {}; running {}",
                count_services(&setup.selected),
                crate::event::format_duration_ms(waited_at_ms.saturating_sub(setup.started_at_ms)),
                setup.command.argv.join(" ")
            );
            let _ = phase.send(Phase::Command);
            setup.command.run_marker = feed.run_marker.clone();
            let started = now_ms();
            match command::start(&feed.processes, &setup.command, setup.cmd_log.clone()) {
                Err(not_started) => {
                    crate::note!("fleet: {}", not_started.message);
                    command = CommandEnd::NotStarted(not_started);
                }
                Ok(mut running) => {
                    let (status, timed_out, signal) =
                        supervise(&mut running, &mut setup.signals, setup.timeout).await;
                    command_ms = Some(now_ms().saturating_sub(started));
                    interrupted = signal;
                    let left_running = running.kill_leftovers();
                    for left in &left_running {
                        crate::note!(
                            "fleet: CMD left pid {} running ({}); killed it",
                            left.pid,
                            left.command
                        );
                    }
                    command = CommandEnd::Exited {
                        pid: running.pid,
                        status,
                        timed_out,
                        left_running,
                    };
                }
            }
        }
        WaitEnd::NotReady { reason, report } => {
            crate::note!("fleet: {reason}; CMD did not run:\n{}", report.trim_end());
        }
        WaitEnd::Interrupted => {
            interrupted = Some(Signal::SIGINT as i32);
        }
    }
    let end = handle.snapshot.borrow().clone();
    let failed = match &command {
        CommandEnd::Exited {
            status, timed_out, ..
        } => *timed_out || !status.success(),
        CommandEnd::NotStarted(_) => true,
        CommandEnd::NotRun => false,
    };
    if setup.keep_on_failure && failed && interrupted.is_none() {
        kept = true;
        keep_until_down(&handle, &mut setup.signals, &setup.run_manifest).await;
    }
    let _ = phase.send(Phase::Teardown);
    let teardown_at_ms = now_ms();
    if !kept {
        crate::note!("fleet: stopping the fleet");
    }
    let late_signals = tokio::spawn(kill_on_next_signal(setup.signals, handle));
    Driven {
        driving_at_ms,
        wait,
        waited_at_ms,
        command,
        command_ms,
        interrupted,
        kept,
        end,
        teardown_at_ms,
        run_marker: feed.run_marker,
        recorder,
        late_signals,
    }
}

/// "1 service", "3 services".
fn count_services(selected: &[String]) -> String {
    match selected.len() {
        1 => "1 service".to_string(),
        count => format!("{count} services"),
    }
}

/// Waits until every selected row is ready, one fails for good, `--wait-timeout`
/// passes, or a signal arrives.
async fn wait_ready(
    handle: &SupervisorHandle,
    setup: &mut Setup,
    log_dir: &std::path::Path,
) -> WaitEnd {
    let mut snapshots = handle.snapshot.clone();
    let Some(deadline) = Instant::now().checked_add(setup.wait_timeout) else {
        return WaitEnd::NotReady {
            reason: "--wait-timeout is too long".into(),
            report: String::new(),
        };
    };
    let report = |snapshot: &Snapshot| {
        laggard_report(
            &selected_rows(snapshot, &setup.selected),
            |row| row.status.state.is_ready(),
            log_dir,
            now_ms(),
        )
    };
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        match verdict(&selected_rows(&snapshot, &setup.selected)) {
            Verdict::Ready => return WaitEnd::Ready,
            Verdict::Failed => {
                return WaitEnd::NotReady {
                    reason: "a service failed before the fleet was ready".into(),
                    report: report(&snapshot),
                };
            }
            Verdict::Pending => {}
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return WaitEnd::NotReady {
                        reason: "the fleet was stopped before it was ready".into(),
                        report: report(&snapshot),
                    };
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let snapshot = snapshots.borrow().clone();
                return WaitEnd::NotReady {
                    reason: format!(
                        "not every service became ready within {}",
                        crate::event::format_duration_ms(setup.wait_timeout.as_millis() as u64)
                    ),
                    report: report(&snapshot),
                };
            }
            _ = setup.signals.next() => {
                crate::note!("fleet: interrupted while the fleet started");
                return WaitEnd::Interrupted;
            }
        }
    }
}

/// A stop of CMD under way: the signal to send next, and when.
struct Escalation {
    next: Signal,
    at: Instant,
}

/// Waits for CMD to exit, stopping it on a signal or at `--timeout`. Returns its status,
/// whether it timed out, and the signal that interrupted the run.
async fn supervise(
    running: &mut command::RunningCommand,
    signals: &mut Signals,
    timeout: Option<Duration>,
) -> (ExitStatus, bool, Option<i32>) {
    let stopper = running.stopper();
    let timeout_at = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
    let mut timed_out = false;
    let mut interrupted: Option<i32> = None;
    let mut escalation: Option<Escalation> = None;
    let exited = running.wait();
    tokio::pin!(exited);
    let status = loop {
        let escalate_at = escalation.as_ref().map(|step| step.at);
        tokio::select! {
            status = &mut exited => break status,
            signal = signals.next() => {
                if interrupted.is_some() || timed_out {
                    crate::note!("fleet: killing CMD");
                    stopper.signal(Signal::SIGKILL);
                    escalation = None;
                    interrupted.get_or_insert(signal);
                    continue;
                }
                interrupted = Some(signal);
                if signal == Signal::SIGINT as i32 {
                    // The terminal sent it to CMD too; give CMD its chance to finish.
                    crate::note!("fleet: interrupted; waiting for CMD to end (Ctrl-C again kills it)");
                    escalation = Some(Escalation { next: Signal::SIGTERM, at: Instant::now() + INTERRUPT_GRACE });
                } else {
                    crate::note!("fleet: {}; stopping CMD", command::signal_name(signal));
                    stopper.signal(Signal::SIGTERM);
                    escalation = Some(Escalation { next: Signal::SIGKILL, at: Instant::now() + STOP_GRACE });
                }
            }
            _ = sleep_until_some(timeout_at), if !timed_out && interrupted.is_none() => {
                timed_out = true;
                crate::note!(
                    "fleet: CMD ran longer than --timeout ({}); stopping it",
                    crate::event::format_duration_ms(timeout.map_or(0, |t| t.as_millis() as u64))
                );
                stopper.signal(Signal::SIGTERM);
                escalation = Some(Escalation { next: Signal::SIGKILL, at: Instant::now() + STOP_GRACE });
            }
            _ = sleep_until_some(escalate_at) => {
                if let Some(step) = escalation.take() {
                    stopper.signal(step.next);
                    if step.next == Signal::SIGTERM {
                        escalation = Some(Escalation { next: Signal::SIGKILL, at: Instant::now() + STOP_GRACE });
                    }
                }
            }
        }
    };
    (status, timed_out, interrupted)
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `--keep-on-failure`: says how to reach the fleet, then waits until it is stopped
/// from outside (`fleet down`) or by a signal here.
async fn keep_until_down(
    handle: &SupervisorHandle,
    signals: &mut Signals,
    run_manifest: &std::path::Path,
) {
    let manifest = shell_word(&run_manifest.to_string_lossy());
    crate::note!(
        "fleet: CMD failed; the fleet stays up (--keep-on-failure). From another terminal:\n  \
         fleet -f {manifest} ps\n  \
         fleet -f {manifest} logs -f\n  \
         fleet -f {manifest} exec SERVICE -- sh\n  \
         fleet -f {manifest} down     (or Ctrl-C here) stops it and finishes the run"
    );
    let mut snapshots = handle.snapshot.clone();
    tokio::select! {
        _ = async { while snapshots.changed().await.is_ok() {} } => {}
        _ = signals.next() => {}
    }
}

/// A path as a shell word: quoted when it holds anything but plain characters.
fn shell_word(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// During teardown: the next signal kills every service at once.
async fn kill_on_next_signal(mut signals: Signals, handle: SupervisorHandle) {
    signals.next().await;
    crate::note!("fleet: killing every service");
    let _ = handle.send(Command::Kill).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_hints_are_shell_words() {
        assert_eq!(
            shell_word("/p/.fleet/runs/x/fleet.toml"),
            "/p/.fleet/runs/x/fleet.toml"
        );
        assert_eq!(shell_word("/my project/it's"), "'/my project/it'\\''s'");
    }
}
