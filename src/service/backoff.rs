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

/// Crash timestamps within the restart window.
#[derive(Debug, Clone, Default)]
pub struct CrashWindow {
    crashes: VecDeque<Instant>,
}

impl CrashWindow {
    /// Records a crash at `now` and returns how many crashes fall within `window`.
    pub fn record(&mut self, now: Instant, window: Duration) -> u32 {
        self.crashes.push_back(now);
        while let Some(oldest) = self.crashes.front() {
            if now.duration_since(*oldest) > window {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        self.crashes.len() as u32
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
        assert_eq!(crashes.record(start, window), 1);
        assert_eq!(crashes.record(start + Duration::from_secs(30), window), 2);
        assert_eq!(crashes.record(start + Duration::from_secs(61), window), 2);
        assert_eq!(crashes.record(start + Duration::from_secs(200), window), 1);
    }
}
