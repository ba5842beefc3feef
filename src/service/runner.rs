//! The service runner: one task per service that owns its instances.
//!
//! # Theory of operation
//! Everything that can happen to a service arrives as an [`Input`] on one channel, the
//! runner's inbox: commands from the supervisor, exits from the reaper, probe verdicts,
//! build results and timers. The runner feeds each input to the pure
//! [`ServiceMachine`], carries out the returned effects in order (the only place that
//! calls into `runtime`), and reports the resulting status to the supervisor. Because
//! one task does all of this, no lock guards a service's state, and an effect such as
//! [`Effect::Cleanup`] finishes before the next one (a replacement spawn) begins.
//!
//! Each live generation is a [`runtime::Instance`](crate::runtime::Instance): the
//! runner signals, kills and cleans it up without knowing whether it is a process
//! group or a container. Only starting one differs by kind (a process needs its
//! command, socket and probe setup; a container its engine, image and published
//! ports), and both starts share one environment ([`instance::environment`]) and
//! one port check ([`ports::busy`]).

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::event::{
    now_ms, BuildStatus, EventKind, ExitStatus, Generation, HealthStatus, InstanceStatus,
    ReplicaId, ServiceState,
};
use crate::health::{self, ExecContext, ProbeSetup, Verdict};
use crate::logs::{LogHub, ServiceLog, Stream};
use crate::manifest::{HealthSpec, ProcessSpec, ServiceKind, ServiceSpec};
use crate::runtime::container::{Docker, EngineLink};
use crate::runtime::instance::{self, Instance, Started};
use crate::runtime::ports;
use crate::runtime::process::{ProcessRuntime, SpawnRequest};
use crate::runtime::reaper::Journal;

use super::builds::{BuildKey, Entry, Shared, SharedBuilds, Waiter};
use super::state::{BuildId, Effect, Input, Policy, ServiceMachine};

mod containers;

/// What the runners share: the project's identity, where logs go, the OS runtime.
pub struct ProjectContext {
    pub name: String,
    pub root: PathBuf,
    /// Prefix of every `FLEET_INSTANCE` marker of this run ([`crate::project::run_marker`]).
    pub marker: String,
    pub log_dir: PathBuf,
    pub log_max_size: u64,
    pub log_keep: u32,
    /// fleet's own environment, inherited by every service.
    pub base_env: Vec<(String, String)>,
    pub processes: ProcessRuntime,
    pub hub: LogHub,
    pub journal: Journal,
    /// This supervisor run's id; containers are labelled with it.
    pub run_id: String,
    /// The Docker engine, connected on first use by a container service.
    pub engine: tokio::sync::OnceCell<Result<ContainerEngine, String>>,
    /// The builds services share when they start together.
    pub builds: SharedBuilds,
}

/// The Docker engine and the project's network on it.
pub struct ContainerEngine {
    pub docker: Docker,
    pub network: String,
}

impl ProjectContext {
    /// Connects to Docker and creates the project's network, once; later calls get the
    /// same engine (or the same error, which names the socket tried).
    pub async fn engine(&self) -> Result<&ContainerEngine, String> {
        let engine = self
            .engine
            .get_or_init(|| async {
                let docker = Docker::connect().await.map_err(|err| err.to_string())?;
                let network = docker
                    .ensure_network(&self.name)
                    .await
                    .map_err(|err| err.to_string())?;
                Ok(ContainerEngine { docker, network })
            })
            .await;
        engine.as_ref().map_err(Clone::clone)
    }

    pub fn instance_marker(&self, service: &str, tag: &str) -> String {
        crate::project::instance_marker(&self.marker, service, tag)
    }
}

#[derive(Debug, Clone)]
pub enum Report {
    /// The runner's view of its replica, sent after every change.
    Status {
        replica: ReplicaId,
        status: InstanceStatus,
        /// Nothing runs and nothing is about to: the supervisor's shutdown and reload
        /// wait for it. Not part of [`InstanceStatus`], as no client needs it.
        idle: bool,
    },
    Event {
        replica: ReplicaId,
        generation: Generation,
        event: EventKind,
    },
    /// What happened to the replica's log file ([`ServiceLog::report_incidents`]),
    /// reported by the log itself; the file already says it.
    LogIncident {
        replica: ReplicaId,
        event: EventKind,
    },
}

/// Which replica a runner drives, and how many its service has now (shared by the
/// service's runners; `FLEET_REPLICAS` of each new instance).
#[derive(Debug, Clone)]
pub struct Replica {
    pub id: ReplicaId,
    pub count: Arc<AtomicU32>,
}

/// The supervisor's handle to a runner. Dropping it ends the runner, which first
/// kills anything of its service that still runs.
pub struct RunnerHandle {
    inbox: mpsc::UnboundedSender<Input>,
    _close: oneshot::Sender<()>,
}

impl RunnerHandle {
    pub fn send(&self, input: Input) {
        // A runner only ends when the supervisor drops its handle; a failed send means
        // the supervisor is shutting down and the input no longer matters.
        let _ = self.inbox.send(input);
    }
}

struct LiveInstance {
    instance: Instance,
    probe: Option<JoinHandle<()>>,
}

/// Why an instance did not start, and whether trying again could help.
struct SpawnFailure {
    reason: String,
    retry: bool,
}

impl SpawnFailure {
    fn retry(reason: String) -> SpawnFailure {
        SpawnFailure {
            reason,
            retry: true,
        }
    }

    fn fatal(reason: String) -> SpawnFailure {
        SpawnFailure {
            reason,
            retry: false,
        }
    }
}

enum LiveBuild {
    Process {
        pid: u32,
        marker: String,
    },
    /// A build this runner began or joined, that other services may wait for too.
    Shared {
        key: BuildKey,
        shared: Shared,
    },
    Image(JoinHandle<()>),
}

pub struct ServiceRunner {
    /// The replica's spec (ports moved up by its index).
    spec: Arc<ServiceSpec>,
    replica: Replica,
    /// `replica.id.file_name()`: its log, markers and container names.
    name: String,
    project: Arc<ProjectContext>,
    machine: ServiceMachine,
    log: Arc<ServiceLog>,
    listener: Option<Arc<TcpListener>>,
    inbox: mpsc::UnboundedSender<Input>,
    reports: mpsc::UnboundedSender<Report>,
    instances: HashMap<Generation, LiveInstance>,
    builds: HashMap<BuildId, LiveBuild>,
    started_at_ms: HashMap<Generation, u64>,
    last_redeploy_at_ms: Option<u64>,
    last_status: Option<(InstanceStatus, bool)>,
    /// Turns the engine's reachability into inputs; started with the first container.
    engine_watch: Option<JoinHandle<()>>,
}

impl ServiceRunner {
    /// Starts the runner task for `replica` of a service whose spec is `spec`. The
    /// listener, if any, is the socket fleet holds for the service's `socket`
    /// setting, shared by all its replicas. Replica 1 runs the service's build; the
    /// others start with what it built.
    pub fn spawn(
        spec: &ServiceSpec,
        replica: Replica,
        project: Arc<ProjectContext>,
        log: Arc<ServiceLog>,
        listener: Option<Arc<TcpListener>>,
        reports: mpsc::UnboundedSender<Report>,
    ) -> (RunnerHandle, JoinHandle<()>) {
        let (inbox, receiver) = mpsc::unbounded_channel();
        let (close, closed) = oneshot::channel();
        let spec = Arc::new(spec.replica(replica.id.replica.saturating_sub(1)));
        let mut policy = Policy::from_spec(&spec);
        policy.has_build &= replica.id.replica == 1;
        let runner = ServiceRunner {
            machine: ServiceMachine::new(policy),
            name: replica.id.file_name(),
            replica,
            spec,
            project,
            log,
            listener,
            inbox: inbox.clone(),
            reports,
            instances: HashMap::new(),
            builds: HashMap::new(),
            started_at_ms: HashMap::new(),
            last_redeploy_at_ms: None,
            last_status: None,
            engine_watch: None,
        };
        let task = tokio::spawn(runner.run(receiver, closed));
        (
            RunnerHandle {
                inbox,
                _close: close,
            },
            task,
        )
    }

    async fn run(
        mut self,
        mut receiver: mpsc::UnboundedReceiver<Input>,
        mut closed: oneshot::Receiver<()>,
    ) {
        self.report_status();
        loop {
            // The runner keeps a sender to its own inbox (for timers and exits), so the
            // inbox never closes by itself: the supervisor's handle going away does it.
            let input = tokio::select! {
                input = receiver.recv() => match input {
                    Some(input) => input,
                    None => break,
                },
                _ = &mut closed => break,
            };
            if let Input::BuildFinished { build, .. } = &input {
                // Over: nothing of it is left to cancel.
                self.builds.remove(build);
            }
            let effects = self.machine.step(input, Instant::now());
            for effect in effects {
                self.apply(effect).await;
            }
            self.report_status();
        }
        if let Some(watch) = self.engine_watch.take() {
            watch.abort();
        }
        // The supervisor dropped us: make sure nothing of ours survives.
        let generations: Vec<Generation> = self.instances.keys().copied().collect();
        for generation in generations {
            self.kill(generation);
            self.cleanup(generation).await;
        }
        let builds: Vec<BuildId> = self.builds.keys().copied().collect();
        for build in builds {
            self.cancel_build(build).await;
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Spawn { generation } => self.spawn_instance(generation).await,
            Effect::Signal { generation, signal } => self.signal(generation, signal),
            Effect::Kill { generation } => self.kill(generation),
            Effect::Cleanup { generation } => {
                self.cleanup(generation).await;
                self.started_at_ms.retain(|g, _| *g >= generation);
            }
            Effect::SetTimer { timer, after } => {
                let inbox = self.inbox.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = inbox.send(Input::Timer(timer));
                });
            }
            Effect::Build { build, shared } => {
                if self.spec.is_container() {
                    self.start_image_build(build);
                } else {
                    self.start_build(build, shared);
                }
            }
            Effect::CancelBuild { build } => self.cancel_build(build).await,
            Effect::Emit { generation, event } => self.emit(generation, event),
        }
    }

    /// What an instance's probe needs before the instance starts. An `exec` probe runs
    /// in `cwd` with `env`, like the service.
    fn prepare_probe(
        &self,
        spec: &HealthSpec,
        generation: Generation,
        cwd: PathBuf,
        env: Vec<(String, String)>,
    ) -> std::io::Result<ProbeSetup> {
        let exec = ExecContext {
            processes: self.project.processes.clone(),
            cwd,
            env,
            marker: self
                .project
                .instance_marker(self.name(), &format!("probe{generation}")),
        };
        // Abstract socket names are machine-wide: the supervisor's pid keeps two
        // fleets of the same project path (a crashed one and its successor) apart.
        let socket_name = format!(
            "fleet/{}{}/{generation}/{}",
            self.project.marker,
            self.name(),
            std::process::id()
        );
        health::prepare(spec, &self.project.hub, &socket_name, Some(exec))
    }

    /// Runs an instance's probe; its verdicts come back to this runner as inputs.
    fn start_probe(&self, setup: ProbeSetup, generation: Generation) -> JoinHandle<()> {
        health::start(
            setup,
            self.name.clone(),
            self.log.clone(),
            self.verdicts_to_inbox(generation),
        )
    }

    /// Where a probe of `generation` reports: each verdict becomes the machine's input.
    fn verdicts_to_inbox(
        &self,
        generation: Generation,
    ) -> impl Fn(Verdict, String) + Send + Sync + 'static {
        let inbox = self.inbox.clone();
        move |verdict, reason| {
            let input = match verdict {
                Verdict::Healthy => Input::Health {
                    generation,
                    healthy: true,
                    reason,
                },
                Verdict::Unhealthy => Input::Health {
                    generation,
                    healthy: false,
                    reason,
                },
                Verdict::Failing => Input::ProbeFailing { generation, reason },
            };
            let _ = inbox.send(input);
        }
    }

    fn signal(&self, generation: Generation, signal: i32) {
        let Some(live) = self.instances.get(&generation) else {
            return;
        };
        if let Err(err) = live.instance.signal(signal) {
            self.log
                .write_fleet_line(&format!("cannot signal generation {generation}: {err}"));
        }
    }

    fn kill(&self, generation: Generation) {
        if let Some(live) = self.instances.get(&generation) {
            live.instance.kill();
        }
    }

    /// The instance's main process is gone: take everything it left with it.
    async fn cleanup(&mut self, generation: Generation) {
        let Some(live) = self.instances.remove(&generation) else {
            return;
        };
        if let Some(probe) = live.probe {
            probe.abort();
        }
        live.instance.cleanup().await;
    }

    async fn cancel_build(&mut self, build: BuildId) {
        match self.builds.remove(&build) {
            Some(LiveBuild::Process { pid, marker }) => {
                self.project.processes.kill_instance(pid, &marker).await;
                self.project.journal.remove(pid);
            }
            Some(LiveBuild::Shared { key, shared }) => {
                // Killed only when no other service waits for it.
                let name = self.name.clone();
                if let Some((pid, marker)) = self.project.builds.leave(&key, &shared, &name, build)
                {
                    self.project.processes.kill_instance(pid, &marker).await;
                    self.project.journal.remove(pid);
                }
            }
            // The engine may finish the build; its result is ignored and the image
            // only gets a newer tag later.
            Some(LiveBuild::Image(task)) => task.abort(),
            None => {}
        }
    }

    fn emit(&mut self, generation: Generation, event: EventKind) {
        match &event {
            // The start and build boundary lines already say this in the log.
            EventKind::StateChanged { .. }
            | EventKind::Started { .. }
            | EventKind::BuildStarted => {}
            EventKind::Redeployed { .. } => {
                self.last_redeploy_at_ms = Some(now_ms());
                self.log.write_fleet_line(&event.to_string());
            }
            _ => self.log.write_fleet_line(&event.to_string()),
        }
        let _ = self.reports.send(Report::Event {
            replica: self.replica.id.clone(),
            generation,
            event,
        });
    }

    /// Starts generation `generation` in the service's runtime; the machine then hears
    /// `Spawned`, or `SpawnFailed`, and later `Exited`.
    async fn spawn_instance(&mut self, generation: Generation) {
        let spec = self.spec.clone();
        let marker = self
            .project
            .instance_marker(self.name(), &generation.to_string());
        let mut env = instance::environment(
            &spec,
            &self.project.name,
            &self.project.base_env,
            &marker,
            Some(generation),
        );
        env.push((
            "FLEET_REPLICA".into(),
            self.replica.id.replica.saturating_sub(1).to_string(),
        ));
        env.push((
            "FLEET_REPLICAS".into(),
            self.replica.count.load(Ordering::Relaxed).to_string(),
        ));
        let launched = match &spec.kind {
            ServiceKind::Process(process) => self.start_process(generation, process, marker, env),
            ServiceKind::Container(container) => {
                self.watch_engine().await;
                self.start_container(generation, container, env).await
            }
        };
        let (Started { instance, exit }, probe) = match launched {
            Ok(launched) => launched,
            Err(SpawnFailure { reason, retry }) => {
                let _ = self.inbox.send(Input::SpawnFailed {
                    generation,
                    reason,
                    retry,
                });
                return;
            }
        };
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let status = exit.wait().await;
            let _ = inbox.send(Input::Exited { generation, status });
        });
        let spawned = Input::Spawned {
            generation,
            pid: instance.pid(),
            container: instance.container_id().map(str::to_string),
        };
        self.instances
            .insert(generation, LiveInstance { instance, probe });
        self.started_at_ms.insert(generation, now_ms());
        let _ = self.inbox.send(spawned);
    }

    /// Feeds the engine's reachability to the machine from now on ([`Input::EngineLost`],
    /// [`Input::EngineBack`]), once the engine is connected. The current value first:
    /// the engine may have gone away before this runner's first container.
    async fn watch_engine(&mut self) {
        if self.engine_watch.is_some() {
            return;
        }
        let project = self.project.clone();
        let Ok(engine) = project.engine().await else {
            return;
        };
        let mut link = engine.docker.link();
        let inbox = self.inbox.clone();
        self.engine_watch = Some(tokio::spawn(async move {
            loop {
                let input = match &*link.borrow_and_update() {
                    EngineLink::Reachable => Input::EngineBack,
                    EngineLink::Unreachable { reason } => Input::EngineLost {
                        reason: reason.clone(),
                    },
                };
                if inbox.send(input).is_err() || link.changed().await.is_err() {
                    return;
                }
            }
        }));
    }

    /// The first of `ports` that something else holds, described. A port is checked
    /// only when no other instance of this service runs: during a start-first overlap
    /// the old instance legitimately holds it.
    fn first_busy_port(&self, ports: impl IntoIterator<Item = u16>) -> Option<String> {
        if !self.instances.is_empty() {
            return None;
        }
        ports::busy(ports, self.spec.socket.as_ref().map(|socket| socket.port)).next()
    }

    /// Starts a process instance with `env` (which carries `marker`), and its probe.
    fn start_process(
        &self,
        generation: Generation,
        process_spec: &ProcessSpec,
        marker: String,
        mut env: Vec<(String, String)>,
    ) -> Result<(Started, Option<JoinHandle<()>>), SpawnFailure> {
        if let Some(busy) = self.first_busy_port(self.spec.ports.iter().copied()) {
            return Err(SpawnFailure::retry(busy));
        }
        // The shared socket is fd 3, the one fd socket-activated servers (gunicorn's
        // `fd://3`, uvicorn's `--fd 3`, `sd_listen_fds`) serve.
        let listen_fds: Vec<_> = self
            .listener
            .iter()
            .map(|listener| (listener.as_raw_fd(), self.spec.name.clone()))
            .collect();
        let mut probe_setup = match &self.spec.health {
            Some(health_spec) => {
                let setup = self
                    .prepare_probe(
                        health_spec,
                        generation,
                        process_spec.cwd.clone(),
                        env.clone(),
                    )
                    .map_err(|err| {
                        SpawnFailure::retry(format!("cannot prepare health check: {err}"))
                    })?;
                env.extend(setup.env());
                Some(setup)
            }
            None => None,
        };
        let request = SpawnRequest {
            argv: process_spec.command.argv(),
            cwd: process_spec.cwd.clone(),
            env,
            listen_fds,
        };
        let started = Instance::spawn_process(
            &self.project.processes,
            &request,
            generation,
            marker,
            &self.log,
            &self.project.journal,
        )
        .map_err(|err| SpawnFailure::retry(err.to_string()))?;
        // A probe of the shared socket's port counts only connections this instance
        // accepted: during a start-first overlap the old instance accepts there too.
        if let (Some(setup), Some(socket), Some(pid)) = (
            probe_setup.as_mut(),
            &self.spec.socket,
            started.instance.pid(),
        ) && setup.probes_port(socket.port)
        {
            setup.accepted_by(pid);
        }
        let probe = probe_setup.map(|setup| self.start_probe(setup, generation));
        Ok((started, probe))
    }

    fn start_build(&mut self, build: BuildId, shared: bool) {
        let ServiceKind::Process(process_spec) = &self.spec.kind else {
            let _ = self.inbox.send(Input::BuildFinished {
                build,
                result: Err("image builds need the Docker runtime".into()),
            });
            return;
        };
        let Some(command) = &process_spec.build else {
            let _ = self.inbox.send(Input::BuildFinished {
                build,
                result: Ok(()),
            });
            return;
        };
        let key = BuildKey {
            argv: command.argv(),
            cwd: process_spec.cwd.clone(),
            env: self.spec.env.clone(),
        };
        let began = if shared {
            let waiter = Waiter {
                service: self.name.clone(),
                inbox: self.inbox.clone(),
                build,
            };
            match self.project.builds.join_or_begin(&key, waiter) {
                Entry::Joined { shared, owner } => {
                    self.log.write_fleet_line(&format!(
                        "--- build: the same as {owner}'s, running now (its log has the output): {command} ---"
                    ));
                    self.builds.insert(build, LiveBuild::Shared { key, shared });
                    return;
                }
                Entry::Began(shared) => Some(shared),
            }
        } else {
            None
        };
        let marker = self
            .project
            .instance_marker(self.name(), &format!("build{build}"));
        let request = SpawnRequest {
            argv: command.argv(),
            cwd: process_spec.cwd.clone(),
            env: instance::environment(
                &self.spec,
                &self.project.name,
                &self.project.base_env,
                &marker,
                None,
            ),
            listen_fds: Vec::new(),
        };
        self.log
            .write_fleet_line(&format!("--- build started: {command} ---"));
        let spawned = match self.project.processes.spawn(&request) {
            Ok(spawned) => spawned,
            Err(err) => {
                let result = Err(err.to_string());
                match &began {
                    // Whoever joined meanwhile hears the same.
                    Some(shared) => self.project.builds.finish(&key, shared, result),
                    None => {
                        let _ = self.inbox.send(Input::BuildFinished { build, result });
                    }
                }
                return;
            }
        };
        self.project.journal.add(spawned.pid);
        let pid = spawned.pid;
        let finish = if let Some(shared) = began {
            SharedBuilds::spawned(&shared, pid, marker);
            self.builds.insert(
                build,
                LiveBuild::Shared {
                    key: key.clone(),
                    shared: shared.clone(),
                },
            );
            Some((key, shared))
        } else {
            self.builds
                .insert(build, LiveBuild::Process { pid, marker });
            None
        };
        let stdout = tokio::spawn(self.log.clone().pump(spawned.stdout, Stream::Build));
        let stderr = tokio::spawn(self.log.clone().pump(spawned.stderr, Stream::Build));
        let inbox = self.inbox.clone();
        let project = self.project.clone();
        let exit = spawned.exit;
        let started = Instant::now();
        tokio::spawn(async move {
            let status = exit.await.unwrap_or(ExitStatus::Signal(9));
            project.journal.remove(pid);
            let _ = stdout.await;
            let _ = stderr.await;
            let result = if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "build {status} after {}",
                    crate::event::format_duration_ms(started.elapsed().as_millis() as u64)
                ))
            };
            match finish {
                Some((key, shared)) => project.builds.finish(&key, &shared, result),
                None => {
                    let _ = inbox.send(Input::BuildFinished { build, result });
                }
            }
        });
    }

    fn report_status(&mut self) {
        let generation = self.machine.generation();
        let state = self.machine.state();
        let status = InstanceStatus {
            state,
            pid: self.machine.pid(),
            container: self.machine.container().map(str::to_string),
            generation,
            restarts: self.machine.restarts(),
            started_at_ms: (self.machine.pid().is_some() || self.machine.container().is_some())
                .then(|| self.started_at_ms.get(&generation).copied())
                .flatten(),
            ports: self.spec.listening_ports(),
            health: self.spec.health.as_ref().and(match state {
                ServiceState::Starting => Some(HealthStatus::Starting),
                ServiceState::Healthy => Some(HealthStatus::Healthy),
                ServiceState::Unhealthy => Some(HealthStatus::Unhealthy),
                _ => None,
            }),
            probe_error: self.machine.probe_error().map(str::to_string),
            build: if self.machine.building() {
                Some(BuildStatus::Running)
            } else if self.machine.last_build_failed() {
                Some(BuildStatus::Failed)
            } else {
                None
            },
            last_redeploy_at_ms: self.last_redeploy_at_ms,
        };
        let report = (status, self.machine.is_idle());
        if self.last_status.as_ref() != Some(&report) {
            self.last_status = Some(report.clone());
            let (status, idle) = report;
            let _ = self.reports.send(Report::Status {
                replica: self.replica.id.clone(),
                status,
                idle,
            });
        }
    }
}
