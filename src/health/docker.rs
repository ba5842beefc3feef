//! The `docker = true` probe: follows the verdict of the image's own `HEALTHCHECK`, as
//! the engine reports it, instead of probing from the host.
//!
//! The engine runs the check inside the container on its own schedule and counts its
//! own retries, so this probe keeps no tally: it asks for the container's health
//! status and reports each change of verdict, like every other probe, through the
//! `Fn(Verdict, String)` callback. It never acts on a verdict.
//!
//! # Theory of operation
//! One task per container instance asks the engine every [`FIRST_ASK`] until the
//! status is first `healthy` or `unhealthy` (a `starting` status or none says nothing
//! yet), then at the probe's `interval`, so the first verdict is noticed soon after the
//! engine reaches it. The task ends only when aborted, with its instance.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Verdict;
use crate::runtime::container::Docker;

/// How often the engine is asked before its first verdict: a HEALTHCHECK may pass at
/// once, and asking is one cheap inspect call.
pub const FIRST_ASK: Duration = Duration::from_millis(100);

/// The reason reported with an unhealthy verdict; the engine keeps the check's output.
pub const FAILING_REASON: &str = "the image's HEALTHCHECK fails";

/// Follows the HEALTHCHECK of container `id` until aborted; `report` gets each verdict
/// change: healthy with an empty reason, unhealthy with [`FAILING_REASON`].
pub fn start_docker<F>(docker: Docker, id: String, interval: Duration, report: F) -> JoinHandle<()>
where
    F: Fn(Verdict, String) + Send + Sync + 'static,
{
    let status = move || {
        let docker = docker.clone();
        let id = id.clone();
        async move { docker.health_status(&id).await }
    };
    tokio::spawn(follow(status, tokio::time::sleep, interval, report))
}

/// What the engine's status says: `healthy` and `unhealthy` are verdicts; `starting`,
/// no HEALTHCHECK or a container the engine no longer knows say nothing.
fn verdict_of(status: Option<&str>) -> Option<Verdict> {
    match status {
        Some("healthy") => Some(Verdict::Healthy),
        Some("unhealthy") => Some(Verdict::Unhealthy),
        _ => None,
    }
}

/// The loop of [`start_docker`], over any source of health statuses and any way of
/// waiting, so tests script both without a clock.
async fn follow<S, Asked, W, Waited, F>(status: S, wait: W, interval: Duration, report: F)
where
    S: Fn() -> Asked,
    Asked: Future<Output = Option<String>>,
    W: Fn(Duration) -> Waited,
    Waited: Future<Output = ()>,
    F: Fn(Verdict, String),
{
    let mut last: Option<Verdict> = None;
    loop {
        if let Some(verdict) = verdict_of(status().await.as_deref())
            && last != Some(verdict)
        {
            last = Some(verdict);
            let reason = match verdict {
                Verdict::Healthy => String::new(),
                _ => FAILING_REASON.to_string(),
            };
            report(verdict, reason);
        }
        let pause = if last.is_none() {
            FIRST_ASK.min(interval)
        } else {
            interval
        };
        wait(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use futures_util::future::{self, Either, FutureExt};

    use super::*;

    /// Runs the loop over scripted statuses until they run out (the engine is then
    /// never answered), and returns what it reported and how long it waited each time.
    fn script(
        statuses: &[Option<&str>],
        interval: Duration,
    ) -> (Vec<(Verdict, String)>, Vec<Duration>) {
        let queue: RefCell<VecDeque<Option<String>>> = RefCell::new(
            statuses
                .iter()
                .map(|status| status.map(str::to_string))
                .collect(),
        );
        let reports = RefCell::new(Vec::new());
        let waits = RefCell::new(Vec::new());
        let status = || match queue.borrow_mut().pop_front() {
            Some(next) => Either::Left(future::ready(next)),
            None => Either::Right(future::pending()),
        };
        let wait = |pause| {
            waits.borrow_mut().push(pause);
            future::ready(())
        };
        let report = |verdict, reason| reports.borrow_mut().push((verdict, reason));
        // Every future is ready until the script ends, so one poll runs it all.
        assert!(follow(status, wait, interval, report)
            .now_or_never()
            .is_none());
        (reports.into_inner(), waits.into_inner())
    }

    #[test]
    fn only_changes_of_verdict_are_reported() {
        let (reports, _) = script(
            &[
                None,
                Some("starting"),
                Some("healthy"),
                Some("healthy"),
                Some("unhealthy"),
                Some("unhealthy"),
                Some("healthy"),
            ],
            Duration::from_secs(1),
        );
        assert_eq!(
            reports,
            vec![
                (Verdict::Healthy, String::new()),
                (Verdict::Unhealthy, FAILING_REASON.to_string()),
                (Verdict::Healthy, String::new()),
            ]
        );
    }

    #[test]
    fn an_unhealthy_start_is_reported_as_unhealthy() {
        let (reports, _) = script(
            &[Some("starting"), Some("unhealthy")],
            Duration::from_secs(1),
        );
        assert_eq!(
            reports,
            vec![(Verdict::Unhealthy, FAILING_REASON.to_string())]
        );
    }

    #[test]
    fn the_engine_is_asked_fast_until_its_first_verdict_then_at_the_interval() {
        let interval = Duration::from_secs(2);
        let (_, waits) = script(&[None, Some("starting"), Some("healthy"), None], interval);
        assert_eq!(waits, vec![FIRST_ASK, FIRST_ASK, interval, interval]);
        let short = Duration::from_millis(50);
        let (_, waits) = script(&[None, None], short);
        assert_eq!(waits, vec![short, short], "never slower than the interval");
    }
}
