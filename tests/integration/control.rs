//! The control plane: a running fleet you can talk to (`ps`, `restart`, `stop`,
//! `start`, `reload`, `logs`, the socket itself), and that nothing outlives (`down`,
//! `kill -9` of the supervisor, a second `up` after a crash).
//!
//! These fleets run in the background (`fleet up -d`); each test holds a
//! [`crate::support::Detached`] guard that takes its fleet down even when it fails.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{
    children_of, command_line, error_code, free_port, is_keeper, pid_alive, port_answers, regex,
    wait_for_pidfile, wait_until, Control, Project, WAIT,
};

/// How long a process SIGKILLed by fleet (or its keeper) may take to be gone: the
/// signal is delivered asynchronously and a zombie must still be reaped by its parent.
const REAP_GRACE: Duration = Duration::from_secs(2);

fn pid_of(status: &Value) -> u32 {
    status["pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or_else(|| panic!("no pid in {status:#}"))
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL)
        .unwrap_or_else(|err| panic!("cannot SIGKILL pid {pid}: {err}"));
}

/// Waits (within [`REAP_GRACE`]) until none of `pids` runs; panics naming survivors.
fn assert_all_gone(pids: &[(String, u32)], after: &str) {
    let survivors = || -> Vec<String> {
        pids.iter()
            .filter(|(_, pid)| pid_alive(*pid))
            .map(|(what, pid)| format!("{what} (pid {pid}: {})", command_line(*pid)))
            .collect()
    };
    assert!(
        wait_until(REAP_GRACE, || survivors().is_empty()),
        "still alive {after}: {:?}",
        survivors()
    );
}

/// The message every command that needs a running fleet prints without one.
fn not_running(project: &Project) -> String {
    format!("fleet: no fleet is running for {}", project.dir().display())
}

/// A fleet whose services fork in every way a process can get away from its parent.
fn escaping_fleet() -> Project {
    Project::new().manifest(
        r#"
[services.forks]
command = "{helper} --name forks --grandchild {dir}/grandchild.pid"

[services.escapes]
command = "{helper} --name escapes --setsid-grandchild {dir}/setsid.pid"

[services.daemon]
command = "{helper} --name daemon --double-fork {dir}/orphan.pid"
"#,
    )
}

/// Every pid of [`escaping_fleet`]'s services and their descendants, named.
fn escaping_pids(project: &Project) -> Vec<(String, u32)> {
    let mut pids = Vec::new();
    for service in ["forks", "escapes", "daemon"] {
        let status = project.wait_for_state(service, "running", WAIT);
        pids.push((service.to_string(), pid_of(&status)));
    }
    for pidfile in ["grandchild.pid", "setsid.pid", "orphan.pid"] {
        pids.push((
            pidfile.to_string(),
            wait_for_pidfile(&project.path(pidfile), WAIT),
        ));
    }
    for (what, pid) in &pids {
        assert!(pid_alive(*pid), "{what} (pid {pid}) is not running");
    }
    pids
}

// ---------------------------------------------------------------------------------------
// ps

#[test]
fn ps_json_has_every_documented_key_with_its_type() {
    let port = free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.api]
command = "{helper} --name api --port {port}"
ports = [{port}]
health = { http = "http://127.0.0.1:{port}/health" }

[services.worker]
command = "{helper} --name worker"
"#,
    );
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);

    let services = project.ps_json();
    let names: Vec<&str> = services
        .iter()
        .map(|service| service["name"].as_str().expect("name is a string"))
        .collect();
    assert_eq!(names, ["api", "worker"]);
    let keys = [
        "name",
        "kind",
        "state",
        "pid",
        "container",
        "generation",
        "restarts",
        "started_at_ms",
        "ports",
        "health",
        "build",
        "last_redeploy_at_ms",
        "last_event",
        "last_event_at_ms",
        "waiting_for",
    ];
    for service in &services {
        let object = service.as_object().expect("each service is an object");
        for key in keys {
            assert!(object.contains_key(key), "no `{key}` in {service:#}");
        }
        assert_eq!(service["kind"], "process", "{service:#}");
        assert!(pid_alive(pid_of(service)), "{service:#}");
        assert_eq!(service["container"], Value::Null, "{service:#}");
        assert_eq!(service["generation"], 1, "{service:#}");
        assert_eq!(service["restarts"], 0, "{service:#}");
        assert!(service["started_at_ms"].is_u64(), "{service:#}");
        assert!(service["ports"].is_array(), "{service:#}");
        assert_eq!(service["waiting_for"], Value::Null, "{service:#}");
    }
    let (api, worker) = (&services[0], &services[1]);
    assert_eq!(api["state"], "healthy", "{api:#}");
    assert_eq!(api["health"], "healthy", "{api:#}");
    assert_eq!(api["ports"], serde_json::json!([port]), "{api:#}");
    assert_eq!(worker["state"], "running", "{worker:#}");
    assert_eq!(worker["health"], Value::Null, "{worker:#}");
    assert_eq!(worker["ports"], serde_json::json!([]), "{worker:#}");

    // The table: a header, then one row per service with its state and pid.
    let table = project.run(&["ps"]);
    assert_eq!(table.code, 0, "{table:#?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    assert!(
        regex(r"^NAME +KIND +STATE +PID +GEN +RESTARTS +UPTIME +PORTS +HEALTH +LAST EVENT$")
            .is_match(lines[0]),
        "{}",
        table.stdout
    );
    for (line, service) in lines[1..].iter().zip(&services) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let expected = [
            service["name"].as_str().unwrap_or_default().to_string(),
            "process".to_string(),
            service["state"].as_str().unwrap_or_default().to_string(),
            pid_of(service).to_string(),
            "1".to_string(),
            "0".to_string(),
        ];
        assert_eq!(columns[..6], expected, "{}", table.stdout);
    }
    assert!(lines[1].contains(&format!(" {port} ")), "{}", table.stdout);
}

// ---------------------------------------------------------------------------------------
// restart, stop, start

#[test]
fn restart_stop_and_start_touch_only_the_named_service() {
    let project = Project::new().manifest(
        r#"
[services.a]
command = "{helper} --name a"

[services.b]
command = "{helper} --name b"
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let a = project.wait_for_state("a", "running", WAIT);
    let b = project.wait_for_state("b", "running", WAIT);
    let unchanged_a = |when: &str| {
        let now = project.service_status("a");
        assert_eq!(now["pid"], a["pid"], "a's pid changed {when}: {now:#}");
        assert_eq!(
            now["generation"], a["generation"],
            "a's generation changed {when}: {now:#}"
        );
        assert_eq!(now["state"], "running", "{when}: {now:#}");
    };

    let restart = project.run(&["restart", "b"]);
    assert_eq!(restart.code, 0, "{restart:#?}");
    // `restart` returns once the new instance runs.
    let restarted = project.service_status("b");
    assert_eq!(restarted["state"], "running", "{restarted:#}");
    assert_ne!(restarted["pid"], b["pid"], "{restarted:#}");
    assert!(
        restarted["generation"].as_u64() > b["generation"].as_u64(),
        "{restarted:#}"
    );
    assert!(
        restart
            .stdout
            .contains(&format!("b: running (pid {})", pid_of(&restarted))),
        "{restart:#?}"
    );
    assert_all_gone(&[("b before restart".into(), pid_of(&b))], "after restart");
    unchanged_a("by `restart b`");

    let stop = project.run(&["stop", "b"]);
    assert_eq!(stop.code, 0, "{stop:#?}");
    let stopped = project.wait_for_state("b", "stopped", WAIT);
    assert_eq!(stopped["pid"], Value::Null, "{stopped:#}");
    assert_all_gone(
        &[("b before stop".into(), pid_of(&restarted))],
        "after stop",
    );
    unchanged_a("by `stop b`");

    let start = project.run(&["start", "b"]);
    assert_eq!(start.code, 0, "{start:#?}");
    let started = project.service_status("b");
    assert_eq!(started["state"], "running", "{started:#}");
    assert!(pid_alive(pid_of(&started)), "{started:#}");
    assert_ne!(started["pid"], restarted["pid"], "{started:#}");
    unchanged_a("by `start b`");

    // An unknown service is a usage error, and changes nothing either.
    let unknown = project.run(&["restart", "nope"]);
    assert_eq!(unknown.code, 2, "{unknown:#?}");
    assert!(unknown.stderr.contains("nope"), "{unknown:#?}");
    unchanged_a("by `restart nope`");
}

// ---------------------------------------------------------------------------------------
// Nothing outlives fleet

#[test]
fn down_leaves_nothing_and_releases_the_project() {
    let project = escaping_fleet();
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let mut pids = escaping_pids(&project);
    pids.push(("supervisor".into(), fleet.supervisor_pid()));

    let down = project.run(&["down"]);
    assert_eq!(down.code, 0, "{down:#?}");
    assert_all_gone(&pids, "after `fleet down` returned");

    // The lock is free and the socket gone: commands say so.
    let endpoint = project.endpoint();
    assert!(
        !endpoint.socket.exists(),
        "{:?} is left behind",
        endpoint.socket
    );
    let ps = project.run(&["ps"]);
    assert_eq!(ps.code, 4, "{ps:#?}");
    assert_eq!(ps.stderr.trim_end(), not_running(&project), "{ps:#?}");
    project.assert_nothing_left();
}

#[test]
fn a_killed_supervisor_leaves_nothing_grandchildren_included() {
    let project = escaping_fleet();
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    let pids = escaping_pids(&project);

    sigkill(supervisor);
    assert_all_gone(
        &[("supervisor".into(), supervisor)],
        "after SIGKILL of the supervisor",
    );
    // The keeper notices the supervisor's death and sweeps.
    assert_all_gone(&pids, "2 s after the supervisor was SIGKILLed");
    let ps = project.run(&["ps"]);
    assert_eq!(ps.code, 4, "{ps:#?}");
    assert_eq!(ps.stderr.trim_end(), not_running(&project), "{ps:#?}");
    project.assert_nothing_left();
}

#[test]
fn a_second_up_after_a_crash_cleans_up_what_the_first_left() {
    let port = free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.web]
command = "{helper} --name web --port {port} --setsid-grandchild {dir}/setsid.pid"
ports = [{port}]
"#,
    );
    let first = project.up_detached(&[]);
    assert_eq!(first.up.code, 0, "{:#?}", first.up);
    let supervisor = first.supervisor_pid();
    let web = pid_of(&project.wait_for_state("web", "running", WAIT));
    let grandchild = wait_for_pidfile(&project.path("setsid.pid"), WAIT);

    // Crash hard enough that the keeper can't help: the keeper first (killed second,
    // it would sweep when it sees the supervisor die), then the supervisor.
    let keepers: Vec<u32> = children_of(supervisor)
        .into_iter()
        .filter(|child| is_keeper(*child))
        .collect();
    assert_eq!(
        keepers.len(),
        1,
        "the supervisor (pid {supervisor}) should have one keeper child: {:?}",
        children_of(supervisor)
            .iter()
            .map(|child| format!("{child}: {}", command_line(*child)))
            .collect::<Vec<_>>()
    );
    let keeper = keepers[0];
    sigkill(keeper);
    assert_all_gone(&[("keeper".into(), keeper)], "after SIGKILL");
    sigkill(supervisor);
    assert_all_gone(&[("supervisor".into(), supervisor)], "after SIGKILL");
    // Precondition of the test: the crash did leave strays (and one holds the port).
    for (what, pid) in [("web", web), ("its grandchild", grandchild)] {
        assert!(
            pid_alive(pid),
            "{what} (pid {pid}) died with its supervisor"
        );
    }
    assert!(port_answers(port), "the stray web no longer holds {port}");

    std::fs::remove_file(project.path("setsid.pid")).expect("setsid.pid exists");
    let second = project.up_detached(&[]);
    assert_eq!(second.up.code, 0, "{:#?}", second.up);
    assert_all_gone(
        &[
            ("the first run's web".into(), web),
            ("the first run's grandchild".into(), grandchild),
        ],
        "after the second `fleet up -d`",
    );
    let new_web = pid_of(&project.wait_for_state("web", "running", WAIT));
    assert_ne!(new_web, web);
    let new_grandchild = wait_for_pidfile(&project.path("setsid.pid"), WAIT);
    assert!(pid_alive(new_web) && pid_alive(new_grandchild));

    let supervisor_log = std::fs::read_to_string(project.path(".fleet/supervisor.log"))
        .expect("a detached fleet writes .fleet/supervisor.log");
    let told = format!("{}{supervisor_log}", second.up.stderr);
    assert!(
        told.contains("fleet: cleaned up after a previous run that did not stop cleanly"),
        "neither `up -d` nor .fleet/supervisor.log mention the cleanup:\n{:#?}\n{supervisor_log}",
        second.up
    );
}

// ---------------------------------------------------------------------------------------
// reload

#[test]
fn reload_restarts_changed_starts_added_and_stops_removed_services() {
    let project = Project::new().manifest(
        r#"
[services.keep]
command = "{helper} --name keep"

[services.change]
command = "{helper} --name change"

[services.gone]
command = "{helper} --name gone"
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let keep = project.wait_for_state("keep", "running", WAIT);
    let change = project.wait_for_state("change", "running", WAIT);
    let gone = project.wait_for_state("gone", "running", WAIT);

    project.rewrite(
        "fleet.toml",
        r#"
[services.keep]
command = "{helper} --name keep"

[services.change]
command = "{helper} --name change"
env = { RELOADED = "1" }

[services.added]
command = "{helper} --name added"
"#,
    );
    let reload = project.run(&["reload"]);
    assert_eq!(reload.code, 0, "{reload:#?}");
    let changed = project.wait_for_status("change", "running anew", WAIT, |status| {
        status["state"] == "running" && status["pid"] != change["pid"]
    });
    let added = project.wait_for_state("added", "running", WAIT);
    assert!(pid_alive(pid_of(&changed)) && pid_alive(pid_of(&added)));
    assert_all_gone(
        &[
            ("gone".into(), pid_of(&gone)),
            ("change before the reload".into(), pid_of(&change)),
        ],
        "after reload",
    );
    let environ = std::fs::read(format!("/proc/{}/environ", pid_of(&changed)))
        .expect("the changed service's environment is readable");
    assert!(
        environ
            .split(|byte| *byte == 0)
            .any(|entry| entry == b"RELOADED=1"),
        "the restarted `change` runs without its new env"
    );
    let untouched = project.service_status("keep");
    assert_eq!(untouched["pid"], keep["pid"], "{untouched:#}");
    assert_eq!(untouched["generation"], keep["generation"], "{untouched:#}");
    let names: Vec<Value> = project
        .ps_json()
        .iter()
        .map(|service| service["name"].clone())
        .collect();
    assert!(
        !names.contains(&Value::from("gone")),
        "a removed service is still listed: {names:?}"
    );

    // A broken manifest is rejected as a whole: exit 2, the rendered error, no change.
    let before: Vec<(Value, Value)> = project
        .ps_json()
        .iter()
        .map(|service| (service["name"].clone(), service["pid"].clone()))
        .collect();
    project.rewrite(
        "fleet.toml",
        r#"
[services.keep]
comand = "{helper} --name keep"

[services.change]
command = "{helper} --name change"
"#,
    );
    let rejected = project.run(&["reload"]);
    assert_eq!(rejected.code, 2, "{rejected:#?}");
    assert!(
        rejected
            .stderr
            .contains("error: unknown key `comand` in service `keep`")
            && rejected.stderr.contains("fleet.toml:3:1")
            && rejected.stderr.contains("did you mean `command`?"),
        "{rejected:#?}"
    );
    let after: Vec<(Value, Value)> = project
        .ps_json()
        .iter()
        .map(|service| (service["name"].clone(), service["pid"].clone()))
        .collect();
    assert_eq!(after, before, "a rejected reload changed the fleet");
}

// ---------------------------------------------------------------------------------------
// The socket

#[test]
fn the_socket_survives_bad_clients_and_keeps_serving() {
    let project = Project::new().manifest(
        r#"
[services.a]
command = "{helper} --name a"

[services.b]
command = "{helper} --name b"
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let a = project.wait_for_state("a", "running", WAIT);
    let ps = r#"{"version":1,"op":"ps"}"#;
    let assert_ok = |reply: &Value, after: &str| {
        assert!(
            reply["ok"]["services"].is_array(),
            "`ps` after {after} got {reply}"
        );
    };

    let mut client = Control::connect(&project);
    let hello = client.request(r#"{"version":1,"op":"hello"}"#);
    assert_eq!(hello["ok"]["version"], 1, "{hello}");
    assert_eq!(hello["ok"]["pid"], fleet.supervisor_pid(), "{hello}");
    assert_eq!(
        hello["ok"]["manifest"],
        project.manifest_path().to_string_lossy().as_ref(),
        "{hello}"
    );

    let reply = client.request("this is not json");
    assert_eq!(error_code(&reply), Some("bad_request"), "{reply}");
    assert!(reply["error"]["message"].is_string(), "{reply}");
    assert_ok(&client.request(ps), "a garbage line");

    let reply = client.request(r#"{"version":1,"op":"frobnicate"}"#);
    assert_eq!(error_code(&reply), Some("unknown_request"), "{reply}");
    assert_ok(&client.request(ps), "an unknown request");

    let reply = client.request(r#"{"version":99,"op":"ps"}"#);
    assert_eq!(error_code(&reply), Some("unsupported_version"), "{reply}");
    assert_ok(&client.request(ps), "an unsupported version");

    let reply = client.request(
        r#"{"version":1,"op":"command","command":{"command":"restart","services":["nope"]}}"#,
    );
    assert_eq!(error_code(&reply), Some("unknown_service"), "{reply}");
    assert_ok(&client.request(ps), "a command for an unknown service");

    // Half a request: meanwhile, another client is served. (Oversized, endless and
    // silent requests are in `hostile.rs`.)
    client.send(br#"{"version":1,"#);
    let mut other = Control::connect(&project);
    assert_ok(&other.request(ps), "another client's unfinished request");
    assert_ok(
        &client.request(r#""op":"ps"}"#),
        "a request sent in two parts",
    );

    // A subscriber that leaves mid-stream, and one that never reads while events
    // flow, disturb nobody.
    let mut leaving = Control::connect(&project);
    let first = leaving.request(r#"{"version":1,"op":"subscribe"}"#);
    assert!(first["stream"]["snapshot"].is_object(), "{first}");
    drop(leaving);
    let mut silent = Control::connect(&project);
    silent.send(b"{\"version\":1,\"op\":\"subscribe\"}\n");
    for _ in 0..3 {
        let restart = project.run(&["restart", "b"]);
        assert_eq!(restart.code, 0, "{restart:#?}");
    }
    assert_ok(&client.request(ps), "subscribers that left or stalled");
    assert_ok(
        &Control::connect(&project).request(ps),
        "the same, for a new client",
    );
    let now = project.service_status("a");
    assert_eq!(now["pid"], a["pid"], "{now:#}");
    assert!(pid_alive(fleet.supervisor_pid()));
    drop(silent);
}

#[test]
fn a_request_that_is_not_a_json_object_is_a_bad_request() {
    // Regression: valid JSON that is not an object (`[1,2]`, `42`) was answered
    // `unsupported_version` ("the request has none"), sending a client looking for a
    // version mismatch instead of its malformed request.
    let project = Project::new().manifest(
        r#"
[services.a]
command = "{helper} --name a"
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let mut client = Control::connect(&project);
    for line in ["[1,2]", "42", r#""ps""#] {
        let reply = client.request(line);
        assert_eq!(error_code(&reply), Some("bad_request"), "{line} -> {reply}");
    }
    let reply = client.request(r#"{"version":1,"op":"ps"}"#);
    assert!(reply["ok"]["services"].is_array(), "{reply}");
}

// ---------------------------------------------------------------------------------------
// Logs

#[test]
fn log_rotation_keeps_the_newest_lines() {
    let project = Project::new().manifest(
        r#"
[project]
log_max_size = "20KB"

[services.svc]
command = "{helper} --name svc --print 2000 --sleep-forever"
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    assert!(
        wait_until(WAIT, || project
            .log_lines("svc")
            .iter()
            .any(|line| line.contains("line 0000002000 "))),
        "svc.log never got line 2000"
    );

    let log = project.log_path("svc");
    let rotated = |n: u32| Path::new(&format!("{}.{n}", log.display())).to_path_buf();
    for n in 1..=3 {
        assert!(rotated(n).exists(), "{:?} is missing", rotated(n));
    }
    assert!(!rotated(4).exists(), "log_keep is 3, yet svc.log.4 exists");
    // Oldest to newest, the kept files hold one unbroken run of lines ending at 2000.
    let sequence = regex(r" out line (\d{10}) ");
    let mut numbers: Vec<u64> = Vec::new();
    for path in [rotated(3), rotated(2), rotated(1), log] {
        let text = std::fs::read_to_string(&path).expect("log files are UTF-8");
        numbers.extend(
            sequence
                .captures_iter(&text)
                .map(|found| found[1].parse::<u64>().expect("ten digits")),
        );
    }
    let expected: Vec<u64> = (numbers[0]..=2000).collect();
    assert_eq!(numbers, expected, "the kept files skip or repeat lines");

    let logs = project.run(&["logs", "svc", "-n", "5"]);
    assert_eq!(logs.code, 0, "{logs:#?}");
    let shown: Vec<u64> = logs
        .stdout
        .lines()
        .map(|line| {
            regex(r"^svc \| line (\d{10}) x+$")
                .captures(line)
                .unwrap_or_else(|| panic!("unexpected line {line:?}"))[1]
                .parse()
                .expect("ten digits")
        })
        .collect();
    assert_eq!(shown, [1996, 1997, 1998, 1999, 2000], "{logs:#?}");
}

#[test]
fn logs_merges_services_by_time_and_works_after_down() {
    // alpha-1 < b-1 < alpha-2 by causality: b starts once alpha printed alpha-1 (its
    // log probe), and alpha prints alpha-2 only after b's line reached b's log file.
    let project = Project::new().manifest(
        r#"
[services.alpha]
command = "sh -c 'echo alpha-1; while [ ! -e {dir}/go ]; do sleep 0.01; done; echo alpha-2; exec sleep 60'"
health = { log = "alpha-1" }

[services.b]
command = "sh -c 'echo b-1; while ! grep -q b-1 {dir}/.fleet/logs/b.log; do sleep 0.01; done; touch {dir}/go; exec sleep 60'"
depends_on = { alpha = "healthy" }
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    assert!(
        wait_until(WAIT, || project
            .log_lines("alpha")
            .iter()
            .any(|line| line.ends_with(" out alpha-2"))),
        "alpha.log: {:#?}",
        project.log_lines("alpha")
    );
    let expected = ["alpha | alpha-1", "b     | b-1", "alpha | alpha-2"];
    let ours = |stdout: &str| -> Vec<String> {
        stdout
            .lines()
            .filter(|line| regex(r"\| (alpha-\d|b-1)$").is_match(line))
            .map(str::to_string)
            .collect()
    };
    let live = project.run(&["logs"]);
    assert_eq!(live.code, 0, "{live:#?}");
    assert_eq!(ours(&live.stdout), expected, "{live:#?}");

    let down = project.run(&["down"]);
    assert_eq!(down.code, 0, "{down:#?}");
    let after = project.run(&["logs"]);
    assert_eq!(after.code, 0, "{after:#?}");
    assert_eq!(ours(&after.stdout), expected, "{after:#?}");

    let three = project.run(&["logs", "-n", "3"]);
    assert_eq!(three.code, 0, "{three:#?}");
    let lines: Vec<&str> = three.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{three:#?}");
    // The last three lines of the whole merged log.
    let all: Vec<&str> = after.stdout.lines().collect();
    assert_eq!(lines, all[all.len() - 3..], "{three:#?}");
    for line in lines {
        assert!(regex(r"^(alpha|b    ) \| ").is_match(line), "{line:?}");
    }

    let unknown = project.run(&["logs", "alpah"]);
    assert_eq!(unknown.code, 2, "{unknown:#?}");
    assert!(
        unknown.stderr.contains("unknown service `alpah`")
            && unknown.stderr.contains("did you mean `alpha`?"),
        "{unknown:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Without a fleet

#[test]
fn commands_that_need_a_fleet_say_none_is_running() {
    let project = Project::new().manifest(
        r#"
[services.x]
command = "{helper} --name x"
"#,
    );
    for args in [&["ps"][..], &["ps", "--json"], &["down"], &["restart", "x"]] {
        let finished = project.run(args);
        assert_eq!(finished.code, 4, "fleet {args:?}: {finished:#?}");
        assert_eq!(
            finished.stderr.trim_end(),
            not_running(&project),
            "fleet {args:?}: {finished:#?}"
        );
        assert_eq!(finished.stdout, "", "fleet {args:?}: {finished:#?}");
    }
    assert!(
        project.log_lines("x").is_empty(),
        "a client command started something"
    );
}
