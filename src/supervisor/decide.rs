//! The supervisor's decisions, pure: which service starts, waits, restarts for a
//! dependency, stops during shutdown, or is swapped after a reload. No channels, no
//! IO, no clock: [`reconcile`] reads the slots and returns [`Decision`]s, which the
//! supervisor carries out (sending inputs to runners, announcing waits) before it
//! calls again. Tested as tables, like the per-service state machine.
//!
//! # Theory of operation
//! Each service has one [`Phase`] in the supervisor. A wanted service `Waiting` for
//! its dependencies is started once every condition holds; a `Launched` one with
//! `restart = true` edges is restarted when such a dependency comes back with a new
//! generation. During shutdown a service is stopped once every dependent is idle, so
//! services stop in reverse dependency order without an order being computed ahead:
//! the same rule also waits for a dependent that takes its time to stop.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::event::{
    Generation, InstanceStatus, ReplicaId, ServiceState, WaitCondition, WaitingFor,
};
use crate::manifest::{DependencyCondition, Manifest, ServiceSpec};

use super::graph::Graph;

/// Where a replica stands in the supervisor's plan. One variant per phase, holding
/// what that phase needs, so that no impossible combination can be written down.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Not wanted: never selected, stopped by the user, or scaled to zero.
    Unwanted,
    /// Wanted, not started yet: `blocked_on` (once known) does not hold.
    Waiting { blocked_on: Option<Blocker> },
    /// Wanted and started (`Start`, `Restart` or `Redeploy` sent). `seen` holds the
    /// generations of its dependencies' replicas when it was started, for
    /// `restart = true` edges.
    Launched { seen: Seen },
    /// Shutdown: `Stop` (or `Kill`) was sent.
    Stopping,
    /// `fleet reload` (or `scale`) removed or changed it: `Stop` was sent; once it is
    /// idle it is dropped or replaced by its new definition.
    Replacing(Replacement),
}

/// Each dependency's replica generations, in replica order.
pub type Seen = BTreeMap<String, Vec<Generation>>;

impl Phase {
    /// The user wants the replica to run.
    pub fn wanted(&self) -> bool {
        matches!(self, Phase::Waiting { .. } | Phase::Launched { .. })
    }

    /// The dependency generations seen at the last start, if it was started.
    pub fn seen(&self) -> Seen {
        match self {
            Phase::Launched { seen } => seen.clone(),
            _ => BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Replacement {
    Remove,
    /// Start again with this definition.
    Spec(Box<ServiceSpec>),
    /// Take this definition but stay stopped: the replica was not wanted (stopped by
    /// the user, or of a profile that is off).
    Idle(Box<ServiceSpec>),
}

/// A dependency condition that does not hold: what the snapshot's `waiting_for` says.
pub type Blocker = WaitingFor;

/// What the supervisor knows of one replica, as far as its decisions go.
#[derive(Debug, Clone)]
pub struct SlotState {
    /// The service's spec (replica 1's: before ports move up by the replica index).
    pub spec: Arc<ServiceSpec>,
    pub phase: Phase,
    /// The runner's last report.
    pub status: InstanceStatus,
    /// Nothing of the replica runs and nothing is about to, by the runner's last
    /// report.
    pub idle: bool,
    /// Counts the runners this slot has had: a reload's replacement starts again at
    /// generation 1, and is still told apart from the instance it replaced.
    pub incarnation: u64,
}

impl SlotState {
    /// Leaving: a reload or a scale-down removes it once it has stopped.
    pub fn leaving(&self) -> bool {
        matches!(self.phase, Phase::Replacing(Replacement::Remove))
    }
}

pub type Slots = BTreeMap<ReplicaId, SlotState>;

/// One thing to do. The supervisor applies them in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Every dependency holds: send `Start`, remembering the dependencies' generations.
    Start { replica: ReplicaId, seen: Seen },
    /// A `restart = true` dependency is back with new generations: send `Restart`.
    Restart { replica: ReplicaId, seen: Seen },
    /// Still waiting, on something new: record it and say so.
    Wait {
        replica: ReplicaId,
        blocker: Blocker,
    },
    /// Shutdown: no dependent runs any more, so this one stops.
    Stop { replica: ReplicaId },
    /// After a reload or a scale-down its old instance is gone: drop it or start its
    /// new definition.
    Replace { replica: ReplicaId },
}

/// The replicas of `service` that are meant to stay (not being removed).
pub fn replicas_of<'a>(
    slots: &'a Slots,
    service: &'a str,
) -> impl Iterator<Item = (&'a ReplicaId, &'a SlotState)> + 'a {
    slots
        .range(ReplicaId::new(service, 0)..=ReplicaId::new(service, u32::MAX))
        .filter(|(_, slot)| !slot.leaving())
}

/// Decides what may start, restart, stop or be replaced now.
pub fn reconcile(slots: &Slots, graph: &Graph, shutting_down: bool) -> Vec<Decision> {
    if shutting_down {
        return shutdown(slots, graph);
    }
    let mut decisions: Vec<Decision> = slots
        .iter()
        .filter(|(_, slot)| matches!(slot.phase, Phase::Replacing(_)) && slot.idle)
        .map(|(id, _)| Decision::Replace {
            replica: id.clone(),
        })
        .collect();
    for (id, slot) in slots {
        match &slot.phase {
            Phase::Waiting { blocked_on } => {
                match unmet_dependency(&slot.spec, slots).or_else(|| unbuilt(id, slot, slots)) {
                    None => decisions.push(Decision::Start {
                        replica: id.clone(),
                        seen: dependency_generations(&slot.spec, slots),
                    }),
                    Some(blocker) if blocked_on.as_ref() != Some(&blocker) => {
                        decisions.push(Decision::Wait {
                            replica: id.clone(),
                            blocker,
                        })
                    }
                    Some(_) => {}
                }
            }
            Phase::Launched { seen } => {
                let came_back = dependency_restarts(&slot.spec, seen, slots);
                if !came_back.is_empty() && unmet_dependency(&slot.spec, slots).is_none() {
                    let mut seen = seen.clone();
                    seen.extend(came_back);
                    decisions.push(Decision::Restart {
                        replica: id.clone(),
                        seen,
                    });
                }
            }
            Phase::Unwanted | Phase::Stopping | Phase::Replacing(_) => {}
        }
    }
    decisions
}

/// Replica 1 runs a service's build for every replica: another replica of a service
/// with a build waits until replica 1 has built once (unless replica 1 is not
/// wanted, when it starts with what was built before).
fn unbuilt(id: &ReplicaId, slot: &SlotState, slots: &Slots) -> Option<Blocker> {
    if id.replica == 1 || !slot.spec.has_build() {
        return None;
    }
    let first = slots.get(&ReplicaId::new(id.service.clone(), 1))?;
    let built = first.status.generation.0 > 0 && first.status.state != ServiceState::Building;
    (first.phase.wanted() && !built).then(|| Blocker {
        service: ReplicaId::new(id.service.clone(), 1).to_string(),
        condition: WaitCondition::Built,
        failed: first.status.state == ServiceState::Failed,
    })
}

/// Reverse dependency order, as it happens: a replica stops once every replica of
/// every dependent is idle (stopped, or never started).
fn shutdown(slots: &Slots, graph: &Graph) -> Vec<Decision> {
    slots
        .iter()
        .filter(|(_, slot)| slot.phase != Phase::Stopping)
        .filter(|(id, _)| {
            graph.dependents(&id.service).iter().all(|dependent| {
                slots
                    .range(
                        ReplicaId::new(dependent.as_str(), 0)
                            ..=ReplicaId::new(dependent.as_str(), u32::MAX),
                    )
                    .all(|(_, slot)| slot.idle)
            })
        })
        .map(|(id, _)| Decision::Stop {
            replica: id.clone(),
        })
        .collect()
}

/// A dependency's state as its dependents see it: the least advanced of its
/// replicas (a condition holds when it holds for every replica), `Stopped` when it
/// has none.
pub fn service_state(slots: &Slots, service: &str) -> ServiceState {
    let mut states = replicas_of(slots, service)
        .filter(|(_, slot)| slot.phase != Phase::Unwanted || !slot.idle)
        .map(|(_, slot)| slot.status.state)
        .peekable();
    if states.peek().is_none() {
        return ServiceState::Stopped;
    }
    let mut least = ServiceState::Completed;
    for state in states {
        if state == ServiceState::Failed {
            return ServiceState::Failed;
        }
        if readiness(state) < readiness(least) {
            least = state;
        }
    }
    least
}

/// How far along a state is, for [`service_state`]: completed, then ready, then
/// up, then not up.
fn readiness(state: ServiceState) -> u8 {
    match state {
        ServiceState::Completed => 3,
        ServiceState::Healthy | ServiceState::Running => 2,
        _ if state.is_up() => 1,
        _ => 0,
    }
}

/// The first dependency whose condition does not hold.
pub fn unmet_dependency(spec: &ServiceSpec, slots: &Slots) -> Option<Blocker> {
    spec.depends_on.iter().find_map(|dependency| {
        let has_slots = replicas_of(slots, &dependency.service).next().is_some();
        if !has_slots {
            return None;
        }
        let state = service_state(slots, &dependency.service);
        let holds = match dependency.condition {
            DependencyCondition::Started => state.is_up() || state == ServiceState::Completed,
            DependencyCondition::Healthy => matches!(
                state,
                ServiceState::Healthy | ServiceState::Running | ServiceState::Completed
            ),
            DependencyCondition::Completed => state == ServiceState::Completed,
        };
        (!holds).then(|| Blocker {
            service: dependency.service.clone(),
            condition: match dependency.condition {
                DependencyCondition::Started => WaitCondition::Started,
                DependencyCondition::Healthy => WaitCondition::Healthy,
                DependencyCondition::Completed => WaitCondition::Completed,
            },
            failed: state == ServiceState::Failed,
        })
    })
}

/// The current generation of each dependency's replicas.
fn dependency_generations(spec: &ServiceSpec, slots: &Slots) -> Seen {
    spec.depends_on
        .iter()
        .map(|dependency| {
            let generations = replicas_of(slots, &dependency.service)
                .map(|(_, slot)| slot.status.generation)
                .collect();
            (dependency.service.clone(), generations)
        })
        .collect()
}

/// Dependencies with `restart = true` that are ready again, every replica with a
/// generation other than the one seen when this service started: a dependency
/// redeployed or restarted whole, not one replica that crashed.
fn dependency_restarts(
    spec: &ServiceSpec,
    seen: &Seen,
    slots: &Slots,
) -> Vec<(String, Vec<Generation>)> {
    spec.depends_on
        .iter()
        .filter(|dependency| dependency.restart)
        .filter_map(|dependency| {
            let current: Vec<Generation> = replicas_of(slots, &dependency.service)
                .map(|(_, slot)| slot.status.generation)
                .collect();
            let before = seen.get(&dependency.service)?;
            let replaced = !current.is_empty()
                && current.len() == before.len()
                && current.iter().zip(before).all(|(now, then)| now != then);
            let ready = service_state(slots, &dependency.service).is_ready();
            (replaced && ready).then(|| (dependency.service.clone(), current))
        })
        .collect()
}

/// What `fleet reload` changes: specs are compared whole, with `!=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl ReloadDiff {
    /// `running` holds the spec each service runs now. A change of `replicas` alone
    /// is not a change: it scales the service, and nothing restarts.
    pub fn new(running: &BTreeMap<String, Arc<ServiceSpec>>, manifest: &Manifest) -> ReloadDiff {
        let mut diff = ReloadDiff::default();
        for spec in &manifest.services {
            match running.get(&spec.name) {
                None => diff.added.push(spec.name.clone()),
                Some(old) if !same_but_count(old, spec) => diff.changed.push(spec.name.clone()),
                Some(_) => {}
            }
        }
        diff.removed = running
            .keys()
            .filter(|name| manifest.service(name).is_none())
            .cloned()
            .collect();
        diff
    }

    /// "added: a; changed: b", or "no changes".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what}: {}", names.join(", ")))
        .collect();
        if parts.is_empty() {
            "no changes".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// Two specs equal but for their replica count.
fn same_but_count(old: &ServiceSpec, new: &ServiceSpec) -> bool {
    ServiceSpec {
        replicas: new.replicas,
        ..old.clone()
    } == *new
}

#[cfg(test)]
mod tests;
