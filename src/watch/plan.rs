//! The watch plan: which folders carry an inotify watch, and which changed paths
//! belong to which service.
//!
//! Owns the compiled globs of each service and the walk. Reads folders (to walk them)
//! but never adds or removes a watch, and knows nothing of time: the watcher thread
//! applies the plan, `debounce` decides when a change becomes a redeploy.
//!
//! # Theory of operation
//! **Matching.** Each service's `watch` globs are compiled into one [`GlobSet`] matched
//! against paths relative to the manifest's folder (absolute paths outside it are
//! matched as they are). A pattern without glob characters also matches everything
//! under it, so `examples/cache` names the folder and `examples/ratings.rs` the file.
//! `ignore` globs plus [`BUILTIN_IGNORES`] exclude; an ignore pattern without `/`
//! matches at any depth (as in `.gitignore`), and every ignore pattern also covers
//! what lies under the path it names.
//!
//! **What is watched.** Each watch pattern's literal prefix is its base folder
//! (`examples/common/**` -> `examples/common`, `examples/*.rs` -> `examples`), walked
//! recursively when the rest of the pattern can reach below it. The walk is done here
//! rather than by notify's recursive mode because inotify costs one watch per folder
//! and `target/` alone can hold thousands: the walk prunes ignored folders, so every
//! inotify watch is on one folder, non-recursively. A base that does not exist yet is
//! stood in for by its nearest existing parent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use super::{WatchError, WatchSpec};

/// Always excluded, for every service, matched at any depth: version control, build
/// output, fleet's own logs and state, and the scratch files editors write beside the
/// file being saved (vim's swap files and its `4913` write test, backup files ending
/// in `~`, emacs lock and autosave files, JetBrains' safe-write copies).
pub const BUILTIN_IGNORES: &[&str] = &[
    ".git",
    "target",
    ".fleet",
    "*.swp",
    "*.swx",
    "*~",
    "4913",
    ".#*",
    "#*#",
    "*___jb_tmp___",
    "*___jb_old___",
];

/// One service's compiled globs and the folders they need watched.
#[derive(Debug)]
pub(super) struct ServiceWatch {
    pub(super) spec: WatchSpec,
    watch: GlobSet,
    ignore: GlobSet,
    pub(super) bases: Vec<WatchBase>,
}

/// A folder a watch pattern needs, and whether the pattern reaches below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WatchBase {
    pub(super) dir: PathBuf,
    pub(super) recursive: bool,
}

impl ServiceWatch {
    pub(super) fn compile(root: &Path, spec: &WatchSpec) -> Result<ServiceWatch, WatchError> {
        let invalid = |pattern: &str, source| WatchError::InvalidGlob {
            service: spec.service.clone(),
            pattern: pattern.to_string(),
            source,
        };
        let mut watch = GlobSetBuilder::new();
        let mut bases = Vec::new();
        for raw in &spec.watch {
            let pattern = normalize_pattern(root, raw).unwrap_or_else(|| "**".to_string());
            let components: Vec<&str> = pattern.split('/').collect();
            let literal_len = components
                .iter()
                .take_while(|component| is_literal(component))
                .count();
            if literal_len == components.len() {
                // Names a file or a folder; which one may change while fleet runs.
                watch.add(glob(&pattern).map_err(|source| invalid(raw, source))?);
                watch.add(glob(&format!("{pattern}/**")).map_err(|source| invalid(raw, source))?);
                let path = Path::new(&pattern);
                bases.push(WatchBase {
                    dir: root.join(path),
                    recursive: true,
                });
                bases.push(WatchBase {
                    dir: join_under(root, path.parent()),
                    recursive: false,
                });
            } else {
                watch.add(glob(&pattern).map_err(|source| invalid(raw, source))?);
                let rest = &components[literal_len..];
                let reaches_below = rest.len() > 1 || rest.iter().any(|part| part.contains("**"));
                let prefix = components[..literal_len].join("/");
                bases.push(WatchBase {
                    dir: join_under(root, Some(Path::new(&prefix))),
                    recursive: reaches_below,
                });
            }
        }
        let mut ignore = GlobSetBuilder::new();
        let user = spec.ignore.iter().map(String::as_str);
        for raw in BUILTIN_IGNORES.iter().copied().chain(user) {
            let Some(pattern) = normalize_pattern(root, raw) else {
                continue;
            };
            let base = if pattern.contains('/') {
                pattern
            } else {
                format!("**/{pattern}")
            };
            ignore.add(glob(&base).map_err(|source| invalid(raw, source))?);
            if !base.ends_with("/**") {
                ignore.add(glob(&format!("{base}/**")).map_err(|source| invalid(raw, source))?);
            }
        }
        let build = |set: GlobSetBuilder| {
            set.build()
                .map_err(|source| invalid(&spec.watch.join(", "), source))
        };
        Ok(ServiceWatch {
            spec: spec.clone(),
            watch: build(watch)?,
            ignore: build(ignore)?,
            bases: dedup(bases),
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.spec.service
    }

    pub(super) fn matches(&self, relative: &Candidate<'_>) -> bool {
        self.watch.is_match_candidate(relative) && !self.ignore.is_match_candidate(relative)
    }

    pub(super) fn ignores(&self, root: &Path, path: &Path) -> bool {
        self.ignore.is_match(relative_to(root, path))
    }
}

fn glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    // `*` stays within one folder, as in a shell and in .gitignore.
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// `./a/b/` -> `a/b` (`a/b\/` too); an absolute path under `root` becomes relative.
/// `None` for a pattern that names the root itself.
fn normalize_pattern(root: &Path, raw: &str) -> Option<String> {
    let mut pattern = raw.trim();
    if let Ok(inside) = Path::new(pattern).strip_prefix(root) {
        pattern = inside.to_str().unwrap_or(pattern);
    }
    while let Some(rest) = pattern.strip_prefix("./") {
        pattern = rest;
    }
    let mut pattern = pattern.trim_end_matches('/');
    // `src\/` escapes its last slash: the backslash goes with it, or it would be left
    // dangling. An odd run of backslashes at the end holds such an escape; an even run
    // is escaped backslashes.
    while (pattern.len() - pattern.trim_end_matches('\\').len()) % 2 == 1 {
        pattern = pattern[..pattern.len() - 1].trim_end_matches('/');
    }
    if pattern.is_empty() || pattern == "." {
        None
    } else {
        Some(pattern.to_string())
    }
}

fn is_literal(component: &str) -> bool {
    !component.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// `root/relative`, without the trailing `/` that joining an empty path would add.
fn join_under(root: &Path, relative: Option<&Path>) -> PathBuf {
    match relative {
        Some(path) if !path.as_os_str().is_empty() => root.join(path),
        _ => root.to_path_buf(),
    }
}

pub(super) fn relative_to<'a>(root: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

fn dedup(bases: Vec<WatchBase>) -> Vec<WatchBase> {
    let mut unique: Vec<WatchBase> = Vec::with_capacity(bases.len());
    for base in bases {
        if !unique.contains(&base) {
            unique.push(base);
        }
    }
    unique
}

/// Every folder that must carry a watch for `services` as the disk is now.
pub(super) fn desired_dirs(root: &Path, services: &[ServiceWatch]) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for service in services {
        for base in &service.bases {
            if base.dir.is_dir() {
                if service.ignores(root, &base.dir) {
                    continue;
                }
                if base.recursive {
                    walk_dirs(root, service, &base.dir, &mut dirs);
                } else {
                    dirs.insert(base.dir.clone());
                }
            } else if let Some(stand_in) = nearest_existing_dir(&base.dir) {
                dirs.insert(stand_in);
            }
        }
    }
    dirs
}

/// `base` and every folder below it that `service` does not ignore. Symlinked folders
/// are not followed, so a link cycle cannot become a watch cycle.
fn walk_dirs(root: &Path, service: &ServiceWatch, base: &Path, dirs: &mut BTreeSet<PathBuf>) {
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // A folder that vanished or cannot be read is skipped: it is normal during a
        // branch switch, and adding its watch reports what is wrong with it.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                let path = entry.path();
                if is_dir && !service.ignores(root, &path) {
                    stack.push(path);
                }
            }
        }
        dirs.insert(dir);
    }
}

fn nearest_existing_dir(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|ancestor| ancestor.is_dir())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use super::super::test_support::{paths, spec, TestResult};

    fn compiled(watch: &[&str], ignore: &[&str]) -> Result<ServiceWatch, WatchError> {
        ServiceWatch::compile(Path::new("/project"), &spec("svc", watch, ignore))
    }

    /// Found by the `globs` fuzz target: `fleet check` accepts `src\/` (an escaped
    /// slash), but trimming the trailing `/` left a dangling `\` that the watcher
    /// refused, so `fleet up` failed on a manifest `fleet check` had passed.
    #[test]
    fn a_trailing_escaped_slash_names_the_folder() -> TestResult {
        let service = compiled(&["src\\/"], &["src\\/tmp\\/\\/"])?;
        let matches = |path: &str| service.matches(&Candidate::new(path));
        assert!(matches("src/main.rs"));
        assert!(!matches("src/tmp/x"));
        assert!(!matches("other/main.rs"));
        Ok(())
    }

    #[test]
    fn literal_patterns_match_the_file_or_everything_in_the_folder() -> TestResult {
        let service = compiled(&["examples/ratings.rs", "examples/cache"], &[])?;
        let matches = |path: &str| service.matches(&Candidate::new(path));
        assert!(matches("examples/ratings.rs"));
        assert!(matches("examples/cache/a/b.bin"));
        assert!(matches("examples/cache"));
        assert!(!matches("examples/ratings.rs.tmp"));
        assert!(!matches("examples/other.rs"));
        Ok(())
    }

    #[test]
    fn star_stays_within_one_folder() -> TestResult {
        let service = compiled(&["examples/*.rs", "examples/common/**"], &[])?;
        let matches = |path: &str| service.matches(&Candidate::new(path));
        assert!(matches("examples/users.rs"));
        assert!(!matches("examples/sub/users.rs"));
        assert!(matches("examples/common/deep/er/x.rs"));
        Ok(())
    }

    #[test]
    fn builtin_and_user_ignores_exclude_at_any_depth() -> TestResult {
        let service = compiled(&["**"], &["**/*.tmp", "generated", "docs/drafts"])?;
        let matches = |path: &str| service.matches(&Candidate::new(path));
        assert!(matches("src/main.rs"));
        for ignored in [
            "target/debug/fleet",
            "crates/a/target/x",
            ".git/index",
            ".fleet/logs/api.log",
            "src/.main.rs.swp",
            "src/main.rs~",
            "src/4913",
            "src/.#main.rs",
            "src/a.tmp",
            "src/generated/x.rs",
            "generated",
            "docs/drafts/a.md",
        ] {
            assert!(!matches(ignored), "{ignored} should be ignored");
        }
        assert!(matches("docs/a.md"));
        assert!(matches("src/targets.rs"));
        Ok(())
    }

    #[test]
    fn watched_folders_come_from_the_literal_prefix() -> TestResult {
        let service = compiled(
            &[
                "examples/ratings.rs",
                "examples/common/**",
                "src/*.rs",
                "**/*.toml",
            ],
            &[],
        )?;
        let bases: Vec<(String, bool)> = service
            .bases
            .iter()
            .map(|base| (base.dir.display().to_string(), base.recursive))
            .collect();
        let expected = [
            ("/project/examples/ratings.rs", true),
            ("/project/examples", false),
            ("/project/examples/common", true),
            ("/project/src", false),
            ("/project", true),
        ];
        let expected: Vec<(String, bool)> = expected
            .iter()
            .map(|(dir, recursive)| (dir.to_string(), *recursive))
            .collect();
        assert_eq!(bases, expected);
        Ok(())
    }

    #[test]
    fn patterns_are_normalized_relative_to_the_root() {
        let root = Path::new("/project");
        assert_eq!(normalize_pattern(root, "./src/"), Some("src".into()));
        assert_eq!(
            normalize_pattern(root, "/project/src/**"),
            Some("src/**".into())
        );
        assert_eq!(normalize_pattern(root, "."), None);
        assert_eq!(
            normalize_pattern(root, "/elsewhere/x"),
            Some("/elsewhere/x".into())
        );
    }

    #[test]
    fn the_walk_skips_ignored_folders() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        for folder in ["src/a/b", "target/debug/deps", ".git/objects", "src/gen/x"] {
            fs::create_dir_all(root.join(folder))?;
        }
        let service = ServiceWatch::compile(root, &spec("svc", &["**/*.rs"], &["src/gen"]))?;
        let dirs = desired_dirs(root, &[service]);
        let relative: Vec<PathBuf> = dirs
            .iter()
            .map(|dir| relative_to(root, dir).to_path_buf())
            .collect();
        assert_eq!(relative, paths(&["", "src", "src/a", "src/a/b"]));
        Ok(())
    }

    #[test]
    fn a_missing_folder_is_stood_in_for_by_its_nearest_parent() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("examples"))?;
        let service = ServiceWatch::compile(root, &spec("svc", &["examples/common/deep/**"], &[]))?;
        let dirs: Vec<PathBuf> = desired_dirs(root, &[service]).into_iter().collect();
        assert_eq!(dirs, vec![root.join("examples")]);
        Ok(())
    }
}
