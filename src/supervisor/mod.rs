//! The supervisor: owns the runners, decides when dependencies hold, keeps the fleet's
//! [`Snapshot`], and is the sole publisher of [`Event`]s.
//!
//! # Theory of operation
//! One task waits on two queues: commands (from the CLI through the control socket,
//! from the TUI, from signals and the file watcher) and reports from the runners.
//! After each batch of arrivals it reconciles: the pure [`decide::reconcile`] says
//! which services start, wait, restart for a dependency, stop during shutdown or are
//! swapped after a reload, and this module carries that out (inputs to runners,
//! events). Then it publishes the new snapshot. It never touches a process itself;
//! runners do.

pub mod decide;
pub mod graph;
pub mod launch;
pub mod printer;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::event::{
    now_ms, Command, Event, EventKind, InstanceStatus, ServiceKindName, ServiceSnapshot,
    ServiceState, Snapshot,
};
use crate::logs::ServiceLog;
use crate::manifest::{Manifest, ServiceSpec};
use crate::protocol::ErrorCode;
use crate::runtime::ports;
use crate::service::runner::{ProjectContext, Report, RunnerHandle, ServiceRunner};
use crate::service::state::Input;

use crate::watch::{WatchEvent, WatchSpec, Watcher, DEFAULT_DEBOUNCE};
use decide::{Decision, Phase, ReloadDiff, Replacement, SlotState};
use graph::Graph;

/// Least time between two published snapshots while the fleet is busy; an idle
/// fleet publishes a change at once.
const PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// Capacity of the event broadcast. A reader that lags further resyncs from the
/// snapshot, so this only bounds how much history a slow reader can catch up on.
const EVENT_CAPACITY: usize = 4096;

/// Why the fleet could not be started. Nothing was started when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Declared ports are already taken: one line per port.
    #[error("{}", .0.join("\n"))]
    PortsBusy(Vec<String>),
    #[error("unknown service: {}", .0.join(", "))]
    UnknownServices(Vec<String>),
    /// A service's log file cannot be opened.
    #[error("{0}")]
    Io(#[source] std::io::Error),
}

/// An error reply to a command, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
}

pub type CommandResult = Result<String, CommandError>;

pub struct Request {
    pub command: Command,
    pub reply: oneshot::Sender<CommandResult>,
}

/// Everything a client of the supervisor needs; cheap to clone.
#[derive(Clone)]
pub struct SupervisorHandle {
    pub requests: mpsc::Sender<Request>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub events: broadcast::Sender<Event>,
}

impl SupervisorHandle {
    /// Sends a command and waits for its reply.
    pub async fn send(&self, command: Command) -> CommandResult {
        let (reply, response) = oneshot::channel();
        let gone = || CommandError {
            code: ErrorCode::ShuttingDown,
            message: "the supervisor is shutting down".into(),
        };
        self.requests
            .send(Request { command, reply })
            .await
            .map_err(|_| gone())?;
        response.await.map_err(|_| gone())?
    }
}

/// What the supervisor holds for one service beside its [`SlotState`]: the runner and
/// what it says about the service itself.
struct Runner {
    handle: RunnerHandle,
    task: JoinHandle<()>,
    last_event: Option<(u64, String)>,
    /// For the supervisor's own lines about this service (waiting, file changes).
    log: Arc<ServiceLog>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Graceful,
    Kill,
}

/// What the preflight check secured: the listening sockets fleet holds for services
/// with `socket`.
pub struct Preflight {
    listeners: HashMap<String, Arc<TcpListener>>,
}

/// Checks, before anything is created or started, that the selected services (all
/// when `selection` is empty) and their dependencies can start: the names exist, their
/// ports are free and their sockets can be bound. Reports every problem at once.
pub fn preflight(manifest: &Manifest, selection: &[String]) -> Result<Preflight, StartError> {
    let graph = Graph::new(manifest);
    let unknown: Vec<String> = selection
        .iter()
        .filter(|name| manifest.service(name).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(StartError::UnknownServices(unknown));
    }
    let selected = graph.with_dependencies(selection);
    let mut busy = Vec::new();
    let mut listeners = HashMap::new();
    for service in &manifest.services {
        if !selection.is_empty() && !selected.contains(&service.name) {
            continue;
        }
        let socket_port = service.socket.as_ref().map(|socket| socket.port);
        busy.extend(
            ports::busy(service.ports.iter().copied(), socket_port)
                .map(|detail| format!("service `{}`: {detail}", service.name)),
        );
        if let Some(socket) = &service.socket {
            match TcpListener::bind((socket.host.as_str(), socket.port)) {
                Ok(listener) => {
                    listeners.insert(service.name.clone(), Arc::new(listener));
                }
                Err(err) => {
                    let owner = ports::find_owner(socket.port);
                    let detail = match owner {
                        Some(_) => ports::describe_busy(socket.port, &owner),
                        None => format!("cannot bind {}:{}: {err}", socket.host, socket.port),
                    };
                    busy.push(format!("service `{}`: {detail}", service.name));
                }
            }
        }
    }
    if !busy.is_empty() {
        return Err(StartError::PortsBusy(busy));
    }
    Ok(Preflight { listeners })
}

pub struct Supervisor {
    manifest: Manifest,
    project: Arc<ProjectContext>,
    graph: Graph,
    /// What the decisions read, one per service ...
    slots: BTreeMap<String, SlotState>,
    /// ... and the runner beside each; both maps always hold the same names.
    runners: BTreeMap<String, Runner>,
    listeners: HashMap<String, Arc<TcpListener>>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    requests: mpsc::Receiver<Request>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<Event>,
    shutdown: Option<Shutdown>,
    down_waiters: Vec<oneshot::Sender<CommandResult>>,
    /// Events waiting for the snapshot that reflects them: a client that sees an event
    /// (say `healthy`) and then asks for `ps` must not get an older snapshot.
    held_events: Vec<Event>,
    watcher: Option<Watcher>,
}

fn watch_specs(manifest: &Manifest) -> Vec<WatchSpec> {
    manifest
        .services
        .iter()
        .filter(|spec| !spec.watch.is_empty())
        .map(WatchSpec::from)
        .collect()
}

impl Supervisor {
    /// Sets up one runner per service (none started yet) and marks the selection
    /// (all when empty) and its dependencies wanted. Call [`preflight`] first.
    pub fn new(
        manifest: Manifest,
        project: Arc<ProjectContext>,
        selection: &[String],
        preflight: Preflight,
    ) -> Result<(Supervisor, SupervisorHandle), StartError> {
        let graph = Graph::new(&manifest);
        let listeners = preflight.listeners;
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (requests_tx, requests) = mpsc::channel(256);
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let mut supervisor = Supervisor {
            graph,
            manifest,
            project,
            slots: BTreeMap::new(),
            runners: BTreeMap::new(),
            listeners,
            reports_tx,
            reports,
            requests,
            snapshot: snapshot_tx,
            events: events.clone(),
            shutdown: None,
            down_waiters: Vec::new(),
            held_events: Vec::new(),
            watcher: None,
        };
        let specs: Vec<ServiceSpec> = supervisor.manifest.services.clone();
        for spec in specs {
            supervisor.add_slot(spec).map_err(StartError::Io)?;
        }
        supervisor.select(selection)?;
        supervisor.publish();
        let handle = SupervisorHandle {
            requests: requests_tx,
            snapshot: snapshot_rx,
            events,
        };
        Ok((supervisor, handle))
    }

    fn add_slot(&mut self, spec: ServiceSpec) -> std::io::Result<()> {
        let log = ServiceLog::open(
            &self.project.log_dir,
            &spec.name,
            self.project.log_max_size,
            self.project.log_keep,
            self.project.hub.clone(),
        )?;
        let spec = Arc::new(spec);
        let listener = self.listeners.get(&spec.name).cloned();
        let (handle, task) = ServiceRunner::spawn(
            spec.clone(),
            self.project.clone(),
            log.clone(),
            listener,
            self.reports_tx.clone(),
        );
        self.slots.insert(
            spec.name.clone(),
            SlotState {
                spec: spec.clone(),
                phase: Phase::Unwanted,
                status: InstanceStatus::stopped(spec.listening_ports()),
                idle: true,
            },
        );
        self.runners.insert(
            spec.name.clone(),
            Runner {
                handle,
                task,
                last_event: None,
                log,
            },
        );
        Ok(())
    }

    /// Sends an input to a service's runner.
    fn send(&self, service: &str, input: Input) {
        if let Some(runner) = self.runners.get(service) {
            runner.handle.send(input);
        }
    }

    fn set_phase(&mut self, service: &str, phase: Phase) {
        if let Some(slot) = self.slots.get_mut(service) {
            slot.phase = phase;
        }
    }

    /// Marks `services` (all when empty) and their dependencies as wanted.
    fn select(&mut self, services: &[String]) -> Result<(), StartError> {
        let unknown: Vec<String> = services
            .iter()
            .filter(|s| !self.slots.contains_key(*s))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(StartError::UnknownServices(unknown));
        }
        let names: Vec<String> = if services.is_empty() {
            self.slots.keys().cloned().collect()
        } else {
            self.graph.with_dependencies(services).into_iter().collect()
        };
        for name in names {
            self.set_phase(&name, Phase::Waiting { blocked_on: None });
        }
        Ok(())
    }

    /// Runs until the fleet is down (after `Down` or `Kill`). Returns true when it
    /// ended by `Kill` (a second Ctrl-C) rather than a graceful stop.
    pub async fn run(mut self) -> bool {
        let (watch_sender, mut watch_events) = mpsc::unbounded_channel();
        self.watcher = match Watcher::start(
            &self.manifest.root,
            watch_specs(&self.manifest),
            DEFAULT_DEBOUNCE,
            watch_sender,
        ) {
            Ok(watcher) => watcher,
            Err(err) => {
                crate::note!("fleet: file watching is off: {err}");
                None
            }
        };
        let mut requests_closed = false;
        self.reconcile();
        self.publish();
        let mut last_publish = tokio::time::Instant::now();
        let mut publish_due: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(publish_due.unwrap_or(last_publish)), if publish_due.is_some() => {}
                Some(report) = self.reports.recv() => {
                    self.handle_report(report);
                    // Drain whatever else arrived, then reconcile once: with hundreds
                    // of services starting together this keeps the work linear.
                    while let Ok(report) = self.reports.try_recv() {
                        self.handle_report(report);
                    }
                }
                request = self.requests.recv(), if !requests_closed => match request {
                    Some(request) => self.handle_request(request),
                    None => {
                        // Every handle is gone: nobody can ever ask us to stop, so stop.
                        requests_closed = true;
                        if self.shutdown.is_none() {
                            self.begin_shutdown(Shutdown::Graceful);
                        }
                    }
                },
                Some(change) = watch_events.recv() => self.handle_watch(change),
            }
            self.reconcile();
            // While reports pour in (hundreds of services starting), publish at most
            // every PUBLISH_INTERVAL: each snapshot copies every service's row.
            let now = tokio::time::Instant::now();
            if now.duration_since(last_publish) >= PUBLISH_INTERVAL {
                self.publish();
                last_publish = now;
                publish_due = None;
            } else if publish_due.is_none() {
                publish_due = Some(last_publish + PUBLISH_INTERVAL);
            }
            if self.shutdown.is_some() && self.slots.values().all(|slot| slot.idle) {
                self.publish();
                break;
            }
        }
        for waiter in self.down_waiters.drain(..) {
            let _ = waiter.send(Ok("fleet stopped".into()));
        }
        // Dropping the handles ends the runners; they have nothing left to stop.
        self.slots.clear();
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut self.runners)
            .into_values()
            .map(|runner| runner.task)
            .collect();
        // (the handles were dropped with the slots)
        for task in tasks {
            let _ = task.await;
        }
        self.shutdown == Some(Shutdown::Kill)
    }

    /// A file change (or the watcher's own news).
    fn handle_watch(&mut self, change: WatchEvent) {
        match change {
            WatchEvent::Redeploy { service, paths } => {
                let Some(slot) = self.slots.get_mut(&service) else {
                    return;
                };
                // A service the user stopped stays stopped; a failed one gets its retry.
                if !slot.phase.wanted() || self.shutdown.is_some() {
                    return;
                }
                slot.phase = Phase::Launched {
                    seen: slot.phase.seen(),
                };
                self.send(&service, Input::Redeploy);
                let shown: Vec<String> = paths
                    .iter()
                    .take(3)
                    .map(|p| p.display().to_string())
                    .collect();
                let more = paths.len().saturating_sub(shown.len());
                let text = match (shown.is_empty(), more) {
                    (true, _) => "changes detected, redeploying".to_string(),
                    (false, 0) => format!("{} changed, redeploying", shown.join(", ")),
                    (false, more) => {
                        format!("{} and {more} more changed, redeploying", shown.join(", "))
                    }
                };
                self.emit(&service, EventKind::Message { text });
            }
            WatchEvent::Paused { service, reason } => {
                self.emit(&service, EventKind::RedeployPaused { reason })
            }
            WatchEvent::Error { message } => crate::note!("fleet: file watching: {message}"),
        }
    }

    fn emit(&mut self, service: &str, event: EventKind) {
        let at_ms = now_ms();
        let generation = self
            .slots
            .get(service)
            .map(|slot| slot.status.generation)
            .unwrap_or_default();
        if let Some(runner) = self.runners.get_mut(service) {
            runner.last_event = Some((at_ms, event.to_string()));
            runner.log.write_fleet_line(&event.to_string());
        }
        self.held_events.push(Event {
            at_ms,
            service: service.to_string(),
            generation,
            kind: event,
        });
    }

    fn handle_report(&mut self, report: Report) {
        match report {
            Report::Status {
                service,
                status,
                idle,
            } => {
                if let Some(slot) = self.slots.get_mut(&service) {
                    slot.status = status;
                    slot.idle = idle;
                }
            }
            Report::Event {
                service,
                generation,
                event,
            } => {
                if matches!(event, EventKind::StateChanged { .. }) {
                    // Carried by the snapshot; sending both would double every line.
                    return;
                }
                let at_ms = now_ms();
                let current = self.slots.get(&service).map(|slot| slot.status.generation);
                if let (Some(runner), Some(current)) = (self.runners.get_mut(&service), current) {
                    // The exit of a replaced instance is routine; what the user wants to
                    // see is the redeploy that replaced it.
                    if !event.is_routine_for(generation, current) {
                        runner.last_event = Some((at_ms, event.to_string()));
                    }
                }
                self.held_events.push(Event {
                    at_ms,
                    service,
                    generation,
                    kind: event,
                });
            }
        }
    }

    fn handle_request(&mut self, request: Request) {
        let Request { command, reply } = request;
        if self.shutdown.is_some() && !matches!(command, Command::Down | Command::Kill) {
            let _ = reply.send(Err(CommandError {
                code: ErrorCode::ShuttingDown,
                message: "the fleet is stopping".into(),
            }));
            return;
        }
        let result = match command {
            Command::Down => {
                self.begin_shutdown(Shutdown::Graceful);
                self.down_waiters.push(reply);
                return;
            }
            Command::Kill => {
                self.begin_shutdown(Shutdown::Kill);
                self.down_waiters.push(reply);
                return;
            }
            Command::Start { services } => {
                self.for_services(&services, "started", |supervisor, name| {
                    let dependencies: Vec<String> = supervisor
                        .graph
                        .with_dependencies(&[name.to_string()])
                        .into_iter()
                        .collect();
                    for dependency in dependencies {
                        if let Some(slot) = supervisor.slots.get_mut(&dependency) {
                            let retry = slot.status.state == ServiceState::Failed
                                && !matches!(slot.phase, Phase::Replacing(_));
                            if matches!(slot.phase, Phase::Unwanted) || retry {
                                slot.phase = Phase::Waiting { blocked_on: None };
                            }
                        }
                    }
                })
            }
            Command::Stop { services } => {
                self.for_services(&services, "stopped", |supervisor, name| {
                    if !matches!(
                        supervisor.slots.get(name).map(|slot| &slot.phase),
                        Some(Phase::Replacing(_))
                    ) {
                        supervisor.set_phase(name, Phase::Unwanted);
                    }
                    supervisor.send(name, Input::Stop);
                })
            }
            Command::Restart { services } => {
                self.for_services(&services, "restarting", |supervisor, name| {
                    supervisor.relaunch(name, Input::Restart);
                })
            }
            Command::Redeploy { services } => {
                self.for_services(&services, "redeploying", |supervisor, name| {
                    if let Some(watcher) = &supervisor.watcher {
                        // A user's redeploy lifts a redeploy-loop pause.
                        watcher.resume(name);
                    }
                    supervisor.relaunch(name, Input::Redeploy);
                })
            }
            Command::Reload => self.reload(),
        };
        let _ = reply.send(result);
    }

    /// Restart or redeploy on the user's word: the service is wanted and launched from
    /// now on, whatever it waited for.
    fn relaunch(&mut self, name: &str, input: Input) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if matches!(slot.phase, Phase::Replacing(_)) {
            // Its new definition starts once the old instance is gone.
            return;
        }
        slot.phase = Phase::Launched {
            seen: slot.phase.seen(),
        };
        self.send(name, input);
    }

    /// Applies `action` to each named service (every service when `names` is empty),
    /// after checking that all names exist.
    fn for_services(
        &mut self,
        names: &[String],
        verb: &str,
        mut action: impl FnMut(&mut Supervisor, &str),
    ) -> CommandResult {
        let unknown: Vec<&String> = names
            .iter()
            .filter(|name| !self.slots.contains_key(*name))
            .collect();
        if !unknown.is_empty() {
            let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
            return Err(CommandError {
                code: ErrorCode::UnknownService,
                message: format!("unknown service: {}", list.join(", ")),
            });
        }
        let targets: Vec<String> = if names.is_empty() {
            self.slots.keys().cloned().collect()
        } else {
            names.to_vec()
        };
        for name in &targets {
            action(self, name);
        }
        Ok(format!("{verb}: {}", targets.join(", ")))
    }

    /// Re-reads the manifest and applies the difference: added services start, removed
    /// ones stop, changed ones restart with their new definition, and nothing else is
    /// touched. An invalid manifest changes nothing.
    fn reload(&mut self) -> CommandResult {
        let manifest = crate::manifest::load(&self.manifest.path).map_err(|err| CommandError {
            code: ErrorCode::InvalidManifest,
            message: err.render(false),
        })?;
        let diff = ReloadDiff::new(&self.slots, &manifest);
        // Bind every new socket before changing anything, so a busy port leaves the
        // running fleet as it was.
        let mut bound = Vec::new();
        for name in &diff.added {
            let Some(socket) = manifest.service(name).and_then(|spec| spec.socket.as_ref()) else {
                continue;
            };
            let listener =
                TcpListener::bind((socket.host.as_str(), socket.port)).map_err(|err| {
                    CommandError {
                        code: ErrorCode::Internal,
                        message: format!(
                            "service `{name}`: cannot bind {}:{}: {err}",
                            socket.host, socket.port
                        ),
                    }
                })?;
            bound.push((name.clone(), Arc::new(listener)));
        }
        self.listeners.extend(bound);
        for name in &diff.changed {
            if let Some(spec) = manifest.service(name) {
                let replacement = Replacement::Spec(Box::new(spec.clone()));
                self.set_phase(name, Phase::Replacing(replacement));
                self.send(name, Input::Stop);
            }
        }
        for name in &diff.removed {
            self.set_phase(name, Phase::Replacing(Replacement::Remove));
            self.send(name, Input::Stop);
        }
        for name in &diff.added {
            if let Some(spec) = manifest.service(name) {
                self.add_slot(spec.clone()).map_err(|err| CommandError {
                    code: ErrorCode::Internal,
                    message: format!("service `{name}`: {err}"),
                })?;
                self.set_phase(name, Phase::Waiting { blocked_on: None });
            }
        }
        self.manifest = manifest;
        self.graph = Graph::new(&self.manifest);
        if let Some(watcher) = &self.watcher {
            watcher.update(watch_specs(&self.manifest));
        }
        Ok(diff.describe())
    }

    /// A reload replacement whose old instance is gone: drop the service, or start its
    /// new definition.
    fn replace(&mut self, name: &str) {
        let Some(slot) = self.slots.remove(name) else {
            return;
        };
        // Dropping the handle ends the runner (it has nothing left to stop).
        self.runners.remove(name);
        match slot.phase {
            Phase::Replacing(Replacement::Spec(spec)) => {
                if let Err(err) = self.add_slot(*spec) {
                    crate::note!("fleet: cannot restart `{name}` after reload: {err}");
                    return;
                }
                self.set_phase(name, Phase::Waiting { blocked_on: None });
            }
            _ => {
                self.listeners.remove(name);
            }
        }
    }

    fn begin_shutdown(&mut self, mode: Shutdown) {
        if self.shutdown == Some(Shutdown::Kill) {
            return;
        }
        self.shutdown = Some(mode);
        if mode == Shutdown::Kill {
            let names: Vec<String> = self.slots.keys().cloned().collect();
            for name in names {
                self.set_phase(&name, Phase::Stopping);
                self.send(&name, Input::Kill);
            }
        }
    }

    /// Carries out what [`decide::reconcile`] decides, until it has nothing more to say
    /// (a replacement or a start can unblock more in the same pass).
    fn reconcile(&mut self) {
        for _ in 0..self.slots.len() + 2 {
            let decisions = decide::reconcile(&self.slots, &self.graph, self.shutdown.is_some());
            if decisions.is_empty() {
                return;
            }
            let mut replaced = false;
            for decision in decisions {
                match decision {
                    Decision::Start { service, seen } => {
                        self.set_phase(&service, Phase::Launched { seen });
                        self.send(&service, Input::Start);
                    }
                    Decision::Restart { service, seen } => {
                        self.set_phase(&service, Phase::Launched { seen });
                        self.send(&service, Input::Restart);
                    }
                    Decision::Wait { service, blocker } => {
                        let text = format!("waiting for {blocker}");
                        self.set_phase(
                            &service,
                            Phase::Waiting {
                                blocked_on: Some(blocker),
                            },
                        );
                        self.emit(&service, EventKind::Message { text });
                    }
                    Decision::Stop { service } => {
                        self.set_phase(&service, Phase::Stopping);
                        self.send(&service, Input::Stop);
                    }
                    Decision::Replace { service } => {
                        self.replace(&service);
                        replaced = true;
                    }
                }
            }
            if !replaced {
                // Starts and stops change nothing until the runners report back.
                return;
            }
        }
    }

    /// Publishes the snapshot, then the events it already reflects.
    fn publish(&mut self) {
        let services = self
            .manifest
            .services
            .iter()
            .filter_map(|spec| self.slots.get(&spec.name))
            .map(|slot| {
                let mut status = slot.status.clone();
                let waiting_for = match &slot.phase {
                    Phase::Waiting { blocked_on } => {
                        if status.state == ServiceState::Stopped {
                            status.state = ServiceState::Waiting;
                        }
                        blocked_on.clone()
                    }
                    _ => None,
                };
                let last_event = self
                    .runners
                    .get(&slot.spec.name)
                    .and_then(|runner| runner.last_event.clone());
                ServiceSnapshot {
                    name: slot.spec.name.clone(),
                    kind: if slot.spec.is_container() {
                        ServiceKindName::Container
                    } else {
                        ServiceKindName::Process
                    },
                    status,
                    last_event_at_ms: last_event.as_ref().map(|(at, _)| *at),
                    last_event: last_event.map(|(_, text)| text),
                    waiting_for,
                }
            })
            .collect();
        let snapshot = Snapshot {
            project: self.project.name.clone(),
            manifest: self.manifest.path.display().to_string(),
            supervisor_pid: std::process::id(),
            services,
            shutting_down: self.shutdown.is_some(),
        };
        self.snapshot.send_if_modified(|current| {
            if **current == snapshot {
                false
            } else {
                *current = Arc::new(snapshot);
                true
            }
        });
        for event in self.held_events.drain(..) {
            // No subscriber is fine: events are news, the snapshot is the state.
            let _ = self.events.send(event);
        }
    }
}
