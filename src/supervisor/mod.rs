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
pub mod roll;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::event::{
    now_ms, Command, Event, EventKind, Generation, InstanceStatus, ReplicaId, ServiceKindName,
    ServiceSnapshot, ServiceState, Snapshot,
};
use crate::logs::ServiceLog;
use crate::manifest::{Activation, Manifest, ServiceSpec, MAX_REPLICAS};
use crate::protocol::ErrorCode;
use crate::runtime::ports;
use crate::service::runner::{ProjectContext, Replica, Report, RunnerHandle, ServiceRunner};
use crate::service::state::Input;

use crate::watch::{WatchEvent, WatchSpec, Watcher, DEFAULT_DEBOUNCE};
use decide::{Decision, Phase, ReloadDiff, Replacement, SlotState, Slots};
use graph::Graph;
use roll::{Roll, RollAction, RollKind};

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

/// What the supervisor holds for one replica beside its [`SlotState`]: the runner and
/// what it says about the replica itself.
struct Runner {
    handle: RunnerHandle,
    task: JoinHandle<()>,
    last_event: Option<(u64, String)>,
    /// For the supervisor's own lines about this replica (waiting, file changes).
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

/// The host ports `spec`'s replicas `from..to` (0-based) listen on, busy ones
/// described, each line naming the replica.
fn busy_replica_ports(spec: &ServiceSpec, from: u32, to: u32) -> Vec<String> {
    let socket_port = spec.socket.as_ref().map(|socket| socket.port);
    (from..to)
        .flat_map(|index| {
            let replica = spec.replica(index);
            let name = ReplicaId::new(spec.name.as_str(), index + 1)
                .display_name(spec.replicas > 1 || to > 1);
            ports::busy(replica.ports.iter().copied(), socket_port)
                .map(move |detail| format!("service `{name}`: {detail}"))
                .collect::<Vec<String>>()
        })
        .collect()
}

/// Checks, before anything is created or started, that the services `activation`
/// selects and their dependencies can start: the names and profiles exist, every
/// replica's ports are free and the sockets can be bound. Reports every problem at
/// once.
pub fn preflight(manifest: &Manifest, activation: &Activation) -> Result<Preflight, StartError> {
    let unknown: Vec<String> = activation
        .services
        .iter()
        .filter(|name| manifest.service(name).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(StartError::UnknownServices(unknown));
    }
    let selected = manifest.selection(activation);
    let mut busy = Vec::new();
    let mut listeners = HashMap::new();
    for service in &manifest.services {
        if !selected.contains(&service.name) {
            continue;
        }
        busy.extend(busy_replica_ports(service, 0, service.replicas));
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

/// Unknown names shown in an error; a request may name thousands (up to the request
/// size limit), and a reply that repeats them all helps nobody.
const UNKNOWN_NAMES_SHOWN: usize = 10;

fn unknown(names: &[String], hint: String) -> CommandError {
    let mut shown = names
        .iter()
        .take(UNKNOWN_NAMES_SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > UNKNOWN_NAMES_SHOWN {
        shown.push_str(&format!(" and {} more", names.len() - UNKNOWN_NAMES_SHOWN));
    }
    CommandError {
        code: ErrorCode::UnknownService,
        message: format!("unknown service: {shown}{hint}"),
    }
}

pub struct Supervisor {
    manifest: Manifest,
    project: Arc<ProjectContext>,
    graph: Graph,
    /// Which services `fleet up` enabled (profiles, names).
    activation: Activation,
    /// Each service's spec as it runs now, and its replica count (shared with its
    /// runners for `FLEET_REPLICAS`).
    specs: BTreeMap<String, Arc<ServiceSpec>>,
    counts: BTreeMap<String, Arc<AtomicU32>>,
    /// What the decisions read, one per replica ...
    slots: Slots,
    /// ... and the runner beside each; both maps always hold the same keys.
    runners: BTreeMap<ReplicaId, Runner>,
    /// Rolling redeploys and reloads under way, by service.
    rolls: BTreeMap<String, Roll>,
    incarnations: u64,
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
    /// Sets up the runners of every replica of every service (none started yet) and
    /// marks what `activation` selects wanted. Call [`preflight`] first.
    pub fn new(
        manifest: Manifest,
        project: Arc<ProjectContext>,
        activation: Activation,
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
            activation,
            specs: BTreeMap::new(),
            counts: BTreeMap::new(),
            slots: BTreeMap::new(),
            runners: BTreeMap::new(),
            rolls: BTreeMap::new(),
            incarnations: 0,
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
            supervisor.add_service(spec).map_err(StartError::Io)?;
        }
        let selection = supervisor.manifest.selection(&supervisor.activation);
        supervisor.want(&selection);
        supervisor.publish();
        let handle = SupervisorHandle {
            requests: requests_tx,
            snapshot: snapshot_rx,
            events,
        };
        Ok((supervisor, handle))
    }

    /// A service's spec, count and replica slots (at least replica 1's, so that a
    /// service scaled to zero stays in `ps`).
    fn add_service(&mut self, spec: ServiceSpec) -> std::io::Result<()> {
        let spec = Arc::new(spec);
        self.counts
            .insert(spec.name.clone(), Arc::new(AtomicU32::new(spec.replicas)));
        self.specs.insert(spec.name.clone(), spec.clone());
        for replica in 1..=spec.replicas.max(1) {
            self.add_slot(ReplicaId::new(spec.name.as_str(), replica), spec.clone())?;
        }
        Ok(())
    }

    fn add_slot(&mut self, id: ReplicaId, spec: Arc<ServiceSpec>) -> std::io::Result<()> {
        let log = ServiceLog::open(
            &self.project.log_dir,
            &id.file_name(),
            self.project.log_max_size,
            self.project.log_keep,
            self.project.hub.clone(),
        )?;
        let reports = self.reports_tx.clone();
        let replica = id.clone();
        log.report_incidents(move |event| {
            let _ = reports.send(Report::LogIncident {
                replica: replica.clone(),
                event,
            });
        });
        let listener = self.listeners.get(&spec.name).cloned();
        let count = self
            .counts
            .entry(spec.name.clone())
            .or_insert_with(|| Arc::new(AtomicU32::new(spec.replicas)))
            .clone();
        let (handle, task) = ServiceRunner::spawn(
            &spec,
            Replica {
                id: id.clone(),
                count,
            },
            self.project.clone(),
            log.clone(),
            listener,
            self.reports_tx.clone(),
        );
        self.incarnations += 1;
        let ports = spec.replica(id.replica.saturating_sub(1)).listening_ports();
        self.slots.insert(
            id.clone(),
            SlotState {
                spec,
                phase: Phase::Unwanted,
                status: InstanceStatus::stopped(ports),
                idle: true,
                incarnation: self.incarnations,
            },
        );
        self.runners.insert(
            id,
            Runner {
                handle,
                task,
                last_event: None,
                log,
            },
        );
        Ok(())
    }

    fn count(&self, service: &str) -> u32 {
        self.counts
            .get(service)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// Whether the service's rows carry replica numbers: it runs, or is about to
    /// stop, more than one.
    fn replicated(&self, service: &str) -> bool {
        self.count(service) > 1
            || self
                .slots
                .range(ReplicaId::new(service, 2)..=ReplicaId::new(service, u32::MAX))
                .next()
                .is_some()
    }

    fn display(&self, id: &ReplicaId) -> String {
        id.display_name(self.replicated(&id.service))
    }

    /// The replicas of `service` meant to stay.
    fn replica_ids(&self, service: &str) -> Vec<ReplicaId> {
        decide::replicas_of(&self.slots, service)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Sends an input to a replica's runner.
    fn send(&self, id: &ReplicaId, input: Input) {
        if let Some(runner) = self.runners.get(id) {
            runner.handle.send(input);
        }
    }

    fn set_phase(&mut self, id: &ReplicaId, phase: Phase) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.phase = phase;
        }
    }

    /// Marks every replica of `services` and of their dependencies wanted (unless
    /// it is already).
    fn want(&mut self, services: &[String]) {
        let names: Vec<String> = self.graph.with_dependencies(services).into_iter().collect();
        for name in names {
            for id in self.replica_ids(&name) {
                if id.replica > self.count(&name) {
                    continue;
                }
                if let Some(slot) = self.slots.get_mut(&id) {
                    let retry = slot.status.state == ServiceState::Failed
                        && !matches!(slot.phase, Phase::Replacing(_));
                    if matches!(slot.phase, Phase::Unwanted) || retry {
                        slot.phase = Phase::Waiting { blocked_on: None };
                    }
                }
            }
        }
    }

    /// The replicas `names` mean: a service's name is all its replicas, `NAME.N` one
    /// of them; no names is every replica of every service.
    fn resolve(&self, names: &[String]) -> Result<Vec<ReplicaId>, CommandError> {
        if names.is_empty() {
            return Ok(self
                .slots
                .iter()
                .filter(|(_, slot)| !slot.leaving())
                .map(|(id, _)| id.clone())
                .collect());
        }
        let mut ids = Vec::new();
        let mut missing = Vec::new();
        let mut hint = String::new();
        for name in names {
            if self.specs.contains_key(name) {
                ids.extend(self.replica_ids(name));
                continue;
            }
            let replica = name.rsplit_once('.').and_then(|(service, number)| {
                let id = ReplicaId::new(service, number.parse().ok()?);
                self.slots
                    .get(&id)
                    .is_some_and(|slot| !slot.leaving())
                    .then_some(id)
            });
            match replica {
                Some(id) => ids.push(id),
                None => {
                    if let Some((service, _)) = name.rsplit_once('.')
                        && self.specs.contains_key(service)
                    {
                        let count = self.count(service);
                        hint = format!(
                            " (`{service}` has {count} replica{}: {service}.1 to {service}.{count})",
                            if count == 1 { "" } else { "s" }
                        );
                    }
                    missing.push(name.clone());
                }
            }
        }
        if !missing.is_empty() {
            return Err(unknown(&missing, hint));
        }
        let mut seen = std::collections::BTreeSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        Ok(ids)
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
        // (the handles were dropped with the runners)
        for task in tasks {
            let _ = task.await;
        }
        self.shutdown == Some(Shutdown::Kill)
    }

    /// A file change (or the watcher's own news).
    fn handle_watch(&mut self, change: WatchEvent) {
        match change {
            WatchEvent::Redeploy { service, paths } => {
                self.project.builds.source_changed();
                // A service the user stopped stays stopped; a failed one gets its retry.
                let wanted: Vec<ReplicaId> = self
                    .replica_ids(&service)
                    .into_iter()
                    .filter(|id| self.slots.get(id).is_some_and(|slot| slot.phase.wanted()))
                    .collect();
                if wanted.is_empty() || self.shutdown.is_some() {
                    return;
                }
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
                self.emit_service(&service, EventKind::Message { text });
                self.redeploy_service(&service, wanted);
            }
            WatchEvent::Paused { service, reason } => {
                self.emit_service(&service, EventKind::RedeployPaused { reason })
            }
            WatchEvent::Error { message } => crate::note!("fleet: file watching: {message}"),
        }
    }

    /// Redeploys `replicas` of `service`: at once when it has one, else one at a time.
    fn redeploy_service(&mut self, service: &str, replicas: Vec<ReplicaId>) {
        if replicas.len() <= 1 {
            self.rolls.remove(service);
            for id in replicas {
                self.relaunch(&id, Input::Redeploy);
            }
            return;
        }
        // The latest request wins: a roll under way starts over with it.
        let roll = Roll::new(
            service,
            RollKind::Redeploy,
            replicas.iter().map(|id| id.replica),
        );
        self.rolls.insert(service.to_string(), roll);
    }

    fn emit(&mut self, id: &ReplicaId, event: EventKind) {
        let at_ms = now_ms();
        let generation = self
            .slots
            .get(id)
            .map(|slot| slot.status.generation)
            .unwrap_or_default();
        if let Some(runner) = self.runners.get_mut(id) {
            runner.last_event = Some((at_ms, event.to_string()));
            runner.log.write_fleet_line(&event.to_string());
        }
        let service = self.display(id);
        self.held_events.push(Event {
            at_ms,
            service,
            generation,
            kind: event,
        });
    }

    /// An event about a service as a whole (a roll, a file change): written to
    /// replica 1's log and sent under the service's name.
    fn emit_service(&mut self, service: &str, event: EventKind) {
        if !self.replicated(service) {
            self.emit(&ReplicaId::new(service, 1), event);
            return;
        }
        let at_ms = now_ms();
        if let Some(runner) = self.runners.get_mut(&ReplicaId::new(service, 1)) {
            runner.log.write_fleet_line(&event.to_string());
        }
        for id in self.replica_ids(service) {
            if let Some(runner) = self.runners.get_mut(&id) {
                runner.last_event = Some((at_ms, event.to_string()));
            }
        }
        self.held_events.push(Event {
            at_ms,
            service: service.to_string(),
            generation: Generation(0),
            kind: event,
        });
    }

    fn handle_report(&mut self, report: Report) {
        match report {
            Report::Status {
                replica,
                status,
                idle,
            } => {
                if let Some(slot) = self.slots.get_mut(&replica) {
                    slot.status = status;
                    slot.idle = idle;
                }
            }
            Report::LogIncident { replica, event } => {
                let Some(generation) = self.slots.get(&replica).map(|s| s.status.generation) else {
                    return;
                };
                self.handle_report(Report::Event {
                    replica,
                    generation,
                    event,
                });
            }
            Report::Event {
                replica,
                generation,
                event,
            } => {
                if matches!(event, EventKind::StateChanged { .. }) {
                    // Carried by the snapshot; sending both would double every line.
                    return;
                }
                self.note_roll_failure(&replica, generation, &event);
                let at_ms = now_ms();
                let current = self.slots.get(&replica).map(|slot| slot.status.generation);
                if let (Some(runner), Some(current)) = (self.runners.get_mut(&replica), current) {
                    // The exit of a replaced instance is routine; what the user wants to
                    // see is the redeploy that replaced it.
                    if !event.is_routine_for(generation, current) {
                        runner.last_event = Some((at_ms, event.to_string()));
                    }
                }
                let service = self.display(&replica);
                self.held_events.push(Event {
                    at_ms,
                    service,
                    generation,
                    kind: event,
                });
            }
        }
    }

    /// News that fails the step of a roll that is replacing `replica`.
    fn note_roll_failure(
        &mut self,
        replica: &ReplicaId,
        generation: Generation,
        event: &EventKind,
    ) {
        let Some(roll) = self.rolls.get_mut(&replica.service) else {
            return;
        };
        if roll.current() != Some(replica.replica) {
            return;
        }
        let incarnation = self.slots.get(replica).map_or(0, |slot| slot.incarnation);
        match event {
            EventKind::BuildFailed { reason } | EventKind::RedeployAborted { reason } => {
                roll.fail_build(replica.replica, reason.clone())
            }
            EventKind::Exited { status, cause, .. } => {
                let reason = match cause {
                    Some(cause) => format!("new instance {cause}"),
                    None => format!("new instance {status}"),
                };
                roll.fail(replica.replica, generation, incarnation, reason)
            }
            EventKind::StartFailed { .. }
            | EventKind::NotReady { .. }
            | EventKind::GaveUp { .. } => {
                roll.fail(replica.replica, generation, incarnation, event.to_string())
            }
            _ => {}
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
            Command::Start { services } => self.start(&services),
            Command::Stop { services } => {
                self.for_replicas(&services, "stopped", |supervisor, id| {
                    // A stopped service's roll is over: the user stopped it for a reason.
                    supervisor.rolls.remove(&id.service);
                    if !matches!(
                        supervisor.slots.get(id).map(|slot| &slot.phase),
                        Some(Phase::Replacing(_))
                    ) {
                        supervisor.set_phase(id, Phase::Unwanted);
                    }
                    supervisor.send(id, Input::Stop);
                })
            }
            Command::Restart { services } => {
                self.for_replicas(&services, "restarting", |supervisor, id| {
                    supervisor.relaunch(id, Input::Restart);
                })
            }
            Command::Redeploy { services } => self.redeploy(&services),
            Command::Reload => self.reload(),
            Command::Scale { counts } => self.scale(&counts),
        };
        let _ = reply.send(result);
    }

    /// `fleet start`: the named services (by default those `fleet up` enabled) and
    /// their dependencies. A service scaled to zero gets one replica back.
    fn start(&mut self, names: &[String]) -> CommandResult {
        let ids = if names.is_empty() {
            let selection = self.manifest.selection(&Activation {
                services: Vec::new(),
                ..self.activation.clone()
            });
            self.resolve(&selection)?
        } else {
            self.resolve(names)?
        };
        let mut services: Vec<String> = Vec::new();
        for id in &ids {
            if self.count(&id.service) == 0
                && let Some(count) = self.counts.get(&id.service)
            {
                count.store(1, Ordering::Relaxed);
            }
            if !services.contains(&id.service) {
                services.push(id.service.clone());
            }
            // The named replica itself, and (below) its service's dependencies.
            if let Some(slot) = self.slots.get_mut(id) {
                let retry = slot.status.state == ServiceState::Failed
                    && !matches!(slot.phase, Phase::Replacing(_));
                if matches!(slot.phase, Phase::Unwanted) || retry {
                    slot.phase = Phase::Waiting { blocked_on: None };
                }
            }
        }
        for service in &services {
            let dependencies: Vec<String> = self.graph.dependencies(service).to_vec();
            self.want(&dependencies);
        }
        let shown: Vec<String> = ids.iter().map(|id| self.display(id)).collect();
        Ok(format!("started: {}", shown.join(", ")))
    }

    /// `fleet redeploy`: a replicated service named whole rolls; a replica or a
    /// single-replica service is redeployed at once.
    fn redeploy(&mut self, names: &[String]) -> CommandResult {
        let ids = self.resolve(names)?;
        let whole: Vec<String> = if names.is_empty() {
            self.specs.keys().cloned().collect()
        } else {
            names
                .iter()
                .filter(|name| self.specs.contains_key(*name))
                .cloned()
                .collect()
        };
        for service in &whole {
            if let Some(watcher) = &self.watcher {
                // A user's redeploy lifts a redeploy-loop pause.
                watcher.resume(service);
            }
            let replicas: Vec<ReplicaId> = ids
                .iter()
                .filter(|id| &id.service == service)
                .cloned()
                .collect();
            self.redeploy_service(service, replicas);
        }
        for id in ids.iter().filter(|id| !whole.contains(&id.service)) {
            self.relaunch(id, Input::Redeploy);
        }
        let shown: Vec<String> = if names.is_empty() {
            self.specs.keys().cloned().collect()
        } else {
            names.to_vec()
        };
        Ok(format!("redeploying: {}", shown.join(", ")))
    }

    /// Restart or redeploy on the user's word: the replica is wanted and launched
    /// from now on, whatever it waited for.
    /// Whether this replica builds while it waits: replica 1 of a service with a
    /// build (the other replicas wait for its build).
    fn builds_ahead(&self, id: &ReplicaId) -> bool {
        id.replica == 1 && self.slots.get(id).is_some_and(|slot| slot.spec.has_build())
    }

    fn relaunch(&mut self, id: &ReplicaId, input: Input) {
        // A restart or redeploy may follow an edit fleet did not see: no build begun
        // before it stands in for a later one.
        self.project.builds.source_changed();
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        if matches!(slot.phase, Phase::Replacing(_)) {
            // Its new definition starts once the old instance is gone.
            return;
        }
        if matches!(slot.phase, Phase::Waiting { .. }) && matches!(input, Input::Redeploy) {
            // Not started: it keeps waiting for its dependencies, with a fresh build.
            if self.builds_ahead(id) {
                self.send(id, Input::Prebuild);
            }
            return;
        }
        slot.phase = Phase::Launched {
            seen: slot.phase.seen(),
        };
        self.send(id, input);
    }

    /// Applies `action` to each replica `names` mean (see [`Supervisor::resolve`]),
    /// after checking that all names exist.
    fn for_replicas(
        &mut self,
        names: &[String],
        verb: &str,
        mut action: impl FnMut(&mut Supervisor, &ReplicaId),
    ) -> CommandResult {
        let ids = self.resolve(names)?;
        for id in &ids {
            action(self, id);
        }
        let shown: Vec<String> = ids.iter().map(|id| self.display(id)).collect();
        Ok(format!("{verb}: {}", shown.join(", ")))
    }

    /// `fleet scale`: checks every count first (known service, within what its
    /// ports allow, the new replicas' ports free), then applies them all. Replicas
    /// that stay are not touched.
    fn scale(&mut self, counts: &[(String, u32)]) -> CommandResult {
        let mut problems = Vec::new();
        for (service, count) in counts {
            let Some(spec) = self.specs.get(service) else {
                let replica_hint = service
                    .rsplit_once('.')
                    .filter(|(base, _)| self.specs.contains_key(*base))
                    .map(|(base, _)| format!(" (scale the service: `{base}=N`)"))
                    .unwrap_or_default();
                problems.push(format!("unknown service: {service}{replica_hint}"));
                continue;
            };
            let limit = spec.replica_limit();
            if *count > limit {
                let why = if limit < MAX_REPLICAS {
                    "its host port range has one port per replica".to_string()
                } else {
                    format!("fleet runs at most {MAX_REPLICAS} of one service")
                };
                problems.push(format!(
                    "`{service}` cannot have {count} replicas: at most {limit} ({why})"
                ));
                continue;
            }
            let now = self.count(service);
            if *count > now {
                problems.extend(busy_replica_ports(spec, now, *count));
            }
        }
        if !problems.is_empty() {
            return Err(CommandError {
                code: if problems
                    .iter()
                    .all(|problem| problem.starts_with("unknown service"))
                {
                    ErrorCode::UnknownService
                } else {
                    ErrorCode::InvalidArgument
                },
                message: problems.join("\n"),
            });
        }
        let mut changes = Vec::new();
        for (service, count) in counts {
            let before = self.count(service);
            self.set_count(service, *count)
                .map_err(|err| CommandError {
                    code: ErrorCode::Internal,
                    message: format!("service `{service}`: {err}"),
                })?;
            changes.push(format!("{service} {before} -> {count}"));
        }
        Ok(format!("scaled: {}", changes.join(", ")))
    }

    /// Sets a service's replica count: new replicas are added and started, the
    /// highest ones beyond the count stop and go (replica 1 stays, stopped, at zero).
    fn set_count(&mut self, service: &str, count: u32) -> std::io::Result<()> {
        let Some(spec) = self.specs.get(service).cloned() else {
            return Ok(());
        };
        if let Some(shared) = self.counts.get(service) {
            shared.store(count, Ordering::Relaxed);
        }
        for id in self.replica_ids(service) {
            if id.replica <= count {
                continue;
            }
            if id.replica == 1 {
                self.set_phase(&id, Phase::Unwanted);
            } else {
                self.set_phase(&id, Phase::Replacing(Replacement::Remove));
            }
            self.send(&id, Input::Stop);
        }
        for replica in 1..=count {
            let id = ReplicaId::new(service, replica);
            match self.slots.get(&id) {
                Some(slot) if !slot.leaving() => {
                    if matches!(slot.phase, Phase::Unwanted) {
                        self.set_phase(&id, Phase::Waiting { blocked_on: None });
                    }
                }
                // Still stopping from an earlier scale-down: it comes back once gone.
                Some(_) => {
                    self.set_phase(
                        &id,
                        Phase::Replacing(Replacement::Spec(Box::new((*spec).clone()))),
                    );
                }
                None => {
                    self.add_slot(id.clone(), spec.clone())?;
                    self.set_phase(&id, Phase::Waiting { blocked_on: None });
                }
            }
        }
        Ok(())
    }

    /// Re-reads the manifest and applies the difference: added services start,
    /// removed ones stop, changed ones are replaced with their new definition (one
    /// replica at a time), new counts scale, and nothing else is touched. An invalid
    /// manifest changes nothing.
    fn reload(&mut self) -> CommandResult {
        let activation = Activation {
            services: Vec::new(),
            ..self.activation.clone()
        };
        let manifest =
            crate::manifest::load_with(&self.manifest.path, &activation).map_err(|err| {
                CommandError {
                    code: ErrorCode::InvalidManifest,
                    message: err.render(false),
                }
            })?;
        let diff = ReloadDiff::new(&self.specs, &manifest);
        // Bind every new socket before changing anything, so a busy port leaves the
        // running fleet as it was.
        let mut bound = Vec::new();
        let moved = diff.changed.iter().filter(|name| {
            let before = self.specs.get(*name).and_then(|spec| spec.socket.as_ref());
            let after = manifest.service(name).and_then(|spec| spec.socket.as_ref());
            after.is_some() && before != after
        });
        for name in diff.added.iter().chain(moved) {
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
        let internal = |name: &str, err: std::io::Error| CommandError {
            code: ErrorCode::Internal,
            message: format!("service `{name}`: {err}"),
        };
        for name in &diff.changed {
            let Some(spec) = manifest.service(name) else {
                continue;
            };
            let spec = Arc::new(spec.clone());
            self.specs.insert(name.clone(), spec.clone());
            let keep: Vec<u32> = self
                .replica_ids(name)
                .iter()
                .map(|id| id.replica)
                .filter(|replica| *replica <= spec.replicas.max(1))
                .collect();
            self.set_count(name, spec.replicas)
                .map_err(|err| internal(name, err))?;
            self.rolls
                .insert(name.clone(), Roll::new(name, RollKind::Reload(spec), keep));
        }
        for name in &diff.removed {
            self.rolls.remove(name);
            self.specs.remove(name);
            self.counts.remove(name);
            for id in self
                .slots
                .range(ReplicaId::new(name.as_str(), 0)..=ReplicaId::new(name.as_str(), u32::MAX))
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>()
            {
                self.set_phase(&id, Phase::Replacing(Replacement::Remove));
                self.send(&id, Input::Stop);
            }
        }
        for name in &diff.added {
            if let Some(spec) = manifest.service(name) {
                self.add_service(spec.clone())
                    .map_err(|err| internal(name, err))?;
                if activation.enables(spec) {
                    for id in self.replica_ids(name) {
                        if id.replica <= spec.replicas {
                            self.set_phase(&id, Phase::Waiting { blocked_on: None });
                        }
                    }
                }
            }
        }
        // A count changed alone: scale.
        let mut scaled = Vec::new();
        for spec in &manifest.services {
            if diff.added.contains(&spec.name) || diff.changed.contains(&spec.name) {
                continue;
            }
            if self.count(&spec.name) != spec.replicas {
                scaled.push(format!(
                    "{} {} -> {}",
                    spec.name,
                    self.count(&spec.name),
                    spec.replicas
                ));
                let wanted = self
                    .replica_ids(&spec.name)
                    .iter()
                    .any(|id| self.slots.get(id).is_some_and(|slot| slot.phase.wanted()));
                self.set_count(&spec.name, spec.replicas)
                    .map_err(|err| internal(&spec.name, err))?;
                if !wanted {
                    // A service nobody started stays stopped at its new count.
                    for id in self.replica_ids(&spec.name) {
                        if matches!(
                            self.slots.get(&id).map(|slot| &slot.phase),
                            Some(Phase::Waiting { .. })
                        ) {
                            self.set_phase(&id, Phase::Unwanted);
                        }
                    }
                }
            }
        }
        self.manifest = manifest;
        self.graph = Graph::new(&self.manifest);
        if let Some(watcher) = &self.watcher {
            watcher.update(watch_specs(&self.manifest));
        }
        if scaled.is_empty() {
            Ok(diff.describe())
        } else if diff == ReloadDiff::default() {
            Ok(format!("scaled: {}", scaled.join(", ")))
        } else {
            Ok(format!(
                "{}; scaled: {}",
                diff.describe(),
                scaled.join(", ")
            ))
        }
    }

    /// A replacement whose old instance is gone: drop the replica, or start its new
    /// definition.
    fn replace(&mut self, id: &ReplicaId) {
        let Some(slot) = self.slots.remove(id) else {
            return;
        };
        // Dropping the handle ends the runner (it has nothing left to stop).
        self.runners.remove(id);
        match slot.phase {
            Phase::Replacing(Replacement::Spec(spec)) => {
                if let Err(err) = self.add_slot(id.clone(), Arc::new(*spec)) {
                    crate::note!("fleet: cannot restart `{id}` after reload: {err}");
                    return;
                }
                self.set_phase(id, Phase::Waiting { blocked_on: None });
            }
            Phase::Replacing(Replacement::Idle(spec)) => {
                if let Err(err) = self.add_slot(id.clone(), Arc::new(*spec)) {
                    crate::note!("fleet: cannot take the new definition of `{id}`: {err}");
                }
            }
            _ => {
                let gone = !self.specs.contains_key(&id.service)
                    && self.replica_ids(&id.service).is_empty();
                if gone {
                    self.listeners.remove(&id.service);
                }
            }
        }
    }

    fn begin_shutdown(&mut self, mode: Shutdown) {
        if self.shutdown == Some(Shutdown::Kill) {
            return;
        }
        self.shutdown = Some(mode);
        self.rolls.clear();
        if mode == Shutdown::Kill {
            let ids: Vec<ReplicaId> = self.slots.keys().cloned().collect();
            for id in ids {
                self.set_phase(&id, Phase::Stopping);
                self.send(&id, Input::Kill);
            }
        }
    }

    /// Carries out what [`decide::reconcile`] decides, until it has nothing more to say
    /// (a replacement or a start can unblock more in the same pass); then moves the
    /// rolls along.
    fn reconcile(&mut self) {
        for _ in 0..self.slots.len() + 2 {
            let decisions = decide::reconcile(&self.slots, &self.graph, self.shutdown.is_some());
            let mut replaced = false;
            for decision in decisions {
                match decision {
                    Decision::Start { replica, seen } => {
                        self.set_phase(&replica, Phase::Launched { seen });
                        self.send(&replica, Input::Start);
                    }
                    Decision::Restart { replica, seen } => {
                        self.set_phase(&replica, Phase::Launched { seen });
                        self.send(&replica, Input::Restart);
                    }
                    Decision::Wait { replica, blocker } => {
                        // It builds while it waits: its start then only spawns.
                        let first_wait = self.slots.get(&replica).is_some_and(|slot| {
                            matches!(slot.phase, Phase::Waiting { blocked_on: None })
                        });
                        if first_wait && self.builds_ahead(&replica) {
                            self.send(&replica, Input::Prebuild);
                        }
                        let text = format!("waiting for {blocker}");
                        self.set_phase(
                            &replica,
                            Phase::Waiting {
                                blocked_on: Some(blocker),
                            },
                        );
                        self.emit(&replica, EventKind::Message { text });
                    }
                    Decision::Stop { replica } => {
                        self.set_phase(&replica, Phase::Stopping);
                        self.send(&replica, Input::Stop);
                    }
                    Decision::Replace { replica } => {
                        self.replace(&replica);
                        replaced = true;
                    }
                }
            }
            let rolled = self.advance_rolls();
            if !replaced && !rolled {
                // Starts and stops change nothing until the runners report back.
                return;
            }
        }
    }

    /// Moves each roll one step where it can. True when a step changed a slot.
    fn advance_rolls(&mut self) -> bool {
        let mut changed = false;
        let services: Vec<String> = self.rolls.keys().cloned().collect();
        for service in services {
            let Some(mut roll) = self.rolls.remove(&service) else {
                continue;
            };
            // Before the step: a halt empties what is left to do.
            let total = roll.total();
            let action = roll.advance(&self.slots);
            let verb = match roll.kind {
                RollKind::Redeploy => "rolling redeploy",
                RollKind::Reload(_) => "rolling reload",
            };
            match action {
                RollAction::Wait => {
                    self.rolls.insert(service, roll);
                }
                RollAction::Replace { replica } => {
                    let id = ReplicaId::new(service.as_str(), replica);
                    let text = format!(
                        "{verb}: {} ({} of {})",
                        self.display(&id),
                        roll.position(),
                        roll.total()
                    );
                    if roll.total() > 1 {
                        self.emit_service(&service, EventKind::Message { text });
                    }
                    match &roll.kind {
                        RollKind::Redeploy => self.relaunch(&id, Input::Redeploy),
                        RollKind::Reload(spec) => {
                            let wanted =
                                self.slots.get(&id).is_some_and(|slot| slot.phase.wanted());
                            let spec = Box::new((**spec).clone());
                            let replacement = if wanted {
                                Replacement::Spec(spec)
                            } else {
                                Replacement::Idle(spec)
                            };
                            self.set_phase(&id, Phase::Replacing(replacement));
                            self.send(&id, Input::Stop);
                        }
                    }
                    changed = true;
                    self.rolls.insert(service, roll);
                }
                RollAction::Finished { replaced } => {
                    if replaced.len() > 1 {
                        let text = format!("{verb} done: {} replicas replaced", replaced.len());
                        self.emit_service(&service, EventKind::Message { text });
                    }
                }
                RollAction::Halted {
                    replica,
                    reason,
                    untouched,
                } => {
                    let id = ReplicaId::new(service.as_str(), replica);
                    let mut text = format!("{verb} stopped at {}: {reason}", self.display(&id));
                    if !untouched.is_empty() {
                        let names: Vec<String> = untouched
                            .iter()
                            .map(|replica| {
                                self.display(&ReplicaId::new(service.as_str(), *replica))
                            })
                            .collect();
                        text.push_str(&format!(
                            "; {} keep{} the previous version",
                            names.join(", "),
                            if names.len() == 1 { "s" } else { "" }
                        ));
                    }
                    if total > 1 {
                        self.emit_service(&service, EventKind::Message { text });
                    }
                }
            }
        }
        changed
    }

    /// Publishes the snapshot, then the events it already reflects.
    fn publish(&mut self) {
        let mut services = Vec::with_capacity(self.slots.len());
        for spec in &self.manifest.services {
            let replicated = self.replicated(&spec.name);
            let count = self.count(&spec.name);
            let enabled = self.activation.enables(spec);
            let range = ReplicaId::new(spec.name.as_str(), 0)
                ..=ReplicaId::new(spec.name.as_str(), u32::MAX);
            for (id, slot) in self.slots.range(range) {
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
                    .get(id)
                    .and_then(|runner| runner.last_event.clone());
                let inactive = !enabled
                    && slot.phase == Phase::Unwanted
                    && slot.idle
                    && status.state == ServiceState::Stopped
                    && status.generation.0 == 0;
                services.push(ServiceSnapshot {
                    name: id.display_name(replicated),
                    kind: if slot.spec.is_container() {
                        ServiceKindName::Container
                    } else {
                        ServiceKindName::Process
                    },
                    status,
                    last_event_at_ms: last_event.as_ref().map(|(at, _)| *at),
                    last_event: last_event.map(|(_, text)| text),
                    waiting_for,
                    service: spec.name.clone(),
                    replica: replicated.then_some(id.replica),
                    replicas: count,
                    profiles: spec.profiles.clone(),
                    inactive,
                });
            }
        }
        let snapshot = Snapshot {
            project: self.project.name.clone(),
            manifest: self.manifest.path.display().to_string(),
            supervisor_pid: std::process::id(),
            services,
            shutting_down: self.shutdown.is_some(),
            profiles: self.activation.profiles.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_naming_thousands_of_unknown_services_gets_a_short_error() {
        let names: Vec<String> = (0..10_000).map(|n| format!("s{n}")).collect();
        let error = unknown(&names, String::new());
        assert_eq!(error.code, ErrorCode::UnknownService);
        assert_eq!(
            error.message,
            "unknown service: s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 and 9990 more"
        );
        let few = unknown(&["db".to_string()], " (hint)".into());
        assert_eq!(few.message, "unknown service: db (hint)");
    }
}
