//! `fleet run` and `fleet exec` with the real binary: real services (`python3 -m
//! http.server`, `sh`, the helper), real commands (`python3 -c`, `sh -c`), a real
//! container built locally, and the artifacts, summary, JUnit and exit codes they leave.
//!
//! # Theory of operation
//! - Every run writes into its own folder (the default `.fleet/runs/<time>/`, or one
//!   given with `--artifacts`); [`Artifacts`] reads it back: `summary.json`, logs,
//!   `merged.log`, `cmd.log`.
//! - CMD proves things from the inside: it writes files (the environment it got, that
//!   it ran at all) and waits on the fleet's own log lines rather than sleeping.
//! - "Nothing left" is checked the way the harness knows: no process carries the
//!   project's test marker, which every process a test starts inherits.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{
    fleet_binary, free_port, free_ports, pid_alive, regex, wait_for_pidfile, wait_until, Finished,
    Project, WAIT,
};

/// A run of a small fleet: start, CMD, teardown. Generous for a busy CI machine.
const RUN_WAIT: Duration = Duration::from_secs(60);

/// What a run left in its folder.
struct Artifacts {
    dir: PathBuf,
    summary: Value,
}

impl Artifacts {
    fn read(dir: &Path) -> Artifacts {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {path:?}: {err}"));
        let summary = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{path:?} is not JSON ({err}):\n{text}"));
        Artifacts {
            dir: dir.to_path_buf(),
            summary,
        }
    }

    /// The only run folder under the project's `.fleet/runs/`.
    fn only(project: &Project) -> Artifacts {
        let dirs = run_dirs(project);
        assert_eq!(dirs.len(), 1, "expected one run folder: {dirs:?}");
        Artifacts::read(&dirs[0])
    }

    fn text(&self, relative: &str) -> String {
        let path = self.dir.join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {path:?}: {err}"))
    }

    /// The summary's row for one instance (`web`, `worker.2`).
    fn service(&self, name: &str) -> &Value {
        self.summary["services"]
            .as_array()
            .and_then(|rows| rows.iter().find(|row| row["name"] == name))
            .unwrap_or_else(|| panic!("no `{name}` in the summary: {:#}", self.summary))
    }

    fn states(&self, name: &str) -> Vec<String> {
        self.service(name)["states"]
            .as_array()
            .map(|states| {
                states
                    .iter()
                    .map(|state| state["state"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The run folders under `.fleet/runs/`, oldest first.
fn run_dirs(project: &Project) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(project.path(".fleet/runs"))
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn fleet_run(project: &Project, args: &[&str]) -> Finished {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    project.run_within(&all, RUN_WAIT)
}

#[test]
fn a_passing_command_gets_the_fleets_addresses_and_every_artifact_is_kept() {
    let port = free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.web]
command = "python3 -m http.server {port} --bind 127.0.0.1"
ports = [{port}]
health = { http = "http://127.0.0.1:{port}/", interval = "200ms" }

[services.worker]
command = "{helper} --name worker --lines-per-sec 20"
replicas = 2
depends_on = { web = "healthy" }
"#,
    );
    let check = r#"
import json, os, urllib.request
answer = urllib.request.urlopen(os.environ["FLEET_WEB_URL"] + "/fleet.toml").status
env = {key: value for key, value in os.environ.items() if key.startswith("FLEET_")}
json.dump(env, open("env.json", "w"))
print("fetched", answer, flush=True)
"#;
    let finished = fleet_run(&project, &["--", "python3", "-c", check]);
    assert_eq!(finished.code, 0, "{finished:#?}");
    // CMD's output is streamed to fleet run's own stdout; fleet's lines go to stderr.
    assert_eq!(finished.stdout, "fetched 200\n", "{finished:#?}");
    assert!(
        finished.stderr.contains("fleet: run passed (exit 0)"),
        "{finished:#?}"
    );

    let run = Artifacts::only(&project);
    let env: Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("env.json")).unwrap()).unwrap();
    assert_eq!(env["FLEET_WEB_PORT"], port.to_string());
    assert_eq!(env["FLEET_WEB_URL"], format!("http://127.0.0.1:{port}"));
    assert_eq!(env["FLEET_RUN_DIR"], run.dir.to_string_lossy().as_ref());
    assert!(
        env.get("FLEET_WORKER_PORT").is_none(),
        "worker has no port: {env:#}"
    );

    let summary = &run.summary;
    assert_eq!(summary["outcome"], "passed");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["command"]["ran"], true);
    assert_eq!(summary["command"]["exit_code"], 0);
    assert_eq!(summary["teardown"]["clean"], true, "{summary:#}");
    assert_eq!(summary["teardown"]["processes"], serde_json::json!([]));
    for part in ["up", "wait", "command", "down", "teardown_check"] {
        assert!(
            summary["durations_ms"][part].is_u64(),
            "no `{part}` duration: {summary:#}"
        );
    }
    let names: Vec<&str> = summary["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "worker.1", "worker.2"]);
    for name in names {
        let row = run.service(name);
        assert_eq!(row["ready"], true, "{row:#}");
        assert!(row["time_to_healthy_ms"].as_u64().unwrap() > 0, "{row:#}");
        assert_eq!(row["restarts"], serde_json::json!([]));
        assert_eq!(row["incidents"], serde_json::json!([]));
        // It ran, and it is gone.
        let pid = row["pids"][0].as_u64().unwrap() as u32;
        assert!(!pid_alive(pid), "{name} (pid {pid}) outlived the run");
        // Stopped by teardown, after what it was doing when CMD ended.
        assert_eq!(run.states(name).last().map(String::as_str), Some("stopped"));
    }
    assert_eq!(run.service("web")["state_at_end"], "healthy");
    assert_eq!(run.service("worker.2")["state_at_end"], "running");
    let web_states = run.states("web");
    let starting = web_states.iter().position(|s| s == "starting");
    let healthy = web_states.iter().position(|s| s == "healthy");
    assert!(
        starting.is_some() && starting < healthy,
        "web's states: {web_states:?}"
    );
    // The web server became healthy before the workers, which waited for it.
    assert!(
        run.service("web")["time_to_healthy_ms"].as_u64()
            <= run.service("worker.1")["time_to_healthy_ms"].as_u64()
    );

    // Every instance's whole log, the merged log and CMD's output.
    assert!(run.text("logs/web.log").contains("GET /fleet.toml"));
    assert!(run.text("logs/worker.log").contains("tick"));
    assert!(run.text("logs/worker.2.log").contains("tick"));
    assert_eq!(run.service("worker.2")["log"], "logs/worker.2.log");
    let cmd = run.text("cmd.log");
    assert!(
        regex(r"^\d{4}-\d\d-\d\dT[\d:.]{12}Z out fetched 200\n$").is_match(&cmd),
        "{cmd}"
    );
    let merged = run.text("merged.log");
    for label in ["web", "worker.1", "worker.2", "[cmd]"] {
        assert!(
            merged
                .lines()
                .any(|line| line.split(' ').nth(1) == Some(label)),
            "no `{label}` line in merged.log:\n{merged}"
        );
    }
    let stamps: Vec<&str> = merged.lines().map(|line| &line[..24]).collect();
    assert!(
        stamps.windows(2).all(|pair| pair[0] <= pair[1]),
        "merged.log is not in time order"
    );
    // The run's own manifest reaches the run, not the project's fleet.
    assert!(run.text("fleet.toml").contains(&format!(
        "name = \"{}\"",
        summary["run_project"].as_str().unwrap()
    )));
    project.assert_nothing_left();
}

#[test]
fn a_failing_command_returns_its_code_and_keeps_the_logs() {
    let project = Project::new().manifest(
        r#"
[services.api]
command = "sh -c 'echo api up; exec sleep 1000'"
health = { log = "api up" }
"#,
    );
    let finished = fleet_run(
        &project,
        &[
            "--artifacts",
            "out",
            "--",
            "sh",
            "-c",
            "echo checking; echo boom >&2; exit 7",
        ],
    );
    assert_eq!(finished.code, 7, "{finished:#?}");
    assert_eq!(finished.stdout, "checking\n");
    assert!(finished.stderr.contains("boom\n"), "{finished:#?}");
    let run = Artifacts::read(&project.path("out"));
    assert_eq!(run.summary["outcome"], "command_failed");
    assert_eq!(run.summary["exit_code"], 7);
    assert_eq!(run.summary["command"]["exit_code"], 7);
    assert!(run.text("logs/api.log").contains("out api up"));
    let cmd = run.text("cmd.log");
    assert!(
        cmd.contains(" out checking\n") && cmd.contains(" err boom\n"),
        "{cmd}"
    );
    assert_eq!(run.summary["teardown"]["clean"], true);

    // The folder holds only what a run writes: the next run replaces it.
    let finished = run_again_into_out(&project, "kill -TERM $$");
    assert_eq!(
        finished.code,
        128 + 15,
        "a signal is reported as a shell does"
    );
    let run = Artifacts::read(&project.path("out"));
    assert_eq!(run.summary["command"]["signal"], "SIGTERM");
    assert!(
        !run.text("cmd.log").contains("checking"),
        "the old run's files are gone"
    );

    // A folder with anything else in it is not taken, and nothing starts.
    project.rewrite("mine/notes.txt", "keep me");
    let refused = fleet_run(&project, &["--artifacts", "mine", "--", "true"]);
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert!(
        refused
            .stderr
            .contains("holds other files than a run's (notes.txt)"),
        "{refused:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(project.path("mine/notes.txt")).unwrap(),
        "keep me"
    );
    project.assert_nothing_left();
}

fn run_again_into_out(project: &Project, script: &str) -> Finished {
    fleet_run(project, &["--artifacts", "out", "--", "sh", "-c", script])
}

#[test]
fn a_service_that_never_becomes_healthy_gives_5_and_the_command_never_runs() {
    let port = free_port();
    let project = Project::new().var("port", port).manifest(
        r#"
[services.db]
command = "sh -c 'echo db is thinking; exec sleep 1000'"
health = { tcp = {port}, interval = "100ms" }

[services.api]
command = "sleep 1000"
depends_on = { db = "healthy" }
"#,
    );
    let ran = project.path("cmd-ran");
    let finished = fleet_run(
        &project,
        &[
            "--wait-timeout",
            "1s",
            "--junit",
            "junit.xml",
            "--",
            "touch",
            ran.to_str().unwrap(),
        ],
    );
    assert_eq!(finished.code, 5, "{finished:#?}");
    assert!(!ran.exists(), "CMD ran although the fleet was not ready");
    let stderr = project.redact(&finished.stderr);
    assert!(
        stderr.contains("fleet: not every service became ready within 1s; CMD did not run"),
        "{stderr}"
    );
    assert!(
        regex(&format!(
            r"db: starting for [\d.]+m?s, last probe: 127\.0\.0\.1:{port}: connection refused"
        ))
        .is_match(&stderr),
        "{stderr}"
    );
    assert!(stderr.contains("  db | db is thinking"), "{stderr}");
    assert!(
        stderr.contains("api: waiting (waiting for db (healthy))"),
        "{stderr}"
    );

    let run = Artifacts::only(&project);
    assert_eq!(run.summary["outcome"], "not_ready");
    assert_eq!(run.summary["command"]["ran"], false);
    assert_eq!(run.service("db")["ready"], false);
    assert_eq!(run.service("db")["state_at_end"], "starting");
    assert!(
        run.service("db")["last_probe_error"]
            .as_str()
            .is_some_and(|error| error.contains("connection refused")),
        "{:#}",
        run.summary
    );
    assert_eq!(run.summary["teardown"]["clean"], true);
    let junit = std::fs::read_to_string(project.path("junit.xml")).unwrap();
    assert!(junit.contains("<skipped message=\"not every service became ready within 1s\"/>"));
    project.assert_nothing_left();
}

#[test]
fn a_service_crashing_mid_run_is_in_the_summary_and_fails_the_run_with_fail_on_restart() {
    let project = Project::new().manifest(
        r#"
[services.flaky]
command = "sh -c 'echo flaky up; sleep 0.3; echo flaky dying; exit 3'"
backoff = { initial = "0s", max = "1s" }
"#,
    );
    // CMD waits for the crash in the service's log, so it happens while CMD runs.
    let wait_for_crash = "until grep -q 'exited with code 3' \"$FLEET_RUN_DIR/logs/flaky.log\"; \
                          do sleep 0.05; done; echo saw the crash";
    for (flags, code, outcome) in [
        (vec![], 0, "passed"),
        (vec!["--fail-on-restart"], 1, "service_restarted"),
    ] {
        let mut args = flags.clone();
        args.extend(["--", "sh", "-c", wait_for_crash]);
        let finished = fleet_run(&project, &args);
        assert_eq!(finished.code, code, "{flags:?}: {finished:#?}");
        assert_eq!(finished.stdout, "saw the crash\n");
        // Reported on stderr as it happened.
        assert!(
            finished
                .stderr
                .contains("fleet: flaky: exited with code 3, restart 1 in 0ms"),
            "{finished:#?}"
        );
        let run = Artifacts::read(run_dirs(&project).last().unwrap());
        assert_eq!(run.summary["outcome"], outcome);
        let restart = &run.service("flaky")["restarts"][0];
        assert_eq!(restart["cause"], "crash");
        assert_eq!(restart["reason"], "exited with code 3");
        assert_eq!(restart["generation"], 1);
        assert!(restart["since_start_ms"].as_u64().unwrap() > 0);
        assert!(
            run.service("flaky")["incidents"][0]["text"]
                .as_str()
                .is_some_and(|text| text.starts_with("flaky: exited with code 3")),
            "{:#}",
            run.summary
        );
    }
    project.assert_nothing_left();
}

#[test]
fn two_runs_at_once_in_one_folder_collide_neither_with_each_other_nor_with_the_developers_fleet() {
    // No fixed ports: a run uses the manifest's own ports, which two fleets cannot
    // both hold; everything else of a run is its own.
    let project = Project::new().manifest(
        r#"
[services.worker]
command = "{helper} --name worker --lines-per-sec 10"
health = { log = "worker started" }
"#,
    );
    let developer = project.up_detached(&["--wait"]);
    assert_eq!(developer.up.code, 0, "{:#?}", developer.up);
    let developers_pid = project.service_status("worker")["pid"].clone();

    // Each CMD records what its own fleet looks like, then waits for the other run to
    // have started too, so the two fleets overlap.
    let script =
        "fleet -f \"$FLEET_RUN_DIR/fleet.toml\" ps --json > \"$FLEET_RUN_DIR/../ps-$1.json\"; \
                  touch \"$FLEET_RUN_DIR/../started-$1\"; \
                  until [ -e \"$FLEET_RUN_DIR/../started-$2\" ]; do sleep 0.05; done";
    let fleet_dir = fleet_binary()
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let path = format!("{fleet_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let spawn = |me: &str, other: &str| {
        let mut command = project.command(&[
            "run",
            "--artifacts",
            &format!("runs/{me}"),
            "--",
            "sh",
            "-c",
            script,
            "sh",
            me,
            other,
        ]);
        command
            .env("PATH", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().unwrap()
    };
    let first = spawn("a", "b");
    let second = spawn("b", "a");
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    for output in [&first, &second] {
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let ps = |me: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(project.path(&format!("runs/ps-{me}.json"))).unwrap(),
        )
        .unwrap()
    };
    let (a, b) = (ps("a"), ps("b"));
    assert_ne!(a[0]["pid"], b[0]["pid"], "each run has its own worker");
    assert_ne!(a[0]["pid"], developers_pid);
    assert_ne!(b[0]["pid"], developers_pid);
    let summary = |me: &str| Artifacts::read(&project.path(&format!("runs/{me}"))).summary;
    assert_ne!(summary("a")["run_project"], summary("b")["run_project"]);
    // The developer's fleet did not notice.
    assert_eq!(project.service_status("worker")["pid"], developers_pid);
    assert_eq!(project.service_status("worker")["state"], "healthy");
    assert!(
        project.log_lines("worker").len() > 1,
        "the developer's log is its own"
    );
    drop(developer);
    project.assert_nothing_left();
}

#[test]
fn kill_9_of_fleet_run_leaves_nothing_and_the_next_run_starts_clean() {
    let project = Project::new().manifest(
        r#"
[services.web]
command = "{helper} --name web --grandchild {dir}/grandchild.pid --setsid-grandchild {dir}/setsid.pid"
"#,
    );
    let mut running = project.spawn(&[
        "run",
        "--",
        "sh",
        "-c",
        "sleep 1000 & echo $! > cmd-child.pid; sleep 1000",
    ]);
    let pids = [
        wait_for_pidfile(&project.path("grandchild.pid"), WAIT),
        wait_for_pidfile(&project.path("setsid.pid"), WAIT),
        wait_for_pidfile(&project.path("cmd-child.pid"), WAIT),
    ];
    running.signal(Signal::SIGKILL);
    running.wait_exit(WAIT);
    // The keeper kills the services, their escaped grandchildren, and CMD with what it
    // started.
    assert!(
        wait_until(WAIT, || pids.iter().all(|pid| !pid_alive(*pid))),
        "outlived fleet run: {:?}",
        pids.iter()
            .filter(|pid| pid_alive(**pid))
            .collect::<Vec<_>>()
    );
    project.assert_nothing_left();

    let finished = fleet_run(&project, &["--", "true"]);
    assert_eq!(finished.code, 0, "{finished:#?}");
    assert!(
        !finished.stderr.contains("cleaned up"),
        "nothing was left to clean: {finished:#?}"
    );
    let last = Artifacts::read(run_dirs(&project).last().unwrap());
    assert_eq!(last.summary["teardown"]["clean"], true);
    project.assert_nothing_left();
}

#[test]
fn ctrl_c_stops_the_command_then_the_fleet_and_exits_130() {
    let project = Project::new().manifest(
        r#"
[services.web]
command = "sleep 1000"
"#,
    );
    // In a process group of its own, as a shell runs a job; Ctrl-C is SIGINT to it all.
    let mut command = project.command(&[
        "run",
        "--",
        "sh",
        "-c",
        "trap 'echo CMD got SIGINT; exit 130' INT; touch cmd-started; while :; do sleep 0.05; done",
    ]);
    command
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    let pgid = Pid::from_raw(child.id() as i32);
    assert!(wait_until(WAIT, || project.path("cmd-started").exists()));
    let started = Instant::now();
    killpg(pgid, Signal::SIGINT).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "CMD ended on its Ctrl-C; fleet run should not wait for its grace period"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "CMD got SIGINT\n");
    let run = Artifacts::only(&project);
    assert_eq!(run.summary["outcome"], "interrupted");
    assert_eq!(run.summary["teardown"]["clean"], true);
    project.assert_nothing_left();
}

#[test]
fn a_command_that_does_not_exist_exits_127_and_the_fleet_is_torn_down() {
    let project = Project::new().manifest(
        r#"
[services.web]
command = "{helper} --name web --pidfile {dir}/web.pid"
"#,
    );
    let finished = fleet_run(&project, &["--", "fleet-test-no-such-command", "--flag"]);
    assert_eq!(finished.code, 127, "{finished:#?}");
    assert!(
        finished
            .stderr
            .contains("fleet: cannot run `fleet-test-no-such-command`: command not found"),
        "{finished:#?}"
    );
    let web = crate::support::read_pidfile(&project.path("web.pid")).expect("web ran");
    assert!(!pid_alive(web), "the fleet was not torn down");
    let run = Artifacts::only(&project);
    assert_eq!(run.summary["outcome"], "command_not_run");
    assert_eq!(run.summary["command"]["ran"], false);
    assert_eq!(run.summary["teardown"]["clean"], true);

    // No `--` or no CMD: a usage error, and nothing starts.
    for args in [&["run"][..], &["run", "web"], &["run", "--"]] {
        let usage = project.run(args);
        assert_eq!(usage.code, 2, "{args:?}: {usage:#?}");
    }
    assert_eq!(
        run_dirs(&project).len(),
        1,
        "a usage error made a run folder"
    );
    project.assert_nothing_left();
}

#[test]
fn junit_output_passes_a_junit_schema() {
    let project = Project::new().manifest(
        r#"
[services.ok]
command = "sh -c 'echo \"ok <&> fine\"; exec sleep 1000'"
health = { log = "ok" }

[services.flaky]
command = "sh -c 'printf \"\\033[31mred\\033[0m\\n\"; sleep 0.2; exit 2'"
backoff = { initial = "0s", max = "1s" }
"#,
    );
    let wait_for_crash = "until grep -q 'exited with code 2' \"$FLEET_RUN_DIR/logs/flaky.log\"; \
                          do sleep 0.05; done; echo 'a <failing> & \"quoted\" test'; exit 1";
    let failed = fleet_run(
        &project,
        &[
            "--junit",
            "reports/failed.xml",
            "--",
            "sh",
            "-c",
            wait_for_crash,
        ],
    );
    assert_eq!(failed.code, 1, "{failed:#?}");
    let never = Project::new().manifest(
        r#"
[services.slow]
command = "sleep 1000"
health = { exec = "false", interval = "100ms" }
"#,
    );
    let skipped = fleet_run(
        &never,
        &[
            "--wait-timeout",
            "300ms",
            "--junit",
            "skipped.xml",
            "--",
            "true",
        ],
    );
    assert_eq!(skipped.code, 5, "{skipped:#?}");

    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run/junit.xsd");
    let validate = |file: &Path| {
        Command::new("python3")
            .args([
                "-c",
                "import sys, xmlschema\nxmlschema.XMLSchema(sys.argv[1]).validate(sys.argv[2])",
            ])
            .arg(&schema)
            .arg(file)
            .output()
            .expect("python3 runs")
    };
    // The check can fail: a test case without its classname is not JUnit.
    project.rewrite(
        "not-junit.xml",
        "<testsuites><testsuite name=\"s\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"0\" \
         timestamp=\"2026-01-01T00:00:00\" hostname=\"h\"><testcase name=\"a\" time=\"0\"/>\
         </testsuite></testsuites>",
    );
    assert!(!validate(&project.path("not-junit.xml")).status.success());
    for (file, tests, failures, skipped) in [
        (project.path("reports/failed.xml"), 3, 2, 0),
        (never.path("skipped.xml"), 2, 1, 1),
    ] {
        let xml = std::fs::read_to_string(&file).unwrap();
        let checked = validate(&file);
        assert!(
            checked.status.success(),
            "{file:?} does not pass the JUnit schema (python3 with xmlschema, which .ci/run installs):\n{}\n{xml}",
            String::from_utf8_lossy(&checked.stderr)
        );
        assert!(
            xml.contains(&format!(
                "tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\""
            )),
            "{xml}"
        );
    }
    let xml = std::fs::read_to_string(project.path("reports/failed.xml")).unwrap();
    assert!(xml.contains(
        "<testcase classname=\"fleet.services\" name=\"ok became healthy and never crashed\""
    ));
    assert!(xml.contains("<failure message=\"flaky: exited with code 2, restart 1 in 0ms"));
    assert!(
        xml.contains("a &lt;failing&gt; &amp; &quot;quoted&quot; test"),
        "{xml}"
    );
    assert!(xml.contains("<failure message=\"exited with code 1\" type=\"exit_code\"/>"));
    project.assert_nothing_left();
    never.assert_nothing_left();
}

#[test]
fn fleet_exec_runs_a_command_in_a_process_services_context() {
    let port = free_ports(2);
    let project = Project::new()
        .var("port", port)
        .file("app/.keep", "")
        .file(
            "app.env",
            "FROM_FILE=from the env file\nGREETING=overridden\n",
        )
        .manifest(
            r#"
[services.web]
command = "sleep 1000"
cwd = "app"
env = { GREETING = "hello" }
env_file = "app.env"
ports = [{port}]
replicas = 2
"#,
        );
    let script = "echo \"$PWD|$GREETING|$FROM_FILE|$PORT|$FLEET_SERVICE|$FLEET_REPLICA|${FLEET_INSTANCE:-none}\"; exit 9";
    let exec = project.run(&["exec", "web.2", "--", "sh", "-c", script]);
    assert_eq!(exec.code, 9, "{exec:#?}");
    assert_eq!(
        exec.stdout,
        format!(
            "{}|hello|from the env file|{}|web|1|none\n",
            project.path("app").display(),
            port + 1
        )
    );
    let replica_one = project.run(&["exec", "web", "--", "sh", "-c", "echo $PORT"]);
    assert_eq!(replica_one.stdout, format!("{port}\n"));
    // Its own stdin, as a command run in a shell has.
    let mut command =
        project.command(&["exec", "web", "--", "sh", "-c", "read line; echo got $line"]);
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = command.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"typed\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "got typed\n");

    let missing = project.run(&["exec", "web", "--", "fleet-test-no-such-command"]);
    assert_eq!(missing.code, 127, "{missing:#?}");
    let unknown = project.run(&["exec", "wbe", "--", "true"]);
    assert_eq!(unknown.code, 2, "{unknown:#?}");
    assert!(
        unknown.stderr.contains("did you mean `web`?"),
        "{unknown:#?}"
    );
    let no_replica = project.run(&["exec", "web.3", "--", "true"]);
    assert_eq!(no_replica.code, 2, "{no_replica:#?}");
    project.assert_nothing_left();
}

// ---------------------------------------------------------------------------------------
// A container fleet

/// busybox as `/bin/busybox` and `/bin/sh`, a page to serve, and an anonymous volume
/// (`VOLUME`), which every container of the image gets and fleet must remove with it.
const DOCKERFILE: &str = "FROM scratch\nCOPY ORIGIN /ORIGIN\nCOPY busybox /bin/busybox\n\
                          COPY busybox /bin/sh\nCOPY www /www\nVOLUME /scratch\n";

/// Removes every Docker object of a test project and of its runs (whose project names
/// start with the test project's), even when the test fails.
struct RunDockerObjects {
    name: String,
}

impl Drop for RunDockerObjects {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            crate::containers::try_docker(args, Duration::from_secs(60)).unwrap_or_default()
        };
        let mine = |listing: String| -> Vec<String> {
            listing
                .lines()
                .filter_map(|line| {
                    let (id, project) = line.split_once(' ')?;
                    project.starts_with(&self.name).then(|| id.to_string())
                })
                .collect()
        };
        let containers = mine(quiet(&[
            "ps",
            "-a",
            "--filter",
            "label=fleet.project",
            "--format",
            "{{.ID}} {{.Label \"fleet.project\"}}",
        ]));
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            quiet(&args);
        }
        for network in mine(quiet(&[
            "network",
            "ls",
            "--filter",
            "label=fleet.project",
            "--format",
            "{{.ID}} {{.Label \"fleet.project\"}}",
        ])) {
            quiet(&["network", "rm", &network]);
        }
        for volume in mine(quiet(&[
            "volume",
            "ls",
            "--filter",
            "label=fleet.project",
            "--format",
            "{{.Name}} {{.Label \"fleet.project\"}}",
        ])) {
            quiet(&["volume", "rm", "-f", &volume]);
        }
        let reference = format!("reference={}/*", self.name);
        for image in
            quiet(&["images", "-q", "--no-trunc", "--filter", &reference]).split_whitespace()
        {
            quiet(&["rmi", "-f", image]);
        }
    }
}

#[test]
fn a_container_fleet_runs_the_command_and_exec_inside_and_leaves_no_container_network_or_volume() {
    let busybox = crate::real_servers::require_program("busybox");
    if !crate::containers::docker_ready() {
        return;
    }
    crate::real_servers::assert_static_busybox(&busybox);
    let name = crate::containers::unique_name("ftest-run");
    let _objects = RunDockerObjects { name: name.clone() };
    let port = free_port();
    let project = Project::new()
        .var("project", &name)
        .var("port", port)
        .manifest(
            r#"
[project]
name = "{project}"

[services.web]
image = "{project}/bb:dev"
build = { context = "img" }
command = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
ports = ["{port}:8080"]
volumes = ["{project}-data:/data"]
health = { http = "http://127.0.0.1:{port}/", interval = "200ms" }
stop_timeout = "1s"
"#,
        );
    project.write_bytes("img/Dockerfile", DOCKERFILE.as_bytes());
    project.write_bytes("img/ORIGIN", project.dir().to_string_lossy().as_bytes());
    project.write_bytes("img/www/index.html", b"served from a container\n");
    std::fs::copy(&busybox, project.path("img/busybox")).expect("copy busybox");

    // CMD fetches the page, runs a command inside the container through `fleet exec`
    // (its exit code comes back), and records the container's volumes.
    let fleet_dir = fleet_binary()
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let script = r#"
set -u
wget_out=$(python3 -c "import os, urllib.request; print(urllib.request.urlopen(os.environ['FLEET_WEB_URL']).read().decode().strip())")
echo "page: $wget_out"
fleet -f "$FLEET_RUN_DIR/fleet.toml" exec web -- /bin/sh -c 'echo inside $PORT; echo data > /data/file; exit 3' </dev/null
echo "exec exit: $?"
docker inspect --format '{{range .Mounts}}{{.Name}} {{end}}' $(docker ps -q --filter "publish=$FLEET_WEB_PORT") > volumes.txt
"#;
    let mut command = project.command(&["run", "--junit", "junit.xml", "--", "sh", "-c", script]);
    command
        .env(
            "PATH",
            format!("{fleet_dir}:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "figure: container run: {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("page: served from a container\n"),
        "{stdout}"
    );
    assert!(stdout.contains("inside 8080\n"), "{stdout}");
    assert!(stdout.contains("exec exit: 3\n"), "{stdout}");

    let run = Artifacts::only(&project);
    let run_project = run.summary["run_project"].as_str().unwrap().to_string();
    assert!(
        run_project.starts_with(&format!("{name}-run-")),
        "{run_project}"
    );
    let teardown = &run.summary["teardown"];
    assert_eq!(teardown["clean"], true, "{teardown:#}");
    assert_eq!(
        teardown["checked"],
        serde_json::json!(["processes", "containers", "networks", "volumes"])
    );
    assert_eq!(run.service("web")["kind"], "container");
    assert_eq!(run.service("web")["ready"], true);

    // What the run made is gone: its container, its network, its private named volume
    // and the image's anonymous volume. The developer's named volume was never made.
    let volumes: Vec<String> = std::fs::read_to_string(project.path("volumes.txt"))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(
        volumes.len(),
        2,
        "a named and an anonymous volume: {volumes:?}"
    );
    assert!(
        volumes.contains(&format!("{run_project}-{name}-data")),
        "{volumes:?}"
    );
    for volume in &volumes {
        assert!(
            crate::containers::try_docker(&["volume", "inspect", volume], WAIT).is_err(),
            "volume {volume} outlived the run"
        );
    }
    assert!(
        crate::containers::try_docker(&["volume", "inspect", &format!("{name}-data")], WAIT)
            .is_err(),
        "the run used the developer's volume"
    );
    let label = format!("label=fleet.project={run_project}");
    for listing in [
        vec!["ps", "-aq", "--filter", &label],
        vec!["network", "ls", "-q", "--filter", &label],
        vec!["volume", "ls", "-q", "--filter", &label],
    ] {
        let found = crate::containers::try_docker(&listing, WAIT).unwrap();
        assert!(found.trim().is_empty(), "{listing:?} found: {found}");
    }
    let junit = std::fs::read_to_string(project.path("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"0\""), "{junit}");
    project.assert_nothing_left();
}
