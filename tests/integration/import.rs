//! `fleet import` and `fleet config` with the real binary: a compose project whose
//! images are built here (a `FROM scratch` image of Debian's static busybox) imported
//! and run to healthy, a Procfile app imported and run, bad input that writes nothing,
//! and variables in fleet.toml.

use std::process::Stdio;
use std::time::Duration;

use crate::real_servers::{assert_static_busybox, require_program, DockerObjects};
use crate::support::{free_port, http_get, wait_until, Project, WAIT};

/// Image builds and engine health checks come first; the machine may be busy.
const DOCKER_WAIT: Duration = Duration::from_secs(150);

/// busybox as `/bin/busybox` and `/bin/sh` (busybox runs the applet its name says), so
/// `CMD-SHELL` checks have a shell; `ORIGIN` keeps the layers apart from other tests'.
const DOCKERFILE: &str = "FROM scratch\nCOPY ORIGIN /ORIGIN\nCOPY busybox /bin/busybox\n\
                          COPY busybox /bin/sh\nCOPY www /www\n";

/// A database-like service that becomes ready a moment after its start (the engine's
/// check, written as compose writes it, passes once `/ready` exists), a one-shot that
/// must complete, and a web server that waits for both and is probed by the engine too.
const COMPOSE: &str = r#"
name: ${PROJECT}

x-common: &common
  image: ${PROJECT}/bb:dev
  stop_grace_period: 1s

services:
  db:
    <<: *common
    build: ./img
    command: ["/bin/sh", "-c", "echo db starting; sleep 1; touch /ready; echo db ready; exec /bin/busybox httpd -f -p 5432 -h /www"]
    healthcheck:
      test: test -f /ready
      interval: 300ms
      timeout: 2s
      retries: 3

  migrate:
    <<: *common
    command: /bin/busybox sh -c "echo migrated $$HOSTNAME"
    depends_on:
      db:
        condition: service_healthy
    restart: "no"

  web:
    <<: *common
    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    environment:
      GREETING: ${GREETING:-hi}
    ports:
      - "${WEB_PORT}:8080"
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 300ms
    container_name: not-this-name
"#;

#[test]
fn a_compose_project_with_local_builds_is_imported_and_runs_to_healthy() {
    let busybox = require_program("busybox");
    if !crate::containers::docker_ready() {
        return;
    }
    assert_static_busybox(&busybox);
    let name = crate::containers::unique_name("ftest-import");
    // Dropped last: after the fleet and the project are gone.
    let _objects = DockerObjects { name: name.clone() };
    let web_port = free_port();
    let project = Project::new().file("compose.yaml", COMPOSE).file(
        ".env",
        &format!("PROJECT={name}\nWEB_PORT={web_port}\nGREETING=hello from .env\n"),
    );
    project.write_bytes("img/Dockerfile", DOCKERFILE.as_bytes());
    project.write_bytes("img/ORIGIN", project.dir().to_string_lossy().as_bytes());
    project.write_bytes(
        "img/www/index.html",
        b"hello from an imported compose file\n",
    );
    std::fs::copy(&busybox, project.path("img/busybox")).expect("copy busybox");

    let imported = project.run(&["import"]);
    assert_eq!(imported.code, 0, "{imported:#?}");
    assert!(
        imported.stderr.contains(
            "warning: compose.yaml:42:5: service `web`: `container_name` is not supported"
        ),
        "{imported:#?}"
    );
    assert!(
        imported
            .stderr
            .contains("3 services (0 processes, 3 containers), 1 warning; fleet check: ok"),
        "{imported:#?}"
    );
    let manifest = std::fs::read_to_string(project.path("fleet.toml")).expect("written");
    assert!(
        manifest.contains("health = { docker = \"test -f /ready\", interval = \"300ms\""),
        "{manifest}"
    );
    assert!(manifest.contains("migrated $$HOSTNAME"), "{manifest}");
    let checked = project.run(&["check"]);
    assert_eq!(checked.code, 0, "{checked:#?}");

    let fleet = project.up_detached_within(&["--wait", "--wait-timeout", "120s"], DOCKER_WAIT);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    assert_eq!(project.service_status("db")["state"], "healthy");
    assert_eq!(project.service_status("migrate")["state"], "completed");
    assert_eq!(project.service_status("web")["state"], "healthy");
    assert_eq!(
        http_get(web_port, "/"),
        Some((200, "hello from an imported compose file\n".to_string()))
    );
    let migrate_log = project.log_lines("migrate").join("\n");
    assert!(migrate_log.contains("migrated "), "{migrate_log}");
    // The web server started only after the database's engine check passed.
    let db_ready = project
        .log_entries("db")
        .into_iter()
        .find(|entry| entry.text == "db ready")
        .expect("db says it is ready")
        .at_ms();
    let web_started = project
        .log_entries("web")
        .into_iter()
        .find(|entry| entry.tag == "---" && entry.text.contains("generation 1 start"))
        .expect("web started")
        .at_ms();
    assert!(web_started >= db_ready, "web started before db was ready");
    let inspect = crate::containers::try_docker(
        &[
            "ps",
            "--filter",
            &format!("label=fleet.project={name}"),
            "--filter",
            "label=fleet.service=web",
            "--format",
            "{{.Names}}",
        ],
        Duration::from_secs(30),
    )
    .expect("docker ps");
    assert!(!inspect.contains("not-this-name"), "{inspect}");
}

#[test]
fn a_procfile_app_is_imported_and_runs() {
    let busybox = require_program("busybox");
    let base = free_port();
    let project = Project::new()
        .file(
            "Procfile",
            "# foreman's format\nweb: python3 -m http.server $PORT --bind 127.0.0.1\n\n\
             worker: busybox sh -c 'while true; do echo \"$GREETING from the worker\"; sleep 1; done'\n",
        )
        .file(".env", "GREETING=hello\n");
    project.write_bytes("index.html", b"served by a Procfile app\n");
    // foreman's base port comes from PORT; the test picks a free one.
    let output = project
        .command(&["import"])
        .env("PORT", base.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("fleet import runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("2 services (2 processes, 0 containers), 0 warnings; fleet check: ok"),
        "{stderr}"
    );
    let manifest = std::fs::read_to_string(project.path("fleet.toml")).expect("written");
    assert!(
        manifest.contains(&format!("ports = [{base}]")),
        "{manifest}"
    );
    assert!(manifest.contains("env_file = \".env\""), "{manifest}");
    assert!(busybox.is_file());

    let _fleet = project.up_detached(&["--wait"]);
    assert!(
        wait_until(WAIT, || http_get(base, "/index.html").is_some_and(
            |(status, body)| status == 200 && body == "served by a Procfile app\n"
        )),
        "the web process does not serve on PORT {base}"
    );
    assert!(
        wait_until(WAIT, || project
            .log_lines("worker")
            .iter()
            .any(|line| line.ends_with("hello from the worker"))),
        "worker.log: {:#?}",
        project.log_lines("worker")
    );
}

/// Runs `fleet ARGS` in `project`; the exit code and stderr.
fn fleet_in(project: &Project, args: &[&str]) -> (i32, String) {
    let finished = project.run(args);
    (finished.code, finished.stderr)
}

#[track_caller]
fn refused(project: &Project, args: &[&str], place: &str) {
    let (code, stderr) = fleet_in(project, args);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(place), "expected `{place}` in:\n{stderr}");
    assert!(
        !project.path("fleet.toml").exists(),
        "fleet.toml was written: {stderr}"
    );
}

#[test]
fn bad_input_is_an_error_at_its_place_and_writes_nothing() {
    let project = Project::new()
        .file("bad-yaml.yml", "services:\n  web:\n    image: [nginx\n")
        .file(
            "unknown.yml",
            "services:\n  web:\n    image: nginx\nvolume:\n  x: {}\n",
        )
        .file("nothing.yml", "services:\n  web:\n    ports: [\"80:80\"]\n")
        .file(
            "required.yml",
            "services:\n  web:\n    image: \"nginx:${TAG:?set TAG}\"\n",
        )
        .file("Procfile", "web ./run\n")
        .file("notes.txt", "web: ./run\n");
    refused(&project, &["import", "bad-yaml.yml"], "bad-yaml.yml:4:1");
    refused(&project, &["import", "unknown.yml"], "--> unknown.yml:4:1");
    refused(&project, &["import", "nothing.yml"], "--> nothing.yml:2:3");
    refused(
        &project,
        &["import", "required.yml"],
        "--> required.yml:3:12",
    );
    refused(&project, &["import"], "--> Procfile:1:1");
    refused(
        &project,
        &["import", "notes.txt"],
        "--format compose or --format procfile",
    );
    refused(
        &project,
        &["import", "missing.yml"],
        "cannot read missing.yml",
    );

    // A good file: written once, then only with --force; `-o -` writes to stdout.
    project.write_bytes("good.yml", b"services:\n  web:\n    command: ./serve\n");
    let (code, stderr) = fleet_in(&project, &["import", "good.yml"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = fleet_in(&project, &["import", "good.yml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("pass --force"), "{stderr}");
    let (code, stderr) = fleet_in(&project, &["import", "good.yml", "--force"]);
    assert_eq!(code, 0, "{stderr}");
    let printed = project.run(&["import", "good.yml", "-o", "-"]);
    assert_eq!(printed.code, 0, "{printed:#?}");
    assert!(
        printed
            .stdout
            .contains("[services.web]\ncommand = [\"./serve\"]\n"),
        "{printed:#?}"
    );
    let elsewhere = project.run(&["import", "good.yml", "-o", "sub/fleet.toml"]);
    assert_eq!(elsewhere.code, 0, "{elsewhere:#?}");
    let written = std::fs::read_to_string(project.path("sub/fleet.toml")).expect("written");
    assert!(written.contains("command = [\"./serve\"]"), "{written}");
}

#[test]
fn variables_in_fleet_toml_and_fleet_config() {
    let project = Project::new()
        .manifest(
            r#"
[project]
name = "${NAME:-vars}"

[services.web]
command = "echo ${GREETING:-hi} $$HOME"
env = { LEVEL = "${LEVEL:?set LEVEL in .env}", RAW = "$${NOT_INTERPOLATED}" }
"#,
        )
        .file(".env", "LEVEL=debug\nGREETING=hello\n");
    let config = project.run(&["config"]);
    assert_eq!(config.code, 0, "{config:#?}");
    assert!(config.stdout.contains("name = \"vars\"\n"), "{config:#?}");
    assert!(
        config.stdout.contains("command = \"echo hello $$HOME\"\n"),
        "{config:#?}"
    );
    assert!(
        config
            .stdout
            .contains("env = { LEVEL = \"debug\", RAW = \"$${NOT_INTERPOLATED}\" }\n"),
        "{config:#?}"
    );
    // What `config` prints is a complete manifest that `check` accepts.
    project.write_bytes("printed/fleet.toml", config.stdout.as_bytes());
    let checked = project.run(&["-f", "printed/fleet.toml", "check"]);
    assert_eq!(checked.code, 0, "{checked:#?}");

    // A required variable unset: an error at the string, nothing runs.
    project.rewrite(".env", "GREETING=hello\n");
    let (code, stderr) = fleet_in(&project, &["check"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: required variable `LEVEL` is not set: set LEVEL in .env"),
        "{stderr}"
    );
    assert!(stderr.contains("fleet.toml:7:18"), "{stderr}");
}
