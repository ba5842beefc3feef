//! The per-service state machine: the heart of fleet, and pure.
//!
//! [`ServiceMachine::step`] takes one [`Input`] and the current time and returns the
//! [`Effect`]s the runner must carry out. No tokio, no IO, no clock reads: the runner
//! turns effects into syscalls or Docker calls and feeds their results back as inputs.
//!
//! # Theory of operation
//! A service has at most three kinds of instance at once:
//! - `active`: the instance that serves (or is starting to);
//! - `candidate`: a start-first redeploy's new instance, running beside `active` until
//!   it is healthy, when it takes `active`'s place;
//! - `retiring`: instances that got their stop signal and whose exit is expected.
//!
//! Every instance has a [`Generation`]. Exits, probe results and timers carry the
//! generation they belong to, and the machine ignores those of an instance it no
//! longer knows. That is what makes restarts and redeploys race-free: a late exit of
//! generation 7 can never be mistaken for a crash of generation 8.
//!
//! Whenever an instance exits, the machine first asks for its whole process group
//! (and anything it started) to be killed ([`Effect::Cleanup`]), before any
//! replacement is spawned, so leftover workers never hold the port of their successor.

use std::time::{Duration, Instant};

use crate::event::{EventKind, ExitStatus, Generation, ProbeCause, ServiceState};
use crate::manifest::{BackoffSpec, RedeployStrategy, RestartPolicy, ServiceSpec};

use super::backoff::{restart_delay, CrashWindow, Failure, STABLE_UPTIME};

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The backoff delay before restart `id` is over.
    RestartDelay { id: u64 },
    /// `stop_timeout` passed since this instance got its stop signal.
    StopTimeout { generation: Generation },
    /// This instance has been up for [`STABLE_UPTIME`].
    Stable { generation: Generation },
    /// `start_timeout` passed since this instance started.
    StartTimeout { generation: Generation },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Build {
        build: BuildId,
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
enum Health {
    Pending,
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
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
    fn probe_cause(self) -> Option<ProbeCause> {
        match self {
            StopReason::Unhealthy { failures } => Some(ProbeCause::Unhealthy { failures }),
            StopReason::NotReady { after } => Some(ProbeCause::NotReady {
                after_ms: after.as_millis().try_into().unwrap_or(u64::MAX),
            }),
            StopReason::Requested | StopReason::Discarded => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Instance {
    generation: Generation,
    pid: Option<u32>,
    container: Option<String>,
    started_at: Instant,
    health: Health,
    /// The last probe error while the instance has not passed yet.
    probe_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Retiring {
    instance: Instance,
    reason: StopReason,
    killed: bool,
}

/// How a service that will not run again by itself ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Completed,
    /// Why, for `fleet ps`.
    Failed(String),
}

/// What a running build will lead to when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BuildPurpose {
    Start,
    /// Replace the running instance. `announce`: a redeploy (not a restart), to be
    /// announced as one.
    Replace {
        strategy: RedeployStrategy,
        announce: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BuildRun {
    id: BuildId,
    purpose: BuildPurpose,
    /// The serving instance crashed during the build: it is restarted (the old build)
    /// when this restart timer fires, while the build goes on.
    restart_timer: Option<u64>,
}

/// What the service is doing beside its instances: one variant per phase, holding
/// what that phase needs, so that no impossible combination (a build and a backoff
/// pending at once, a failed service that wants to start) can be written down.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
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

/// One service's state. Owned by its runner; nobody else mutates it.
#[derive(Debug, Clone)]
pub struct ServiceMachine {
    policy: Policy,
    phase: Phase,
    next_generation: u64,
    next_id: u64,
    active: Option<Instance>,
    candidate: Option<Instance>,
    retiring: Vec<Retiring>,
    /// The last build failed: a badge until a build succeeds, whatever the phase.
    last_build_failed: bool,
    consecutive_crashes: u32,
    crashes: CrashWindow,
    restarts: u32,
}

impl ServiceMachine {
    pub fn new(policy: Policy) -> ServiceMachine {
        ServiceMachine {
            policy,
            phase: Phase::Down,
            next_generation: 1,
            next_id: 1,
            active: None,
            candidate: None,
            retiring: Vec::new(),
            last_build_failed: false,
            consecutive_crashes: 0,
            crashes: CrashWindow::default(),
            restarts: 0,
        }
    }

    /// Takes a changed spec (after `fleet reload`); applies from the next instance on.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn state(&self) -> ServiceState {
        if let Some(active) = &self.active {
            return match (active.health, self.policy.has_health) {
                (_, false) => ServiceState::Running,
                (Health::Pending, true) => ServiceState::Starting,
                (Health::Healthy, true) => ServiceState::Healthy,
                (Health::Unhealthy, true) => ServiceState::Unhealthy,
            };
        }
        if !self.retiring.is_empty() {
            return ServiceState::Stopping;
        }
        match self.phase {
            Phase::Building(_) => ServiceState::Building,
            Phase::Backoff { .. } => ServiceState::Backoff,
            Phase::Ended(Outcome::Completed) => ServiceState::Completed,
            Phase::Ended(Outcome::Failed(_)) => ServiceState::Failed,
            _ if self.candidate.is_some() => ServiceState::Starting,
            _ => ServiceState::Stopped,
        }
    }

    /// Whether the service is meant to run (it may be waiting, building or backing off).
    pub fn wants_up(&self) -> bool {
        self.phase != Phase::Down
    }

    /// The serving instance's generation, or the newest one if none serves.
    pub fn generation(&self) -> Generation {
        self.active
            .as_ref()
            .map(|instance| instance.generation)
            .unwrap_or(Generation(self.next_generation - 1))
    }

    pub fn pid(&self) -> Option<u32> {
        self.active.as_ref().and_then(|instance| instance.pid)
    }

    pub fn container(&self) -> Option<&str> {
        self.active
            .as_ref()
            .and_then(|instance| instance.container.as_deref())
    }

    pub fn started_at(&self) -> Option<Instant> {
        self.active.as_ref().map(|instance| instance.started_at)
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    pub fn building(&self) -> bool {
        matches!(self.phase, Phase::Building(_))
    }

    pub fn last_build_failed(&self) -> bool {
        self.last_build_failed
    }

    pub fn failure(&self) -> Option<&str> {
        match &self.phase {
            Phase::Ended(Outcome::Failed(reason)) => Some(reason),
            _ => None,
        }
    }

    /// Why the serving instance has not passed its probe yet, as the last probe said.
    pub fn probe_error(&self) -> Option<&str> {
        self.active
            .as_ref()
            .filter(|instance| instance.health == Health::Pending)
            .and_then(|instance| instance.probe_error.as_deref())
    }

    /// Generations of every live instance (active, candidate, retiring).
    pub fn live_generations(&self) -> Vec<Generation> {
        let mut generations: Vec<Generation> = self.active.iter().map(|i| i.generation).collect();
        generations.extend(self.candidate.iter().map(|i| i.generation));
        generations.extend(self.retiring.iter().map(|r| r.instance.generation));
        generations
    }

    /// Nothing runs and nothing is about to.
    pub fn is_idle(&self) -> bool {
        self.active.is_none()
            && self.candidate.is_none()
            && self.retiring.is_empty()
            && !matches!(
                self.phase,
                Phase::Building(_) | Phase::Backoff { .. } | Phase::AfterRetire { .. }
            )
    }

    /// Applies one input. The returned effects must be carried out in order.
    pub fn step(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let before = self.state();
        let mut effects = Vec::new();
        match input {
            Input::Start => self.on_start(now, &mut effects),
            Input::Stop => self.on_stop(false, &mut effects),
            Input::Kill => self.on_stop(true, &mut effects),
            Input::Restart => {
                self.on_redeploy(RedeployStrategy::StopFirst, false, now, &mut effects)
            }
            Input::Redeploy => self.on_redeploy(self.policy.redeploy, true, now, &mut effects),
            Input::Spawned {
                generation,
                pid,
                container,
            } => self.on_spawned(generation, pid, container, &mut effects),
            Input::SpawnFailed {
                generation,
                reason,
                retry,
            } => self.on_spawn_failed(generation, reason, retry, now, &mut effects),
            Input::Exited { generation, status } => {
                self.on_exited(generation, status, now, &mut effects)
            }
            Input::Health {
                generation,
                healthy,
                reason,
            } => self.on_health(generation, healthy, reason, &mut effects),
            Input::ProbeFailing { generation, reason } => self.on_probe_failing(generation, reason),
            Input::BuildFinished { build, result } => {
                self.on_build_finished(build, result, now, &mut effects)
            }
            Input::Timer(timer) => self.on_timer(timer, now, &mut effects),
        }
        let after = self.state();
        if after != before {
            effects.push(Effect::Emit {
                generation: self.generation(),
                event: EventKind::StateChanged { state: after },
            });
        }
        effects
    }

    fn on_start(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let busy = matches!(self.phase, Phase::Building(_) | Phase::AfterRetire { .. });
        if self.active.is_some() || self.candidate.is_some() || busy {
            if self.phase == Phase::Down {
                self.phase = Phase::Up;
            }
            return;
        }
        // A fresh start: a failed or completed service runs again, a pending backoff
        // is cut short, and the crash count starts over.
        self.consecutive_crashes = 0;
        self.crashes.clear();
        if !self.retiring.is_empty() {
            self.phase = Phase::AfterRetire { announce: None };
        } else if self.policy.has_build {
            self.start_build(BuildPurpose::Start, effects);
        } else {
            self.phase = Phase::Up;
            self.spawn_active(now, effects);
        }
    }

    fn on_stop(&mut self, kill: bool, effects: &mut Vec<Effect>) {
        // A stopped service is stopped, whatever it was before.
        if let Phase::Building(build) = std::mem::replace(&mut self.phase, Phase::Down) {
            effects.push(Effect::CancelBuild { build: build.id });
        }
        if let Some(candidate) = self.candidate.take() {
            self.retire(candidate, StopReason::Requested, effects);
        }
        if let Some(active) = self.active.take() {
            self.retire(active, StopReason::Requested, effects);
        }
        if kill {
            for retiring in &mut self.retiring {
                if !retiring.killed {
                    retiring.killed = true;
                    effects.push(Effect::Kill {
                        generation: retiring.instance.generation,
                    });
                }
            }
        }
    }

    /// A restart (`announce` false) or a redeploy (`announce` true).
    fn on_redeploy(
        &mut self,
        strategy: RedeployStrategy,
        announce: bool,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        if let Phase::Building(build) = std::mem::replace(&mut self.phase, Phase::Up) {
            // The latest source wins: a change during a build cancels it.
            effects.push(Effect::CancelBuild { build: build.id });
            effects.push(Effect::Emit {
                generation: self.generation(),
                event: EventKind::BuildCancelled,
            });
        }
        if self.policy.has_build {
            self.start_build(BuildPurpose::Replace { strategy, announce }, effects);
        } else {
            self.replace(strategy, announce, now, effects);
        }
    }

    fn start_build(&mut self, purpose: BuildPurpose, effects: &mut Vec<Effect>) {
        let id = self.take_id();
        self.phase = Phase::Building(BuildRun {
            id,
            purpose,
            restart_timer: None,
        });
        effects.push(Effect::Build { build: id });
        effects.push(Effect::Emit {
            generation: self.generation(),
            event: EventKind::BuildStarted,
        });
    }

    fn on_build_finished(
        &mut self,
        build: BuildId,
        result: Result<(), String>,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        let Phase::Building(run) = self.phase else {
            return;
        };
        if run.id != build {
            return;
        }
        self.phase = Phase::Up;
        match result {
            Ok(()) => {
                self.last_build_failed = false;
                match run.purpose {
                    BuildPurpose::Start => {
                        if self.active.is_none() && self.retiring.is_empty() {
                            self.spawn_active(now, effects);
                        } else if self.active.is_none() {
                            self.phase = Phase::AfterRetire { announce: None };
                        }
                    }
                    BuildPurpose::Replace { strategy, announce } => {
                        self.replace(strategy, announce, now, effects)
                    }
                }
            }
            Err(reason) => {
                // The old instance keeps serving; only a badge and an event change.
                self.last_build_failed = true;
                effects.push(Effect::Emit {
                    generation: self.generation(),
                    event: EventKind::BuildFailed {
                        reason: reason.clone(),
                    },
                });
                if self.active.is_none() && self.candidate.is_none() && self.retiring.is_empty() {
                    self.phase = Phase::Ended(Outcome::Failed(format!("build failed: {reason}")));
                }
            }
        }
    }

    /// Puts a new instance in place of the active one. `announce`: a redeploy, said as
    /// one when a stop-first replacement starts.
    fn replace(
        &mut self,
        strategy: RedeployStrategy,
        announce: bool,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        // Whatever was pending (a backoff, a failure) gives way to the new instance.
        self.phase = Phase::Up;
        if let Some(candidate) = self.candidate.take() {
            self.retire(candidate, StopReason::Discarded, effects);
        }
        let Some(active) = self.active.take() else {
            if self.retiring.is_empty() {
                self.spawn_active(now, effects);
            } else {
                self.phase = Phase::AfterRetire { announce: None };
            }
            return;
        };
        match strategy {
            RedeployStrategy::StartFirst => {
                self.active = Some(active);
                let generation = self.take_generation();
                self.candidate = Some(Instance {
                    generation,
                    pid: None,
                    container: None,
                    started_at: now,
                    health: Health::Pending,
                    probe_error: None,
                });
                effects.push(Effect::Spawn { generation });
            }
            RedeployStrategy::StopFirst => {
                let from = active.generation;
                self.retire(active, StopReason::Requested, effects);
                self.phase = Phase::AfterRetire {
                    announce: announce.then_some(from),
                };
            }
        }
    }

    /// Spawns a new serving instance; the caller has set the phase.
    fn spawn_active(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let generation = self.take_generation();
        self.active = Some(Instance {
            generation,
            pid: None,
            container: None,
            started_at: now,
            health: Health::Pending,
            probe_error: None,
        });
        effects.push(Effect::Spawn { generation });
    }

    fn retire(&mut self, instance: Instance, reason: StopReason, effects: &mut Vec<Effect>) {
        let generation = instance.generation;
        effects.push(Effect::Signal {
            generation,
            signal: self.policy.stop_signal,
        });
        effects.push(Effect::SetTimer {
            timer: Timer::StopTimeout { generation },
            after: self.policy.stop_timeout,
        });
        self.retiring.push(Retiring {
            instance,
            reason,
            killed: false,
        });
    }

    fn on_spawned(
        &mut self,
        generation: Generation,
        pid: Option<u32>,
        container: Option<String>,
        effects: &mut Vec<Effect>,
    ) {
        let event = EventKind::Started {
            pid,
            container: container.clone(),
        };
        let start_timeout = self
            .policy
            .start_timeout
            .filter(|_| self.policy.has_health)
            .map(|after| Effect::SetTimer {
                timer: Timer::StartTimeout { generation },
                after,
            });
        if let Some(active) = self.active.as_mut().filter(|i| i.generation == generation) {
            active.pid = pid;
            active.container = container;
            effects.push(Effect::Emit { generation, event });
            effects.push(Effect::SetTimer {
                timer: Timer::Stable { generation },
                after: STABLE_UPTIME,
            });
            effects.extend(start_timeout);
        } else if let Some(candidate) = self
            .candidate
            .as_mut()
            .filter(|i| i.generation == generation)
        {
            candidate.pid = pid;
            candidate.container = container;
            effects.push(Effect::Emit { generation, event });
            if self.policy.has_health {
                effects.extend(start_timeout);
            } else {
                self.promote_candidate(effects);
            }
        } else if let Some(retiring) = self
            .retiring
            .iter_mut()
            .find(|r| r.instance.generation == generation)
        {
            retiring.instance.pid = pid;
            retiring.instance.container = container;
        }
    }

    fn on_spawn_failed(
        &mut self,
        generation: Generation,
        reason: String,
        retry: bool,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        if self
            .active
            .as_ref()
            .is_some_and(|i| i.generation == generation)
        {
            self.active = None;
            effects.push(Effect::Emit {
                generation,
                event: EventKind::StartFailed {
                    reason: reason.clone(),
                },
            });
            if retry {
                self.after_crash(generation, None, Some(reason), None, now, effects);
            } else {
                self.phase = Phase::Ended(Outcome::Failed(reason));
            }
        } else if self
            .candidate
            .as_ref()
            .is_some_and(|i| i.generation == generation)
        {
            self.candidate = None;
            self.last_build_failed = false;
            effects.push(Effect::Emit {
                generation,
                event: EventKind::RedeployAborted { reason },
            });
        } else {
            self.retiring
                .retain(|r| r.instance.generation != generation);
            self.after_retired(now, effects);
        }
    }

    fn on_exited(
        &mut self,
        generation: Generation,
        status: ExitStatus,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        if self
            .active
            .as_ref()
            .is_some_and(|i| i.generation == generation)
        {
            self.active = None;
            effects.push(Effect::Cleanup { generation });
            self.after_crash(generation, Some(status), None, None, now, effects);
        } else if self
            .candidate
            .as_ref()
            .is_some_and(|i| i.generation == generation)
        {
            self.candidate = None;
            effects.push(Effect::Cleanup { generation });
            effects.push(Effect::Emit {
                generation,
                event: EventKind::RedeployAborted {
                    reason: format!("new instance {status}"),
                },
            });
        } else if let Some(index) = self
            .retiring
            .iter()
            .position(|r| r.instance.generation == generation)
        {
            let retired = self.retiring.remove(index);
            effects.push(Effect::Cleanup { generation });
            let cause = retired.reason.probe_cause();
            if cause.is_some() && self.wants_up() && self.active.is_none() {
                // fleet stopped it for its probe: a failure, however it exited, which
                // the restart policy handles and its event reports.
                self.after_crash(generation, Some(status), None, cause, now, effects);
            } else {
                effects.push(Effect::Emit {
                    generation,
                    event: EventKind::Stopped { status },
                });
                self.after_retired(now, effects);
            }
        }
    }

    /// A retiring instance is gone: start the replacement once all are.
    fn after_retired(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        if !self.retiring.is_empty() {
            return;
        }
        let Phase::AfterRetire { announce } = self.phase else {
            return;
        };
        self.phase = Phase::Up;
        if self.active.is_none() {
            self.spawn_active(now, effects);
            if let Some(from) = announce {
                effects.push(Effect::Emit {
                    generation: self.generation(),
                    event: EventKind::Redeployed { from },
                });
            }
        }
    }

    /// The active instance ended (or never started): apply the restart policy.
    /// `cause`: fleet stopped it for its probe, so even a clean exit is a failure, and
    /// it is reported as what it was, not as a crash.
    fn after_crash(
        &mut self,
        generation: Generation,
        status: Option<ExitStatus>,
        spawn_error: Option<String>,
        cause: Option<ProbeCause>,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        let succeeded = status.is_some_and(ExitStatus::success) && cause.is_none();
        let restart = self.wants_up()
            && match self.policy.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !succeeded,
                RestartPolicy::Never => false,
            };
        if !restart {
            let why = match (status, cause, spawn_error) {
                (_, Some(cause), _) => cause.to_string(),
                (Some(status), None, _) => status.to_string(),
                (None, None, Some(error)) => error,
                (None, None, None) => "it could not be started".to_string(),
            };
            self.phase = Phase::Ended(if succeeded {
                Outcome::Completed
            } else {
                Outcome::Failed(why)
            });
            if let Some(status) = status {
                effects.push(Effect::Emit {
                    generation,
                    event: EventKind::Exited {
                        status,
                        restart_in_ms: None,
                        restart_count: self.restarts,
                        cause,
                    },
                });
            }
            return;
        }
        let failure = match cause {
            None => Failure::Crash,
            Some(ProbeCause::Unhealthy { .. }) => Failure::Unhealthy,
            Some(ProbeCause::NotReady { .. }) => Failure::NotReady,
        };
        let count = self
            .crashes
            .record(now, self.policy.restart_window, failure);
        if count.total > self.policy.max_restarts {
            if let Some(status) = status {
                effects.push(Effect::Emit {
                    generation,
                    event: EventKind::Exited {
                        status,
                        restart_in_ms: None,
                        restart_count: self.restarts,
                        cause,
                    },
                });
            }
            let window_ms = self
                .policy
                .restart_window
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX);
            self.phase = Phase::Ended(Outcome::Failed(crate::event::describe_failures(
                count.total,
                count.unhealthy,
                count.not_ready,
                window_ms,
            )));
            effects.push(Effect::Emit {
                generation,
                event: EventKind::GaveUp {
                    crashes: count.total,
                    window_ms,
                    unhealthy: count.unhealthy,
                    not_ready: count.not_ready,
                },
            });
            return;
        }
        self.consecutive_crashes += 1;
        self.restarts += 1;
        let delay = restart_delay(&self.policy.backoff, self.consecutive_crashes);
        if let Some(status) = status {
            effects.push(Effect::Emit {
                generation,
                event: EventKind::Exited {
                    status,
                    restart_in_ms: Some(delay.as_millis().try_into().unwrap_or(u64::MAX)),
                    restart_count: self.restarts,
                    cause,
                },
            });
        }
        if delay.is_zero() {
            self.spawn_active(now, effects);
        } else {
            let id = self.take_id();
            match &mut self.phase {
                // A redeploy's build goes on; the old build restarts meanwhile.
                Phase::Building(run) => run.restart_timer = Some(id),
                phase => *phase = Phase::Backoff { timer: id },
            }
            effects.push(Effect::SetTimer {
                timer: Timer::RestartDelay { id },
                after: delay,
            });
        }
    }

    fn on_health(
        &mut self,
        generation: Generation,
        healthy: bool,
        reason: String,
        effects: &mut Vec<Effect>,
    ) {
        if let Some(candidate) = self
            .candidate
            .as_mut()
            .filter(|i| i.generation == generation)
        {
            if healthy {
                self.promote_candidate(effects);
            } else {
                // Still starting: it is judged when it passes, exits, or runs out of
                // `start_timeout`; the old instance serves meanwhile.
                candidate.probe_error = Some(reason);
            }
            return;
        }
        let Some(active) = self.active.as_mut().filter(|i| i.generation == generation) else {
            return;
        };
        if !healthy && active.health == Health::Pending {
            // Readiness is not liveness: a starting instance is never stopped for
            // failing its probe (only `start_timeout` can end its start).
            active.probe_error = Some(reason);
            return;
        }
        if healthy {
            active.probe_error = None;
        }
        let new_health = if healthy {
            Health::Healthy
        } else {
            Health::Unhealthy
        };
        if active.health == new_health {
            return;
        }
        active.health = new_health;
        if healthy {
            effects.push(Effect::Emit {
                generation,
                event: EventKind::Healthy,
            });
            return;
        }
        effects.push(Effect::Emit {
            generation,
            event: EventKind::Unhealthy { reason },
        });
        if self.policy.restart_on_unhealthy {
            if let Some(active) = self.active.take() {
                let failures = self.policy.probe_retries.max(1);
                self.retire(active, StopReason::Unhealthy { failures }, effects);
            }
        }
    }

    fn on_probe_failing(&mut self, generation: Generation, reason: String) {
        let instance = self
            .active
            .iter_mut()
            .chain(self.candidate.iter_mut())
            .find(|i| i.generation == generation && i.health == Health::Pending);
        if let Some(instance) = instance {
            instance.probe_error = Some(reason);
        }
    }

    /// `start_timeout` ran out: a still-starting instance is stopped and counted as a
    /// failure (restarted through the policy and backoff); a still-starting candidate
    /// is discarded and the old instance keeps serving.
    fn on_start_timeout(&mut self, generation: Generation, effects: &mut Vec<Effect>) {
        let after = self.policy.start_timeout.unwrap_or_default();
        let after_ms: u64 = after.as_millis().try_into().unwrap_or(u64::MAX);
        if self
            .active
            .as_ref()
            .is_some_and(|i| i.generation == generation && i.health == Health::Pending)
        {
            let Some(active) = self.active.take() else {
                return;
            };
            effects.push(Effect::Emit {
                generation,
                event: EventKind::NotReady {
                    after_ms,
                    reason: active.probe_error.clone(),
                },
            });
            self.retire(active, StopReason::NotReady { after }, effects);
        } else if self
            .candidate
            .as_ref()
            .is_some_and(|i| i.generation == generation && i.health == Health::Pending)
        {
            let Some(candidate) = self.candidate.take() else {
                return;
            };
            let mut reason = format!(
                "new instance not ready after {}",
                crate::event::format_duration_ms(after_ms)
            );
            if let Some(error) = &candidate.probe_error {
                reason.push_str(&format!(" (last probe: {error})"));
            }
            effects.push(Effect::Emit {
                generation,
                event: EventKind::RedeployAborted { reason },
            });
            effects.push(Effect::Kill { generation });
            self.retiring.push(Retiring {
                instance: candidate,
                reason: StopReason::Discarded,
                killed: true,
            });
        }
    }

    fn promote_candidate(&mut self, effects: &mut Vec<Effect>) {
        let Some(mut candidate) = self.candidate.take() else {
            return;
        };
        let generation = candidate.generation;
        candidate.health = if self.policy.has_health {
            Health::Healthy
        } else {
            Health::Pending
        };
        if self.policy.has_health {
            effects.push(Effect::Emit {
                generation,
                event: EventKind::Healthy,
            });
        }
        // Announced last, so that the service's last event says what happened: the
        // redeploy (the old instance's exit that follows is routine).
        let old = self.active.replace(candidate);
        if let Some(old) = old {
            let from = old.generation;
            self.retire(old, StopReason::Requested, effects);
            effects.push(Effect::Emit {
                generation,
                event: EventKind::Redeployed { from },
            });
        }
        effects.push(Effect::SetTimer {
            timer: Timer::Stable { generation },
            after: STABLE_UPTIME,
        });
    }

    fn on_timer(&mut self, timer: Timer, now: Instant, effects: &mut Vec<Effect>) {
        match timer {
            Timer::RestartDelay { id } => {
                let due = match &mut self.phase {
                    Phase::Backoff { timer } if *timer == id => {
                        self.phase = Phase::Up;
                        true
                    }
                    Phase::Building(run) if run.restart_timer == Some(id) => {
                        run.restart_timer = None;
                        true
                    }
                    _ => false,
                };
                if due && self.active.is_none() {
                    self.spawn_active(now, effects);
                }
            }
            Timer::StopTimeout { generation } => {
                if let Some(retiring) = self
                    .retiring
                    .iter_mut()
                    .find(|r| r.instance.generation == generation && !r.killed)
                {
                    retiring.killed = true;
                    effects.push(Effect::Kill { generation });
                    effects.push(Effect::Emit {
                        generation,
                        event: EventKind::StopTimedOut,
                    });
                }
            }
            Timer::StartTimeout { generation } => self.on_start_timeout(generation, effects),
            Timer::Stable { generation } => {
                if self
                    .active
                    .as_ref()
                    .is_some_and(|i| i.generation == generation)
                {
                    self.consecutive_crashes = 0;
                }
            }
        }
    }

    fn take_generation(&mut self) -> Generation {
        let generation = Generation(self.next_generation);
        self.next_generation += 1;
        generation
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    //! Transition tables: each test feeds inputs and pins the effects and states.
    use super::*;

    const TERM: i32 = 15;

    fn policy() -> Policy {
        Policy {
            restart: RestartPolicy::OnFailure,
            max_restarts: 3,
            restart_window: Duration::from_secs(60),
            backoff: BackoffSpec {
                initial: Duration::from_millis(100),
                max: Duration::from_millis(1000),
            },
            stop_signal: TERM,
            stop_timeout: Duration::from_secs(10),
            has_build: false,
            has_health: false,
            restart_on_unhealthy: true,
            redeploy: RedeployStrategy::StopFirst,
            start_timeout: None,
            probe_retries: 3,
        }
    }

    fn g(n: u64) -> Generation {
        Generation(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Effects other than events, which most tables don't care about.
    fn actions(effects: &[Effect]) -> Vec<Effect> {
        effects
            .iter()
            .filter(|e| !matches!(e, Effect::Emit { .. }))
            .cloned()
            .collect()
    }

    fn events(effects: &[Effect]) -> Vec<EventKind> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Emit { event, .. } => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    fn spawned(generation: u64, pid: u32) -> Input {
        Input::Spawned {
            generation: g(generation),
            pid: Some(pid),
            container: None,
        }
    }

    fn exited(generation: u64, code: i32) -> Input {
        Input::Exited {
            generation: g(generation),
            status: ExitStatus::Code(code),
        }
    }

    fn healthy(generation: u64, healthy: bool) -> Input {
        Input::Health {
            generation: g(generation),
            healthy,
            reason: "probe".into(),
        }
    }

    fn running(machine: &mut ServiceMachine, now: Instant) {
        assert_eq!(
            actions(&machine.step(Input::Start, now)),
            vec![Effect::Spawn { generation: g(1) }]
        );
        machine.step(spawned(1, 100), now);
    }

    #[test]
    fn start_spawns_generation_one_and_runs() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        assert_eq!(machine.state(), ServiceState::Stopped);
        assert_eq!(
            actions(&machine.step(Input::Start, now)),
            vec![Effect::Spawn { generation: g(1) }]
        );
        let effects = machine.step(spawned(1, 100), now);
        assert_eq!(
            actions(&effects),
            vec![Effect::SetTimer {
                timer: Timer::Stable { generation: g(1) },
                after: STABLE_UPTIME
            }]
        );
        assert!(events(&effects).contains(&EventKind::Started {
            pid: Some(100),
            container: None
        }));
        assert_eq!(machine.state(), ServiceState::Running);
        assert_eq!(machine.pid(), Some(100));
    }

    #[test]
    fn crashes_restart_with_doubling_delay_and_cleanup_first() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        running(&mut machine, now);
        let table = [(1, 100, 1), (2, 200, 2), (3, 400, 3)];
        for (generation, delay, timer_id) in table {
            let effects = machine.step(exited(generation, 1), now);
            assert_eq!(
                actions(&effects),
                vec![
                    Effect::Cleanup {
                        generation: g(generation)
                    },
                    Effect::SetTimer {
                        timer: Timer::RestartDelay { id: timer_id },
                        after: ms(delay)
                    },
                ],
                "crash of generation {generation}"
            );
            assert_eq!(machine.state(), ServiceState::Backoff);
            let effects = machine.step(Input::Timer(Timer::RestartDelay { id: timer_id }), now);
            assert_eq!(
                actions(&effects),
                vec![Effect::Spawn {
                    generation: g(generation + 1)
                }]
            );
            machine.step(spawned(generation + 1, 100 + generation as u32), now);
        }
        assert_eq!(machine.restarts(), 3);
    }

    #[test]
    fn crash_loop_ends_in_failed_after_max_restarts() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        running(&mut machine, now);
        for generation in 1..=3 {
            machine.step(exited(generation, 2), now);
            machine.step(Input::Timer(Timer::RestartDelay { id: generation }), now);
            machine.step(spawned(generation + 1, 1), now);
        }
        let effects = machine.step(exited(4, 2), now);
        assert_eq!(
            actions(&effects),
            vec![Effect::Cleanup { generation: g(4) }]
        );
        assert!(events(&effects).contains(&EventKind::GaveUp {
            crashes: 4,
            window_ms: 60_000,
            unhealthy: 0,
            not_ready: 0,
        }));
        assert_eq!(machine.state(), ServiceState::Failed);
        assert!(machine.is_idle());
    }

    #[test]
    fn crashes_outside_the_window_do_not_count() {
        let start = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        running(&mut machine, start);
        for generation in 1..=6 {
            let now = start + Duration::from_secs(61 * generation);
            machine.step(exited(generation, 1), now);
            assert_eq!(machine.state(), ServiceState::Backoff, "crash {generation}");
            machine.step(Input::Timer(Timer::RestartDelay { id: generation }), now);
            machine.step(spawned(generation + 1, 1), now);
        }
    }

    #[test]
    fn stable_uptime_resets_the_delay() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        running(&mut machine, now);
        machine.step(exited(1, 1), now);
        machine.step(Input::Timer(Timer::RestartDelay { id: 1 }), now);
        machine.step(spawned(2, 2), now);
        machine.step(Input::Timer(Timer::Stable { generation: g(2) }), now);
        let effects = machine.step(exited(2, 1), now);
        assert!(actions(&effects).contains(&Effect::SetTimer {
            timer: Timer::RestartDelay { id: 2 },
            after: ms(100)
        }));
    }

    #[test]
    fn zero_delay_restarts_in_the_same_step() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            backoff: BackoffSpec {
                initial: ms(0),
                max: ms(0),
            },
            ..policy()
        });
        running(&mut machine, now);
        let effects = machine.step(exited(1, 1), now);
        assert_eq!(
            actions(&effects),
            vec![
                Effect::Cleanup { generation: g(1) },
                Effect::Spawn { generation: g(2) }
            ]
        );
    }

    #[test]
    fn exit_policies_decide_completed_or_failed() {
        let table = [
            (RestartPolicy::OnFailure, 0, ServiceState::Completed),
            (RestartPolicy::Never, 0, ServiceState::Completed),
            (RestartPolicy::Never, 3, ServiceState::Failed),
            (RestartPolicy::OnFailure, 3, ServiceState::Backoff),
            (RestartPolicy::Always, 0, ServiceState::Backoff),
        ];
        for (restart, code, expected) in table {
            let now = Instant::now();
            let mut machine = ServiceMachine::new(Policy {
                restart,
                ..policy()
            });
            running(&mut machine, now);
            machine.step(exited(1, code), now);
            assert_eq!(machine.state(), expected, "{restart:?} exit {code}");
        }
    }

    #[test]
    fn stale_generations_are_ignored() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        running(&mut machine, now);
        machine.step(exited(1, 1), now);
        machine.step(Input::Timer(Timer::RestartDelay { id: 1 }), now);
        machine.step(spawned(2, 200), now);
        for stale in [
            exited(1, 1),
            healthy(1, false),
            Input::Timer(Timer::StopTimeout { generation: g(1) }),
        ] {
            assert_eq!(machine.step(stale, now), vec![]);
        }
        assert_eq!(machine.pid(), Some(200));
        assert_eq!(machine.state(), ServiceState::Running);
    }

    #[test]
    fn stop_signals_then_kills_after_the_timeout() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        running(&mut machine, now);
        assert_eq!(
            actions(&machine.step(Input::Stop, now)),
            vec![
                Effect::Signal {
                    generation: g(1),
                    signal: TERM
                },
                Effect::SetTimer {
                    timer: Timer::StopTimeout { generation: g(1) },
                    after: Duration::from_secs(10)
                },
            ]
        );
        assert_eq!(machine.state(), ServiceState::Stopping);
        let effects = machine.step(Input::Timer(Timer::StopTimeout { generation: g(1) }), now);
        assert_eq!(actions(&effects), vec![Effect::Kill { generation: g(1) }]);
        let effects = machine.step(
            Input::Exited {
                generation: g(1),
                status: ExitStatus::Signal(9),
            },
            now,
        );
        assert_eq!(
            actions(&effects),
            vec![Effect::Cleanup { generation: g(1) }]
        );
        assert_eq!(machine.state(), ServiceState::Stopped);
        assert!(machine.is_idle());
    }

    #[test]
    fn kill_sends_sigkill_at_once() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        running(&mut machine, now);
        machine.step(Input::Stop, now);
        let effects = machine.step(Input::Kill, now);
        assert_eq!(actions(&effects), vec![Effect::Kill { generation: g(1) }]);
    }

    #[test]
    fn restart_stops_first_then_spawns_the_next_generation() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        running(&mut machine, now);
        let effects = machine.step(Input::Restart, now);
        assert!(actions(&effects).contains(&Effect::Signal {
            generation: g(1),
            signal: TERM
        }));
        assert_eq!(machine.state(), ServiceState::Stopping);
        let effects = machine.step(exited(1, 143), now);
        assert_eq!(
            actions(&effects),
            vec![
                Effect::Cleanup { generation: g(1) },
                Effect::Spawn { generation: g(2) }
            ]
        );
        assert_eq!(machine.restarts(), 0, "a requested restart is not a crash");
    }

    #[test]
    fn stop_first_redeploy_announces_the_replacement_but_restart_does_not() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        running(&mut machine, now);
        machine.step(Input::Redeploy, now);
        let effects = machine.step(exited(1, 0), now);
        assert!(events(&effects).contains(&EventKind::Redeployed { from: g(1) }));
        machine.step(spawned(2, 200), now);
        machine.step(Input::Restart, now);
        let effects = machine.step(exited(2, 0), now);
        assert!(!events(&effects)
            .iter()
            .any(|e| matches!(e, EventKind::Redeployed { .. })));
    }

    #[test]
    fn start_first_redeploy_swaps_when_the_candidate_is_healthy() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_health: true,
            redeploy: RedeployStrategy::StartFirst,
            ..policy()
        });
        running(&mut machine, now);
        machine.step(healthy(1, true), now);
        assert_eq!(machine.state(), ServiceState::Healthy);
        assert_eq!(
            actions(&machine.step(Input::Redeploy, now)),
            vec![Effect::Spawn { generation: g(2) }]
        );
        machine.step(spawned(2, 200), now);
        assert_eq!(
            machine.pid(),
            Some(100),
            "the old instance serves until the new one is healthy"
        );
        let effects = machine.step(healthy(2, true), now);
        assert_eq!(
            actions(&effects),
            vec![
                Effect::Signal {
                    generation: g(1),
                    signal: TERM
                },
                Effect::SetTimer {
                    timer: Timer::StopTimeout { generation: g(1) },
                    after: Duration::from_secs(10)
                },
                Effect::SetTimer {
                    timer: Timer::Stable { generation: g(2) },
                    after: STABLE_UPTIME
                },
            ]
        );
        assert!(events(&effects).contains(&EventKind::Redeployed { from: g(1) }));
        assert_eq!(machine.pid(), Some(200));
        assert_eq!(machine.state(), ServiceState::Healthy);
        let effects = machine.step(exited(1, 0), now);
        assert_eq!(
            actions(&effects),
            vec![Effect::Cleanup { generation: g(1) }]
        );
        assert_eq!(machine.state(), ServiceState::Healthy);
        assert_eq!(machine.restarts(), 0);
    }

    #[test]
    fn candidate_that_never_gets_healthy_is_killed_and_the_old_one_stays() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_health: true,
            redeploy: RedeployStrategy::StartFirst,
            start_timeout: Some(ms(2000)),
            ..policy()
        });
        running(&mut machine, now);
        machine.step(healthy(1, true), now);
        machine.step(Input::Redeploy, now);
        let effects = machine.step(spawned(2, 200), now);
        assert!(actions(&effects).contains(&Effect::SetTimer {
            timer: Timer::StartTimeout { generation: g(2) },
            after: ms(2000)
        }));
        // Failing probes alone never discard it: it may still be starting.
        let effects = machine.step(healthy(2, false), now);
        assert_eq!(actions(&effects), vec![]);
        let effects = machine.step(
            Input::Timer(Timer::StartTimeout { generation: g(2) }),
            now + ms(2000),
        );
        assert_eq!(actions(&effects), vec![Effect::Kill { generation: g(2) }]);
        assert!(events(&effects).contains(&EventKind::RedeployAborted {
            reason: "new instance not ready after 2s (last probe: probe)".into()
        }));
        assert_eq!(machine.pid(), Some(100));
        machine.step(
            Input::Exited {
                generation: g(2),
                status: ExitStatus::Signal(9),
            },
            now,
        );
        assert_eq!(machine.state(), ServiceState::Healthy);
        assert_eq!(machine.pid(), Some(100));
    }

    #[test]
    fn failed_build_keeps_the_old_instance_and_the_next_change_retries() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_build: true,
            ..policy()
        });
        assert_eq!(
            actions(&machine.step(Input::Start, now)),
            vec![Effect::Build { build: 1 }]
        );
        assert_eq!(machine.state(), ServiceState::Building);
        let effects = machine.step(
            Input::BuildFinished {
                build: 1,
                result: Ok(()),
            },
            now,
        );
        assert_eq!(actions(&effects), vec![Effect::Spawn { generation: g(1) }]);
        machine.step(spawned(1, 100), now);
        machine.step(Input::Redeploy, now);
        let effects = machine.step(
            Input::BuildFinished {
                build: 2,
                result: Err("exit 101".into()),
            },
            now,
        );
        assert_eq!(actions(&effects), vec![]);
        assert!(machine.last_build_failed());
        assert_eq!(machine.pid(), Some(100));
        assert_eq!(machine.state(), ServiceState::Running);
        assert_eq!(
            actions(&machine.step(Input::Redeploy, now)),
            vec![Effect::Build { build: 3 }]
        );
    }

    #[test]
    fn a_change_during_a_build_cancels_it_and_the_latest_wins() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_build: true,
            ..policy()
        });
        machine.step(Input::Start, now);
        machine.step(
            Input::BuildFinished {
                build: 1,
                result: Ok(()),
            },
            now,
        );
        machine.step(spawned(1, 100), now);
        machine.step(Input::Redeploy, now);
        assert_eq!(
            actions(&machine.step(Input::Redeploy, now)),
            vec![Effect::CancelBuild { build: 2 }, Effect::Build { build: 3 }]
        );
        assert_eq!(
            machine.step(
                Input::BuildFinished {
                    build: 2,
                    result: Ok(())
                },
                now
            ),
            vec![]
        );
        let effects = machine.step(
            Input::BuildFinished {
                build: 3,
                result: Ok(()),
            },
            now,
        );
        assert!(actions(&effects).contains(&Effect::Signal {
            generation: g(1),
            signal: TERM
        }));
    }

    #[test]
    fn unhealthy_instance_is_restarted_through_the_backoff() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_health: true,
            ..policy()
        });
        running(&mut machine, now);
        assert_eq!(machine.state(), ServiceState::Starting);
        machine.step(healthy(1, true), now);
        let effects = machine.step(healthy(1, false), now);
        assert!(actions(&effects).contains(&Effect::Signal {
            generation: g(1),
            signal: TERM
        }));
        let effects = machine.step(exited(1, 143), now);
        assert_eq!(
            actions(&effects),
            vec![
                Effect::Cleanup { generation: g(1) },
                Effect::SetTimer {
                    timer: Timer::RestartDelay { id: 1 },
                    after: ms(100)
                },
            ]
        );
        assert_eq!(machine.restarts(), 1);
        // Reported as what it was, not as a crash.
        assert_eq!(
            events(&effects)[0],
            EventKind::Exited {
                status: ExitStatus::Code(143),
                restart_in_ms: Some(100),
                restart_count: 1,
                cause: Some(ProbeCause::Unhealthy { failures: 3 }),
            }
        );
        assert_eq!(
            events(&effects)[0].to_string(),
            "restarted: unhealthy (3 failed probes), restart 1 in 100ms"
        );
    }

    #[test]
    fn a_starting_instance_is_never_stopped_for_failing_probes() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_health: true,
            ..policy()
        });
        running(&mut machine, now);
        for second in 0..100 {
            let at = now + Duration::from_secs(second);
            let effects = machine.step(
                Input::ProbeFailing {
                    generation: g(1),
                    reason: "connection refused".into(),
                },
                at,
            );
            assert_eq!(actions(&effects), vec![]);
            let effects = machine.step(healthy(1, false), at);
            assert_eq!(actions(&effects), vec![], "stopped at {second}s");
        }
        assert_eq!(machine.state(), ServiceState::Starting);
        assert_eq!(machine.probe_error(), Some("probe"));
        let effects = machine.step(healthy(1, true), now + Duration::from_secs(101));
        assert_eq!(events(&effects)[0], EventKind::Healthy);
        assert_eq!(machine.state(), ServiceState::Healthy);
        assert_eq!(machine.probe_error(), None);
        assert_eq!(machine.restarts(), 0);
    }

    #[test]
    fn start_timeout_restarts_a_never_ready_instance_through_the_backoff() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_health: true,
            start_timeout: Some(ms(2000)),
            ..policy()
        });
        machine.step(Input::Start, now);
        let effects = machine.step(spawned(1, 100), now);
        assert!(actions(&effects).contains(&Effect::SetTimer {
            timer: Timer::StartTimeout { generation: g(1) },
            after: ms(2000)
        }));
        machine.step(
            Input::ProbeFailing {
                generation: g(1),
                reason: "connection refused".into(),
            },
            now,
        );
        let effects = machine.step(
            Input::Timer(Timer::StartTimeout { generation: g(1) }),
            now + ms(2000),
        );
        assert_eq!(
            effects,
            vec![
                Effect::Emit {
                    generation: g(1),
                    event: EventKind::NotReady {
                        after_ms: 2000,
                        reason: Some("connection refused".into())
                    }
                },
                Effect::Signal {
                    generation: g(1),
                    signal: TERM
                },
                Effect::SetTimer {
                    timer: Timer::StopTimeout { generation: g(1) },
                    after: Duration::from_secs(10)
                },
                Effect::Emit {
                    generation: g(1),
                    event: EventKind::StateChanged {
                        state: ServiceState::Stopping
                    }
                },
            ]
        );
        let effects = machine.step(exited(1, 0), now + ms(2010));
        assert_eq!(
            actions(&effects),
            vec![
                Effect::Cleanup { generation: g(1) },
                Effect::SetTimer {
                    timer: Timer::RestartDelay { id: 1 },
                    after: ms(100)
                },
            ]
        );
        assert_eq!(
            events(&effects)[0].to_string(),
            "restarted: not ready after 2s, restart 1 in 100ms"
        );
        assert_eq!(machine.state(), ServiceState::Backoff);
    }

    #[test]
    fn start_timeout_of_an_instance_that_became_ready_is_ignored() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_health: true,
            start_timeout: Some(ms(2000)),
            ..policy()
        });
        running(&mut machine, now);
        machine.step(healthy(1, true), now);
        let effects = machine.step(
            Input::Timer(Timer::StartTimeout { generation: g(1) }),
            now + ms(2000),
        );
        assert_eq!(effects, vec![]);
        assert_eq!(machine.state(), ServiceState::Healthy);
    }

    #[test]
    fn healthy_then_failing_is_unhealthy_and_counts_toward_giving_up() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_health: true,
            max_restarts: 1,
            backoff: BackoffSpec {
                initial: Duration::ZERO,
                max: Duration::ZERO,
            },
            ..policy()
        });
        running(&mut machine, now);
        for generation in 1..=2 {
            machine.step(healthy(generation, true), now);
            machine.step(healthy(generation, false), now);
            let effects = machine.step(exited(generation, 0), now);
            if generation == 2 {
                assert!(events(&effects).contains(&EventKind::GaveUp {
                    crashes: 2,
                    window_ms: 60_000,
                    unhealthy: 2,
                    not_ready: 0,
                }));
            } else {
                machine.step(spawned(generation + 1, 100 + generation as u32), now);
            }
        }
        assert_eq!(machine.state(), ServiceState::Failed);
        assert_eq!(
            machine.failure(),
            Some("2 failures within 1m (2 unhealthy)")
        );
    }

    #[test]
    fn an_unhealthy_instance_that_exits_cleanly_on_sigterm_is_still_restarted() {
        // Regression: a server draining gracefully exits 0 on SIGTERM, and on-failure
        // took that for success: the service stayed down as `completed`.
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            has_health: true,
            ..policy()
        });
        running(&mut machine, now);
        machine.step(healthy(1, true), now);
        machine.step(healthy(1, false), now);
        let effects = machine.step(exited(1, 0), now);
        assert!(actions(&effects).contains(&Effect::SetTimer {
            timer: Timer::RestartDelay { id: 1 },
            after: ms(100)
        }));
        assert_eq!(machine.state(), ServiceState::Backoff);
    }

    #[test]
    fn spawn_failure_counts_as_a_crash() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        machine.step(Input::Start, now);
        let effects = machine.step(
            Input::SpawnFailed {
                generation: g(1),
                reason: "port 7001 busy".into(),
                retry: true,
            },
            now,
        );
        assert_eq!(
            actions(&effects),
            vec![Effect::SetTimer {
                timer: Timer::RestartDelay { id: 1 },
                after: ms(100)
            }]
        );
    }

    #[test]
    fn a_spawn_failure_that_retrying_cannot_fix_fails_at_once() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(policy());
        machine.step(Input::Start, now);
        let effects = machine.step(
            Input::SpawnFailed {
                generation: g(1),
                reason: "image missing".into(),
                retry: false,
            },
            now,
        );
        assert_eq!(actions(&effects), vec![]);
        assert_eq!(machine.state(), ServiceState::Failed);
        assert_eq!(machine.failure(), Some("image missing"));
    }

    #[test]
    fn start_after_failed_resets_the_crash_count() {
        let now = Instant::now();
        let mut machine = ServiceMachine::new(Policy {
            restart: RestartPolicy::Never,
            ..policy()
        });
        running(&mut machine, now);
        machine.step(exited(1, 1), now);
        assert_eq!(machine.state(), ServiceState::Failed);
        assert_eq!(
            actions(&machine.step(Input::Start, now)),
            vec![Effect::Spawn { generation: g(2) }]
        );
    }
}

#[cfg(test)]
mod properties;
