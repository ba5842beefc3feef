//! One container's life: create it (labelled, named after its generation), start it,
//! copy its output into the service's log, stop, signal or remove it, and read its
//! image's health check.
//!
//! Owns the container's configuration as the engine sees it (labels, ports, network
//! alias, restart policy). Must not decide when to stop or remove an instance, nor
//! watch for its exit: the exit comes from `events`.
//!
//! # Output
//! Each started container gets a task that follows its logs (`follow`, from the first
//! line) into the service's log through two [`LineWriter`]s, stdout and stderr apart.
//! The engine keeps a container's output from its start, so nothing printed before the
//! request is lost. The task ends when the container stops; remove a container only
//! after that task has finished (or a deadline passed), or its last lines may be gone.
//!
//! The stream asks for the engine's timestamps. If it breaks (the engine went away),
//! the task waits until the engine answers again and, unless the container is gone,
//! follows it again from the second of the latest message written, skipping the
//! messages of that second it wrote already ([`Replayed`]): what the container printed
//! while the engine was away is in the log once, after the lines before it. Timestamps
//! alone cannot tell: the engine stamps stdout and stderr apart, so a stream delivers
//! them slightly out of order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HealthStatusEnum, HostConfig,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, LogsOptions,
    StartContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::{oneshot, watch};

use super::objects::{named_volume, remove_container};
use super::{
    api_error, container_name, engine_message, report_unless_gone, status_code, ContainerError,
    ContainerRequest, Docker, EngineLink, StartedContainer, LABEL_GENERATION, LABEL_PROJECT,
    LABEL_RUN, LABEL_SERVICE, STREAM_TIMEOUT,
};
use crate::logs::{LineWriter, ServiceLog, Stream};
use crate::manifest::EngineHealthCheck;

/// Added to a stop request's timeout: the engine answers only once the container is
/// gone, which is the grace period plus the time SIGKILL and teardown take.
const STOP_REQUEST_SLACK: Duration = Duration::from_secs(30);

/// After a container's log stream broke, the pause before it is followed again (once
/// the engine answers).
const LOG_RESUME_PAUSE: Duration = Duration::from_secs(1);

impl Docker {
    /// Creates and starts one instance, and starts copying its output into `log`.
    ///
    /// The container is named `<project>-<service>-<generation>` (sanitised), labelled,
    /// never restarted by the engine, published on the requested host ports, attached
    /// to `request.network` with the service name as alias. A leftover container of the
    /// same name from another run of the same project is removed first; one that is
    /// not fleet's is an error.
    pub async fn start(
        &self,
        request: &ContainerRequest,
        log: Arc<ServiceLog>,
    ) -> Result<StartedContainer, ContainerError> {
        // The create says when the image is missing; but the named volumes come before
        // it, and a start that cannot succeed must not leave new volumes behind.
        if request
            .volumes
            .iter()
            .any(|volume| named_volume(volume).is_some())
            && !self.image_present(&request.image).await?
        {
            return Err(ContainerError::ImageMissing {
                image: request.image.clone(),
            });
        }
        self.ensure_named_volumes(request).await?;
        let name = container_name(&request.project, &request.instance, request.generation);
        let id = self.create(request, &name).await?;
        let (waiter, exit) = oneshot::channel();
        // Before start: an instance that dies at once must find its waiter.
        self.exits.register(&id, waiter);
        if let Err(err) = self
            .client
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            self.exits.forget(&id);
            self.remove(&id).await;
            return Err(api_error(&format!("cannot start container {name}"), &err));
        }
        let logs = tokio::spawn(follow_logs(
            self.client.clone().with_timeout(STREAM_TIMEOUT),
            id.clone(),
            log,
            self.link(),
        ));
        Ok(StartedContainer { id, exit, logs })
    }

    async fn create(
        &self,
        request: &ContainerRequest,
        name: &str,
    ) -> Result<String, ContainerError> {
        let body = create_body(request);
        let options = || CreateContainerOptions {
            name: Some(name.to_string()),
            platform: String::new(),
        };
        match self
            .client
            .create_container(Some(options()), body.clone())
            .await
        {
            Ok(created) => return Ok(created.id),
            Err(err) if status_code(&err) == Some(404) => {
                return Err(if self.image_present(&request.image).await? {
                    api_error(&format!("cannot create container {name}"), &err)
                } else {
                    ContainerError::ImageMissing {
                        image: request.image.clone(),
                    }
                });
            }
            Err(err) if status_code(&err) == Some(409) => {
                self.remove_stale_namesake(request, name).await?;
            }
            Err(err) => return Err(api_error(&format!("cannot create container {name}"), &err)),
        }
        self.client
            .create_container(Some(options()), body)
            .await
            .map(|created| created.id)
            .map_err(|err| api_error(&format!("cannot create container {name}"), &err))
    }

    /// Removes a container that holds `name` if it is an instance of this project from
    /// another run (generations restart at 1 in every run); refuses anything else.
    async fn remove_stale_namesake(
        &self,
        request: &ContainerRequest,
        name: &str,
    ) -> Result<(), ContainerError> {
        let existing = self
            .client
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|err| api_error(&format!("cannot inspect container {name}"), &err))?;
        let labels = existing
            .config
            .and_then(|config| config.labels)
            .unwrap_or_default();
        let ours = labels.get(LABEL_PROJECT) == Some(&request.project)
            && labels.get(LABEL_RUN) != Some(&request.run);
        if !ours {
            return Err(ContainerError::Api(format!(
                "a container named {name} already exists and is not a leftover of this \
                 project; fleet does not remove it (rename or remove it yourself)"
            )));
        }
        if let Some(id) = existing.id {
            self.remove(&id).await;
        }
        Ok(())
    }

    /// Asks the engine to stop the container: its stop signal, then SIGKILL after
    /// `timeout` (rounded up to whole seconds, the engine's unit). Returns when the
    /// container has stopped. A container that is already stopped or gone is fine.
    pub async fn stop(&self, id: &str, timeout: Duration) {
        let seconds = whole_seconds(timeout);
        let options = StopContainerOptions {
            t: Some(seconds),
            signal: None,
        };
        let client = self
            .client
            .clone()
            .with_timeout(timeout + Duration::from_secs(1) + STOP_REQUEST_SLACK);
        if let Err(err) = client.stop_container(id, Some(options)).await {
            report_unless_gone("stop", id, &err);
        }
    }

    /// Sends `signal` (a name like `SIGHUP`, or a number) to the container's main
    /// process. A container that is not running is fine.
    pub async fn signal(&self, id: &str, signal: &str) {
        let options = KillContainerOptions {
            signal: signal.to_string(),
        };
        if let Err(err) = self.client.kill_container(id, Some(options)).await {
            report_unless_gone("signal", id, &err);
        }
    }

    /// SIGKILLs the container's main process (and so the container).
    pub async fn kill(&self, id: &str) {
        self.signal(id, "SIGKILL").await;
    }

    /// Removes the container, running or not, with its anonymous volumes. A container
    /// that is already gone (or being removed) is fine.
    pub async fn remove(&self, id: &str) {
        remove_container(&self.client, id).await;
    }

    /// Removes a stopped container in a task of its own and returns at once.
    ///
    /// Removing a container deletes its writable layer, which takes the engine a few
    /// hundred milliseconds, and nothing else needs to wait for it: the container's
    /// published ports and its network endpoint are released when it stops, and its
    /// successor has a name of its own. A crashed instance's replacement is created
    /// meanwhile, and a dependency's stop begins without it. What does need it gone
    /// (removing the project's network, which the engine refuses while any container
    /// is attached, stopped or not) waits with [`Docker::removals_done`]. Should fleet
    /// die first, the keeper removes the run's containers by label.
    pub fn remove_in_background(&self, id: &str) {
        self.removals.send_modify(|count| *count += 1);
        let pending = PendingRemoval(self.removals.clone());
        let client = self.client.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            remove_container(&client, &id).await;
            drop(pending);
        });
    }

    /// Waits until every removal [`Docker::remove_in_background`] began is over.
    pub async fn removals_done(&self) {
        let mut removals = self.removals.subscribe();
        // The sender lives in `self`, so the channel cannot close meanwhile.
        let _ = removals.wait_for(|count| *count == 0).await;
    }

    /// The container's address on `network`, where its own ports are reached without
    /// Docker's proxy (which accepts on a published port even when nothing listens).
    pub async fn address_on(&self, id: &str, network: &str) -> Option<std::net::IpAddr> {
        let inspected = self
            .client
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let networks = inspected.network_settings?.networks?;
        networks.get(network)?.ip_address.as_deref()?.parse().ok()
    }

    /// The state of the image's `HEALTHCHECK`: `starting`, `healthy` or `unhealthy`;
    /// `None` when the image has none or the container is gone.
    pub async fn health_status(&self, id: &str) -> Option<String> {
        let inspected = self
            .client
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .ok()?;
        match inspected.state?.health?.status? {
            HealthStatusEnum::STARTING => Some("starting".into()),
            HealthStatusEnum::HEALTHY => Some("healthy".into()),
            HealthStatusEnum::UNHEALTHY => Some("unhealthy".into()),
            HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
        }
    }
}

/// Counts one background removal until dropped, so a removal task that ends any
/// way at all (even cancelled with the runtime) is no longer waited for.
struct PendingRemoval(Arc<watch::Sender<usize>>);

impl Drop for PendingRemoval {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count = count.saturating_sub(1));
    }
}

fn whole_seconds(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

fn create_body(request: &ContainerRequest) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_PROJECT.to_string(), request.project.clone()),
        (LABEL_SERVICE.to_string(), request.instance.clone()),
        (LABEL_GENERATION.to_string(), request.generation.to_string()),
        (LABEL_RUN.to_string(), request.run.clone()),
    ]);
    let mut exposed_ports = Vec::new();
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &request.ports {
        let key = format!("{}/tcp", port.container);
        exposed_ports.push(key.clone());
        port_bindings
            .entry(key)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(port.host_ip.clone()),
                host_port: Some(port.host.to_string()),
            });
    }
    let host_config = HostConfig {
        binds: (!request.volumes.is_empty()).then(|| request.volumes.clone()),
        port_bindings: Some(port_bindings),
        // fleet restarts instances itself (new generation, backoff); the engine must not.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        network_mode: Some(request.network.clone()),
        // Unset rather than false: the engine's own default (`--init` in daemon.json)
        // then still applies to services that do not ask.
        init: request.init.then_some(true),
        ..Default::default()
    };
    let endpoint = EndpointSettings {
        aliases: Some(vec![request.service.clone()]),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(request.image.clone()),
        cmd: request.command.clone(),
        env: Some(
            request
                .env
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect(),
        ),
        labels: Some(labels),
        exposed_ports: Some(exposed_ports),
        stop_signal: Some(request.stop_signal.clone()),
        stop_timeout: Some(i64::from(whole_seconds(request.stop_timeout))),
        healthcheck: request.healthcheck.as_ref().map(health_config),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(request.network.clone(), endpoint)])),
        }),
        ..Default::default()
    }
}

/// The engine's form of a health check: its durations are nanoseconds.
fn health_config(check: &EngineHealthCheck) -> HealthConfig {
    let nanos = |duration: Duration| i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
    HealthConfig {
        test: Some(check.engine_test()),
        interval: Some(nanos(check.interval)),
        timeout: Some(nanos(check.timeout)),
        retries: Some(i64::from(check.retries)),
        start_period: Some(nanos(check.start_period)),
        ..Default::default()
    }
}

/// Copies the container's output into its service log until the container stops,
/// across an engine that goes away and comes back: see "Output" in the module docs.
async fn follow_logs(
    client: bollard::Docker,
    id: String,
    log: Arc<ServiceLog>,
    mut link: watch::Receiver<EngineLink>,
) {
    let mut stdout = LineWriter::new(log.clone(), Stream::Stdout);
    let mut stderr = LineWriter::new(log.clone(), Stream::Stderr);
    let mut replayed = Replayed::default();
    loop {
        let since = replayed.resume_from();
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            since,
            until: 0,
            timestamps: true,
            tail: "all".into(),
        };
        let mut frames = client.logs(&id, Some(options));
        let mut broke = None;
        while let Some(frame) = frames.next().await {
            let (writer, message, is_stderr) = match frame {
                // `Console` is the output of a container with a TTY: one stream.
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    (&mut stdout, message, false)
                }
                Ok(LogOutput::StdErr { message }) => (&mut stderr, message, true),
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(err) => {
                    broke = Some(engine_message(&err));
                    break;
                }
            };
            let (stamp, text) = split_stamp(&message);
            if replayed.written_already(stamp, is_stderr, text) {
                continue;
            }
            writer.push(text);
        }
        // The stream ended: the container stopped, and its output is complete.
        let Some(reason) = broke else { break };
        replayed.stream_broke();
        // It broke: wait for the engine to answer, then follow again from where it
        // broke, unless the container is gone. The pause keeps a stream that breaks at
        // once from spinning.
        tokio::time::sleep(LOG_RESUME_PAUSE).await;
        if link
            .wait_for(|link| *link == EngineLink::Reachable)
            .await
            .is_err()
        {
            // The engine handle is gone: fleet is shutting down.
            break;
        }
        match client
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            Err(err) if status_code(&err) == Some(404) => {
                log.write_fleet_line(&format!("the container's output stopped early: {reason}"));
                break;
            }
            _ => {}
        }
    }
    stdout.finish();
    stderr.finish();
}

/// Which messages a log stream followed again delivers a second time. The engine
/// resumes from a whole second (`since`), so the messages written of the latest second
/// are remembered (a hash of stamp, stream and text, with a count for identical ones)
/// and skipped once each when they come again. Only then: in a stream's first pass, a
/// message stamped before the one written last is simply late, and is written.
#[derive(Default)]
struct Replayed {
    /// The latest second any written message was stamped with.
    second: Option<i64>,
    /// The messages written that were stamped in `second`.
    written: HashMap<u64, u32>,
    /// After a break: the messages of `second` the new stream will deliver again.
    expected: HashMap<u64, u32>,
}

impl Replayed {
    /// Where a stream (followed again) starts: the engine's `since`, in whole seconds.
    fn resume_from(&self) -> i32 {
        self.second
            .and_then(|second| i32::try_from(second).ok())
            .unwrap_or(0)
    }

    fn stream_broke(&mut self) {
        // The written ones of that second stay counted too: a second break replays them
        // once more.
        self.expected = self.written.clone();
    }

    /// Whether a message was written already (and is to be skipped); else counts it as
    /// written now.
    fn written_already(&mut self, stamp: Option<&str>, is_stderr: bool, text: &[u8]) -> bool {
        let Some((stamp, second)) = stamp.and_then(|stamp| Some((stamp, stamp_seconds(stamp)?)))
        else {
            return false;
        };
        let key = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (stamp, is_stderr, text).hash(&mut hasher);
            hasher.finish()
        };
        if let Some(count) = self.expected.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.expected.remove(&key);
            }
            return true;
        }
        match self.second {
            Some(latest) if second < latest => {}
            Some(latest) if second == latest => *self.written.entry(key).or_default() += 1,
            _ => {
                self.second = Some(second);
                self.written.clear();
                self.written.insert(key, 1);
            }
        }
        false
    }
}

/// Splits the engine's timestamp (`2006-01-02T15:04:05.000000000Z `, fixed width, so
/// later stamps sort after earlier ones as text) off a log message.
fn split_stamp(message: &[u8]) -> (Option<&str>, &[u8]) {
    let Some(space) = message.iter().take(40).position(|byte| *byte == b' ') else {
        return (None, message);
    };
    match std::str::from_utf8(&message[..space]) {
        Ok(stamp) if stamp.ends_with('Z') && stamp.starts_with(|c: char| c.is_ascii_digit()) => {
            (Some(stamp), &message[space + 1..])
        }
        _ => (None, message),
    }
}

/// The whole seconds since the epoch of an engine timestamp: where a stream followed
/// again starts (the engine's `since` is in seconds).
fn stamp_seconds(stamp: &str) -> Option<i64> {
    // `2006-01-02T15:04:05.000` and a `Z` is the log files' own format.
    let millis = crate::logs::parse_timestamp(&format!("{}Z", stamp.get(..23)?))?;
    i64::try_from(millis / 1000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;
    use std::time::Instant;

    use bollard::query_parameters::ListNetworksOptions;

    use super::super::test_support::*;
    use crate::event::ExitStatus;
    use crate::logs::LogHub;
    use crate::manifest::{ImageBuild, PortMapping};

    /// Found by CI: stdout and stderr are stamped apart, so the first stream delivered
    /// a stderr line stamped before the stdout line written last, and the old filter
    /// (skip whatever is not later than the last stamp) dropped it.
    #[test]
    fn late_lines_are_written_and_only_replayed_ones_are_skipped() {
        const OUT: bool = false;
        const ERR: bool = true;
        let mut replayed = Replayed::default();
        let first = [
            ("2026-12-01T23:30:32.036000000Z", OUT, "listening"),
            ("2026-12-01T23:30:32.037000000Z", OUT, "started"),
            ("2026-12-01T23:30:32.035000000Z", ERR, "err 1"),
            ("2026-12-01T23:30:32.038000000Z", ERR, "err 2"),
            ("2026-12-01T23:30:32.038000000Z", ERR, "err 2"),
        ];
        for (stamp, is_stderr, text) in first {
            assert!(
                !replayed.written_already(Some(stamp), is_stderr, text.as_bytes()),
                "{text} is new"
            );
        }
        assert!(!replayed.written_already(None, OUT, b"no stamp"));
        assert_eq!(replayed.resume_from(), 1_796_167_832);

        // The engine went away; the stream from second 32 delivers it all again, then
        // what came while it was away.
        replayed.stream_broke();
        for (stamp, is_stderr, text) in first {
            assert!(
                replayed.written_already(Some(stamp), is_stderr, text.as_bytes()),
                "{text} was written"
            );
        }
        let new = [
            ("2026-12-01T23:30:32.038000000Z", ERR, "err 2"),
            ("2026-12-01T23:30:32.900000000Z", OUT, "while away"),
            ("2026-12-01T23:30:33.100000000Z", OUT, "after"),
        ];
        for (stamp, is_stderr, text) in new {
            assert!(
                !replayed.written_already(Some(stamp), is_stderr, text.as_bytes()),
                "{text} is new"
            );
        }
        // A second break replays the latest second only.
        replayed.stream_broke();
        assert_eq!(replayed.resume_from(), 1_796_167_833);
        assert!(replayed.written_already(Some("2026-12-01T23:30:33.100000000Z"), OUT, b"after"));
    }

    #[test]
    fn engine_timestamps_are_split_off_and_give_where_to_follow_again() {
        let message = b"2026-11-26T06:25:08.123456789Z box listening on 0.0.0.0:8080\n";
        let (stamp, text) = split_stamp(message);
        assert_eq!(stamp, Some("2026-11-26T06:25:08.123456789Z"));
        assert_eq!(text, b"box listening on 0.0.0.0:8080\n");
        assert_eq!(stamp.and_then(stamp_seconds), Some(1_795_674_308));
        // Fixed width: later is greater as text.
        assert!("2026-11-26T06:25:08.123456789Z" < "2026-11-26T06:25:08.200000000Z");
        // Output without the engine's stamp is written as it is.
        assert_eq!(
            split_stamp(b"no stamp here\n"),
            (None, &b"no stamp here\n"[..])
        );
        assert_eq!(split_stamp(b"plain\n"), (None, &b"plain\n"[..]));
    }

    #[test]
    fn stop_timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(whole_seconds(Duration::from_secs(10)), 10);
    }

    #[tokio::test]
    async fn published_port_answers_and_output_lands_in_the_log() -> TestResult {
        let Some(docker) =
            docker_or_skip("published_port_answers_and_output_lands_in_the_log").await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("port");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        assert_eq!(docker.ensure_network(&project).await?, network, "reused");
        let logs_dir = tempfile::tempdir()?;
        let log = ServiceLog::open(logs_dir.path(), "web", 0, 1, LogHub::default())?;

        let mut samples = Vec::new();
        let mut start_calls = Vec::new();
        for generation in 1..=3 {
            let host_port = free_port()?;
            let mut request = request(
                &project,
                "web",
                generation,
                &network,
                &["--port", "9000", "--print-stderr", "2"],
            );
            request.ports = vec![PortMapping {
                host_ip: "127.0.0.1".into(),
                host: host_port,
                container: PUBLISHED_PORT,
                host_last: None,
            }];
            let started_at = Instant::now();
            let started = docker.start(&request, log.clone()).await?;
            start_calls.push(started_at.elapsed());
            let forwarder = start_forwarder(&docker, &project, &started.id).await?;
            let answer = loop {
                if let Some(answer) = http_get(host_port, "/health").await
                    && answer.starts_with("HTTP/1.1 200")
                {
                    break answer;
                }
                if started_at.elapsed() > DEADLINE {
                    return Err(
                        format!("port {host_port} did not answer within {DEADLINE:?}").into(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            samples.push(started_at.elapsed());
            assert!(answer.contains("Connection: close"), "{answer}");

            let inspected = docker
                .client
                .inspect_container(&started.id, None::<InspectContainerOptions>)
                .await?;
            assert_eq!(
                inspected.name.as_deref(),
                Some(&*format!("/{project}-web-{generation}"))
            );
            let labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
            assert_eq!(labels.get(LABEL_GENERATION), Some(&generation.to_string()));
            assert_eq!(labels.get(LABEL_RUN).map(String::as_str), Some("test-run"));

            docker.kill(&started.id).await;
            assert_eq!(exit_within(started.exit).await?, ExitStatus::Signal(9));
            tokio::time::timeout(DEADLINE, started.logs).await??;
            docker.remove(&forwarder).await;
            docker.remove(&started.id).await;
        }
        crate::note!(
            "measure: start() returning: {start_calls:?}, median {:?}",
            median(start_calls.clone())
        );
        crate::note!(
            "measure: start() to the published port answering /health (includes starting \
             the test's forwarder container): {samples:?}, median {:?}",
            median(samples.clone())
        );

        let lines = log_lines(&log)?;
        assert!(
            lines.iter().any(|line| line.stream == Stream::Stdout
                && line.text.starts_with("helper listening on 127.0.0.1:9000")),
            "{lines:?}"
        );
        let stderr = lines
            .iter()
            .filter(|line| line.stream == Stream::Stderr)
            .count();
        assert_eq!(stderr, 3 * 2, "two stderr lines per instance: {lines:?}");

        docker.remove_network(&project).await;
        let networks = docker
            .client
            .list_networks(None::<ListNetworksOptions>)
            .await?;
        assert!(!networks
            .iter()
            .any(|n| n.name.as_deref() == Some(&*network)));
        Ok(())
    }

    #[tokio::test]
    async fn stop_kills_a_container_that_ignores_its_stop_signal_after_the_timeout() -> TestResult {
        let Some(docker) =
            docker_or_skip("stop_kills_a_container_that_ignores_its_stop_signal_after_the_timeout")
                .await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("stop");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "stubborn", 0, 1, LogHub::default())?;
        let request = request(&project, "stubborn", 1, &network, &["--ignore-sigterm"]);
        let started = docker.start(&request, log.clone()).await?;
        // Wait until the helper runs (and so ignores SIGTERM) before stopping it.
        let ready_by = Instant::now() + DEADLINE;
        while !log_lines(&log)?
            .iter()
            .any(|line| line.text.starts_with("helper started"))
        {
            if Instant::now() > ready_by {
                return Err("the helper never said it started".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stopping = Instant::now();
        docker.stop(&started.id, Duration::from_secs(1)).await;
        let took = stopping.elapsed();
        assert_eq!(exit_within(started.exit).await?, ExitStatus::Signal(9));
        assert!(took >= Duration::from_millis(900), "stopped after {took:?}");
        crate::note!(
            "measure: stop() of a SIGTERM-ignoring container with a 1 s timeout: {took:?}"
        );
        // Stopping, signalling and removing a stopped or removed container is quiet.
        docker.stop(&started.id, Duration::from_secs(1)).await;
        docker.signal(&started.id, "SIGTERM").await;
        docker.remove(&started.id).await;
        docker.remove(&started.id).await;
        docker.kill(&started.id).await;
        Ok(())
    }

    /// The engine stamps each line when its copier for that stream reads it, but writes
    /// both streams' lines to one file in the order they arrive, so a stderr line can
    /// follow a stdout line stamped after it. The log follower took every line stamped
    /// no later than the last one written for a replay and dropped it (seen as a lost
    /// first stderr line in `published_port_answers_and_output_lands_in_the_log`).
    #[tokio::test]
    async fn a_line_stamped_before_one_of_the_other_stream_delivered_ahead_of_it_is_kept(
    ) -> TestResult {
        let Some(docker) = docker_or_skip(
            "a_line_stamped_before_one_of_the_other_stream_delivered_ahead_of_it_is_kept",
        )
        .await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("streams");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "chatty", 0, 1, LogHub::default())?;
        const LINES: usize = 3000;
        let count = LINES.to_string();
        let request = request(
            &project,
            "chatty",
            1,
            &network,
            &[
                "--print",
                &count,
                "--print-stderr",
                &count,
                "--exit-code",
                "0",
            ],
        );
        let started = docker.start(&request, log.clone()).await?;
        assert_eq!(exit_within(started.exit).await?, ExitStatus::Code(0));
        tokio::time::timeout(DEADLINE, started.logs).await??;
        docker.remove(&started.id).await;
        let lines = log_lines(&log)?;
        for (stream, prefix) in [(Stream::Stdout, "line "), (Stream::Stderr, "err  ")] {
            let numbers: Vec<usize> = lines
                .iter()
                .filter(|line| line.stream == stream && line.text.starts_with(prefix))
                .filter_map(|line| line.text.get(5..15)?.parse().ok())
                .collect();
            let expected: Vec<usize> = (1..=LINES).collect();
            assert!(
                numbers == expected,
                "{stream:?}: {} of {LINES} lines, first missing: {:?}",
                numbers.len(),
                expected.iter().find(|n| !numbers.contains(n))
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn removals_done_waits_for_every_background_removal_and_the_network_can_go_then(
    ) -> TestResult {
        let Some(docker) = docker_or_skip(
            "removals_done_waits_for_every_background_removal_and_the_network_can_go_then",
        )
        .await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("removals");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "svc", 0, 1, LogHub::default())?;
        let mut started = Vec::new();
        for generation in 1..=3 {
            let request = request(&project, "svc", generation, &network, &["--sleep-forever"]);
            started.push(docker.start(&request, log.clone()).await?);
        }
        // Nothing is under way: no wait at all.
        tokio::time::timeout(DEADLINE, docker.removals_done()).await?;
        let mut ids = Vec::new();
        for container in started {
            docker.kill(&container.id).await;
            assert_eq!(exit_within(container.exit).await?, ExitStatus::Signal(9));
            tokio::time::timeout(DEADLINE, container.logs).await??;
            docker.remove_in_background(&container.id);
            ids.push(container.id);
        }
        tokio::time::timeout(DEADLINE, docker.removals_done()).await?;
        for id in &ids {
            assert!(!container_exists(&docker, id).await, "{id} is still there");
        }
        // The engine refuses to remove a network a container is attached to, stopped
        // or not: with the removals done, it goes.
        docker.remove_network(&project).await;
        let networks = docker
            .client
            .list_networks(None::<ListNetworksOptions>)
            .await?;
        assert!(!networks
            .iter()
            .any(|n| n.name.as_deref() == Some(&*network)));
        Ok(())
    }

    #[tokio::test]
    async fn health_status_follows_the_image_healthcheck() -> TestResult {
        let Some(docker) = docker_or_skip("health_status_follows_the_image_healthcheck").await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let context = tempfile::tempdir()?;
        fs::write(
            context.path().join("Dockerfile"),
            format!(
                "FROM {IMAGE_TAG}\nHEALTHCHECK --interval=1s --timeout=5s CMD [\"/helper\", \"--exit-code\", \"0\"]\n"
            ),
        )?;
        let build = ImageBuild {
            context: context.path().to_path_buf(),
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::new(),
        };
        docker
            .build_image(&build, HEALTH_IMAGE_TAG, test_labels(), |_| {})
            .await?;
        let project = unique_project("health");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "db", 0, 1, LogHub::default())?;

        let plain = request(&project, "plain", 1, &network, &["--sleep-forever"]);
        let plain = docker.start(&plain, log.clone()).await?;
        let mut request = request(&project, "db", 1, &network, &["--sleep-forever"]);
        request.image = HEALTH_IMAGE_TAG.into();
        let started = docker.start(&request, log.clone()).await?;
        let mut seen = Vec::new();
        let healthy_by = Instant::now() + DEADLINE;
        loop {
            let status = docker.health_status(&started.id).await;
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if status.as_deref() == Some("healthy") {
                break;
            }
            if Instant::now() > healthy_by {
                return Err(format!("never healthy: {seen:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            seen.first(),
            Some(&Some("starting".to_string())),
            "{seen:?}"
        );
        assert_eq!(docker.health_status(&plain.id).await, None);
        docker.remove(&started.id).await;
        docker.remove(&plain.id).await;
        assert_eq!(docker.health_status(&started.id).await, None);
        Ok(())
    }

    #[tokio::test]
    async fn a_health_check_from_the_manifest_is_run_by_the_engine() -> TestResult {
        let Some(docker) =
            docker_or_skip("a_health_check_from_the_manifest_is_run_by_the_engine").await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("enginehealth");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "db", 0, 1, LogHub::default())?;
        let check = |argv: &[&str]| EngineHealthCheck {
            test: crate::manifest::CommandLine::Argv(
                argv.iter().map(|arg| arg.to_string()).collect(),
            ),
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            retries: 1,
            start_period: Duration::ZERO,
        };
        // The test image has no HEALTHCHECK: any verdict comes from the request's.
        let mut passing = request(&project, "db", 1, &network, &["--sleep-forever"]);
        passing.healthcheck = Some(check(&["/helper", "--exit-code", "0"]));
        let mut failing = request(&project, "sick", 1, &network, &["--sleep-forever"]);
        failing.healthcheck = Some(check(&["/helper", "--exit-code", "1"]));
        let passing = docker.start(&passing, log.clone()).await?;
        let failing = docker.start(&failing, log.clone()).await?;
        let decided_by = Instant::now() + DEADLINE;
        let mut statuses = (None, None);
        while Instant::now() < decided_by {
            statuses = (
                docker.health_status(&passing.id).await,
                docker.health_status(&failing.id).await,
            );
            if statuses.0.as_deref() == Some("healthy")
                && statuses.1.as_deref() == Some("unhealthy")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            (statuses.0.as_deref(), statuses.1.as_deref()),
            (Some("healthy"), Some("unhealthy"))
        );
        docker.remove(&passing.id).await;
        docker.remove(&failing.id).await;
        Ok(())
    }

    #[tokio::test]
    async fn missing_image_without_build_is_image_missing() -> TestResult {
        let Some(docker) = docker_or_skip("missing_image_without_build_is_image_missing").await?
        else {
            return Ok(());
        };
        let project = unique_project("missing");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "ghost", 0, 1, LogHub::default())?;
        let mut request = request(&project, "ghost", 1, &network, &[]);
        request.image = "fleet-test/absent:never-built".into();
        assert!(!docker.image_present(&request.image).await?);
        match docker.start(&request, log).await {
            Err(ContainerError::ImageMissing { image }) => assert_eq!(image, request.image),
            other => return Err(format!("expected ImageMissing, got {other:?}").into()),
        }
        Ok(())
    }
}
