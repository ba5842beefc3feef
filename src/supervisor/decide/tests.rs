//! Decision tables: a fleet described in TOML, the runners' states set by hand, and
//! the decisions pinned.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::*;

/// The test fleet: `gateway` needs `users` healthy (and restarts with it); `users`
/// needs the one-shot `migrate` completed and `db` healthy; `cache` stands alone.
const FLEET: &str = r#"
[services.db]
command = "db"
health = { tcp = 5432 }

[services.migrate]
command = "migrate"
restart = "never"
depends_on = { db = "healthy" }

[services.users]
command = "users"
depends_on = { db = "healthy", migrate = "completed" }
health = { tcp = 8080 }

[services.gateway]
command = "gateway"
depends_on = { users = { condition = "healthy", restart = true } }

[services.cache]
command = "cache"
"#;

fn manifest(text: &str) -> Manifest {
    match crate::manifest::parse(Path::new("/tmp/fleet.toml"), text) {
        Ok(manifest) => manifest,
        Err(err) => panic!("the test manifest is invalid: {}", err.render(false)),
    }
}

fn status(state: ServiceState, generation: u64) -> InstanceStatus {
    InstanceStatus {
        state,
        pid: state.is_up().then_some(1000 + generation as u32),
        generation: Generation(generation),
        ..InstanceStatus::stopped(Vec::new())
    }
}

/// Whether a runner in this state reports itself idle.
fn idle(state: ServiceState) -> bool {
    !state.is_up() && state != ServiceState::Stopping
}

struct Fleet {
    graph: Graph,
    slots: Slots,
}

impl Fleet {
    /// Every service wanted and waiting, as `fleet up` leaves them.
    fn up() -> Fleet {
        let manifest = manifest(FLEET);
        let slots = manifest
            .services
            .iter()
            .map(|spec| {
                let slot = SlotState {
                    spec: Arc::new(spec.clone()),
                    phase: Phase::Waiting { blocked_on: None },
                    status: status(ServiceState::Stopped, 0),
                    idle: true,
                    incarnation: 1,
                };
                (key(&spec.name), slot)
            })
            .collect();
        Fleet {
            graph: Graph::new(&manifest),
            slots,
        }
    }

    fn set(&mut self, service: &str, state: ServiceState, generation: u64) -> &mut Fleet {
        if let Some(slot) = self.slots.get_mut(&key(service)) {
            slot.status = status(state, generation);
            slot.idle = idle(state);
        }
        self
    }

    /// Each service's spec, as the supervisor keeps them for a reload.
    fn specs(&self) -> BTreeMap<String, Arc<crate::manifest::ServiceSpec>> {
        self.slots
            .iter()
            .map(|(id, slot)| (id.service.clone(), slot.spec.clone()))
            .collect()
    }

    fn decide(&self) -> Vec<Decision> {
        reconcile(&self.slots, &self.graph, false)
    }

    fn shutdown(&self) -> Vec<Decision> {
        reconcile(&self.slots, &self.graph, true)
    }

    /// Carries decisions out the way the supervisor does (the phase part of it).
    fn apply(&mut self, decisions: &[Decision]) {
        for decision in decisions {
            match decision {
                Decision::Start { replica, seen } | Decision::Restart { replica, seen } => {
                    if let Some(slot) = self.slots.get_mut(replica) {
                        slot.phase = Phase::Launched { seen: seen.clone() };
                    }
                }
                Decision::Wait { replica, blocker } => {
                    if let Some(slot) = self.slots.get_mut(replica) {
                        slot.phase = Phase::Waiting {
                            blocked_on: Some(blocker.clone()),
                        };
                    }
                }
                Decision::Stop { replica } => {
                    if let Some(slot) = self.slots.get_mut(replica) {
                        slot.phase = Phase::Stopping;
                    }
                }
                Decision::Replace { replica } => {
                    self.slots.remove(replica);
                }
            }
        }
    }
}

/// `web` is replica 1 of `web`, `web.2` replica 2.
fn key(name: &str) -> ReplicaId {
    match name.rsplit_once('.') {
        Some((service, number)) => ReplicaId::new(service, number.parse().unwrap_or(1)),
        None => ReplicaId::new(name, 1),
    }
}

fn name(id: &ReplicaId) -> String {
    id.file_name()
}

fn started(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .filter_map(|decision| match decision {
            Decision::Start { replica, .. } => Some(name(replica)),
            _ => None,
        })
        .collect()
}

fn waits(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .filter_map(|decision| match decision {
            Decision::Wait { replica, blocker } => Some(format!("{}: {blocker}", name(replica))),
            _ => None,
        })
        .collect()
}

fn stopped(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .filter_map(|decision| match decision {
            Decision::Stop { replica } => Some(name(replica)),
            _ => None,
        })
        .collect()
}

#[test]
fn services_start_as_their_conditions_come_to_hold() {
    let mut fleet = Fleet::up();
    let first = fleet.decide();
    assert_eq!(started(&first), vec!["cache", "db"]);
    assert_eq!(
        waits(&first),
        vec![
            "gateway: users (healthy)",
            "migrate: db (healthy)",
            "users: db (healthy)",
        ]
    );
    fleet.apply(&first);
    // Nothing changed: no new decision, and no wait announced twice.
    assert_eq!(fleet.decide(), vec![]);

    fleet.set("db", ServiceState::Starting, 1);
    assert_eq!(fleet.decide(), vec![], "starting is not healthy");
    fleet.set("db", ServiceState::Healthy, 1);
    let next = fleet.decide();
    assert_eq!(started(&next), vec!["migrate"]);
    assert_eq!(waits(&next), vec!["users: migrate (completed)"]);
    fleet.apply(&next);

    fleet.set("migrate", ServiceState::Running, 1);
    assert_eq!(fleet.decide(), vec![]);
    fleet.set("migrate", ServiceState::Completed, 1);
    let next = fleet.decide();
    assert_eq!(started(&next), vec!["users"]);
    let Some(Decision::Start { seen, .. }) = next.first() else {
        panic!("users did not start: {next:?}");
    };
    assert_eq!(seen.get("db"), Some(&vec![Generation(1)]));
    fleet.apply(&next);
    fleet.set("users", ServiceState::Healthy, 1);
    assert_eq!(started(&fleet.decide()), vec!["gateway"]);
}

#[test]
fn a_condition_lost_while_waiting_is_announced_but_a_launched_service_stays() {
    let mut fleet = Fleet::up();
    fleet.set("db", ServiceState::Healthy, 1);
    fleet.set("migrate", ServiceState::Completed, 1);
    let decisions = fleet.decide();
    fleet.apply(&decisions);
    assert!(matches!(
        fleet.slots[&key("users")].phase,
        Phase::Launched { .. }
    ));
    // db turns unhealthy: users (launched) is left alone; nothing restarts it.
    fleet.set("db", ServiceState::Unhealthy, 1);
    assert_eq!(fleet.decide(), vec![]);
    // A waiting service follows what it waits for: gateway now waits on users.
    fleet.set("users", ServiceState::Starting, 1);
    assert_eq!(fleet.decide(), vec![]);
}

#[test]
fn a_dependency_that_fails_keeps_its_dependent_waiting_and_says_so() {
    let mut fleet = Fleet::up();
    let decisions = fleet.decide();
    fleet.apply(&decisions);
    fleet.set("db", ServiceState::Failed, 3);
    let decisions = fleet.decide();
    assert_eq!(started(&decisions), Vec::<&str>::new());
    assert_eq!(
        waits(&decisions),
        vec![
            "migrate: db (healthy), which failed",
            "users: db (healthy), which failed",
        ]
    );
    let Some(Decision::Wait { blocker, .. }) = decisions.first() else {
        panic!("no wait: {decisions:?}");
    };
    assert!(blocker.failed);
}

#[test]
fn a_restart_edge_restarts_the_dependent_when_its_dependency_comes_back() {
    let mut fleet = Fleet::up();
    fleet.set("db", ServiceState::Healthy, 1);
    fleet.set("migrate", ServiceState::Completed, 1);
    fleet.set("users", ServiceState::Healthy, 1);
    let decisions = fleet.decide();
    fleet.apply(&decisions);
    assert_eq!(
        started(&decisions),
        vec!["cache", "db", "gateway", "migrate", "users"]
    );
    fleet.set("gateway", ServiceState::Running, 1);
    // users restarts: while it is down, gateway is not restarted yet.
    fleet.set("users", ServiceState::Backoff, 1);
    assert_eq!(fleet.decide(), vec![]);
    fleet.set("users", ServiceState::Starting, 2);
    assert_eq!(fleet.decide(), vec![]);
    // Back and healthy with generation 2: gateway (restart = true) restarts, once.
    fleet.set("users", ServiceState::Healthy, 2);
    let decisions = fleet.decide();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let Decision::Restart { replica, seen } = &decisions[0] else {
        panic!("gateway was not restarted: {decisions:?}");
    };
    assert_eq!(replica, &key("gateway"));
    assert_eq!(seen.get("users"), Some(&vec![Generation(2)]));
    fleet.apply(&decisions);
    assert_eq!(fleet.decide(), vec![]);
    // users without a restart edge to db: a db restart does not restart users.
    fleet.set("db", ServiceState::Healthy, 2);
    assert_eq!(fleet.decide(), vec![]);
}

#[test]
fn shutdown_stops_dependents_before_their_dependencies() {
    let mut fleet = Fleet::up();
    for service in ["db", "migrate", "users", "gateway", "cache"] {
        fleet.set(service, ServiceState::Running, 1);
        if let Some(slot) = fleet.slots.get_mut(&key(service)) {
            slot.phase = Phase::Launched {
                seen: BTreeMap::new(),
            };
        }
    }
    fleet.set("migrate", ServiceState::Completed, 1);
    let mut order = Vec::new();
    for _ in 0..10 {
        let decisions = fleet.shutdown();
        if decisions.is_empty() {
            break;
        }
        let names: Vec<String> = stopped(&decisions).iter().map(|s| s.to_string()).collect();
        fleet.apply(&decisions);
        // Nothing is stopped twice while it stops.
        assert_eq!(fleet.shutdown(), vec![]);
        for name in &names {
            fleet.set(name, ServiceState::Stopped, 1);
        }
        order.push(names);
    }
    assert_eq!(
        order,
        vec![
            vec!["cache", "gateway"],
            vec!["users"],
            // migrate (completed) is a dependent of db, but idle: both go together.
            vec!["db", "migrate"]
        ]
    );
}

#[test]
fn shutdown_waits_for_a_slow_dependent() {
    let mut fleet = Fleet::up();
    fleet.set("users", ServiceState::Stopping, 1);
    fleet.set("db", ServiceState::Running, 1);
    let decisions = fleet.shutdown();
    assert!(
        !stopped(&decisions).contains(&"db".to_string()),
        "{decisions:?}"
    );
    assert!(stopped(&decisions).contains(&"users".to_string()));
}

#[test]
fn reload_diff_names_added_removed_and_changed_services() {
    let fleet = Fleet::up();
    let changed = FLEET
        .replace("command = \"cache\"", "command = \"cache --big\"")
        .replace("[services.migrate]\ncommand = \"migrate\"\nrestart = \"never\"\ndepends_on = { db = \"healthy\" }\n", "")
        .replace(
            "depends_on = { db = \"healthy\", migrate = \"completed\" }",
            "depends_on = { db = \"healthy\" }",
        )
        + "\n[services.mail]\ncommand = \"mail\"\n";
    let diff = ReloadDiff::new(&fleet.specs(), &manifest(&changed));
    assert_eq!(
        diff,
        ReloadDiff {
            added: vec!["mail".into()],
            removed: vec!["migrate".into()],
            changed: vec!["users".into(), "cache".into()],
        }
    );
    assert_eq!(
        diff.describe(),
        "added: mail; removed: migrate; changed: users, cache"
    );
    assert_eq!(
        ReloadDiff::new(&fleet.specs(), &manifest(FLEET)).describe(),
        "no changes"
    );
}

#[test]
fn a_replaced_service_is_swapped_once_idle() {
    let mut fleet = Fleet::up();
    if let Some(slot) = fleet.slots.get_mut(&key("cache")) {
        slot.phase = Phase::Replacing(Replacement::Remove);
        slot.status = status(ServiceState::Stopping, 1);
        slot.idle = idle(ServiceState::Stopping);
    }
    assert!(!fleet.decide().contains(&Decision::Replace {
        replica: key("cache")
    }));
    fleet.set("cache", ServiceState::Stopped, 1);
    assert_eq!(
        fleet.decide().first(),
        Some(&Decision::Replace {
            replica: key("cache")
        })
    );
}

mod properties {
    //! Whatever the runners report, `reconcile` never starts a service whose
    //! dependencies do not hold, never stops one whose dependents still run, and
    //! decides at most once per service per pass.

    use proptest::prelude::*;

    use super::*;

    const STATES: [ServiceState; 11] = [
        ServiceState::Stopped,
        ServiceState::Waiting,
        ServiceState::Building,
        ServiceState::Starting,
        ServiceState::Running,
        ServiceState::Healthy,
        ServiceState::Unhealthy,
        ServiceState::Backoff,
        ServiceState::Stopping,
        ServiceState::Completed,
        ServiceState::Failed,
    ];

    fn phase(choice: u8) -> Phase {
        match choice % 4 {
            0 => Phase::Unwanted,
            1 => Phase::Waiting { blocked_on: None },
            2 => Phase::Launched {
                seen: BTreeMap::new(),
            },
            _ => Phase::Stopping,
        }
    }

    proptest! {
        #[test]
        fn decisions_respect_dependencies(
            rows in proptest::collection::vec((0usize..11, 0u8..4, 0u64..3), 5),
            shutting_down in any::<bool>(),
        ) {
            let mut fleet = Fleet::up();
            let names: Vec<String> = fleet.slots.keys().map(name).collect();
            for (name, (state, choice, generation)) in names.iter().zip(rows) {
                fleet.set(name, STATES[state], generation);
                if let Some(slot) = fleet.slots.get_mut(&key(name)) {
                    slot.phase = phase(choice);
                }
            }
            let decisions = reconcile(&fleet.slots, &fleet.graph, shutting_down);
            let mut decided = BTreeSet::new();
            for decision in &decisions {
                let replica = match decision {
                    Decision::Start { replica, .. }
                    | Decision::Restart { replica, .. }
                    | Decision::Wait { replica, .. }
                    | Decision::Stop { replica }
                    | Decision::Replace { replica } => replica,
                };
                let service = &replica.service;
                prop_assert!(decided.insert(replica.clone()), "{replica} decided twice");
                let slot = &fleet.slots[replica];
                match decision {
                    Decision::Start { .. } | Decision::Restart { .. } => {
                        prop_assert!(!shutting_down);
                        prop_assert_eq!(unmet_dependency(&slot.spec, &fleet.slots), None);
                    }
                    Decision::Stop { .. } => {
                        prop_assert!(shutting_down);
                        for dependent in fleet.graph.dependents(service) {
                            prop_assert!(fleet.slots[&key(dependent)].idle);
                        }
                    }
                    Decision::Wait { .. } | Decision::Replace { .. } => {
                        prop_assert!(!shutting_down);
                    }
                }
            }
        }
    }

    use std::collections::BTreeSet;
}

/// `web` has two replicas and a build; `api` needs it healthy; `edge` restarts with it.
const REPLICATED: &str = r#"
[services.web]
command = "web"
build = "make web"
socket = 8080
replicas = 2
health = { tcp = 8080 }

[services.api]
command = "api"
depends_on = { web = "healthy" }

[services.edge]
command = "edge"
depends_on = { web = { condition = "healthy", restart = true } }
"#;

fn replicated() -> Fleet {
    let manifest = manifest(REPLICATED);
    let mut slots = Slots::new();
    for spec in &manifest.services {
        for replica in 1..=spec.replicas {
            slots.insert(
                ReplicaId::new(spec.name.as_str(), replica),
                SlotState {
                    spec: Arc::new(spec.clone()),
                    phase: Phase::Waiting { blocked_on: None },
                    status: status(ServiceState::Stopped, 0),
                    idle: true,
                    incarnation: 1,
                },
            );
        }
    }
    Fleet {
        graph: Graph::new(&manifest),
        slots,
    }
}

#[test]
fn replica_1_builds_first_and_a_dependency_holds_when_every_replica_does() {
    let mut fleet = replicated();
    let first = fleet.decide();
    assert_eq!(started(&first), vec!["web"]);
    assert_eq!(
        waits(&first),
        vec![
            "api: web (healthy)",
            "edge: web (healthy)",
            "web.2: web.1 (built)",
        ]
    );
    fleet.apply(&first);
    fleet.set("web", ServiceState::Building, 0);
    assert_eq!(fleet.decide(), vec![]);
    // Built and starting: replica 2 starts with what it built.
    fleet.set("web", ServiceState::Starting, 1);
    let next = fleet.decide();
    assert_eq!(started(&next), vec!["web.2"]);
    fleet.apply(&next);
    // One healthy replica of two is not enough.
    fleet.set("web", ServiceState::Healthy, 1);
    fleet.set("web.2", ServiceState::Starting, 1);
    assert_eq!(fleet.decide(), vec![]);
    fleet.set("web.2", ServiceState::Healthy, 1);
    let next = fleet.decide();
    assert_eq!(started(&next), vec!["api", "edge"]);
    let Some(Decision::Start { seen, .. }) = next.first() else {
        panic!("api did not start: {next:?}");
    };
    assert_eq!(seen.get("web"), Some(&vec![Generation(1), Generation(1)]));
    fleet.apply(&next);
}

#[test]
fn a_restart_edge_fires_once_every_replica_was_replaced_not_when_one_crashes() {
    let mut fleet = replicated();
    fleet.set("web", ServiceState::Healthy, 1);
    fleet.set("web.2", ServiceState::Healthy, 1);
    let first = fleet.decide();
    fleet.apply(&first);
    fleet.set("api", ServiceState::Running, 1);
    fleet.set("edge", ServiceState::Running, 1);
    assert_eq!(fleet.decide(), vec![]);
    // web.2 crashes and comes back: edge keeps running.
    fleet.set("web.2", ServiceState::Backoff, 1);
    assert_eq!(fleet.decide(), vec![]);
    fleet.set("web.2", ServiceState::Healthy, 2);
    assert_eq!(fleet.decide(), vec![]);
    // A roll replaces web.1 too: now every replica is new, and edge restarts.
    fleet.set("web", ServiceState::Healthy, 2);
    let decisions = fleet.decide();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert!(
        matches!(&decisions[0], Decision::Restart { replica, .. } if *replica == key("edge")),
        "{decisions:?}"
    );
}
