//! The state machine's vocabulary: what it decides with ([`Policy`]), what it is
//! told ([`Input`], [`Timer`]) and what it asks for ([`Effect`]), and the types of its
//! own state (its instances, its phase). Data only; the transitions are in
//! `state.rs`.

use std::time::{Duration, Instant};

use crate::event::{EventKind, ExitStatus, Generation, ProbeCause};
use crate::manifest::{BackoffSpec, RedeployStrategy, RestartPolicy, ServiceSpec};

/// The parts of a service's spec the machine decides with.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub restart: RestartPolicy,
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub backoff: BackoffSpec,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub has_build: bool,
    pub has_health: bool,
    pub restart_on_unhealthy: bool,
    pub redeploy: RedeployStrategy,
    /// A starting instance that has not passed its probe by then is stopped and counted
    /// as a failure. `None`: a starting instance waits for as long as it takes.
    pub start_timeout: Option<Duration>,
    /// Failed probes in a row that make a healthy instance unhealthy (for messages).
    pub probe_retries: u32,
}

impl Policy {
    pub fn from_spec(spec: &ServiceSpec) -> Policy {
        Policy {
            restart: spec.restart,
            max_restarts: spec.max_restarts,
            restart_window: spec.restart_window,
            backoff: spec.backoff,
            stop_signal: spec.stop_signal.number,
            stop_timeout: spec.stop_timeout,
            has_build: spec.has_build(),
            has_health: spec.health.is_some(),
            restart_on_unhealthy: spec.restart_on_unhealthy,
            redeploy: spec.redeploy,
            start_timeout: spec.start_timeout,
            probe_retries: spec
                .health
                .as_ref()
                .map_or(0, |health| health.retries.max(1)),
        }
    }
}

/// A build is numbered so that the result of a cancelled one is ignored.
pub type BuildId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Run the service (its dependencies hold; the supervisor checked).
    Start,
    /// Build now, while the start waits for dependencies, so that the `Start` that
    /// follows spawns at once. Sent again (a source change while waiting), it builds
    /// afresh. Ignored once the service runs, and without a build.
    Prebuild,
    /// Stop every instance and stay down.
    Stop,
    /// Replace the running instance: stop it first, then start a new one.
    Restart,
    /// Rebuild (if there is a build) and replace the running instance using the
    /// service's redeploy strategy.
    Redeploy,
    /// SIGKILL every instance now and stay down (second Ctrl-C).
    Kill,
    Spawned {
        generation: Generation,
        pid: Option<u32>,
        container: Option<String>,
    },
    /// The instance could not be started. `retry` is false when trying again cannot
    /// help (an image that is missing and has no build): the service fails at once.
    SpawnFailed {
        generation: Generation,
        reason: String,
        retry: bool,
    },
    Exited {
        generation: Generation,
        status: ExitStatus,
    },
    /// The health checker's verdict changed for an instance. `healthy: false` means
    /// unhealthy only for an instance that has passed before (liveness); a starting
    /// instance is never stopped for it (readiness is not liveness).
    Health {
        generation: Generation,
        healthy: bool,
        reason: String,
    },
    /// A starting instance's probe failed with a new error (shown, never acted on).
    ProbeFailing {
        generation: Generation,
        reason: String,
    },
    BuildFinished {
        build: BuildId,
        result: Result<(), String>,
    },
    Timer(Timer),
    /// The Docker engine stopped answering (container services only): the machine can
    /// no longer see its container, nor reach it.
    EngineLost {
        reason: String,
    },
    /// The engine answers again; the exits it missed have been delivered already.
    EngineBack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The backoff delay before restart `id` is over.
    RestartDelay { id: u64 },
    /// `stop_timeout` passed since this instance got its stop signal.
    StopTimeout { generation: Generation },
    /// This instance has been up for [`STABLE_UPTIME`](crate::service::backoff::STABLE_UPTIME).
    Stable { generation: Generation },
    /// `start_timeout` passed since this instance started.
    StartTimeout { generation: Generation },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Build {
        build: BuildId,
        /// A start's build (not a redeploy's): an identical build that is already
        /// running, and saw no source change since it began, may stand in for it.
        shared: bool,
    },
    /// Kill the build's whole process group; its result will be ignored.
    CancelBuild {
        build: BuildId,
    },
    Spawn {
        generation: Generation,
    },
    /// Send `signal` to the instance's process group (or the container).
    Signal {
        generation: Generation,
        signal: i32,
    },
    /// SIGKILL the instance's process group and everything it started.
    Kill {
        generation: Generation,
    },
    /// The instance's main process is gone: kill and reap what it left behind, and
    /// stop its probes. Carried out before any later effect.
    Cleanup {
        generation: Generation,
    },
    SetTimer {
        timer: Timer,
        after: Duration,
    },
    Emit {
        generation: Generation,
        event: EventKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    Pending,
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    /// Stop, restart, or replaced by a redeploy: its exit is expected.
    Requested,
    /// Its liveness probe failed: its exit counts as a failure, not a crash.
    Unhealthy { failures: u32 },
    /// It never passed its probe within `start_timeout`: a failure, not a crash.
    NotReady { after: Duration },
    /// A start-first candidate that never became healthy.
    Discarded,
}

impl StopReason {
    /// Why fleet stopped an instance whose end the restart policy must handle.
    pub(super) fn probe_cause(self) -> Option<ProbeCause> {
        match self {
            StopReason::Unhealthy { failures } => Some(ProbeCause::Unhealthy { failures }),
            StopReason::NotReady { after } => Some(ProbeCause::NotReady {
                after_ms: after.as_millis().try_into().unwrap_or(u64::MAX),
            }),
            StopReason::Requested | StopReason::Discarded => None,
        }
    }
}

/// How a service that will not run again by itself ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Completed,
    /// Why, for `fleet ps`.
    Failed(String),
}

/// What a running build will lead to when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BuildPurpose {
    Start,
    /// Ahead of a start that waits for dependencies ([`Input::Prebuild`]).
    Ahead,
    /// Replace the running instance. `announce`: a redeploy (not a restart), to be
    /// announced as one.
    Replace {
        strategy: RedeployStrategy,
        announce: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Instance {
    pub(super) generation: Generation,
    pub(super) pid: Option<u32>,
    pub(super) container: Option<String>,
    pub(super) started_at: Instant,
    pub(super) health: Health,
    /// The last probe error while the instance has not passed yet.
    pub(super) probe_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Retiring {
    pub(super) instance: Instance,
    pub(super) reason: StopReason,
    pub(super) killed: bool,
    /// Its last stop signal or kill was asked for while the engine was away, so it may
    /// never have reached the container: asked again when the engine is back.
    pub(super) unconfirmed: bool,
}

/// The Docker engine cannot be reached (a container service's machine only).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Outage {
    pub(super) since: Instant,
    /// A new instance was due while the engine was away: it is started once the
    /// engine is back, rather than failing to start and counting as a crash.
    pub(super) start_held: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BuildRun {
    pub(super) id: BuildId,
    pub(super) purpose: BuildPurpose,
    /// The serving instance crashed during the build: it is restarted (the old build)
    /// when this restart timer fires, while the build goes on.
    pub(super) restart_timer: Option<u64>,
}

/// What the service is doing beside its instances: one variant per phase, holding
/// what that phase needs, so that no impossible combination (a build and a backoff
/// pending at once, a failed service that wants to start) can be written down.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    /// Not asked to run (instances may still be retiring).
    Down,
    /// Asked to run; nothing pending beyond the instances themselves.
    Up,
    /// Asked to run; a build runs, and leads to its purpose when it succeeds.
    Building(BuildRun),
    /// Asked to run; the next instance spawns once every retiring one is gone
    /// (stop-first). `announce`: the redeploy that replaces this generation, said when
    /// the new instance starts.
    AfterRetire { announce: Option<Generation> },
    /// Asked to run; the next instance spawns when restart timer `timer` fires.
    Backoff { timer: u64 },
    /// Asked to run, but ended for good until started again.
    Ended(Outcome),
}
