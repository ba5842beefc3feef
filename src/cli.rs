//! The command line: argument parsing and the subcommands. `up` runs the supervisor
//! in this process; every other command is a client of a running supervisor.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tokio::sync::{broadcast, oneshot};

use crate::event::{now_ms, Command, Event};
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
}

#[derive(Parser, Debug)]
#[command(
    name = "fleet",
    version,
    about = "Run, watch and redeploy many services on one machine."
)]
pub struct Cli {
    /// The manifest to use (default: fleet.toml in this folder or the nearest parent).
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
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
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Services to start, with their dependencies (default: all).
    pub services: Vec<String>,
    /// Plain prefixed output instead of the terminal UI.
    #[arg(long)]
    pub no_tui: bool,
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
            format!("cannot start the fleet, nothing was started:\n{err}"),
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| {
            CliError::new(
                exit::FAILURE,
                format!("cannot start the async runtime: {err}"),
            )
        })?;
    let _ = args.no_tui;
    runtime.block_on(supervise(manifest, args.services))
}

async fn supervise(manifest: Manifest, services: Vec<String>) -> Result<i32, CliError> {
    let io_error =
        |what: &str, err: std::io::Error| CliError::new(exit::FAILURE, format!("{what}: {err}"));
    let processes = ProcessRuntime::start()
        .map_err(|err| io_error("cannot set up process supervision", err))?;
    let token = project_token(&manifest.path);
    let run_id = format!("{:x}{:x}", std::process::id(), now_ms() & 0xffff_ffff);
    let state_dir = manifest.state_dir();
    let swept = reaper::sweep_previous(&state_dir, &format!("{token}/"));
    if swept.groups + swept.processes > 0 {
        eprintln!(
            "fleet: cleaned up after a previous run that did not stop cleanly ({} process groups, {} stray processes)",
            swept.groups, swept.processes
        );
    }
    let journal =
        Journal::open(&state_dir, &run_id).map_err(|err| io_error("cannot write .fleet/", err))?;
    let marker = format!("{token}/{run_id}/");
    let keeper = Keeper::spawn(journal.path(), &marker)
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
    });
    let names: Vec<String> = manifest.services.iter().map(|s| s.name.clone()).collect();
    let (supervisor, handle) = match Supervisor::new(manifest, project, &services) {
        Ok(created) => created,
        Err(err) => {
            journal.clear();
            keeper.release();
            return Err(err.into());
        }
    };
    let printer = Printer::start(&names, hub.subscribe(), handle.events.subscribe());
    let signals = tokio::spawn(forward_signals(handle.clone()));
    supervisor.run().await;
    signals.abort();
    printer.finish();
    journal.clear();
    keeper.release();
    Ok(exit::SUCCESS)
}

/// First SIGINT or SIGTERM: graceful stop. Second: kill everything at once.
async fn forward_signals(handle: SupervisorHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("fleet: cannot listen for Ctrl-C; use `fleet down` to stop");
        return;
    };
    let mut received = 0;
    loop {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        received += 1;
        let command = if received == 1 {
            eprintln!("fleet: stopping every service (press Ctrl-C again to kill them at once)");
            Command::Down
        } else {
            eprintln!("fleet: killing every service");
            Command::Kill
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = handle.send(command).await;
        });
    }
}

fn use_color(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
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
        mut logs: broadcast::Receiver<Arc<LogBatch>>,
        mut events: broadcast::Receiver<Event>,
    ) -> Printer {
        let color = use_color(&std::io::stdout());
        let width = names
            .iter()
            .map(|name| name.chars().count())
            .max()
            .unwrap_or(0)
            .min(24);
        let colors: std::collections::HashMap<String, &'static str> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), PALETTE[i % PALETTE.len()]))
            .collect();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("fleet-printer".into()).spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            let prefix = |name: &str| -> String {
                let padded = format!("{name:<width$}");
                match (color, colors.get(name)) {
                    (true, Some(code)) => format!("{code}{padded}{RESET} | "),
                    _ => format!("{padded} | "),
                }
            };
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
                        let head = prefix(&batch.service);
                        for line in batch.lines() {
                            let _ = out.write_all(head.as_bytes());
                            let _ = out.write_all(line);
                            let _ = out.write_all(b"\n");
                        }
                    }
                    if let Some(event) = next.1 {
                        let line = match (color, colors.get(&event.service)) {
                            (true, Some(code)) => format!("{code}{BOLD}{}{RESET}: {}\n", event.service, event.kind),
                            _ => format!("{}: {}\n", event.service, event.kind),
                        };
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
