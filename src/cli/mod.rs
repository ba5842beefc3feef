//! The command line: argument parsing, the documented exit codes, and dispatch to one
//! file per command family. `up` launches the supervisor in this process
//! ([`crate::supervisor::launch`]); every other command is a client of a running
//! supervisor or reads the project's files. No command decides anything about
//! services: they parse, ask and print.
//!
//! - `up.rs`: `up` (with `-d`, `--wait`) and waiting for readiness
//! - `status.rs`: `ps` and `logs`
//! - `control.rs`: `start`, `stop`, `restart`, `redeploy`, `reload`, `down`
//! - `tui.rs`: `tui`, and the TUI beside a foreground `up`
//! - `check.rs`: `check`
//! - `import.rs`: `import` (compose files and Procfiles) and `config`
//! - `export.rs`: `export swarm` and `export kubernetes`
//! - `run.rs`: `run` (its orchestration is [`crate::run`]) and `exec`
//! - `editors.rs`: `schema`, `completions`, `man` and the hidden `__services`

mod check;
mod control;
mod editors;
mod export;
mod import;
mod run;
mod status;
mod tui;
mod up;

pub use editors::{CompletionShell, EditorCommand};
pub use status::render_ps;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::control::client::{Client, ClientError};
use crate::event::{Command, Snapshot};
use crate::manifest::{self, ManifestError};
use crate::protocol::{ErrorCode, Request};
use crate::supervisor::launch::LaunchError;
use crate::supervisor::printer::use_color;
use crate::supervisor::StartError;

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
    /// `--wait` gave up: a service did not become healthy in time, or failed. For
    /// `fleet run`: the fleet never became ready, and CMD did not run.
    pub const WAIT_FAILED: i32 = 5;
    /// `fleet up` was interrupted twice and killed every service instead of stopping
    /// them gracefully (128 + SIGINT, as shells report an interrupted command).
    pub const KILLED: i32 = 130;
    /// Whoever read the output went away (`fleet ps | head -1`): the command ends
    /// quietly with the code a shell gives a command SIGPIPE killed (128 + 13).
    pub const BROKEN_PIPE: i32 = 141;
}

/// Prints on stdout. When its reader has gone (`fleet ps | head -1`) the command ends at
/// once with [`exit::BROKEN_PIPE`], as SIGPIPE ends other tools, instead of panicking:
/// Rust ignores SIGPIPE, so the write fails and `print!` would panic.
pub(crate) fn print_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if written.is_err_and(|err| err.kind() == std::io::ErrorKind::BrokenPipe) {
        std::process::exit(exit::BROKEN_PIPE);
    }
}

/// `println!` through [`print_out`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::print_out(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use say;

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
    Check {
        /// Check as `up --profile PROFILE` would run (repeatable; also FLEET_PROFILES).
        #[arg(long = "profile", value_name = "PROFILE")]
        profiles: Vec<String>,
    },
    /// Show every service (one row per replica): state, pid, generation, restarts,
    /// uptime, ports, health.
    Ps {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list services no active profile enables.
        #[arg(short = 'a', long)]
        all: bool,
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
    /// Re-read the manifest: start added services, stop removed ones, replace changed
    /// ones (a replica at a time), apply new replica counts.
    Reload,
    /// Set how many replicas services run, e.g. `fleet scale web=5 worker=0`; other
    /// services and the replicas that stay are not touched.
    Scale {
        /// SERVICE=COUNT pairs.
        #[arg(required = true, value_name = "SERVICE=COUNT", value_parser = parse_scale_arg)]
        counts: Vec<(String, u32)>,
    },
    /// The terminal UI on a running fleet (started with `up -d`); quitting leaves it running.
    Tui,
    /// Translate a docker compose file or a Procfile into a fleet.toml beside it.
    Import(ImportArgs),
    /// Print the manifest after interpolation and defaults, as a complete fleet.toml.
    Config,
    /// Write what Docker Swarm or Kubernetes runs for this manifest.
    Export(ExportArgs),
    /// Start a fleet of its own (or SERVICE... and their dependencies), wait until it
    /// is ready, run CMD against it, tear it down, and keep the logs and a summary.
    /// Exits with CMD's code (5: the fleet never became ready).
    Run(RunArgs),
    /// Run a command in a service's context: a process's folder, environment and
    /// PORT, or inside a container service's running container. Exits with its code.
    Exec(ExecArgs),
    #[command(flatten)]
    Editors(EditorCommand),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub target: ExportTarget,
}

#[derive(Subcommand, Debug)]
pub enum ExportTarget {
    /// A compose file for `docker stack deploy`.
    Swarm {
        #[command(flatten)]
        common: ExportCommon,
        /// `ingress`: ports on every node through the routing mesh, service names on a
        /// virtual IP (both IPVS); `host`: ports on the task's node and names resolving
        /// to the tasks (endpoint_mode dnsrr), for engines without IPVS.
        #[arg(long, value_enum, default_value = "ingress")]
        publish: crate::export::PublishMode,
    },
    /// Kubernetes objects: Deployments, Jobs, Services, ConfigMaps, ...
    Kubernetes {
        #[command(flatten)]
        common: ExportCommon,
        /// The namespace written on every object.
        #[arg(long, default_value = "default")]
        namespace: String,
    },
}

#[derive(Args, Debug)]
pub struct ExportCommon {
    /// Services to export, with their dependencies, whatever their profiles (default:
    /// every service the active profiles enable).
    pub services: Vec<String>,
    /// Also export the services with this profile (repeatable; added to
    /// FLEET_PROFILES).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// A key with no counterpart is an error (exit 2), and nothing is written.
    #[arg(long)]
    pub strict: bool,
    /// Where to write (default: stdout). Kubernetes: a folder (existing, or ending in
    /// `/`) gets one file per object.
    #[arg(short = 'o', long = "output", value_name = "FILE|DIR")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Services to start, with their dependencies (default: every service the active
    /// profiles enable).
    pub services: Vec<String>,
    /// The command to run once the fleet is ready, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Also start the services with this profile (repeatable; added to FLEET_PROFILES).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// How long to wait for every service to be healthy (or completed) before giving
    /// up with exit code 5.
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub wait_timeout: std::time::Duration,
    /// Stop CMD after this long (exit code 124).
    #[arg(long, value_parser = parse_duration_arg)]
    pub timeout: Option<std::time::Duration>,
    /// Where to keep the logs, the summary and CMD's output (default:
    /// .fleet/runs/<time>/ beside the manifest). Must be new, empty, or an earlier
    /// run's folder.
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Also write JUnit XML here: one test case per service instance ("became healthy
    /// and never crashed") and one for CMD.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Fail the run (exit 1) when a service crashed, restarted or turned unhealthy,
    /// even if CMD passed.
    #[arg(long)]
    pub fail_on_restart: bool,
    /// When CMD fails, leave the fleet up (and say how to reach it) until `fleet
    /// down` or Ctrl-C, then finish the run.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Skip the services' `build` steps (a pre-built CI workspace).
    #[arg(long)]
    pub no_build: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The service (`web`, or a replica: `web.2`).
    // The id every argument that takes services has: shell completion offers the
    // manifest's names there.
    #[arg(id = "services", value_name = "SERVICE")]
    pub service: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The file to import (default: compose.yaml, compose.yml, docker-compose.yaml,
    /// docker-compose.yml, else Procfile, in this folder).
    pub file: Option<PathBuf>,
    /// The file's format, when its name does not say.
    #[arg(long, value_enum)]
    pub format: Option<crate::import::Format>,
    /// Where to write the manifest (default: fleet.toml beside the file; `-`: stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Services to start, with their dependencies, whatever their profiles (default:
    /// every service the active profiles enable).
    pub services: Vec<String>,
    /// Also start the services with this profile (repeatable; added to
    /// FLEET_PROFILES, a comma-separated list).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
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

/// `web=3`; clap reports a bad one as a usage error (exit 2).
fn parse_scale_arg(text: &str) -> Result<(String, u32), String> {
    let (service, count) = text
        .split_once('=')
        .ok_or_else(|| format!("expected SERVICE=COUNT, like `web=3`, found `{text}`"))?;
    if service.is_empty() {
        return Err(format!("`{text}` names no service"));
    }
    let count = count.trim().parse::<u32>().map_err(|_| {
        format!(
            "`{count}` is not a replica count (0 to {})",
            manifest::MAX_REPLICAS
        )
    })?;
    if count > manifest::MAX_REPLICAS {
        return Err(format!(
            "{count} replicas is more than the {} fleet runs of one service",
            manifest::MAX_REPLICAS
        ));
    }
    Ok((service.to_string(), count))
}

/// A duration flag; clap reports the error as a usage error (exit 2).
fn parse_duration_arg(text: &str) -> Result<std::time::Duration, manifest::DurationError> {
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
    // `import` makes the manifest, so it needs none; the editors' commands work
    // without one (`__services` must even stay quiet without one).
    let command = match cli.command {
        Commands::Import(args) => return import::import(&cwd, args),
        Commands::Editors(command) => return editors::run(&command, cli.file.as_deref(), &cwd),
        command => command,
    };
    let path = manifest::find(cli.file.as_deref(), &cwd)?;
    match command {
        Commands::Import(args) => import::import(&cwd, args),
        Commands::Config => import::config(&path),
        Commands::Export(args) => export::export(&cwd, &path, args),
        Commands::Check { profiles } => check::check(&path, &up::activation(&profiles, &[])),
        Commands::Up(args) => up::up(&path, args),
        Commands::Run(args) => run::run(&path, &cwd, args),
        Commands::Exec(args) => run::exec(&path, args),
        Commands::Ps { json, all } => status::ps(&path, json, all),
        Commands::Logs(args) => status::logs(&path, args),
        Commands::Tui => tui::attach(&path),
        Commands::Start { services } => control::send(&path, Command::Start { services }, false),
        Commands::Stop { services } => control::send(&path, Command::Stop { services }, false),
        Commands::Restart { services } => {
            control::send(&path, Command::Restart { services }, false)
        }
        Commands::Redeploy { services } => {
            control::send(&path, Command::Redeploy { services }, false)
        }
        Commands::Reload => control::send(&path, Command::Reload, false),
        Commands::Scale { counts } => control::send(&path, Command::Scale { counts }, false),
        Commands::Down { volumes } => control::send(&path, Command::Down, volumes),
        Commands::Editors(command) => editors::run(&command, cli.file.as_deref(), &cwd),
    }
}

/// The runtime of `up` and `tui`: two workers match the machines fleet is built
/// for and keep its own footprint small; blocking work has its own threads.
fn supervisor_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    build_runtime(tokio::runtime::Builder::new_multi_thread().worker_threads(2))
}

fn small_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    build_runtime(&mut tokio::runtime::Builder::new_current_thread())
}

fn build_runtime(
    builder: &mut tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, CliError> {
    builder.enable_all().build().map_err(|err| {
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

/// The supervisor's current snapshot.
async fn snapshot_of(client: &mut Client) -> Result<Snapshot, CliError> {
    let value = client.call(Request::Ps).await?;
    serde_json::from_value(value)
        .map_err(|err| CliError::new(exit::FAILURE, format!("fleet: bad snapshot: {err}")))
}
