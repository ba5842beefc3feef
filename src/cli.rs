//! The command line: argument parsing and the subcommands. `up` runs the supervisor
//! in this process; every other command is a client of a running supervisor.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tokio::sync::{broadcast, oneshot};

use crate::control::client::{Client, ClientError};
use crate::control::{codes, Endpoint, Hello, Request, SupervisorLock};
use crate::event::{now_ms, Command, Event, Snapshot};
use crate::logs::{LogBatch, LogHub};
use crate::manifest::{self, Manifest, ManifestError};
use crate::runtime::process::ProcessRuntime;
use crate::runtime::reaper::{self, Journal, Keeper};
use crate::service::runner::ProjectContext;
use crate::supervisor::{StartError, Supervisor, SupervisorHandle};

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
                if body.code == codes::UNKNOWN_SERVICE || body.code == codes::INVALID_MANIFEST =>
            {
                exit::INVALID
            }
            _ => exit::FAILURE,
        };
        let message = match err {
            ClientError::Remote(body) if body.code == codes::INVALID_MANIFEST => body.message,
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
        if service.build.as_deref() == Some("failed") {
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
            service.health.clone().unwrap_or_else(|| "-".into()),
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
    let mut follower = crate::logs::LogFollower::new(dir, names);
    loop {
        let mut batch: Vec<(String, String, String)> = Vec::new();
        for (name, lines) in follower.next_lines() {
            batch.extend(
                lines
                    .into_iter()
                    .map(|l| (l.timestamp, name.clone(), l.text)),
            );
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

/// A stable 64-bit FNV-1a hash: the project token must be the same for every fleet
/// binary that looks at the same manifest, so std's randomised hasher won't do.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Identifies a project by its manifest's path.
pub fn project_token(manifest: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    format!(
        "{:012x}",
        stable_hash(manifest.as_os_str().as_bytes()) & 0xffff_ffff_ffff
    )
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
    runtime.block_on(supervise(
        manifest,
        args.services,
        endpoint,
        lock,
        !args.detached_child,
        tui,
    ))
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
    use std::os::unix::process::CommandExt;
    let state_dir = manifest.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: cannot create {}: {err}", state_dir.display()),
        )
    })?;
    let log_path = state_dir.join("supervisor.log");
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
    // SAFETY: setsid is async-signal-safe; the child leaves our session so closing
    // this terminal does not send it SIGHUP.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
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
        let crate::control::Reply::Stream(value) = reply else {
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
                    && service
                        .waiting_for
                        .as_deref()
                        .is_some_and(|w| w.ends_with("which failed"))
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
                            && service
                                .waiting_for
                                .as_deref()
                                .is_some_and(|w| w.ends_with("which failed")))
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
                        service.waiting_for.as_deref().unwrap_or("?")
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

async fn supervise(
    manifest: Manifest,
    services: Vec<String>,
    endpoint: Endpoint,
    _lock: SupervisorLock,
    show_output: bool,
    tui: bool,
) -> Result<i32, CliError> {
    let log_dir = manifest.log_dir();
    let io_error =
        |what: &str, err: std::io::Error| CliError::new(exit::FAILURE, format!("{what}: {err}"));
    let processes = ProcessRuntime::start()
        .map_err(|err| io_error("cannot set up process supervision", err))?;
    let token = project_token(&manifest.path);
    let run_id = format!("{:x}{:x}", std::process::id(), now_ms() & 0xffff_ffff);
    let state_dir = manifest.state_dir();
    let swept = reaper::sweep_previous(&state_dir, &format!("{token}/"));
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
        Some(connect_engine(&manifest.project.name).await)
    } else {
        None
    };
    // Ports and names are checked before anything is created: a fleet that cannot start
    // leaves no trace.
    let preflight = crate::supervisor::preflight(&manifest, &services)?;
    let journal =
        Journal::open(&state_dir, &run_id).map_err(|err| io_error("cannot write .fleet/", err))?;
    let marker = format!("{token}/{run_id}/");
    let has_containers = manifest.services.iter().any(|s| s.is_container());
    let containers = has_containers.then_some((manifest.project.name.as_str(), run_id.as_str()));
    let keeper = Keeper::spawn(journal.path(), &marker, containers)
        .map_err(|err| io_error("cannot start the keeper process", err))?;
    let hub = LogHub::default();
    let project = Arc::new(ProjectContext {
        name: manifest.project.name.clone(),
        root: manifest.root.clone(),
        marker,
        log_dir: manifest.log_dir(),
        log_max_size: manifest.project.log_max_size,
        log_keep: manifest.project.log_keep,
        base_env: std::env::vars().collect(),
        processes,
        hub: hub.clone(),
        journal: journal.clone(),
        run_id: run_id.clone(),
        engine: tokio::sync::OnceCell::new_with(engine),
    });
    let names: Vec<String> = manifest.services.iter().map(|s| s.name.clone()).collect();
    let hello = Hello {
        version: crate::control::PROTOCOL_VERSION,
        project: manifest.project.name.clone(),
        manifest: manifest.path.display().to_string(),
        pid: std::process::id(),
    };
    let engine_project = project.clone();
    let (supervisor, handle) = match Supervisor::new(manifest, project, &services, preflight) {
        Ok(created) => created,
        Err(err) => {
            journal.clear();
            keeper.release();
            return Err(err.into());
        }
    };
    let listener = match crate::control::server::bind(&endpoint.socket) {
        Ok(listener) => listener,
        Err(err) => {
            journal.clear();
            keeper.release();
            return Err(CliError::new(
                exit::FAILURE,
                format!(
                    "fleet: cannot listen on {}: {err}",
                    endpoint.socket.display()
                ),
            ));
        }
    };
    let use_tui = show_output && tui;
    // Output nobody can read (stdout is /dev/null, as under a benchmark or a service
    // manager that discards it) is not worth formatting; the log files have it all.
    let show_output = show_output && !stdout_discarded();
    // Detached, the supervisor's own output goes to .fleet/supervisor.log: status lines
    // belong there, service output is already in the per-service logs.
    let printer = (!use_tui).then(|| {
        Printer::start(
            &names,
            show_output.then(|| hub.subscribe()),
            handle.events.subscribe(),
        )
    });
    let tui_task = use_tui.then(|| {
        let source = crate::tui::TuiSource {
            snapshots: handle.snapshot.clone(),
            events: crate::tui::forward_events(handle.events.subscribe()),
            logs: crate::tui::forward_logs(hub.subscribe()),
            send: command_sender(handle.clone()),
            read_tail: crate::tui::TuiSource::read_tail_in(log_dir.clone()),
        };
        let handle = handle.clone();
        let names = names.clone();
        tokio::spawn(async move {
            let outcome = crate::tui::run(source, crate::tui::TuiMode::Up).await;
            if let Err(err) = &outcome {
                crate::note!("fleet: the terminal UI failed: {err}");
            }
            if matches!(outcome, Ok(crate::tui::TuiExit::FleetEnded)) {
                return None;
            }
            // The terminal is back to normal: show the shutdown as plain status lines.
            let printer = Printer::start(&names, None, handle.events.subscribe());
            crate::note!("fleet: stopping every service (press Ctrl-C again to kill them at once)");
            let _ = handle.send(Command::Down).await;
            Some(printer)
        })
    });
    let signals = tokio::spawn(forward_signals(handle.clone()));
    let server = tokio::spawn(crate::control::server::serve(
        listener,
        handle.clone(),
        hello,
    ));
    drop(handle);
    let killed = supervisor.run().await;
    if let Some(Ok(engine)) = engine_project.engine.get() {
        engine.docker.remove_network(&engine_project.name).await;
    }
    signals.abort();
    server.abort();
    let _ = std::fs::remove_file(&endpoint.socket);
    if let Some(printer) = printer {
        printer.finish();
    }
    if let Some(task) = tui_task {
        if let Ok(Some(printer)) = task.await {
            printer.finish();
        }
    }
    journal.clear();
    keeper.release();
    Ok(if killed { exit::KILLED } else { exit::SUCCESS })
}

/// Connects to Docker, removes what a crashed run of this project left, and makes the
/// project's network.
async fn connect_engine(project: &str) -> Result<crate::service::runner::ContainerEngine, String> {
    let docker = crate::runtime::container::Docker::connect()
        .await
        .map_err(|err| {
            let message = err.to_string();
            crate::note!("fleet: container services cannot start: {message}");
            message
        })?;
    match docker.sweep(project, None).await {
        Ok(0) => {}
        Ok(removed) => crate::note!("fleet: removed {removed} containers left by a previous run"),
        Err(err) => crate::note!("fleet: cannot look for containers of a previous run: {err}"),
    }
    let network = docker.ensure_network(project).await.map_err(|err| {
        let message = err.to_string();
        crate::note!("fleet: container services cannot start: {message}");
        message
    })?;
    Ok(crate::service::runner::ContainerEngine { docker, network })
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

/// Whether our stdout is /dev/null.
fn stdout_discarded() -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let (Ok(stdout), Ok(null)) = (
        std::fs::metadata("/proc/self/fd/1"),
        std::fs::metadata("/dev/null"),
    ) else {
        return false;
    };
    stdout.file_type().is_char_device() && stdout.rdev() == null.rdev()
}

fn use_color(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// How `fleet up` and `fleet logs` label lines: each service's name padded to the
/// widest one shown, in its own colour (by manifest order) on a terminal. Prefixes are
/// made once, not per line.
struct Labels {
    prefixes: std::collections::HashMap<String, String>,
    colors: std::collections::HashMap<String, &'static str>,
}

impl Labels {
    fn new(all: &[String], shown: &[String], color: bool) -> Labels {
        let width = shown
            .iter()
            .map(|name| name.chars().count())
            .max()
            .unwrap_or(0)
            .min(24);
        let colors: std::collections::HashMap<String, &'static str> = if color {
            all.iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), PALETTE[i % PALETTE.len()]))
                .collect()
        } else {
            Default::default()
        };
        let prefixes = all
            .iter()
            .map(|name| {
                let padded = format!("{name:<width$}");
                let prefix = match colors.get(name) {
                    Some(code) => format!("{code}{padded}{RESET} | "),
                    None => format!("{padded} | "),
                };
                (name.clone(), prefix)
            })
            .collect();
        Labels { prefixes, colors }
    }

    /// `users   | ` for an output line.
    fn prefix(&self, name: &str) -> &str {
        self.prefixes
            .get(name)
            .map(String::as_str)
            .unwrap_or("? | ")
    }

    /// `users: started (pid 4242)` for a status line.
    fn status(&self, name: &str, text: &str) -> String {
        match self.colors.get(name) {
            Some(code) => format!("{code}{BOLD}{name}{RESET}: {text}\n"),
            None => format!("{name}: {text}\n"),
        }
    }
}

/// ANSI colours that read on dark and light terminals and exist in 8-colour ones.
const PALETTE: [&str; 6] = [
    "\x1b[36m", "\x1b[33m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[31m",
];
const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";

/// `fleet up` without the TUI: every output line prefixed with its service, and
/// fleet's status lines. Runs on its own thread so a slow terminal blocks only it;
/// if it falls behind, it says how much it skipped (the log files have everything).
struct Printer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Printer {
    fn start(
        names: &[String],
        logs: Option<broadcast::Receiver<Arc<LogBatch>>>,
        mut events: broadcast::Receiver<Event>,
    ) -> Printer {
        let labels = Labels::new(names, names, use_color(&std::io::stdout()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        // Without output to show, a receiver that never receives stands in; its sender
        // lives as long as the thread, so it never reports "closed" either.
        let (idle_sender, idle) = broadcast::channel(1);
        let mut logs = logs.unwrap_or(idle);
        let thread = std::thread::Builder::new().name("fleet-printer".into()).spawn(move || {
            let _idle_sender = idle_sender;
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            runtime.block_on(async {
                let mut draining = false;
                loop {
                    let next = if draining {
                        // Shutdown: print what is already queued, then end.
                        match (logs.try_recv(), events.try_recv()) {
                            (Err(_), Err(_)) => break,
                            (log, event) => (log.ok(), event.ok()),
                        }
                    } else {
                        tokio::select! {
                            log = logs.recv() => match log {
                                Ok(batch) => (Some(batch), None),
                                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                                    let _ = writeln!(out, "fleet: output too fast for this terminal, {skipped} batches not shown (all are in .fleet/logs)");
                                    (None, None)
                                }
                                Err(broadcast::error::RecvError::Closed) => { draining = true; (None, None) }
                            },
                            event = events.recv() => match event {
                                Ok(event) => (None, Some(event)),
                                Err(broadcast::error::RecvError::Lagged(_)) => (None, None),
                                Err(broadcast::error::RecvError::Closed) => { draining = true; (None, None) }
                            },
                            _ = &mut stopped => { draining = true; (None, None) }
                        }
                    };
                    // fleet's own lines reach the terminal as events; the log keeps both.
                    if let Some(batch) = next.0.filter(|batch| batch.stream != crate::logs::Stream::Fleet) {
                        let head = labels.prefix(&batch.service);
                        for line in batch.lines() {
                            let _ = out.write_all(head.as_bytes());
                            let _ = out.write_all(line);
                            let _ = out.write_all(b"\n");
                        }
                    }
                    if let Some(event) = next.1 {
                        let line = labels.status(&event.service, &event.kind.to_string());
                        let _ = out.write_all(line.as_bytes());
                    }
                    if logs.is_empty() && events.is_empty() {
                        let _ = out.flush();
                    }
                }
                let _ = out.flush();
            });
        });
        Printer {
            stop: Some(stop),
            thread: thread.ok(),
        }
    }

    fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
