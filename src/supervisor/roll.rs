//! Rolling replacement of a replicated service, one replica at a time, pure: the
//! supervisor asks [`Roll::advance`] what to do after every change, and tells it
//! about failures with [`Roll::fail`].
//!
//! # Theory of operation
//! A roll (Swarm's `update_config` with parallelism 1 and `failure_action: pause`)
//! replaces replicas in order. Each step sends one replica its redeploy (or, for a
//! reload, its new definition) and waits until that replica serves again with a new
//! instance: another generation, or another runner, and ready. The replica's own
//! strategy decides how: start-first starts the new instance beside the old and
//! retires the old once the new is healthy; stop-first stops the old first. A step
//! that fails (the build, the new instance exits, never gets ready) halts the roll:
//! the replicas not reached yet keep the old version and keep serving.
//!
//! Replica 1 goes first: it runs the service's build, which the others then use.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::{Generation, ReplicaId};
use crate::manifest::ServiceSpec;

use super::decide::{Phase, Slots};

/// What a roll replaces replicas with.
#[derive(Debug, Clone, PartialEq)]
pub enum RollKind {
    /// A redeploy: build (replica 1) and replace with the same definition.
    Redeploy,
    /// `fleet reload` changed the definition: each replica is stopped and started
    /// again with it.
    Reload(Arc<ServiceSpec>),
}

#[derive(Debug, Clone, PartialEq)]
struct Step {
    replica: u32,
    /// The slot's runner and generation when the step began.
    from: (u64, Generation),
    failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Roll {
    pub service: String,
    pub kind: RollKind,
    pending: VecDeque<u32>,
    current: Option<Step>,
    replaced: Vec<u32>,
}

/// What the supervisor does next for a roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollAction {
    /// Send this replica its redeploy or its new definition.
    Replace { replica: u32 },
    /// The current step is under way.
    Wait,
    /// Every replica was replaced.
    Finished { replaced: Vec<u32> },
    /// A step failed: the roll stops here, `untouched` replicas keep the old version.
    Halted {
        replica: u32,
        reason: String,
        untouched: Vec<u32>,
    },
}

impl Roll {
    pub fn new(service: &str, kind: RollKind, replicas: impl IntoIterator<Item = u32>) -> Roll {
        let mut pending: Vec<u32> = replicas.into_iter().collect();
        pending.sort_unstable();
        pending.dedup();
        Roll {
            service: service.to_string(),
            kind,
            pending: pending.into(),
            current: None,
            replaced: Vec::new(),
        }
    }

    /// The replica being replaced now.
    pub fn current(&self) -> Option<u32> {
        self.current.as_ref().map(|step| step.replica)
    }

    /// How many replicas the roll covers in all.
    pub fn total(&self) -> usize {
        self.replaced.len() + usize::from(self.current.is_some()) + self.pending.len()
    }

    /// Position of the current step, 1-based.
    pub fn position(&self) -> usize {
        self.replaced.len() + 1
    }

    /// The current step's replica failed: its build, its new instance, or its start.
    /// `generation` is the generation the news is about: news of the instance the
    /// step began with (its routine exit) is not a failure of the step.
    pub fn fail(&mut self, replica: u32, generation: Generation, incarnation: u64, reason: String) {
        if let Some(step) = self.current.as_mut().filter(|step| step.replica == replica)
            && (incarnation, generation) != step.from
            && step.failure.is_none()
        {
            step.failure = Some(reason);
        }
    }

    /// A build failure is news about the instance that still serves: it fails the
    /// step whatever the generation.
    pub fn fail_build(&mut self, replica: u32, reason: String) {
        if let Some(step) = self.current.as_mut().filter(|step| step.replica == replica)
            && step.failure.is_none()
        {
            step.failure = Some(reason);
        }
    }

    /// What to do now, given the replicas' slots.
    pub fn advance(&mut self, slots: &Slots) -> RollAction {
        loop {
            if let Some(step) = &mut self.current {
                if let Some(reason) = step.failure.take() {
                    let replica = step.replica;
                    self.current = None;
                    return RollAction::Halted {
                        replica,
                        reason,
                        untouched: self.pending.drain(..).collect(),
                    };
                }
                let id = ReplicaId::new(self.service.as_str(), step.replica);
                match slots.get(&id) {
                    // Scaled away meanwhile: nothing left to replace.
                    None => self.current = None,
                    Some(slot) if slot.leaving() => self.current = None,
                    // Not wanted (stopped, or off by profile) and done with its new
                    // definition: nothing to wait for.
                    Some(slot)
                        if matches!(slot.phase, Phase::Unwanted)
                            && slot.idle
                            && (slot.incarnation, slot.status.generation) != step.from =>
                    {
                        self.replaced.push(step.replica);
                        self.current = None;
                    }
                    Some(slot) if matches!(slot.phase, Phase::Unwanted) && slot.idle => {
                        // Stopped by the user meanwhile: skipped.
                        self.current = None;
                    }
                    Some(slot) => {
                        let now = (slot.incarnation, slot.status.generation);
                        let serving = slot.status.state.is_ready()
                            && !matches!(slot.phase, Phase::Replacing(_));
                        if now != step.from && serving {
                            self.replaced.push(step.replica);
                            self.current = None;
                        } else {
                            return RollAction::Wait;
                        }
                    }
                }
                continue;
            }
            let Some(replica) = self.pending.pop_front() else {
                return RollAction::Finished {
                    replaced: self.replaced.clone(),
                };
            };
            let id = ReplicaId::new(self.service.as_str(), replica);
            let Some(slot) = slots.get(&id).filter(|slot| !slot.leaving()) else {
                continue;
            };
            self.current = Some(Step {
                replica,
                from: (slot.incarnation, slot.status.generation),
                failure: None,
            });
            return RollAction::Replace { replica };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::{InstanceStatus, ServiceState};
    use crate::supervisor::decide::{Replacement, SlotState};

    fn spec() -> Arc<ServiceSpec> {
        let manifest = crate::manifest::parse(
            std::path::Path::new("/tmp/fleet.toml"),
            "[services.web]\ncommand = \"web\"\nreplicas = 3\nsocket = 8080\nhealth = { tcp = 8080 }\n",
        );
        match manifest {
            Ok(manifest) => Arc::new(manifest.services[0].clone()),
            Err(err) => panic!("{}", err.render(false)),
        }
    }

    fn fleet(states: &[(ServiceState, u64)]) -> Slots {
        let spec = spec();
        states
            .iter()
            .enumerate()
            .map(|(index, (state, generation))| {
                let status = InstanceStatus {
                    state: *state,
                    generation: Generation(*generation),
                    ..InstanceStatus::stopped(Vec::new())
                };
                let slot = SlotState {
                    spec: spec.clone(),
                    phase: Phase::Launched {
                        seen: BTreeMap::new(),
                    },
                    status,
                    idle: false,
                    incarnation: 1,
                };
                (ReplicaId::new("web", index as u32 + 1), slot)
            })
            .collect()
    }

    fn set(slots: &mut Slots, replica: u32, state: ServiceState, generation: u64) {
        let slot = slots
            .get_mut(&ReplicaId::new("web", replica))
            .expect("the replica exists");
        slot.status.state = state;
        slot.status.generation = Generation(generation);
    }

    use ServiceState::{Healthy, Starting};

    #[test]
    fn replicas_are_replaced_one_at_a_time_in_order() {
        let mut slots = fleet(&[(Healthy, 1), (Healthy, 1), (Healthy, 1)]);
        let mut roll = Roll::new("web", RollKind::Redeploy, [3, 1, 2]);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 1 });
        // Building, then a candidate beside the old instance: nothing changes yet.
        assert_eq!(roll.advance(&slots), RollAction::Wait);
        set(&mut slots, 1, Healthy, 2);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 2 });
        // A new generation that is not ready yet (stop-first) is not done.
        set(&mut slots, 2, Starting, 2);
        assert_eq!(roll.advance(&slots), RollAction::Wait);
        set(&mut slots, 2, Healthy, 2);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 3 });
        set(&mut slots, 3, Healthy, 2);
        assert_eq!(
            roll.advance(&slots),
            RollAction::Finished {
                replaced: vec![1, 2, 3]
            }
        );
    }

    #[test]
    fn a_failed_step_halts_the_roll_and_leaves_the_rest_untouched() {
        let mut slots = fleet(&[(Healthy, 1), (Healthy, 1), (Healthy, 1)]);
        let mut roll = Roll::new("web", RollKind::Redeploy, [1, 2, 3]);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 1 });
        set(&mut slots, 1, Healthy, 2);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 2 });
        // The old instance's routine exit is not the step's failure ...
        roll.fail(2, Generation(1), 1, "exited with code 0".into());
        assert_eq!(roll.advance(&slots), RollAction::Wait);
        // ... the new instance's is.
        roll.fail(
            2,
            Generation(2),
            1,
            "new instance exited with code 1".into(),
        );
        assert_eq!(
            roll.advance(&slots),
            RollAction::Halted {
                replica: 2,
                reason: "new instance exited with code 1".into(),
                untouched: vec![3],
            }
        );
        assert_eq!(
            roll.advance(&slots),
            RollAction::Finished { replaced: vec![1] }
        );
    }

    #[test]
    fn a_failed_build_halts_before_any_replica_changes() {
        let slots = fleet(&[(Healthy, 1), (Healthy, 1)]);
        let mut roll = Roll::new("web", RollKind::Redeploy, [1, 2]);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 1 });
        roll.fail_build(2, "not the current step".into());
        assert_eq!(roll.advance(&slots), RollAction::Wait);
        roll.fail_build(1, "build exited with code 101".into());
        assert_eq!(
            roll.advance(&slots),
            RollAction::Halted {
                replica: 1,
                reason: "build exited with code 101".into(),
                untouched: vec![2],
            }
        );
    }

    #[test]
    fn a_reload_step_is_done_when_a_new_runner_serves() {
        let mut slots = fleet(&[(Healthy, 4), (Healthy, 4)]);
        let mut roll = Roll::new("web", RollKind::Reload(spec()), [1, 2]);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 1 });
        let first = slots.get_mut(&ReplicaId::new("web", 1)).expect("replica 1");
        first.phase = Phase::Replacing(Replacement::Spec(Box::new((*spec()).clone())));
        first.status.state = ServiceState::Stopped;
        assert_eq!(roll.advance(&slots), RollAction::Wait);
        // The replacement runner starts over at generation 1, a new incarnation.
        first_is_new(&mut slots, Starting);
        assert_eq!(roll.advance(&slots), RollAction::Wait);
        first_is_new(&mut slots, Healthy);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 2 });
    }

    fn first_is_new(slots: &mut Slots, state: ServiceState) {
        let first = slots.get_mut(&ReplicaId::new("web", 1)).expect("replica 1");
        first.phase = Phase::Launched {
            seen: BTreeMap::new(),
        };
        first.incarnation = 2;
        first.status.state = state;
        first.status.generation = Generation(1);
    }

    #[test]
    fn replicas_scaled_away_are_skipped() {
        let mut slots = fleet(&[(Healthy, 1), (Healthy, 1), (Healthy, 1)]);
        let mut roll = Roll::new("web", RollKind::Redeploy, [1, 2, 3]);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 1 });
        slots.remove(&ReplicaId::new("web", 2));
        if let Some(slot) = slots.get_mut(&ReplicaId::new("web", 3)) {
            slot.phase = Phase::Replacing(Replacement::Remove);
        }
        set(&mut slots, 1, Healthy, 2);
        assert_eq!(
            roll.advance(&slots),
            RollAction::Finished { replaced: vec![1] }
        );
    }

    #[test]
    fn a_stopped_replica_takes_its_new_definition_without_holding_the_roll() {
        let mut slots = fleet(&[(Healthy, 1), (ServiceState::Stopped, 1)]);
        if let Some(slot) = slots.get_mut(&ReplicaId::new("web", 2)) {
            slot.phase = Phase::Unwanted;
            slot.idle = true;
        }
        let mut roll = Roll::new("web", RollKind::Reload(spec()), [2, 1]);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 1 });
        first_is_new(&mut slots, Healthy);
        assert_eq!(roll.advance(&slots), RollAction::Replace { replica: 2 });
        // Its runner was swapped (a new incarnation) and it stays stopped: done.
        if let Some(slot) = slots.get_mut(&ReplicaId::new("web", 2)) {
            slot.incarnation = 2;
            slot.status.generation = Generation(0);
        }
        assert_eq!(
            roll.advance(&slots),
            RollAction::Finished {
                replaced: vec![1, 2]
            }
        );
    }
}
