//! Launching a supervisor in this process: what `fleet up` does once it holds the
//! project's lock.
//!
//! # Order
//! 1. Sweep what a crashed run of this project left (process groups, marked processes).
//! 2. With container services, connect to the engine: that also removes a crashed
//!    run's containers, whose published ports would fail the next step.
//! 3. Preflight: names exist, ports are free, sockets bind. A fleet that cannot start
//!    leaves no trace, so nothing is created before this.
//! 4. Open this run's pid journal and give the keeper its orders (the caller forked it
//!    before the runtime started, or it is started now); from here on a `RunCleanup`
//!    clears both however the launch ends, short of this process being killed (which
//!    is what the keeper is for).
//! 5. Create the supervisor, bind the control socket, start the output (printer or a
//!    foreground UI), forward signals, serve the socket, and run until the fleet is
//!    down.
//!
//! This module decides nothing about services; it wires the supervisor to the OS, the
//! socket and the terminal. The UI is passed in ([`Front::Ui`]) so that the supervisor
//! does not depend on the TUI.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::printer::Printer;
use super::{StartError, Supervisor, SupervisorHandle};
use crate::control::{Endpoint, SupervisorLock};
use crate::event::Command;
use crate::logs::{LogBatch, LogHub};
use crate::manifest::{Activation, Manifest};
use crate::protocol::{Hello, PROTOCOL_VERSION};
use crate::runtime::container::{ContainerError, Docker};
use crate::runtime::process::ProcessRuntime;
use crate::runtime::reaper::{self, Journal, Keeper, KeeperOrders, PendingKeeper};
use crate::service::runner::{ContainerEngine, ProjectContext};

/// How long an ending supervisor waits for its last replies (`fleet down`'s own) to
/// reach their sockets.
const REPLY_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a foreground UI gets: the supervisor's handle, live output, and where the log
/// files are (for scrollback).
pub struct UiFeed {
    pub handle: SupervisorHandle,
    pub logs: broadcast::Receiver<Arc<LogBatch>>,
    pub log_dir: PathBuf,
}

/// How a foreground UI ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiExit {
    /// The fleet stopped (by `fleet down`, say) while the UI showed it.
    FleetEnded,
    /// The user left the UI (or it failed): the fleet is stopped gracefully.
    Left,
}

/// A UI that runs beside the supervisor until the user leaves it or the fleet ends.
/// It is called before the supervisor runs and should subscribe to what it shows
/// before it returns its future.
pub type ForegroundUi =
    Box<dyn FnOnce(UiFeed) -> Pin<Box<dyn Future<Output = UiExit> + Send>> + Send>;

/// What a driver gets: what a UI gets, and what it needs to run a command of its own
/// under this run (`fleet run`): the process runtime that reaps every child of this
/// process (a second one would steal its statuses), and the run's marker, which the
/// keeper sweeps by prefix if this process dies.
pub struct DriverFeed {
    pub ui: UiFeed,
    pub processes: ProcessRuntime,
    /// `FLEET_INSTANCE` prefix of everything this run starts ([`crate::project::run_marker`]).
    pub run_marker: String,
}

/// A client in this process that drives the fleet itself (`fleet run`): it handles
/// signals itself and decides when the fleet stops, which is when its future ends.
pub type Driver = Box<dyn FnOnce(DriverFeed) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What shows the fleet while it runs.
pub enum Front {
    /// fleet's status lines on stdout and, with `service_output`, every service's
    /// output lines (a detached supervisor shows status lines only: they go to
    /// `.fleet/supervisor.log`, and service output is in the per-service logs).
    Lines { service_output: bool },
    /// A foreground UI; once the user leaves it, the shutdown shows as status lines.
    Ui(ForegroundUi),
    /// A driver: no output of its own, no signal forwarding; the fleet stops
    /// gracefully once the driver's future ends.
    Driver(Driver),
}

/// How a launched fleet ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every service was stopped gracefully.
    Stopped,
    /// A second interrupt killed every service at once.
    Killed,
}

/// Why a fleet could not be launched. Nothing runs when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// fleet's own machinery could not be set up (`what` says which part).
    #[error("{what}: {source}")]
    Setup {
        what: &'static str,
        source: io::Error,
    },
    /// The services cannot start (unknown names, busy ports).
    #[error("{0}")]
    Start(#[from] StartError),
    /// The control socket cannot be bound.
    #[error("fleet: cannot listen on {}: {source}", socket.display())]
    Listen { socket: PathBuf, source: io::Error },
}

/// This run's crash cleanup: the pid journal and the keeper. Dropping it (on a clean
/// stop or an error after they were created) forgets the journal and releases the
/// keeper, whose sweep then finds nothing. A supervisor that is killed never drops
/// it; the keeper then sweeps what the journal names.
struct RunCleanup {
    journal: Journal,
    keeper: Option<Keeper>,
}

impl Drop for RunCleanup {
    fn drop(&mut self) {
        self.journal.clear();
        if let Some(keeper) = self.keeper.take() {
            keeper.release();
        }
    }
}

/// Everything [`launch`] needs; the caller has taken the project's lock.
pub struct Launch {
    pub manifest: Manifest,
    /// The services to start (those named, with their dependencies, or every one its
    /// profiles enable).
    pub activation: Activation,
    pub endpoint: Endpoint,
    pub lock: SupervisorLock,
    pub front: Front,
    /// Where the pid journals and the logs (`logs/` inside it) go: `.fleet/` beside
    /// the manifest for `fleet up`, the run's own folder for `fleet run`.
    pub state_dir: PathBuf,
    /// The fleet's Docker project exists for this launch alone (`fleet run`): its
    /// network and named volumes are removed when it ends, and by the keeper if the
    /// supervisor dies. `fleet up` keeps them for the next `up`.
    pub ephemeral: bool,
    /// The keeper, forked before the runtime started ([`PendingKeeper::fork`]); `None`
    /// starts one by re-executing fleet.
    pub keeper: Option<PendingKeeper>,
}

/// Runs a supervisor for `launch.manifest` in this process until the fleet is down.
pub async fn launch(launch: Launch) -> Result<Ended, LaunchError> {
    let Launch {
        manifest,
        activation,
        endpoint,
        lock: _lock,
        front,
        state_dir,
        ephemeral,
        keeper: pending_keeper,
    } = launch;
    let log_dir = crate::project::logs_in(&state_dir);
    let setup = |what: &'static str| move |source: io::Error| LaunchError::Setup { what, source };
    let processes = ProcessRuntime::start().map_err(setup("cannot set up process supervision"))?;
    let token = crate::project::project_token(&manifest.path);
    let run_id = crate::project::new_run_id();
    let swept = reaper::sweep_previous(&state_dir, &crate::project::project_marker(&token));
    if swept.groups + swept.processes > 0 {
        crate::note!(
            "fleet: cleaned up after a previous run that did not stop cleanly ({} process groups, {} stray processes)",
            swept.groups, swept.processes
        );
    }
    // Containers of a crashed run go first: their published ports would fail the
    // preflight. Connecting now also reports a missing engine before anything starts;
    // the container services then fail with that message and the rest runs.
    let engine = if manifest.services.iter().any(|s| s.is_container()) {
        // The runners share this one outcome; a failure is the text every container
        // service fails with.
        Some(
            connect_engine(&manifest.project.name)
                .await
                .map_err(|err| err.to_string()),
        )
    } else {
        None
    };
    // Ports and names are checked before anything is created: a fleet that cannot start
    // leaves no trace.
    let preflight = super::preflight(&manifest, &activation)?;
    let journal = Journal::open(&state_dir, &run_id).map_err(setup("cannot write .fleet/"))?;
    let marker = crate::project::run_marker(&token, &run_id);
    let has_containers = manifest.services.iter().any(|s| s.is_container());
    let orders = KeeperOrders {
        journal: journal.path().to_path_buf(),
        marker: marker.clone(),
        containers: has_containers.then(|| (manifest.project.name.clone(), run_id.clone())),
        ephemeral,
    };
    let keeper =
        Keeper::start(pending_keeper, &orders).map_err(setup("cannot start the keeper process"))?;
    let _cleanup = RunCleanup {
        journal: journal.clone(),
        keeper: Some(keeper),
    };
    let hub = LogHub::default();
    let project = Arc::new(ProjectContext {
        name: manifest.project.name.clone(),
        root: manifest.root.clone(),
        marker: marker.clone(),
        log_dir: log_dir.clone(),
        log_max_size: manifest.project.log_max_size,
        log_keep: manifest.project.log_keep,
        base_env: std::env::vars().collect(),
        processes,
        hub: hub.clone(),
        journal,
        run_id,
        engine: tokio::sync::OnceCell::new_with(engine),
        builds: Default::default(),
    });
    // Every replica's name (`web`, or `web.1`, `web.2`, ...), for the output's labels.
    let names: Vec<String> = manifest
        .services
        .iter()
        .flat_map(|spec| {
            (1..=spec.replicas.max(1)).map(|replica| {
                crate::event::ReplicaId::new(spec.name.as_str(), replica)
                    .display_name(spec.replicas > 1)
            })
        })
        .collect();
    // Replica 1 of a replicated service writes the service's own log (`web`).
    let aliases: Vec<(String, String)> = manifest
        .services
        .iter()
        .filter(|spec| spec.replicas > 1)
        .map(|spec| (spec.name.clone(), format!("{}.1", spec.name)))
        .collect();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        project: manifest.project.name.clone(),
        manifest: manifest.path.display().to_string(),
        pid: std::process::id(),
    };
    let engine_project = project.clone();
    let processes = project.processes.clone();
    let (supervisor, handle) = Supervisor::new(manifest, project, activation, preflight)?;
    let listener = super::server::bind(&endpoint.socket).map_err(|source| LaunchError::Listen {
        socket: endpoint.socket.clone(),
        source,
    })?;
    // A driver handles signals itself: it stops its own command before the fleet.
    let forwards_signals = !matches!(front, Front::Driver(_));
    let (printer, ui_task) = match front {
        Front::Lines { service_output } => {
            // Output nobody can read (stdout is /dev/null, as under a benchmark or a
            // service manager that discards it) is not worth formatting; the log files
            // have it all.
            let service_output = service_output && !crate::runtime::process::stdout_is_null();
            let printer = Printer::start(
                &names,
                &aliases,
                service_output.then(|| hub.subscribe()),
                handle.events.subscribe(),
            );
            (Some(printer), None)
        }
        Front::Ui(ui) => {
            // Called here, not in the task, so the UI subscribes before the supervisor
            // runs and misses no event.
            let running = ui(UiFeed {
                handle: handle.clone(),
                logs: hub.subscribe(),
                log_dir,
            });
            let handle = handle.clone();
            let task = tokio::spawn(async move {
                if running.await == UiExit::FleetEnded {
                    return None;
                }
                // The terminal is back to normal: show the shutdown as plain status lines.
                let printer = Printer::start(&names, &aliases, None, handle.events.subscribe());
                crate::note!(
                    "fleet: stopping every service (press Ctrl-C again to kill them at once)"
                );
                let _ = handle.send(Command::Down).await;
                Some(printer)
            });
            (None, Some(task))
        }
        Front::Driver(driver) => {
            // Called here, like a UI, so the driver subscribes before anything happens.
            let driving = driver(DriverFeed {
                ui: UiFeed {
                    handle: handle.clone(),
                    logs: hub.subscribe(),
                    log_dir,
                },
                processes,
                run_marker: marker,
            });
            let handle = handle.clone();
            let task = tokio::spawn(async move {
                driving.await;
                let _ = handle.send(Command::Down).await;
                None
            });
            (None, Some(task))
        }
    };
    let signals = forwards_signals.then(|| tokio::spawn(forward_signals(handle.clone())));
    let in_flight = super::server::InFlight::default();
    let server = tokio::spawn(super::server::serve(
        listener,
        handle.clone(),
        hello,
        in_flight.clone(),
    ));
    drop(handle);
    let killed = supervisor.run().await;
    if let Some(Ok(engine)) = engine_project.engine.get() {
        // The engine refuses to remove a network while a container is attached to it.
        engine.docker.removals_done().await;
        engine.docker.remove_network(&engine_project.name).await;
        if ephemeral {
            engine.docker.remove_volumes(&engine_project.name).await;
        }
    }
    if let Some(signals) = signals {
        signals.abort();
    }
    server.abort();
    // `fleet down` (and anything else asked meanwhile) gets its answer before we exit.
    in_flight.settle(REPLY_GRACE).await;
    let _ = std::fs::remove_file(&endpoint.socket);
    if let Some(printer) = printer {
        printer.finish();
    }
    if let Some(task) = ui_task
        && let Ok(Some(printer)) = task.await
    {
        printer.finish();
    }
    Ok(if killed {
        Ended::Killed
    } else {
        Ended::Stopped
    })
}

/// Connects to Docker, removes what a crashed run of this project left, and makes the
/// project's network.
async fn connect_engine(project: &str) -> Result<ContainerEngine, ContainerError> {
    let cannot_start = |err: ContainerError| {
        crate::note!("fleet: container services cannot start: {err}");
        err
    };
    let docker = Docker::connect().await.map_err(cannot_start)?;
    match docker.sweep(project, None).await {
        Ok(0) => {}
        Ok(removed) => crate::note!("fleet: removed {removed} containers left by a previous run"),
        Err(err) => crate::note!("fleet: cannot look for containers of a previous run: {err}"),
    }
    let network = docker.ensure_network(project).await.map_err(cannot_start)?;
    Ok(ContainerEngine { docker, network })
}

/// First SIGINT or SIGTERM: graceful stop. Second: kill everything at once.
async fn forward_signals(handle: SupervisorHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    // SIGHUP too: a closed terminal means the same as Ctrl-C, a graceful stop.
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        crate::note!("fleet: cannot listen for Ctrl-C; use `fleet down` to stop");
        return;
    };
    let mut received = 0;
    loop {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
        received += 1;
        let command = if received == 1 {
            crate::note!("fleet: stopping every service (press Ctrl-C again to kill them at once)");
            Command::Down
        } else {
            crate::note!("fleet: killing every service");
            Command::Kill
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = handle.send(command).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_cleanup_forgets_the_journal_when_a_launch_fails() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let journal = Journal::open(dir.path(), "run1")?;
        journal.add(std::process::id());
        let path = journal.path().to_path_buf();
        assert!(path.exists());
        let failed_launch = || -> Result<(), LaunchError> {
            let _cleanup = RunCleanup {
                journal,
                keeper: None,
            };
            Err(StartError::UnknownServices(vec!["nope".into()]).into())
        };
        assert!(matches!(failed_launch(), Err(LaunchError::Start(_))));
        assert!(!path.exists(), "{} is still there", path.display());
        Ok(())
    }

    #[test]
    fn launch_errors_read_as_before() {
        let setup = LaunchError::Setup {
            what: "cannot write .fleet/",
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(setup.to_string(), "cannot write .fleet/: permission denied");
        let listen = LaunchError::Listen {
            socket: PathBuf::from("/run/fleet/abc.sock"),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(
            listen.to_string(),
            "fleet: cannot listen on /run/fleet/abc.sock: address in use"
        );
    }

    #[test]
    fn start_errors_read_as_before_and_keep_the_io_error() {
        use std::error::Error as _;
        let busy =
            StartError::PortsBusy(vec!["port 7001 is in use".into(), "port 7002 too".into()]);
        assert_eq!(busy.to_string(), "port 7001 is in use\nport 7002 too");
        let unknown = StartError::UnknownServices(vec!["a".into(), "b".into()]);
        assert_eq!(unknown.to_string(), "unknown service: a, b");
        let launch = LaunchError::from(StartError::Io(io::Error::from(
            io::ErrorKind::PermissionDenied,
        )));
        assert_eq!(launch.to_string(), "permission denied");
        let io_error = launch
            .source()
            .and_then(|start| start.source())
            .and_then(|io| io.downcast_ref::<io::Error>());
        assert_eq!(
            io_error.map(io::Error::kind),
            Some(io::ErrorKind::PermissionDenied)
        );
    }
}
