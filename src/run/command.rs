//! CMD, the command `fleet run` runs against the fleet: started, its output streamed
//! to the terminal and written to `cmd.log`, stopped on request, and its leftovers
//! found.
//!
//! # Theory of operation
//! CMD stays in `fleet run`'s process group and keeps its stdin, so it is where a shell
//! would put it: Ctrl-C reaches it from the terminal, and it can read the terminal.
//! Its stdout and stderr are pipes (to be logged), so it does not see a terminal
//! there. It carries the marker `<run marker>/cmd/` (no service can have an empty
//! name), which makes it and every descendant that keeps its environment findable:
//! stopping CMD signals all of them, the keeper kills them if `fleet run` dies, and
//! whatever is still running after CMD exited is reported and killed. The reaper of
//! this process (`fleet run` is a child subreaper) collects its status.

use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::summary::LeftProcess;
use crate::event::ExitStatus;
use crate::logs::{LineWriter, ServiceLog, Stream};
use crate::runtime::process::{all_with_marker, ProcessRuntime, MARKER_VAR};

/// How long CMD's output may keep flowing after it exited: a background process it
/// left may hold the pipes open, and is killed then.
const DRAIN_DEADLINE: Duration = Duration::from_millis(500);

/// What to run.
pub(super) struct CommandSpec {
    pub(super) argv: Vec<String>,
    /// Where `fleet run` was started.
    pub(super) cwd: PathBuf,
    /// Added to `fleet run`'s own environment.
    pub(super) env: Vec<(String, String)>,
    /// The run's marker (`<token>/<run>/`); CMD's is this plus `/cmd/`, an instance
    /// marker with an empty service name, which no service can have.
    pub(super) run_marker: String,
}

/// CMD could not start; `code` is what a shell would exit with (127: not found, 126:
/// not executable).
#[derive(Debug)]
pub(super) struct NotStarted {
    pub(super) code: i32,
    pub(super) message: String,
}

/// A running CMD.
pub(super) struct RunningCommand {
    pub(super) pid: u32,
    marker: String,
    exit: oneshot::Receiver<ExitStatus>,
    pumps: Vec<JoinHandle<()>>,
}

/// Starts CMD.
pub(super) fn start(
    processes: &ProcessRuntime,
    spec: &CommandSpec,
    log: Arc<ServiceLog>,
) -> Result<RunningCommand, NotStarted> {
    let marker = format!("{}/cmd/", spec.run_marker);
    let Some(program) = spec.argv.first() else {
        return Err(NotStarted {
            code: super::EXIT_NOT_FOUND,
            message: "no command to run".into(),
        });
    };
    let mut command = std::process::Command::new(program);
    command
        .args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .env(MARKER_VAR, &marker)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, exit) = processes
        .spawn_registered(&mut command)
        .map_err(|err| not_started(program, &err))?;
    let mut pumps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(
            stdout.into(),
            log.clone(),
            Stream::Stdout,
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(stderr.into(), log, Stream::Stderr)));
    }
    Ok(RunningCommand {
        pid: child.id(),
        marker,
        exit,
        pumps,
    })
}

fn not_started(program: &str, err: &io::Error) -> NotStarted {
    let (code, what) = match err.kind() {
        io::ErrorKind::NotFound => (super::EXIT_NOT_FOUND, "command not found".to_string()),
        io::ErrorKind::PermissionDenied => {
            (super::EXIT_NOT_EXECUTABLE, "permission denied".to_string())
        }
        _ => (super::EXIT_NOT_EXECUTABLE, err.to_string()),
    };
    NotStarted {
        code,
        message: format!("cannot run `{program}`: {what}"),
    }
}

/// Copies one of CMD's pipes to the same stream of `fleet run` and into `cmd.log`.
async fn pump(pipe: std::os::fd::OwnedFd, log: Arc<ServiceLog>, stream: Stream) {
    let Ok(mut reader) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe) else {
        return;
    };
    let mut writer = LineWriter::new(log, stream);
    let mut terminal: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match stream {
        Stream::Stderr => Box::new(tokio::io::stderr()),
        _ => Box::new(tokio::io::stdout()),
    };
    let mut terminal_open = true;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => {
                let chunk = &buffer[..read];
                // The log comes first: a terminal that went away must not cost a line.
                writer.push(chunk);
                if terminal_open {
                    terminal_open =
                        terminal.write_all(chunk).await.is_ok() && terminal.flush().await.is_ok();
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    writer.finish();
}

impl RunningCommand {
    /// Waits until CMD exits and its output is written (what a process it left keeps
    /// writing after [`DRAIN_DEADLINE`] is not waited for).
    pub(super) async fn wait(&mut self) -> ExitStatus {
        let status = (&mut self.exit).await.unwrap_or(ExitStatus::Signal(9));
        let drained = async {
            for pump in &mut self.pumps {
                let _ = pump.await;
            }
        };
        let _ = tokio::time::timeout(DRAIN_DEADLINE, drained).await;
        status
    }

    /// What stops CMD while [`RunningCommand::wait`] waits for it.
    pub(super) fn stopper(&self) -> Stopper {
        Stopper {
            pid: self.pid,
            marker: self.marker.clone(),
        }
    }

    /// After CMD exited: the processes it left running, killed, and the pumps they
    /// kept busy, ended.
    pub(super) fn kill_leftovers(&mut self) -> Vec<LeftProcess> {
        let mut left = Vec::new();
        // Killing one may orphan another that is then re-parented to us; look again.
        for _ in 0..5 {
            let found = all_with_marker(&self.marker);
            if found.is_empty() {
                break;
            }
            for pid in found {
                let command = crate::runtime::process::command_line(pid);
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok()
                    && !left
                        .iter()
                        .any(|known: &LeftProcess| known.pid == pid as u32)
                {
                    left.push(LeftProcess {
                        pid: pid as u32,
                        command,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for pump in &self.pumps {
            pump.abort();
        }
        left
    }
}

/// Signals CMD and what it started.
#[derive(Debug, Clone)]
pub(super) struct Stopper {
    pid: u32,
    marker: String,
}

impl Stopper {
    /// Sends `signal` to CMD and every process carrying its marker.
    pub(super) fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid as i32), signal);
        for pid in all_with_marker(&self.marker) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

/// What a shell reports for a command that ended with `status`: its code, or 128 + the
/// signal's number.
pub(super) fn shell_code(status: ExitStatus) -> i32 {
    match status {
        ExitStatus::Code(code) => code,
        ExitStatus::Signal(signal) => 128 + signal,
    }
}

/// `SIGKILL` for a signal number.
pub(super) fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|signal| signal.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_as_a_shell_reports_them() {
        assert_eq!(shell_code(ExitStatus::Code(3)), 3);
        assert_eq!(shell_code(ExitStatus::Signal(9)), 137);
        assert_eq!(shell_code(ExitStatus::Signal(2)), 130);
        assert_eq!(signal_name(15), "SIGTERM");
    }

    #[test]
    fn a_missing_program_is_127_and_an_unexecutable_one_126() {
        let missing = not_started("nope", &io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(missing.code, 127);
        assert_eq!(missing.message, "cannot run `nope`: command not found");
        let denied = not_started("./x", &io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(denied.code, 126);
    }
}
