//! When changes become a redeploy: the per-service debounce window, and the detector
//! of services that keep redeploying themselves.
//!
//! Owns the timing policy of watching. Pure: every function takes the time as an
//! argument and reads no clock, touches no file and sends nothing; the watcher
//! thread feeds it changes and the current time, and sends what it decides.
//!
//! # Theory of operation
//! **Debounce.** Editors save in bursts (write a temporary file, rename it over the
//! original, chmod), so a service's burst ends `debounce` after its last change and
//! yields one Redeploy carrying every changed path. A burst is cut after at most
//! [`MAX_BURST`] so that a process that never stops writing into watched files still
//! produces redeploys the loop detector can see, instead of silently none.
//!
//! **Redeploy loops.** A service that writes into its own watched files redeploys
//! itself for ever; nothing about a single change tells that apart from a save, only
//! the rate does. More than [`REDEPLOY_LOOP_LIMIT`] watcher redeploys within
//! [`REDEPLOY_LOOP_WINDOW`] pause the service's watching with
//! [`WatchEvent::Paused`](super::WatchEvent::Paused);
//! [`Watcher::resume`](super::Watcher::resume) (called on a user's `fleet redeploy`)
//! or a `fleet reload` that changes the service's watch settings lifts the pause.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::event::format_duration_ms;

/// Quiet time that ends a burst of changes. An editor's save (temporary file, rename,
/// chmod) or a formatter rewriting a few files lands within a few milliseconds, and
/// 100 ms is still short next to any build, so a redeploy starts without a noticeable
/// wait and one save never becomes two redeploys.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// A burst is cut this long after its first change even if changes keep coming. A
/// branch switch or a code generator rarely writes for longer; a process that never
/// stops writing into watched files then redeploys every `MAX_BURST` and is caught by
/// the loop detector instead of never redeploying at all.
pub const MAX_BURST: Duration = Duration::from_secs(2);

/// More than this many redeploys by file changes within [`REDEPLOY_LOOP_WINDOW`] is a
/// loop. A loop redeploys as fast as the service builds and starts (a few seconds at
/// most for a dev service), while a person editing rarely saves and waits for the
/// result more than five times in half a minute.
pub const REDEPLOY_LOOP_LIMIT: usize = 5;

/// See [`REDEPLOY_LOOP_LIMIT`].
pub const REDEPLOY_LOOP_WINDOW: Duration = Duration::from_secs(30);

/// Per-service trailing-edge debounce. Pure: the caller passes the time.
#[derive(Debug)]
pub(super) struct Debouncer {
    quiet: Duration,
    bursts: BTreeMap<String, Burst>,
}

#[derive(Debug)]
struct Burst {
    paths: BTreeSet<PathBuf>,
    first: Instant,
    last: Instant,
}

impl Burst {
    fn due(&self, quiet: Duration) -> Instant {
        (self.last + quiet).min(self.first + MAX_BURST.max(quiet))
    }
}

impl Debouncer {
    pub(super) fn new(quiet: Duration) -> Debouncer {
        Debouncer {
            quiet,
            bursts: BTreeMap::new(),
        }
    }

    /// A change of `service`; `None` when what changed is unknown.
    pub(super) fn note(&mut self, service: &str, path: Option<PathBuf>, now: Instant) {
        let burst = self
            .bursts
            .entry(service.to_string())
            .or_insert_with(|| Burst {
                paths: BTreeSet::new(),
                first: now,
                last: now,
            });
        burst.last = now;
        burst.paths.extend(path);
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        self.bursts
            .values()
            .map(|burst| burst.due(self.quiet))
            .min()
    }

    /// The bursts that ended by `now`, in service-name order.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<(String, Vec<PathBuf>)> {
        let quiet = self.quiet;
        let due: Vec<String> = self
            .bursts
            .iter()
            .filter(|(_, burst)| burst.due(quiet) <= now)
            .map(|(service, _)| service.clone())
            .collect();
        due.into_iter()
            .filter_map(|service| {
                let burst = self.bursts.remove(&service)?;
                Some((service, burst.paths.into_iter().collect()))
            })
            .collect()
    }

    pub(super) fn discard(&mut self, service: &str) {
        self.bursts.remove(service);
    }
}

/// What to do with a debounced burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoopVerdict {
    Redeploy,
    /// This burst completes a loop: pause the service and say so.
    Pause,
    /// Already paused: drop the burst.
    Suppress,
}

/// Notices a service that keeps redeploying itself through file changes: more than
/// `limit` redeploys within `window`. Pure: the caller passes the time.
#[derive(Debug)]
pub(super) struct RedeployLoopDetector {
    limit: usize,
    window: Duration,
    history: HashMap<String, VecDeque<Instant>>,
    paused: HashSet<String>,
}

impl RedeployLoopDetector {
    pub(super) fn new(limit: usize, window: Duration) -> RedeployLoopDetector {
        RedeployLoopDetector {
            limit,
            window,
            history: HashMap::new(),
            paused: HashSet::new(),
        }
    }

    /// A burst for `service` is ready at `now`; a `Redeploy` verdict is recorded.
    pub(super) fn record(&mut self, service: &str, now: Instant) -> LoopVerdict {
        if self.paused.contains(service) {
            return LoopVerdict::Suppress;
        }
        let history = self.history.entry(service.to_string()).or_default();
        while history
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= self.window)
        {
            history.pop_front();
        }
        if history.len() >= self.limit {
            self.history.remove(service);
            self.paused.insert(service.to_string());
            return LoopVerdict::Pause;
        }
        history.push_back(now);
        LoopVerdict::Redeploy
    }

    pub(super) fn is_paused(&self, service: &str) -> bool {
        self.paused.contains(service)
    }

    /// Lifts a pause and forgets past redeploys.
    pub(super) fn resume(&mut self, service: &str) {
        self.paused.remove(service);
        self.history.remove(service);
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn window(&self) -> Duration {
        self.window
    }
}

/// The text of [`WatchEvent::Paused`]; `paths` is the burst that completed the loop.
pub(super) fn pause_reason(
    service: &str,
    limit: usize,
    window: Duration,
    paths: &[PathBuf],
) -> String {
    const SHOWN: usize = 3;
    let mut changed: Vec<String> = paths
        .iter()
        .take(SHOWN)
        .map(|path| path.display().to_string())
        .collect();
    if paths.len() > SHOWN {
        changed.push(format!("and {} more", paths.len() - SHOWN));
    }
    let changed = if changed.is_empty() {
        String::new()
    } else {
        format!(" (last changed: {})", changed.join(", "))
    };
    format!(
        "redeployed {limit} times in {} by file changes; paused. Check that the service does \
         not write into its own watched files{changed}, then run `fleet redeploy {service}`",
        format_duration_ms(window.as_millis() as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_support::paths;

    #[test]
    fn a_burst_ends_when_quiet_or_at_the_cap() {
        let quiet = Duration::from_millis(100);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut debouncer = Debouncer::new(quiet);
        debouncer.note("api", Some("a.rs".into()), at(0));
        debouncer.note("api", Some("b.rs".into()), at(50));
        debouncer.note("api", Some("a.rs".into()), at(90));
        assert_eq!(debouncer.next_due(), Some(at(190)));
        assert!(debouncer.take_due(at(189)).is_empty());
        assert_eq!(
            debouncer.take_due(at(190)),
            vec![("api".to_string(), paths(&["a.rs", "b.rs"]))]
        );
        assert_eq!(debouncer.next_due(), None);

        // A writer that never stops is cut at MAX_BURST.
        let mut ms = 0;
        while ms < 3000 {
            debouncer.note("log", Some("out.log".into()), at(ms));
            ms += 50;
        }
        assert_eq!(debouncer.next_due(), Some(at(0) + MAX_BURST));
    }

    #[test]
    fn redeploy_loop_is_paused_after_the_limit_within_the_window() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut detector = RedeployLoopDetector::new(5, Duration::from_secs(30));
        for second in 0..5 {
            assert_eq!(detector.record("api", at(second)), LoopVerdict::Redeploy);
        }
        assert_eq!(detector.record("other", at(5)), LoopVerdict::Redeploy);
        assert_eq!(detector.record("api", at(5)), LoopVerdict::Pause);
        assert!(detector.is_paused("api"));
        assert_eq!(detector.record("api", at(6)), LoopVerdict::Suppress);
        detector.resume("api");
        assert_eq!(detector.record("api", at(7)), LoopVerdict::Redeploy);
    }

    #[test]
    fn redeploys_spread_wider_than_the_window_never_pause() {
        let start = Instant::now();
        let mut detector = RedeployLoopDetector::new(5, Duration::from_secs(30));
        for round in 0..20 {
            let now = start + Duration::from_secs(7 * round);
            assert_eq!(detector.record("api", now), LoopVerdict::Redeploy);
        }
    }

    #[test]
    fn pause_reason_names_the_files_and_the_way_out() {
        let reason = pause_reason(
            "ratings",
            5,
            Duration::from_secs(30),
            &paths(&["examples/common/a", "examples/common/b", "c", "d"]),
        );
        assert_eq!(
            reason,
            "redeployed 5 times in 30s by file changes; paused. Check that the service does \
             not write into its own watched files (last changed: examples/common/a, \
             examples/common/b, c, and 1 more), then run `fleet redeploy ratings`"
        );
    }

    /// The watcher thread's timing, replayed on a virtual clock: each change is noted
    /// when it happens, the bursts that are due are taken whenever the thread would
    /// wake (at a change or at the earliest deadline) and judged by the loop detector.
    /// Returns what would be sent: milliseconds after the start, service, paths and
    /// verdict.
    fn replay(
        quiet: Duration,
        changes: &[(u64, &str, &str)],
    ) -> Vec<(u64, String, Vec<PathBuf>, LoopVerdict)> {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut debouncer = Debouncer::new(quiet);
        let mut loops = RedeployLoopDetector::new(REDEPLOY_LOOP_LIMIT, REDEPLOY_LOOP_WINDOW);
        let mut changes = changes.iter().peekable();
        let mut sent = Vec::new();
        loop {
            let next_change = changes.peek().map(|(ms, _, _)| at(*ms));
            let now = match (next_change, debouncer.next_due()) {
                (None, None) => return sent,
                (Some(change), Some(due)) => change.min(due),
                (Some(change), None) => change,
                (None, Some(due)) => due,
            };
            while let Some((ms, service, path)) = changes.next_if(|(ms, _, _)| at(*ms) <= now) {
                debouncer.note(service, Some(PathBuf::from(path)), at(*ms));
            }
            for (service, paths) in debouncer.take_due(now) {
                let verdict = loops.record(&service, now);
                let ms = now.saturating_duration_since(start).as_millis() as u64;
                sent.push((ms, service, paths, verdict));
            }
        }
    }

    /// What `redeploy::a_burst_of_writes_gives_one_redeploy` does to a real fleet (20
    /// saves 5 ms apart: about 100 ms of saving, never 100 ms of quiet), on an
    /// injected clock instead of sleeps.
    #[test]
    fn a_burst_of_writes_gives_one_redeploy() {
        let modules = ["src/mod_0.rs", "src/mod_1.rs", "src/mod_2.rs"];
        let mut changes = Vec::new();
        for round in 0..20u64 {
            changes.push((5 * round, "api", "src/lib.rs"));
            changes.push((5 * round + 1, "api", modules[(round % 3) as usize]));
        }
        let last_change = 5 * 19 + 1;
        assert_eq!(
            replay(DEFAULT_DEBOUNCE, &changes),
            vec![(
                last_change + DEFAULT_DEBOUNCE.as_millis() as u64,
                "api".to_string(),
                paths(&["src/lib.rs", "src/mod_0.rs", "src/mod_1.rs", "src/mod_2.rs"]),
                LoopVerdict::Redeploy,
            )]
        );
    }

    #[test]
    fn a_quiet_gap_longer_than_the_debounce_splits_a_burst() {
        let changes = [
            (0, "api", "a.rs"),
            (50, "api", "b.rs"),
            (151, "api", "a.rs"),
        ];
        assert_eq!(
            replay(Duration::from_millis(100), &changes),
            vec![
                (
                    150,
                    "api".to_string(),
                    paths(&["a.rs", "b.rs"]),
                    LoopVerdict::Redeploy
                ),
                (
                    251,
                    "api".to_string(),
                    paths(&["a.rs"]),
                    LoopVerdict::Redeploy
                ),
            ]
        );
    }
}
