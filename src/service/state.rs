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

use std::time::Instant;

use crate::event::{EventKind, ExitStatus, Generation, ProbeCause, ServiceState};
use crate::manifest::{RedeployStrategy, RestartPolicy};

use super::backoff::{restart_delay, CrashWindow, Failure, STABLE_UPTIME};

mod types;

pub use types::{BuildId, Effect, Input, Policy, Timer};
use types::{
    BuildPurpose, BuildRun, Health, Instance, Outage, Outcome, Phase, Retiring, StopReason,
};

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
    /// A build ahead of the start succeeded: the next `Start` spawns without building.
    prebuilt: bool,
    consecutive_crashes: u32,
    crashes: CrashWindow,
    restarts: u32,
    /// The Docker engine cannot be reached (container services only).
    outage: Option<Outage>,
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
            prebuilt: false,
            consecutive_crashes: 0,
            crashes: CrashWindow::default(),
            restarts: 0,
            outage: None,
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
        if let Some(outage) = &self.outage {
            // What runs in the engine cannot be seen, and what is due cannot start.
            let unseen = self
                .active
                .as_ref()
                .is_some_and(|active| active.container.is_some());
            if unseen || (outage.start_held && self.wants_up()) {
                return ServiceState::Unknown;
            }
        }
        if let Some(active) = &self.active {
            // Asked for but not spawned yet: nothing runs until the runtime says so.
            let spawned = active.pid.is_some() || active.container.is_some();
            return match (active.health, self.policy.has_health) {
                (_, false) if !spawned => ServiceState::Starting,
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
            Input::Prebuild => self.on_prebuild(&mut effects),
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
            Input::EngineLost { reason } => self.on_engine_lost(reason, now, &mut effects),
            Input::EngineBack => self.on_engine_back(now, &mut effects),
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
        if let Phase::Building(run) = &mut self.phase
            && run.purpose == BuildPurpose::Ahead
        {
            // The build ahead now leads to the start.
            run.purpose = BuildPurpose::Start;
            return;
        }
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
        } else if self.policy.has_build && !std::mem::take(&mut self.prebuilt) {
            self.start_build(BuildPurpose::Start, effects);
        } else {
            self.phase = Phase::Up;
            self.spawn_active(now, effects);
        }
    }

    /// Builds ahead of a start that waits for its dependencies; again (the source
    /// changed) if a build ahead is running or done.
    fn on_prebuild(&mut self, effects: &mut Vec<Effect>) {
        let idle = self.active.is_none() && self.candidate.is_none() && self.retiring.is_empty();
        if !self.policy.has_build || !idle {
            return;
        }
        match self.phase {
            Phase::Building(run) if run.purpose == BuildPurpose::Ahead => {
                effects.push(Effect::CancelBuild { build: run.id });
                effects.push(Effect::Emit {
                    generation: self.generation(),
                    event: EventKind::BuildCancelled,
                });
            }
            Phase::Down => {}
            _ => return,
        }
        self.prebuilt = false;
        self.start_build(BuildPurpose::Ahead, effects);
    }

    fn on_stop(&mut self, kill: bool, effects: &mut Vec<Effect>) {
        // A stopped service is stopped, whatever it was before; what was built ahead
        // may be stale by the next start.
        self.prebuilt = false;
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
            let blind = self.outage.is_some();
            for retiring in &mut self.retiring {
                if !retiring.killed {
                    retiring.killed = true;
                    retiring.unconfirmed |= blind;
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
        self.prebuilt = false;
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
        effects.push(Effect::Build {
            build: id,
            shared: matches!(purpose, BuildPurpose::Start | BuildPurpose::Ahead),
        });
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
        if run.purpose == BuildPurpose::Ahead {
            // Still waiting for the start: down, with the result kept for it.
            self.phase = Phase::Down;
            self.last_build_failed = result.is_err();
            match result {
                Ok(()) => self.prebuilt = true,
                // The start builds again: it may have been fixed meanwhile.
                Err(reason) => effects.push(Effect::Emit {
                    generation: self.generation(),
                    event: EventKind::BuildFailed { reason },
                }),
            }
            return;
        }
        match result {
            Ok(()) => {
                self.last_build_failed = false;
                match run.purpose {
                    BuildPurpose::Ahead => {}
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
            RedeployStrategy::StartFirst if self.outage.is_some() => {
                // A new instance cannot start without the engine; the old one serves on.
                self.active = Some(active);
                effects.push(Effect::Emit {
                    generation: self.generation(),
                    event: EventKind::RedeployAborted {
                        reason: "the Docker engine is unreachable".into(),
                    },
                });
            }
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

    /// Spawns a new serving instance; the caller has set the phase. While the engine
    /// is away the start is held until it is back.
    fn spawn_active(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        if let Some(outage) = &mut self.outage {
            outage.start_held = true;
            return;
        }
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
            unconfirmed: self.outage.is_some(),
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
            let mut why = crate::event::describe_failures(
                count.total,
                count.unhealthy,
                count.not_ready,
                window_ms,
            );
            if let Some(error) = &spawn_error {
                why.push_str(&format!("; the last start failed: {error}"));
            }
            self.phase = Phase::Ended(Outcome::Failed(why));
            effects.push(Effect::Emit {
                generation,
                event: EventKind::GaveUp {
                    crashes: count.total,
                    window_ms,
                    unhealthy: count.unhealthy,
                    not_ready: count.not_ready,
                    start_error: spawn_error,
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
        // Stopping a container needs the engine: while it is away the verdict waits.
        if self.outage.is_none() {
            self.restart_if_unhealthy(effects);
        }
    }

    /// Liveness: an active instance that turned unhealthy is stopped, and restarted
    /// through the restart policy, when `restart_on_unhealthy` says so.
    fn restart_if_unhealthy(&mut self, effects: &mut Vec<Effect>) {
        let unhealthy = self
            .active
            .as_ref()
            .is_some_and(|active| active.health == Health::Unhealthy);
        if unhealthy
            && self.policy.restart_on_unhealthy
            && let Some(active) = self.active.take()
        {
            let failures = self.policy.probe_retries.max(1);
            self.retire(active, StopReason::Unhealthy { failures }, effects);
        }
    }

    /// The engine stopped answering: the container is neither seen nor reached until
    /// it is back. Nothing is stopped or restarted for it; exits still come only from
    /// the engine, once it reports them.
    fn on_engine_lost(&mut self, reason: String, now: Instant, effects: &mut Vec<Effect>) {
        if self.outage.is_some() {
            return;
        }
        self.outage = Some(Outage {
            since: now,
            start_held: false,
        });
        effects.push(Effect::Emit {
            generation: self.generation(),
            event: EventKind::EngineUnreachable { reason },
        });
    }

    /// The engine answers again (and has reported the exits it missed): what was asked
    /// of it meanwhile is asked again, a liveness verdict that waited is acted on, and
    /// a held start starts.
    fn on_engine_back(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let Some(outage) = self.outage.take() else {
            return;
        };
        let after_ms = now
            .saturating_duration_since(outage.since)
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        effects.push(Effect::Emit {
            generation: self.generation(),
            event: EventKind::EngineReachable { after_ms },
        });
        for retiring in &mut self.retiring {
            if !retiring.unconfirmed {
                continue;
            }
            retiring.unconfirmed = false;
            let generation = retiring.instance.generation;
            effects.push(if retiring.killed {
                Effect::Kill { generation }
            } else {
                Effect::Signal {
                    generation,
                    signal: self.policy.stop_signal,
                }
            });
        }
        self.restart_if_unhealthy(effects);
        let may_start = matches!(self.phase, Phase::Up | Phase::Building(_));
        if outage.start_held && may_start && self.active.is_none() {
            self.spawn_active(now, effects);
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
                unconfirmed: self.outage.is_some(),
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
                    retiring.unconfirmed |= self.outage.is_some();
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
mod properties;

#[cfg(test)]
mod tests;
