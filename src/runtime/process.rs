//! OS processes: spawn each instance in its own process group, reap every child,
//! signal and kill whole groups, and find what escaped a group.
//!
//! This is, with `reaper.rs`, the only place that makes process syscalls. It makes no
//! policy decisions: the state machine decides, this module does.
//!
//! # Theory of operation
//! fleet reaps its children itself instead of letting tokio do it, because it is a
//! child subreaper: orphaned grandchildren of every service are re-parented to it and
//! must be reaped too, and a `waitpid(-1)` would steal the statuses tokio waits for.
//! So one task listens for SIGCHLD and calls `waitpid(-1, WNOHANG)` until nothing is
//! left, handing each status to whoever registered the pid. Registration happens under
//! the same lock as the fork, so a child that dies at once is never reaped before its
//! owner is known; statuses of pids nobody registered (orphans) are simply dropped.
//!
//! Every instance gets `FLEET_INSTANCE=<marker>` in its environment. A process that
//! left its group with `setsid()` still carries it, so when an instance ends, anything
//! re-parented to fleet that carries its marker is killed too.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, Notify};

use crate::event::ExitStatus;

/// The environment variable that marks every process an instance starts.
pub const MARKER_VAR: &str = "FLEET_INSTANCE";

/// How long a killed group may take to disappear before fleet gives up waiting. SIGKILL
/// cannot be caught, so only a process stuck in uninterruptible sleep (D state, e.g. on
/// a dead NFS mount) lasts this long; the port is then still at risk, which is logged.
const GROUP_EXIT_DEADLINE: Duration = Duration::from_secs(2);

/// How often a kill looks again at a group that is not gone yet, between the reaper's
/// wake-ups (see [`ProcessRuntime::kill_instance`]).
const KILL_POLL: Duration = Duration::from_millis(5);

/// Pipes are enlarged to this size so a service that prints in bursts doesn't block
/// on a full 64 KiB pipe while fleet writes the previous burst to disk.
const PIPE_SIZE: i32 = 1 << 20;

#[derive(Debug)]
pub enum SpawnError {
    /// The program could not be found or executed.
    Exec { program: String, source: io::Error },
    /// fleet itself has no file descriptor left for the new process's pipes (EMFILE:
    /// its own `ulimit -n`, with the soft limit it had; ENFILE: the whole system's).
    OutOfDescriptors {
        source: io::Error,
        limit: Option<u64>,
    },
    /// Any other OS failure (pipes, fork).
    Os(io::Error),
}

impl SpawnError {
    /// Sorts an OS error from creating the process: out of descriptors, or another.
    fn os(source: io::Error) -> SpawnError {
        let emfile = source.raw_os_error() == Some(Errno::EMFILE as i32);
        if emfile || source.raw_os_error() == Some(Errno::ENFILE as i32) {
            let limit = emfile
                .then(|| {
                    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()
                })
                .flatten()
                .map(|(soft, _hard)| soft);
            return SpawnError::OutOfDescriptors { source, limit };
        }
        SpawnError::Os(source)
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Exec { program, source } => write!(f, "cannot run `{program}`: {source}"),
            SpawnError::OutOfDescriptors {
                source,
                limit: Some(limit),
            } => write!(
                f,
                "cannot start process: fleet has reached its limit of {limit} open files \
                 (raise `ulimit -n` before `fleet up`): {source}"
            ),
            SpawnError::OutOfDescriptors {
                source,
                limit: None,
            } => write!(
                f,
                "cannot start process: the system is out of file descriptors: {source}"
            ),
            SpawnError::Os(source) => write!(f, "cannot start process: {source}"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// What to run.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment of the new process.
    pub env: Vec<(String, String)>,
    /// Listening sockets to pass as fds 3, 4, ... (systemd socket activation), with
    /// their names; fleet also sets `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`.
    pub listen_fds: Vec<(RawFd, String)>,
}

/// A live child: its pid (which is also its process group id), its output pipes and
/// the future of its exit status.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    pub exit: oneshot::Receiver<ExitStatus>,
}

/// Handle to the process runtime: cheap to clone, shared by every runner.
#[derive(Clone)]
pub struct ProcessRuntime {
    reaper: Arc<Mutex<Reaper>>,
    /// Woken whenever the reaper collected a child: what a kill waits on.
    reaped: Arc<Notify>,
}

/// Who waits for which child, and how many spawns are under way.
#[derive(Default)]
struct Reaper {
    waiters: HashMap<i32, oneshot::Sender<ExitStatus>>,
    /// Forks whose pid is not registered yet. While any is under way, an unknown
    /// zombie may be one of them, so only registered pids are reaped.
    spawning: usize,
}

fn to_exit(status: WaitStatus) -> Option<(Pid, ExitStatus)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid, ExitStatus::Code(code))),
        WaitStatus::Signaled(pid, signal, _) => Some((pid, ExitStatus::Signal(signal as i32))),
        _ => None,
    }
}

impl ProcessRuntime {
    /// Makes fleet a child subreaper and starts the SIGCHLD reaper task. Must be called
    /// inside the tokio runtime, before any child is spawned.
    pub fn start() -> io::Result<ProcessRuntime> {
        // Orphaned descendants of our services come back to us instead of init, so they
        // can be found and killed with their service.
        nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let runtime = ProcessRuntime {
            reaper: Arc::new(Mutex::new(Reaper::default())),
            reaped: Arc::new(Notify::new()),
        };
        let reaper = runtime.clone();
        tokio::spawn(async move {
            reaper.reap_all();
            while sigchld.recv().await.is_some() {
                reaper.reap_all();
            }
        });
        Ok(runtime)
    }

    /// Collects every exited child. Signals coalesce, so one SIGCHLD may stand for
    /// many exits: loop until the kernel has nothing more.
    ///
    /// With no spawn under way, `waitpid(-1)` takes every zombie: registered ones go
    /// to their owner, others are orphans re-parented to us and are dropped. During a
    /// spawn, an unregistered zombie may be the new child itself (it can die before
    /// its pid is known), so then only registered pids are reaped, one by one; the
    /// spawner runs this again once it has registered its child.
    fn reap_all(&self) {
        if self.reap_locked() {
            self.reaped.notify_waiters();
        }
    }

    /// [`ProcessRuntime::reap_all`] under the lock; true when a child was collected.
    fn reap_locked(&self) -> bool {
        let Ok(mut reaper) = self.reaper.lock() else {
            return false;
        };
        let mut collected = false;
        if reaper.spawning > 0 {
            let pids: Vec<i32> = reaper.waiters.keys().copied().collect();
            for pid in pids {
                if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
                    && let Some((pid, exit)) = to_exit(status)
                    && let Some(waiter) = reaper.waiters.remove(&pid.as_raw())
                {
                    collected = true;
                    let _ = waiter.send(exit);
                }
            }
            return collected;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return collected,
                Ok(status) => {
                    collected = true;
                    if let Some((pid, exit)) = to_exit(status)
                        && let Some(waiter) = reaper.waiters.remove(&pid.as_raw())
                    {
                        // The owner may have stopped caring; nothing to do then.
                        let _ = waiter.send(exit);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => return collected,
            }
        }
    }

    /// SIGKILLs the instance's group and everything re-parented to fleet that carries
    /// its marker, once, without waiting; returns the escaped pids it found.
    pub fn kill_group_and_escaped(&self, pgid: u32, marker: &str) -> Vec<i32> {
        let _ = signal_group(pgid, Signal::SIGKILL as i32);
        let escaped = self.escaped_with_marker(marker);
        for pid in &escaped {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        escaped
    }

    /// SIGKILLs the instance's group and everything re-parented to fleet that carries
    /// its marker, and waits until all of it is gone (reaped by the reaper task).
    pub async fn kill_instance(&self, pgid: u32, marker: &str) {
        let deadline = tokio::time::Instant::now() + GROUP_EXIT_DEADLINE;
        loop {
            // Armed before the check, so a reap between the check and the wait wakes it.
            let reaped = self.reaped.notified();
            tokio::pin!(reaped);
            reaped.as_mut().enable();
            let escaped = self.kill_group_and_escaped(pgid, marker);
            if !group_alive(pgid) && escaped.is_empty() {
                return;
            }
            // Killed children exit within microseconds and the reaper's collection wakes
            // this at once; the poll is for what the reaper never sees: members of the
            // group whose parent is not fleet, and orphans of theirs re-parented to fleet
            // only after their own parent went.
            let poll = tokio::time::sleep(KILL_POLL);
            tokio::select! {
                () = reaped => {}
                () = poll => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
        }
    }

    /// Our own direct children that carry `marker`: descendants of an instance that
    /// were re-parented to fleet (double fork, `setsid` + parent exit). Zombies are
    /// skipped, and so are the processes this runtime started itself, which are never
    /// anyone's escapees: when a hundred services stop together, each cleanup then
    /// reads the /proc entries of the few strangers only, not of every other instance
    /// still exiting beside it (the old way cost O(N²) reads, on the cores the exiting
    /// services need).
    pub fn escaped_with_marker(&self, marker: &str) -> Vec<i32> {
        let mut children = own_children();
        if let Ok(reaper) = self.reaper.lock() {
            children.retain(|pid| !reaper.waiters.contains_key(pid));
        }
        children
            .into_iter()
            .filter(|pid| !is_zombie(*pid) && has_marker(*pid, marker))
            .collect()
    }

    /// Starts a process in a new process group with piped stdout and stderr.
    pub fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        let program = request.argv.first().cloned().unwrap_or_default();
        let mut command = Command::new(&program);
        command
            .args(request.argv.iter().skip(1))
            .current_dir(&request.cwd)
            .env_clear()
            .envs(request.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if !request.listen_fds.is_empty() {
            let exec = PreparedExec::new(request, &program).map_err(|source| SpawnError::Exec {
                program: program.clone(),
                source,
            })?;
            // SAFETY: the closure runs in the forked child before exec and only calls
            // async-signal-safe functions (getpid, dup2, fcntl, execve) on memory that
            // was allocated before the fork; it allocates nothing.
            unsafe {
                command.pre_exec(move || exec.exec_with_listen_fds());
            }
        }
        let (mut child, exit) =
            self.spawn_registered(&mut command)
                .map_err(|source| match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => SpawnError::Exec {
                        program: program.clone(),
                        source,
                    },
                    _ if source.raw_os_error() == Some(libc_enoexec()) => SpawnError::Exec {
                        program: program.clone(),
                        source,
                    },
                    _ => SpawnError::os(source),
                })?;
        let pid = child.id();
        let std_child = &mut child;
        let stdout = std_child
            .stdout
            .take()
            .ok_or_else(|| SpawnError::Os(io::Error::other("stdout pipe missing")))?;
        let stderr = std_child
            .stderr
            .take()
            .ok_or_else(|| SpawnError::Os(io::Error::other("stderr pipe missing")))?;
        let stdout = into_async_pipe(OwnedFd::from(stdout)).map_err(SpawnError::os)?;
        let stderr = into_async_pipe(OwnedFd::from(stderr)).map_err(SpawnError::os)?;
        // The std Child is dropped without waiting: the reaper owns its exit status.
        Ok(Spawned {
            pid,
            stdout,
            stderr,
            exit,
        })
    }

    /// Spawns `command` as the caller set it up (stdio, process group, environment)
    /// and registers it with the reaper, which alone collects the children of this
    /// process: for a command that is not an instance, such as `fleet run`'s. Never
    /// wait on the returned `Child`; its status arrives on the receiver.
    pub fn spawn_registered(
        &self,
        command: &mut Command,
    ) -> io::Result<(std::process::Child, oneshot::Receiver<ExitStatus>)> {
        let poisoned = || io::Error::other("reaper lock poisoned");
        // Spawns run in parallel (the fork waits for the child's exec, which dominates
        // a cold start of hundreds of services); the reaper holds back meanwhile.
        self.reaper.lock().map_err(|_| poisoned())?.spawning += 1;
        let spawned = command.spawn();
        let (sender, exit) = oneshot::channel();
        let others_spawning = {
            let mut reaper = self.reaper.lock().map_err(|_| poisoned())?;
            reaper.spawning -= 1;
            if let Ok(child) = &spawned {
                let pid = child.id() as i32;
                // It may have died already; while others spawn, nobody else reaps it.
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
                    .ok()
                    .and_then(to_exit)
                {
                    Some((_, status)) => {
                        let _ = sender.send(status);
                    }
                    None => {
                        reaper.waiters.insert(pid, sender);
                    }
                }
            }
            reaper.spawning > 0
        };
        if !others_spawning {
            // Orphans that died during the spawn waited for it to end.
            self.reap_all();
        }
        Ok((spawned?, exit))
    }
}

fn libc_enoexec() -> i32 {
    Errno::ENOEXEC as i32
}

fn into_async_pipe(fd: OwnedFd) -> io::Result<pipe::Receiver> {
    // Best effort: a smaller pipe only means the service may block sooner.
    let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    pipe::Receiver::from_owned_fd(fd)
}

/// argv and envp laid out before the fork, so the child can fill in its own pid in
/// `LISTEN_PID` and exec without allocating.
struct PreparedExec {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const nix::libc::c_char>,
    _env: Vec<Vec<u8>>,
    env_ptrs: Vec<*const nix::libc::c_char>,
    /// Points at the digits of `LISTEN_PID=__________` inside `_env`.
    listen_pid_digits: *mut u8,
    listen_fds: Vec<RawFd>,
}

/// More sockets than this per instance is a bug in fleet, not a user's choice: fleet
/// passes the service's `socket` and a private health-probe socket.
const MAX_LISTEN_FDS: usize = 8;

// SAFETY: the raw pointers point into buffers owned by the same struct, which are
// never moved or resized after construction; the struct is only used in the child.
unsafe impl Send for PreparedExec {}
// SAFETY: as above; nothing mutates it except the forked child's private copy.
unsafe impl Sync for PreparedExec {}

const LISTEN_PID_WIDTH: usize = 10;

impl PreparedExec {
    fn new(request: &SpawnRequest, program: &str) -> io::Result<PreparedExec> {
        let path_var = request
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        let resolved = resolve_program(program, &request.cwd, path_var)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not found in PATH"))?;
        let to_c =
            |bytes: &[u8]| CString::new(bytes).map_err(|_| io::Error::other("NUL byte in command"));
        let program = to_c(resolved.as_os_str().as_bytes())?;
        let argv: Vec<CString> = request
            .argv
            .iter()
            .map(|a| to_c(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let mut env: Vec<Vec<u8>> = request
            .env
            .iter()
            .filter(|(k, _)| !k.starts_with("LISTEN_"))
            .map(|(k, v)| format!("{k}={v}\0").into_bytes())
            .collect();
        env.push(format!("LISTEN_FDS={}\0", request.listen_fds.len()).into_bytes());
        let names: Vec<&str> = request
            .listen_fds
            .iter()
            .map(|(_, name)| name.as_str())
            .collect();
        env.push(format!("LISTEN_FDNAMES={}\0", names.join(":")).into_bytes());
        env.push(format!("LISTEN_PID={}\0", "0".repeat(LISTEN_PID_WIDTH)).into_bytes());
        let listen_index = env.len() - 1;
        let listen_pid_digits = env[listen_index][b"LISTEN_PID=".len()..].as_mut_ptr();
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<_> = env
            .iter()
            .map(|e| e.as_ptr() as *const nix::libc::c_char)
            .collect();
        env_ptrs.push(std::ptr::null());
        Ok(PreparedExec {
            program,
            _argv: argv,
            argv_ptrs,
            _env: env,
            env_ptrs,
            listen_pid_digits,
            listen_fds: request
                .listen_fds
                .iter()
                .map(|(fd, _)| *fd)
                .take(MAX_LISTEN_FDS)
                .collect(),
        })
    }

    /// Runs in the child: moves the sockets to fds 3, 4, ..., writes our pid into
    /// `LISTEN_PID` and execs. Returns only on failure.
    fn exec_with_listen_fds(&self) -> io::Result<()> {
        use nix::libc;
        // SAFETY: async-signal-safe libc calls on fds we own and on pre-allocated
        // buffers; see PreparedExec.
        unsafe {
            // First copy every socket above the target range, so moving one into place
            // never closes another that happens to sit there.
            let mut staged = [0 as RawFd; MAX_LISTEN_FDS];
            for (index, fd) in self.listen_fds.iter().enumerate() {
                let copy = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3 + MAX_LISTEN_FDS as RawFd);
                if copy < 0 {
                    return Err(io::Error::last_os_error());
                }
                staged[index] = copy;
            }
            for (index, copy) in staged.iter().take(self.listen_fds.len()).enumerate() {
                // dup2 clears close-on-exec on the new fd.
                if libc::dup2(*copy, 3 + index as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let mut pid = libc::getpid() as u32;
            let digits = std::slice::from_raw_parts_mut(self.listen_pid_digits, LISTEN_PID_WIDTH);
            // Right-align the pid and pad with leading zeros; parsers accept "0004242".
            for slot in digits.iter_mut().rev() {
                *slot = b'0' + (pid % 10) as u8;
                pid /= 10;
            }
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.env_ptrs.as_ptr(),
            );
        }
        Err(io::Error::last_os_error())
    }
}

/// Finds the program like execvp would, but before the fork.
fn resolve_program(program: &str, cwd: &Path, path_var: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        let path = Path::new(program);
        return Some(if path.is_absolute() {
            path.to_path_buf()
        } else {
            cwd.join(path)
        });
    }
    let path_var = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    path_var
        .split(':')
        .map(|dir| Path::new(dir).join(OsStr::new(program)))
        .find(|candidate| nix::unistd::access(candidate, nix::unistd::AccessFlags::X_OK).is_ok())
}

/// Sends `signal` to every process in the group. A group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let signal = Signal::try_from(signal).map_err(io::Error::from)?;
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Sends the stop signal to every process in the group, then SIGCONT, as systemd does:
/// a stopped process (SIGSTOP, Ctrl-Z, a debugger's stop) keeps a pending SIGTERM until
/// it runs again, so without SIGCONT its graceful stop could never happen and it would
/// only ever end by the SIGKILL after the stop timeout. A running process ignores
/// SIGCONT unless it asked to hear it.
pub fn stop_group(pgid: u32, signal: i32) -> io::Result<()> {
    signal_group(pgid, signal)?;
    signal_group(pgid, Signal::SIGCONT as i32)
}

/// Whether any process (zombies included) is left in the group.
pub fn group_alive(pgid: u32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid as i32), None), Err(Errno::ESRCH))
}

/// Direct children of this process, from every thread's `children` list (orphans are
/// re-parented to whichever thread of the subreaper is alive).
pub fn own_children() -> Vec<i32> {
    children_in("/proc/self/task")
}

/// Direct children of process `pid`, from every thread's `children` list.
pub fn children_of(pid: i32) -> Vec<i32> {
    children_in(&format!("/proc/{pid}/task"))
}

fn children_in(tasks: &str) -> Vec<i32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir(tasks) else {
        return children;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                list.split_whitespace()
                    .filter_map(|pid| pid.parse::<i32>().ok()),
            );
        }
    }
    children.sort_unstable();
    children.dedup();
    children
}

/// Whether `pid` has ended: gone, or a zombie (its files, sockets included, are
/// closed by then).
pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Whether the process's environment holds `FLEET_INSTANCE=` followed by `marker`
/// (a prefix match, so a project marker finds all of the project's instances).
pub fn has_marker(pid: i32, marker: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{MARKER_VAR}={marker}");
    environ
        .split(|byte| *byte == 0)
        .any(|entry| entry.starts_with(wanted.as_bytes()))
}

/// Every process on the machine whose environment carries `marker` (prefix), except
/// ourselves. Used by the startup sweep and the keeper, where the lineage is lost.
pub fn all_with_marker(marker: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
        })
        .filter(|pid| *pid != own && !is_zombie(*pid) && has_marker(*pid, marker))
        .collect()
}

/// A process's command line, arguments joined by spaces (its name in brackets when the
/// kernel has no command line for it; empty when it is gone).
pub fn command_line(pid: i32) -> String {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes)
            .split('\0')
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        _ => std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|name| format!("[{}]", name.trim()))
            .unwrap_or_default(),
    }
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat):
/// together with the pid it names one process, even after the pid is reused.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Makes `command`'s child leave our session (`setsid` between fork and exec), so a
/// terminal that closes does not send it SIGHUP: for the detached supervisor.
pub fn detach_from_session(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; `setsid` is
    // async-signal-safe and touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
}

/// Whether our stdout is `/dev/null` (output there is not worth formatting).
pub fn stdout_is_null() -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let (Ok(stdout), Ok(null)) = (
        std::fs::metadata("/proc/self/fd/1"),
        std::fs::metadata("/dev/null"),
    ) else {
        return false;
    };
    stdout.file_type().is_char_device() && stdout.rdev() == null.rdev()
}
