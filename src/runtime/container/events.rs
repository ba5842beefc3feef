//! The exit dispatcher: one subscription to the engine's event stream that tells each
//! waiting instance how its container ended.
//!
//! Owns the waiters (container id -> the sender of its exit) and the event task. Must
//! not act on an exit: it only reports it to whoever registered; stopping, removing or
//! restarting is the instance's owner's call.
//!
//! # Theory of operation: exits
//! Exits come from the engine's event stream, not from polling or one `wait` request
//! per container. [`Docker::connect`](super::Docker::connect) starts one task that
//! subscribes to `die` events of containers labelled `fleet.project` and hands each
//! exit code to the waiter registered under that container id.
//! [`Docker::start`](super::Docker::start) registers the waiter after `create` and
//! before `start`, so an instance that dies at once is never reported before its owner
//! is known.
//!
//! The subscription asks for events `since` shortly before the last event the task
//! saw (or before `connect`, if none), so the engine replays what happened while the
//! request was being set up or a broken stream was being re-opened; a replayed event
//! whose waiter is already served is dropped.
//! When the stream breaks (the engine restarted, the socket closed) the task re-opens
//! it and then inspects every container still awaited: one that is no longer running,
//! or no longer exists, is reported from that inspection, because an engine that
//! restarted has forgotten the events it would have replayed.
//!
//! # The engine going away
//! The event stream breaks when the engine stops answering (it restarted, its socket
//! went away, a proxy in between dropped the connection). If the engine does not
//! answer a ping then, the task publishes [`EngineLink::Unreachable`] and pings it
//! every `RESUBSCRIBE_DELAY` until it answers; it then delivers the exits of awaited
//! containers that ended meanwhile (from inspection, as above) and only then publishes
//! [`EngineLink::Reachable`]. Runners show their containers as `unknown` in between,
//! and never take "cannot see it" for "it died": an exit is only ever what the engine
//! reports.
//!
//! The engine reports a container whose main process was killed by signal N as exit
//! code 128 + N (137 for SIGKILL). Codes 129..=159 are mapped to
//! [`ExitStatus::Signal`], as the process runtime reports a killed group, so the
//! runner, the TUI and `fleet ps` say "killed by SIGKILL" for both kinds of service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerStateStatusEnum, EventMessage};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions};
use futures_util::StreamExt;
use tokio::sync::{oneshot, watch};

use super::{status_code, unreachable_reason, EngineLink, LABEL_PROJECT};
use crate::event::ExitStatus;

/// Events are replayed from this long before the last event seen (or `connect`), so a
/// `die` that happened around that moment is not missed. Replays are harmless: a
/// waiter is served once.
const EVENT_REPLAY_MARGIN: Duration = Duration::from_secs(2);
/// Pause before re-opening a broken event stream, and between attempts to inspect
/// awaited containers while the engine is away.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
/// How long a ping may take before the engine counts as unreachable: a local engine
/// answers in milliseconds, and a hung one must not hold the verdict for minutes.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// After the exits missed during an outage are delivered, how long before the engine
/// is announced back: each exit travels to its runner through a task of its own, and
/// a runner that heard "back" first would act on a stale verdict (a liveness failure
/// of a container that has in fact exited) instead of on the exit.
const EXITS_SETTLE: Duration = Duration::from_millis(50);

pub(super) type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<ExitStatus>>>>;

/// The exit waiters and the event task that serves them. Dropped with the last
/// [`Docker`] clone, which stops the task and so fails every pending exit receiver.
pub(super) struct ExitDispatcher {
    pub(super) waiters: Waiters,
    pub(super) task: tokio::task::AbortHandle,
}

impl Drop for ExitDispatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ExitDispatcher {
    pub(super) fn register(&self, id: &str, waiter: oneshot::Sender<ExitStatus>) {
        lock(&self.waiters).insert(id.to_string(), waiter);
    }

    pub(super) fn forget(&self, id: &str) {
        lock(&self.waiters).remove(id);
    }
}

fn lock(
    waiters: &Waiters,
) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<ExitStatus>>> {
    // Nothing panics while holding the lock (map inserts and removes only), so a
    // poisoned lock still holds a consistent map.
    waiters.lock().unwrap_or_else(PoisonError::into_inner)
}

fn deliver(waiters: &Waiters, id: &str, status: ExitStatus) {
    let waiter = lock(waiters).remove(id);
    if let Some(waiter) = waiter {
        // The runner may have stopped caring (it is gone); nothing to do then.
        let _ = waiter.send(status);
    }
}

/// Maps a container's exit code as Docker reports it; see the module docs.
pub fn exit_status(code: i64) -> ExitStatus {
    match code {
        129..=159 => ExitStatus::Signal((code - 128) as i32),
        _ => ExitStatus::Code(i32::try_from(code).unwrap_or(-1)),
    }
}

/// The `since` of an events request: seconds and nanoseconds since the epoch.
fn events_since(at: SystemTime) -> String {
    let since = at
        .checked_sub(EVENT_REPLAY_MARGIN)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", since.as_secs(), since.subsec_nanos())
}

/// The event task: see "Theory of operation: exits" and "The engine going away" in
/// the module docs.
pub(super) async fn follow_exits(
    client: bollard::Docker,
    waiters: Waiters,
    connected_at: SystemTime,
    link: watch::Sender<EngineLink>,
) {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["die".to_string()]),
        ("label".to_string(), vec![LABEL_PROJECT.to_string()]),
    ]);
    // Replays start from the last event seen (or the connection): a re-subscription
    // that fails while the engine is away must not move that point past events the
    // engine may still replay once it is back.
    let mut last_seen = connected_at;
    // Nothing was awaited before the first subscription.
    let mut reconciled = true;
    loop {
        let options = EventsOptions {
            since: Some(events_since(last_seen)),
            until: None,
            filters: Some(filters.clone()),
        };
        let mut events = std::pin::pin!(client.events(Some(options)));
        let mut retry = tokio::time::interval(RESUBSCRIBE_DELAY);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(message)) => {
                        last_seen = SystemTime::now();
                        on_die(&client, &waiters, message).await;
                    }
                    Some(Err(_)) | None => break,
                },
                _ = retry.tick(), if !reconciled => {
                    reconciled = reconcile(&client, &waiters).await;
                }
            }
        }
        match ping(&client).await {
            // A stream that broke while the engine still answers: subscribe again, and
            // catch up on exits on the first retry tick.
            Ok(()) => {
                reconciled = false;
                tokio::time::sleep(RESUBSCRIBE_DELAY).await;
            }
            Err(reason) => {
                link.send_replace(EngineLink::Unreachable { reason });
                while ping(&client).await.is_err() {
                    tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                }
                // The exits first: a runner that hears the engine is back should have
                // the exits of the containers that died meanwhile already (they reach
                // it through another task, hence the pause).
                reconciled = reconcile(&client, &waiters).await;
                tokio::time::sleep(EXITS_SETTLE).await;
                link.send_replace(EngineLink::Reachable);
            }
        }
    }
}

/// Whether the engine answers a ping within `PING_TIMEOUT`; why not, if it does not.
async fn ping(client: &bollard::Docker) -> Result<(), String> {
    client
        .clone()
        .with_timeout(PING_TIMEOUT)
        .ping()
        .await
        .map(|_| ())
        .map_err(|err| match err {
            bollard::errors::Error::RequestTimeoutError => {
                format!("no answer within {}s", PING_TIMEOUT.as_secs())
            }
            other => unreachable_reason(&other),
        })
}

async fn on_die(client: &bollard::Docker, waiters: &Waiters, message: EventMessage) {
    if message.action.as_deref() != Some("die") {
        return;
    }
    let Some(actor) = message.actor else { return };
    let Some(id) = actor.id else { return };
    if !lock(waiters).contains_key(&id) {
        return;
    }
    let code = actor
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.get("exitCode"))
        .and_then(|code| code.parse::<i64>().ok());
    let status = match code {
        Some(code) => Some(exit_status(code)),
        None => inspect_exit(client, &id).await.ok().flatten(),
    };
    if let Some(status) = status {
        deliver(waiters, &id, status);
    }
}

/// Reports every awaited container that has stopped or vanished while the event
/// stream was down. Returns whether every container could be inspected.
async fn reconcile(client: &bollard::Docker, waiters: &Waiters) -> bool {
    let awaited: Vec<String> = lock(waiters).keys().cloned().collect();
    let mut complete = true;
    for id in awaited {
        match inspect_exit(client, &id).await {
            Ok(Some(status)) => deliver(waiters, &id, status),
            Ok(None) => {}
            Err(()) => complete = false,
        }
    }
    complete
}

/// The exit of a container that is no longer running; `Ok(None)` while it is created
/// or running. A container that no longer exists was removed by force, which kills it:
/// reported as SIGKILL.
pub(super) async fn inspect_exit(
    client: &bollard::Docker,
    id: &str,
) -> Result<Option<ExitStatus>, ()> {
    match client
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(inspected) => {
            let Some(state) = inspected.state else {
                return Ok(None);
            };
            match state.status {
                Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
                    Ok(Some(exit_status(state.exit_code.unwrap_or(137))))
                }
                _ => Ok(None),
            }
        }
        Err(err) if status_code(&err) == Some(404) => Ok(Some(ExitStatus::Signal(9))),
        Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use bollard::errors::Error as BollardError;
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};

    use super::super::test_support::*;
    use crate::logs::{log_path, LogHub, ServiceLog};

    #[test]
    fn exit_codes_above_128_are_signals() {
        assert_eq!(exit_status(0), ExitStatus::Code(0));
        assert_eq!(exit_status(3), ExitStatus::Code(3));
        assert_eq!(exit_status(128), ExitStatus::Code(128));
        assert_eq!(exit_status(137), ExitStatus::Signal(9));
        assert_eq!(exit_status(143), ExitStatus::Signal(15));
        assert_eq!(exit_status(255), ExitStatus::Code(255));
        assert_eq!(exit_status(-1), ExitStatus::Code(-1));
    }

    #[test]
    fn events_are_asked_from_a_margin_before() {
        let at = UNIX_EPOCH + Duration::new(1_795_674_308, 5);
        assert_eq!(events_since(at), "1795674306.000000005");
    }

    #[tokio::test]
    async fn crash_exit_code_arrives_through_the_event_stream() -> TestResult {
        let Some(docker) =
            docker_or_skip("crash_exit_code_arrives_through_the_event_stream").await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("crash");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "job", 0, 1, LogHub::default())?;
        let volume = format!("{project}-data");
        let mut request = request(
            &project,
            "job",
            1,
            &network,
            &["--exit-after", "200", "--exit-code", "3"],
        );
        request.volumes = vec![
            format!("{volume}:/data"),
            format!("{}:/host:ro", dir.path().display()),
        ];
        let started = docker.start(&request, log.clone()).await?;
        assert_eq!(exit_within(started.exit).await?, ExitStatus::Code(3));
        tokio::time::timeout(DEADLINE, started.logs).await??;
        let lines = log_lines(&log)?;
        assert!(
            lines
                .iter()
                .any(|line| line.text.contains("exiting with 3")),
            "{lines:?}"
        );
        assert_eq!(log_path(dir.path(), "job"), log.path());

        let created = docker.client.inspect_volume(&volume).await?;
        assert_eq!(created.labels.get(LABEL_PROJECT), Some(&project));
        docker.remove(&started.id).await;
        docker.remove_volumes(&project).await;
        let gone = docker.client.inspect_volume(&volume).await;
        assert!(
            matches!(&gone, Err(err) if status_code(err) == Some(404)),
            "{gone:?}"
        );
        Ok(())
    }

    /// What the event task does after its stream broke: containers that stopped or
    /// vanished meanwhile are reported from inspection; running ones are left awaited.
    #[tokio::test]
    async fn reconcile_reports_exits_the_event_stream_missed() -> TestResult {
        let Some(docker) =
            docker_or_skip("reconcile_reports_exits_the_event_stream_missed").await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("reconcile");
        let mut cleanup = Cleanup::new(&project);
        // Unlabelled, so the running dispatcher never sees their events: only the
        // reconciliation below can report them.
        let create = |command: &[&str]| {
            let body = ContainerCreateBody {
                image: Some(IMAGE_TAG.into()),
                cmd: Some(command.iter().map(|arg| arg.to_string()).collect()),
                ..Default::default()
            };
            let client = docker.client.clone();
            async move {
                let created = client
                    .create_container(None::<CreateContainerOptions>, body)
                    .await?;
                client
                    .start_container(&created.id, None::<StartContainerOptions>)
                    .await?;
                Ok::<_, BollardError>(created.id)
            }
        };
        let exited = create(&["--exit-code", "4"]).await?;
        let running = create(&["--sleep-forever"]).await?;
        cleanup.unlabelled.extend([exited.clone(), running.clone()]);
        let stopped_by = Instant::now() + DEADLINE;
        while inspect_exit(&docker.client, &exited).await != Ok(Some(ExitStatus::Code(4))) {
            if Instant::now() > stopped_by {
                return Err("the helper did not exit".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let waiters: Waiters = Arc::new(Mutex::new(HashMap::new()));
        let mut receivers = Vec::new();
        for id in [&exited, &running, &"0123456789ab-gone".to_string()] {
            let (sender, receiver) = oneshot::channel();
            lock(&waiters).insert(id.clone(), sender);
            receivers.push(receiver);
        }
        assert!(reconcile(&docker.client, &waiters).await);
        let mut receivers = receivers.into_iter();
        let mut next = || receivers.next().ok_or("receiver missing");
        assert_eq!(next()?.await?, ExitStatus::Code(4));
        let mut still_running = next()?;
        assert!(still_running.try_recv().is_err());
        assert_eq!(next()?.await?, ExitStatus::Signal(9));
        assert_eq!(lock(&waiters).keys().collect::<Vec<_>>(), vec![&running]);
        docker.remove(&exited).await;
        docker.remove(&running).await;
        Ok(())
    }
}
