//! The control plane's client side and its files: how `fleet ps`, `logs`, `restart`,
//! `down`, the TUI and scripts find and talk to a running supervisor. What goes over
//! the socket is [`crate::protocol`]; the server is part of the supervisor
//! (`supervisor::server`), so this module depends on nothing above it.
//!
//! # Files
//! The socket and the lock live in the user's runtime dir (`$XDG_RUNTIME_DIR/fleet`,
//! else `/tmp/fleet-<uid>`), named by a hash of the manifest's path: a project's own
//! path may be too long for a socket address (108 bytes). The live supervisor holds an
//! exclusive `flock` on the lock file for its whole life, so a socket whose lock can be
//! taken is stale and is replaced.

pub mod client;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
        match nix::fcntl::Flock::lock(
            open_lock_file(path)?,
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) {
            Ok(lock) => Ok(Some(SupervisorLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, err)) => Err(err.into()),
        }
    }

    /// Takes the lock, blocking until whoever holds it lets go: the kernel wakes the
    /// caller the moment the supervisor exits, with no polling. Blocks the thread.
    pub fn acquire(path: &Path) -> io::Result<SupervisorLock> {
        nix::fcntl::Flock::lock(open_lock_file(path)?, nix::fcntl::FlockArg::LockExclusive)
            .map(|lock| SupervisorLock { _lock: lock })
            .map_err(|(_, err)| err.into())
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}
