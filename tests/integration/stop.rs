//! Stopping: reverse dependency order, nothing left behind, SIGKILL after the grace
//! period, and a second Ctrl-C that does not wait.

use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::support::{
    exit_code, pid_alive, process_state, wait_for_pidfile, wait_until, Project, WAIT,
};

#[test]
fn services_stop_in_reverse_dependency_order() {
    // The later a service should stop, the faster it stops: stopped all at once, `a`
    // would be gone first and `c` last, so the order can't come out right by chance.
    let project = Project::new().manifest(
        r#"
[services.a]
command = "{helper} --name a"

[services.b]
command = "{helper} --name b --ignore-sigterm"
stop_timeout = "300ms"
depends_on = ["a"]

[services.c]
command = "{helper} --name c --ignore-sigterm"
stop_timeout = "600ms"
depends_on = ["b"]
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    for service in ["a", "b", "c"] {
        fleet.started_pid(service, WAIT);
    }
    for service in ["b", "c"] {
        fleet.wait_for_output_of(service, "ignoring SIGTERM", WAIT);
    }
    fleet.interrupt();
    let status = fleet.wait_exit(WAIT);
    assert_eq!(exit_code(status), 0, "{}", fleet.dump());

    let stopped: Vec<String> = fleet
        .status_lines()
        .into_iter()
        .filter(|(_, text)| text.starts_with("stopped ("))
        .map(|(service, _)| service)
        .collect();
    assert_eq!(stopped, ["c", "b", "a"], "{}", fleet.dump());
    project.assert_nothing_left();
}

#[test]
fn ctrl_c_leaves_no_process_alive_grandchildren_included() {
    let project = Project::new().manifest(
        r#"
[services.forks]
command = "{helper} --name forks --grandchild {dir}/grandchild.pid"

[services.escapes]
command = "{helper} --name escapes --setsid-grandchild {dir}/setsid.pid"

[services.daemon]
command = "{helper} --name daemon --double-fork {dir}/orphan.pid"
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    let mut pids = Vec::new();
    for service in ["forks", "escapes", "daemon"] {
        pids.push((service.to_string(), fleet.started_pid(service, WAIT)));
    }
    for pidfile in ["grandchild.pid", "setsid.pid", "orphan.pid"] {
        let pid = wait_for_pidfile(&project.path(pidfile), WAIT);
        pids.push((pidfile.to_string(), pid));
    }
    for (what, pid) in &pids {
        assert!(pid_alive(*pid), "{what} (pid {pid}) is not running yet");
    }

    fleet.interrupt();
    let status = fleet.wait_exit(WAIT);
    assert_eq!(exit_code(status), 0, "{}", fleet.dump());
    // SIGKILL takes effect asynchronously: a process fleet killed just before it exited
    // may need a moment to become a zombie. The grace is short, not a deadline for fleet.
    let survivors = || -> Vec<String> {
        pids.iter()
            .filter(|(_, pid)| pid_alive(*pid))
            .map(|(what, pid)| format!("{what} (pid {pid})"))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(2), || survivors().is_empty()),
        "still alive after fleet exited: {:?}\n{}",
        survivors(),
        fleet.dump()
    );
    project.assert_nothing_left();
}

#[test]
fn a_service_ignoring_sigterm_is_killed_after_its_stop_timeout() {
    let project = Project::new().manifest(
        r#"
[services.stubborn]
command = "{helper} --name stubborn --ignore-sigterm"
stop_timeout = "1s"
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    let pid = fleet.started_pid("stubborn", WAIT);
    // The helper ignores SIGTERM only from this line on.
    fleet.wait_for_output_of("stubborn", "stubborn ignoring SIGTERM", WAIT);

    let interrupted = Instant::now();
    fleet.interrupt();
    let status = fleet.wait_exit(WAIT);
    let elapsed = interrupted.elapsed();
    assert_eq!(exit_code(status), 0, "{}", fleet.dump());
    assert!(!pid_alive(pid), "stubborn (pid {pid}) survived fleet");
    assert!(
        fleet
            .stdout_lines()
            .contains(&"stubborn: did not stop in time, sent SIGKILL".to_string()),
        "{}",
        fleet.dump()
    );
    // A lower bound, not a speed check: SIGKILL must not come before the stop timeout.
    assert!(
        elapsed >= Duration::from_millis(900),
        "fleet exited {elapsed:?} after SIGINT, before the 1 s stop timeout"
    );
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    let project = Project::new().manifest(
        r#"
[services.stubborn]
command = "{helper} --name stubborn --ignore-sigterm"
stop_timeout = "30s"
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    let pid = fleet.started_pid("stubborn", WAIT);
    fleet.wait_for_output_of("stubborn", "stubborn ignoring SIGTERM", WAIT);

    fleet.interrupt();
    // Signals of one kind that arrive before the first is handled merge into one, so
    // wait until fleet has seen the first.
    fleet.wait_for_output("fleet: stopping every service", WAIT);
    fleet.interrupt();
    fleet.wait_for_output("fleet: killing every service", WAIT);
    // Well before the 30 s stop timeout, or this panics.
    let status = fleet.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(130),
        "a killed fleet exits 130 ({status})\n{}",
        fleet.dump()
    );
    assert!(!pid_alive(pid), "stubborn (pid {pid}) survived fleet");
    project.assert_nothing_left();
}

#[test]
fn a_killed_fleet_leaves_no_process_behind() {
    // SIGKILL gives fleet no chance to stop anything: its keeper process must.
    let project = Project::new().manifest(
        r#"
[services.forks]
command = "{helper} --name forks --grandchild {dir}/grandchild.pid"

[services.escapes]
command = "{helper} --name escapes --setsid-grandchild {dir}/setsid.pid"
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    let mut pids = vec![
        fleet.started_pid("forks", WAIT),
        fleet.started_pid("escapes", WAIT),
    ];
    pids.push(wait_for_pidfile(&project.path("grandchild.pid"), WAIT));
    pids.push(wait_for_pidfile(&project.path("setsid.pid"), WAIT));
    let marked = project.processes_left();
    for pid in &pids {
        assert!(marked.contains(pid), "pid {pid} is not among {marked:?}");
    }

    fleet.signal(Signal::SIGKILL);
    fleet.wait_exit(WAIT);
    assert!(
        wait_until(WAIT, || pids.iter().all(|pid| !pid_alive(*pid))),
        "still alive after fleet was killed: {:?}",
        pids.iter()
            .filter(|pid| pid_alive(**pid))
            .collect::<Vec<_>>()
    );
    project.assert_nothing_left();
}

#[test]
fn ctrl_c_still_stops_the_fleet_when_its_terminal_is_gone() {
    // Regression: with stdout and stderr on a closed pipe (`fleet up 2>&1 | head`),
    // printing "stopping every service" panicked the signal handler, so Ctrl-C was
    // lost and the fleet kept running.
    let project = Project::new().manifest(
        r#"
[services.svc]
command = "{helper} --name svc --pidfile {dir}/svc.pid --lines-per-sec 50"
"#,
    );
    let mut child = project
        .command(&["up", "--no-tui"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("fleet starts");
    // Close our read ends: every later write of fleet's goes to a broken pipe.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let pid = wait_for_pidfile(&project.path("svc.pid"), WAIT);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGINT,
    )
    .expect("signal fleet");
    let exited = wait_until(WAIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    assert!(
        exited,
        "fleet ignored Ctrl-C once its output pipe was closed"
    );
    assert!(
        wait_until(Duration::from_secs(2), || !pid_alive(pid)),
        "svc survived"
    );
}

/// Found by the chaos soak (`scripts/soak`): a service whose processes are stopped
/// (SIGSTOP, Ctrl-Z, a debugger) keeps fleet's SIGTERM pending until it runs again, so
/// `fleet stop` waited out the whole stop timeout and then SIGKILLed it: its graceful
/// stop never ran. fleet sends SIGCONT after the stop signal, as systemd does.
#[test]
fn a_stopped_service_gets_its_graceful_stop_not_the_sigkill_after_its_timeout() {
    let project = Project::new().manifest(
        r#"
[services.paused]
command = "{helper} --name paused --port 0"
stop_timeout = "60s"
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let running = project.wait_for_state("paused", "running", WAIT);
    let pid = running["pid"]
        .as_u64()
        .and_then(|pid| i32::try_from(pid).ok())
        .unwrap_or_else(|| panic!("no pid in {running:#}"));
    killpg(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP the service's group");
    assert!(
        wait_until(WAIT, || process_state(pid as u32) == Some('T')),
        "pid {pid} did not stop"
    );

    let stop = project.run(&["stop", "paused"]);
    assert_eq!(stop.code, 0, "{stop:#?}");
    // Well within the 60 s stop timeout, or this panics.
    project.wait_for_state("paused", "stopped", WAIT);
    assert!(!pid_alive(pid as u32), "pid {pid} survived its stop");
    let log = project.log_lines("paused");
    assert!(
        !log.iter()
            .any(|line| line.contains("did not stop in time") || line.contains("SIGKILL")),
        "the stopped service was killed, not stopped: {log:#?}"
    );
}
