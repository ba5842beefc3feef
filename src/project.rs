//! Who a project is on this machine and where its files live: the project token, the
//! run id, the `FLEET_INSTANCE` marker format, and the paths of the control socket,
//! the lock, the state dir, the logs and the pid journals.
//!
//! A leaf: it depends on std alone, so every other module may use it, and the
//! supervisor, the keeper, the sweep and every client agree on these names because
//! they compute them in one place. It creates nothing; callers make the folders.
//!
//! # Markers
//! Every process fleet starts carries `FLEET_INSTANCE=<token>/<run>/<service>/<tag>/`.
//! Matching is by prefix: `<token>/` finds every instance the project ever started
//! (the startup sweep), `<token>/<run>/` those of one supervisor run (its keeper), and
//! the full marker one instance (its stop). The trailing `/` keeps `api` from matching
//! `api2`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The folder beside the manifest that holds fleet's own files.
pub const STATE_DIR: &str = ".fleet";

/// Pid journals are `.fleet/pids-<run>`: one per supervisor run, so the keeper of a
/// run that just ended never touches the groups of the run that replaced it.
pub const JOURNAL_PREFIX: &str = "pids-";

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

/// Identifies a project by its manifest's path: 12 hex digits, short enough for a
/// socket address (108 bytes) whatever the project's own path.
pub fn project_token(manifest: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    format!(
        "{:012x}",
        stable_hash(manifest.as_os_str().as_bytes()) & 0xffff_ffff_ffff
    )
}

/// A new supervisor run's id: its pid and the low bits of the clock, distinct across
/// runs of one project (a reused pid comes back at another time).
pub fn new_run_id() -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    run_id(std::process::id(), now_ms)
}

/// The run id of the supervisor with `pid` started at `now_ms`.
pub fn run_id(pid: u32, now_ms: u64) -> String {
    format!("{pid:x}{:x}", now_ms & 0xffff_ffff)
}

/// The marker prefix of every instance the project ever started.
pub fn project_marker(token: &str) -> String {
    format!("{token}/")
}

/// The marker prefix of every instance of one supervisor run.
pub fn run_marker(token: &str, run_id: &str) -> String {
    format!("{token}/{run_id}/")
}

/// The marker of one instance (`tag` is its generation, or `build3`, `probe7`).
pub fn instance_marker(run_marker: &str, service: &str, tag: &str) -> String {
    format!("{run_marker}{service}/{tag}/")
}

/// `.fleet/` beside the manifest.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR)
}

/// `.fleet/logs/`: one file per service.
pub fn log_dir(root: &Path) -> PathBuf {
    logs_in(&state_dir(root))
}

/// The log folder inside a state dir.
pub fn logs_in(state_dir: &Path) -> PathBuf {
    state_dir.join("logs")
}

/// The log file of one service.
pub fn log_file(log_dir: &Path, service: &str) -> PathBuf {
    log_dir.join(format!("{service}.log"))
}

/// Where a detached supervisor's own output goes.
pub fn supervisor_log(state_dir: &Path) -> PathBuf {
    state_dir.join("supervisor.log")
}

/// The pid journal of one run.
pub fn journal_file(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join(format!("{JOURNAL_PREFIX}{run_id}"))
}

/// The folder for every project's socket and lock: `$XDG_RUNTIME_DIR/fleet` when that
/// is set (a per-user tmpfs the login manager made 0700), else `/tmp/fleet-<euid>`.
pub fn runtime_dir(xdg_runtime_dir: Option<&OsStr>, euid: u32) -> PathBuf {
    match xdg_runtime_dir.filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("fleet"),
        None => PathBuf::from(format!("/tmp/fleet-{euid}")),
    }
}

/// The control socket of the project with `token`.
pub fn socket_file(runtime_dir: &Path, token: &str) -> PathBuf {
    runtime_dir.join(format!("{token}.sock"))
}

/// The lock the live supervisor of the project with `token` holds.
pub fn lock_file(runtime_dir: &Path, token: &str) -> PathBuf {
    runtime_dir.join(format!("{token}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_stable_across_builds() {
        // FNV-1a's published test vector: a token that changed would orphan the socket
        // of a fleet started by an older binary.
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        let token = project_token(Path::new("/home/me/shop/fleet.toml"));
        assert_eq!(token.len(), 12);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(token, project_token(Path::new("/home/me/shop/fleet.toml")));
        assert_ne!(token, project_token(Path::new("/home/me/shop2/fleet.toml")));
    }

    #[test]
    fn markers_nest_by_prefix() {
        let project = project_marker("abc");
        let run = run_marker("abc", "1f2e");
        let instance = instance_marker(&run, "api", "7");
        assert_eq!(project, "abc/");
        assert_eq!(run, "abc/1f2e/");
        assert_eq!(instance, "abc/1f2e/api/7/");
        assert!(instance.starts_with(&run) && run.starts_with(&project));
        assert!(!instance_marker(&run, "api2", "7").starts_with(&instance_marker(&run, "api", "")));
    }

    #[test]
    fn run_ids_are_pid_then_clock_in_hex() {
        assert_eq!(run_id(0x4242, 0x1_0000_00ff), "4242ff");
    }

    #[test]
    fn paths_live_where_the_docs_say() {
        let root = Path::new("/p");
        assert_eq!(state_dir(root), Path::new("/p/.fleet"));
        assert_eq!(log_dir(root), Path::new("/p/.fleet/logs"));
        assert_eq!(
            log_file(&log_dir(root), "api"),
            Path::new("/p/.fleet/logs/api.log")
        );
        assert_eq!(
            supervisor_log(&state_dir(root)),
            Path::new("/p/.fleet/supervisor.log")
        );
        assert_eq!(
            journal_file(&state_dir(root), "ab"),
            Path::new("/p/.fleet/pids-ab")
        );
        let dir = runtime_dir(Some(OsStr::new("/run/user/1000")), 1000);
        assert_eq!(dir, Path::new("/run/user/1000/fleet"));
        assert_eq!(
            runtime_dir(Some(OsStr::new("")), 7),
            Path::new("/tmp/fleet-7")
        );
        assert_eq!(runtime_dir(None, 7), Path::new("/tmp/fleet-7"));
        assert_eq!(socket_file(&dir, "abc"), dir.join("abc.sock"));
        assert_eq!(lock_file(&dir, "abc"), dir.join("abc.lock"));
    }
}
