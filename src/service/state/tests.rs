//! Transition tables: each test feeds inputs and pins the effects and states.

use std::time::Duration;

use super::*;
use crate::manifest::BackoffSpec;

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
        start_error: None,
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
        vec![Effect::Build {
            build: 1,
            shared: true
        }]
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
        vec![Effect::Build {
            build: 3,
            shared: false
        }]
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
        vec![
            Effect::CancelBuild { build: 2 },
            Effect::Build {
                build: 3,
                shared: false
            }
        ]
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
                start_error: None,
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
fn a_service_that_never_gets_started_fails_naming_why() {
    // Regression: a replica that could not be spawned (fleet out of file descriptors)
    // gave up with "crashed 4 times within 1m", hiding the reason to fix.
    let now = Instant::now();
    let mut machine = ServiceMachine::new(policy());
    machine.step(Input::Start, now);
    let reason = "cannot start process: Too many open files (os error 24)";
    let mut effects = Vec::new();
    for generation in 1..=4 {
        effects = machine.step(
            Input::SpawnFailed {
                generation: g(generation),
                reason: reason.into(),
                retry: true,
            },
            now,
        );
        machine.step(Input::Timer(Timer::RestartDelay { id: generation }), now);
    }
    assert!(
        events(&effects).contains(&EventKind::GaveUp {
            crashes: 4,
            window_ms: 60_000,
            unhealthy: 0,
            not_ready: 0,
            start_error: Some(reason.into()),
        }),
        "{effects:?}"
    );
    assert_eq!(machine.state(), ServiceState::Failed);
    assert_eq!(
        machine.failure(),
        Some(
            "crashed 4 times within 1m; the last start failed: \
             cannot start process: Too many open files (os error 24)"
        )
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

fn build_finished(build: BuildId, ok: bool) -> Input {
    Input::BuildFinished {
        build,
        result: if ok { Ok(()) } else { Err("exit 1".into()) },
    }
}

fn with_build() -> ServiceMachine {
    ServiceMachine::new(Policy {
        has_build: true,
        ..policy()
    })
}

#[test]
fn a_build_ahead_lets_the_start_spawn_at_once() {
    let now = Instant::now();
    let mut machine = with_build();
    assert_eq!(
        actions(&machine.step(Input::Prebuild, now)),
        vec![Effect::Build {
            build: 1,
            shared: true
        }]
    );
    assert_eq!(machine.state(), ServiceState::Building);
    // Built, still waiting: down, nothing runs, no failure.
    assert_eq!(actions(&machine.step(build_finished(1, true), now)), vec![]);
    assert_eq!(machine.state(), ServiceState::Stopped);
    assert!(machine.is_idle());
    assert_eq!(
        actions(&machine.step(Input::Start, now)),
        vec![Effect::Spawn { generation: g(1) }]
    );
    // The next start (after a stop) builds again.
    machine.step(spawned(1, 100), now);
    machine.step(Input::Stop, now);
    machine.step(exited(1, 0), now);
    let effects = machine.step(Input::Start, now);
    assert!(
        actions(&effects).contains(&Effect::Build {
            build: 2,
            shared: true
        }),
        "{effects:?}"
    );
}

#[test]
fn a_start_during_a_build_ahead_spawns_when_it_ends() {
    let now = Instant::now();
    let mut machine = with_build();
    machine.step(Input::Prebuild, now);
    assert_eq!(actions(&machine.step(Input::Start, now)), vec![]);
    assert_eq!(machine.state(), ServiceState::Building);
    assert_eq!(
        actions(&machine.step(build_finished(1, true), now)),
        vec![Effect::Spawn { generation: g(1) }]
    );
}

#[test]
fn a_change_while_waiting_builds_ahead_again_and_a_failed_build_ahead_is_retried_by_the_start() {
    let now = Instant::now();
    let mut machine = with_build();
    machine.step(Input::Prebuild, now);
    assert_eq!(
        actions(&machine.step(Input::Prebuild, now)),
        vec![
            Effect::CancelBuild { build: 1 },
            Effect::Build {
                build: 2,
                shared: true
            }
        ]
    );
    let effects = machine.step(build_finished(2, false), now);
    assert!(
        events(&effects).contains(&EventKind::BuildFailed {
            reason: "exit 1".into()
        }),
        "{effects:?}"
    );
    assert!(machine.last_build_failed());
    assert_eq!(machine.state(), ServiceState::Stopped);
    assert_eq!(
        actions(&machine.step(Input::Start, now)),
        vec![Effect::Build {
            build: 3,
            shared: true
        }]
    );
    // A build ahead is for a service that waits, not one that runs.
    machine.step(build_finished(3, true), now);
    machine.step(spawned(1, 100), now);
    assert_eq!(actions(&machine.step(Input::Prebuild, now)), vec![]);
}

fn spawned_container(generation: u64, id: &str) -> Input {
    Input::Spawned {
        generation: g(generation),
        pid: None,
        container: Some(id.into()),
    }
}

fn engine_lost() -> Input {
    Input::EngineLost {
        reason: "connection refused".into(),
    }
}

/// A container service with a probe, healthy in generation 1 (container `c1`).
fn healthy_container(now: Instant) -> ServiceMachine {
    let mut machine = ServiceMachine::new(Policy {
        has_health: true,
        ..policy()
    });
    machine.step(Input::Start, now);
    machine.step(spawned_container(1, "c1"), now);
    machine.step(healthy(1, true), now);
    assert_eq!(machine.state(), ServiceState::Healthy);
    machine
}

#[test]
fn a_container_the_engine_cannot_show_is_unknown_and_left_alone_then_adopted_back() {
    let now = Instant::now();
    let mut machine = healthy_container(now);
    let effects = machine.step(engine_lost(), now);
    assert_eq!(actions(&effects), vec![]);
    assert_eq!(
        events(&effects),
        vec![
            EventKind::EngineUnreachable {
                reason: "connection refused".into()
            },
            EventKind::StateChanged {
                state: ServiceState::Unknown
            },
        ]
    );
    assert_eq!(machine.state(), ServiceState::Unknown);
    assert_eq!(machine.container(), Some("c1"), "still fleet's container");
    // A second report of the same outage says nothing new.
    assert_eq!(machine.step(engine_lost(), now + ms(500)), vec![]);
    let effects = machine.step(Input::EngineBack, now + ms(3200));
    assert_eq!(
        actions(&effects),
        vec![],
        "nothing restarted, nothing removed"
    );
    assert_eq!(
        events(&effects),
        vec![
            EventKind::EngineReachable { after_ms: 3200 },
            EventKind::StateChanged {
                state: ServiceState::Healthy
            },
        ]
    );
    assert_eq!(machine.generation(), g(1));
    assert_eq!(machine.restarts(), 0);
}

#[test]
fn a_liveness_failure_while_the_engine_is_away_is_acted_on_when_it_is_back() {
    let now = Instant::now();
    let mut machine = healthy_container(now);
    machine.step(engine_lost(), now);
    let effects = machine.step(healthy(1, false), now);
    assert_eq!(
        actions(&effects),
        vec![],
        "no stop the engine cannot carry out"
    );
    assert_eq!(machine.state(), ServiceState::Unknown);
    let effects = machine.step(Input::EngineBack, now + ms(1000));
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
        ]
    );
}

#[test]
fn a_container_that_died_while_the_engine_was_away_restarts_once_the_engine_is_back() {
    let now = Instant::now();
    let mut machine = healthy_container(now);
    machine.step(engine_lost(), now);
    // The engine reports the exit when it answers again, before the runner hears so.
    let effects = machine.step(exited(1, 3), now + ms(1000));
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
    // The backoff ends before the runner hears the engine is back: the start waits.
    let effects = machine.step(Input::Timer(Timer::RestartDelay { id: 1 }), now + ms(1100));
    assert_eq!(actions(&effects), vec![], "no start without the engine");
    assert_eq!(machine.state(), ServiceState::Unknown);
    let effects = machine.step(Input::EngineBack, now + ms(1200));
    assert_eq!(actions(&effects), vec![Effect::Spawn { generation: g(2) }]);
    assert_eq!(machine.state(), ServiceState::Starting);
    assert_eq!(machine.restarts(), 1);
}

#[test]
fn a_stop_asked_while_the_engine_is_away_is_asked_again_when_it_is_back() {
    let now = Instant::now();
    let mut machine = healthy_container(now);
    machine.step(engine_lost(), now);
    let effects = machine.step(Input::Stop, now);
    assert_eq!(
        actions(&effects)[0],
        Effect::Signal {
            generation: g(1),
            signal: TERM
        }
    );
    assert_eq!(machine.state(), ServiceState::Stopping);
    // The stop timeout passes while the engine is away: the kill may be lost too.
    machine.step(
        Input::Timer(Timer::StopTimeout { generation: g(1) }),
        now + Duration::from_secs(10),
    );
    let effects = machine.step(Input::EngineBack, now + Duration::from_secs(11));
    assert_eq!(actions(&effects), vec![Effect::Kill { generation: g(1) }]);
    // Asked once: a later outage does not repeat it.
    machine.step(engine_lost(), now + Duration::from_secs(12));
    let effects = machine.step(Input::EngineBack, now + Duration::from_secs(13));
    assert_eq!(actions(&effects), vec![]);
    machine.step(
        Input::Exited {
            generation: g(1),
            status: ExitStatus::Signal(9),
        },
        now + Duration::from_secs(14),
    );
    assert_eq!(machine.state(), ServiceState::Stopped);
    assert!(machine.is_idle());
}

#[test]
fn a_start_first_redeploy_while_the_engine_is_away_keeps_the_old_instance() {
    let now = Instant::now();
    let mut machine = ServiceMachine::new(Policy {
        redeploy: RedeployStrategy::StartFirst,
        ..policy()
    });
    machine.step(Input::Start, now);
    machine.step(spawned_container(1, "c1"), now);
    machine.step(engine_lost(), now);
    let effects = machine.step(Input::Redeploy, now);
    assert_eq!(actions(&effects), vec![]);
    assert_eq!(
        events(&effects),
        vec![EventKind::RedeployAborted {
            reason: "the Docker engine is unreachable".into()
        }]
    );
    assert_eq!(machine.container(), Some("c1"));
}
