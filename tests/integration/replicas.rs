//! Replicas, rolling redeploys, `fleet scale` and profiles (issue 13), with real
//! processes: gunicorn (from PyPI) for the web tier on one socket, the helper where a
//! test needs a service to misbehave on cue.
//!
//! # Theory of operation
//! - A replicated service's rows in `fleet ps --json` are `web.1` ... `web.N`, each
//!   with `service = "web"`; the tests read pids, generations and restarts from them.
//! - Which replica served a request is in the answer: gunicorn's app says its master's
//!   pid (the pid fleet started), the helper's `/pid` its own.
//! - Every wait has a deadline; replicas are told apart by their pids, rolls by the
//!   lines fleet writes in the logs (`--- rolling redeploy: web.2 (2 of 3)`).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::real_servers::{
    app_version, generation, get_root, gunicorn_project, pid, restarts, Client, WSGI_APP,
};
use crate::support::{
    children_of, free_port, free_ports, http_get, pid_alive, wait_until, LogEntry, Project, WAIT,
};

/// For rolls of gunicorn replicas and image-free restarts on a busy CI machine.
const LONG_WAIT: Duration = Duration::from_secs(60);

/// The rows of `service`'s replicas in `fleet ps --json`, in replica order.
fn replica_rows(project: &Project, service: &str) -> Vec<Value> {
    project
        .ps_json()
        .into_iter()
        .filter(|row| row["service"] == service)
        .collect()
}

fn names(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|row| row["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn pids(rows: &[Value]) -> Vec<u32> {
    rows.iter().map(pid).collect()
}

/// Waits until `service` has `count` replica rows, all in `state`; returns them.
fn wait_for_replicas(project: &Project, service: &str, count: usize, state: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let settled = wait_until(LONG_WAIT, || {
        rows = replica_rows(project, service);
        rows.len() == count && rows.iter().all(|row| row["state"] == state)
    });
    assert!(
        settled,
        "`{service}` did not have {count} {state} replicas within {LONG_WAIT:?}: {rows:#?}"
    );
    rows
}

/// fleet's own lines (`---`) in the log file `name` (`web` or `web.N`).
fn fleet_lines(project: &Project, name: &str) -> Vec<LogEntry> {
    project
        .log_entries(name)
        .into_iter()
        .filter(|entry| entry.tag == "---")
        .collect()
}

/// When fleet first wrote a line containing `text` in log `name` (ms since the epoch).
fn first_line_at(project: &Project, name: &str, text: &str) -> u64 {
    fleet_lines(project, name)
        .iter()
        .find(|entry| entry.text.contains(text))
        .map(LogEntry::at_ms)
        .unwrap_or_else(|| {
            panic!(
                "no `{text}` in {name}.log: {:#?}",
                fleet_lines(project, name)
            )
        })
}

/// Requests `/` until every pid in `expected` has answered (gunicorn's `get_root`).
fn every_replica_answers(port: u16, expected: &BTreeSet<u32>) {
    let mut seen = BTreeSet::new();
    let all = wait_until(WAIT, || {
        if let Ok(answer) = get_root(port) {
            seen.insert(answer.pid);
        }
        seen.is_superset(expected)
    });
    assert!(all, "only {seen:?} of {expected:?} answered on port {port}");
}

#[test]
fn three_gunicorn_replicas_share_one_socket_and_a_killed_one_restarts_alone() {
    let port = free_port();
    let project = gunicorn_project(port, "", "replicas = 3");
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let rows = replica_rows(&project, "web");
    assert_eq!(names(&rows), ["web.1", "web.2", "web.3"], "{rows:#?}");
    assert!(
        rows.iter().all(|row| row["state"] == "healthy"),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .all(|row| row["replicas"] == 3 && row["ports"] == serde_json::json!([port])),
        "{rows:#?}"
    );
    let masters = pids(&rows);
    let distinct: BTreeSet<u32> = masters.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        3,
        "three replicas, three gunicorn masters: {rows:#?}"
    );
    // The kernel spreads the one socket's connections over all three.
    every_replica_answers(port, &distinct);

    // kill -9 of web.2's master: its workers go with it, and only web.2 restarts.
    let victim = masters[1];
    let workers = children_of(victim);
    assert_eq!(
        workers.len(),
        2,
        "gunicorn -w 2 has two workers: {workers:?}"
    );
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill web.2's master");
    let back = project.wait_for_status("web.2", "back and healthy", LONG_WAIT, |row| {
        row["state"] == "healthy" && row["pid"].as_u64().is_some_and(|p| p != u64::from(victim))
    });
    assert_eq!(restarts(&back), 1, "{back:#}");
    assert_eq!(generation(&back), 2, "{back:#}");
    for worker in workers {
        assert!(
            !pid_alive(worker),
            "worker {worker} of the killed master lives on"
        );
    }
    let after = replica_rows(&project, "web");
    assert_eq!(pid(&after[0]), masters[0], "web.1 was touched: {after:#?}");
    assert_eq!(pid(&after[2]), masters[2], "web.3 was touched: {after:#?}");
    assert_eq!(restarts(&after[0]) + restarts(&after[2]), 0, "{after:#?}");
    every_replica_answers(port, &pids(&after).into_iter().collect());
    let down = project.run(&["down"]);
    assert_eq!(down.code, 0, "{down:#?}");
    for master in pids(&after) {
        assert!(
            !pid_alive(master),
            "gunicorn {master} outlived `fleet down`"
        );
    }
}

#[test]
fn a_rolling_redeploy_of_three_gunicorn_replicas_under_load_fails_no_request() {
    let port = free_port();
    let project = gunicorn_project(port, "", "replicas = 3");
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let old: BTreeSet<u32> = pids(&replica_rows(&project, "web")).into_iter().collect();

    let client = Client::start(port);
    client.wait_for_answers("from v1", 20, WAIT, |answer| answer.version == "v1");
    project.write_bytes("app.py", app_version(WSGI_APP, "v2").as_bytes());
    let redeploy = project.run(&["redeploy", "web"]);
    assert_eq!(redeploy.code, 0, "{redeploy:#?}");
    let mut rows = Vec::new();
    let rolled = wait_until(LONG_WAIT, || {
        rows = replica_rows(&project, "web");
        rows.len() == 3
            && rows
                .iter()
                .all(|row| row["state"] == "healthy" && generation(row) == 2)
            && fleet_lines(&project, "web")
                .iter()
                .any(|line| line.text.contains("rolling redeploy done"))
    });
    assert!(
        rolled,
        "the roll did not finish within {LONG_WAIT:?}: {rows:#?}"
    );
    let new: BTreeSet<u32> = pids(&rows).into_iter().collect();
    client.wait_for_answers("from v2", 20, WAIT, |answer| answer.version == "v2");
    let traffic = client.finish();
    assert!(
        traffic.failed.is_empty(),
        "{} of {} requests failed during the roll: {:?}",
        traffic.failed.len(),
        traffic.failed.len() + traffic.answered.len(),
        traffic.failed
    );
    assert_eq!(new.len(), 3, "{rows:#?}");
    assert!(new.is_disjoint(&old), "old {old:?}, new {new:?}");
    every_replica_answers(port, &new);

    // One replica at a time: each step begins after the one before was replaced.
    let step = |n: u32| {
        first_line_at(
            &project,
            "web",
            &format!("rolling redeploy: web.{n} ({n} of 3)"),
        )
    };
    let replaced = |log: &str| first_line_at(&project, log, "redeployed (generation 1 replaced)");
    assert!(
        step(1) <= replaced("web"),
        "web.1 redeployed before its step"
    );
    assert!(
        replaced("web") <= step(2),
        "web.2's step began before web.1 was replaced"
    );
    assert!(
        replaced("web.2") <= step(3),
        "web.3's step began before web.2 was replaced"
    );
    assert!(
        replaced("web.3")
            <= first_line_at(
                &project,
                "web",
                "rolling redeploy done: 3 replicas replaced"
            )
    );
    println!(
        "figure: rolling redeploy of 3 gunicorn replicas: {} requests, 0 failed, {} ms from the first step to done",
        traffic.answered.len(),
        first_line_at(&project, "web", "rolling redeploy done") - step(1)
    );
}

#[test]
fn a_gunicorn_version_that_fails_at_import_stops_the_roll_and_the_old_replicas_keep_serving() {
    let port = free_port();
    let project = gunicorn_project(port, "", "replicas = 3");
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let old = pids(&replica_rows(&project, "web"));

    let client = Client::start(port);
    client.wait_for_answers("from v1", 20, WAIT, |answer| answer.version == "v1");
    let broken = format!("raise RuntimeError('broken on purpose')\n{WSGI_APP}");
    project.write_bytes("app.py", broken.as_bytes());
    let redeploy = project.run(&["redeploy", "web"]);
    assert_eq!(redeploy.code, 0, "{redeploy:#?}");
    let halted = wait_until(LONG_WAIT, || {
        fleet_lines(&project, "web")
            .iter()
            .any(|line| line.text.contains("rolling redeploy stopped at web.1"))
    });
    assert!(
        halted,
        "no halt in web.log: {:#?}",
        fleet_lines(&project, "web")
    );
    let line = fleet_lines(&project, "web")
        .into_iter()
        .find(|line| line.text.contains("rolling redeploy stopped"))
        .map(|line| line.text)
        .unwrap_or_default();
    assert!(
        line.contains("new instance exited")
            && line.contains("web.2, web.3 keep the previous version"),
        "{line}"
    );
    // Answers keep coming from the old masters, all v1, none failed.
    let seen_before = client.finish().answered.len();
    let client = Client::start(port);
    client.wait_for_answers("still v1 after the halt", 20, WAIT, |answer| {
        answer.version == "v1"
    });
    let traffic = client.finish();
    assert!(traffic.failed.is_empty(), "{:?}", traffic.failed);
    assert!(traffic
        .answered
        .iter()
        .all(|answer| answer.version == "v1" && old.contains(&answer.pid)));
    let rows = replica_rows(&project, "web");
    assert_eq!(pids(&rows), old, "{rows:#?}");
    assert!(
        rows.iter().all(|row| row["state"] == "healthy"),
        "{rows:#?}"
    );
    // web.2 and web.3 were never touched: no new generation was started for them.
    for log in ["web.2", "web.3"] {
        assert!(
            !fleet_lines(&project, log)
                .iter()
                .any(|line| line.text.contains("generation 2")),
            "{log} was touched: {:#?}",
            fleet_lines(&project, log)
        );
    }
    println!("figure: {seen_before} answers before the halt, all v1");
}

/// A helper web tier on a socket whose build fails while `broken` exists.
fn helper_tier(port: u16, replicas: u32) -> Project {
    Project::new()
        .var("port", port)
        .var("replicas", replicas)
        .manifest(
            r#"
[services.web]
command = "{helper} --name web --port 0"
build = "test ! -e broken"
socket = {port}
replicas = {replicas}
health = { http = "http://127.0.0.1:{port}/health", interval = "200ms" }
"#,
        )
}

/// The pid `/pid` answers with, on a new connection.
fn answering_pid(port: u16) -> Option<u32> {
    http_get(port, "/pid")
        .and_then(|(status, body)| (status == 200).then(|| body.trim().parse().ok()).flatten())
}

#[test]
fn replica_1_builds_once_for_all_and_a_failed_build_stops_the_roll_before_any_replica_changes() {
    let port = free_port();
    let project = helper_tier(port, 3);
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let builds = |log: &str| {
        project
            .log_entries(log)
            .iter()
            .filter(|entry| entry.text.contains("build started"))
            .count()
    };
    assert_eq!((builds("web"), builds("web.2"), builds("web.3")), (1, 0, 0));
    let old = pids(&replica_rows(&project, "web"));

    project.write_bytes("broken", b"");
    let redeploy = project.run(&["redeploy", "web"]);
    assert_eq!(redeploy.code, 0, "{redeploy:#?}");
    let halted = wait_until(WAIT, || {
        fleet_lines(&project, "web").iter().any(|line| {
            line.text
                .contains("rolling redeploy stopped at web.1: build exited with code 1")
        })
    });
    assert!(halted, "{:#?}", fleet_lines(&project, "web"));
    let rows = replica_rows(&project, "web");
    assert_eq!(pids(&rows), old, "{rows:#?}");
    assert_eq!(rows[0]["build"], "failed", "{rows:#?}");
    assert!(
        rows.iter().all(|row| row["state"] == "healthy"),
        "{rows:#?}"
    );
    let pid = answering_pid(port).expect("the tier still answers");
    assert!(old.contains(&pid));

    // Fixed, the next redeploy rolls through: replica 1 builds, the others follow.
    std::fs::remove_file(project.path("broken")).expect("remove the breakage");
    assert_eq!(project.run(&["redeploy", "web"]).code, 0);
    let rows = wait_for_generation(&project, 2);
    assert!(
        pids(&rows).iter().all(|pid| !old.contains(pid)),
        "{rows:#?}"
    );
    assert_eq!((builds("web"), builds("web.2"), builds("web.3")), (3, 0, 0));
}

fn wait_for_generation(project: &Project, generation_wanted: u64) -> Vec<Value> {
    let mut rows = Vec::new();
    let done = wait_until(LONG_WAIT, || {
        rows = replica_rows(project, "web");
        rows.iter()
            .all(|row| row["state"] == "healthy" && generation(row) == generation_wanted)
    });
    assert!(done, "not all at generation {generation_wanted}: {rows:#?}");
    rows
}

#[test]
fn scale_adds_and_removes_replicas_and_keeps_the_survivors() {
    let port = free_port();
    let project = helper_tier(port, 2);
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let first = pids(&replica_rows(&project, "web"));

    let scaled = project.run(&["scale", "web=4"]);
    assert_eq!(scaled.code, 0, "{scaled:#?}");
    assert_eq!(scaled.stdout.trim(), "scaled: web 2 -> 4");
    let rows = wait_for_replicas(&project, "web", 4, "healthy");
    assert_eq!(
        pids(&rows)[..2],
        first[..],
        "the first two were touched: {rows:#?}"
    );
    assert!(rows.iter().all(|row| row["replicas"] == 4));
    let all: BTreeSet<u32> = pids(&rows).into_iter().collect();
    let mut seen = BTreeSet::new();
    assert!(
        wait_until(WAIT, || {
            seen.extend(answering_pid(port));
            seen == all
        }),
        "{seen:?} of {all:?} answered"
    );

    // Down to one: the highest go, and the survivor is `web` again.
    assert_eq!(project.run(&["scale", "web=1"]).code, 0);
    let rows = wait_for_replicas(&project, "web", 1, "healthy");
    assert_eq!(names(&rows), ["web"]);
    assert_eq!(pid(&rows[0]), first[0]);
    for gone in &pids_of(&all, first[0]) {
        assert!(
            wait_until(WAIT, || !pid_alive(*gone)),
            "replica {gone} outlived its scale-down"
        );
    }

    // Zero keeps the row, stopped; a count back brings it back.
    assert_eq!(project.run(&["scale", "web=0"]).code, 0);
    let rows = wait_for_replicas(&project, "web", 1, "stopped");
    assert_eq!(rows[0]["replicas"], 0);
    assert!(wait_until(WAIT, || !pid_alive(first[0])));
    let table = project.run(&["ps"]);
    assert!(
        table.stdout.contains("stopped (0 replicas)"),
        "{}",
        table.stdout
    );
    assert_eq!(project.run(&["scale", "web=2"]).code, 0);
    wait_for_replicas(&project, "web", 2, "healthy");

    // Bad requests change nothing.
    for (args, says) in [
        (vec!["scale", "nope=1"], "unknown service: nope"),
        (vec!["scale", "web.2=3"], "scale the service: `web=N`"),
        (
            vec!["restart", "web.7"],
            "`web` has 2 replicas: web.1 to web.2",
        ),
    ] {
        let refused = project.run(&args);
        assert_ne!(refused.code, 0, "{args:?}: {refused:#?}");
        assert!(refused.stderr.contains(says), "{args:?}: {refused:#?}");
    }
    let usage = project.run(&["scale", "web=1001"]);
    assert_eq!(usage.code, 2, "{usage:#?}");
    assert!(usage.stderr.contains("more than the 1000"), "{usage:#?}");
    assert_eq!(replica_rows(&project, "web").len(), 2);

    // `fleet reload` brings the manifest's count back, touching nothing else.
    assert_eq!(project.run(&["scale", "web=3"]).code, 0);
    let three = pids(&wait_for_replicas(&project, "web", 3, "healthy"));
    let reload = project.run(&["reload"]);
    assert_eq!(reload.code, 0, "{reload:#?}");
    assert_eq!(reload.stdout.trim(), "scaled: web 3 -> 2", "{reload:#?}");
    let rows = wait_for_replicas(&project, "web", 2, "healthy");
    assert_eq!(pids(&rows)[..], three[..2]);
}

fn pids_of(all: &BTreeSet<u32>, except: u32) -> Vec<u32> {
    all.iter().copied().filter(|pid| *pid != except).collect()
}

#[test]
fn replicas_on_ports_get_one_port_each_and_a_busy_port_refuses_the_scale() {
    let port = free_ports(3);
    let project = Project::new().var("port", port).manifest(
        r#"
[services.api]
command = "exec {helper} --name api --port $$PORT"
ports = [{port}]
replicas = 2
health = { http = "http://127.0.0.1:{port}/health", interval = "200ms" }
"#,
    );
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let rows = replica_rows(&project, "api");
    assert_eq!(rows[0]["ports"], serde_json::json!([port]));
    assert_eq!(rows[1]["ports"], serde_json::json!([port + 1]));
    // Each listens on its own port (PORT = first port + replica index).
    assert_eq!(answering_pid(port), Some(pid(&rows[0])));
    assert_eq!(answering_pid(port + 1), Some(pid(&rows[1])));

    // A third replica would need port + 2: taken, so nothing changes.
    let holder = TcpListener::bind(("127.0.0.1", port + 2)).expect("hold port + 2");
    let refused = project.run(&["scale", "api=3"]);
    assert_ne!(refused.code, 0, "{refused:#?}");
    assert!(
        refused.stderr.contains(&format!("{}", port + 2)) && refused.stderr.contains("api.3"),
        "{refused:#?}"
    );
    assert_eq!(replica_rows(&project, "api").len(), 2);
    drop(holder);
    assert_eq!(project.run(&["scale", "api=3"]).code, 0);
    let rows = wait_for_replicas(&project, "api", 3, "healthy");
    assert_eq!(answering_pid(port + 2), Some(pid(&rows[2])));
}

#[test]
fn a_dependent_waits_for_every_replica_and_names_reach_one_replica() {
    let port = free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.web]
# Replica 2 takes 1.5 s longer to listen than replica 1.
command = "exec {helper} --name web$$FLEET_REPLICA --port 0 --ready-after $$((FLEET_REPLICA * 1500))"
socket = {port}
replicas = 2
health = { http = "http://127.0.0.1:{port}/health", interval = "100ms" }

[services.api]
command = "{helper} --name api"
depends_on = { web = "healthy" }
"#,
    );
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let api_started = first_line_at(&project, "api", "generation 1 started");
    let slow_healthy = first_line_at(&project, "web.2", "healthy");
    assert!(
        slow_healthy <= api_started,
        "api started at {api_started}, before web.2 was healthy at {slow_healthy}"
    );
    // The replica's environment says which it is.
    let output = project.log_lines("web.2").join("\n");
    assert!(
        output.contains("web1"),
        "web.2 runs with FLEET_REPLICA=1: {output}"
    );

    // `logs web.2` is that replica only; `logs web` all of them, labelled.
    let one = project.run(&["logs", "web.2", "-n", "200"]);
    assert_eq!(one.code, 0, "{one:#?}");
    assert!(
        one.stdout.lines().all(|line| line.starts_with("web.2 | ")),
        "{}",
        one.stdout
    );
    let both = project.run(&["logs", "web", "-n", "200"]);
    assert!(
        both.stdout.lines().any(|line| line.starts_with("web.1 | ")),
        "{}",
        both.stdout
    );
    assert!(
        both.stdout.lines().any(|line| line.starts_with("web.2 | ")),
        "{}",
        both.stdout
    );

    // `restart web.2` restarts that replica and nothing else.
    let before = replica_rows(&project, "web");
    let api_pid = pid(&project.service_status("api"));
    assert_eq!(project.run(&["restart", "web.2"]).code, 0);
    let back = project.wait_for_status("web.2", "restarted", LONG_WAIT, |row| {
        row["state"] == "healthy" && generation(row) == 2
    });
    assert_ne!(pid(&back), pid(&before[1]));
    assert_eq!(pid(&replica_rows(&project, "web")[0]), pid(&before[0]));
    assert_eq!(
        pid(&project.service_status("api")),
        api_pid,
        "api was touched"
    );
}

#[test]
fn profiles_choose_what_starts_and_a_dependency_needs_its_profile() {
    let project = Project::new().manifest(
        r#"
[services.db]
command = "{helper} --name db"

[services.mail]
command = "{helper} --name mail"
profiles = ["debug"]

[services.seed]
command = "{helper} --name seed"
profiles = ["tools"]
depends_on = ["db"]
"#,
    );
    {
        let fleet = project.up_detached(&["--wait"]);
        assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
        let shown: Vec<String> = names(&project.ps_json());
        assert_eq!(shown, ["db"]);
        let all = project.run(&["ps", "--all"]);
        assert!(
            all.stdout
                .lines()
                .any(|line| line.starts_with("mail") && line.contains("inactive (profile debug)")),
            "{}",
            all.stdout
        );
        // `up --profile debug` on the running fleet adds mail, and only mail.
        let more = project.run(&["up", "-d", "--profile", "debug"]);
        assert_eq!(more.code, 0, "{more:#?}");
        project.wait_for_state("mail", "running", WAIT);
        assert_eq!(project.service_status("seed")["inactive"], true);
    }
    assert!(
        project.processes_left().is_empty()
            || wait_until(WAIT, || project.processes_left().is_empty())
    );
    {
        // A named service runs whatever its profile, with its dependencies.
        let fleet = project.up_detached(&["--wait", "seed"]);
        assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
        let running: Vec<String> = project
            .ps_json()
            .into_iter()
            .filter(|row| row["state"] == "running")
            .map(|row| row["name"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(running, ["db", "seed"]);
    }
    assert!(wait_until(WAIT, || project.processes_left().is_empty()));

    // A dependency on a service whose profile is off is an error, with its place.
    project.rewrite(
        "fleet.toml",
        r#"
[services.mail]
command = "{helper} --name mail"
profiles = ["debug"]

[services.api]
command = "{helper} --name api"
depends_on = ["mail"]
"#,
    );
    let check = project.run(&["check"]);
    assert_eq!(check.code, 2, "{check:#?}");
    assert!(
        check
            .stderr
            .contains("`api` depends on `mail`, which runs only with profile `debug`")
            && check.stderr.contains("fleet.toml:8:15"),
        "{check:#?}"
    );
    assert_eq!(project.run(&["check", "--profile", "debug"]).code, 0);
    let from_env = project
        .command(&["check"])
        .env("FLEET_PROFILES", "other,debug")
        .output()
        .expect("run fleet check");
    assert!(from_env.status.success(), "{from_env:?}");
    let up = project.run(&["up", "-d", "--profile", "debug", "--profile", "nope"]);
    assert_eq!(up.code, 2, "{up:#?}");
    assert!(up.stderr.contains("unknown profile `nope`"), "{up:#?}");
    let up = project.run(&["up", "-d"]);
    assert_eq!(up.code, 2, "{up:#?}");
    assert!(!project.path(".fleet/supervisor.log").exists() || project.processes_left().is_empty());
}
