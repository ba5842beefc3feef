//! Nothing outlives fleet: the pid journal, the keeper process and the startup sweep.
//!
//! # Theory of operation
//! - Every process group fleet starts is appended to `.fleet/pids` with its start time
//!   (so a reused pid is never mistaken for ours) and struck out when it is reaped.
//! - At start the supervisor gets a keeper, in its own process group (so a terminal's
//!   Ctrl-C doesn't reach it), holding the read end of a pipe whose write end only the
//!   supervisor has. The supervisor writes what to guard into the pipe (the journal,
//!   the marker, the Docker project) and keeps it open. When the supervisor dies,
//!   however it dies, the kernel closes that end; the keeper reads EOF and kills every
//!   group in the journal and every process carrying the run's `FLEET_INSTANCE`
//!   marker, which catches descendants that left their group.
//! - The keeper is forked before the supervisor starts any thread
//!   ([`PendingKeeper::fork`]): it then runs fleet's code without loading it again, so
//!   it holds a few hundred KiB of memory instead of the 3.6 MB a fresh fleet process
//!   maps (its libraries, its relocations, the code its start touches). Where that is
//!   not possible (threads already run, or fleet is itself another fleet's service,
//!   whose marker a fork would carry), fleet is re-executed with a hidden argument.
//! - The next `fleet up` does the same sweep first, for what a crashed run (and a
//!   keeper that was killed too) left behind.
//!
//! `PR_SET_PDEATHSIG` is not used: it fires when the *thread* that forked exits, and
//! tokio forks from whichever worker thread runs the runner.

use std::collections::HashMap;
use std::ffi::{CStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{ForkResult, Pid};

use super::process::{all_with_marker, start_time, MARKER_VAR};
use crate::project::JOURNAL_PREFIX;

/// The hidden first argument that makes `fleet` run as a keeper.
pub const KEEPER_ARG: &str = "__fleet_keeper";

/// The name a forked keeper gives itself (`ps`, `top`): its command line is its
/// supervisor's.
pub const KEEPER_NAME: &CStr = c"fleet-keeper";

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

/// What a keeper guards, as the supervisor tells it over the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeeperOrders {
    pub journal: PathBuf,
    pub marker: String,
    /// The Docker project and run whose containers to remove, if the run has any.
    pub containers: Option<(String, String)>,
    /// The run's Docker project is its own (`fleet run`): its network and named volumes
    /// go too.
    pub ephemeral: bool,
}

impl KeeperOrders {
    /// Fields, each ended by a NUL: journal, marker, project, run, `e` when ephemeral.
    /// Far below `PIPE_BUF`, so one write puts it in the pipe whole.
    fn encode(&self) -> Vec<u8> {
        let (project, run) = self
            .containers
            .as_ref()
            .map_or(("", ""), |(project, run)| (project.as_str(), run.as_str()));
        let mut bytes = Vec::new();
        for field in [
            self.journal.as_os_str().as_bytes(),
            self.marker.as_bytes(),
            project.as_bytes(),
            run.as_bytes(),
            if self.ephemeral { b"e" } else { b"" },
        ] {
            bytes.extend_from_slice(field);
            bytes.push(0);
        }
        bytes
    }

    /// The orders in the first bytes read from the link, once all five fields came.
    fn decode(bytes: &[u8]) -> Option<KeeperOrders> {
        let mut fields = bytes.split(|byte| *byte == 0);
        let journal = PathBuf::from(OsString::from_vec(fields.next()?.to_vec()));
        let marker = String::from_utf8_lossy(fields.next()?).into_owned();
        let project = String::from_utf8_lossy(fields.next()?).into_owned();
        let run = String::from_utf8_lossy(fields.next()?).into_owned();
        let ephemeral = fields.next()? == b"e";
        // The fifth field is whole only once its NUL came: five NULs in all.
        if bytes.iter().filter(|byte| **byte == 0).count() < 5 {
            return None;
        }
        Some(KeeperOrders {
            journal,
            marker,
            containers: (!project.is_empty()).then_some((project, run)),
            ephemeral,
        })
    }
}

/// A keeper forked early, waiting for its orders (see the module's documentation).
/// Dropping it unused closes the link: the keeper then exits, with nothing to do.
pub struct PendingKeeper {
    pid: Pid,
    link: OwnedFd,
}

impl PendingKeeper {
    /// Forks the keeper now. `None` (then [`Keeper::start`] re-executes fleet instead)
    /// when this process already runs other threads, after which a forked child may
    /// find a lock held forever, or when fleet is itself a service of another fleet:
    /// the fork would carry that fleet's marker in its environment, and be killed
    /// with this supervisor before it could sweep.
    ///
    /// Call it before anything starts a thread, and before files are opened that the
    /// keeper must not hold (it closes every descriptor it inherits, but a lock is
    /// shared until then).
    pub fn fork() -> Option<PendingKeeper> {
        if std::env::var_os(MARKER_VAR).is_some() || !single_threaded() {
            return None;
        }
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        // SAFETY: this process has a single thread (checked above), so the child
        // starts from a consistent copy of its memory, with no lock held by a thread
        // that does not exist in it, and may run any code.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                drop(write);
                let code = match become_keeper(read) {
                    Ok(()) => 0,
                    Err(_) => 1,
                };
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => {
                drop(read);
                Some(PendingKeeper {
                    pid: child,
                    link: write,
                })
            }
            Err(_) => None,
        }
    }
}

/// Whether this process runs one thread (from /proc; unknown counts as more).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|count| count.trim().parse::<u32>().ok())
        })
        == Some(1)
}

/// The forked keeper's start: its own group and name, the link as stdin, stdout to
/// /dev/null, every other inherited descriptor closed (the project's lock, above
/// all); then the keeper's work.
fn become_keeper(link: OwnedFd) -> io::Result<()> {
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let _ = nix::sys::prctl::set_name(KEEPER_NAME);
    let null = File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&link)?;
    nix::unistd::dup2_stdout(&null)?;
    drop(link);
    drop(null);
    close_descriptors_from(3);
    run_keeper()
}

/// Closes every descriptor from `first` on.
fn close_descriptors_from(first: i32) {
    // SAFETY: close_range only closes descriptors; nothing in this process uses the
    // ones above stderr any more.
    if unsafe { nix::libc::close_range(first as u32, u32::MAX, 0) } == 0 {
        return;
    }
    // Kernels before 5.9: close what /proc lists (collected first, as closing changes
    // the listing).
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in open {
        let _ = nix::unistd::close(fd);
    }
}

/// The supervisor's end of the keeper link. Dropping it (or dying) triggers the sweep.
pub struct Keeper {
    pid: Pid,
    link: OwnedFd,
}

impl Keeper {
    /// Gives the keeper its orders: `pending` if one was forked, else a keeper started
    /// now by re-executing fleet. On the supervisor's death it sweeps what `orders`
    /// name.
    pub fn start(pending: Option<PendingKeeper>, orders: &KeeperOrders) -> io::Result<Keeper> {
        let keeper = match pending {
            Some(pending) => Keeper {
                pid: pending.pid,
                link: pending.link,
            },
            None => Keeper::exec()?,
        };
        let message = orders.encode();
        let written = nix::unistd::write(&keeper.link, &message)?;
        if written != message.len() {
            return Err(io::Error::other("the keeper link took part of the orders"));
        }
        Ok(keeper)
    }

    /// fleet re-executed with the hidden argument.
    fn exec() -> io::Result<Keeper> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg(KEEPER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env_remove(MARKER_VAR)
            .process_group(0)
            .spawn()?;
        let link = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("the keeper has no stdin"))?;
        // The std Child is dropped without waiting: the reaper collects the keeper.
        Ok(Keeper {
            pid: Pid::from_raw(child.id() as i32),
            link: OwnedFd::from(link),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Closes the link after a clean shutdown; the keeper's sweep then finds nothing.
    pub fn release(self) {
        drop(self.link);
    }
}

/// The keeper's main: read its orders, wait for the supervisor to go away, then
/// sweep. The link is stdin.
pub fn run_keeper() -> io::Result<()> {
    // Terminal signals are for the supervisor; the keeper's job starts when it is gone.
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigIgn);
        let _ = nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn);
    }
    let mut stdin = io::stdin().lock();
    let mut received = Vec::new();
    let mut orders = None;
    let mut buffer = [0u8; 512];
    loop {
        match stdin.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                if orders.is_none() {
                    received.extend_from_slice(&buffer[..read]);
                    orders = KeeperOrders::decode(&received);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    // No orders: the supervisor went before it started anything.
    let Some(orders) = orders else {
        return Ok(());
    };
    sweep(std::slice::from_ref(&orders.journal), &orders.marker);
    if let Some((project, run)) = &orders.containers
        && let Err(err) =
            super::container::remove_run_containers_blocking(project, run, orders.ephemeral)
    {
        crate::note!("fleet keeper: cannot remove the containers of run {run}: {err}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn keeper_orders_survive_the_link_whole_and_not_before() {
        let orders = KeeperOrders {
            journal: PathBuf::from(OsStr::from_bytes(b"/tmp/a b/\xff/pids-1")),
            marker: "abc/1f2e/".into(),
            containers: Some(("shop".into(), "1f2e".into())),
            ephemeral: true,
        };
        let bytes = orders.encode();
        assert_eq!(KeeperOrders::decode(&bytes), Some(orders.clone()));
        for cut in 0..bytes.len() {
            assert_eq!(KeeperOrders::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let plain = KeeperOrders {
            containers: None,
            ephemeral: false,
            ..orders
        };
        assert_eq!(KeeperOrders::decode(&plain.encode()), Some(plain));
    }
}
