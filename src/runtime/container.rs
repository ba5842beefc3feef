//! Docker containers through the engine's API (bollard): build images, create, start,
//! stop, signal, kill and remove containers, follow their output, see them exit, and
//! sweep what a crashed run left behind.
//!
//! Owns: every call fleet makes to the Docker engine. It never runs the `docker` CLI,
//! never pulls from a registry (a missing image is [`ContainerError::ImageMissing`]),
//! and never touches a Docker object that does not carry fleet's labels: everything it
//! creates is labelled `fleet.project` (containers also `fleet.service`,
//! `fleet.generation`, `fleet.run`), and every listing it removes from is filtered by
//! those labels. It makes no policy decisions: when to stop, kill, restart or sweep is
//! the service runner's and the supervisor's call.
//!
//! # Theory of operation: exits
//! Exits come from the engine's event stream, not from polling or one `wait` request
//! per container. [`Docker::connect`] starts one task that subscribes to `die` events
//! of containers labelled `fleet.project` and hands each exit code to the waiter
//! registered under that container id. [`Docker::start`] registers the waiter after
//! `create` and before `start`, so an instance that dies at once is never reported
//! before its owner is known.
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
//! The engine reports a container whose main process was killed by signal N as exit
//! code 128 + N (137 for SIGKILL). Codes 129..=159 are mapped to
//! [`ExitStatus::Signal`], as the process runtime reports a killed group, so the
//! runner, the TUI and `fleet ps` say "killed by SIGKILL" for both kinds of service.
//!
//! # Output
//! Each started container gets a task that follows its logs (`follow`, from the first
//! line) into the service's log through two [`LineWriter`]s, stdout and stderr apart.
//! The engine keeps a container's output from its start, so nothing printed before the
//! request is lost. The task ends when the container stops; remove a container only
//! after that task has finished (or a deadline passed), or its last lines may be gone.
//!
//! # Build contexts
//! The context folder is sent as a tar stream, written by a blocking thread while the
//! engine reads it. `.dockerignore` is honoured for the common cases: comments, `*`,
//! `?`, `[...]`, `**`, leading `/`, and `!` exceptions (the last matching line wins);
//! a pattern that matches a folder excludes everything under it. The Dockerfile and
//! `.dockerignore` are always sent, as the Docker CLI does. Files keep their mode and
//! mtime; owners are set to root, as the Docker CLI does.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointSettings, EventMessage,
    HealthStatusEnum, HostConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateOptions,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, EventsOptions, InspectContainerOptions,
    KillContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    LogsOptions, RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions,
    StopContainerOptions,
};
use futures_util::{StreamExt, TryStreamExt};
use globset::{GlobBuilder, GlobMatcher};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::event::ExitStatus;
use crate::logs::{LineWriter, ServiceLog, Stream};
use crate::manifest::{ImageBuild, PortMapping};

/// Label on everything fleet creates: the project it belongs to.
pub const LABEL_PROJECT: &str = "fleet.project";
/// Label on containers: the service an instance runs.
pub const LABEL_SERVICE: &str = "fleet.service";
/// Label on containers: the instance's generation.
pub const LABEL_GENERATION: &str = "fleet.generation";
/// Label on containers: the supervisor run that created it (what the keeper removes).
pub const LABEL_RUN: &str = "fleet.run";

/// The socket used when `DOCKER_HOST` is not set.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Docker API 1.41 is Docker 20.10 (2020): the oldest engine fleet is tested against.
const MIN_API_VERSION: (u32, u32) = (1, 41);
/// How long `connect` waits for the engine to answer: a local engine answers in
/// milliseconds, and `fleet up` should not hang for bollard's default two minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Request timeout for streams (events, logs, builds). bollard's timeout covers the
/// wait for the response headers, and the engine sends the headers of an event stream
/// only with its first event, so a quiet hour must not count as a timeout.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// Added to a stop request's timeout: the engine answers only once the container is
/// gone, which is the grace period plus the time SIGKILL and teardown take.
const STOP_REQUEST_SLACK: Duration = Duration::from_secs(30);
/// Events are replayed from this long before the last event seen (or `connect`), so a
/// `die` that happened around that moment is not missed. Replays are harmless: a
/// waiter is served once.
const EVENT_REPLAY_MARGIN: Duration = Duration::from_secs(2);
/// Pause before re-opening a broken event stream, and between attempts to inspect
/// awaited containers while the engine is away.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
/// Build context chunks sent to the engine: large enough that a big context costs few
/// channel hand-offs, small enough that the queue below stays a few MiB.
const CONTEXT_CHUNK: usize = 256 * 1024;
/// Chunks written ahead of the engine reading them.
const CONTEXT_QUEUE: usize = 8;
/// How long the keeper's blocking removal may take in all before it gives up.
const KEEPER_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub enum ContainerError {
    /// The engine cannot be reached, or is too old.
    Unreachable { socket: String, reason: String },
    /// The image is not present locally and there is no build to make it.
    ImageMissing { image: String },
    /// An image build failed; `reason` is the engine's message.
    Build { reason: String },
    /// Any other engine error, with what fleet was doing.
    Api(String),
}

impl std::fmt::Display for ContainerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContainerError::Unreachable { socket, reason } => {
                write!(f, "cannot reach the Docker engine at {socket}: {reason}")
            }
            ContainerError::ImageMissing { image } => write!(
                f,
                "image `{image}` is not present locally and the service has no `build`; \
                 fleet does not pull from registries (pull or build it yourself first)"
            ),
            ContainerError::Build { reason } => write!(f, "image build failed: {reason}"),
            ContainerError::Api(message) => write!(f, "Docker: {message}"),
        }
    }
}

impl std::error::Error for ContainerError {}

/// One container instance to create and start.
#[derive(Debug, Clone)]
pub struct ContainerRequest {
    pub project: String,
    pub service: String,
    pub generation: u64,
    /// The supervisor run id; the keeper removes the containers of its run.
    pub run: String,
    pub image: String,
    /// Overrides the image's command (`CMD`); the entrypoint stays.
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub ports: Vec<PortMapping>,
    /// `/abs/host:container[:ro]` binds or `name:container[:ro]` named volumes. Named
    /// volumes are used by the name given; fleet creates (and labels) the missing ones.
    pub volumes: Vec<String>,
    /// The network to join (from [`Docker::ensure_network`]); the service name is the
    /// instance's alias on it.
    pub network: String,
    /// A signal name (`SIGTERM`) the engine sends on stop.
    pub stop_signal: String,
    /// The container's default grace period (used by the engine's own shutdown too).
    pub stop_timeout: Duration,
}

/// A started container: its id, its exit, and the task copying its output.
#[derive(Debug)]
pub struct StartedContainer {
    pub id: String,
    /// Resolves with the container's exit; an error means the Docker handle was dropped.
    pub exit: oneshot::Receiver<ExitStatus>,
    /// Ends when the container stops and its last output is written.
    pub logs: JoinHandle<()>,
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<ExitStatus>>>>;

/// The exit waiters and the event task that serves them. Dropped with the last
/// [`Docker`] clone, which stops the task and so fails every pending exit receiver.
struct ExitDispatcher {
    waiters: Waiters,
    task: tokio::task::AbortHandle,
}

impl Drop for ExitDispatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ExitDispatcher {
    fn register(&self, id: &str, waiter: oneshot::Sender<ExitStatus>) {
        lock(&self.waiters).insert(id.to_string(), waiter);
    }

    fn forget(&self, id: &str) {
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

/// Handle to the Docker engine: cheap to clone, shared by every container runner.
#[derive(Clone)]
pub struct Docker {
    client: bollard::Docker,
    /// Where the engine was reached, for error messages.
    socket: Arc<str>,
    exits: Arc<ExitDispatcher>,
}

impl Docker {
    /// Connects to the engine (`DOCKER_HOST`, else `/var/run/docker.sock`), checks that
    /// it answers and is new enough, and starts following container exits. Must be
    /// called inside the tokio runtime.
    pub async fn connect() -> Result<Docker, ContainerError> {
        let connected_at = SystemTime::now();
        let (client, socket) = connect_client(docker_host_from_env()).await?;
        let waiters: Waiters = Arc::new(Mutex::new(HashMap::new()));
        let task = tokio::spawn(follow_exits(
            client.clone().with_timeout(STREAM_TIMEOUT),
            waiters.clone(),
            connected_at,
        ));
        Ok(Docker {
            client,
            socket: Arc::from(socket),
            exits: Arc::new(ExitDispatcher {
                waiters,
                task: task.abort_handle(),
            }),
        })
    }

    /// Where the engine was reached (`/var/run/docker.sock` or `DOCKER_HOST`).
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The project's bridge network `fleet-<project>`, created (labelled) if missing.
    /// Returns its name, to put in [`ContainerRequest::network`].
    pub async fn ensure_network(&self, project: &str) -> Result<String, ContainerError> {
        let name = network_name(project);
        if self.network_exists(&name).await? {
            return Ok(name);
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(
                LABEL_PROJECT.to_string(),
                project.to_string(),
            )])),
            ..Default::default()
        };
        match self.client.create_network(request).await {
            Ok(_) => Ok(name),
            // Created meanwhile by someone else (another fleet command of the project).
            Err(err) if status_code(&err) == Some(409) => Ok(name),
            Err(err) => Err(api_error(&format!("cannot create network {name}"), &err)),
        }
    }

    async fn network_exists(&self, name: &str) -> Result<bool, ContainerError> {
        // The engine's `name` filter matches substrings, so check the exact name.
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([(
                "name".to_string(),
                vec![name.to_string()],
            )])),
        };
        let networks = self
            .client
            .list_networks(Some(options))
            .await
            .map_err(|err| api_error("cannot list networks", &err))?;
        Ok(networks
            .iter()
            .any(|network| network.name.as_deref() == Some(name)))
    }

    /// Whether the image is present locally.
    pub async fn image_present(&self, image: &str) -> Result<bool, ContainerError> {
        match self.client.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(err) if status_code(&err) == Some(404) => Ok(false),
            Err(err) => Err(api_error(&format!("cannot inspect image {image}"), &err)),
        }
    }

    /// Builds `build` into `tag` with the classic builder, passing each output line to
    /// `progress` as it arrives. Never pulls unless the Dockerfile's `FROM` needs an
    /// image that is not present, in which case the engine tries and its error is the
    /// build's failure.
    pub async fn build_image(
        &self,
        build: &ImageBuild,
        tag: &str,
        labels: HashMap<String, String>,
        mut progress: impl FnMut(&str) + Send,
    ) -> Result<(), ContainerError> {
        let options = BuildImageOptions {
            dockerfile: build.dockerfile.clone(),
            t: Some(tag.to_string()),
            buildargs: Some(build.args.clone().into_iter().collect()),
            labels: Some(labels),
            // Intermediate containers go even when a step fails: fleet leaves no
            // unlabelled objects behind.
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let (chunks, receiver) = mpsc::channel::<io::Result<Vec<u8>>>(CONTEXT_QUEUE);
        let context = build.context.clone();
        let dockerfile = build.dockerfile.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let result = write_context(
                &context,
                &dockerfile,
                io::BufWriter::with_capacity(CONTEXT_CHUNK, ChannelWriter(chunks.clone())),
            );
            if let Err(err) = &result {
                // Fails the request body, so the engine stops waiting for the rest.
                let _ = chunks.blocking_send(Err(io::Error::new(err.kind(), err.to_string())));
            }
            result
        });
        let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (chunk, receiver))
        })
        .map_ok(Into::into);

        let client = self.client.clone().with_timeout(STREAM_TIMEOUT);
        let mut failure = None;
        {
            let mut output =
                client.build_image(options, None, Some(bollard::body_try_stream(body)));
            while let Some(item) = output.next().await {
                match item {
                    Ok(info) => {
                        for text in [info.stream, info.status].into_iter().flatten() {
                            for line in text.lines().map(str::trim_end) {
                                if !line.is_empty() {
                                    progress(line);
                                }
                            }
                        }
                    }
                    Err(err) => {
                        let message = engine_message(&err);
                        progress(&message);
                        failure = Some(message);
                        break;
                    }
                }
            }
            // Dropping the request here lets the writer thread see the channel close
            // if the engine gave up before reading the whole context.
        }
        let context_error = match writer.await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(err) => Some(format!("the context writer failed: {err}")),
        };
        match (context_error, failure) {
            (Some(err), _) if err != BROKEN_CONTEXT_PIPE => Err(ContainerError::Build {
                reason: format!(
                    "cannot send the build context {}: {err}",
                    build.context.display()
                ),
            }),
            (_, Some(reason)) => Err(ContainerError::Build { reason }),
            (Some(err), None) => Err(ContainerError::Build { reason: err }),
            (None, None) => Ok(()),
        }
    }

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
        self.ensure_named_volumes(request).await?;
        let name = container_name(&request.project, &request.service, request.generation);
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

    /// Creates the named volumes the request uses that do not exist yet, labelled with
    /// the project so [`Docker::remove_volumes`] can find them. Existing volumes are
    /// used as they are, and never removed by fleet unless it created them.
    async fn ensure_named_volumes(&self, request: &ContainerRequest) -> Result<(), ContainerError> {
        for volume in &request.volumes {
            let Some(name) = named_volume(volume) else {
                continue;
            };
            match self.client.inspect_volume(name).await {
                Ok(_) => continue,
                Err(err) if status_code(&err) == Some(404) => {}
                Err(err) => {
                    return Err(api_error(&format!("cannot inspect volume {name}"), &err));
                }
            }
            let options = VolumeCreateOptions {
                name: Some(name.to_string()),
                labels: Some(HashMap::from([(
                    LABEL_PROJECT.to_string(),
                    request.project.clone(),
                )])),
                ..Default::default()
            };
            self.client
                .create_volume(options)
                .await
                .map_err(|err| api_error(&format!("cannot create volume {name}"), &err))?;
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

    /// Removes every container labelled with `project`, except those of `keep_run`:
    /// the startup sweep after a crash. Unlabelled containers are never listed, so
    /// never touched. Returns how many were removed.
    pub async fn sweep(
        &self,
        project: &str,
        keep_run: Option<&str>,
    ) -> Result<usize, ContainerError> {
        let containers =
            list_labelled(&self.client, &[format!("{LABEL_PROJECT}={project}")]).await?;
        let mut removed = 0;
        for (id, labels) in containers {
            // Only containers fleet created carry a run: a user's `docker run` of an
            // image fleet built may inherit the image's labels, never the run's.
            let Some(run) = labels.get(LABEL_RUN) else {
                continue;
            };
            if !labels.contains_key(LABEL_GENERATION) || keep_run == Some(run.as_str()) {
                continue;
            }
            self.remove(&id).await;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes the project's networks (those labelled with it). A network still in
    /// use by a container that is not fleet's stays, with a message.
    pub async fn remove_network(&self, project: &str) {
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{LABEL_PROJECT}={project}")],
            )])),
        };
        let networks = match self.client.list_networks(Some(options)).await {
            Ok(networks) => networks,
            Err(err) => return report("list networks of", project, &err),
        };
        for network in networks {
            let Some(id) = network.id else { continue };
            if let Err(err) = self.client.remove_network(&id).await {
                report_unless_gone(
                    "remove network",
                    network.name.as_deref().unwrap_or(&id),
                    &err,
                );
            }
        }
    }

    /// Removes the named volumes fleet created for the project (those labelled with
    /// it). A volume still in use stays, with a message.
    pub async fn remove_volumes(&self, project: &str) {
        let options = ListVolumesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{LABEL_PROJECT}={project}")],
            )])),
        };
        let volumes = match self.client.list_volumes(Some(options)).await {
            Ok(listing) => listing.volumes.unwrap_or_default(),
            Err(err) => return report("list volumes of", project, &err),
        };
        for volume in volumes {
            if let Err(err) = self
                .client
                .remove_volume(&volume.name, Some(RemoveVolumeOptions { force: false }))
                .await
            {
                report_unless_gone("remove volume", &volume.name, &err);
            }
        }
    }
}

/// For the keeper, which has no tokio runtime: force-removes the containers of one
/// supervisor run. Must not be called from inside a tokio runtime. Gives up after a
/// deadline, so a hung engine cannot keep the keeper alive.
pub fn remove_run_containers_blocking(project: &str, run: &str) -> Result<usize, ContainerError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| ContainerError::Api(format!("cannot start a runtime: {err}")))?;
    runtime.block_on(async {
        let removal = async {
            // No event subscription: the keeper only removes.
            let (client, _) = connect_client(docker_host_from_env()).await?;
            let containers = list_labelled(
                &client,
                &[
                    format!("{LABEL_PROJECT}={project}"),
                    format!("{LABEL_RUN}={run}"),
                ],
            )
            .await?;
            for (id, _) in &containers {
                remove_container(&client, id).await;
            }
            Ok(containers.len())
        };
        tokio::time::timeout(KEEPER_DEADLINE, removal)
            .await
            .unwrap_or_else(|_| {
                Err(ContainerError::Api(format!(
                    "removing the containers of run {run} took more than {}s",
                    KEEPER_DEADLINE.as_secs()
                )))
            })
    })
}

/// Ids and labels of all containers (running or not) carrying every label filter.
async fn list_labelled(
    client: &bollard::Docker,
    label_filters: &[String],
) -> Result<Vec<(String, HashMap<String, String>)>, ContainerError> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            label_filters.to_vec(),
        )])),
        ..Default::default()
    };
    let containers = client
        .list_containers(Some(options))
        .await
        .map_err(|err| api_error("cannot list containers", &err))?;
    Ok(containers
        .into_iter()
        .filter_map(|container| Some((container.id?, container.labels.unwrap_or_default())))
        .collect())
}

async fn remove_container(client: &bollard::Docker, id: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    if let Err(err) = client.remove_container(id, Some(options)).await {
        report_unless_gone("remove", id, &err);
    }
}

/// `DOCKER_HOST`, unless unset or empty.
fn docker_host_from_env() -> Option<String> {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
}

/// Opens the client for `docker_host` (a `DOCKER_HOST` value, else the default socket)
/// and checks the engine: it answers, and speaks a new enough API. Returns the client
/// and the description of where it connected, for error messages.
async fn connect_client(
    docker_host: Option<String>,
) -> Result<(bollard::Docker, String), ContainerError> {
    let socket = match &docker_host {
        Some(host) => format!("{host} (from DOCKER_HOST)"),
        None => DEFAULT_SOCKET.to_string(),
    };
    let unreachable = |reason: String| ContainerError::Unreachable {
        socket: socket.clone(),
        reason,
    };
    let client = match &docker_host {
        None => bollard::Docker::connect_with_unix(
            DEFAULT_SOCKET,
            CONNECT_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        ),
        Some(host) if host.starts_with("unix://") => bollard::Docker::connect_with_unix(
            host,
            CONNECT_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        ),
        // tcp:// and http://, read from DOCKER_HOST by bollard itself.
        Some(_) => bollard::Docker::connect_with_defaults(),
    }
    .map_err(|err| unreachable(unreachable_reason(&err)))?;
    // Negotiation is the first request (`/version`): it lowers bollard's client API
    // version to the engine's, so an older engine accepts every later request.
    let client = client
        .with_timeout(CONNECT_TIMEOUT)
        .negotiate_version()
        .await
        .map_err(|err| unreachable(unreachable_reason(&err)))?;
    client
        .ping()
        .await
        .map_err(|err| unreachable(unreachable_reason(&err)))?;
    let version = client
        .version()
        .await
        .map_err(|err| unreachable(unreachable_reason(&err)))?;
    let api = version.api_version.unwrap_or_default();
    match parse_api_version(&api) {
        Some(found) if found >= MIN_API_VERSION => {}
        _ => {
            return Err(unreachable(format!(
                "the engine speaks Docker API {}, fleet needs {}.{} or newer (Docker 20.10 \
                 or later); upgrade the engine",
                if api.is_empty() { "(unknown)" } else { &api },
                MIN_API_VERSION.0,
                MIN_API_VERSION.1
            )));
        }
    }
    // Ordinary requests (create, inspect, remove) get bollard's default two minutes;
    // streams get their own longer timeout where they are opened.
    let client = client.with_timeout(Duration::from_secs(120));
    Ok((client, socket))
}

fn parse_api_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Says why the engine could not be reached, in terms a user can act on.
fn unreachable_reason(err: &BollardError) -> String {
    if let BollardError::SocketNotFoundError(path) = err {
        return format!(
            "there is no socket at {path}: the Docker engine is not running (or not installed)"
        );
    }
    if let BollardError::RequestTimeoutError = err {
        return format!(
            "the engine did not answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        );
    }
    if let BollardError::UnsupportedURISchemeError { uri } = err {
        return format!("DOCKER_HOST={uri} is not supported; use unix:// or tcp://");
    }
    match io_error_kind(err) {
        Some(io::ErrorKind::PermissionDenied) => "permission denied: your user may not use the \
            Docker socket; add it to the `docker` group (then log in again) or point DOCKER_HOST \
            at a socket you may use"
            .to_string(),
        Some(io::ErrorKind::ConnectionRefused) | Some(io::ErrorKind::NotFound) => {
            "connection refused: the Docker engine is not running".to_string()
        }
        _ => engine_message(err),
    }
}

/// The kind of the OS error somewhere in `err`'s chain, if any.
fn io_error_kind(err: &BollardError) -> Option<io::ErrorKind> {
    if let BollardError::IOError { err } = err {
        return Some(err.kind());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            return Some(io_error.kind());
        }
        source = current.source();
    }
    None
}

fn status_code(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own message where there is one, else bollard's description.
fn engine_message(err: &BollardError) -> String {
    match err {
        BollardError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        BollardError::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

fn api_error(doing: &str, err: &BollardError) -> ContainerError {
    ContainerError::Api(format!("{doing}: {}", engine_message(err)))
}

/// For the fire-and-forget calls (stop, kill, remove): "already stopped" (304), "no
/// such object" (404) and "not running / removal in progress" (409) are what the
/// caller wanted anyway; anything else is told, since the caller has no error path.
fn report_unless_gone(doing: &str, what: &str, err: &BollardError) {
    if !matches!(status_code(err), Some(304 | 404 | 409)) {
        report(doing, what, err);
    }
}

fn report(doing: &str, what: &str, err: &BollardError) {
    crate::note!(
        "fleet: Docker: cannot {doing} {what}: {}",
        engine_message(err)
    );
}

/// Docker names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; anything else becomes `-`.
fn sanitise_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert_str(0, "fleet");
    }
    name
}

pub fn container_name(project: &str, service: &str, generation: u64) -> String {
    sanitise_name(&format!("{project}-{service}-{generation}"))
}

pub fn network_name(project: &str) -> String {
    sanitise_name(&format!("fleet-{project}"))
}

/// The volume name of a `name:container[:ro]` entry; `None` for a bind (absolute host
/// path) or an anonymous volume (no colon).
fn named_volume(spec: &str) -> Option<&str> {
    let (source, _) = spec.split_once(':')?;
    (!source.is_empty() && !source.starts_with('/')).then_some(source)
}

fn whole_seconds(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

fn create_body(request: &ContainerRequest) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_PROJECT.to_string(), request.project.clone()),
        (LABEL_SERVICE.to_string(), request.service.clone()),
        (LABEL_GENERATION.to_string(), request.generation.to_string()),
        (LABEL_RUN.to_string(), request.run.clone()),
    ]);
    let mut exposed_ports = HashMap::new();
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &request.ports {
        let key = format!("{}/tcp", port.container);
        exposed_ports.insert(key.clone(), HashMap::new());
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
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(request.network.clone(), endpoint)])),
        }),
        ..Default::default()
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

/// The event task: see "Theory of operation: exits" in the module docs.
async fn follow_exits(client: bollard::Docker, waiters: Waiters, connected_at: SystemTime) {
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
        reconciled = false;
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
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
async fn inspect_exit(client: &bollard::Docker, id: &str) -> Result<Option<ExitStatus>, ()> {
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

/// Copies the container's output into its service log until the container stops.
async fn follow_logs(client: bollard::Docker, id: String, log: Arc<ServiceLog>) {
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        since: 0,
        until: 0,
        timestamps: false,
        tail: "all".into(),
    };
    let mut stdout = LineWriter::new(log.clone(), Stream::Stdout);
    let mut stderr = LineWriter::new(log.clone(), Stream::Stderr);
    let mut frames = client.logs(&id, Some(options));
    while let Some(frame) = frames.next().await {
        match frame {
            // `Console` is the output of a container with a TTY: one stream.
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                stdout.push(&message)
            }
            Ok(LogOutput::StdErr { message }) => stderr.push(&message),
            Ok(LogOutput::StdIn { .. }) => {}
            Err(err) => {
                log.write_fleet_line(&format!(
                    "the container's output stopped early: {}",
                    engine_message(&err)
                ));
                break;
            }
        }
    }
    stdout.finish();
    stderr.finish();
}

/// What the writer thread reports when the engine stopped reading the context: the
/// engine's own error is then the one worth showing.
const BROKEN_CONTEXT_PIPE: &str = "the engine stopped reading the build context";

/// Hands the tar stream to the async request body, one chunk at a time.
struct ChannelWriter(mpsc::Sender<io::Result<Vec<u8>>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, BROKEN_CONTEXT_PIPE))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `.dockerignore` rules, in file order; the last rule that matches a path decides.
#[derive(Debug, Default)]
struct DockerIgnore {
    rules: Vec<(GlobMatcher, bool)>,
    has_exceptions: bool,
}

impl DockerIgnore {
    fn read(context: &Path) -> io::Result<DockerIgnore> {
        match fs::read_to_string(context.join(".dockerignore")) {
            Ok(text) => DockerIgnore::parse(&text),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(DockerIgnore::default()),
            Err(err) => Err(err),
        }
    }

    fn parse(text: &str) -> io::Result<DockerIgnore> {
        let mut ignore = DockerIgnore::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclude, pattern) = match line.strip_prefix('!') {
                Some(rest) => (false, rest.trim()),
                None => (true, line),
            };
            let pattern = clean_pattern(pattern);
            if pattern.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|err| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("invalid .dockerignore pattern `{line}`: {err}"),
                    )
                })?;
            ignore.has_exceptions |= !exclude;
            ignore.rules.push((glob.compile_matcher(), exclude));
        }
        Ok(ignore)
    }

    /// Whether `relative` (a `/`-separated path in the context) is left out: a rule
    /// applies to a path when it matches the path or one of its parent folders.
    fn excluded(&self, relative: &str) -> bool {
        let mut excluded = false;
        for (glob, exclude) in &self.rules {
            let parents = relative
                .match_indices('/')
                .map(|(index, _)| &relative[..index]);
            if glob.is_match(relative) || parents.into_iter().any(|parent| glob.is_match(parent)) {
                excluded = *exclude;
            }
        }
        excluded
    }
}

/// Cleans a pattern the way Docker does: no leading `/` or `./`, no `.` components,
/// `..` resolved, no trailing `/`.
fn clean_pattern(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// Writes the build context as a tar stream: the folder minus what `.dockerignore`
/// leaves out, plus the Dockerfile and `.dockerignore` always.
fn write_context<W: Write>(context: &Path, dockerfile: &str, out: W) -> io::Result<()> {
    let ignore = DockerIgnore::read(context)?;
    let mut archive = tar::Builder::new(out);
    add_folder(&mut archive, context, Path::new(""), &ignore)?;
    for always in [dockerfile, ".dockerignore"] {
        let always = clean_pattern(always);
        let path = context.join(&always);
        if ignore.excluded(&always) && path.is_file() {
            add_entry(
                &mut archive,
                &path,
                Path::new(&always),
                &fs::metadata(&path)?,
            )?;
        }
    }
    archive.into_inner()?.flush()
}

fn add_folder<W: Write>(
    archive: &mut tar::Builder<W>,
    folder: &Path,
    relative: &Path,
    ignore: &DockerIgnore,
) -> io::Result<()> {
    let mut entries = fs::read_dir(folder)?.collect::<io::Result<Vec<_>>>()?;
    // A stable order makes the same folder the same stream.
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let name = relative.join(entry.file_name());
        let metadata = fs::symlink_metadata(&path)?;
        let excluded = ignore.excluded(&name.to_string_lossy());
        if metadata.is_dir() {
            // Without exceptions nothing below an excluded folder can come back, so
            // a big ignored folder (target/, node_modules/) is not even read.
            if excluded && !ignore.has_exceptions {
                continue;
            }
            if !excluded {
                add_entry(archive, &path, &name, &metadata)?;
            }
            add_folder(archive, &path, &name, ignore)?;
        } else if !excluded {
            add_entry(archive, &path, &name, &metadata)?;
        }
    }
    Ok(())
}

fn add_entry<W: Write>(
    archive: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    metadata: &fs::Metadata,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(metadata, tar::HeaderMode::Complete);
    // The Docker CLI sends every file as root's: the image should not depend on the
    // uid of whoever ran the build.
    header.set_uid(0);
    header.set_gid(0);
    let kind = metadata.file_type();
    if kind.is_file() {
        let size = metadata.len();
        // Exactly `size` bytes, whatever the file does meanwhile: a file that grew is
        // cut, one that shrank is padded, and the archive stays well formed.
        let data = File::open(path)?.take(size).chain(io::repeat(0)).take(size);
        archive.append_data(&mut header, name, data)
    } else if kind.is_dir() {
        archive.append_data(&mut header, name, io::empty())
    } else if kind.is_symlink() {
        let target: PathBuf = fs::read_link(path)?;
        archive.append_link(&mut header, name, target)
    } else {
        // Sockets, fifos and devices: nothing a Dockerfile can COPY usefully.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests for the pure parts, then tests against the real engine. The engine
    //! tests skip with a note when Docker is unreachable, and fail instead when
    //! `FLEET_REQUIRE_DOCKER=1`. They build one image from scratch holding a static
    //! build of `examples/helper.rs` (nothing is pulled), give every test its own
    //! project name, and remove what they create even when they fail.

    use super::*;
    use std::collections::BTreeMap;
    use std::error::Error;
    use std::time::Instant;

    use bollard::models::ContainerCreateBody;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::logs::{log_path, read_from, LogHub, LogLine};

    type TestResult = Result<(), Box<dyn Error>>;

    /// The one image every engine test runs; rebuilt from the builder cache each run.
    const IMAGE_TAG: &str = "fleet-test/helper:container-rs";
    /// The same with a `HEALTHCHECK`, for `health_status`.
    const HEALTH_IMAGE_TAG: &str = "fleet-test/helper-health:container-rs";
    /// Every wait on the engine ends by then; a loaded 2-core CI box starts a container
    /// in well under a second, so this only catches hangs.
    const DEADLINE: Duration = Duration::from_secs(60);
    /// The port the helper listens on inside its container (on its loopback).
    const HELPER_PORT: u16 = 9000;
    /// The container port published to the host, served by the test's forwarder.
    const PUBLISHED_PORT: u16 = 8080;

    // ---------------------------------------------------------------- pure parts

    #[test]
    fn names_are_sanitised_for_docker() {
        assert_eq!(container_name("shop", "web", 7), "shop-web-7");
        assert_eq!(container_name("my shop", "api/v2", 1), "my-shop-api-v2-1");
        assert_eq!(container_name("_x", "y", 1), "fleet_x-y-1");
        assert_eq!(network_name("my shop"), "fleet-my-shop");
    }

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
    fn volumes_named_or_bound() {
        assert_eq!(named_volume("pgdata:/var/lib/postgresql"), Some("pgdata"));
        assert_eq!(named_volume("cache:/cache:ro"), Some("cache"));
        assert_eq!(named_volume("/srv/data:/data"), None);
        assert_eq!(named_volume("/anonymous"), None);
    }

    #[test]
    fn stop_timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(whole_seconds(Duration::from_secs(10)), 10);
    }

    #[test]
    fn events_are_asked_from_a_margin_before() {
        let at = UNIX_EPOCH + Duration::new(1_795_674_308, 5);
        assert_eq!(events_since(at), "1795674306.000000005");
    }

    #[test]
    fn errors_say_what_to_do() {
        let missing = ContainerError::ImageMissing {
            image: "postgres:16".into(),
        };
        assert_eq!(
            missing.to_string(),
            "image `postgres:16` is not present locally and the service has no `build`; \
             fleet does not pull from registries (pull or build it yourself first)"
        );
        let permission = unreachable_reason(&BollardError::IOError {
            err: io::Error::from(io::ErrorKind::PermissionDenied),
        });
        assert!(permission.starts_with("permission denied"), "{permission}");
        let not_running = unreachable_reason(&BollardError::SocketNotFoundError("/x.sock".into()));
        assert!(not_running.contains("not running"), "{not_running}");
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert!(parse_api_version("1.40") < Some(MIN_API_VERSION));
    }

    #[test]
    fn dockerignore_last_match_wins_and_folders_cover_their_contents() -> io::Result<()> {
        let ignore = DockerIgnore::parse(
            "# comment\n\n/target\n*.log\n!keep.log\nsecrets/**\ndocs/*/draft.md\n**/.cache\n",
        )?;
        assert!(ignore.excluded("target"));
        assert!(ignore.excluded("target/debug/app"));
        assert!(ignore.excluded("build.log"));
        assert!(!ignore.excluded("keep.log"));
        // `*` does not cross folders, as in Docker.
        assert!(!ignore.excluded("logs/build.log"));
        assert!(ignore.excluded("secrets/key.pem"));
        assert!(ignore.excluded("docs/v1/draft.md"));
        assert!(!ignore.excluded("docs/v1/final.md"));
        assert!(ignore.excluded("src/deep/.cache/x"));
        assert!(!ignore.excluded("src/main.rs"));
        assert!(ignore.has_exceptions);
        assert!(DockerIgnore::parse("[").is_err());
        Ok(())
    }

    #[test]
    fn context_tar_leaves_out_ignored_files_but_keeps_the_dockerfile() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n")?;
        fs::write(root.join(".dockerignore"), "target\nDockerfile\n*.tmp\n")?;
        fs::create_dir_all(root.join("src/nested"))?;
        fs::write(root.join("src/nested/lib.rs"), "// code\n")?;
        fs::create_dir_all(root.join("target/debug"))?;
        fs::write(root.join("target/debug/big"), vec![0u8; 4096])?;
        fs::write(root.join("scratch.tmp"), "x")?;
        std::os::unix::fs::symlink("src/nested/lib.rs", root.join("link"))?;

        let mut bytes = Vec::new();
        write_context(root, "Dockerfile", &mut bytes)?;
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut names = Vec::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            if name == "link" {
                assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
            }
            assert_eq!(entry.header().uid()?, 0);
            names.push(name);
        }
        assert_eq!(
            names,
            vec![
                ".dockerignore",
                "link",
                "src",
                "src/nested",
                "src/nested/lib.rs",
                "Dockerfile"
            ]
        );
        Ok(())
    }

    #[tokio::test]
    async fn unreachable_engine_names_the_socket_and_says_why() -> TestResult {
        let missing = "unix:///nonexistent/fleet-test/docker.sock";
        match connect_client(Some(missing.to_string())).await {
            Err(err @ ContainerError::Unreachable { .. }) => {
                let text = err.to_string();
                crate::note!("message: {text}");
                assert!(
                    text.starts_with(&format!(
                        "cannot reach the Docker engine at {missing} (from DOCKER_HOST): "
                    )),
                    "{text}"
                );
                assert!(text.contains("not running"), "{text}");
            }
            other => return Err(format!("expected Unreachable, got {other:?}").into()),
        }

        // A socket file nobody listens on: what a stopped engine leaves behind.
        let dir = tempfile::tempdir()?;
        let stale = dir.path().join("docker.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale)?);
        match connect_client(Some(format!("unix://{}", stale.display()))).await {
            Err(ContainerError::Unreachable { reason, .. }) => {
                crate::note!("message: {reason}");
                assert!(reason.contains("not running"), "{reason}")
            }
            other => return Err(format!("expected Unreachable, got {other:?}").into()),
        }
        Ok(())
    }

    /// An engine that speaks API 1.40 (Docker 19.03), served by a fake on a socket.
    #[tokio::test]
    async fn an_engine_older_than_api_1_41_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("old-docker.sock");
        let listener = tokio::net::UnixListener::bind(&path)?;
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let body = if head.contains("/_ping") {
                    "OK"
                } else {
                    r#"{"ApiVersion":"1.40","MinAPIVersion":"1.12","Version":"19.03.15"}"#
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        let result = connect_client(Some(format!("unix://{}", path.display()))).await;
        server.abort();
        match result {
            Err(ContainerError::Unreachable { reason, .. }) => {
                assert!(
                    reason.starts_with("the engine speaks Docker API 1.40, fleet needs 1.41"),
                    "{reason}"
                )
            }
            other => return Err(format!("expected Unreachable, got {other:?}").into()),
        }
        Ok(())
    }

    // ---------------------------------------------------------------- engine

    fn docker_required() -> bool {
        std::env::var("FLEET_REQUIRE_DOCKER").is_ok_and(|value| value == "1")
    }

    /// The engine, or `None` (with a note) when it is unreachable and not required.
    async fn docker_or_skip(test: &str) -> Result<Option<Docker>, ContainerError> {
        match Docker::connect().await {
            Ok(docker) => Ok(Some(docker)),
            Err(err) if docker_required() => Err(err),
            Err(err) => {
                crate::note!(
                    "skipping {test}: {err} (FLEET_REQUIRE_DOCKER=1 makes this a failure)"
                );
                Ok(None)
            }
        }
    }

    fn unique_project(purpose: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        format!("ct-{purpose}-{:x}{:x}", std::process::id(), nanos)
    }

    fn test_labels() -> HashMap<String, String> {
        HashMap::from([("fleet.test".to_string(), "container-rs".to_string())])
    }

    /// Removes the project's containers, network and volumes, and the given unlabelled
    /// containers, when the test ends, however it ends. Runs on its own thread and
    /// runtime, since `Drop` cannot await.
    struct Cleanup {
        project: String,
        unlabelled: Vec<String>,
    }

    impl Cleanup {
        fn new(project: &str) -> Cleanup {
            Cleanup {
                project: project.to_string(),
                unlabelled: Vec::new(),
            }
        }
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let project = self.project.clone();
            let unlabelled = std::mem::take(&mut self.unlabelled);
            let cleaner = std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async {
                    let Ok(docker) = Docker::connect().await else {
                        return;
                    };
                    for id in &unlabelled {
                        docker.remove(id).await;
                    }
                    let _ = docker.sweep(&project, None).await;
                    docker.remove_network(&project).await;
                    docker.remove_volumes(&project).await;
                });
            });
            let _ = cleaner.join();
        }
    }

    struct TestImage {
        build_time: Duration,
        progress: Vec<String>,
        /// The build context (helper, forwarder, Dockerfile), kept for other builds.
        context: PathBuf,
    }

    static TEST_IMAGE: tokio::sync::OnceCell<Result<TestImage, String>> =
        tokio::sync::OnceCell::const_new();

    /// Builds [`IMAGE_TAG`] once per test binary; every engine test awaits it.
    async fn test_image(docker: &Docker) -> Result<&'static TestImage, Box<dyn Error>> {
        let image = TEST_IMAGE
            .get_or_init(|| async {
                build_test_image(docker)
                    .await
                    .map_err(|err| format!("cannot build the test image: {err}"))
            })
            .await;
        image.as_ref().map_err(|err| err.clone().into())
    }

    async fn build_test_image(docker: &Docker) -> Result<TestImage, Box<dyn Error>> {
        let context = tokio::task::spawn_blocking(prepare_context)
            .await?
            .map_err(|err| err.to_string())?;
        let build = ImageBuild {
            context: context.clone(),
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::new(),
        };
        let mut progress = Vec::new();
        let started = Instant::now();
        docker
            .build_image(&build, IMAGE_TAG, test_labels(), |line| {
                progress.push(line.to_string())
            })
            .await?;
        Ok(TestImage {
            build_time: started.elapsed(),
            progress,
            context,
        })
    }

    /// Builds the static helper and the forwarder, and writes the context folder.
    fn prepare_context() -> Result<PathBuf, Box<dyn Error + Send + Sync>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let static_dir = root.join("target/static");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(root)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args(["build", "--quiet", "--example", "helper"])
            .args(["--target", "x86_64-unknown-linux-gnu", "--target-dir"])
            .arg(&static_dir)
            .status()?;
        if !status.success() {
            return Err(format!("static build of examples/helper.rs failed: {status}").into());
        }
        let helper = static_dir.join("x86_64-unknown-linux-gnu/debug/examples/helper");

        let forwarder_source = static_dir.join("portfwd.rs");
        let forwarder = static_dir.join("portfwd");
        if fs::read_to_string(&forwarder_source).ok().as_deref() != Some(FORWARDER_SOURCE)
            || !forwarder.exists()
        {
            fs::write(&forwarder_source, FORWARDER_SOURCE)?;
            let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
            let status = std::process::Command::new(rustc)
                .args([
                    "--edition",
                    "2021",
                    "-O",
                    "-C",
                    "target-feature=+crt-static",
                ])
                .args(["--target", "x86_64-unknown-linux-gnu", "-o"])
                .arg(&forwarder)
                .arg(&forwarder_source)
                .status()?;
            if !status.success() {
                return Err(format!("building the test forwarder failed: {status}").into());
            }
        }
        for binary in [&helper, &forwarder] {
            if has_interpreter(binary)? {
                return Err(format!(
                    "{} is dynamically linked; a `FROM scratch` image cannot run it",
                    binary.display()
                )
                .into());
            }
        }

        let context = static_dir.join("container-test-context");
        fs::create_dir_all(&context)?;
        fs::copy(&helper, context.join("helper"))?;
        fs::copy(&forwarder, context.join("portfwd"))?;
        fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY helper /helper\nCOPY portfwd /portfwd\nENTRYPOINT [\"/helper\"]\n",
        )?;
        Ok(context)
    }

    /// Whether an ELF file asks for a dynamic loader (has a `PT_INTERP` segment).
    fn has_interpreter(path: &Path) -> io::Result<bool> {
        let bytes = fs::read(path)?;
        let malformed = || io::Error::new(io::ErrorKind::InvalidData, "not a 64-bit ELF file");
        let field = |offset: usize, len: usize| -> io::Result<u64> {
            let raw = bytes.get(offset..offset + len).ok_or_else(malformed)?;
            Ok(raw
                .iter()
                .rev()
                .fold(0u64, |acc, byte| acc << 8 | u64::from(*byte)))
        };
        if bytes.get(..5) != Some(b"\x7fELF\x02") {
            return Err(malformed());
        }
        let table = field(0x20, 8)? as usize;
        let entry_size = field(0x36, 2)? as usize;
        let count = field(0x38, 2)? as usize;
        const PT_INTERP: u64 = 3;
        for index in 0..count {
            if field(table + index * entry_size, 4)? == PT_INTERP {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A test-only TCP forwarder, run beside the helper in its network namespace: the
    /// helper listens on the container's loopback only (`127.0.0.1`), which a
    /// published port cannot reach, so the forwarder listens on all addresses of the
    /// container and relays to it.
    const FORWARDER_SOURCE: &str = r#"
use std::io::copy;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

fn relay(mut from: TcpStream, mut to: TcpStream) {
    let _ = copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: portfwd LISTEN_PORT TARGET_PORT");
        std::process::exit(2);
    }
    let listener = match TcpListener::bind(("0.0.0.0", args[1].parse::<u16>().unwrap_or(0))) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("portfwd: {error}");
            std::process::exit(1);
        }
    };
    let target = format!("127.0.0.1:{}", args[2]);
    for client in listener.incoming().flatten() {
        let target = target.clone();
        thread::spawn(move || {
            let Ok(server) = TcpStream::connect(&target) else { return };
            let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            let upstream = thread::spawn(move || relay(client_reader, server));
            relay(server_reader, client);
            let _ = upstream.join();
        });
    }
}
"#;

    /// Starts the forwarder in `target`'s network namespace, labelled with the project
    /// so the test's cleanup removes it.
    async fn start_forwarder(
        docker: &Docker,
        project: &str,
        target: &str,
    ) -> Result<String, Box<dyn Error>> {
        let body = ContainerCreateBody {
            image: Some(IMAGE_TAG.into()),
            entrypoint: Some(vec!["/portfwd".into()]),
            cmd: Some(vec![PUBLISHED_PORT.to_string(), HELPER_PORT.to_string()]),
            labels: Some(HashMap::from([
                (LABEL_PROJECT.to_string(), project.to_string()),
                (LABEL_RUN.to_string(), "test-forwarder".to_string()),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{target}")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .client
            .create_container(None::<CreateContainerOptions>, body)
            .await?;
        docker
            .client
            .start_container(&created.id, None::<StartContainerOptions>)
            .await?;
        Ok(created.id)
    }

    fn request(
        project: &str,
        service: &str,
        generation: u64,
        network: &str,
        command: &[&str],
    ) -> ContainerRequest {
        ContainerRequest {
            project: project.to_string(),
            service: service.to_string(),
            generation,
            run: "test-run".to_string(),
            image: IMAGE_TAG.to_string(),
            command: Some(command.iter().map(|arg| arg.to_string()).collect()),
            env: vec![("FLEET_TEST".to_string(), "1".to_string())],
            ports: Vec::new(),
            volumes: Vec::new(),
            network: network.to_string(),
            stop_signal: "SIGTERM".to_string(),
            stop_timeout: Duration::from_secs(1),
        }
    }

    fn free_port() -> io::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    /// One HTTP/1.0 GET; `None` for anything short of a whole response.
    async fn http_get(port: u16, path: &str) -> Option<String> {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.ok()?;
            Some(String::from_utf8_lossy(&response).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()
            .flatten()
    }

    fn log_lines(log: &ServiceLog) -> io::Result<Vec<LogLine>> {
        Ok(read_from(log.path(), 0)?.0)
    }

    async fn exit_within(
        exit: oneshot::Receiver<ExitStatus>,
    ) -> Result<ExitStatus, Box<dyn Error>> {
        Ok(tokio::time::timeout(DEADLINE, exit).await??)
    }

    fn median(mut samples: Vec<Duration>) -> Duration {
        samples.sort();
        samples[samples.len() / 2]
    }

    #[tokio::test]
    async fn build_streams_progress_and_tags_the_image() -> TestResult {
        let Some(docker) = docker_or_skip("build_streams_progress_and_tags_the_image").await?
        else {
            return Ok(());
        };
        let image = test_image(&docker).await?;
        assert!(
            image
                .progress
                .iter()
                .any(|line| line.starts_with("Step 1/")),
            "no build progress line arrived: {:?}",
            image.progress
        );
        assert!(docker.image_present(IMAGE_TAG).await?);
        crate::note!(
            "measure: test image build (first in this run, builder cache warm if an earlier \
             run built it): {:?}",
            image.build_time
        );
        Ok(())
    }

    /// Uncached builds of the same context: a fresh `LABEL` before the `COPY`s makes
    /// the engine redo every step. Prints the median; asserts nothing about time.
    #[tokio::test]
    async fn measure_uncached_scratch_image_build() -> TestResult {
        let Some(docker) = docker_or_skip("measure_uncached_scratch_image_build").await? else {
            return Ok(());
        };
        let image = test_image(&docker).await?;
        let nonce = unique_project("measure");
        let mut samples = Vec::new();
        for round in 0..3 {
            let dockerfile = format!("Dockerfile.{nonce}.{round}");
            fs::write(
                image.context.join(&dockerfile),
                format!(
                    "FROM scratch\nLABEL fleet.test.nonce={nonce}-{round}\nCOPY helper /helper\n\
                     COPY portfwd /portfwd\nENTRYPOINT [\"/helper\"]\n"
                ),
            )?;
            let build = ImageBuild {
                context: image.context.clone(),
                dockerfile: dockerfile.clone(),
                args: BTreeMap::new(),
            };
            let tag = format!("fleet-test/measure:{nonce}-{round}");
            let started = Instant::now();
            let built = docker
                .build_image(&build, &tag, test_labels(), |_| {})
                .await;
            samples.push(started.elapsed());
            let _ = fs::remove_file(image.context.join(&dockerfile));
            let removed = docker
                .client
                .remove_image(
                    &tag,
                    Some(bollard::query_parameters::RemoveImageOptions {
                        force: true,
                        noprune: false,
                    }),
                    None,
                )
                .await;
            built?;
            removed?;
        }
        crate::note!(
            "measure: uncached scratch image build (helper {} KiB): {samples:?}, median {:?}",
            fs::metadata(image.context.join("helper"))?.len() / 1024,
            median(samples.clone())
        );
        Ok(())
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
            }];
            let started_at = Instant::now();
            let started = docker.start(&request, log.clone()).await?;
            start_calls.push(started_at.elapsed());
            let forwarder = start_forwarder(&docker, &project, &started.id).await?;
            let answer = loop {
                if let Some(answer) = http_get(host_port, "/health").await {
                    if answer.starts_with("HTTP/1.1 200") {
                        break answer;
                    }
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
    async fn broken_builds_fail_with_the_engines_message() -> TestResult {
        let Some(docker) = docker_or_skip("broken_builds_fail_with_the_engines_message").await?
        else {
            return Ok(());
        };
        let cases = [
            (
                "FROM scratch\nFLEETBOGUS nothing\n",
                "",
                "unknown instruction",
            ),
            ("FROM scratch\nCOPY missing-file /x\n", "", "missing-file"),
            // The ignored file is not sent, so COPY cannot find it.
            (
                "FROM scratch\nCOPY secret.txt /x\n",
                "secret.txt\n",
                "secret.txt",
            ),
        ];
        let nowhere = ImageBuild {
            context: PathBuf::from("/nonexistent/fleet-test-context"),
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::new(),
        };
        match docker
            .build_image(&nowhere, "fleet-test/nowhere:x", test_labels(), |_| {})
            .await
        {
            Err(ContainerError::Build { reason }) => assert!(
                reason.starts_with("cannot send the build context /nonexistent/fleet-test-context"),
                "{reason}"
            ),
            other => return Err(format!("built from nowhere: {other:?}").into()),
        }
        for (dockerfile, dockerignore, expected) in cases {
            let context = tempfile::tempdir()?;
            fs::write(context.path().join("Dockerfile"), dockerfile)?;
            fs::write(context.path().join(".dockerignore"), dockerignore)?;
            fs::write(context.path().join("secret.txt"), "hunter2")?;
            let build = ImageBuild {
                context: context.path().to_path_buf(),
                dockerfile: "Dockerfile".into(),
                args: BTreeMap::new(),
            };
            let mut progress = Vec::new();
            let tag = format!("fleet-test/broken:{}", unique_project("broken"));
            let result = docker
                .build_image(&build, &tag, test_labels(), |line| {
                    progress.push(line.to_string())
                })
                .await;
            match result {
                Err(ContainerError::Build { reason }) => {
                    assert!(reason.contains(expected), "{expected:?} not in {reason:?}");
                    assert!(
                        progress.iter().any(|line| line.contains(expected)),
                        "the error went to progress too: {progress:?}"
                    );
                }
                other => return Err(format!("{dockerfile:?} built: {other:?}").into()),
            }
            assert!(!docker.image_present(&tag).await?);
        }
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

    #[tokio::test]
    async fn sweep_removes_only_the_projects_labelled_containers() -> TestResult {
        let Some(docker) =
            docker_or_skip("sweep_removes_only_the_projects_labelled_containers").await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("sweep");
        let mut cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "svc", 0, 1, LogHub::default())?;

        let mut old_run = request(&project, "svc", 1, &network, &["--sleep-forever"]);
        old_run.run = "crashed-run".into();
        let old = docker.start(&old_run, log.clone()).await?;
        let current_run = request(&project, "svc", 2, &network, &["--sleep-forever"]);
        let current = docker.start(&current_run, log.clone()).await?;
        // Same image, created behind fleet's back: no labels.
        // Named as fleet would name an instance, to check fleet does not take the name.
        let stranger_name = container_name(&project, "stranger", 1);
        let stranger = docker
            .client
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(stranger_name.clone()),
                    platform: String::new(),
                }),
                ContainerCreateBody {
                    image: Some(IMAGE_TAG.into()),
                    cmd: Some(vec!["--sleep-forever".into()]),
                    ..Default::default()
                },
            )
            .await?;
        cleanup.unlabelled.push(stranger.id.clone());

        assert_eq!(docker.sweep(&project, Some("test-run")).await?, 1);
        assert_eq!(exit_within(old.exit).await?, ExitStatus::Signal(9));
        let exists = |id: String| {
            let docker = docker.clone();
            async move {
                docker
                    .client
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                    .is_ok()
            }
        };
        assert!(!exists(old.id.clone()).await);
        assert!(exists(current.id.clone()).await);
        assert_eq!(docker.sweep(&project, None).await?, 1);
        assert_eq!(exit_within(current.exit).await?, ExitStatus::Signal(9));
        assert!(!exists(current.id.clone()).await);
        assert!(
            exists(stranger.id.clone()).await,
            "the unlabelled container was touched"
        );
        assert_eq!(docker.sweep(&project, None).await?, 0);

        // A leftover of a crashed run holding the next instance's name is replaced.
        let mut leftover = request(&project, "svc", 5, &network, &["--sleep-forever"]);
        leftover.run = "crashed-run".into();
        let leftover = docker.start(&leftover, log.clone()).await?;
        let replacement = request(&project, "svc", 5, &network, &["--sleep-forever"]);
        let replacement = docker.start(&replacement, log.clone()).await?;
        assert_ne!(leftover.id, replacement.id);
        assert_eq!(exit_within(leftover.exit).await?, ExitStatus::Signal(9));
        docker.remove(&replacement.id).await;
        // The stranger's name is not fleet's to take.
        let clash = request(&project, "stranger", 1, &network, &["--sleep-forever"]);
        match docker.start(&clash, log.clone()).await {
            Err(ContainerError::Api(message)) => {
                assert!(message.contains("is not a leftover"), "{message}")
            }
            other => return Err(format!("took the stranger's name: {other:?}").into()),
        }

        docker.remove(&stranger.id).await;
        assert!(!exists(stranger.id.clone()).await);
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

    #[test]
    fn keeper_removes_the_containers_of_its_run_without_a_runtime() -> TestResult {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let Some(docker) = runtime.block_on(docker_or_skip(
            "keeper_removes_the_containers_of_its_run_without_a_runtime",
        ))?
        else {
            return Ok(());
        };
        runtime.block_on(test_image(&docker))?;
        let project = unique_project("keeper");
        let _cleanup = Cleanup::new(&project);
        let (mine, other) = runtime.block_on(async {
            let network = docker.ensure_network(&project).await?;
            let dir = tempfile::tempdir()?;
            let log = ServiceLog::open(dir.path(), "svc", 0, 1, LogHub::default())?;
            let mut mine = request(&project, "svc", 1, &network, &["--sleep-forever"]);
            mine.run = "dying-run".into();
            let mine = docker.start(&mine, log.clone()).await?;
            let other = request(&project, "svc", 2, &network, &["--sleep-forever"]);
            let other = docker.start(&other, log).await?;
            Ok::<_, Box<dyn Error>>((mine, other))
        })?;

        assert_eq!(remove_run_containers_blocking(&project, "dying-run")?, 1);

        runtime.block_on(async {
            assert_eq!(exit_within(mine.exit).await?, ExitStatus::Signal(9));
            let other_alive = docker
                .client
                .inspect_container(&other.id, None::<InspectContainerOptions>)
                .await?;
            assert_eq!(
                other_alive.state.and_then(|state| state.running),
                Some(true)
            );
            docker.remove(&other.id).await;
            Ok::<_, Box<dyn Error>>(())
        })?;
        Ok(())
    }
}
