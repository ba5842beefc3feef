//! A run's place on the machine: its folder, its own manifest and identity, and the
//! sweep of earlier runs that died together with their keeper.
//!
//! # Identity
//! A fleet's socket, lock and `FLEET_INSTANCE` markers are keyed by its manifest's
//! path, its files live in the `.fleet/` beside it, and its Docker objects carry its
//! project name. A run gets all of these of its own by running the project's manifest
//! under another path, `<artifacts>/fleet.toml`, where a copy is written (rendered
//! after interpolation, every path absolute) for the clients: `fleet -f
//! <artifacts>/fleet.toml ps|logs|exec|down` reach the run and never the developer's
//! fleet of the same folder, which keeps its own socket, state, network and named
//! volumes. Two runs never share a folder, so never an identity.
//!
//! # Layout of the folder
//! `fleet.toml` (the run's manifest), `.fleet/` (the pid journal while it runs, and
//! `.fleet/logs`, a link to `logs/`), `logs/<name>.log` (every instance's whole log),
//! `cmd.log`, `merged.log`, `summary.json`. A folder given with `--artifacts` must be
//! new, empty, or hold only what an earlier run wrote there, which is replaced.

use std::io;
use std::path::{Path, PathBuf};

use crate::control::{Endpoint, SupervisorLock};
use crate::manifest::{Manifest, ServiceKind};

/// What a run writes into its folder; a folder holding anything else is not taken.
const RUN_ENTRIES: &[&str] = &[
    "fleet.toml",
    ".fleet",
    "logs",
    "cmd.log",
    "merged.log",
    "summary.json",
];

/// Where the default folders go, under the project's `.fleet/`.
const RUNS_DIR: &str = "runs";

/// A claimed run folder and the identity that goes with it. Holding it holds the run's
/// lock, so no other run can take the same folder.
pub(super) struct Place {
    /// The artifacts folder, absolute.
    pub(super) dir: PathBuf,
    /// `<dir>/fleet.toml`: the path the run's fleet is known by.
    pub(super) manifest_path: PathBuf,
    /// `<dir>/.fleet`: the pid journal, and the log link.
    pub(super) state_dir: PathBuf,
    /// The run's Docker project: `<project>-run-<token>`.
    pub(super) run_project: String,
    pub(super) endpoint: Endpoint,
    pub(super) lock: SupervisorLock,
}

/// Why a folder cannot be the run's.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("{} holds other files than a run's ({}): give --artifacts a new or empty folder", dir.display(), found.join(", "))]
    NotARunFolder { dir: PathBuf, found: Vec<String> },
    #[error("another `fleet run` is using {}", .0.display())]
    InUse(PathBuf),
    #[error("cannot prepare {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> PlaceError + '_ {
    move |source| PlaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Place {
    /// Takes `chosen` (made absolute against `cwd`), or a new `.fleet/runs/<time>/`
    /// beside the manifest, as the run's folder, and lays it out.
    pub(super) fn claim(
        manifest: &Manifest,
        chosen: Option<&Path>,
        cwd: &Path,
        started_at_ms: u64,
    ) -> Result<Place, PlaceError> {
        let (dir, lock, endpoint) = match chosen {
            Some(dir) => {
                let dir = if dir.is_absolute() {
                    dir.to_path_buf()
                } else {
                    cwd.join(dir)
                };
                let (lock, endpoint) =
                    lock_of(&dir)?.ok_or_else(|| PlaceError::InUse(dir.clone()))?;
                clear_earlier_run(&dir)?;
                std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
                (dir, lock, endpoint)
            }
            None => {
                let runs = crate::project::state_dir(&manifest.root).join(RUNS_DIR);
                std::fs::create_dir_all(&runs).map_err(io_error(&runs))?;
                let stamp = folder_stamp(started_at_ms);
                let mut attempt = 1;
                loop {
                    let name = match attempt {
                        1 => stamp.clone(),
                        n => format!("{stamp}-{n}"),
                    };
                    let dir = runs.join(name);
                    // create_dir, not _all: it fails when another run took the name.
                    match std::fs::create_dir(&dir) {
                        Ok(()) => {
                            let (lock, endpoint) =
                                lock_of(&dir)?.ok_or_else(|| PlaceError::InUse(dir.clone()))?;
                            break (dir, lock, endpoint);
                        }
                        Err(err)
                            if err.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 =>
                        {
                            attempt += 1;
                        }
                        Err(err) => return Err(io_error(&dir)(err)),
                    }
                }
            }
        };
        let state_dir = crate::project::state_dir(&dir);
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(io_error(&logs))?;
        std::fs::create_dir_all(&state_dir).map_err(io_error(&state_dir))?;
        // The clients of the run (`fleet -f <dir>/fleet.toml logs`) look for the logs in
        // `.fleet/logs`; the link lets the services write them where people look.
        let link = crate::project::logs_in(&state_dir);
        std::os::unix::fs::symlink("../logs", &link).map_err(io_error(&link))?;
        let manifest_path = dir.join(crate::manifest::MANIFEST_FILE);
        let token = crate::project::project_token(&manifest_path);
        let run_project = format!("{}-run-{token}", manifest.project.name);
        Ok(Place {
            dir,
            manifest_path,
            state_dir,
            run_project,
            endpoint,
            lock,
        })
    }

    /// The manifest the run's supervisor runs: the project's, under the run's path and
    /// project name, watching nothing, keeping whole logs, with private named volumes
    /// and, with `no_build`, no build steps. Its root stays the project's folder, so
    /// the services' paths and probes are those of `fleet up`.
    pub(super) fn manifest(&self, manifest: &Manifest, no_build: bool) -> Manifest {
        let mut run = manifest.clone();
        run.path = self.manifest_path.clone();
        run.project.name = self.run_project.clone();
        // A run keeps every line: no log reaches this size (the largest a TOML integer
        // can say, so the written copy says it too).
        run.project.log_max_size = i64::MAX as u64;
        for spec in &mut run.services {
            spec.watch.clear();
            spec.ignore.clear();
            match &mut spec.kind {
                ServiceKind::Process(process) => {
                    if no_build {
                        process.build = None;
                    }
                }
                ServiceKind::Container(container) => {
                    if no_build {
                        container.build = None;
                    }
                    for volume in &mut container.volumes {
                        *volume = private_volume(volume, &self.run_project);
                    }
                }
            }
        }
        run
    }

    /// Writes the run's manifest as `<dir>/fleet.toml`, for the clients.
    pub(super) fn write_manifest(&self, run: &Manifest) -> Result<(), PlaceError> {
        let text = format!(
            "# The manifest of a `fleet run`: `fleet -f {} ps|logs|exec|down` reach that run.\n{}",
            self.manifest_path.display(),
            crate::manifest::render::to_toml(run)
        );
        std::fs::write(&self.manifest_path, text).map_err(io_error(&self.manifest_path))
    }

    /// The run's log folder as the supervisor writes it (through the link).
    pub(super) fn log_dir(&self) -> PathBuf {
        crate::project::logs_in(&self.state_dir)
    }
}

/// `name:/path[:ro]` becomes `<run project>-name:/path[:ro]`: a run gets fresh named
/// volumes of its own, removed at its end, and never writes into the developer's
/// (two databases on one data folder would corrupt it). Binds and anonymous volumes
/// stay as they are.
fn private_volume(volume: &str, run_project: &str) -> String {
    match volume.split_once(':') {
        Some((source, rest)) if !source.is_empty() && !source.starts_with('/') => {
            format!("{run_project}-{source}:{rest}")
        }
        _ => volume.to_string(),
    }
}

/// The run lock of `dir`, or `None` when a live run holds it.
fn lock_of(dir: &Path) -> Result<Option<(SupervisorLock, Endpoint)>, PlaceError> {
    let manifest_path = dir.join(crate::manifest::MANIFEST_FILE);
    let endpoint = Endpoint::for_manifest(&manifest_path).map_err(io_error(&manifest_path))?;
    let lock = SupervisorLock::try_acquire(&endpoint.lock).map_err(io_error(&endpoint.lock))?;
    Ok(lock.map(|lock| (lock, endpoint)))
}

/// Empties a chosen folder of what an earlier run wrote (after sweeping what that run
/// left running, if it died with its keeper); refuses a folder with anything else.
fn clear_earlier_run(dir: &Path) -> Result<(), PlaceError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error(dir)(err)),
    };
    let mut ours = Vec::new();
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if RUN_ENTRIES.contains(&name.as_str()) {
            ours.push(entry.path());
        } else {
            found.push(name);
        }
    }
    if !found.is_empty() {
        found.sort();
        return Err(PlaceError::NotARunFolder {
            dir: dir.to_path_buf(),
            found,
        });
    }
    sweep_dead_run(dir);
    for path in ours {
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(err) => Err(err),
        };
        removed.map_err(io_error(&path))?;
    }
    Ok(())
}

/// Whether a run's pid journal is still in `dir`: the run did not end cleanly (or is
/// running).
fn has_journal(dir: &Path) -> bool {
    std::fs::read_dir(crate::project::state_dir(dir)).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(crate::project::JOURNAL_PREFIX)
        })
    })
}

/// Kills what a run in `dir` left if it died together with its keeper (its journal
/// is still there; the caller made sure that no live run holds the folder). Returns
/// what it killed.
fn sweep_dead_run(dir: &Path) -> crate::runtime::reaper::Swept {
    if !has_journal(dir) {
        return crate::runtime::reaper::Swept::default();
    }
    let manifest_path = dir.join(crate::manifest::MANIFEST_FILE);
    let token = crate::project::project_token(&manifest_path);
    crate::runtime::reaper::sweep_previous(
        &crate::project::state_dir(dir),
        &crate::project::project_marker(&token),
    )
}

/// Sweeps the processes of earlier runs under `.fleet/runs/` that died with their
/// keeper (a `kill -9` of the whole process group, an OOM kill). The keeper normally
/// does this within milliseconds; this is the second line. Container leftovers of such
/// a run carry its own project name and are listed by `docker ps --filter
/// label=fleet.project`.
pub(super) fn sweep_dead_runs(manifest: &Manifest) -> crate::runtime::reaper::Swept {
    let runs = crate::project::state_dir(&manifest.root).join(RUNS_DIR);
    let mut swept = crate::runtime::reaper::Swept::default();
    let Ok(entries) = std::fs::read_dir(&runs) else {
        return swept;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        // Most folders are runs that ended cleanly: no journal, no lock to look at.
        if !has_journal(&dir) {
            continue;
        }
        // A live run holds its lock; taking it here is only for this check.
        let Ok(Some(_lock)) = lock_of(&dir) else {
            continue;
        };
        let found = sweep_dead_run(&dir);
        swept.groups += found.groups;
        swept.processes += found.processes;
    }
    swept
}

/// `2026-11-26T062508.123Z`: sorts by time, and has no `:` (which some CI artifact
/// stores refuse in a path).
fn folder_stamp(ms: u64) -> String {
    crate::logs::format_timestamp(ms).replace(':', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_volumes_become_the_runs_own_and_binds_stay() {
        assert_eq!(
            private_volume("pgdata:/var/lib/postgresql", "shop-run-ab12"),
            "shop-run-ab12-pgdata:/var/lib/postgresql"
        );
        assert_eq!(
            private_volume("cache:/cache:ro", "p-run-1"),
            "p-run-1-cache:/cache:ro"
        );
        assert_eq!(private_volume("/srv/data:/data", "p"), "/srv/data:/data");
        assert_eq!(private_volume("/anonymous", "p"), "/anonymous");
    }

    #[test]
    fn folder_names_sort_by_time_without_colons() {
        assert_eq!(folder_stamp(1_764_138_308_123), "2025-11-26T062508.123Z");
    }

    #[test]
    fn a_chosen_folder_with_other_files_is_refused_and_an_earlier_runs_is_replaced(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("summary.json"), "{}")?;
        std::fs::create_dir(dir.path().join("logs"))?;
        std::fs::write(dir.path().join("logs/web.log"), "x")?;
        clear_earlier_run(dir.path())?;
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        std::fs::write(dir.path().join("notes.txt"), "mine")?;
        std::fs::write(dir.path().join("summary.json"), "{}")?;
        let refused = clear_earlier_run(dir.path());
        assert!(
            matches!(&refused, Err(PlaceError::NotARunFolder { found, .. }) if found == &["notes.txt"]),
            "{refused:?}"
        );
        assert!(
            dir.path().join("summary.json").exists(),
            "nothing is removed"
        );
        Ok(())
    }
}
