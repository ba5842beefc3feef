//! The command line: argument parsing and the subcommands. `up` runs the supervisor
//! in this process; every other command is a client of a running supervisor.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::control::client::{Client, ClientError};
use crate::control::{Endpoint, SupervisorLock};
use crate::event::{now_ms, Command, Snapshot};
use crate::manifest::{self, Manifest, ManifestError};
use crate::protocol::{ErrorCode, Request};
use crate::supervisor::launch::{
    launch, Ended, ForegroundUi, Front, Launch, LaunchError, UiExit, UiFeed,
};
use crate::supervisor::printer::{use_color, Labels};
use crate::supervisor::{StartError, SupervisorHandle};

/// Documented, stable exit codes.
pub mod exit {
    /// Everything went as asked.
    pub const SUCCESS: i32 = 0;
    /// A runtime failure not covered below.
    pub const FAILURE: i32 = 1;
    /// The manifest or the command line is invalid; nothing was started.
    pub const INVALID: i32 = 2;
    /// The fleet could not start (a port is busy, a socket can't be bound); nothing was
    /// started.
    pub const START_FAILED: i32 = 3;
    /// No fleet is running for this project.
    pub const NOT_RUNNING: i32 = 4;
    /// `--wait` gave up: a service did not become healthy in time, or failed.
    pub const WAIT_FAILED: i32 = 5;
    /// `fleet up` was interrupted twice and killed every service instead of stopping
    /// them gracefully (128 + SIGINT, as shells report an interrupted command).
    pub const KILLED: i32 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "fleet",
    version,
    about = "Run, watch and redeploy many services on one machine."
)]
pub struct Cli {
    /// The manifest to use (default: fleet.toml in this folder or the nearest parent).
    /// Comes before the command: `fleet -f other.toml up`.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Start the fleet (or only SERVICE... and their dependencies) and supervise it.
    Up(UpArgs),
    /// Validate the manifest without starting anything.
    Check,
    /// Show every service: state, pid, generation, restarts, uptime, ports, health.
    Ps {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the last lines of the services' logs, merged by time.
    Logs(LogsArgs),
    /// Start stopped services (and their dependencies).
    Start {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Stop services; everything else keeps running.
    Stop {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Restart services; everything else keeps its pid.
    Restart {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Rebuild and replace services (start-first where configured).
    Redeploy {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Stop every service in reverse dependency order and end the supervisor.
    Down {
        /// Also remove the named Docker volumes fleet created for this project.
        #[arg(long)]
        volumes: bool,
    },
    /// Re-read the manifest: start added services, stop removed ones, restart changed ones.
    Reload,
    /// The terminal UI on a running fleet (started with `up -d`); quitting leaves it running.
    Tui,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Services to start, with their dependencies (default: all).
    pub services: Vec<String>,
    /// Plain prefixed output instead of the terminal UI.
    #[arg(long)]
    pub no_tui: bool,
    /// Run the supervisor in the background; return once the services are started.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Run in the background and return once every selected service is healthy (or
    /// completed); fail with their states and last log lines otherwise.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits, e.g. "90s" (at most 87600h, 10 years).
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub wait_timeout: std::time::Duration,
    /// Internal: this process is the detached supervisor.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Services to show (default: all).
    pub services: Vec<String>,
    /// Keep printing new lines as they arrive.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// How many lines to show first.
    #[arg(short = 'n', long = "lines", default_value_t = 100)]
    pub lines: usize,
}

/// A duration flag; clap reports the error as a usage error (exit 2).
fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::manifest::parse_duration(text)
}

/// An error that ends the command, with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    fn new(code: i32, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
        }
    }
}

impl From<ManifestError> for CliError {
    fn from(err: ManifestError) -> CliError {
        CliError::new(
            exit::INVALID,
            err.render(use_color(&std::io::stderr()))
                .trim_end()
                .to_string(),
        )
    }
}

impl From<LaunchError> for CliError {
    fn from(err: LaunchError) -> CliError {
        match err {
            LaunchError::Start(err) => err.into(),
            other => CliError::new(exit::FAILURE, other.to_string()),
        }
    }
}

impl From<StartError> for CliError {
    fn from(err: StartError) -> CliError {
        let code = match err {
            StartError::UnknownServices(_) => exit::INVALID,
            _ => exit::START_FAILED,
        };
        CliError::new(
            code,
            format!("error: cannot start the fleet, nothing was started:\n{err}"),
        )
    }
}

/// Runs the parsed command; returns the exit code.
pub fn run(cli: Cli) -> Result<i32, CliError> {
    let cwd = std::env::current_dir().map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("cannot read the current folder: {err}"),
        )
    })?;
    let manifest_path = manifest::find(cli.file.as_deref(), &cwd)?;
    match cli.command {
        Commands::Check => check(&manifest_path),
        Commands::Up(args) => up(&manifest_path, args),
        Commands::Logs(args) => logs(&manifest_path, args),
        Commands::Tui => attach_tui(&manifest_path),
        command => client_command(&manifest_path, command),
    }
}

/// The runtime of `up` and `tui`: two workers match the machines fleet is built
/// for and keep its own footprint small; blocking work has its own threads.
fn supervisor_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| {
            CliError::new(
                exit::FAILURE,
                format!("cannot start the async runtime: {err}"),
            )
        })
}

fn small_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            CliError::new(
                exit::FAILURE,
                format!("cannot start the async runtime: {err}"),
            )
        })
}

impl From<ClientError> for CliError {
    fn from(err: ClientError) -> CliError {
        let code = match &err {
            ClientError::NotRunning { .. } => exit::NOT_RUNNING,
            ClientError::Remote(body)
                if matches!(
                    body.code,
                    ErrorCode::UnknownService | ErrorCode::InvalidManifest
                ) =>
            {
                exit::INVALID
            }
            _ => exit::FAILURE,
        };
        let message = match err {
            ClientError::Remote(body) if body.code == ErrorCode::InvalidManifest => body.message,
            other => format!("fleet: {other}"),
        };
        CliError::new(code, message)
    }
}

/// Commands that only talk to a running supervisor.
fn client_command(path: &Path, command: Commands) -> Result<i32, CliError> {
    small_runtime()?.block_on(async {
        let mut client = Client::connect(path).await?;
        let mut remove_volumes = false;
        let request = match command {
            Commands::Ps { json } => {
                let value = client.call(Request::Ps).await?;
                let snapshot: Snapshot = serde_json::from_value(value).map_err(|err| {
                    CliError::new(exit::FAILURE, format!("fleet: bad snapshot: {err}"))
                })?;
                if json {
                    let text = serde_json::to_string_pretty(&snapshot.services)
                        .map_err(|err| CliError::new(exit::FAILURE, err.to_string()))?;
                    println!("{text}");
                } else {
                    print!("{}", render_ps(&snapshot, now_ms()));
                }
                return Ok(exit::SUCCESS);
            }
            Commands::Start { services } => Command::Start { services },
            Commands::Stop { services } => Command::Stop { services },
            Commands::Restart { services } => Command::Restart { services },
            Commands::Redeploy { services } => Command::Redeploy { services },
            Commands::Reload => Command::Reload,
            Commands::Down { volumes } => {
                remove_volumes = volumes;
                Command::Down
            }
            Commands::Up(_) | Commands::Check | Commands::Logs(_) | Commands::Tui => {
                return Ok(exit::SUCCESS)
            }
        };
        let is_down = command_is_down(&request);
        let waits_for_restart = match &request {
            Command::Restart { services } => Some((services.clone(), true)),
            Command::Start { services } => Some((services.clone(), false)),
            _ => None,
        };
        let before = snapshot_of(&mut client).await?;
        let reply = client.call(Request::Command { command: request }).await?;
        if let Some(text) = reply.as_str() {
            println!("{text}");
        }
        if let Some((services, require_new)) = waits_for_restart {
            wait_for_new_instances(&mut client, &before, &services, require_new).await?;
        }
        if is_down {
            // The reply comes once every service is gone; wait for the supervisor
            // process itself to let go of the project, so an `up` right after works.
            let endpoint = Endpoint::for_manifest(path)
                .map_err(|err| CliError::new(exit::FAILURE, err.to_string()))?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = SupervisorLock::try_acquire(&endpoint.lock) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            if remove_volumes {
                let manifest = manifest::load(path)?;
                if manifest.services.iter().any(|s| s.is_container()) {
                    let docker = crate::runtime::container::Docker::connect()
                        .await
                        .map_err(|err| CliError::new(exit::FAILURE, format!("fleet: {err}")))?;
                    docker.remove_volumes(&manifest.project.name).await;
                    println!("volumes removed");
                }
            }
        }
        Ok(exit::SUCCESS)
    })
}

async fn snapshot_of(client: &mut Client) -> Result<Snapshot, CliError> {
    let value = client.call(Request::Ps).await?;
    serde_json::from_value(value)
        .map_err(|err| CliError::new(exit::FAILURE, format!("fleet: bad snapshot: {err}")))
}

/// After `restart`/`start`: wait until each service runs a newer generation (or gave
/// up), so a script can use it as soon as the command returns.
async fn wait_for_new_instances(
    client: &mut Client,
    before: &Snapshot,
    services: &[String],
    require_new: bool,
) -> Result<(), CliError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = snapshot_of(client).await?;
        let pending: Vec<&String> = services
            .iter()
            .filter(|name| {
                let Some(service) = now.service(name) else {
                    return false;
                };
                let old = before.service(name);
                let settled = service.state.is_up()
                    || matches!(
                        service.state,
                        crate::event::ServiceState::Failed | crate::event::ServiceState::Completed
                    );
                let newer = service.generation > old.map(|s| s.generation).unwrap_or_default();
                // `start` of a service that already ran leaves it as it was.
                let untouched = !require_new
                    && old.is_some_and(|old| old.state.is_up() && old.pid == service.pid);
                !(settled && (newer || untouched))
            })
            .collect();
        if pending.is_empty() {
            for name in services {
                if let Some(service) = now.service(name) {
                    let pid = service
                        .pid
                        .map(|p| format!(" (pid {p})"))
                        .unwrap_or_default();
                    println!("{name}: {}{pid}", service.state);
                }
            }
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(CliError::new(
                exit::FAILURE,
                "fleet: timed out waiting for the new instances".to_string(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn command_is_down(command: &Command) -> bool {
    matches!(command, Command::Down | Command::Kill)
}

/// The `fleet ps` table.
pub fn render_ps(snapshot: &Snapshot, now_ms: u64) -> String {
    let header = [
        "NAME",
        "KIND",
        "STATE",
        "PID",
        "GEN",
        "RESTARTS",
        "UPTIME",
        "PORTS",
        "HEALTH",
        "LAST EVENT",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for service in &snapshot.services {
        let pid = match (&service.pid, &service.container) {
            (Some(pid), _) => pid.to_string(),
            (None, Some(id)) => crate::event::short_id(id).to_string(),
            _ => "-".into(),
        };
        let uptime = service
            .started_at_ms
            .filter(|_| service.state.is_up())
            .map(|at| crate::event::format_duration_ms(now_ms.saturating_sub(at)))
            .unwrap_or_else(|| "-".into());
        let ports = if service.ports.is_empty() {
            "-".to_string()
        } else {
            service
                .ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut state = service.state.to_string();
        if service.build == Some(crate::event::BuildStatus::Failed) {
            state.push_str(" (build failed)");
        }
        let last = match (&service.waiting_for, &service.last_event) {
            _ if service.state == crate::event::ServiceState::Starting
                && service.started_at_ms.is_some() =>
            {
                service.starting_note(now_ms).unwrap_or_default()
            }
            (Some(waiting), _) if service.state == crate::event::ServiceState::Waiting => {
                format!("waiting for {waiting}")
            }
            (_, Some(event)) => {
                let ago = service
                    .last_event_at_ms
                    .map(|at| {
                        format!(
                            " ({} ago)",
                            crate::event::format_duration_ms(now_ms.saturating_sub(at))
                        )
                    })
                    .unwrap_or_default();
                format!("{event}{ago}")
            }
            _ => String::new(),
        };
        rows.push(vec![
            service.name.clone(),
            service.kind.to_string(),
            state,
            pid,
            service.generation.to_string(),
            service.restarts.to_string(),
            uptime,
            ports,
            service
                .health
                .map(|health| health.to_string())
                .unwrap_or_else(|| "-".into()),
            last,
        ]);
    }
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `fleet logs`: reads the files under `.fleet/logs`, so it works with or without a
/// running fleet; `-f` follows the files as they grow (and rotate).
fn logs(path: &Path, args: LogsArgs) -> Result<i32, CliError> {
    let manifest = manifest::load(path)?;
    let dir = manifest.log_dir();
    let names: Vec<String> = if args.services.is_empty() {
        manifest.services.iter().map(|s| s.name.clone()).collect()
    } else {
        let known: Vec<&str> = manifest.services.iter().map(|s| s.name.as_str()).collect();
        for name in &args.services {
            if !known.contains(&name.as_str()) {
                let hint = crate::manifest::diagnostic::suggest(name, known.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(CliError::new(
                    exit::INVALID,
                    format!("fleet: unknown service `{name}`{hint}"),
                ));
            }
        }
        args.services.clone()
    };
    let all_names: Vec<String> = manifest.services.iter().map(|s| s.name.clone()).collect();
    let labels = Labels::new(&all_names, &names, use_color(&std::io::stdout()));
    let mut merged: Vec<(String, String, crate::logs::LogLine)> = Vec::new();
    for name in &names {
        let lines = crate::logs::read_tail(&dir, name, args.lines).map_err(|err| {
            CliError::new(
                exit::FAILURE,
                format!("fleet: cannot read the log of `{name}`: {err}"),
            )
        })?;
        merged.extend(
            lines
                .into_iter()
                .map(|line| (line.timestamp.clone(), name.clone(), line)),
        );
    }
    // A stable sort keeps each service's own order among equal timestamps.
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = merged.len().saturating_sub(args.lines);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (_, name, line) in merged.into_iter().skip(skip) {
        let _ = writeln!(out, "{}{}", labels.prefix(&name), line.text);
    }
    let _ = out.flush();
    if !args.follow {
        return Ok(exit::SUCCESS);
    }
    let mut offsets: Vec<(String, PathBuf, u64)> = names
        .iter()
        .map(|name| {
            let path = crate::logs::log_path(&dir, name);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (name.clone(), path, size)
        })
        .collect();
    loop {
        // Log files are appended by the supervisor; checking their sizes ten times a
        // second costs nothing and also works when the fleet is restarted meanwhile.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut batch: Vec<(String, String, String)> = Vec::new();
        for (name, path, offset) in offsets.iter_mut() {
            let size = std::fs::metadata(&*path).map(|m| m.len()).unwrap_or(0);
            if size < *offset {
                *offset = 0; // rotated
            }
            if size == *offset {
                continue;
            }
            if let Ok((lines, next)) = crate::logs::read_from(path, *offset) {
                *offset = next;
                batch.extend(
                    lines
                        .into_iter()
                        .map(|l| (l.timestamp, name.clone(), l.text)),
                );
            }
        }
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = std::io::BufWriter::new(stdout.lock());
        for (_, name, text) in batch {
            if writeln!(out, "{}{}", labels.prefix(&name), text).is_err() {
                return Ok(exit::SUCCESS);
            }
        }
        if out.flush().is_err() {
            return Ok(exit::SUCCESS);
        }
    }
}

fn check(path: &Path) -> Result<i32, CliError> {
    let manifest = manifest::load(path)?;
    let containers = manifest
        .services
        .iter()
        .filter(|s| s.is_container())
        .count();
    println!(
        "{}: ok, {} services ({} processes, {} containers)",
        path.display(),
        manifest.services.len(),
        manifest.services.len() - containers,
        containers
    );
    Ok(exit::SUCCESS)
}

fn up(path: &Path, args: UpArgs) -> Result<i32, CliError> {
    let manifest = manifest::load(path)?;
    let endpoint = Endpoint::for_manifest(&manifest.path).map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: cannot create the runtime dir: {err}"),
        )
    })?;
    let lock = SupervisorLock::try_acquire(&endpoint.lock).map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: cannot take {}: {err}", endpoint.lock.display()),
        )
    })?;
    let Some(lock) = lock else {
        // A supervisor already runs this project: apply the manifest as it is now.
        return small_runtime()?.block_on(apply_to_running(&manifest, &args));
    };
    if (args.detach || args.wait) && !args.detached_child {
        drop(lock);
        return detach(&manifest, &args);
    }
    let runtime = supervisor_runtime()?;
    let tui = !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let front = if args.detached_child {
        Front::Lines {
            service_output: false,
        }
    } else if tui {
        Front::Ui(foreground_tui())
    } else {
        Front::Lines {
            service_output: true,
        }
    };
    let ended = runtime.block_on(launch(Launch {
        manifest,
        services: args.services,
        endpoint,
        lock,
        front,
    }))?;
    Ok(match ended {
        Ended::Stopped => exit::SUCCESS,
        Ended::Killed => exit::KILLED,
    })
}

/// The terminal UI beside a supervisor that `fleet up` runs in the foreground.
fn foreground_tui() -> ForegroundUi {
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

/// `fleet up` while a supervisor runs: reload the manifest, start what was asked.
async fn apply_to_running(manifest: &Manifest, args: &UpArgs) -> Result<i32, CliError> {
    let mut client = Client::connect(&manifest.path).await?;
    let reply = client
        .call(Request::Command {
            command: Command::Reload,
        })
        .await?;
    println!(
        "fleet is already running; manifest applied: {}",
        reply.as_str().unwrap_or("done")
    );
    let reply = client
        .call(Request::Command {
            command: Command::Start {
                services: args.services.clone(),
            },
        })
        .await?;
    if let Some(text) = reply.as_str() {
        println!("{text}");
    }
    if args.wait {
        return wait_until_ready(manifest, &args.services, args.wait_timeout, true).await;
    }
    Ok(exit::SUCCESS)
}

/// Starts the supervisor as a background process and waits until it has started the
/// services (with `--wait`: until they are healthy).
fn detach(manifest: &Manifest, args: &UpArgs) -> Result<i32, CliError> {
    let state_dir = manifest.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: cannot create {}: {err}", state_dir.display()),
        )
    })?;
    let log_path = crate::project::supervisor_log(&state_dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|err| {
            CliError::new(
                exit::FAILURE,
                format!("fleet: cannot open {}: {err}", log_path.display()),
            )
        })?;
    let log_err = log
        .try_clone()
        .map_err(|err| CliError::new(exit::FAILURE, err.to_string()))?;
    let exe =
        std::env::current_exe().map_err(|err| CliError::new(exit::FAILURE, err.to_string()))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("-f")
        .arg(&manifest.path)
        .args(["up", "--no-tui", "--detached-child"])
        .args(&args.services)
        .current_dir(&manifest.root)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err);
    crate::runtime::process::detach_from_session(&mut command);
    let mut child = command.spawn().map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: cannot start the supervisor: {err}"),
        )
    })?;
    let runtime = small_runtime()?;
    runtime.block_on(async {
        // Wait for the supervisor to answer (or to fail before it does).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last: Vec<&str> = tail
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return Err(CliError::new(
                    status.code().unwrap_or(exit::FAILURE),
                    format!(
                        "fleet: the supervisor exited during startup:\n{}",
                        last.join("\n")
                    ),
                ));
            }
            match Client::connect(&manifest.path).await {
                Ok(_) => break,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
        println!(
            "fleet: supervisor running in the background (pid {}), output in {}",
            child.id(),
            log_path.display()
        );
        wait_until_ready(manifest, &args.services, args.wait_timeout, args.wait).await
    })
}

/// Follows the supervisor's snapshots until every selected service is started (or,
/// with `healthy`, ready: healthy, running without a probe, or completed).
async fn wait_until_ready(
    manifest: &Manifest,
    services: &[String],
    timeout: std::time::Duration,
    healthy: bool,
) -> Result<i32, CliError> {
    let mut client = Client::connect(&manifest.path).await?;
    client.start_stream(Request::Subscribe).await?;
    let selected: Vec<String> = if services.is_empty() {
        manifest.services.iter().map(|s| s.name.clone()).collect()
    } else {
        let graph = crate::supervisor::graph::Graph::new(manifest);
        graph.with_dependencies(services).into_iter().collect()
    };
    // `--wait-timeout` is capped at parse time; checked anyway, as `Instant + Duration`
    // panics where it overflows.
    let deadline = tokio::time::Instant::now()
        .checked_add(timeout)
        .ok_or_else(|| CliError::new(exit::INVALID, "error: --wait-timeout is too long"))?;
    let mut last: Option<Snapshot> = None;
    loop {
        let reply = match tokio::time::timeout_at(deadline, client.next_reply()).await {
            Ok(reply) => reply?,
            Err(_) => break,
        };
        let crate::protocol::Reply::Stream(value) = reply else {
            break;
        };
        let Some(snapshot) = value.get("snapshot") else {
            continue;
        };
        let Ok(snapshot) = serde_json::from_value::<Snapshot>(snapshot.clone()) else {
            continue;
        };
        let states: Vec<crate::event::ServiceState> = selected
            .iter()
            .filter_map(|name| snapshot.service(name).map(|s| s.state))
            .collect();
        let failed = states.contains(&crate::event::ServiceState::Failed);
        // A service waiting on a dependency that failed for good will not start: for
        // `-d` that is settled (reported below), for `--wait` it is a failure.
        let blocked = selected
            .iter()
            .filter_map(|name| snapshot.service(name))
            .any(|service| {
                service.state == crate::event::ServiceState::Waiting
                    && service.waiting_for.as_ref().is_some_and(|w| w.failed)
            });
        let done = if healthy {
            states.iter().all(|s| s.is_ready())
        } else {
            selected
                .iter()
                .filter_map(|name| snapshot.service(name))
                .all(|service| {
                    let s = service.state;
                    s.is_up()
                        || matches!(
                            s,
                            crate::event::ServiceState::Completed
                                | crate::event::ServiceState::Failed
                        )
                        || (s == crate::event::ServiceState::Waiting
                            && service.waiting_for.as_ref().is_some_and(|w| w.failed))
                })
        };
        if !healthy && done {
            for service in selected.iter().filter_map(|name| snapshot.service(name)) {
                if service.state == crate::event::ServiceState::Failed {
                    crate::note!(
                        "fleet: {} failed: {}",
                        service.name,
                        service.last_event.as_deref().unwrap_or("see its log")
                    );
                } else if service.state == crate::event::ServiceState::Waiting {
                    crate::note!(
                        "fleet: {} will not start: waiting for {}",
                        service.name,
                        service
                            .waiting_for
                            .as_ref()
                            .map_or_else(|| "?".to_string(), |w| w.to_string())
                    );
                }
            }
        }
        let failed = failed || (healthy && blocked);
        last = Some(snapshot);
        if done && !(healthy && failed) {
            println!(
                "fleet: {} services {}",
                selected.len(),
                if healthy { "ready" } else { "started" }
            );
            return Ok(exit::SUCCESS);
        }
        if failed && healthy {
            break;
        }
    }
    let mut report = String::from(if healthy {
        "fleet: not every service became healthy:\n"
    } else {
        "fleet: not every service started:\n"
    });
    if let Some(snapshot) = last {
        for name in &selected {
            let Some(service) = snapshot.service(name) else {
                continue;
            };
            let fine = if healthy {
                service.state.is_ready()
            } else {
                service.state.is_up()
            };
            if fine {
                continue;
            }
            let detail = service
                .waiting_for
                .as_ref()
                .map(|w| format!(" (waiting for {w})"))
                .or_else(|| {
                    // A never-ready service: how long it tried and what its probe saw.
                    let since = service
                        .started_at_ms
                        .filter(|_| service.state == crate::event::ServiceState::Starting)?;
                    let mut text = format!(
                        " for {}",
                        crate::event::format_duration_ms(
                            crate::event::now_ms().saturating_sub(since)
                        )
                    );
                    if let Some(error) = &service.probe_error {
                        text.push_str(&format!(", last probe: {error}"));
                    }
                    Some(text)
                })
                .or_else(|| service.last_event.as_ref().map(|e| format!(" ({e})")))
                .unwrap_or_default();
            report.push_str(&format!("\n{}: {}{detail}\n", service.name, service.state));
            if let Ok(lines) = crate::logs::read_tail(&manifest.log_dir(), name, 20) {
                for line in lines {
                    report.push_str(&format!("  {} | {}\n", service.name, line.text));
                }
            }
        }
    }
    Err(CliError::new(
        exit::WAIT_FAILED,
        report.trim_end().to_string(),
    ))
}

/// Commands from the TUI go to the supervisor like any client's.
fn command_sender(handle: SupervisorHandle) -> crate::tui::SendCommand {
    Arc::new(move |command: Command| {
        let handle = handle.clone();
        Box::pin(async move { handle.send(command).await.map_err(|err| err.message) })
    })
}

/// `fleet tui`: the terminal UI on a running fleet; quitting leaves the fleet running.
fn attach_tui(path: &Path) -> Result<i32, CliError> {
    let manifest = manifest::load(path)?;
    let runtime = supervisor_runtime()?;
    runtime.block_on(async {
        let names = manifest.services.iter().map(|s| s.name.clone()).collect();
        let source = crate::tui::remote::attach(&manifest.path, manifest.log_dir(), names).await?;
        match crate::tui::run(source, crate::tui::TuiMode::Attach).await {
            Ok(crate::tui::TuiExit::FleetEnded) => {
                println!("fleet: the fleet stopped");
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
