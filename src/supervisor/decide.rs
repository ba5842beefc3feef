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

use crate::event::{Generation, InstanceStatus, ServiceState, WaitCondition, WaitingFor};
use crate::manifest::{DependencyCondition, Manifest, ServiceSpec};

use super::graph::Graph;

/// Where a service stands in the supervisor's plan. One variant per phase, holding
/// what that phase needs, so that no impossible combination can be written down.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Not wanted: never selected, or stopped by the user.
    Unwanted,
    /// Wanted, not started yet: `blocked_on` (once known) does not hold.
    Waiting { blocked_on: Option<Blocker> },
    /// Wanted and started (`Start`, `Restart` or `Redeploy` sent). `seen` holds the
    /// generations of its dependencies when it was started, for `restart = true` edges.
    Launched { seen: BTreeMap<String, Generation> },
    /// Shutdown: `Stop` (or `Kill`) was sent.
    Stopping,
    /// `fleet reload` removed or changed it: `Stop` was sent; once it is idle it is
    /// dropped or replaced by its new definition.
    Replacing(Replacement),
}

impl Phase {
    /// The user wants the service to run.
    pub fn wanted(&self) -> bool {
        matches!(self, Phase::Waiting { .. } | Phase::Launched { .. })
    }

    /// The dependency generations seen at the last start, if it was started.
    pub fn seen(&self) -> BTreeMap<String, Generation> {
        match self {
            Phase::Launched { seen } => seen.clone(),
            _ => BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Replacement {
    Remove,
    Spec(Box<ServiceSpec>),
}

/// A dependency condition that does not hold: what the snapshot's `waiting_for` says.
pub type Blocker = WaitingFor;

/// What the supervisor knows of one service, as far as its decisions go.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub spec: Arc<ServiceSpec>,
    pub phase: Phase,
    /// The runner's last report.
    pub status: InstanceStatus,
    /// Nothing of the service runs and nothing is about to, by the runner's last
    /// report.
    pub idle: bool,
}

/// One thing to do. The supervisor applies them in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Every dependency holds: send `Start`, remembering the dependencies' generations.
    Start {
        service: String,
        seen: BTreeMap<String, Generation>,
    },
    /// A `restart = true` dependency is back with a new generation: send `Restart`.
    Restart {
        service: String,
        seen: BTreeMap<String, Generation>,
    },
    /// Still waiting, on something new: record it and say so.
    Wait { service: String, blocker: Blocker },
    /// Shutdown: no dependent runs any more, so this one stops.
    Stop { service: String },
    /// After a reload its old instance is gone: drop it or start its new definition.
    Replace { service: String },
}

/// Decides what may start, restart, stop or be replaced now.
pub fn reconcile(
    slots: &BTreeMap<String, SlotState>,
    graph: &Graph,
    shutting_down: bool,
) -> Vec<Decision> {
    if shutting_down {
        return shutdown(slots, graph);
    }
    let mut decisions: Vec<Decision> = slots
        .iter()
        .filter(|(_, slot)| matches!(slot.phase, Phase::Replacing(_)) && slot.idle)
        .map(|(name, _)| Decision::Replace {
            service: name.clone(),
        })
        .collect();
    for (name, slot) in slots {
        match &slot.phase {
            Phase::Waiting { blocked_on } => match unmet_dependency(&slot.spec, slots) {
                None => decisions.push(Decision::Start {
                    service: name.clone(),
                    seen: dependency_generations(&slot.spec, slots),
                }),
                Some(blocker) if blocked_on.as_ref() != Some(&blocker) => {
                    decisions.push(Decision::Wait {
                        service: name.clone(),
                        blocker,
                    })
                }
                Some(_) => {}
            },
            Phase::Launched { seen } => {
                let came_back = dependency_restarts(&slot.spec, seen, slots);
                if !came_back.is_empty() && unmet_dependency(&slot.spec, slots).is_none() {
                    let mut seen = seen.clone();
                    seen.extend(came_back);
                    decisions.push(Decision::Restart {
                        service: name.clone(),
                        seen,
                    });
                }
            }
            Phase::Unwanted | Phase::Stopping | Phase::Replacing(_) => {}
        }
    }
    decisions
}

/// Reverse dependency order, as it happens: a service stops once every dependent is
/// idle (stopped, or never started).
fn shutdown(slots: &BTreeMap<String, SlotState>, graph: &Graph) -> Vec<Decision> {
    slots
        .iter()
        .filter(|(_, slot)| slot.phase != Phase::Stopping)
        .filter(|(name, _)| {
            graph
                .dependents(name)
                .iter()
                .all(|dependent| slots.get(dependent).is_none_or(|slot| slot.idle))
        })
        .map(|(name, _)| Decision::Stop {
            service: name.clone(),
        })
        .collect()
}

/// The first dependency whose condition does not hold.
pub fn unmet_dependency(
    spec: &ServiceSpec,
    slots: &BTreeMap<String, SlotState>,
) -> Option<Blocker> {
    spec.depends_on.iter().find_map(|dependency| {
        let state = slots.get(&dependency.service)?.status.state;
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

/// The current generation of each dependency.
fn dependency_generations(
    spec: &ServiceSpec,
    slots: &BTreeMap<String, SlotState>,
) -> BTreeMap<String, Generation> {
    spec.depends_on
        .iter()
        .map(|dependency| {
            let generation = slots
                .get(&dependency.service)
                .map(|slot| slot.status.generation)
                .unwrap_or_default();
            (dependency.service.clone(), generation)
        })
        .collect()
}

/// Dependencies with `restart = true` that are ready again with a generation other
/// than the one seen when this service started.
fn dependency_restarts(
    spec: &ServiceSpec,
    seen: &BTreeMap<String, Generation>,
    slots: &BTreeMap<String, SlotState>,
) -> Vec<(String, Generation)> {
    spec.depends_on
        .iter()
        .filter(|dependency| dependency.restart)
        .filter_map(|dependency| {
            let status = &slots.get(&dependency.service)?.status;
            let seen = seen.get(&dependency.service).copied().unwrap_or_default();
            (status.generation != seen && status.state.is_ready())
                .then(|| (dependency.service.clone(), status.generation))
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
    pub fn new(slots: &BTreeMap<String, SlotState>, manifest: &Manifest) -> ReloadDiff {
        let mut diff = ReloadDiff::default();
        for spec in &manifest.services {
            match slots.get(&spec.name) {
                None => diff.added.push(spec.name.clone()),
                Some(slot) if *slot.spec != *spec => diff.changed.push(spec.name.clone()),
                Some(_) => {}
            }
        }
        diff.removed = slots
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

#[cfg(test)]
mod tests;
