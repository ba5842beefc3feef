//! `fleet run`: bring a fleet of its own up, wait until it is ready, run a command
//! against it, tear it all down, check that nothing is left, and keep the logs, a
//! summary and, if asked, JUnit XML. What CI and integration tests need in one command.
//!
//! # Theory of operation
//! `fleet run` is a client of the same supervisor as `fleet up`, launched in this
//! process ([`crate::supervisor::launch`]) under an identity of its own
//! ([`place`]): its manifest path, and so its socket, lock and markers, is
//! `<artifacts>/fleet.toml`; its state and logs are in the artifacts folder; its Docker
//! project is `<project>-run-<token>`, with its own network and named volumes. The
//! developer's `fleet up` of the same folder and any other `fleet run` are untouched,
//! except for the ports the manifest fixes, which are the services' own: a busy one
//! fails the run before anything starts (exit 3, naming its owner).
//!
//! The launch runs the [`drive`] driver beside the supervisor: it waits for readiness
//! ([`crate::readiness`], as `up --wait` does), runs CMD ([`command`]) and returns,
//! which makes `launch` stop the fleet as `down` does. A [`record`] task follows the
//! supervisor's snapshots and events the whole time. When the supervisor is gone,
//! [`teardown`] checks what is left, and this module writes the artifacts and decides
//! the exit code. Since the supervisor lives in this process, a `kill -9` of `fleet
//! run` is a `kill -9` of the supervisor: its keeper removes every process (CMD's
//! too, by marker), container, network and volume of the run.

mod artifacts;
mod command;
mod drive;
mod place;
mod record;
pub mod summary;
mod teardown;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::event::{now_ms, ServiceState};
use crate::logs::{LogHub, ServiceLog};
use crate::manifest::{Activation, Manifest, ManifestError, ServiceKind, ServiceSpec};
use crate::runtime::container::Docker;
use crate::supervisor::launch::{launch, Front, Launch, LaunchError};
use crate::supervisor::StartError;

pub use place::PlaceError;
use summary::{CommandSummary, Durations, Outcome, ServiceSummary, Summary};

/// The exit codes `fleet run` gives besides CMD's own. The documented table is
/// `cli::exit`, which this module may not depend on; a test there checks that these
/// agree with it.
pub mod exit {
    pub const SUCCESS: i32 = 0;
    /// CMD passed, but `--fail-on-restart` saw an incident, or teardown found leftovers.
    pub const FAILURE: i32 = 1;
    /// A service named on the command line does not exist.
    pub const INVALID: i32 = 2;
    /// The fleet could not start (a port is busy).
    pub const START_FAILED: i32 = 3;
    /// The fleet never became ready; CMD did not run.
    pub const WAIT_FAILED: i32 = 5;
}

/// CMD was not found (as a shell reports it).
pub const EXIT_NOT_FOUND: i32 = 127;
/// CMD exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// CMD ran longer than `--timeout` (as `timeout(1)` reports it).
pub const EXIT_TIMED_OUT: i32 = 124;
/// How many log lines a JUnit test case shows.
const JUNIT_TAIL: usize = 50;

/// What `fleet run` was asked to do.
pub struct RunOptions {
    pub manifest: PathBuf,
    pub activation: Activation,
    /// CMD and its arguments.
    pub command: Vec<String>,
    /// Where `fleet run` was started: CMD's folder, and the base of a relative
    /// `--artifacts`.
    pub cwd: PathBuf,
    pub wait_timeout: Duration,
    pub timeout: Option<Duration>,
    pub artifacts: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub fail_on_restart: bool,
    pub keep_on_failure: bool,
    pub no_build: bool,
    /// The keeper, forked before the runtime started (see [`Launch::keeper`]).
    pub keeper: Option<crate::runtime::reaper::PendingKeeper>,
}

/// Why a run did not happen at all (nothing started, no artifacts written).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{}", .0.render(false))]
    Manifest(#[from] ManifestError),
    /// A bad selection (unknown profile or service).
    #[error("error: {0}")]
    Invalid(String),
    #[error("fleet: {0}")]
    Place(#[from] PlaceError),
    #[error("fleet: {0}")]
    Setup(String),
}

/// Runs `fleet run`; returns its exit code. Must run inside a multi-threaded tokio
/// runtime (the supervisor runs in it).
pub async fn run(mut options: RunOptions) -> Result<i32, RunError> {
    let started_at_ms = now_ms();
    let keeper = options.keeper.take();
    // From the start: a Ctrl-C while the fleet starts must stop it, not kill us.
    let signals = drive::Signals::listen()
        .map_err(|err| RunError::Setup(format!("cannot listen for signals: {err}")))?;
    let manifest = crate::manifest::load_with(&options.manifest, &options.activation)?;
    manifest
        .check_activation(&options.activation)
        .map_err(RunError::Invalid)?;
    let swept = place::sweep_dead_runs(&manifest);
    if swept.groups + swept.processes > 0 {
        crate::note!(
            "fleet: cleaned up after an earlier run that died with its keeper ({} process groups, {} stray processes)",
            swept.groups,
            swept.processes
        );
    }
    let place = place::Place::claim(
        &manifest,
        options.artifacts.as_deref(),
        &options.cwd,
        started_at_ms,
    )?;
    let run_manifest = place.manifest(&manifest, options.no_build);
    place.write_manifest(&run_manifest)?;
    let selected = run_manifest.selection(&options.activation);
    let uses_containers = run_manifest
        .services
        .iter()
        .any(|spec| spec.is_container() && selected.contains(&spec.name));
    // The run's own connection, to note the volumes of its containers and check after
    // teardown; the supervisor reports an engine that cannot be reached.
    let docker = if uses_containers {
        Docker::connect().await.ok()
    } else {
        None
    };
    let cmd_log = ServiceLog::open(&place.dir, "cmd", 0, 0, LogHub::default())
        .map_err(|err| RunError::Setup(format!("cannot write {}: {err}", place.dir.display())))?;
    let mut env = fleet_env(&run_manifest, &selected);
    env.push(("FLEET_RUN_DIR".into(), place.dir.display().to_string()));
    crate::note!(
        "fleet: run of {} in {}",
        manifest.project.name,
        place.dir.display()
    );
    let (done, driven) = oneshot::channel();
    let setup = drive::Setup {
        started_at_ms,
        selected: selected.clone(),
        wait_timeout: options.wait_timeout,
        timeout: options.timeout,
        command: command::CommandSpec {
            argv: options.command.clone(),
            cwd: options.cwd.clone(),
            env,
            run_marker: String::new(),
        },
        cmd_log,
        keep_on_failure: options.keep_on_failure,
        run_manifest: place.manifest_path.clone(),
        signals,
        docker: docker.clone(),
    };
    let log_dir = place.log_dir();
    let launched = launch(Launch {
        manifest: run_manifest.clone(),
        activation: options.activation.clone(),
        endpoint: place.endpoint.clone(),
        lock: place.lock,
        front: Front::Driver(drive::driver(setup, done)),
        state_dir: place.state_dir.clone(),
        ephemeral: true,
        keeper,
    })
    .await;
    let down_at_ms = now_ms();
    // The run's identity is used once: its lock file would only pile up.
    let _ = std::fs::remove_file(&place.endpoint.lock);
    let context = Context {
        options: &options,
        manifest: &manifest,
        run_manifest: &run_manifest,
        place_dir: &place.dir,
        log_dir,
        selected: &selected,
        started_at_ms,
    };
    let (summary, recording) = match launched {
        Err(err) => (context.start_failed(&err), None),
        Ok(_) => {
            let Ok(mut driven) = driven.await else {
                return Err(RunError::Setup(
                    "the run's driver ended without a word".into(),
                ));
            };
            driven.late_signals.abort();
            let recording = (&mut driven.recorder).await.unwrap_or_default();
            let checked_at_ms = now_ms();
            let teardown = teardown::check(
                &driven.run_marker,
                docker.as_ref(),
                &place.run_project,
                &recording.volumes,
            )
            .await;
            let check_ms = now_ms().saturating_sub(checked_at_ms);
            let summary = context.summary(&driven, &recording, teardown, down_at_ms, check_ms);
            (summary, Some(recording))
        }
    };
    context.finish(&summary, recording.as_ref());
    Ok(summary.exit_code)
}

/// `FLEET_<SERVICE>_PORT` and `FLEET_<SERVICE>_URL` for every selected service with a
/// port or a socket: replica 1's first port (a socket is every replica's).
fn fleet_env(manifest: &Manifest, selected: &[String]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for spec in manifest
        .services
        .iter()
        .filter(|spec| selected.contains(&spec.name))
    {
        let Some((host, port)) = address(spec) else {
            continue;
        };
        let name = env_name(&spec.name);
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        env.push((format!("FLEET_{name}_PORT"), port.to_string()));
        env.push((format!("FLEET_{name}_URL"), format!("http://{host}:{port}")));
    }
    env
}

/// Where a client on this machine reaches a service: its first port (on 127.0.0.1),
/// its socket (on the socket's address, loopback for a wildcard), or a container's
/// first published port (on its host IP, loopback for a wildcard).
fn address(spec: &ServiceSpec) -> Option<(String, u16)> {
    let loopback = |host: &str| match host {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" => "::1".to_string(),
        other => other.to_string(),
    };
    match &spec.kind {
        ServiceKind::Process(_) => match (spec.ports.first(), &spec.socket) {
            (Some(port), _) => Some(("127.0.0.1".into(), *port)),
            (None, Some(socket)) => Some((loopback(&socket.host), socket.port)),
            (None, None) => None,
        },
        ServiceKind::Container(container) => container
            .ports
            .first()
            .map(|mapping| (loopback(&mapping.host_ip), mapping.host)),
    }
}

/// A service name as part of a variable name: upper case, `-` and `.` as `_`.
fn env_name(service: &str) -> String {
    service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// What the end of a run needs to know.
struct Context<'a> {
    options: &'a RunOptions,
    manifest: &'a Manifest,
    run_manifest: &'a Manifest,
    place_dir: &'a Path,
    log_dir: PathBuf,
    selected: &'a [String],
    started_at_ms: u64,
}

impl Context<'_> {
    fn base(&self, outcome: Outcome, exit_code: i32) -> Summary {
        Summary {
            fleet: env!("CARGO_PKG_VERSION").to_string(),
            project: self.manifest.project.name.clone(),
            run_project: self.run_manifest.project.name.clone(),
            manifest: self.manifest.path.display().to_string(),
            run_manifest: self.run_manifest.path.display().to_string(),
            artifacts: self.place_dir.display().to_string(),
            started_at: crate::logs::format_timestamp(self.started_at_ms),
            started_at_ms: self.started_at_ms,
            profiles: self.options.activation.profiles.clone(),
            selected: self.selected.to_vec(),
            outcome,
            exit_code,
            error: None,
            fail_on_restart: self.options.fail_on_restart,
            kept_after_failure: false,
            durations_ms: Durations {
                total: now_ms().saturating_sub(self.started_at_ms),
                ..Durations::default()
            },
            command: CommandSummary {
                argv: self.options.command.clone(),
                ran: false,
                pid: None,
                exit_code: None,
                signal: None,
                error: None,
                left_running: Vec::new(),
                log: "cmd.log".into(),
            },
            services: Vec::new(),
            teardown: summary::Teardown::default(),
        }
    }

    /// The fleet could not start: nothing ran.
    fn start_failed(&self, err: &LaunchError) -> Summary {
        let exit_code = match err {
            LaunchError::Start(StartError::UnknownServices(_)) => exit::INVALID,
            LaunchError::Start(_) => exit::START_FAILED,
            _ => exit::FAILURE,
        };
        let mut text = format!("error: cannot start the fleet, nothing was started:\n{err}");
        if matches!(err, LaunchError::Start(StartError::PortsBusy(_))) {
            text.push_str(
                "\n(a run uses the ports its manifest fixes; stop what holds them, such as a \
                 `fleet up` of this project, or let the services take ports of their own)",
            );
        }
        crate::note!("{text}");
        let mut summary = self.base(Outcome::StartFailed, exit_code);
        summary.error = Some(err.to_string());
        summary.teardown.clean = true;
        summary
    }

    /// The summary of a run whose fleet started.
    fn summary(
        &self,
        driven: &drive::Driven,
        recording: &record::Recording,
        teardown: summary::Teardown,
        down_at_ms: u64,
        check_ms: u64,
    ) -> Summary {
        let since = |at: u64| at.saturating_sub(self.started_at_ms);
        let teardown_since = since(driven.teardown_at_ms);
        let services: Vec<ServiceSummary> = recording
            .rows
            .iter()
            .filter(|row| self.selected.contains(&row.service))
            .map(|row| {
                let end = driven.end.service(&row.name);
                let state_at_end = end.map_or(ServiceState::Stopped, |end| end.status.state);
                let ready = row
                    .ready_at_ms
                    .is_some_and(|at| since(at) <= teardown_since);
                ServiceSummary {
                    name: row.name.clone(),
                    service: row.service.clone(),
                    replica: row.replica,
                    kind: row.kind,
                    ready,
                    time_to_healthy_ms: row.ready_at_ms.filter(|_| ready).map(since),
                    healthy_after_start_ms: row.ready_after_start_ms.filter(|_| ready),
                    state_at_end,
                    last_probe_error: if ready {
                        None
                    } else {
                        end.and_then(|end| end.status.probe_error.clone())
                            .or_else(|| row.last_probe_error.clone())
                    },
                    states: row.states.clone(),
                    restarts: row
                        .restarts
                        .iter()
                        .filter(|restart| restart.since_start_ms <= teardown_since)
                        .cloned()
                        .collect(),
                    incidents: row
                        .incidents
                        .iter()
                        .filter(|incident| incident.since_start_ms <= teardown_since)
                        .cloned()
                        .collect(),
                    pids: row.pids.clone(),
                    containers: row.containers.clone(),
                    log: format!("logs/{}.log", row.log_name),
                }
            })
            .collect();
        let incidents: usize = services.iter().map(|s| s.incidents.len()).sum();
        let (outcome, exit_code, error) = self.verdict(driven, incidents, &teardown);
        let mut summary = self.base(outcome, exit_code);
        summary.error = error;
        summary.kept_after_failure = driven.kept;
        summary.durations_ms = Durations {
            up: Some(since(driven.driving_at_ms)),
            wait: Some(driven.waited_at_ms.saturating_sub(driven.driving_at_ms)),
            command: driven.command_ms,
            down: Some(down_at_ms.saturating_sub(driven.teardown_at_ms)),
            teardown_check: Some(check_ms),
            total: since(now_ms()),
        };
        match &driven.command {
            drive::CommandEnd::NotRun => {}
            drive::CommandEnd::NotStarted(not_started) => {
                summary.command.error = Some(not_started.message.clone());
            }
            drive::CommandEnd::Exited {
                pid,
                status,
                left_running,
                ..
            } => {
                summary.command.ran = true;
                summary.command.pid = Some(*pid);
                match status {
                    crate::event::ExitStatus::Code(code) => summary.command.exit_code = Some(*code),
                    crate::event::ExitStatus::Signal(signal) => {
                        summary.command.signal = Some(command::signal_name(*signal));
                    }
                }
                summary.command.left_running = left_running.clone();
            }
        }
        summary.services = services;
        summary.teardown = teardown;
        summary
    }

    /// The outcome, the exit code and the error of a run whose fleet started. An
    /// interruption wins, then a fleet that was not ready, then CMD's own result; a
    /// passing CMD fails the run with 1 for a restart (with `--fail-on-restart`) or
    /// for what teardown found.
    fn verdict(
        &self,
        driven: &drive::Driven,
        incidents: usize,
        teardown: &summary::Teardown,
    ) -> (Outcome, i32, Option<String>) {
        if let Some(signal) = driven.interrupted {
            return (
                Outcome::Interrupted,
                128 + signal,
                Some(format!("interrupted by {}", command::signal_name(signal))),
            );
        }
        if let drive::WaitEnd::NotReady { reason, .. } = &driven.wait {
            return (Outcome::NotReady, exit::WAIT_FAILED, Some(reason.clone()));
        }
        match &driven.command {
            drive::CommandEnd::NotRun => (
                Outcome::Interrupted,
                130,
                Some("interrupted before CMD ran".into()),
            ),
            drive::CommandEnd::NotStarted(not_started) => (
                Outcome::CommandNotRun,
                not_started.code,
                Some(not_started.message.clone()),
            ),
            drive::CommandEnd::Exited {
                timed_out: true, ..
            } => (
                Outcome::TimedOut,
                EXIT_TIMED_OUT,
                Some("CMD ran longer than --timeout".into()),
            ),
            drive::CommandEnd::Exited { status, .. } if !status.success() => (
                Outcome::CommandFailed,
                command::shell_code(*status),
                Some(format!("CMD {status}")),
            ),
            drive::CommandEnd::Exited { .. } => {
                if self.options.fail_on_restart && incidents > 0 {
                    (
                        Outcome::ServiceRestarted,
                        exit::FAILURE,
                        Some(format!(
                            "{incidents} service incident{} during the run (--fail-on-restart)",
                            if incidents == 1 { "" } else { "s" }
                        )),
                    )
                } else if teardown.found_anything() {
                    (
                        Outcome::LeftOvers,
                        exit::FAILURE,
                        Some("teardown found what the fleet started still there".into()),
                    )
                } else {
                    (Outcome::Passed, exit::SUCCESS, None)
                }
            }
        }
    }

    /// Writes `merged.log`, `summary.json` and the JUnit file, and says how the run
    /// ended. A file that cannot be written is reported; the exit code stays.
    fn finish(&self, summary: &Summary, recording: Option<&record::Recording>) {
        let mut sources: Vec<(String, PathBuf)> = Vec::new();
        if let Some(recording) = recording {
            for row in &recording.rows {
                sources.push((
                    row.name.clone(),
                    crate::logs::log_path(&self.log_dir, &row.log_name),
                ));
            }
        }
        sources.push((
            artifacts::COMMAND_LABEL.to_string(),
            self.place_dir.join("cmd.log"),
        ));
        let write = |path: &Path, result: std::io::Result<()>| {
            if let Err(err) = result {
                crate::note!("fleet: cannot write {}: {err}", path.display());
            }
        };
        let merged = self.place_dir.join("merged.log");
        write(
            &merged,
            artifacts::write_merged(&merged, &sources).map(drop),
        );
        let summary_path = self.place_dir.join("summary.json");
        let json = serde_json::to_string_pretty(summary).map_err(std::io::Error::other);
        write(
            &summary_path,
            json.and_then(|json| std::fs::write(&summary_path, json + "\n")),
        );
        if let Some(junit) = &self.options.junit {
            let path = if junit.is_absolute() {
                junit.clone()
            } else {
                self.options.cwd.join(junit)
            };
            let service_tail = |service: &ServiceSummary| {
                artifacts::tail(&self.log_dir, &log_name(service), JUNIT_TAIL)
            };
            let logs = summary::JunitLogs {
                service_tail: &service_tail,
                command_tail: artifacts::tail(self.place_dir, "cmd", JUNIT_TAIL),
            };
            let xml = summary::junit(summary, &logs);
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, xml));
            write(&path, written);
        }
        self.report(summary);
    }

    /// The closing lines on stderr.
    fn report(&self, summary: &Summary) {
        let teardown = &summary.teardown;
        if summary.outcome != Outcome::StartFailed {
            let down = summary
                .durations_ms
                .down
                .map(|ms| format!(" in {}", crate::event::format_duration_ms(ms)))
                .unwrap_or_default();
            if teardown.clean {
                crate::note!(
                    "fleet: fleet stopped{down}; nothing left ({} checked)",
                    teardown.checked.join(", ")
                );
            } else {
                let mut found = Vec::new();
                for process in &teardown.processes {
                    found.push(format!("process {} ({})", process.pid, process.command));
                }
                for (kind, names) in [
                    ("container", &teardown.containers),
                    ("network", &teardown.networks),
                    ("volume", &teardown.volumes),
                ] {
                    found.extend(names.iter().map(|name| format!("{kind} {name}")));
                }
                found.extend(teardown.errors.iter().cloned());
                crate::note!(
                    "fleet: fleet stopped{down}; teardown found, and removed: {}",
                    found.join(", ")
                );
            }
        }
        let verdict = match summary.outcome {
            Outcome::Passed => "passed".to_string(),
            _ => format!(
                "failed: {}",
                summary.error.as_deref().unwrap_or("see summary.json")
            ),
        };
        crate::note!(
            "fleet: run {verdict} (exit {}); artifacts in {}",
            summary.exit_code,
            self.place_dir.display()
        );
    }
}

/// A summary row's log name (`web` for `web.1`, as files are named).
fn log_name(service: &ServiceSummary) -> String {
    service
        .log
        .strip_prefix("logs/")
        .and_then(|name| name.strip_suffix(".log"))
        .unwrap_or(&service.name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_become_variable_names() {
        assert_eq!(env_name("web-api.v2"), "WEB_API_V2");
        assert_eq!(env_name("db"), "DB");
    }

    #[test]
    fn addresses_come_from_ports_sockets_and_published_ports() {
        let manifest = crate::manifest::parse(
            Path::new("/p/fleet.toml"),
            r#"
[services.web]
command = "web"
ports = [7001, 7002]

[services.pool]
command = "pool"
socket = "0.0.0.0:7003"

[services.worker]
command = "worker"

[services.cache]
image = "cache:dev"
ports = ["6380:6379"]
"#,
        );
        let manifest = match manifest {
            Ok(manifest) => manifest,
            Err(err) => panic!("{}", err.render(false)),
        };
        let selected: Vec<String> = ["web", "pool", "worker", "cache"]
            .into_iter()
            .map(String::from)
            .collect();
        let env = fleet_env(&manifest, &selected);
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("FLEET_WEB_PORT", "7001"),
                ("FLEET_WEB_URL", "http://127.0.0.1:7001"),
                ("FLEET_POOL_PORT", "7003"),
                ("FLEET_POOL_URL", "http://127.0.0.1:7003"),
                ("FLEET_CACHE_PORT", "6380"),
                ("FLEET_CACHE_URL", "http://127.0.0.1:6380"),
            ]
        );
    }
}
