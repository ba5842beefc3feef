//! `fleet up`: what starts, in which order, and what a busy port prevents.

use std::net::{Ipv4Addr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use crate::support::{regex, Project, WAIT};

#[test]
fn a_dependency_starts_before_its_dependent() {
    // `b` is declared first, so only the dependency can explain `a` starting first.
    let project = Project::new().manifest(
        r#"
[services.b]
command = "{helper} --name b"
depends_on = ["a"]

[services.a]
command = "{helper} --name a"
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    fleet.started_pid("b", WAIT);
    fleet.wait_for_output_of("b", "b started pid", WAIT);

    let started: Vec<String> = fleet
        .status_lines()
        .into_iter()
        .filter(|(_, text)| text.starts_with("started (pid "))
        .map(|(service, _)| service)
        .collect();
    assert_eq!(started, ["a", "b"], "{}", fleet.dump());

    // The log files agree: a's start boundary is no later than b's.
    let first_start = |service: &str| {
        project
            .log_entries(service)
            .into_iter()
            .find(|entry| entry.tag == "---" && entry.text.starts_with("--- generation "))
            .unwrap_or_else(|| panic!("{service}.log has no `started` line"))
            .at_ms()
    };
    assert!(first_start("a") <= first_start("b"));
}

#[test]
fn up_with_a_service_name_starts_only_it_and_its_dependencies() {
    let project = Project::new().manifest(
        r#"
[services.db]
command = "{helper} --name db"

[services.web]
command = "{helper} --name web"
depends_on = ["db"]

[services.other]
command = "{helper} --name other --pidfile {dir}/other.pid"
"#,
    );
    let mut fleet = project.up(&["--no-tui", "web"]);
    fleet.started_pid("db", WAIT);
    fleet.started_pid("web", WAIT);
    fleet.wait_for_output_of("web", "web started pid", WAIT);

    // Asserting that something does NOT happen: give a wrongly started `other` a moment
    // to show up. Everything the supervisor decided at start is already visible.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !project.path("other.pid").exists(),
        "`other` was started: {}",
        fleet.dump()
    );
    assert!(
        fleet
            .status_lines()
            .iter()
            .all(|(service, _)| service != "other"),
        "{}",
        fleet.dump()
    );
    assert!(fleet.output_of("other").is_empty());
}

#[test]
fn a_busy_port_is_reported_and_nothing_starts() {
    let holder =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a port to hold busy");
    let port = holder
        .local_addr()
        .expect("a bound listener has an address")
        .port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.early]
command = "{helper} --name early --pidfile {dir}/early.pid"

[services.web]
command = "{helper} --name web --port {port}"
ports = [{port}]
"#,
    );
    let finished = project.run(&["up", "--no-tui"]);
    assert_eq!(finished.code, 3, "{finished:#?}");
    let expected_start = format!(
        "error: cannot start the fleet, nothing was started:\nservice `web`: port {port} is already in use by pid {} (",
        std::process::id()
    );
    assert!(
        finished.stderr.starts_with(&expected_start),
        "stderr should start with {expected_start:?}\n{finished:#?}"
    );
    assert!(!project.path("early.pid").exists(), "`early` was started");
    assert!(
        !project.path(".fleet").exists(),
        "a fleet that cannot start leaves no trace"
    );
    let early_log = project.log_lines("early");
    assert!(
        early_log.iter().all(|line| !line.contains("started")),
        "early.log: {early_log:#?}"
    );
    assert!(
        !regex(r"(?m)^early: ").is_match(&finished.stdout),
        "{finished:#?}"
    );
    project.assert_nothing_left();
    // Held until here: the port must stay busy for the whole run.
    drop(holder);
}

#[test]
fn a_huge_wait_timeout_is_a_usage_error_not_a_panic() {
    // Regression: `--wait-timeout 99999999999999s` parsed, then overflowed the
    // `Instant` it was added to: fleet panicked (exit 101) after starting the fleet.
    let project = Project::new().manifest(
        r#"
[services.web]
command = "{helper} --name web --pidfile {dir}/web.pid"
"#,
    );
    let finished = project.run(&["up", "--wait", "--wait-timeout", "99999999999999s"]);
    assert_eq!(finished.code, 2, "{finished:#?}");
    assert_eq!(
        finished.stderr,
        "error: invalid value '99999999999999s' for '--wait-timeout <WAIT_TIMEOUT>': \
         the longest duration is 87600h (10 years)\n\nFor more information, try '--help'.\n",
        "{finished:#?}"
    );
    assert!(!project.path("web.pid").exists(), "a service was started");
    project.assert_nothing_left();
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly_with_141() {
    // `fleet up -d | head -0`, `fleet ps | head -0`: the first write fails with EPIPE.
    // Before, that was a panic (exit 101) in `println!`.
    let project = Project::new().manifest(
        r#"
[services.web]
command = "{helper} --name web"
"#,
    );
    let closed_stdout = || {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        drop(read);
        Stdio::from(write)
    };
    for args in [&["up", "-d"][..], &["ps"][..]] {
        let output = project
            .command(args)
            .stdout(closed_stdout())
            .stderr(Stdio::piped())
            .output()
            .expect("fleet runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(141), "fleet {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "fleet {args:?}: {stderr}");
        // `up -d` started the fleet all the same.
        project.wait_for_state("web", "running", WAIT);
    }
    let down = project.run(&["down"]);
    assert_eq!(down.code, 0, "{down:#?}");
    project.assert_nothing_left();
}
