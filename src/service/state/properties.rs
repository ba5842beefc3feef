//! Properties of the state machine under random input sequences: whatever arrives, in
//! whatever order (late exits, stale probe results, timers of instances long gone,
//! commands in the middle of a redeploy), the machine
//! - never spawns a new serving instance before the previous one is cleaned up,
//! - never signals, kills or cleans up a generation that is not alive,
//! - never acts on an input of a generation it already cleaned up,
//! - never starts an instance while the Docker engine is away,
//! - never loses a stop: after `Stop`, once the signalled instances exit, nothing runs
//!   and nothing is about to.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::manifest::BackoffSpec;

/// What the harness knows of the instances the machine asked for: the processes it
/// "runs" for the machine.
#[derive(Default)]
struct World {
    /// Spawned and not yet cleaned up.
    live: BTreeSet<Generation>,
    /// Cleaned up: every later input about them is stale.
    cleaned: BTreeSet<Generation>,
    /// Asked to spawn, `Spawned` not reported yet.
    pending_spawns: Vec<Generation>,
    /// Got a stop signal or a kill.
    signalled: BTreeSet<Generation>,
    builds: Vec<BuildId>,
    timers: Vec<Timer>,
    /// Every generation that was ever the serving one.
    served: BTreeSet<Generation>,
    /// The policy is stop-first: no two instances may ever overlap.
    stop_first: bool,
    /// The Docker engine is away: nothing may be started in it.
    engine_lost: bool,
}

impl World {
    fn known(&self) -> Vec<Generation> {
        self.live
            .iter()
            .chain(self.cleaned.iter())
            .chain(self.pending_spawns.iter())
            .copied()
            .collect()
    }
}

fn pick<T: Copy>(items: &[T], index: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[index as usize % items.len()])
}

/// One random step: what kind of input, which of the known things it is about, and a
/// flag (healthy or not, build ok or not, exit code 0 or not).
type Step = (u8, u8, bool);

fn input_for(world: &World, (kind, index, flag): Step) -> Option<Input> {
    let known = world.known();
    let exitable: Vec<Generation> = world
        .live
        .iter()
        .chain(world.cleaned.iter())
        .copied()
        .collect();
    Some(match kind % 14 {
        0 => Input::Start,
        12 => Input::Prebuild,
        1 => Input::Stop,
        2 => Input::Restart,
        3 => Input::Redeploy,
        4 | 5 => {
            let generation = pick(&world.pending_spawns, index)?;
            if flag {
                Input::Spawned {
                    generation,
                    pid: Some(1000 + generation.0 as u32),
                    container: None,
                }
            } else {
                Input::SpawnFailed {
                    generation,
                    reason: "no such file".into(),
                    retry: index % 4 != 0,
                }
            }
        }
        // A process exits only after its spawn was reported (the runner reports
        // `Spawned` before it waits for the exit), or long after (stale).
        6 | 7 => Input::Exited {
            generation: pick(&exitable, index)?,
            status: if flag {
                ExitStatus::Code(0)
            } else {
                ExitStatus::Signal(15)
            },
        },
        8 => Input::Health {
            generation: pick(&known, index)?,
            healthy: flag,
            reason: "probe".into(),
        },
        9 => Input::ProbeFailing {
            generation: pick(&known, index)?,
            reason: "connection refused".into(),
        },
        10 => Input::BuildFinished {
            build: pick(&world.builds, index)?,
            result: if flag { Ok(()) } else { Err("error".into()) },
        },
        11 => Input::Timer(pick(&world.timers, index)?),
        _ if flag => Input::EngineLost {
            reason: "connection refused".into(),
        },
        _ => Input::EngineBack,
    })
}

fn input_generation(input: &Input) -> Option<Generation> {
    match input {
        Input::Spawned { generation, .. }
        | Input::SpawnFailed { generation, .. }
        | Input::Exited { generation, .. }
        | Input::Health { generation, .. }
        | Input::ProbeFailing { generation, .. } => Some(*generation),
        Input::Timer(Timer::StopTimeout { generation })
        | Input::Timer(Timer::Stable { generation })
        | Input::Timer(Timer::StartTimeout { generation }) => Some(*generation),
        _ => None,
    }
}

/// Feeds one input, checks the effects against the world, and updates the world.
fn feed(machine: &mut ServiceMachine, world: &mut World, input: Input, now: Instant) {
    let stale = input_generation(&input).filter(|g| world.cleaned.contains(g));
    match input {
        Input::EngineLost { .. } => world.engine_lost = true,
        Input::EngineBack => world.engine_lost = false,
        _ => {}
    }
    let effects = machine.step(input.clone(), now);
    let spawned: Vec<Generation> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Spawn { generation } => Some(*generation),
            _ => None,
        })
        .collect();
    if let Some(generation) = stale {
        let acted: Vec<&Effect> = effects
            .iter()
            .filter(|effect| !matches!(effect, Effect::Emit { .. }))
            .collect();
        assert!(
            acted.is_empty(),
            "acted on {input:?} of generation {generation}, cleaned up already: {acted:?}"
        );
    }
    for effect in effects {
        match effect {
            Effect::Spawn { generation } => {
                assert!(
                    !world.known().contains(&generation),
                    "generation {generation} spawned twice"
                );
                assert!(
                    !world.engine_lost,
                    "generation {generation} spawned while the engine is away"
                );
                world.pending_spawns.push(generation);
            }
            Effect::Signal { generation, .. } | Effect::Kill { generation } => {
                assert!(
                    world.live.contains(&generation) || world.pending_spawns.contains(&generation),
                    "signalled generation {generation}, which is not alive"
                );
                world.signalled.insert(generation);
            }
            Effect::Cleanup { generation } => {
                assert!(
                    world.live.contains(&generation),
                    "cleaned up generation {generation}, which is not alive"
                );
                world.live.remove(&generation);
                world.cleaned.insert(generation);
            }
            Effect::SetTimer { timer, .. } => world.timers.push(timer),
            Effect::Build { build, .. } => world.builds.push(build),
            Effect::CancelBuild { .. } | Effect::Emit { .. } => {}
        }
    }
    if let Input::Spawned { generation, .. } = input
        && world.pending_spawns.contains(&generation)
    {
        world.pending_spawns.retain(|g| *g != generation);
        world.live.insert(generation);
    }
    if let Input::SpawnFailed { generation, .. } = input {
        // Nothing ran: the generation is over without a cleanup.
        if world.pending_spawns.contains(&generation) {
            world.pending_spawns.retain(|g| *g != generation);
            world.cleaned.insert(generation);
        }
    }
    // Stop-first: a new serving instance spawns only once every earlier one is
    // cleaned up (exited, and its leftovers killed), never beside it.
    if world.stop_first {
        for generation in spawned {
            let overlapping: Vec<Generation> = world
                .served
                .iter()
                .chain(world.live.iter())
                .filter(|g| **g != generation && !world.cleaned.contains(g))
                .copied()
                .collect();
            assert!(
                overlapping.is_empty(),
                "generation {generation} spawned while {overlapping:?} were not cleaned up"
            );
        }
    }
    // Any policy: a new serving instance never serves beside an earlier one that was
    // not told to stop.
    if let Some(pid) = machine.pid() {
        let serving = Generation(u64::from(pid) - 1000);
        if world.served.insert(serving) {
            let earlier: Vec<Generation> = world
                .served
                .iter()
                .filter(|g| **g != serving && world.live.contains(g))
                .filter(|g| !world.signalled.contains(g))
                .copied()
                .collect();
            assert!(
                earlier.is_empty(),
                "generation {serving} serves while {earlier:?} still serve unsignalled"
            );
        }
    }
}

fn policies() -> impl Strategy<Value = Policy> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
    )
        .prop_map(
            |(has_build, has_health, start_first, start_timeout, restart)| Policy {
                restart: [
                    RestartPolicy::Always,
                    RestartPolicy::OnFailure,
                    RestartPolicy::Never,
                ][restart as usize],
                max_restarts: 3,
                restart_window: Duration::from_secs(60),
                backoff: BackoffSpec {
                    initial: if has_build {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(100)
                    },
                    max: Duration::from_secs(1),
                },
                stop_signal: 15,
                stop_timeout: Duration::from_secs(1),
                has_build,
                has_health,
                restart_on_unhealthy: true,
                redeploy: if start_first {
                    RedeployStrategy::StartFirst
                } else {
                    RedeployStrategy::StopFirst
                },
                start_timeout: start_timeout.then_some(Duration::from_secs(2)),
                probe_retries: 3,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_keep_the_machine_safe(
        policy in policies(),
        steps in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<bool>()), 1..80),
    ) {
        let start = Instant::now();
        let mut world = World {
            stop_first: policy.redeploy == RedeployStrategy::StopFirst,
            ..World::default()
        };
        let mut machine = ServiceMachine::new(policy);
        for (index, step) in steps.into_iter().enumerate() {
            let now = start + Duration::from_millis(index as u64 * 50);
            if let Some(input) = input_for(&world, step) {
                feed(&mut machine, &mut world, input, now);
            }
        }
        // Never lose a stop: stop, then let every instance the machine signals exit
        // (and report every spawn it asked for), until nothing is left.
        let end = start + Duration::from_secs(3600);
        feed(&mut machine, &mut world, Input::Stop, end);
        for _ in 0..100 {
            if let Some(generation) = world.pending_spawns.first().copied() {
                let spawned = Input::Spawned {
                    generation,
                    pid: Some(1000 + generation.0 as u32),
                    container: None,
                };
                feed(&mut machine, &mut world, spawned, end);
                continue;
            }
            let Some(generation) = world.live.iter().next().copied() else {
                break;
            };
            prop_assert!(
                world.signalled.contains(&generation),
                "generation {} runs after Stop and was never signalled", generation
            );
            let exited = Input::Exited { generation, status: ExitStatus::Signal(15) };
            feed(&mut machine, &mut world, exited, end);
        }
        // Builds still pending finish (a cancelled one's result is ignored).
        for build in world.builds.clone() {
            feed(&mut machine, &mut world, Input::BuildFinished { build, result: Ok(()) }, end);
        }
        prop_assert!(world.live.is_empty(), "still running after Stop: {:?}", world.live);
        prop_assert!(world.pending_spawns.is_empty());
        prop_assert!(machine.is_idle(), "not idle after Stop: {:?}", machine);
        prop_assert_eq!(machine.state(), ServiceState::Stopped);
    }
}
