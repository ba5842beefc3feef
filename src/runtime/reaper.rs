//! Nothing outlives fleet: the pid journal, the keeper process and the startup sweep.
//!
//! # Theory of operation
//! - Every process group fleet starts is appended to `.fleet/pids` with its start time
//!   (so a reused pid is never mistaken for ours) and struck out when it is reaped.
//! - At start the supervisor spawns a keeper: fleet itself re-executed with a hidden
//!   argument, in its own process group (so a terminal's Ctrl-C doesn't reach it),
//!   holding the read end of a pipe whose write end only the supervisor has. When the
//!   supervisor dies, however it dies, the kernel closes that end; the keeper reads EOF
//!   and kills every group in the journal and every process carrying the project's
//!   `FLEET_INSTANCE` marker, which catches descendants that left their group.
//! - The next `fleet up` does the same sweep first, for what a crashed run (and a
//!   keeper that was killed too) left behind.
//!
//! `PR_SET_PDEATHSIG` is not used: it fires when the *thread* that forked exits, and
//! tokio forks from whichever worker thread runs the runner.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::process::{all_with_marker, start_time};
use crate::project::JOURNAL_PREFIX;

/// The hidden first argument that makes `fleet` run as a keeper.
pub const KEEPER_ARG: &str = "__fleet_keeper";

/// The keeper's last argument when the run's Docker project is its own (`fleet run`):
/// it then removes the project's network and named volumes too.
pub const EPHEMERAL_ARG: &str = "ephemeral";

/// Append-only record of the process groups fleet started.
#[derive(Clone)]
pub struct Journal {
    path: PathBuf,
    file: Option<Arc<Mutex<File>>>,
}

impl Journal {
    pub fn open(state_dir: &Path, run: &str) -> io::Result<Journal> {
        std::fs::create_dir_all(state_dir)?;
        let path = crate::project::journal_file(state_dir, run);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Journal {
            path,
            file: Some(Arc::new(Mutex::new(file))),
        })
    }

    /// A journal that records nothing (for tests and tools that start no services).
    pub fn disabled() -> Journal {
        Journal {
            path: PathBuf::new(),
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn add(&self, pid: u32) {
        let start = start_time(pid as i32).unwrap_or(0);
        self.write(&format!("+ {pid} {start}\n"));
    }

    pub fn remove(&self, pid: u32) {
        self.write(&format!("- {pid}\n"));
    }

    fn write(&self, line: &str) {
        let Some(file) = &self.file else { return };
        if let Ok(mut file) = file.lock() {
            // Losing a journal line only weakens crash cleanup, which the marker scan
            // backs up; it must never stop a service from starting. Half a line (a
            // full disk) is cut off again: glued to the next line it could read as a
            // group without its start time, which a sweep would kill unchecked.
            let before = file.metadata().map(|metadata| metadata.len());
            if file.write_all(line.as_bytes()).is_err()
                && let Ok(before) = before
            {
                let _ = file.set_len(before);
            }
        }
    }

    /// Forgets everything: called after a clean shutdown.
    pub fn clear(&self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The groups a journal says are alive: pid -> start time.
pub fn read_journal(path: &Path) -> HashMap<i32, u64> {
    let mut live = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return live;
    };
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match (
            fields.next(),
            fields.next().and_then(|pid| pid.parse::<i32>().ok()),
        ) {
            (Some("+"), Some(pid)) => {
                let start = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                live.insert(pid, start);
            }
            (Some("-"), Some(pid)) => {
                live.remove(&pid);
            }
            _ => {}
        }
    }
    live
}

/// What a sweep killed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub groups: usize,
    pub processes: usize,
}

/// How long a sweep waits for what it killed to exit (SIGKILL takes effect within
/// milliseconds; a process stuck in the kernel may take longer, and is not waited for).
const SWEEP_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Kills what earlier runs of this project left: every journal's groups and every
/// process carrying `project_marker`. Called by `fleet up` before it starts anything.
pub fn sweep_previous(state_dir: &Path, project_marker: &str) -> Swept {
    let mut journals = Vec::new();
    if let Ok(entries) = std::fs::read_dir(state_dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(JOURNAL_PREFIX)
            {
                journals.push(entry.path());
            }
        }
    }
    sweep(&journals, project_marker)
}

/// Kills what one run left: its journal's groups (when the leader is still the
/// process we started, or already gone) and every process with `marker`. Removes the
/// journals.
pub fn sweep(journals: &[PathBuf], marker: &str) -> Swept {
    let mut swept = Swept::default();
    let mut killed: Vec<i32> = Vec::new();
    let mut groups = HashMap::new();
    for journal in journals {
        groups.extend(read_journal(journal));
    }
    for (pgid, recorded_start) in groups {
        if let Some(current) = start_time(pgid)
            && recorded_start != 0
            && current != recorded_start
        {
            // The pid now names someone else's process; leave it alone.
            continue;
        }
        if killpg(Pid::from_raw(pgid), Signal::SIGKILL).is_ok() {
            swept.groups += 1;
            killed.push(pgid);
        }
    }
    // Processes that escaped their group. Repeat: killing one may orphan others, and a
    // process may fork while we look.
    for _ in 0..5 {
        let found = all_with_marker(marker);
        if found.is_empty() {
            break;
        }
        for pid in found {
            if !matches!(kill(Pid::from_raw(pid), Signal::SIGKILL), Err(Errno::ESRCH)) {
                swept.processes += 1;
                killed.push(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // A killed process lets go of its ports only once it has exited: wait for that
    // (briefly), so the caller's port check does not find them still held.
    let deadline = std::time::Instant::now() + SWEEP_SETTLE;
    while killed.iter().any(|pid| !super::process::is_zombie(*pid))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    for journal in journals {
        let _ = std::fs::remove_file(journal);
    }
    swept
}

/// The supervisor's end of the keeper link. Dropping it (or dying) triggers the sweep.
pub struct Keeper {
    child: Child,
}

impl Keeper {
    /// Starts the keeper for one run: on the supervisor's death it sweeps `journal`
    /// and every process carrying `marker`.
    /// With `containers` (project name, run id), it also removes the run's containers,
    /// and with `ephemeral` the project's network and named volumes after them (a
    /// `fleet run`, whose Docker project is its own).
    pub fn spawn(
        journal: &Path,
        marker: &str,
        containers: Option<(&str, &str)>,
        ephemeral: bool,
    ) -> io::Result<Keeper> {
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        command.arg(KEEPER_ARG).arg(journal).arg(marker);
        if let Some((project, run)) = containers {
            command.arg(project).arg(run);
            if ephemeral {
                command.arg(EPHEMERAL_ARG);
            }
        }
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env_remove(super::process::MARKER_VAR)
            .process_group(0)
            .spawn()?;
        Ok(Keeper { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the link after a clean shutdown; the keeper's sweep then finds nothing.
    pub fn release(mut self) {
        drop(self.child.stdin.take());
    }
}

/// The keeper's main: wait for the supervisor to go away, then sweep.
pub fn run_keeper(
    journal: &Path,
    marker: &str,
    containers: Option<(&str, &str)>,
    ephemeral: bool,
) -> io::Result<()> {
    // Terminal signals are for the supervisor; the keeper's job starts when it is gone.
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigIgn);
        let _ = nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn);
    }
    let mut stdin = io::stdin().lock();
    let mut buffer = [0u8; 64];
    loop {
        match stdin.read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    sweep(&[journal.to_path_buf()], marker);
    if let Some((project, run)) = containers
        && let Err(err) = super::container::remove_run_containers_blocking(project, run, ephemeral)
    {
        crate::note!("fleet keeper: cannot remove the containers of run {run}: {err}");
    }
    Ok(())
}
