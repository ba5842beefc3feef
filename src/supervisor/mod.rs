//! The supervisor: owns the runners, decides when dependencies hold, keeps the fleet's
//! [`Snapshot`], and is the sole publisher of [`Event`]s.
//!
//! # Theory of operation
//! One task waits on two queues: commands (from the CLI through the control socket,
//! from the TUI, from signals and the file watcher) and reports from the runners.
//! After each batch of arrivals it reconciles: services that should run and whose
//! dependency conditions hold get `Start`; during shutdown, services none of whose
//! dependents still run get `Stop`. Then it publishes the new snapshot. It never
//! touches a process itself; runners do.

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
    now_ms, Command, Event, EventKind, Generation, ServiceKindName, ServiceSnapshot, ServiceState,
    Snapshot, WaitCondition, WaitingFor,
};
use crate::logs::ServiceLog;
use crate::manifest::{DependencyCondition, Manifest, ServiceSpec};
use crate::protocol::ErrorCode;
use crate::runtime::ports;
use crate::service::runner::{ProjectContext, Report, RunnerHandle, ServiceRunner, ServiceStatus};
use crate::service::state::Input;

use crate::watch::{WatchEvent, WatchSpec, Watcher, DEFAULT_DEBOUNCE};
use graph::Graph;

/// Least time between two published snapshots while the fleet is busy; an idle
/// fleet publishes a change at once.
const PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// Capacity of the event broadcast. A reader that lags further resyncs from the
/// snapshot, so this only bounds how much history a slow reader can catch up on.
const EVENT_CAPACITY: usize = 4096;

/// Why the fleet could not be started. Nothing was started when this is returned.
#[derive(Debug)]
pub enum StartError {
    /// Declared ports are already taken.
    PortsBusy(Vec<String>),
    UnknownServices(Vec<String>),
    Io(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::PortsBusy(problems) => {
                for (index, problem) in problems.iter().enumerate() {
                    if index > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{problem}")?;
                }
                Ok(())
            }
            StartError::UnknownServices(names) => {
                write!(f, "unknown service: {}", names.join(", "))
            }
            StartError::Io(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StartError {}

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

struct Slot {
    spec: Arc<ServiceSpec>,
    handle: RunnerHandle,
    task: JoinHandle<()>,
    status: ServiceStatus,
    /// The user wants this service up.
    desired: bool,
    /// `Start` was sent for the current desire.
    launched: bool,
    waiting_for: Option<WaitingFor>,
    last_event: Option<(u64, String)>,
    /// Dependency generations seen when this service last (re)started, for edges with
    /// `restart = true`.
    seen_generations: HashMap<String, Generation>,
    stop_sent: bool,
    /// `fleet reload` removed or changed this service: once it is stopped, drop it and
    /// (when changed) start its new definition.
    replace_with: Option<Replacement>,
    /// For the supervisor's own lines about this service (waiting, file changes).
    log: Arc<ServiceLog>,
}

#[derive(Debug, Clone)]
enum Replacement {
    Remove,
    Spec(Box<ServiceSpec>),
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
        for port in &service.ports {
            if service
                .socket
                .as_ref()
                .is_some_and(|socket| socket.port == *port)
            {
                continue;
            }
            if let Err(owner) = ports::check_free(*port) {
                busy.push(format!(
                    "service `{}`: {}",
                    service.name,
                    ports::describe_busy(*port, &owner)
                ));
            }
        }
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
    slots: BTreeMap<String, Slot>,
    listeners: HashMap<String, Arc<TcpListener>>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    requests: mpsc::Receiver<Request>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<Event>,
    shutdown: Option<Shutdown>,
    down_waiters: Vec<oneshot::Sender<CommandResult>>,
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
            listeners,
            reports_tx,
            reports,
            requests,
            snapshot: snapshot_tx,
            events: events.clone(),
            shutdown: None,
            down_waiters: Vec::new(),
            watcher: None,
        };
        let specs: Vec<ServiceSpec> = supervisor.manifest.services.clone();
        for spec in specs {
            supervisor
                .add_slot(spec)
                .map_err(|err| StartError::Io(err.to_string()))?;
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
        let status = ServiceStatus {
            state: ServiceState::Stopped,
            pid: None,
            container: None,
            generation: Generation(0),
            restarts: 0,
            started_at_ms: None,
            health: None,
            probe_error: None,
            build: None,
            last_redeploy_at_ms: None,
            idle: true,
            failure: None,
        };
        self.slots.insert(
            spec.name.clone(),
            Slot {
                spec,
                handle,
                task,
                status,
                desired: false,
                launched: false,
                waiting_for: None,
                last_event: None,
                seen_generations: HashMap::new(),
                stop_sent: false,
                replace_with: None,
                log,
            },
        );
        Ok(())
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
            if let Some(slot) = self.slots.get_mut(&name) {
                slot.desired = true;
            }
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
            if self.shutdown.is_some() && self.slots.values().all(|slot| slot.status.idle) {
                self.publish();
                break;
            }
        }
        for waiter in self.down_waiters.drain(..) {
            let _ = waiter.send(Ok("fleet stopped".into()));
        }
        // Dropping the handles ends the runners; they have nothing left to stop.
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut self.slots)
            .into_values()
            .map(|slot| slot.task)
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
                if !slot.desired || self.shutdown.is_some() {
                    return;
                }
                slot.launched = true;
                slot.handle.send(Input::Redeploy);
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
        if let Some(slot) = self.slots.get_mut(service) {
            slot.last_event = Some((at_ms, event.to_string()));
            slot.log.write_fleet_line(&event.to_string());
        }
        let _ = self.events.send(Event {
            at_ms,
            service: service.to_string(),
            generation,
            kind: event,
        });
    }

    fn handle_report(&mut self, report: Report) {
        match report {
            Report::Status { service, status } => {
                if let Some(slot) = self.slots.get_mut(&service) {
                    slot.status = status;
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
                if let Some(slot) = self.slots.get_mut(&service) {
                    // The exit of a replaced instance is routine; what the user wants to
                    // see is the redeploy that replaced it.
                    let routine = event.is_routine_for(generation, slot.status.generation);
                    if !routine {
                        slot.last_event = Some((at_ms, event.to_string()));
                    }
                }
                let _ = self.events.send(Event {
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
                            if !slot.desired || slot.status.state == ServiceState::Failed {
                                slot.desired = true;
                                slot.launched = false;
                            }
                        }
                    }
                })
            }
            Command::Stop { services } => {
                self.for_services(&services, "stopped", |supervisor, name| {
                    if let Some(slot) = supervisor.slots.get_mut(name) {
                        slot.desired = false;
                        slot.launched = false;
                        slot.waiting_for = None;
                        slot.handle.send(Input::Stop);
                    }
                })
            }
            Command::Restart { services } => {
                self.for_services(&services, "restarting", |supervisor, name| {
                    if let Some(slot) = supervisor.slots.get_mut(name) {
                        slot.desired = true;
                        slot.launched = true;
                        slot.handle.send(Input::Restart);
                    }
                })
            }
            Command::Redeploy { services } => {
                self.for_services(&services, "redeploying", |supervisor, name| {
                    if let Some(watcher) = &supervisor.watcher {
                        // A user's redeploy lifts a redeploy-loop pause.
                        watcher.resume(name);
                    }
                    if let Some(slot) = supervisor.slots.get_mut(name) {
                        slot.desired = true;
                        slot.launched = true;
                        slot.handle.send(Input::Redeploy);
                    }
                })
            }
            Command::Reload => self.reload(),
        };
        let _ = reply.send(result);
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
    /// ones stop, changed ones (by spec hash) restart with their new definition, and
    /// nothing else is touched. An invalid manifest changes nothing.
    fn reload(&mut self) -> CommandResult {
        let manifest = crate::manifest::load(&self.manifest.path).map_err(|err| CommandError {
            code: ErrorCode::InvalidManifest,
            message: err.render(false),
        })?;
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let mut changed = Vec::new();
        for spec in &manifest.services {
            match self.slots.get_mut(&spec.name) {
                None => added.push(spec.name.clone()),
                Some(slot) if slot.spec.spec_hash() != spec.spec_hash() => {
                    changed.push(spec.name.clone());
                    slot.replace_with = Some(Replacement::Spec(Box::new(spec.clone())));
                    slot.desired = false;
                    slot.launched = false;
                    slot.handle.send(Input::Stop);
                }
                Some(_) => {}
            }
        }
        for (name, slot) in self.slots.iter_mut() {
            if manifest.service(name).is_none() {
                removed.push(name.clone());
                slot.replace_with = Some(Replacement::Remove);
                slot.desired = false;
                slot.launched = false;
                slot.handle.send(Input::Stop);
            }
        }
        for name in &added {
            if let Some(spec) = manifest.service(name) {
                if let Some(socket) = &spec.socket {
                    match TcpListener::bind((socket.host.as_str(), socket.port)) {
                        Ok(listener) => {
                            self.listeners.insert(name.clone(), Arc::new(listener));
                        }
                        Err(err) => {
                            return Err(CommandError {
                                code: ErrorCode::Internal,
                                message: format!(
                                    "service `{name}`: cannot bind {}:{}: {err}",
                                    socket.host, socket.port
                                ),
                            })
                        }
                    }
                }
                self.add_slot(spec.clone()).map_err(|err| CommandError {
                    code: ErrorCode::Internal,
                    message: format!("service `{name}`: {err}"),
                })?;
                if let Some(slot) = self.slots.get_mut(name) {
                    slot.desired = true;
                }
            }
        }
        self.manifest = manifest;
        self.graph = Graph::new(&self.manifest);
        if let Some(watcher) = &self.watcher {
            watcher.update(watch_specs(&self.manifest));
        }
        let describe = |what: &str, names: &[String]| {
            if names.is_empty() {
                None
            } else {
                Some(format!("{what}: {}", names.join(", ")))
            }
        };
        let parts: Vec<String> = [
            describe("added", &added),
            describe("removed", &removed),
            describe("changed", &changed),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(if parts.is_empty() {
            "no changes".to_string()
        } else {
            parts.join("; ")
        })
    }

    /// Finishes reload replacements whose old instance is gone.
    fn finish_replacements(&mut self) {
        let ready: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.replace_with.is_some() && slot.status.idle)
            .map(|(name, _)| name.clone())
            .collect();
        for name in ready {
            let Some(slot) = self.slots.remove(&name) else {
                continue;
            };
            if let Some(Replacement::Spec(spec)) = slot.replace_with {
                if let Err(err) = self.add_slot(*spec) {
                    crate::note!("fleet: cannot restart `{name}` after reload: {err}");
                    continue;
                }
                if let Some(slot) = self.slots.get_mut(&name) {
                    slot.desired = true;
                }
            } else {
                self.listeners.remove(&name);
            }
        }
    }

    fn begin_shutdown(&mut self, mode: Shutdown) {
        if self.shutdown == Some(Shutdown::Kill) {
            return;
        }
        self.shutdown = Some(mode);
        for slot in self.slots.values_mut() {
            slot.desired = false;
            if mode == Shutdown::Kill {
                slot.handle.send(Input::Kill);
                slot.stop_sent = true;
            }
        }
    }

    /// Starts what may start, stops what may stop.
    fn reconcile(&mut self) {
        self.finish_replacements();
        if self.shutdown.is_some() {
            self.reconcile_shutdown();
            return;
        }
        // Only services that may need a Start or a dependency restart: with hundreds of
        // running services this runs after every batch of reports.
        let names: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, slot)| {
                slot.desired && (!slot.launched || slot.spec.depends_on.iter().any(|d| d.restart))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &names {
            let Some(slot) = self.slots.get(name) else {
                continue;
            };
            let blocker = self.unmet_dependency(&slot.spec);
            let launched = slot.launched;
            let restart_edges = self.dependency_restarts(name);
            let Some(slot) = self.slots.get_mut(name) else {
                continue;
            };
            if launched {
                if !restart_edges.is_empty() && blocker.is_none() {
                    for (dependency, generation) in restart_edges {
                        slot.seen_generations.insert(dependency, generation);
                    }
                    slot.handle.send(Input::Restart);
                }
                continue;
            }
            match blocker {
                None => {
                    slot.waiting_for = None;
                    slot.launched = true;
                    slot.handle.send(Input::Start);
                    let dependencies: Vec<String> = slot
                        .spec
                        .depends_on
                        .iter()
                        .map(|d| d.service.clone())
                        .collect();
                    let generations: HashMap<String, Generation> = dependencies
                        .into_iter()
                        .map(|dependency| {
                            let generation = self
                                .slots
                                .get(&dependency)
                                .map(|d| d.status.generation)
                                .unwrap_or_default();
                            (dependency, generation)
                        })
                        .collect();
                    if let Some(slot) = self.slots.get_mut(name) {
                        slot.seen_generations = generations;
                    }
                }
                Some(waiting) => {
                    if slot.waiting_for.as_ref() != Some(&waiting) {
                        slot.waiting_for = Some(waiting.clone());
                        let at_ms = now_ms();
                        let event = EventKind::Message {
                            text: format!("waiting for {waiting}"),
                        };
                        slot.last_event = Some((at_ms, event.to_string()));
                        slot.log.write_fleet_line(&event.to_string());
                        let _ = self.events.send(Event {
                            at_ms,
                            service: name.clone(),
                            generation: slot.status.generation,
                            kind: event,
                        });
                    }
                }
            }
        }
    }

    /// The first dependency whose condition does not hold, described for a user.
    fn unmet_dependency(&self, spec: &ServiceSpec) -> Option<WaitingFor> {
        for dependency in &spec.depends_on {
            let Some(slot) = self.slots.get(&dependency.service) else {
                continue;
            };
            let state = slot.status.state;
            let holds = match dependency.condition {
                DependencyCondition::Started => state.is_up() || state == ServiceState::Completed,
                DependencyCondition::Healthy => matches!(
                    state,
                    ServiceState::Healthy | ServiceState::Running | ServiceState::Completed
                ),
                DependencyCondition::Completed => state == ServiceState::Completed,
            };
            if !holds {
                let condition = match dependency.condition {
                    DependencyCondition::Started => WaitCondition::Started,
                    DependencyCondition::Healthy => WaitCondition::Healthy,
                    DependencyCondition::Completed => WaitCondition::Completed,
                };
                return Some(WaitingFor {
                    service: dependency.service.clone(),
                    condition,
                    failed: state == ServiceState::Failed,
                });
            }
        }
        None
    }

    /// Dependencies with `restart = true` that came back with a new generation since
    /// this service started.
    fn dependency_restarts(&self, name: &str) -> Vec<(String, Generation)> {
        let Some(slot) = self.slots.get(name) else {
            return Vec::new();
        };
        slot.spec
            .depends_on
            .iter()
            .filter(|dependency| dependency.restart)
            .filter_map(|dependency| {
                let status = &self.slots.get(&dependency.service)?.status;
                let seen = slot
                    .seen_generations
                    .get(&dependency.service)
                    .copied()
                    .unwrap_or_default();
                (status.generation != seen && status.state.is_ready())
                    .then(|| (dependency.service.clone(), status.generation))
            })
            .collect()
    }

    fn reconcile_shutdown(&mut self) {
        let names: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, slot)| !slot.stop_sent)
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let dependents_idle = self.graph.dependents(&name).iter().all(|dependent| {
                self.slots
                    .get(dependent)
                    .is_none_or(|slot| slot.status.idle)
            });
            let Some(slot) = self.slots.get_mut(&name) else {
                continue;
            };
            if !slot.stop_sent && dependents_idle {
                slot.stop_sent = true;
                slot.handle.send(Input::Stop);
            }
        }
    }

    fn publish(&self) {
        let services = self
            .manifest
            .services
            .iter()
            .filter_map(|spec| self.slots.get(&spec.name))
            .map(|slot| {
                let mut state = slot.status.state;
                if slot.desired && !slot.launched && state == ServiceState::Stopped {
                    state = ServiceState::Waiting;
                }
                let mut ports = slot.spec.ports.clone();
                if let Some(socket) = &slot.spec.socket {
                    if !ports.contains(&socket.port) {
                        ports.push(socket.port);
                    }
                }
                ServiceSnapshot {
                    name: slot.spec.name.clone(),
                    kind: if slot.spec.is_container() {
                        ServiceKindName::Container
                    } else {
                        ServiceKindName::Process
                    },
                    state,
                    pid: slot.status.pid,
                    container: slot.status.container.clone(),
                    generation: slot.status.generation,
                    restarts: slot.status.restarts,
                    started_at_ms: slot.status.started_at_ms,
                    ports,
                    health: slot.status.health,
                    probe_error: slot.status.probe_error.clone(),
                    build: slot.status.build,
                    last_redeploy_at_ms: slot.status.last_redeploy_at_ms,
                    last_event: slot.last_event.as_ref().map(|(_, text)| text.clone()),
                    last_event_at_ms: slot.last_event.as_ref().map(|(at, _)| *at),
                    waiting_for: slot.waiting_for.clone(),
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
    }
}
