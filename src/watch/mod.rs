//! File watching: one notify watcher for the whole fleet that turns saved files into
//! [`WatchEvent::Redeploy`] for exactly the services whose `watch` globs match.
//!
//! Owns: the inotify watches, the path -> service routing, the per-service debounce
//! and the redeploy-loop detector. It must not touch service state or redeploy
//! anything itself: the supervisor turns its events into `Command::Redeploy`, and a
//! build that is still running when the next Redeploy arrives is cancelled by the
//! service's state machine (the latest source wins).
//!
//! This file is the watcher thread and its glue to notify; `plan` decides which
//! folders are watched and which paths belong to which service (matching, the walk),
//! and `debounce` when a burst of changes becomes a Redeploy and when redeploys are a
//! loop. Both are pure apart from `plan` reading folders.
//!
//! # Theory of operation
//! **The loop.** One thread owns all of the state: the notify watcher, the set of
//! watched folders, the `Debouncer` and the `RedeployLoopDetector`. notify's
//! callback (on notify's own thread) and the [`Watcher`] handle only send it messages.
//! The thread blocks on its inbox until the earliest debounce deadline, drains what
//! arrived, applies it, then emits the bursts that are due. It is a plain thread, not
//! a tokio task, because adding an inotify watch is a blocking round trip to notify's
//! thread, and a blocking receive with a deadline needs no polling. It ends when the
//! [`Watcher`] is dropped or nobody listens to its events any more.
//!
//! **Keeping the watches current.** When a folder appears or disappears on the way to
//! a base or inside a walked tree (see `plan`), the plan is resolved again
//! (`WatchLoop::sync_watches`); what is inside a folder that just appeared counts as
//! changed, because files written there before its watch existed raised no event.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use globset::Candidate;
use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedSender;

use crate::manifest::ServiceSpec;

use debounce::{pause_reason, Debouncer, LoopVerdict, RedeployLoopDetector};
use plan::{desired_dirs, relative_to, ServiceWatch};

mod debounce;
mod plan;
#[cfg(test)]
mod test_support;

pub use debounce::{DEFAULT_DEBOUNCE, MAX_BURST, REDEPLOY_LOOP_LIMIT, REDEPLOY_LOOP_WINDOW};
pub use plan::BUILTIN_IGNORES;

/// How many messages are applied before due bursts are emitted, so a flood of file
/// events cannot hold back redeploys that are already due.
const MAX_MESSAGES_PER_TURN: usize = 1024;

/// What one service watches, as written in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    pub service: String,
    /// Globs relative to the manifest's folder.
    pub watch: Vec<String>,
    /// Globs excluded from `watch`, in addition to [`BUILTIN_IGNORES`].
    pub ignore: Vec<String>,
}

impl From<&ServiceSpec> for WatchSpec {
    fn from(service: &ServiceSpec) -> Self {
        WatchSpec {
            service: service.name.clone(),
            watch: service.watch.clone(),
            ignore: service.ignore.clone(),
        }
    }
}

/// Compiles `spec`'s globs as [`Watcher::start`] does, without watching anything, and
/// says whether a change to `path` (relative to `root`) would redeploy the service.
/// For `crate::fuzzing`: every glob the manifest accepts must compile here.
pub(crate) fn would_redeploy(
    root: &Path,
    spec: &WatchSpec,
    path: &Path,
) -> Result<bool, WatchError> {
    let service = ServiceWatch::compile(root, spec)?;
    Ok(service.matches(&Candidate::new(path)))
}

/// What the watcher tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Files of `service` changed and have been quiet for the debounce time. `paths`
    /// are sorted, relative to the manifest's folder (absolute when outside it), and
    /// include removed files. Empty when file events were lost (inotify queue
    /// overflow) and anything may have changed.
    Redeploy {
        service: String,
        paths: Vec<PathBuf>,
    },
    /// The service kept redeploying itself through file changes; its changes are
    /// ignored until [`Watcher::resume`].
    Paused { service: String, reason: String },
    /// Watching went wrong at run time (a folder that cannot be watched, lost events).
    /// Watching goes on for everything else.
    Error { message: String },
}

/// Why watching could not start.
#[derive(Debug)]
pub enum WatchError {
    InvalidGlob {
        service: String,
        pattern: String,
        source: globset::Error,
    },
    /// The manifest folder has no absolute form (the current folder is gone).
    Root(io::Error),
    /// The inotify instance could not be created.
    Notify(notify::Error),
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    Thread(io::Error),
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchError::InvalidGlob {
                service,
                pattern,
                source,
            } => write!(
                f,
                "service `{service}`: invalid glob `{pattern}`: {}",
                source.kind()
            ),
            WatchError::Root(source) => write!(f, "cannot resolve the manifest folder: {source}"),
            WatchError::Notify(source) => write!(f, "cannot start watching files: {source}"),
            WatchError::Watch { path, source } => {
                write!(f, "{}", describe_watch_failure(path, source))
            }
            WatchError::Thread(source) => write!(f, "cannot start the file watcher: {source}"),
        }
    }
}

impl std::error::Error for WatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WatchError::InvalidGlob { source, .. } => Some(source),
            WatchError::Root(source) | WatchError::Thread(source) => Some(source),
            WatchError::Notify(source) | WatchError::Watch { source, .. } => Some(source),
        }
    }
}

fn describe_watch_failure(path: &Path, source: &notify::Error) -> String {
    match source.kind {
        notify::ErrorKind::MaxFilesWatch => format!(
            "cannot watch {}: the inotify watch limit is reached; add large folders to the \
             service's `ignore`, or raise the limit (sysctl fs.inotify.max_user_watches)",
            path.display()
        ),
        _ => format!("cannot watch {}: {source}", path.display()),
    }
}

/// The handle to the watcher thread. Dropping it stops watching.
#[derive(Debug)]
pub struct Watcher {
    inbox: mpsc::Sender<Message>,
}

impl Watcher {
    /// Watches the files of every service in `specs`; `root` is the manifest's folder.
    /// Every watch is in place when this returns. Sends events on `events`. Returns
    /// `Ok(None)` if no service watches anything.
    pub fn start(
        root: &Path,
        specs: Vec<WatchSpec>,
        debounce: Duration,
        events: UnboundedSender<WatchEvent>,
    ) -> Result<Option<Watcher>, WatchError> {
        if specs.iter().all(|spec| spec.watch.is_empty()) {
            return Ok(None);
        }
        let root = std::path::absolute(root).map_err(WatchError::Root)?;
        let services = specs
            .iter()
            .filter(|spec| !spec.watch.is_empty())
            .map(|spec| ServiceWatch::compile(&root, spec))
            .collect::<Result<Vec<_>, _>>()?;

        let (inbox, messages) = mpsc::channel();
        let from_notify = inbox.clone();
        // Runs on notify's thread: hand over and return. The receiver lives as long
        // as the loop, which owns the notify watcher, so a failed send only happens
        // while both are being dropped.
        let notify_watcher = notify::recommended_watcher(move |event| {
            let _ = from_notify.send(Message::Files(event));
        })
        .map_err(WatchError::Notify)?;

        let mut watch_loop = WatchLoop {
            root,
            services,
            notify: notify_watcher,
            watched: BTreeSet::new(),
            reported_failures: BTreeSet::new(),
            pending: Debouncer::new(debounce),
            loops: RedeployLoopDetector::new(REDEPLOY_LOOP_LIMIT, REDEPLOY_LOOP_WINDOW),
            events,
            messages,
        };
        let synced = watch_loop.sync_watches();
        if let Some((path, source)) = synced.failures.into_iter().next() {
            return Err(WatchError::Watch { path, source });
        }
        thread::Builder::new()
            .name("fleet-watch".into())
            .spawn(move || watch_loop.run())
            .map_err(WatchError::Thread)?;
        Ok(Some(Watcher { inbox }))
    }

    /// After `fleet reload`: replace the specs. A service whose spec changed starts
    /// with a clean slate (a pause is lifted); changes already seen are kept.
    pub fn update(&self, specs: Vec<WatchSpec>) {
        // A failed send means the thread has ended because nobody listens to its
        // events any more; there is nobody to tell.
        let _ = self.inbox.send(Message::Update(specs));
    }

    /// A user-triggered redeploy (or a manual resume) clears a paused service.
    pub fn resume(&self, service: &str) {
        let _ = self.inbox.send(Message::Resume(service.to_string()));
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.inbox.send(Message::Stop);
    }
}

enum Message {
    Files(notify::Result<notify::Event>),
    Update(Vec<WatchSpec>),
    Resume(String),
    Stop,
}

/// What one turn of the loop learned about the folder structure.
#[derive(Debug, Default)]
struct Turn {
    /// Folders that appeared and matter to some service's plan.
    appeared: Vec<PathBuf>,
    resync: bool,
}

#[derive(Debug, Default)]
struct Synced {
    added: Vec<PathBuf>,
    failures: Vec<(PathBuf, notify::Error)>,
}

/// The watcher thread's state; see the module documentation.
struct WatchLoop {
    root: PathBuf,
    services: Vec<ServiceWatch>,
    notify: RecommendedWatcher,
    /// Folders carrying an inotify watch, each non-recursive.
    watched: BTreeSet<PathBuf>,
    /// Folders whose watch failed and was reported, so a resync does not repeat it.
    reported_failures: BTreeSet<PathBuf>,
    pending: Debouncer,
    loops: RedeployLoopDetector,
    events: UnboundedSender<WatchEvent>,
    messages: mpsc::Receiver<Message>,
}

impl WatchLoop {
    fn run(mut self) {
        loop {
            let first = match self.pending.next_due() {
                None => match self.messages.recv() {
                    Ok(message) => Some(message),
                    Err(mpsc::RecvError) => return,
                },
                Some(due) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    match self.messages.recv_timeout(wait) {
                        Ok(message) => Some(message),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            };
            let mut turn = Turn::default();
            let more = std::iter::from_fn(|| self.messages.try_recv().ok());
            let messages: Vec<Message> = first
                .into_iter()
                .chain(more.take(MAX_MESSAGES_PER_TURN))
                .collect();
            let now = Instant::now();
            for message in messages {
                match message {
                    Message::Files(Ok(event)) => self.on_file_event(event, &mut turn, now),
                    Message::Files(Err(error)) => {
                        self.send(WatchEvent::Error {
                            message: format!("file watching: {error}"),
                        });
                    }
                    Message::Update(specs) => {
                        self.update(specs);
                        turn.resync = true;
                    }
                    Message::Resume(service) => {
                        self.loops.resume(&service);
                        self.pending.discard(&service);
                    }
                    Message::Stop => return,
                }
            }
            if turn.resync {
                self.resync(&turn.appeared, now);
            }
            if !self.emit_due(Instant::now()) {
                return;
            }
        }
    }

    fn on_file_event(&mut self, event: notify::Event, turn: &mut Turn, now: Instant) {
        if event.need_rescan() {
            // The kernel queue overflowed: changes were lost, so every watching service
            // may be stale, and folders may have appeared unseen.
            for service in &self.services {
                if !self.loops.is_paused(service.name()) {
                    self.pending.note(service.name(), None, now);
                }
            }
            turn.resync = true;
            self.send(WatchEvent::Error {
                message: "file events were lost (inotify queue overflow); redeploying every \
                          watching service"
                    .to_string(),
            });
            return;
        }
        match event.kind {
            // Opening, reading and closing files happens on every build; attribute
            // changes come from chmod after a save, backup tools and indexers.
            EventKind::Access(_)
            | EventKind::Modify(ModifyKind::Metadata(_))
            | EventKind::Other
            | EventKind::Any => return,
            EventKind::Create(CreateKind::Folder) => {
                for path in &event.paths {
                    self.note_appeared(path, turn);
                }
            }
            EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any)) => {
                for path in &event.paths {
                    if path.is_dir() {
                        self.note_appeared(path, turn);
                    }
                }
            }
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                for path in &event.paths {
                    if self.forget_watched_under(path) {
                        turn.resync = true;
                    }
                }
            }
            EventKind::Modify(_) => {}
        }
        for path in &event.paths {
            self.note_change(path, now);
        }
    }

    fn note_change(&mut self, path: &Path, now: Instant) {
        let relative = relative_to(&self.root, path);
        let candidate = Candidate::new(relative);
        for service in &self.services {
            if !self.loops.is_paused(service.name()) && service.matches(&candidate) {
                self.pending
                    .note(service.name(), Some(relative.to_path_buf()), now);
            }
        }
    }

    /// A folder appeared at `path`: it matters if it lies on the way to a base that
    /// did not exist, or inside a tree that is walked.
    fn note_appeared(&self, path: &Path, turn: &mut Turn) {
        let matters = self.services.iter().any(|service| {
            !service.ignores(&self.root, path)
                && service.bases.iter().any(|base| {
                    base.dir.starts_with(path) || (base.recursive && path.starts_with(&base.dir))
                })
        });
        if matters {
            turn.appeared.push(path.to_path_buf());
            turn.resync = true;
        }
    }

    /// `path` was removed or renamed away: drop the watches on it and below it.
    /// inotify has already dropped them for a removed folder; a renamed one still
    /// watches the folder under its new name, which is not what we want.
    fn forget_watched_under(&mut self, path: &Path) -> bool {
        let gone: Vec<PathBuf> = self
            .watched
            .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
            .take_while(|watched| watched.starts_with(path))
            .cloned()
            .collect();
        for dir in &gone {
            self.watched.remove(dir);
            // Fails when the kernel already dropped the watch with the folder.
            let _ = self.notify.unwatch(dir);
        }
        !gone.is_empty()
    }

    fn update(&mut self, specs: Vec<WatchSpec>) {
        let mut services = Vec::new();
        for spec in specs.iter().filter(|spec| !spec.watch.is_empty()) {
            match ServiceWatch::compile(&self.root, spec) {
                Ok(service) => services.push(service),
                Err(error) => self.send(WatchEvent::Error {
                    message: format!("{error}; not watching `{}`", spec.service),
                }),
            }
        }
        for old in &self.services {
            match services.iter().find(|new| new.name() == old.name()) {
                Some(new) if new.spec == old.spec => {}
                Some(_) => self.loops.resume(old.name()),
                None => {
                    self.loops.resume(old.name());
                    self.pending.discard(old.name());
                }
            }
        }
        self.services = services;
    }

    /// Makes the watches match the plan; what is inside folders that appeared counts
    /// as changed.
    ///
    /// A folder created inside a new folder after the walk read its parent but before
    /// the parent's watch existed raised no event and was not walked: it shows up only
    /// when the parent is listed here, so the plan is resolved again until listing
    /// finds no such folder. Each round adds at least one watch, so this ends.
    fn resync(&mut self, appeared: &[PathBuf], now: Instant) {
        loop {
            let synced = self.sync_watches();
            for (path, source) in synced.failures {
                if self.reported_failures.insert(path.clone()) {
                    self.send(WatchEvent::Error {
                        message: describe_watch_failure(&path, &source),
                    });
                }
            }
            let mut missed_folder = false;
            for dir in &synced.added {
                if !appeared.iter().any(|new| dir.starts_with(new)) {
                    continue;
                }
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                    missed_folder |= is_dir && !self.watched.contains(&path);
                    self.note_change(&path, now);
                }
            }
            if !missed_folder || synced.added.is_empty() {
                return;
            }
        }
    }

    fn sync_watches(&mut self) -> Synced {
        let desired = desired_dirs(&self.root, &self.services);
        let stale: Vec<PathBuf> = self.watched.difference(&desired).cloned().collect();
        for dir in stale {
            self.watched.remove(&dir);
            let _ = self.notify.unwatch(&dir);
        }
        let mut synced = Synced::default();
        for dir in desired
            .difference(&self.watched)
            .cloned()
            .collect::<Vec<_>>()
        {
            match self.notify.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.reported_failures.remove(&dir);
                    self.watched.insert(dir.clone());
                    synced.added.push(dir);
                }
                // Gone between the walk and the watch; its removal raised an event
                // that brings the plan up to date.
                Err(error) if vanished(&error) => {}
                Err(error) => {
                    let at_limit = matches!(error.kind, notify::ErrorKind::MaxFilesWatch);
                    synced.failures.push((dir, error));
                    if at_limit {
                        break;
                    }
                }
            }
        }
        synced
    }

    /// Sends the bursts that are due; false when nobody listens any more.
    fn emit_due(&mut self, now: Instant) -> bool {
        for (service, paths) in self.pending.take_due(now) {
            let event = match self.loops.record(&service, now) {
                LoopVerdict::Redeploy => WatchEvent::Redeploy { service, paths },
                LoopVerdict::Pause => WatchEvent::Paused {
                    reason: pause_reason(&service, self.loops.limit(), self.loops.window(), &paths),
                    service,
                },
                LoopVerdict::Suppress => continue,
            };
            if self.events.send(event).is_err() {
                return false;
            }
        }
        true
    }

    fn send(&self, event: WatchEvent) {
        // A closed channel ends the loop at its next emit_due.
        let _ = self.events.send(event);
    }
}

fn vanished(error: &notify::Error) -> bool {
    match &error.kind {
        notify::ErrorKind::PathNotFound => true,
        notify::ErrorKind::Io(source) => source.kind() == io::ErrorKind::NotFound,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;
    use std::fs;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::test_support::{paths, spec, TestResult};

    /// Long enough that a test thread descheduled on a loaded 2-core machine does not
    /// split a burst it writes in one go.
    const TEST_DEBOUNCE: Duration = Duration::from_millis(150);

    /// How long an expected event may take on a loaded machine.
    const EVENT_DEADLINE: Duration = Duration::from_secs(10);

    /// A negative wait: a wrong event would arrive one debounce after its change, so
    /// three debounces of silence mean none is coming.
    const QUIET: Duration = Duration::from_millis(3 * 150);

    fn write(root: &Path, relative: &str, contents: &str) -> io::Result<()> {
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, contents)
    }

    fn start(
        root: &Path,
        specs: Vec<WatchSpec>,
    ) -> Result<(Watcher, UnboundedReceiver<WatchEvent>), Box<dyn Error>> {
        let (events, received) = unbounded_channel();
        let watcher = Watcher::start(root, specs, TEST_DEBOUNCE, events)?
            .ok_or("a service watches something, so there is a watcher")?;
        Ok((watcher, received))
    }

    async fn next_event(events: &mut UnboundedReceiver<WatchEvent>) -> Option<WatchEvent> {
        tokio::time::timeout(EVENT_DEADLINE, events.recv())
            .await
            .ok()
            .flatten()
    }

    async fn expect_redeploy(
        events: &mut UnboundedReceiver<WatchEvent>,
    ) -> Result<(String, Vec<PathBuf>), Box<dyn Error>> {
        match next_event(events).await {
            Some(WatchEvent::Redeploy { service, paths }) => Ok((service, paths)),
            other => Err(format!("expected a redeploy, got {other:?}").into()),
        }
    }

    /// Negative wait: nothing may arrive within [`QUIET`].
    async fn expect_quiet(events: &mut UnboundedReceiver<WatchEvent>) -> TestResult {
        match tokio::time::timeout(QUIET, events.recv()).await {
            Err(_elapsed) => Ok(()),
            Ok(event) => Err(format!("expected nothing, got {event:?}").into()),
        }
    }

    #[test]
    fn no_watch_means_no_watcher() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (events, _received) = unbounded_channel();
        let specs = vec![spec("api", &[], &["**/*.tmp"])];
        let watcher = Watcher::start(dir.path(), specs, TEST_DEBOUNCE, events)?;
        assert!(watcher.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn one_write_redeploys_only_the_service_that_watches_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        write(root, "examples/ratings.rs", "v1")?;
        write(root, "examples/users.rs", "v1")?;
        let specs = vec![
            spec(
                "ratings",
                &["examples/ratings.rs", "examples/common/**"],
                &[],
            ),
            spec("users", &["examples/users.rs"], &[]),
        ];
        let (_watcher, mut events) = start(root, specs)?;

        write(root, "examples/ratings.rs", "v2")?;
        let (service, changed) = expect_redeploy(&mut events).await?;
        assert_eq!(service, "ratings");
        assert_eq!(changed, paths(&["examples/ratings.rs"]));
        expect_quiet(&mut events).await
    }

    #[tokio::test]
    async fn a_burst_of_writes_gives_one_redeploy() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        write(root, "src/lib.rs", "v0")?;
        let (_watcher, mut events) = start(root, vec![spec("api", &["src/**"], &[])])?;

        for round in 0..20 {
            write(root, "src/lib.rs", &format!("v{round}"))?;
            write(root, &format!("src/mod_{}.rs", round % 3), "x")?;
        }
        let (service, changed) = expect_redeploy(&mut events).await?;
        assert_eq!(service, "api");
        assert_eq!(
            changed,
            paths(&["src/lib.rs", "src/mod_0.rs", "src/mod_1.rs", "src/mod_2.rs"])
        );
        expect_quiet(&mut events).await
    }

    #[tokio::test]
    async fn ignored_files_redeploy_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        write(root, "target/debug/app", "old")?;
        fs::create_dir(root.join("src"))?;
        let specs = vec![spec("api", &["**"], &["**/*.tmp"])];
        let (_watcher, mut events) = start(root, specs)?;

        write(root, "target/debug/app", "new")?;
        write(root, ".git/index", "x")?;
        write(root, "src/.fleet/state", "x")?;
        write(root, "src/notes.tmp", "x")?;
        write(root, "src/.lib.rs.swp", "x")?;
        write(root, "src/lib.rs~", "x")?;
        write(root, "src/4913", "x")?;
        expect_quiet(&mut events).await?;

        // The watcher was alive all along, and nothing ignored joined this burst.
        write(root, "src/lib.rs", "x")?;
        let (service, changed) = expect_redeploy(&mut events).await?;
        assert_eq!(service, "api");
        assert_eq!(changed, paths(&["src/lib.rs"]));
        Ok(())
    }

    #[tokio::test]
    async fn a_file_in_a_new_subfolder_of_a_recursive_watch_redeploys() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("examples/common"))?;
        let specs = vec![spec("ratings", &["examples/common/**"], &[])];
        let (_watcher, mut events) = start(root, specs)?;

        // Written at once after mkdir, before the watcher can have added the new
        // folders' watches: found by the rescan of folders that appeared.
        write(root, "examples/common/deep/er/x.rs", "x")?;
        let (service, changed) = expect_redeploy(&mut events).await?;
        assert_eq!(service, "ratings");
        assert!(changed.contains(&PathBuf::from("examples/common/deep/er/x.rs")));
        expect_quiet(&mut events).await?;

        // And the new folder is watched from now on.
        write(root, "examples/common/deep/er/x.rs", "y")?;
        let (_, changed) = expect_redeploy(&mut events).await?;
        assert_eq!(changed, paths(&["examples/common/deep/er/x.rs"]));
        Ok(())
    }

    #[tokio::test]
    async fn a_watched_folder_created_after_start_is_watched() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let specs = vec![spec("ratings", &["examples/common/**"], &[])];
        let (_watcher, mut events) = start(root, specs)?;

        write(root, "examples/common/x.rs", "x")?;
        let (_, changed) = expect_redeploy(&mut events).await?;
        assert_eq!(changed, paths(&["examples/common/x.rs"]));
        Ok(())
    }

    #[tokio::test]
    async fn an_editor_style_save_redeploys_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        write(root, "examples/ratings.rs", "v1")?;
        let (_watcher, mut events) =
            start(root, vec![spec("ratings", &["examples/ratings.rs"], &[])])?;

        write(root, "examples/ratings.rs.tmp", "v2")?;
        fs::rename(
            root.join("examples/ratings.rs.tmp"),
            root.join("examples/ratings.rs"),
        )?;
        let (service, changed) = expect_redeploy(&mut events).await?;
        assert_eq!(service, "ratings");
        assert_eq!(changed, paths(&["examples/ratings.rs"]));
        expect_quiet(&mut events).await
    }

    #[tokio::test]
    async fn a_service_rewriting_its_watched_files_is_paused_until_resumed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let (watcher, mut events) = start(root, vec![spec("gen", &["out/**"], &[])])?;

        for _ in 0..REDEPLOY_LOOP_LIMIT {
            write(root, "out/gen.rs", "x")?;
            expect_redeploy(&mut events).await?;
        }
        write(root, "out/gen.rs", "x")?;
        match next_event(&mut events).await {
            Some(WatchEvent::Paused { service, reason }) => {
                assert_eq!(service, "gen");
                assert!(reason.contains("out/gen.rs"), "{reason}");
            }
            other => return Err(format!("expected a pause, got {other:?}").into()),
        }
        write(root, "out/gen.rs", "x")?;
        expect_quiet(&mut events).await?;

        watcher.resume("gen");
        write(root, "out/gen.rs", "x")?;
        let (service, _) = expect_redeploy(&mut events).await?;
        assert_eq!(service, "gen");
        Ok(())
    }

    #[tokio::test]
    async fn update_replaces_what_is_watched() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        write(root, "a/x.rs", "x")?;
        write(root, "b/x.rs", "x")?;
        let (watcher, mut events) = start(root, vec![spec("api", &["a/**"], &[])])?;

        watcher.update(vec![spec("api", &["b/**"], &[])]);
        // The update is in the thread's inbox before this write's events, so they are
        // matched against the new specs.
        write(root, "a/x.rs", "y")?;
        expect_quiet(&mut events).await?;
        write(root, "b/x.rs", "y")?;
        let (_, changed) = expect_redeploy(&mut events).await?;
        assert_eq!(changed, paths(&["b/x.rs"]));
        Ok(())
    }

    #[tokio::test]
    async fn dropping_the_watcher_stops_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (watcher, mut events) = start(dir.path(), vec![spec("api", &["**"], &[])])?;
        drop(watcher);
        // The thread drops its sender when it ends, which closes the channel.
        let closed = tokio::time::timeout(EVENT_DEADLINE, events.recv()).await?;
        assert_eq!(closed, None);
        Ok(())
    }

    /// Prints the time from a write to its Redeploy with the default debounce; run
    /// with `--nocapture` to see it. Not asserted: timings live in benchmarks.
    #[tokio::test]
    async fn write_to_redeploy_latency() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let (events, mut received) = unbounded_channel();
        let watcher = Watcher::start(
            root,
            vec![spec("api", &["src/**"], &[])],
            DEFAULT_DEBOUNCE,
            events,
        )?
        .ok_or("a watcher")?;
        let mut latencies = Vec::new();
        for round in 0..9 {
            watcher.resume("api");
            let written = Instant::now();
            write(root, "src/lib.rs", &format!("v{round}"))?;
            expect_redeploy(&mut received).await?;
            latencies.push(written.elapsed());
        }
        latencies.sort();
        let median = latencies[latencies.len() / 2];
        crate::note!(
            "write -> Redeploy: median {median:?} over {} runs (debounce {DEFAULT_DEBOUNCE:?}, \
             min {:?}, max {:?})",
            latencies.len(),
            latencies[0],
            latencies[latencies.len() - 1],
        );
        Ok(())
    }
}
