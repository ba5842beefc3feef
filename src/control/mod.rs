//! The control plane: how `fleet ps`, `logs`, `restart`, `down`, the TUI and scripts
//! talk to a running supervisor.
//!
//! # Protocol
//! A Unix stream socket per project, newline-delimited JSON. Each request is one line:
//! `{"version":1,"op":"ps"}`. The server answers with zero or more stream lines
//! (`{"stream":...}`) and then exactly one final line, `{"ok":...}` or
//! `{"error":{"code":"unknown_service","message":"..."}}`. Error codes are part of
//! the interface: they are never renamed or reused (see [`codes`]). The server holds no
//! state of its own: it reads the supervisor's snapshot and forwards commands.
//!
//! # Files
//! The socket and the lock live in the user's runtime dir (`$XDG_RUNTIME_DIR/fleet`,
//! else `/tmp/fleet-<uid>`), named by a hash of the manifest's path: a project's own
//! path may be too long for a socket address (108 bytes). The live supervisor holds an
//! exclusive `flock` on the lock file for its whole life, so a socket whose lock can be
//! taken is stale and is replaced.

pub mod client;
pub mod server;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::Command;

/// Version of the wire protocol; a client and a server of different versions refuse
/// each other with `unsupported_version` instead of misreading each other.
pub const PROTOCOL_VERSION: u32 = 1;

/// Requests longer than this are refused: every legitimate request is a few hundred
/// bytes, and a bound keeps a broken or hostile client from growing the supervisor.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Stable error codes. Never rename or reuse one; add new ones at the end.
pub mod codes {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const REQUEST_TOO_LARGE: &str = "request_too_large";
    pub const UNKNOWN_REQUEST: &str = "unknown_request";
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    pub const UNKNOWN_SERVICE: &str = "unknown_service";
    pub const SHUTTING_DOWN: &str = "shutting_down";
    pub const INVALID_MANIFEST: &str = "invalid_manifest";
    pub const PERMISSION_DENIED: &str = "permission_denied";
    pub const INTERNAL: &str = "internal";
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLine {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Who are you: protocol version, project, supervisor pid.
    Hello,
    /// The current snapshot.
    Ps,
    /// Snapshots (on every change) and events, until the client goes away.
    Subscribe,
    /// Start, stop, restart, redeploy, down, kill, reload.
    Command { command: Command },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// A line from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(serde_json::Value),
    Error(ErrorBody),
    Stream(serde_json::Value),
}

/// What `hello` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub project: String,
    pub manifest: String,
    pub pid: u32,
}

/// The runtime directory for fleet's sockets and locks, created 0700.
pub fn runtime_dir() -> io::Result<PathBuf> {
    let dir = crate::project::runtime_dir(
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
        nix::unistd::geteuid().as_raw(),
    );
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    Ok(dir)
}

/// Where the socket and lock of the project with this manifest live.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub socket: PathBuf,
    pub lock: PathBuf,
}

impl Endpoint {
    pub fn for_manifest(manifest: &Path) -> io::Result<Endpoint> {
        let dir = runtime_dir()?;
        let token = crate::project::project_token(manifest);
        Ok(Endpoint {
            socket: crate::project::socket_file(&dir, &token),
            lock: crate::project::lock_file(&dir, &token),
        })
    }
}

/// The supervisor's lock: held (through the open file) for as long as it lives; the
/// kernel drops it when the process dies, however it dies.
pub struct SupervisorLock {
    _lock: nix::fcntl::Flock<File>,
}

impl SupervisorLock {
    /// Takes the lock, or returns `Ok(None)` if a live supervisor holds it.
    pub fn try_acquire(path: &Path) -> io::Result<Option<SupervisorLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(SupervisorLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, err)) => Err(err.into()),
        }
    }
}
