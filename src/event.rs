//! The one vocabulary of fleet: data only, no behaviour beyond formatting.
//!
//! The same [`Command`] comes from the CLI, the TUI, the file watcher and signals;
//! the same [`Event`] and [`Snapshot`] go to the TUI, `fleet ps`, `fleet logs` and the
//! plain-text output of `fleet up`. Everything here is serde so that it crosses the
//! control socket unchanged.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Every instance of a service gets a new generation; exits, probe results and timers
/// carry it, and those of an old generation are ignored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What `fleet ps` shows in its `state` column. The names are part of the JSON output
/// and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Not running and not asked to run.
    Stopped,
    /// Asked to run; a dependency's condition does not hold yet.
    Waiting,
    /// The build step runs and no instance serves yet.
    Building,
    /// An instance runs; its health probe has not passed yet.
    Starting,
    /// An instance runs and the service has no health probe.
    Running,
    Healthy,
    Unhealthy,
    /// Crashed; the next start waits for the restart delay.
    Backoff,
    Stopping,
    /// A one-shot job that exited 0.
    Completed,
    /// Crashed too often, exited non-zero with no restart, or could not be started.
    Failed,
    /// A container service while the Docker engine cannot be reached: fleet cannot see
    /// its container, and leaves it as it is until the engine is back.
    Unknown,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Stopped => "stopped",
            ServiceState::Waiting => "waiting",
            ServiceState::Building => "building",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Healthy => "healthy",
            ServiceState::Unhealthy => "unhealthy",
            ServiceState::Backoff => "backoff",
            ServiceState::Stopping => "stopping",
            ServiceState::Completed => "completed",
            ServiceState::Failed => "failed",
            ServiceState::Unknown => "unknown",
        }
    }

    /// An instance of the service is alive in this state.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            ServiceState::Starting
                | ServiceState::Running
                | ServiceState::Healthy
                | ServiceState::Unhealthy
                | ServiceState::Unknown
        )
    }

    /// The service reached what `--wait` waits for.
    pub fn is_ready(self) -> bool {
        matches!(
            self,
            ServiceState::Running | ServiceState::Healthy | ServiceState::Completed
        )
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKindName {
    Process,
    Container,
}

impl fmt::Display for ServiceKindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceKindName::Process => "process",
            ServiceKindName::Container => "container",
        })
    }
}

/// What a service's health probe says, in `fleet ps`'s `health` column (null for a
/// service without a probe). The names are part of the JSON output and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The instance has not passed its probe yet.
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last build's outcome, in snapshots (null when no build ran or the last one
/// succeeded). The names are part of the JSON output and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Running,
    Failed,
}

impl fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuildStatus::Running => "running",
            BuildStatus::Failed => "failed",
        })
    }
}

/// The condition a dependent waits for, as the manifest's `depends_on` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitCondition {
    Started,
    Healthy,
    Completed,
    /// Replica 1 has run the service's build (the other replicas use what it built).
    Built,
}

impl WaitCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitCondition::Started => "started",
            WaitCondition::Healthy => "healthy",
            WaitCondition::Completed => "completed",
            WaitCondition::Built => "built",
        }
    }
}

impl fmt::Display for WaitCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The dependency a `waiting` service waits for. On the wire it is the text `fleet ps`
/// has always shown, `db (healthy)` or `db (healthy), which failed`, so the JSON
/// output does not change; clients read the fields, never the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct WaitingFor {
    pub service: String,
    pub condition: WaitCondition,
    /// The dependency failed for good: the dependent will not start unless it is
    /// started again.
    pub failed: bool,
}

/// The suffix of a [`WaitingFor`] whose dependency failed.
const WHICH_FAILED: &str = ", which failed";

impl fmt::Display for WaitingFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.service, self.condition)?;
        if self.failed {
            f.write_str(WHICH_FAILED)?;
        }
        Ok(())
    }
}

impl From<WaitingFor> for String {
    fn from(waiting: WaitingFor) -> String {
        waiting.to_string()
    }
}

impl std::str::FromStr for WaitingFor {
    type Err = String;

    fn from_str(text: &str) -> Result<WaitingFor, String> {
        let (rest, failed) = match text.strip_suffix(WHICH_FAILED) {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let parsed = rest.strip_suffix(')').and_then(|rest| {
            let (service, condition) = rest.rsplit_once(" (")?;
            let condition = [
                WaitCondition::Started,
                WaitCondition::Healthy,
                WaitCondition::Completed,
                WaitCondition::Built,
            ]
            .into_iter()
            .find(|known| known.as_str() == condition)?;
            Some(WaitingFor {
                service: service.to_string(),
                condition,
                failed,
            })
        });
        parsed.ok_or_else(|| format!("`{text}` is not like `db (healthy)`"))
    }
}

impl TryFrom<String> for WaitingFor {
    type Error = String;

    fn try_from(text: String) -> Result<WaitingFor, String> {
        text.parse()
    }
}

/// One action, whoever asks for it. An empty `services` list means every service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Start {
        services: Vec<String>,
    },
    Stop {
        services: Vec<String>,
    },
    Restart {
        services: Vec<String>,
    },
    /// Rebuild (if the service has a build) and replace the running instance.
    Redeploy {
        services: Vec<String>,
    },
    /// Re-read the manifest and apply the difference.
    Reload,
    /// Set services' replica counts: `(service, count)`; other services and the
    /// surviving replicas are not touched.
    Scale {
        counts: Vec<(String, u32)>,
    },
    /// Stop everything in reverse dependency order, then end the supervisor.
    Down,
    /// Second Ctrl-C: SIGKILL every instance at once, then end the supervisor.
    Kill,
}

/// How an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exited with code {code}"),
            ExitStatus::Signal(signal) => {
                let name = nix::sys::signal::Signal::try_from(*signal)
                    .map(|signal| signal.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by {name}")
            }
        }
    }
}

/// Why fleet stopped an instance that had not crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum ProbeCause {
    /// It had been healthy, then failed `failures` probes in a row (liveness).
    Unhealthy { failures: u32 },
    /// It never passed its probe within `start_timeout`.
    NotReady { after_ms: u64 },
}

impl fmt::Display for ProbeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeCause::Unhealthy { failures: 1 } => f.write_str("unhealthy (1 failed probe)"),
            ProbeCause::Unhealthy { failures } => {
                write!(f, "unhealthy ({failures} failed probes)")
            }
            ProbeCause::NotReady { after_ms } => {
                write!(f, "not ready after {}", format_duration_ms(*after_ms))
            }
        }
    }
}

/// Something that happened to a service, as shown in status lines, the TUI and `ps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub service: String,
    pub generation: Generation,
    pub kind: EventKind,
}

impl EventKind {
    /// The end of an instance that is no longer the service's current one (replaced by
    /// a redeploy): routine, so it never becomes the service's "last event", which
    /// should say the redeploy happened instead.
    pub fn is_routine_for(&self, generation: Generation, current: Generation) -> bool {
        matches!(self, EventKind::Stopped { .. }) && generation != current
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    StateChanged {
        state: ServiceState,
    },
    Started {
        pid: Option<u32>,
        container: Option<String>,
    },
    StartFailed {
        reason: String,
    },
    /// The serving instance ended. `cause` says why when fleet stopped it for its probe:
    /// such an end is a failure but never reported as a crash.
    Exited {
        status: ExitStatus,
        restart_in_ms: Option<u64>,
        restart_count: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<ProbeCause>,
    },
    /// A stopped (or replaced) instance is gone.
    Stopped {
        status: ExitStatus,
    },
    /// Too many failures within the restart window. `crashes` counts them all, of
    /// which `unhealthy` and `not_ready` were stops for the probe, not crashes.
    GaveUp {
        crashes: u32,
        window_ms: u64,
        #[serde(default)]
        unhealthy: u32,
        #[serde(default)]
        not_ready: u32,
        /// Why the last start failed, when the last failure was a start that could
        /// not happen at all (no program, no file descriptors): the reason to fix.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_error: Option<String>,
    },
    /// A starting instance did not pass its probe within `start_timeout`.
    NotReady {
        after_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Healthy,
    Unhealthy {
        reason: String,
    },
    BuildStarted,
    BuildFailed {
        reason: String,
    },
    BuildSucceeded {
        duration_ms: u64,
    },
    BuildCancelled,
    Redeployed {
        from: Generation,
    },
    RedeployAborted {
        reason: String,
    },
    RedeployPaused {
        reason: String,
    },
    WaitingFor {
        dependency: String,
        condition: String,
    },
    StopTimedOut,
    Message {
        text: String,
    },
    /// The service's log file cannot be written (a full disk, most often): its lines
    /// are counted and dropped until a write succeeds. Said once per episode.
    LogDropping {
        reason: String,
    },
    /// The log file is written again; `dropped` lines were lost over `over_ms`.
    LogResumed {
        dropped: u64,
        over_ms: u64,
    },
    /// The log file (or its folder) was removed while fleet ran, and made again.
    LogRecreated,
    /// The Docker engine stopped answering: the container's state is unknown, and
    /// fleet leaves the container as it is until the engine is back.
    EngineUnreachable {
        reason: String,
    },
    /// The engine answers again, `after_ms` after it was lost; what happened to the
    /// container meanwhile has been reconciled.
    EngineReachable {
        after_ms: u64,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::StateChanged { state } => write!(f, "{state}"),
            EventKind::Started { pid: Some(pid), .. } => write!(f, "started (pid {pid})"),
            EventKind::Started {
                container: Some(id),
                ..
            } => {
                write!(f, "started (container {})", short_id(id))
            }
            EventKind::Started { .. } => f.write_str("started"),
            EventKind::StartFailed { reason } => write!(f, "failed to start: {reason}"),
            EventKind::Exited {
                cause: Some(cause),
                restart_in_ms: Some(delay),
                restart_count,
                ..
            } => {
                write!(
                    f,
                    "restarted: {cause}, restart {restart_count} in {}",
                    format_duration_ms(*delay)
                )
            }
            EventKind::Exited {
                cause: Some(cause),
                status,
                ..
            } => write!(f, "stopped: {cause} ({status})"),
            EventKind::Exited {
                status,
                restart_in_ms: Some(delay),
                restart_count,
                ..
            } => {
                write!(
                    f,
                    "{status}, restart {restart_count} in {}",
                    format_duration_ms(*delay)
                )
            }
            EventKind::Exited { status, .. } => write!(f, "{status}"),
            EventKind::Stopped { status } => write!(f, "stopped ({status})"),
            EventKind::GaveUp {
                crashes,
                window_ms,
                unhealthy,
                not_ready,
                start_error,
            } => {
                write!(
                    f,
                    "failed: {}, not restarting",
                    describe_failures(*crashes, *unhealthy, *not_ready, *window_ms)
                )?;
                match start_error {
                    Some(error) => write!(f, "; the last start failed: {error}"),
                    None => Ok(()),
                }
            }
            EventKind::NotReady {
                after_ms,
                reason: Some(reason),
            } => write!(
                f,
                "not ready after {}, restarting (last probe: {reason})",
                format_duration_ms(*after_ms)
            ),
            EventKind::NotReady { after_ms, .. } => write!(
                f,
                "not ready after {}, restarting",
                format_duration_ms(*after_ms)
            ),
            EventKind::Healthy => f.write_str("healthy"),
            EventKind::Unhealthy { reason } => write!(f, "unhealthy: {reason}"),
            EventKind::BuildStarted => f.write_str("build started"),
            EventKind::BuildFailed { reason } => write!(f, "build failed: {reason}"),
            EventKind::BuildSucceeded { duration_ms } => {
                write!(f, "build finished in {}", format_duration_ms(*duration_ms))
            }
            EventKind::BuildCancelled => f.write_str("build cancelled: a newer change arrived"),
            EventKind::Redeployed { from } => write!(f, "redeployed (generation {from} replaced)"),
            EventKind::RedeployAborted { reason } => {
                write!(f, "redeploy aborted, old instance kept: {reason}")
            }
            EventKind::RedeployPaused { reason } => write!(f, "redeploys paused: {reason}"),
            EventKind::WaitingFor {
                dependency,
                condition,
            } => {
                write!(f, "waiting for {dependency} to be {condition}")
            }
            EventKind::StopTimedOut => f.write_str("did not stop in time, sent SIGKILL"),
            EventKind::Message { text } => f.write_str(text),
            EventKind::LogDropping { reason } => write!(
                f,
                "cannot write the log file ({reason}): dropping its lines until it can"
            ),
            EventKind::LogResumed { dropped, over_ms } => write!(
                f,
                "log file written again: {dropped} {} dropped over {}",
                if *dropped == 1 { "line" } else { "lines" },
                format_duration_ms(*over_ms)
            ),
            EventKind::LogRecreated => {
                f.write_str("the log file was removed while fleet ran; made it again")
            }
            EventKind::EngineUnreachable { reason } => write!(
                f,
                "Docker engine unreachable ({reason}): state unknown, the container is left as it is"
            ),
            EventKind::EngineReachable { after_ms } => write!(
                f,
                "Docker engine reachable again after {}",
                format_duration_ms(*after_ms)
            ),
        }
    }
}

/// The state of the whole fleet at one moment. Owned by the supervisor, shared as
/// `Arc<Snapshot>` through a `watch` channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub project: String,
    pub manifest: String,
    pub supervisor_pid: u32,
    pub services: Vec<ServiceSnapshot>,
    /// The supervisor is stopping everything.
    pub shutting_down: bool,
    /// The profiles `fleet up` enabled.
    #[serde(default)]
    pub profiles: Vec<String>,
}

impl Snapshot {
    pub fn service(&self, name: &str) -> Option<&ServiceSnapshot> {
        self.services.iter().find(|service| service.name == name)
    }
}

/// One row of `fleet ps`. The JSON keys are stable: the instance's fields are
/// flattened into the row, so the row stays one flat object, keys in the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSnapshot {
    pub name: String,
    pub kind: ServiceKindName,
    /// The runner's last report, except that the supervisor shows a stopped service
    /// it holds back for a dependency as `waiting`.
    #[serde(flatten)]
    pub status: InstanceStatus,
    pub last_event: Option<String>,
    pub last_event_at_ms: Option<u64>,
    /// The dependency a `waiting` service waits for.
    pub waiting_for: Option<WaitingFor>,
    /// The service this row is an instance of: `name` without its `.N`.
    #[serde(default)]
    pub service: String,
    /// The replica's number (1-based) when the service runs (or ran) several.
    #[serde(default)]
    pub replica: Option<u32>,
    /// How many replicas the service is set to run.
    #[serde(default = "one")]
    pub replicas: u32,
    /// The profiles that enable the service (none: always enabled).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Not enabled by the fleet's profiles, and not started by name.
    #[serde(default)]
    pub inactive: bool,
}

fn one() -> u32 {
    1
}

/// One replica of a service: what a runner drives and the supervisor keeps a slot
/// for. Replica numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId {
    pub service: String,
    pub replica: u32,
}

impl ReplicaId {
    pub fn new(service: impl Into<String>, replica: u32) -> ReplicaId {
        ReplicaId {
            service: service.into(),
            replica,
        }
    }

    /// What users call it: the service's name while it has one replica, `NAME.N`
    /// once it has several.
    pub fn display_name(&self, replicated: bool) -> String {
        if replicated {
            format!("{}.{}", self.service, self.replica)
        } else {
            self.service.clone()
        }
    }

    /// The name its files and markers carry, stable whatever the count: replica 1
    /// is the service itself (`NAME.log`), replica N is `NAME.N`.
    pub fn file_name(&self) -> String {
        self.display_name(self.replica > 1)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.service, self.replica)
    }
}

/// A service's instance as its runner reports it after every change, as the
/// supervisor keeps it, and as clients read it inside a [`ServiceSnapshot`]: one type
/// the whole way, so a field added here reaches every client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub state: ServiceState,
    pub pid: Option<u32>,
    pub container: Option<String>,
    pub generation: Generation,
    pub restarts: u32,
    /// When the serving instance started, ms since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// The host ports the service listens on: its `ports`, then its handed socket's.
    /// Here rather than beside the status in the row, so that the row's keys keep
    /// their order.
    pub ports: Vec<u16>,
    /// `healthy`, `unhealthy`, `starting`, or null without a probe.
    pub health: Option<HealthStatus>,
    /// While the instance has not passed its probe yet: the last probe's error.
    #[serde(default)]
    pub probe_error: Option<String>,
    /// `running`, `failed` or null: the last build's outcome.
    pub build: Option<BuildStatus>,
    pub last_redeploy_at_ms: Option<u64>,
}

impl InstanceStatus {
    /// A service that has not run yet: what the supervisor shows until its runner
    /// first reports.
    pub fn stopped(ports: Vec<u16>) -> InstanceStatus {
        InstanceStatus {
            state: ServiceState::Stopped,
            pid: None,
            container: None,
            generation: Generation(0),
            restarts: 0,
            started_at_ms: None,
            ports,
            health: None,
            probe_error: None,
            build: None,
            last_redeploy_at_ms: None,
        }
    }
}

/// "crashed 6 times within 1m", or, when some of them were stops for the probe,
/// "6 failures within 1m (2 crashes, 3 unhealthy, 1 not ready)".
pub fn describe_failures(total: u32, unhealthy: u32, not_ready: u32, window_ms: u64) -> String {
    let window = format_duration_ms(window_ms);
    let crashes = total.saturating_sub(unhealthy + not_ready);
    if unhealthy == 0 && not_ready == 0 {
        return format!("crashed {total} times within {window}");
    }
    let mut parts = Vec::new();
    match crashes {
        0 => {}
        1 => parts.push("1 crash".to_string()),
        n => parts.push(format!("{n} crashes")),
    }
    if unhealthy > 0 {
        parts.push(format!("{unhealthy} unhealthy"));
    }
    if not_ready > 0 {
        parts.push(format!("{not_ready} not ready"));
    }
    format!("{total} failures within {window} ({})", parts.join(", "))
}

impl ServiceSnapshot {
    /// The name of the row's log file (`NAME` for replica 1, `NAME.N` for the
    /// others), whatever the row is called now.
    pub fn log_name(&self) -> String {
        if self.service.is_empty() {
            return self.name.clone();
        }
        ReplicaId::new(self.service.as_str(), self.replica.unwrap_or(1)).file_name()
    }

    /// "starting 12s · connection refused": how long a service that has not passed its
    /// probe yet has been at it, and what its probe last saw.
    pub fn starting_note(&self, now_ms: u64) -> Option<String> {
        if self.status.state != ServiceState::Starting {
            return None;
        }
        let since = self.status.started_at_ms?;
        let mut note = format!(
            "starting {}",
            format_duration_ms(now_ms.saturating_sub(since))
        );
        if let Some(error) = &self.status.probe_error {
            note.push_str(" · ");
            note.push_str(error);
        }
        Some(note)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// `400ms`, `1.5s`, `45s`, `2m10s`, `3m05s`, `1h05m`, `3d04h`: short and exact enough
/// for status lines, and the one way fleet writes a duration (`fleet ps`, events, the
/// TUI's uptimes). Below a minute it keeps tenths of a second; above, two units, the
/// smaller zero-padded so a column of uptimes lines up, and left out when it is zero
/// (`1m`, `2h`).
pub fn format_duration_ms(ms: u64) -> String {
    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let two_units = |large: u64, large_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{large}{large_unit}")
        } else {
            format!("{large}{large_unit}{small:02}{small_unit}")
        }
    };
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < MINUTE {
        let tenths = ms / 100;
        if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
    } else if ms < HOUR {
        two_units(ms / MINUTE, "m", (ms % MINUTE) / 1000, "s")
    } else if ms < DAY {
        two_units(ms / HOUR, "h", (ms % HOUR) / MINUTE, "m")
    } else {
        two_units(ms / DAY, "d", (ms % DAY) / HOUR, "h")
    }
}

/// The first 12 hex digits of a container id, as `docker ps` shows them.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration_ms(400), "400ms");
        assert_eq!(format_duration_ms(1000), "1s");
        assert_eq!(format_duration_ms(1500), "1.5s");
        assert_eq!(format_duration_ms(130_000), "2m10s");
        assert_eq!(format_duration_ms(60_000), "1m");
        assert_eq!(format_duration_ms(45_000), "45s");
        assert_eq!(format_duration_ms(192_000), "3m12s");
        assert_eq!(format_duration_ms(185_000), "3m05s");
        assert_eq!(format_duration_ms(3_900_000), "1h05m");
        assert_eq!(format_duration_ms(7_500_000), "2h05m");
        assert_eq!(format_duration_ms(7_200_000), "2h");
        assert_eq!(format_duration_ms(273_600_000), "3d04h");
    }

    #[test]
    fn status_lines_match_the_documented_wording() {
        let started = EventKind::Started {
            pid: Some(4242),
            container: None,
        };
        assert_eq!(started.to_string(), "started (pid 4242)");
        let exited = EventKind::Exited {
            status: ExitStatus::Code(1),
            restart_in_ms: Some(400),
            restart_count: 2,
            cause: None,
        };
        assert_eq!(exited.to_string(), "exited with code 1, restart 2 in 400ms");
        let unhealthy = EventKind::Exited {
            status: ExitStatus::Signal(15),
            restart_in_ms: Some(100),
            restart_count: 1,
            cause: Some(ProbeCause::Unhealthy { failures: 3 }),
        };
        assert_eq!(
            unhealthy.to_string(),
            "restarted: unhealthy (3 failed probes), restart 1 in 100ms"
        );
        let gave_up = EventKind::GaveUp {
            crashes: 6,
            window_ms: 60_000,
            unhealthy: 4,
            not_ready: 1,
            start_error: None,
        };
        assert_eq!(
            gave_up.to_string(),
            "failed: 6 failures within 1m (1 crash, 4 unhealthy, 1 not ready), not restarting"
        );
        let could_not_start = EventKind::GaveUp {
            crashes: 3,
            window_ms: 60_000,
            unhealthy: 0,
            not_ready: 0,
            start_error: Some("cannot start process: Too many open files".into()),
        };
        assert_eq!(
            could_not_start.to_string(),
            "failed: crashed 3 times within 1m, not restarting; \
             the last start failed: cannot start process: Too many open files"
        );
    }

    #[test]
    fn fault_events_say_what_happened_and_unknown_keeps_its_name() -> Result<(), serde_json::Error>
    {
        let texts: Vec<String> = [
            EventKind::LogDropping {
                reason: "No space left on device (os error 28)".into(),
            },
            EventKind::LogResumed {
                dropped: 1,
                over_ms: 250,
            },
            EventKind::LogResumed {
                dropped: 101_397,
                over_ms: 5_040,
            },
            EventKind::LogRecreated,
            EventKind::EngineUnreachable {
                reason: "connection refused: the Docker engine is not running".into(),
            },
            EventKind::EngineReachable { after_ms: 3_200 },
        ]
        .iter()
        .map(EventKind::to_string)
        .collect();
        assert_eq!(
            texts,
            [
                "cannot write the log file (No space left on device (os error 28)): dropping \
                 its lines until it can",
                "log file written again: 1 line dropped over 250ms",
                "log file written again: 101397 lines dropped over 5s",
                "the log file was removed while fleet ran; made it again",
                "Docker engine unreachable (connection refused: the Docker engine is not \
                 running): state unknown, the container is left as it is",
                "Docker engine reachable again after 3.2s",
            ]
        );
        assert_eq!(
            serde_json::to_string(&ServiceState::Unknown)?,
            r#""unknown""#
        );
        let resumed = serde_json::to_string(&EventKind::LogResumed {
            dropped: 7,
            over_ms: 9,
        })?;
        assert_eq!(
            resumed,
            r#"{"event":"log_resumed","dropped":7,"over_ms":9}"#
        );
        Ok(())
    }

    #[test]
    fn snapshot_statuses_keep_their_json() -> Result<(), serde_json::Error> {
        assert_eq!(
            serde_json::to_string(&HealthStatus::Starting)?,
            r#""starting""#
        );
        assert_eq!(
            serde_json::to_string(&HealthStatus::Healthy)?,
            r#""healthy""#
        );
        assert_eq!(
            serde_json::to_string(&HealthStatus::Unhealthy)?,
            r#""unhealthy""#
        );
        assert_eq!(
            serde_json::to_string(&BuildStatus::Running)?,
            r#""running""#
        );
        assert_eq!(serde_json::to_string(&BuildStatus::Failed)?, r#""failed""#);
        for text in [r#""starting""#, r#""healthy""#, r#""unhealthy""#] {
            let health: HealthStatus = serde_json::from_str(text)?;
            assert_eq!(serde_json::to_string(&health)?, text);
        }
        Ok(())
    }

    /// `fleet ps --json` and the control protocol print rows as they serialize: the
    /// keys, their order and their values are part of the interface.
    #[test]
    fn snapshot_rows_keep_their_json_byte_for_byte() -> Result<(), serde_json::Error> {
        let row = ServiceSnapshot {
            name: "api".into(),
            kind: ServiceKindName::Container,
            status: InstanceStatus {
                state: ServiceState::Starting,
                pid: Some(4242),
                container: Some("0123456789abcdef".into()),
                generation: Generation(3),
                restarts: 2,
                started_at_ms: Some(1_700_000_000_000),
                ports: vec![7000, 7001],
                health: Some(HealthStatus::Starting),
                probe_error: Some("connection refused".into()),
                build: Some(BuildStatus::Failed),
                last_redeploy_at_ms: Some(1_700_000_000_500),
            },
            last_event: Some("build failed: exit 1".into()),
            last_event_at_ms: Some(1_700_000_001_000),
            waiting_for: Some(WaitingFor {
                service: "db".into(),
                condition: WaitCondition::Healthy,
                failed: false,
            }),
            service: "api".into(),
            replica: Some(2),
            replicas: 3,
            profiles: vec!["debug".into()],
            inactive: false,
        };
        let json = serde_json::to_string(&row)?;
        assert_eq!(
            json,
            concat!(
                r#"{"name":"api","kind":"container","state":"starting","pid":4242,"#,
                r#""container":"0123456789abcdef","generation":3,"restarts":2,"#,
                r#""started_at_ms":1700000000000,"ports":[7000,7001],"health":"starting","#,
                r#""probe_error":"connection refused","build":"failed","#,
                r#""last_redeploy_at_ms":1700000000500,"last_event":"build failed: exit 1","#,
                r#""last_event_at_ms":1700000001000,"waiting_for":"db (healthy)","#,
                r#""service":"api","replica":2,"replicas":3,"profiles":["debug"],"#,
                r#""inactive":false}"#
            )
        );
        assert_eq!(serde_json::from_str::<ServiceSnapshot>(&json)?, row);

        let stopped = ServiceSnapshot {
            name: "worker".into(),
            kind: ServiceKindName::Process,
            status: InstanceStatus::stopped(Vec::new()),
            last_event: None,
            last_event_at_ms: None,
            waiting_for: None,
            service: "worker".into(),
            replica: None,
            replicas: 1,
            profiles: Vec::new(),
            inactive: false,
        };
        let json = serde_json::to_string(&stopped)?;
        assert_eq!(
            json,
            concat!(
                r#"{"name":"worker","kind":"process","state":"stopped","pid":null,"#,
                r#""container":null,"generation":0,"restarts":0,"started_at_ms":null,"#,
                r#""ports":[],"health":null,"probe_error":null,"build":null,"#,
                r#""last_redeploy_at_ms":null,"last_event":null,"last_event_at_ms":null,"#,
                r#""waiting_for":null,"service":"worker","replica":null,"replicas":1,"#,
                r#""profiles":[],"inactive":false}"#
            )
        );
        assert_eq!(serde_json::from_str::<ServiceSnapshot>(&json)?, stopped);
        // Older supervisors sent no `probe_error`.
        let without_probe_error = json.replace(r#""probe_error":null,"#, "");
        assert_eq!(
            serde_json::from_str::<ServiceSnapshot>(&without_probe_error)?,
            stopped
        );
        Ok(())
    }

    #[test]
    fn waiting_for_keeps_the_text_clients_used_to_parse() -> Result<(), serde_json::Error> {
        let waiting = WaitingFor {
            service: "db".into(),
            condition: WaitCondition::Healthy,
            failed: false,
        };
        assert_eq!(serde_json::to_string(&waiting)?, r#""db (healthy)""#);
        let failed = WaitingFor {
            service: "migrate.v2".into(),
            condition: WaitCondition::Completed,
            failed: true,
        };
        assert_eq!(
            serde_json::to_string(&failed)?,
            r#""migrate.v2 (completed), which failed""#
        );
        for waiting in [waiting, failed] {
            let json = serde_json::to_string(&waiting)?;
            assert_eq!(serde_json::from_str::<WaitingFor>(&json)?, waiting);
        }
        let started: WaitingFor = serde_json::from_str(r#""api (started)""#)?;
        assert_eq!(started.condition, WaitCondition::Started);
        assert!(serde_json::from_str::<WaitingFor>(r#""db""#).is_err());
        assert!(serde_json::from_str::<WaitingFor>(r#""db (ready)""#).is_err());
        Ok(())
    }

    #[test]
    fn commands_cross_the_wire_unchanged() -> Result<(), serde_json::Error> {
        let command = Command::Restart {
            services: vec!["users".into()],
        };
        let json = serde_json::to_string(&command)?;
        assert_eq!(json, r#"{"command":"restart","services":["users"]}"#);
        assert_eq!(serde_json::from_str::<Command>(&json)?, command);
        Ok(())
    }
}
