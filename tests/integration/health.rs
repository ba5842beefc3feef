//! Health: probes, dependency conditions that keep holding, readiness through
//! `NOTIFY_SOCKET`, `PORT`, and `fleet up --wait`.
//!
//! Orders are read from the log files' timestamps (fleet writes its own event lines
//! into each service's log, tagged `---`), never inferred from sleeps.

use std::time::Duration;

use crate::support::{free_port, pid_alive, regex, wait_until, LogEntry, Project, WAIT};

/// When `service`'s log first has a fleet line (`---`) whose text satisfies `matches`.
fn first_fleet_line(
    project: &Project,
    service: &str,
    what: &str,
    matches: impl Fn(&str) -> bool,
) -> u64 {
    let entries = project.log_entries(service);
    entries
        .iter()
        .find(|entry| entry.tag == "---" && matches(&entry.text))
        .map(LogEntry::at_ms)
        .unwrap_or_else(|| {
            panic!(
                "{service}.log has no `{what}` line:\n{:#?}",
                project.log_lines(service)
            )
        })
}

/// The start boundary fleet writes before generation `generation`'s first output.
fn generation_started(project: &Project, service: &str, generation: u64) -> u64 {
    let boundary = format!("--- generation {generation} started (pid ");
    first_fleet_line(project, service, &boundary, |text| {
        text.starts_with(&boundary)
    })
}

#[test]
fn a_dependent_waits_until_its_dependencys_http_probe_passes() {
    let port = free_port();
    // The dependent is declared first, so only the condition can hold it back.
    let project = Project::new().var("port", port).manifest(
        r#"
[services.app]
command = "{helper} --name app"
depends_on = { dep = "healthy" }

[services.dep]
command = "{helper} --name dep --port {port} --ready-after 500"
health = { http = "http://127.0.0.1:{port}/health" }
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    fleet.started_pid("app", WAIT);
    fleet.wait_for_output_of("app", "app started pid", WAIT);

    let dep_started = generation_started(&project, "dep", 1);
    let dep_healthy = first_fleet_line(&project, "dep", "healthy", |text| text == "healthy");
    let app_started = generation_started(&project, "app", 1);
    // The helper listens only 500 ms after it starts: a probe can't pass before that
    // (timestamps are truncated to milliseconds, hence the 1 ms).
    assert!(
        dep_healthy + 1 >= dep_started + 500,
        "dep was healthy {} ms after it started, before it listened",
        dep_healthy - dep_started
    );
    assert!(
        app_started >= dep_healthy,
        "app started {} ms before dep was healthy\ndep.log: {:#?}\napp.log: {:#?}",
        dep_healthy - app_started,
        project.log_lines("dep"),
        project.log_lines("app")
    );
}

#[test]
fn an_instance_that_stops_answering_its_probe_is_restarted() {
    let port = free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.flaky]
command = "{helper} --name flaky --port {port} --unhealthy-after 300"
health = { http = "http://127.0.0.1:{port}/health", interval = "100ms", retries = 2 }
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    let first = fleet.started_pid("flaky", WAIT);
    fleet.wait_for_output("flaky: healthy", WAIT);
    let unhealthy = fleet.wait_for_output(regex(r"^flaky: unhealthy"), WAIT);
    let pids = fleet.started_pids("flaky", 2, WAIT);
    assert_eq!(pids[0], first);
    assert_ne!(pids[1], first, "the new generation has the old pid");
    assert!(
        wait_until(WAIT, || !pid_alive(first)),
        "the unhealthy instance (pid {first}) still runs"
    );

    // In the output, the verdict comes before the replacement.
    let lines = fleet.stdout_lines();
    let position = |wanted: &str| {
        lines
            .iter()
            .position(|line| line == wanted)
            .unwrap_or_else(|| panic!("no line {wanted:?}\n{}", fleet.dump()))
    };
    assert!(
        position(&unhealthy) < position(&format!("flaky: started (pid {})", pids[1])),
        "{}",
        fleet.dump()
    );
    // And in the log: generation 2 starts after generation 1 was declared unhealthy.
    let declared_unhealthy = first_fleet_line(&project, "flaky", "unhealthy", |text| {
        text.starts_with("unhealthy")
    });
    assert!(generation_started(&project, "flaky", 2) >= declared_unhealthy);
}

#[test]
fn completed_waits_for_the_job_to_exit_0() {
    let project = Project::new().manifest(
        r#"
[services.app]
command = "{helper} --name app"
depends_on = { migrate = "completed" }

[services.migrate]
command = "{helper} --name migrate --exit-after 100 --exit-code 0"
restart = "never"
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    fleet.wait_for_output("migrate: exited with code 0", WAIT);
    fleet.started_pid("app", WAIT);

    let migrate_done = first_fleet_line(&project, "migrate", "exited with code 0", |text| {
        text == "exited with code 0"
    });
    let app_started = generation_started(&project, "app", 1);
    assert!(
        app_started >= migrate_done,
        "app started {} ms before migrate completed",
        migrate_done - app_started
    );
}

#[test]
fn a_failed_job_keeps_its_dependents_waiting() {
    let project = Project::new().manifest(
        r#"
[services.app]
command = "{helper} --name app"
depends_on = { migrate = "completed" }

[services.migrate]
command = "{helper} --name migrate --exit-after 100 --exit-code 1"
restart = "never"
"#,
    );
    // `--wait-timeout`: `up -d` waits it out in full here (see
    // `up_detached_returns_when_a_failed_dependency_blocks_a_service`).
    let _fleet = project.up_detached(&["--wait-timeout", "3s"]);
    project.wait_for_state("migrate", "failed", WAIT);
    // The supervisor re-evaluates the waiting service when migrate's state changes;
    // wait for it to say why app waits.
    project.wait_for_status("app", "waiting for a failed migrate", WAIT, |status| {
        status["waiting_for"]
            .as_str()
            .is_some_and(|reason| reason.contains("migrate") && reason.contains("failed"))
    });

    let services = project.ps_json();
    let app = services
        .iter()
        .find(|service| service["name"] == "app")
        .expect("`fleet ps --json` lists app");
    assert_eq!(app["state"], "waiting", "{app:#}");
    assert_eq!(app["pid"], serde_json::Value::Null, "{app:#}");
    let waiting_for = app["waiting_for"].as_str().unwrap_or_default();
    assert!(
        waiting_for.contains("migrate") && waiting_for.contains("failed"),
        "{app:#}"
    );
    // migrate failed for good (restart = "never"), so nothing can start app any more.
    assert!(
        project
            .log_lines("app")
            .iter()
            .all(|line| !line.contains("started (pid")),
        "app.log: {:#?}",
        project.log_lines("app")
    );
}

#[test]
fn up_detached_returns_when_a_failed_dependency_blocks_a_service() {
    // Regression: `up -d` waited out its whole `--wait-timeout` (60 s by default) for
    // `app`, which can never start once `migrate` failed with `restart = "never"`.
    let project = Project::new().manifest(
        r#"
[services.app]
command = "{helper} --name app"
depends_on = { migrate = "completed" }

[services.migrate]
command = "{helper} --name migrate --exit-after 100 --exit-code 1"
restart = "never"
"#,
    );
    // `run` panics if `up -d` takes longer than WAIT (20 s), a third of the timeout.
    // The exit code is not pinned: "started as far as possible" (0) and "not every
    // service started" (5) are both defensible; returning at all is the point.
    let fleet = project.up_detached(&[]);
    let said = format!("{}{}", fleet.up.stdout, fleet.up.stderr);
    assert!(
        said.contains("fleet: supervisor running in the background"),
        "{:#?}",
        fleet.up
    );
    assert_eq!(project.service_status("migrate")["state"], "failed");
}

#[test]
fn up_wait_returns_0_once_every_service_is_healthy() {
    let (api_port, web_port) = (free_port(), free_port());
    let project = Project::new()
        .var("api_port", api_port)
        .var("web_port", web_port)
        .manifest(
            r#"
[services.api]
command = "{helper} --name api --port {api_port} --ready-after 200"
health = { http = "http://127.0.0.1:{api_port}/health" }

[services.web]
command = "{helper} --name web --port {web_port}"
health = { tcp = {web_port} }
depends_on = { api = "healthy" }
"#,
        );
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    assert!(
        fleet.up.stdout.contains("fleet: 2 services ready"),
        "{:#?}",
        fleet.up
    );
    // Right when `--wait` returns, not eventually.
    for service in project.ps_json() {
        assert_eq!(service["state"], "healthy", "{service:#}");
        assert_eq!(service["health"], "healthy", "{service:#}");
    }
}

#[test]
fn up_wait_gives_up_with_the_laggards_state_and_log_tail() {
    let port = free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.fine]
command = "{helper} --name fine"

[services.never]
command = "{helper} --name never --sleep-forever"
health = { http = "http://127.0.0.1:{port}/health" }
"#,
    );
    let fleet = project.up_detached(&["--wait", "--wait-timeout", "3s"]);
    let report = &fleet.up.stderr;
    assert_eq!(fleet.up.code, 5, "{:#?}", fleet.up);
    assert!(
        regex(r"(?m)^never: starting\b").is_match(report),
        "the report names the service and its state: {:#?}",
        fleet.up
    );
    assert!(
        regex(r"(?m)^ +never \| never started pid \d+$").is_match(report),
        "the report holds the service's log lines: {:#?}",
        fleet.up
    );
    assert!(
        !regex(r"(?m)^fine: ").is_match(report),
        "a ready service is not a laggard: {:#?}",
        fleet.up
    );
    // `--wait` gave up waiting; the fleet itself still runs (the guard takes it down).
    assert_eq!(project.service_status("fine")["state"], "running");
}

#[test]
fn notify_ready_makes_a_service_healthy_and_silence_keeps_it_starting() {
    let (ready_port, silent_port) = (free_port(), free_port());
    let project = Project::new()
        .var("ready_port", ready_port)
        .var("silent_port", silent_port)
        .manifest(
            r#"
[services.ready]
command = "{helper} --name ready --port {ready_port} --ready-after 300"
notify = true

[services.silent]
command = "{helper} --name silent --port {silent_port} --ready-after 300 --no-notify"
notify = true
"#,
        );
    let _fleet = project.up_detached(&[]);
    project.wait_for_state("ready", "healthy", WAIT);

    // `silent started pid` comes after the point where the helper would have sent
    // READY=1, so from here on only a READY=1 fleet invented could make it healthy.
    assert!(
        wait_until(WAIT, || project
            .log_lines("silent")
            .iter()
            .any(|line| line.contains("silent started pid"))),
        "silent.log: {:#?}",
        project.log_lines("silent")
    );
    // Asserting that something does NOT happen: watch `silent` for a second. The probe
    // is polled from 10 ms on, so a wrong verdict would show well within that.
    let became = wait_until(Duration::from_secs(1), || {
        project.service_status("silent")["state"] != "starting"
    });
    let silent = project.service_status("silent");
    assert!(
        !became,
        "silent left `starting` without READY=1: {silent:#}"
    );
    assert_eq!(silent["state"], "starting", "{silent:#}");
    assert_eq!(project.service_status("ready")["state"], "healthy");
}

#[test]
fn a_service_with_ports_gets_port_set_to_the_first() {
    let (port, other) = (free_port(), free_port());
    let project = Project::new()
        .var("port", port)
        .var("other", other)
        .manifest(
            r#"
[services.web]
command = "sh -c 'echo port=$$PORT; exec sleep 30'"
ports = [{port}, {other}]

[services.plain]
command = "sh -c 'echo port=$${PORT-unset}; exec sleep 30'"
"#,
        );
    let mut fleet = project.up(&["--no-tui"]);
    let line = fleet.wait_for_output_of("web", "port=", WAIT);
    assert_eq!(line, format!("port={port}"));
    let line = fleet.wait_for_output_of("plain", "port=", WAIT);
    assert_eq!(line, "port=unset", "a service without ports gets no PORT");
}

// A busy port's error naming its owner pid is covered by
// `up::a_busy_port_is_reported_and_nothing_starts`.

#[test]
fn a_dependent_with_restart_true_is_restarted_when_its_dependency_comes_back() {
    // `restart = true` on an edge restarts the dependent once the dependency is healthy
    // again; an edge without it leaves the dependent alone.
    let port = free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.db]
command = "{helper} --name db --port {port}"
health = { http = "http://127.0.0.1:{port}/health", interval = "100ms" }

[services.app]
command = "{helper} --name app"
depends_on = { db = { condition = "healthy", restart = true } }

[services.report]
command = "{helper} --name report"
depends_on = { db = "healthy" }
"#,
    );
    let _fleet = project.up_detached(&["--wait"]);
    let app = project.service_status("app")["pid"]
        .as_u64()
        .expect("app runs");
    let report = project.service_status("report")["pid"]
        .as_u64()
        .expect("report runs");
    let restarted = project.run(&["restart", "db"]);
    assert_eq!(restarted.code, 0, "{restarted:#?}");
    let status = project.wait_for_status("app", "a new pid", WAIT, |status| {
        status["pid"].as_u64().is_some_and(|pid| pid != app) && status["state"] == "running"
    });
    assert_eq!(status["generation"], 2, "app restarted once: {status:#}");
    assert_eq!(
        project.service_status("report")["pid"].as_u64(),
        Some(report),
        "an edge without `restart` leaves its dependent alone"
    );
}
