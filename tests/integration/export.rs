//! `fleet export` on real engines: every Kubernetes object it writes passes
//! `kubernetes-validate --strict` (the official schemas, offline), and a stack it writes
//! runs on a real single-node Docker Swarm: deployed, healthy, answering on its
//! published ports, reaching services by name, rolled by an env change, removed.
//!
//! # Theory of operation
//! - `kubernetes-validate` comes from PyPI (`.ci/run` installs it); a machine without it
//!   fails these tests rather than skipping them.
//! - The swarm test builds its image here (Debian's static busybox on `FROM scratch`,
//!   serving files and a CGI script that prints `$GREETING`), initialises a swarm on
//!   the local engine when it has none (`docker swarm init --advertise-addr
//!   127.0.0.1`), and deploys with `--resolve-image never` (no registry). Ports are
//!   published in host mode and names resolve to tasks (`--publish host`): this
//!   kernel has no IPVS, which the routing mesh and service virtual IPs need.
//! - [`SwarmGuard`] removes the stack, leaves a swarm it made (and the
//!   `docker_gwbridge` network that joining made) and removes the image, also when the
//!   test fails; the test then checks the engine is as it found it.
//! - Guarded like the container tests: without an engine the test passes with a note,
//!   unless `FLEET_REQUIRE_DOCKER` is set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::containers::{docker_ready, try_docker, unique_name};
use crate::real_servers::{assert_static_busybox, require_program};
use crate::support::{free_port, http_get, raw_get_on_new_connection, wait_until, Project};

/// Deadline for a stack's tasks to be running and healthy, and for an update to end.
const SWARM_WAIT: Duration = Duration::from_secs(120);
const CLI_WAIT: Duration = Duration::from_secs(60);

fn repository(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs `kubernetes-validate --strict` on every file in `dir`; panics with its output
/// unless every object passes.
fn kubernetes_validate(dir: &Path) {
    let program = require_program("kubernetes-validate");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the export folder")
        .map(|entry| entry.expect("a folder entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "nothing exported into {dir:?}");
    let output = Command::new(program)
        .arg("--strict")
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "kubernetes-validate failed:\n{text}"
    );
    let passed = text.matches(" passed for resource ").count();
    assert_eq!(
        passed,
        files.len(),
        "one object per file, each passed:\n{text}"
    );
}

#[test]
fn every_object_exported_to_kubernetes_passes_kubernetes_validate_strict() {
    for (manifest, profiles, least) in [
        (
            "tests/fixtures/export/every-key/fleet.toml",
            vec!["--profile", "jobs"],
            17,
        ),
        ("fleet.toml", vec![], 8),
        ("examples/mixed/fleet.toml", vec![], 2),
    ] {
        let project = Project::new();
        let path = repository(manifest);
        let mut args = vec![
            "-f",
            path.to_str().expect("a UTF-8 path"),
            "export",
            "kubernetes",
        ];
        args.extend(profiles);
        args.extend(["-o", "k8s/"]);
        let exported = project.run(&args);
        assert_eq!(exported.code, 0, "{manifest}: {exported:#?}");
        let files = std::fs::read_dir(project.path("k8s"))
            .expect("k8s/")
            .count();
        assert!(files >= least, "{manifest}: {files} objects\n{exported:#?}");
        kubernetes_validate(&project.path("k8s"));
    }
}

#[test]
fn keys_without_a_counterpart_are_warnings_and_strict_makes_them_an_error() {
    let project = Project::new().manifest(
        r#"
[services.web]
image = "web:1"
ports = ["8080:80"]
health = { log = "listening" }
watch = ["src/**"]

[services.local]
command = "sleep 1000"
"#,
    );
    let exported = project.run(&["export", "swarm", "-o", "stack.yaml"]);
    assert_eq!(exported.code, 0, "{exported:#?}");
    for expected in [
        "warning: fleet.toml:5:12: service `web`: `health.log` has no counterpart",
        "warning: fleet.toml:6:1: service `web`: `watch` is for redeploying on this machine",
        "note: service `local` stays local: a process on this machine",
        "1 service exported to Docker Swarm (web), 1 staying local (local); 2 keys mapped, 2 keys with no counterpart",
        "deploy: docker stack deploy -c stack.yaml",
    ] {
        assert!(exported.stderr.contains(expected), "{expected}\n{exported:#?}");
    }
    let written = std::fs::read_to_string(project.path("stack.yaml")).expect("written");
    assert!(
        written.contains("  web:\n    image: \"web:1\""),
        "{written}"
    );

    std::fs::remove_file(project.path("stack.yaml")).expect("remove");
    let strict = project.run(&["export", "swarm", "--strict", "-o", "stack.yaml"]);
    assert_eq!(strict.code, 2, "{strict:#?}");
    assert!(
        strict.stderr.contains(
            "error: 2 keys with no counterpart in Docker Swarm (--strict); nothing was written"
        ),
        "{strict:#?}"
    );
    assert!(
        !project.path("stack.yaml").exists(),
        "--strict wrote the file"
    );

    // Without such keys --strict passes; a selection exports only what it names.
    let clean = Project::new()
        .manifest("[services.web]\nimage = \"web:1\"\n\n[services.other]\nimage = \"other:1\"\n");
    let strict = clean.run(&["export", "kubernetes", "--strict", "web"]);
    assert_eq!(strict.code, 0, "{strict:#?}");
    assert!(strict.stdout.contains("name: web\n"), "{strict:#?}");
    assert!(!strict.stdout.contains("other"), "{strict:#?}");
}

#[test]
fn an_invalid_manifest_or_an_unknown_profile_exports_nothing() {
    let project =
        Project::new().manifest("[services.web]\nimage = \"web:1\"\nexport = { imag = \"x\" }\n");
    let exported = project.run(&["export", "swarm", "-o", "stack.yaml"]);
    assert_eq!(exported.code, 2, "{exported:#?}");
    assert!(
        exported
            .stderr
            .contains("unknown key `imag` in `export` of service `web`"),
        "{exported:#?}"
    );
    assert!(exported.stderr.contains("fleet.toml:3:12"), "{exported:#?}");
    assert!(!project.path("stack.yaml").exists());

    let project =
        Project::new().manifest("[services.web]\nimage = \"web:1\"\nexport = { secret = true }\n");
    let exported = project.run(&["export", "kubernetes"]);
    assert_eq!(exported.code, 2, "{exported:#?}");
    assert!(
        exported.stderr.contains(
            "`export.secret` needs an `env_file`: it marks that file's values as secrets"
        ),
        "{exported:#?}"
    );
    assert!(exported.stdout.is_empty(), "{exported:#?}");

    let project = Project::new().manifest("[services.web]\ncommand = \"sleep 100\"\n");
    let exported = project.run(&["export", "swarm", "-o", "stack.yaml"]);
    assert_eq!(exported.code, 2, "{exported:#?}");
    assert!(
        exported.stderr.contains("error: no service to export"),
        "{exported:#?}"
    );
    assert!(!project.path("stack.yaml").exists());

    let project = Project::new().manifest("[services.web]\nimage = \"web:1\"\n");
    let exported = project.run(&["export", "kubernetes", "--profile", "nope"]);
    assert_eq!(exported.code, 2, "{exported:#?}");
    assert!(
        exported.stderr.contains("unknown profile `nope`"),
        "{exported:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Docker Swarm

const DOCKERFILE: &str = "FROM scratch\nCOPY ORIGIN /ORIGIN\nCOPY busybox /bin/busybox\n\
                          COPY busybox /bin/sh\nCOPY busybox /bin/wget\nCOPY www /www\n";
/// busybox httpd runs it for `/cgi-bin/greeting`, in the server's environment.
const GREETING_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"greeting=$GREETING\"\n";

/// `api` is published (host mode: one task per node, so it rolls stop-first), `worker`
/// has two replicas on the stack network only and rolls start-first, `web` is
/// published and waits for `api` under fleet (not under Swarm: a warning).
const MANIFEST: &str = r#"
[project]
name = "{name}"

[services.api]
image = "{image}"
command = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
ports = ["{api_port}:8080"]
env = { GREETING = "api" }
health = { http = "http://127.0.0.1:{api_port}/", interval = "1s" }
stop_timeout = "2s"

[services.worker]
image = "{image}"
command = ["/bin/busybox", "httpd", "-f", "-p", "8081", "-h", "/www"]
replicas = 2
redeploy = "start-first"
env = { GREETING = "{greeting}" }
health = { http = "http://127.0.0.1:8081/cgi-bin/greeting", interval = "1s" }
stop_timeout = "2s"

[services.web]
image = "{image}"
command = ["/bin/busybox", "httpd", "-f", "-p", "8082", "-h", "/www"]
ports = ["{web_port}:8082"]
depends_on = { api = "healthy" }
health = { http = "http://127.0.0.1:{web_port}/", interval = "1s" }
stop_timeout = "2s"
"#;

/// Tasks the stack runs: api 1, worker 2, web 1.
const TASKS: usize = 4;

fn docker(args: &[&str]) -> String {
    try_docker(args, CLI_WAIT).unwrap_or_else(|err| panic!("{err}"))
}

fn swarm_state() -> String {
    docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .trim()
        .to_string()
}

fn network_exists(name: &str) -> bool {
    docker(&["network", "ls", "--format", "{{.Name}}"])
        .lines()
        .any(|line| line.trim() == name)
}

/// Ids of the stack's containers (running or not).
fn stack_containers(stack: &str) -> Vec<String> {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    docker(&["ps", "-aq", "--no-trunc", "--filter", &filter])
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

fn inspect(id: &str) -> Option<Value> {
    let text = try_docker(&["container", "inspect", id], CLI_WAIT).ok()?;
    match serde_json::from_str::<Value>(&text).ok()? {
        Value::Array(mut found) if !found.is_empty() => Some(found.remove(0)),
        _ => None,
    }
}

/// The stack's running containers: (service, env, health status).
fn running_tasks(stack: &str) -> Vec<(String, Vec<String>, String)> {
    stack_containers(stack)
        .iter()
        .filter_map(|id| inspect(id))
        .filter(|found| found["State"]["Running"] == true)
        .map(|found| {
            let service = found["Config"]["Labels"]["com.docker.swarm.service.name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let env = found["Config"]["Env"]
                .as_array()
                .map(|env| {
                    env.iter()
                        .filter_map(|value| value.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let health = found["State"]["Health"]["Status"]
                .as_str()
                .unwrap_or("none")
                .to_string();
            (service, env, health)
        })
        .collect()
}

/// A running container of `service` in the stack.
fn container_of(stack: &str, service: &str) -> String {
    let filter = format!("label=com.docker.swarm.service.name={stack}_{service}");
    docker(&["ps", "-q", "--filter", &filter])
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no running container of {stack}_{service}"))
        .trim()
        .to_string()
}

/// Leaves the engine as it was: the stack removed, a swarm this test made left (with
/// the `docker_gwbridge` network joining made), the image removed. Runs when dropped,
/// also on a failed test; [`SwarmGuard::finish`] runs it and reports what it could not
/// undo.
struct SwarmGuard {
    stack: String,
    image: String,
    made_swarm: bool,
    gwbridge_existed: bool,
    finished: bool,
}

impl SwarmGuard {
    /// Joins the local engine to a swarm (its own, when it has one).
    fn join(stack: &str, image: &str) -> SwarmGuard {
        let state = swarm_state();
        let mut guard = SwarmGuard {
            stack: stack.to_string(),
            image: image.to_string(),
            made_swarm: false,
            gwbridge_existed: network_exists("docker_gwbridge"),
            finished: false,
        };
        match state.as_str() {
            "inactive" => {
                guard.made_swarm = true;
                docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
            }
            "active" => {
                eprintln!("note: the engine is in a swarm already; the test uses it and leaves it")
            }
            other => panic!("the engine's swarm state is `{other}`: neither a swarm nor none"),
        }
        guard
    }

    fn cleanup(&mut self) -> Vec<String> {
        self.finished = true;
        let mut problems = Vec::new();
        let _ = try_docker(&["stack", "rm", &self.stack], CLI_WAIT);
        let network = format!("{}_default", self.stack);
        let gone = wait_until(Duration::from_secs(60), || {
            stack_containers(&self.stack).is_empty() && !network_exists(&network)
        });
        if !gone {
            problems.push(format!(
                "the stack {} left containers or its network",
                self.stack
            ));
        }
        if self.made_swarm {
            if let Err(err) = try_docker(&["swarm", "leave", "--force"], CLI_WAIT) {
                problems.push(err);
            }
            if !self.gwbridge_existed {
                // The bridge stays after `swarm leave`; it is free once no container of
                // the swarm is left.
                let removed = wait_until(Duration::from_secs(20), || {
                    !network_exists("docker_gwbridge")
                        || try_docker(&["network", "rm", "docker_gwbridge"], CLI_WAIT).is_ok()
                });
                if !removed {
                    problems.push("docker_gwbridge could not be removed".to_string());
                }
            }
        }
        let _ = try_docker(&["image", "rm", "--force", &self.image], CLI_WAIT);
        problems
    }

    fn finish(mut self) -> Vec<String> {
        self.cleanup()
    }
}

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        if !self.finished {
            for problem in self.cleanup() {
                eprintln!("swarm cleanup: {problem}");
            }
        }
    }
}

/// Waits until the stack runs `TASKS` healthy containers, every one of them passing
/// `also`; how long that took, or the tasks as last seen.
fn wait_healthy(
    stack: &str,
    also: impl Fn(&(String, Vec<String>, String)) -> bool,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last = Vec::new();
    let done = wait_until(SWARM_WAIT, || {
        last = running_tasks(stack);
        last.len() == TASKS && last.iter().all(|task| task.2 == "healthy" && also(task))
    });
    if done {
        Ok(started.elapsed())
    } else {
        let tasks = try_docker(&["stack", "ps", "--no-trunc", stack], CLI_WAIT).unwrap_or_default();
        Err(format!(
            "not all {TASKS} tasks healthy within {SWARM_WAIT:?}: {last:#?}\n{tasks}"
        ))
    }
}

fn export_and_deploy(project: &Project, stack: &str) -> Instant {
    let exported = project.run(&["export", "swarm", "--publish", "host", "-o", "stack.yaml"]);
    assert_eq!(exported.code, 0, "{exported:#?}");
    assert!(
        exported
            .stderr
            .contains("service `web`: `depends_on` has no counterpart: Swarm starts a stack's services in no order"),
        "{exported:#?}"
    );
    let started = Instant::now();
    let file = project.path("stack.yaml");
    docker(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        file.to_str().expect("a UTF-8 path"),
        stack,
    ]);
    started
}

#[test]
fn an_exported_stack_runs_on_a_single_node_swarm_and_rolls_an_env_change() {
    if !docker_ready() {
        return;
    }
    let busybox = require_program("busybox");
    assert_static_busybox(&busybox);
    let stack = unique_name("ftest-swarm");
    let image = format!("{stack}/web:1");
    let api_port = free_port();
    let web_port = free_port();
    let project = Project::new()
        .var("name", &stack)
        .var("image", &image)
        .var("api_port", api_port)
        .var("web_port", web_port)
        .var("greeting", "one")
        .manifest(MANIFEST);
    project.write_bytes("img/Dockerfile", DOCKERFILE.as_bytes());
    project.write_bytes("img/ORIGIN", project.dir().to_string_lossy().as_bytes());
    project.write_bytes("img/www/index.html", b"fleet export\n");
    project.write_bytes("img/www/cgi-bin/greeting", GREETING_CGI.as_bytes());
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            project.path("img/www/cgi-bin/greeting"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod the CGI script");
    }
    std::fs::copy(&busybox, project.path("img/busybox")).expect("copy busybox");

    let swarm_before = swarm_state();
    let guard = SwarmGuard::join(&stack, &image);
    let context = project.path("img");
    docker(&[
        "build",
        "-q",
        "-t",
        &image,
        context.to_str().expect("a UTF-8 path"),
    ]);

    let deployed = export_and_deploy(&project, &stack);
    let took = wait_healthy(&stack, |_| true).unwrap_or_else(|err| panic!("{err}"));
    println!("figure: docker stack deploy until {TASKS} tasks healthy: {took:?}");
    assert!(deployed.elapsed() >= took);

    // Published in host mode, on this node.
    // busybox passes the CGI script's bare `\n` header lines on as they are.
    let answer = raw_get_on_new_connection(api_port, "/cgi-bin/greeting", CLI_WAIT)
        .unwrap_or_else(|err| panic!("GET the api's published port: {err}"));
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("\ngreeting=api\n"),
        "{answer:?}"
    );
    assert_eq!(http_get(web_port, "/").map(|(status, _)| status), Some(200));
    // One container reaches another by its service name.
    let web = container_of(&stack, "web");
    let answer = docker(&[
        "exec",
        &web,
        "/bin/wget",
        "-q",
        "-O",
        "-",
        "http://worker:8081/cgi-bin/greeting",
    ]);
    assert_eq!(answer, "greeting=one\n");
    let answer = docker(&[
        "exec",
        &web,
        "/bin/wget",
        "-q",
        "-O",
        "-",
        "http://api:8080/cgi-bin/greeting",
    ]);
    assert_eq!(answer, "greeting=api\n");
    // Labels say where each object came from.
    let labels = docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &format!("{stack}_worker"),
    ]);
    let labels: Value = serde_json::from_str(&labels).expect("labels as JSON");
    assert_eq!(labels["fleet.project"], stack.as_str());
    assert_eq!(labels["fleet.service"], "worker");

    // A rolling update: a new env value, exported and deployed again.
    let before: Vec<String> = stack_containers(&stack);
    project.rewrite("fleet.toml", &MANIFEST.replace("{greeting}", "two"));
    let redeployed = export_and_deploy(&project, &stack);
    let updated = wait_until(SWARM_WAIT, || {
        try_docker(
            &[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                &format!("{stack}_worker"),
            ],
            CLI_WAIT,
        )
        .is_ok_and(|state| state.trim() == "completed")
    });
    assert!(updated, "the worker's update did not complete");
    let took = wait_healthy(&stack, |(service, env, _)| {
        !service.ends_with("_worker") || env.iter().any(|var| var == "GREETING=two")
    })
    .unwrap_or_else(|err| panic!("{err}"));
    println!(
        "figure: rolling update of 2 worker replicas (start-first) until all healthy: {:?} after deploy",
        redeployed.elapsed().max(took)
    );
    let answer = docker(&[
        "exec",
        &container_of(&stack, "web"),
        "/bin/wget",
        "-q",
        "-O",
        "-",
        "http://worker:8081/cgi-bin/greeting",
    ]);
    assert_eq!(answer, "greeting=two\n");
    let replaced = running_tasks(&stack)
        .iter()
        .filter(|(service, _, _)| service.ends_with("_worker"))
        .count();
    assert_eq!(replaced, 2);
    // api and web were not touched: their containers are the ones from before.
    let now = stack_containers(&stack);
    for service in ["api", "web"] {
        let id = container_of(&stack, service);
        assert!(
            before.iter().any(|old| old.starts_with(&id))
                && now.iter().any(|new| new.starts_with(&id)),
            "{service} was replaced by an update of worker"
        );
    }

    let problems = guard.finish();
    assert!(problems.is_empty(), "cleanup: {problems:?}");
    assert_eq!(swarm_state(), swarm_before, "the swarm state changed");
    assert!(stack_containers(&stack).is_empty());
    assert!(
        try_docker(&["image", "inspect", &image], CLI_WAIT).is_err(),
        "the image is left"
    );
}
