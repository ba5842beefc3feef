//! Pure restart timing: how long to wait before the next restart, and when a crash
//! loop has gone on long enough to give up. No clock reads: callers pass `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::manifest::BackoffSpec;

/// An instance that stays up this long is considered stable: the next crash starts
/// the delay from `initial` again. Ten seconds is long enough that a service failing
/// on its first requests still backs off, short enough that a crash an hour later is
/// restarted at once.
pub const STABLE_UPTIME: Duration = Duration::from_secs(10);

/// The delay before restart number `consecutive` (1 for the first crash in a row):
/// `initial`, doubled per further crash, capped at `max`.
pub fn restart_delay(spec: &BackoffSpec, consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(32);
    let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
    spec.initial.saturating_mul(factor).min(spec.max)
}

/// What ended an instance that the restart policy counts against `max_restarts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It exited (or could not start) on its own.
    Crash,
    /// fleet stopped it after it had been healthy and then failed its probe.
    Unhealthy,
    /// fleet stopped it because it never passed its probe within `start_timeout`.
    NotReady,
}

/// The failures within the restart window, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureCount {
    pub total: u32,
    pub unhealthy: u32,
    pub not_ready: u32,
}

/// Failure timestamps within the restart window.
#[derive(Debug, Clone, Default)]
pub struct CrashWindow {
    crashes: VecDeque<(Instant, Failure)>,
}

impl CrashWindow {
    /// Records a failure at `now` and counts those that fall within `window`.
    pub fn record(&mut self, now: Instant, window: Duration, failure: Failure) -> FailureCount {
        self.crashes.push_back((now, failure));
        while let Some((oldest, _)) = self.crashes.front() {
            if now.duration_since(*oldest) > window {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        let mut count = FailureCount::default();
        for (_, failure) in &self.crashes {
            count.total += 1;
            match failure {
                Failure::Crash => {}
                Failure::Unhealthy => count.unhealthy += 1,
                Failure::NotReady => count.not_ready += 1,
            }
        }
        count
    }

    pub fn clear(&mut self) {
        self.crashes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(initial_ms: u64, max_ms: u64) -> BackoffSpec {
        BackoffSpec {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn delay_doubles_per_consecutive_crash_up_to_the_cap() {
        let spec = spec(100, 1000);
        let delays: Vec<u64> = (1..=6)
            .map(|n| restart_delay(&spec, n).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn zero_initial_delay_restarts_at_once_every_time() {
        assert_eq!(restart_delay(&spec(0, 1000), 7), Duration::ZERO);
    }

    #[test]
    fn huge_crash_counts_do_not_overflow() {
        assert_eq!(
            restart_delay(&spec(100, 30_000), u32::MAX),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn crash_window_forgets_old_crashes() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut crashes = CrashWindow::default();
        let mut total = |at: u64| {
            crashes
                .record(start + Duration::from_secs(at), window, Failure::Crash)
                .total
        };
        assert_eq!(total(0), 1);
        assert_eq!(total(30), 2);
        assert_eq!(total(61), 2);
        assert_eq!(total(200), 1);
    }

    #[test]
    fn crash_window_counts_probe_stops_apart() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut crashes = CrashWindow::default();
        crashes.record(start, window, Failure::Unhealthy);
        crashes.record(start, window, Failure::Crash);
        let count = crashes.record(start, window, Failure::NotReady);
        assert_eq!(
            count,
            FailureCount {
                total: 3,
                unhealthy: 1,
                not_ready: 1
            }
        );
        let later = crashes.record(start + Duration::from_secs(61), window, Failure::Crash);
        assert_eq!(later.total, 1);
        assert_eq!(later.unhealthy, 0);
    }
}
