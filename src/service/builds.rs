//! Builds that services share. Services whose `build` is the same command, in the same
//! folder, with the same `env`, run it once when they start together: the demo's four
//! services build with one `cargo build`, not four that queue on cargo's lock.
//!
//! Only the builds of a start (or a build ahead of one) are shared, and only within one
//! source epoch: a build that began before fleet saw a source change never stands in
//! for one asked after it. A redeploy's build is never shared. The build runs in the
//! process group of the service that began it, and its output goes to that service's
//! log; it is cancelled only when every service waiting for it has stopped waiting.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::state::{BuildId, Input};

/// What makes two builds the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildKey {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
}

/// A runner waiting for a shared build: its inbox and its own id for the build.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub service: String,
    pub inbox: mpsc::UnboundedSender<Input>,
    pub build: BuildId,
}

/// The runners a running build will answer, and how to stop it.
#[derive(Debug)]
pub struct Running {
    epoch: u64,
    /// The service that began it (its log has the output).
    owner: String,
    /// Its process group and marker, once spawned.
    pid: Option<(u32, String)>,
    waiters: Vec<Waiter>,
}

/// What [`SharedBuilds::join_or_begin`] did.
#[derive(Debug)]
pub enum Entry {
    /// An identical build runs: its result will come; `owner`'s log has its output.
    Joined { shared: Shared, owner: String },
    /// None ran: the caller owns this one.
    Began(Shared),
}

/// A handle on one running shared build, kept by each runner waiting for it.
pub type Shared = Arc<Mutex<Running>>;

/// The running shared builds of one supervisor.
#[derive(Debug, Default)]
pub struct SharedBuilds {
    epoch: AtomicU64,
    running: Mutex<HashMap<BuildKey, Shared>>,
}

/// Locks, whatever a panicking holder left: the data stays consistent (each change
/// is one push, one removal or one swap).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SharedBuilds {
    /// fleet saw a source change (or was asked to rebuild): builds running now may
    /// not include it, so no later build joins them.
    pub fn source_changed(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Joins the running build of `key` begun in this epoch, or, when there is none,
    /// records `waiter` as the owner of a new one, which it must now spawn and report
    /// with [`SharedBuilds::spawned`] (or end with [`SharedBuilds::finish`]). One step,
    /// so that two services starting at once cannot both begin.
    pub fn join_or_begin(&self, key: &BuildKey, waiter: Waiter) -> Entry {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut running = lock(&self.running);
        if let Some(shared) = running.get(key) {
            let mut build = lock(shared);
            if build.epoch == epoch {
                build.waiters.push(waiter);
                return Entry::Joined {
                    shared: shared.clone(),
                    owner: build.owner.clone(),
                };
            }
        }
        let shared = Arc::new(Mutex::new(Running {
            epoch,
            owner: waiter.service.clone(),
            pid: None,
            waiters: vec![waiter],
        }));
        // An older build of the same key keeps running for its own waiters.
        running.insert(key.clone(), shared.clone());
        Entry::Began(shared)
    }

    /// The owner spawned the build: its process group and marker, to kill it by.
    pub fn spawned(shared: &Shared, pid: u32, marker: String) {
        lock(shared).pid = Some((pid, marker));
    }

    /// The build ended: no one joins it any more; every waiter hears `result`.
    pub fn finish(&self, key: &BuildKey, shared: &Shared, result: Result<(), String>) {
        self.forget(key, shared);
        let waiters = std::mem::take(&mut lock(shared).waiters);
        for waiter in waiters {
            let _ = waiter.inbox.send(Input::BuildFinished {
                build: waiter.build,
                result: result.clone(),
            });
        }
    }

    /// `service` no longer waits for build `build`. When no one does, the build's
    /// process (pid and marker) comes back for the caller to kill.
    pub fn leave(
        &self,
        key: &BuildKey,
        shared: &Shared,
        service: &str,
        build: BuildId,
    ) -> Option<(u32, String)> {
        let mut running = lock(shared);
        running
            .waiters
            .retain(|waiter| !(waiter.service == service && waiter.build == build));
        if !running.waiters.is_empty() {
            return None;
        }
        let process = running.pid.take();
        drop(running);
        self.forget(key, shared);
        process
    }

    fn forget(&self, key: &BuildKey, shared: &Shared) {
        let mut running = lock(&self.running);
        if running
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, shared))
        {
            running.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(command: &str) -> BuildKey {
        BuildKey {
            argv: vec![command.to_string()],
            cwd: PathBuf::from("/project"),
            env: BTreeMap::new(),
        }
    }

    fn waiter(service: &str, build: BuildId) -> (Waiter, mpsc::UnboundedReceiver<Input>) {
        let (inbox, receiver) = mpsc::unbounded_channel();
        let waiter = Waiter {
            service: service.to_string(),
            inbox,
            build,
        };
        (waiter, receiver)
    }

    fn finished(receiver: &mut mpsc::UnboundedReceiver<Input>) -> Option<(BuildId, bool)> {
        match receiver.try_recv() {
            Ok(Input::BuildFinished { build, result }) => Some((build, result.is_ok())),
            _ => None,
        }
    }

    fn begin(builds: &SharedBuilds, command: &str, waiter: Waiter) -> Shared {
        match builds.join_or_begin(&key(command), waiter) {
            Entry::Began(shared) => shared,
            Entry::Joined { owner, .. } => panic!("joined {owner}'s build"),
        }
    }

    fn joins(builds: &SharedBuilds, command: &str, waiter: Waiter) -> Option<String> {
        match builds.join_or_begin(&key(command), waiter) {
            Entry::Began(_) => None,
            Entry::Joined { owner, .. } => Some(owner),
        }
    }

    #[test]
    fn a_build_of_the_same_command_answers_every_service_that_joined_it() {
        let builds = SharedBuilds::default();
        let (users, mut users_inbox) = waiter("users", 1);
        let (catalog, mut catalog_inbox) = waiter("catalog", 4);
        let shared = begin(&builds, "make", users);
        SharedBuilds::spawned(&shared, 100, "m".into());
        assert_eq!(joins(&builds, "make", catalog), Some("users".to_string()));
        let (other, _) = waiter("gateway", 1);
        assert_eq!(joins(&builds, "make other", other), None);

        builds.finish(&key("make"), &shared, Ok(()));
        assert_eq!(finished(&mut users_inbox), Some((1, true)));
        assert_eq!(finished(&mut catalog_inbox), Some((4, true)));
        // Over: a later start builds again.
        let (late, _) = waiter("ratings", 2);
        assert_eq!(joins(&builds, "make", late), None);
    }

    #[test]
    fn a_build_begun_before_a_source_change_is_not_joined() {
        let builds = SharedBuilds::default();
        let (users, _) = waiter("users", 1);
        begin(&builds, "make", users);
        builds.source_changed();
        let (catalog, _) = waiter("catalog", 1);
        assert_eq!(joins(&builds, "make", catalog), None);
    }

    #[test]
    fn the_build_is_killed_only_when_its_last_waiter_leaves() {
        let builds = SharedBuilds::default();
        let (users, _) = waiter("users", 1);
        let (catalog, mut catalog_inbox) = waiter("catalog", 2);
        let shared = begin(&builds, "make", users);
        SharedBuilds::spawned(&shared, 100, "m".into());
        assert!(joins(&builds, "make", catalog).is_some());
        // The owner stops: the build goes on for catalog.
        assert_eq!(builds.leave(&key("make"), &shared, "users", 1), None);
        builds.finish(&key("make"), &shared, Err("exit 1".into()));
        assert_eq!(finished(&mut catalog_inbox), Some((2, false)));

        let (users, _) = waiter("users", 3);
        let shared = begin(&builds, "make", users);
        SharedBuilds::spawned(&shared, 200, "n".into());
        assert_eq!(
            builds.leave(&key("make"), &shared, "users", 3),
            Some((200, "n".to_string()))
        );
        let (catalog, _) = waiter("catalog", 4);
        assert_eq!(joins(&builds, "make", catalog), None);
    }
}
