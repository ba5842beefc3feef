//! Containers as first-class services, through the Docker engine: start and probe,
//! crash and restart, stop order mixed with processes, logs, redeploy, the startup
//! sweep, `down`, a SIGKILLed supervisor, and a missing image.
//!
//! # Theory of operation
//! - No registry is needed: `box` (the program in [`BOX_SOURCE`]) is compiled once per
//!   test run with `rustc -O -C target-feature=+crt-static` into a static binary, and
//!   each test copies it into its project's `img/` folder beside a `FROM scratch`
//!   Dockerfile, so fleet builds the image itself (`build = { context = "img" }`).
//! - Every test has its own project name (`ftest-<pid>-<nanos>-<n>`), so its images
//!   (`<project>/box:dev`), containers (`<project>-<service>-<generation>`) and network
//!   (`fleet-<project>`) never collide with another test's, and fixed host ports come
//!   from [`free_port`]. The [`DockerProject`] guard removes every Docker object
//!   labelled with (or named after) its project when it is dropped, even when the test
//!   fails; the fleets are down by then (their guards borrow the project).
//! - Without a reachable engine the tests print a note and pass, unless
//!   `FLEET_REQUIRE_DOCKER` is set (CI sets it), in which case they fail.
//! - The tests look at the engine through the `docker` CLI; fleet itself never runs it.
//! - Timings a test measures are printed as `figure: ...` lines (`--nocapture` shows
//!   them), never asserted.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{
    children_of, command_line, exit_code, free_port, http_get, is_keeper, pid_alive, regex,
    wait_until, LogEntry, Project, WAIT,
};

/// Deadline for a container service to become healthy the first time: the image build
/// comes first, and the machine may be busy with other tests' builds.
pub const DOCKER_WAIT: Duration = Duration::from_secs(60);
/// Deadline of one `docker` CLI command.
const CLI_WAIT: Duration = Duration::from_secs(60);

/// The test service baked into the images: std only, so a bare `rustc` makes a static
/// binary for a `FROM scratch` image. It serves HTTP on 0.0.0.0:$PORT (default 8080):
/// `/health` -> `ok`, `/version` -> the content of `/VERSION`, `/crash` -> answers, then
/// exits 3. `CRASH_AFTER_MS` makes it exit 3 on its own; `IGNORE_SIGTERM` leaves SIGTERM
/// unhandled, which a container's PID 1 then ignores (so only SIGKILL stops it).
/// Without it, SIGTERM makes it exit 0 at once. It prints one line to stdout and one to
/// stderr when it listens, named after `FLEET_SERVICE`.
const BOX_SOURCE: &str = r#"
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    fn _exit(code: i32) -> !;
}

extern "C" fn on_sigterm(_: i32) {
    let message = b"box: SIGTERM, exiting\n";
    unsafe {
        write(1, message.as_ptr(), message.len());
        _exit(0);
    }
}

fn main() {
    let name = std::env::var("FLEET_SERVICE").unwrap_or_else(|_| "box".to_string());
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let version = std::fs::read_to_string("/VERSION")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "none".to_string());
    if std::env::var_os("IGNORE_SIGTERM").is_some() {
        println!("box {name} ignoring SIGTERM");
    } else {
        unsafe {
            signal(15, on_sigterm);
        }
    }
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("box {name}: cannot listen on 0.0.0.0:{port}: {err}");
            std::process::exit(1);
        }
    };
    println!("box {name} listening on 0.0.0.0:{port} version {version}");
    eprintln!("box {name} says hello on stderr");
    if let Some(ms) = std::env::var("CRASH_AFTER_MS").ok().and_then(|ms| ms.parse::<u64>().ok()) {
        let name = name.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            println!("box {name} crashing after {ms} ms");
            std::process::exit(3);
        });
    }
    for stream in listener.incoming().flatten() {
        let name = name.clone();
        let version = version.clone();
        std::thread::spawn(move || serve(stream, &name, &version));
    }
}

fn serve(mut stream: TcpStream, name: &str, version: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(clone) = stream.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    // Read the whole head: closing with unread bytes would reset the connection.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, body) = match path.as_str() {
        "/health" => (200, "ok".to_string()),
        "/version" => (200, version.to_string()),
        "/crash" => (200, "crashing".to_string()),
        _ => (404, "routes: /health /version /crash".to_string()),
    };
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
    if path == "/crash" {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        println!("box {name} crashing on request");
        std::process::exit(3);
    }
}
"#;

/// The image's Dockerfile: the binary and a `VERSION` file on an empty image. `ORIGIN`
/// (the project folder) comes first so that no layer is shared with another test's
/// image: removing one test's images must not delete a cached layer another test's
/// build is using at that moment.
const DOCKERFILE: &str = "FROM scratch\nCOPY ORIGIN /ORIGIN\nCOPY box /box\n\
                          COPY VERSION /VERSION\nENTRYPOINT [\"/box\"]\n";

// ---------------------------------------------------------------------------------------
// Docker, through its CLI

/// Runs `docker ARGS` within `within`; its stdout, or why it failed.
pub fn try_docker(args: &[&str], within: Duration) -> Result<String, String> {
    let shown = format!("docker {}", args.join(" "));
    let child = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run `{shown}`: {err}"))?;
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(within) {
        Ok(Ok(output)) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(Ok(output)) => Err(format!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Ok(Err(err)) => Err(format!("`{shown}`: {err}")),
        Err(_) => {
            // Our own child, killed by its pid (the waiting thread then reaps it).
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            Err(format!("`{shown}` did not finish within {within:?}"))
        }
    }
}

/// Runs `docker ARGS`; its stdout. Panics when it fails.
fn docker(args: &[&str]) -> String {
    try_docker(args, CLI_WAIT).unwrap_or_else(|err| panic!("{err}"))
}

/// The non-empty lines of `text`, trimmed.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether the engine answers; the reason when it does not. Asked once per test run.
fn engine_reachable() -> &'static Result<(), String> {
    static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
    REACHABLE.get_or_init(|| {
        let version = try_docker(
            &["version", "--format", "{{.Server.APIVersion}}"],
            Duration::from_secs(20),
        )?;
        if version.trim().is_empty() {
            return Err("`docker version` names no server API version".into());
        }
        Ok(())
    })
}

/// A Docker object name no other test run or test uses: `PREFIX-PID-NANOS-N`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the container tests can run. With `FLEET_REQUIRE_DOCKER` set (to anything but
/// `0`) an unreachable engine fails the test; without it the test is skipped, saying so.
pub fn docker_ready() -> bool {
    let Err(reason) = engine_reachable() else {
        return true;
    };
    if fleet::runtime::container::docker_required() {
        panic!("FLEET_REQUIRE_DOCKER is set, but the Docker engine is unreachable: {reason}");
    }
    eprintln!(
        "note: container test skipped, the Docker engine is unreachable ({reason}); \
         set FLEET_REQUIRE_DOCKER=1 to make this a failure"
    );
    false
}

/// Ids (full) of every container, running or not, matching all the `label` filters.
fn containers_labelled(labels: &[String]) -> Vec<String> {
    let mut args = vec!["ps", "-aq", "--no-trunc"];
    let filters: Vec<String> = labels.iter().map(|l| format!("label={l}")).collect();
    for filter in &filters {
        args.extend(["--filter", filter.as_str()]);
    }
    lines(&docker(&args))
}

/// Ids of every container labelled `fleet.project=<project>`.
fn project_containers(project: &str) -> Vec<String> {
    containers_labelled(&[format!("fleet.project={project}")])
}

/// `docker inspect` of one container; `None` once it is gone.
pub fn inspect(id: &str) -> Option<Value> {
    let text = try_docker(&["container", "inspect", id], CLI_WAIT).ok()?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(mut found)) if !found.is_empty() => Some(found.remove(0)),
        other => panic!("`docker container inspect {id}` printed {other:?}"),
    }
}

fn container_exists(id: &str) -> bool {
    inspect(id).is_some()
}

pub fn container_running(id: &str) -> bool {
    inspect(id).is_some_and(|found| found["State"]["Running"] == true)
}

/// Networks whose name is exactly `name` (the engine's `name` filter matches parts).
fn networks_named(name: &str) -> Vec<String> {
    let filter = format!("name={name}");
    lines(&docker(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ]))
    .into_iter()
    .filter(|found| found == name)
    .collect()
}

// ---------------------------------------------------------------------------------------
// The test image

/// The `box` binary, compiled once per test run (and reused by later runs while
/// [`BOX_SOURCE`] is unchanged). Concurrent test runs each compile to their own file
/// and rename it into place.
fn box_binary() -> &'static Path {
    static BOX: OnceLock<PathBuf> = OnceLock::new();
    BOX.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ftest-box");
        std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("cannot create {dir:?}: {err}"));
        let mut hasher = DefaultHasher::new();
        BOX_SOURCE.hash(&mut hasher);
        let binary = dir.join(format!("box-{:016x}", hasher.finish()));
        if binary.is_file() {
            return binary;
        }
        let own = std::process::id();
        let source = dir.join(format!("box-{own}.rs"));
        let output = dir.join(format!("box-{own}.tmp"));
        std::fs::write(&source, BOX_SOURCE)
            .unwrap_or_else(|err| panic!("cannot write {source:?}: {err}"));
        let mut rustc = Command::new("rustc")
            .args([
                "--edition",
                "2021",
                "-O",
                "-C",
                "target-feature=+crt-static",
                "-o",
            ])
            .arg(&output)
            .arg(&source)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run rustc (it must be on PATH): {err}"));
        let mut status = None;
        let finished = wait_until(Duration::from_secs(180), || {
            status = rustc.try_wait().expect("rustc can be waited for");
            status.is_some()
        });
        if !finished {
            let _ = rustc.kill();
            let _ = rustc.wait();
            panic!("rustc did not compile the box test service within 180 s");
        }
        let status = status.expect("set when the wait succeeded");
        assert!(
            status.success(),
            "rustc failed to compile the box test service: {status}"
        );
        let _ = std::fs::remove_file(&source);
        std::fs::rename(&output, &binary)
            .unwrap_or_else(|err| panic!("cannot rename {output:?} to {binary:?}: {err}"));
        binary
    })
}

/// Writes a build context for the box image into `folder` of the project: the binary,
/// the Dockerfile, `ORIGIN` and a `VERSION` file holding `version`.
fn add_context(project: &Project, folder: &str, version: &str) {
    project.write_bytes(&format!("{folder}/Dockerfile"), DOCKERFILE.as_bytes());
    project.write_bytes(
        &format!("{folder}/ORIGIN"),
        project.dir().to_string_lossy().as_bytes(),
    );
    project.write_bytes(
        &format!("{folder}/VERSION"),
        format!("{version}\n").as_bytes(),
    );
    let target = project.path(&format!("{folder}/box"));
    std::fs::copy(box_binary(), &target)
        .unwrap_or_else(|err| panic!("cannot copy the box binary to {target:?}: {err}"));
}

// ---------------------------------------------------------------------------------------
// The project guard

/// A [`Project`] with a unique project name and a box build context in `img/`, whose
/// Docker objects are removed when it is dropped. Manifests use `{project}` (the
/// project name, for `[project] name`) and `{image}` (`<project>/box:dev`).
pub struct DockerProject {
    project: Project,
    pub name: String,
    /// Containers the test created itself through the CLI.
    own_containers: RefCell<Vec<String>>,
}

impl DockerProject {
    /// `None` (after a note) when the engine is unreachable and not required. `setup`
    /// adds variables and writes the manifest.
    pub fn new(setup: impl FnOnce(Project) -> Project) -> Option<DockerProject> {
        if !docker_ready() {
            return None;
        }
        let name = unique_name("ftest");
        let project = Project::new()
            .var("project", &name)
            .var("image", format!("{name}/box:dev"));
        add_context(&project, "img", "v1");
        Some(DockerProject {
            project: setup(project),
            name,
            own_containers: RefCell::new(Vec::new()),
        })
    }

    /// Runs a container of this project's image through the CLI, as a user would (no
    /// labels given), named `<project>-bystander`; returns its id.
    fn run_bystander(&self) -> String {
        let name = format!("{}-bystander", self.name);
        self.own_containers.borrow_mut().push(name.clone());
        let image = format!("{}/box:dev", self.name);
        let id = docker(&["run", "-d", "--name", &name, &image]);
        id.trim().to_string()
    }
}

impl Deref for DockerProject {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.project
    }
}

impl Drop for DockerProject {
    fn drop(&mut self) {
        // No panics: this also runs while a failed test unwinds.
        let name = &self.name;
        let quiet = |args: &[&str]| try_docker(args, CLI_WAIT).unwrap_or_default();
        let project_label = format!("label=fleet.project={name}");
        let mut containers = lines(&quiet(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &project_label,
        ]));
        containers.extend(self.own_containers.borrow().iter().cloned());
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            quiet(&args);
        }
        let mut networks = lines(&quiet(&["network", "ls", "-q", "--filter", &project_label]));
        let network_name = format!("fleet-{name}");
        if networks_named_quiet(&network_name) {
            networks.push(network_name);
        }
        for network in networks {
            quiet(&["network", "rm", &network]);
        }
        let reference = format!("reference={name}/*");
        let mut images = lines(&quiet(&[
            "images",
            "-q",
            "--no-trunc",
            "--filter",
            &project_label,
        ]));
        images.extend(lines(&quiet(&[
            "images",
            "-q",
            "--no-trunc",
            "--filter",
            &reference,
        ])));
        images.sort();
        images.dedup();
        for image in images {
            quiet(&["rmi", "-f", &image]);
        }
    }
}

/// Whether a network of exactly that name exists, without panicking.
fn networks_named_quiet(name: &str) -> bool {
    let filter = format!("name={name}");
    try_docker(
        &[
            "network",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ],
        CLI_WAIT,
    )
    .is_ok_and(|found| found.lines().any(|line| line.trim() == name))
}

// ---------------------------------------------------------------------------------------
// Small helpers

/// Prints a measured figure (not asserted): `--nocapture` shows it.
pub fn figure(what: &str, took: Duration) {
    eprintln!("figure: {what}: {} ms", took.as_millis());
}

/// Prints where the time to a healthy `generation` went, from the fleet lines of the
/// service's log: the image build before it, and its start to its first healthy probe.
fn print_timeline(project: &Project, service: &str, generation: u64) {
    let entries = project.log_entries(service);
    let fleet_line =
        |entry: &LogEntry, prefix: &str| entry.tag == "---" && entry.text.starts_with(prefix);
    let starting = format!("--- generation {generation} starting");
    let Some(start) = entries.iter().position(|e| fleet_line(e, &starting)) else {
        eprintln!("figure: {service} generation {generation}: no start line in its log");
        return;
    };
    let build = entries[..start]
        .iter()
        .rev()
        .find(|e| fleet_line(e, "--- image build started"));
    let healthy = entries[start..].iter().find(|e| fleet_line(e, "healthy"));
    let start_ms = entries[start].at_ms();
    eprintln!(
        "figure: {service} generation {generation}: image build {} ms, start to healthy {} ms",
        build.map_or("?".to_string(), |b| (start_ms - b.at_ms()).to_string()),
        healthy.map_or("?".to_string(), |h| (h.at_ms() - start_ms).to_string()),
    );
}

pub fn container_of(status: &Value) -> String {
    status["container"]
        .as_str()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("no container in {status:#}"))
        .to_string()
}

pub fn generation_of(status: &Value) -> u64 {
    status["generation"]
        .as_u64()
        .unwrap_or_else(|| panic!("no generation in {status:#}"))
}

pub fn pid_of(status: &Value) -> u32 {
    status["pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or_else(|| panic!("no pid in {status:#}"))
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL)
        .unwrap_or_else(|err| panic!("cannot SIGKILL pid {pid}: {err}"));
}

/// The supervisor's keeper child.
fn keeper_of(supervisor: u32) -> u32 {
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
    keepers[0]
}

/// SIGKILLs the keeper, then the supervisor, so nothing cleans up after them.
fn crash_without_cleanup(supervisor: u32) {
    let keeper = keeper_of(supervisor);
    sigkill(keeper);
    assert!(
        wait_until(WAIT, || !pid_alive(keeper)),
        "the keeper (pid {keeper}) survived SIGKILL"
    );
    sigkill(supervisor);
    assert!(
        wait_until(WAIT, || !pid_alive(supervisor)),
        "the supervisor (pid {supervisor}) survived SIGKILL"
    );
}

/// The manifest of one box container service `cache` publishing `{port}` with an HTTP
/// probe.
const ONE_CACHE: &str = r#"
[project]
name = "{project}"

[services.cache]
image = "{image}"
build = { context = "img" }
ports = ["{port}:8080"]
health = { http = "http://127.0.0.1:{port}/health" }
stop_timeout = "2s"
"#;

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn a_container_service_starts_and_passes_its_probe_through_the_published_port() {
    let port = free_port();
    let Some(project) = DockerProject::new(|p| p.var("port", port).manifest(ONE_CACHE)) else {
        return;
    };
    let up_at = Instant::now();
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    project.wait_for_state("cache", "healthy", DOCKER_WAIT);
    figure(
        "`fleet up -d` to the container service healthy (image build included)",
        up_at.elapsed(),
    );
    print_timeline(&project, "cache", 1);

    let ps = project.ps_json();
    let cache = ps
        .iter()
        .find(|service| service["name"] == "cache")
        .unwrap_or_else(|| panic!("no cache in `fleet ps --json`: {ps:#?}"));
    assert_eq!(cache["kind"], "container", "{cache:#}");
    assert_eq!(cache["state"], "healthy", "{cache:#}");
    assert!(cache["pid"].is_null(), "a container has no pid: {cache:#}");
    assert_eq!(generation_of(cache), 1, "{cache:#}");
    let id = container_of(cache);
    assert_eq!(
        http_get(port, "/health"),
        Some((200, "ok".to_string())),
        "the published port does not answer from the host"
    );

    // The engine's view of it: fleet's name, labels and network.
    let found = inspect(&id).unwrap_or_else(|| panic!("container {id} does not exist"));
    assert!(
        found["Id"]
            .as_str()
            .is_some_and(|full| full.starts_with(&id)),
        "{id} is not {}",
        found["Id"]
    );
    assert_eq!(found["State"]["Running"], true, "{:#}", found["State"]);
    assert_eq!(found["Name"], format!("/{}-cache-1", project.name));
    let labels = &found["Config"]["Labels"];
    assert_eq!(labels["fleet.project"], project.name.as_str(), "{labels:#}");
    assert_eq!(labels["fleet.service"], "cache", "{labels:#}");
    assert_eq!(labels["fleet.generation"], "1", "{labels:#}");
    assert!(
        labels["fleet.run"]
            .as_str()
            .is_some_and(|run| !run.is_empty()),
        "{labels:#}"
    );
    let network = format!("fleet-{}", project.name);
    assert!(
        found["NetworkSettings"]["Networks"].get(&network).is_some(),
        "not on {network}: {:#}",
        found["NetworkSettings"]["Networks"]
    );
    // The start time is what `fleet ps` shows the uptime from.
    assert!(
        cache["started_at_ms"].is_u64(),
        "a running container has a start time (for the uptime): {cache:#}"
    );
}

#[test]
fn a_crashed_container_is_replaced_by_a_new_one_after_a_backoff() {
    let port = free_port();
    let Some(project) = DockerProject::new(|p| {
        p.var("port", port).manifest(
            r#"
[project]
name = "{project}"

[services.cache]
image = "{image}"
build = { context = "img" }
ports = ["{port}:8080"]
health = { http = "http://127.0.0.1:{port}/health" }
backoff = { initial = "300ms", max = "5s" }
stop_timeout = "2s"
"#,
        )
    }) else {
        return;
    };
    let mut fleet = project.up(&["--no-tui"]);
    fleet.wait_for_output("cache: healthy", DOCKER_WAIT);
    let first = project.service_status("cache");
    let first_id = container_of(&first);
    assert_eq!(generation_of(&first), 1, "{first:#}");

    // The crash comes from inside: the box exits 3 on request.
    let _ = http_get(port, "/crash");
    fleet.wait_for_output("cache: exited with code 3, restart 1 in 300ms", WAIT);
    let second = project.wait_for_status("cache", "healthy again in a new container", WAIT, |s| {
        s["state"] == "healthy" && generation_of(s) > 1 && s["container"] != first_id.as_str()
    });
    let second_id = container_of(&second);
    assert_eq!(second["restarts"], 1, "{second:#}");
    assert_eq!(second["kind"], "container", "{second:#}");
    fleet.wait_for_output(
        format!("cache: started (container {})", &second_id[..12]),
        WAIT,
    );
    assert_eq!(http_get(port, "/health"), Some((200, "ok".to_string())));
    assert!(
        wait_until(WAIT, || !container_exists(&first_id)),
        "the crashed container {first_id} was not removed"
    );
    assert!(container_running(&second_id));
}

#[test]
fn a_container_that_keeps_crashing_fails_while_a_process_keeps_running() {
    let Some(project) = DockerProject::new(|p| {
        p.manifest(
            r#"
[project]
name = "{project}"

[services.crashy]
image = "{image}"
build = { context = "img" }
env = { CRASH_AFTER_MS = "300" }
max_restarts = 2
backoff = { initial = "100ms", max = "1s" }

[services.steady]
command = "{helper} --name steady"
"#,
        )
    }) else {
        return;
    };
    let mut fleet = project.up(&["--no-tui"]);
    let steady = fleet.started_pid("steady", WAIT);
    fleet.wait_for_output(
        regex(r"^crashy: failed: crashed 3 times within"),
        DOCKER_WAIT,
    );
    let crashy = project.wait_for_state("crashy", "failed", WAIT);
    assert!(crashy["container"].is_null(), "{crashy:#}");
    let started: Vec<(String, String)> = fleet
        .status_lines()
        .into_iter()
        .filter(|(service, text)| service == "crashy" && text.starts_with("started (container "))
        .collect();
    assert_eq!(started.len(), 3, "{}", fleet.dump());
    for restart in [1, 2] {
        fleet.wait_for_output(
            regex(&format!(
                r"^crashy: exited with code 3, restart {restart} in \d+ms$"
            )),
            WAIT,
        );
    }

    // The rest of the fleet is untouched, and fleet keeps running.
    let status = project.service_status("steady");
    assert_eq!(status["state"], "running", "{status:#}");
    assert_eq!(pid_of(&status), steady);
    assert!(pid_alive(steady));
    assert!(fleet.poll_exit().is_none(), "{}", fleet.dump());
    // The crashed containers are gone.
    let crashy_label = [
        format!("fleet.project={}", project.name),
        "fleet.service=crashy".to_string(),
    ];
    assert!(
        wait_until(WAIT, || containers_labelled(&crashy_label).is_empty()),
        "crashy's containers are left: {:?}",
        containers_labelled(&crashy_label)
    );
}

#[test]
fn processes_and_containers_stop_in_reverse_dependency_order() {
    // The later a service should stop, the faster it stops (as in stop.rs): stopped all
    // at once, `cache` would be gone before `web`, and `p` before `cache2`.
    let (cache_port, web_port) = (free_port(), free_port());
    let Some(project) = DockerProject::new(|p| {
        p.var("cache_port", cache_port)
            .var("web_port", web_port)
            .manifest(
                r#"
[project]
name = "{project}"

[services.cache]
image = "{image}"
build = { context = "img" }
ports = ["{cache_port}:8080"]
health = { http = "http://127.0.0.1:{cache_port}/health" }

[services.web]
command = "{helper} --name web --port {web_port} --ignore-sigterm"
depends_on = { cache = "healthy" }
stop_timeout = "1s"

[services.p]
command = "{helper} --name p"

[services.cache2]
image = "{project}/box2:dev"
build = { context = "img" }
env = { IGNORE_SIGTERM = "1" }
depends_on = ["p"]
stop_timeout = "1s"
"#,
            )
    }) else {
        return;
    };
    let mut fleet = project.up(&["--no-tui"]);
    fleet.wait_for_output("cache: healthy", DOCKER_WAIT);
    fleet.wait_for_output_of("web", "web ignoring SIGTERM", WAIT);
    fleet.started_pid("p", WAIT);
    fleet.wait_for_output_of("cache2", "box cache2 listening", DOCKER_WAIT);

    fleet.interrupt();
    let status = fleet.wait_exit(WAIT);
    assert_eq!(exit_code(status), 0, "{}", fleet.dump());
    let stopped: Vec<String> = fleet
        .status_lines()
        .into_iter()
        .filter(|(_, text)| text.starts_with("stopped ("))
        .map(|(service, _)| service)
        .collect();
    let position = |service: &str| {
        stopped
            .iter()
            .position(|s| s == service)
            .unwrap_or_else(|| panic!("no `{service}: stopped` line\n{}", fleet.dump()))
    };
    assert!(
        position("web") < position("cache"),
        "the process stopped after the container it depends on: {stopped:?}\n{}",
        fleet.dump()
    );
    assert!(
        position("cache2") < position("p"),
        "the container stopped after the process it depends on: {stopped:?}\n{}",
        fleet.dump()
    );
    assert_eq!(project_containers(&project.name), Vec::<String>::new());
    project.assert_nothing_left();
}

/// busybox httpd installs no SIGTERM handler, so as a container's PID 1 it ignores
/// SIGTERM: without `init` only the engine's SIGKILL at `stop_timeout` stops it. With
/// `init = true` the engine's init is PID 1 and forwards SIGTERM, which ends httpd at
/// once: its stop is "SIGTERM" (143), long before its 60 s `stop_timeout`.
#[test]
fn init_true_stops_a_pid_1_that_ignores_sigterm_with_sigterm() {
    let busybox = crate::real_servers::require_program("busybox");
    let (plain_port, wrapped_port) = (free_port(), free_port());
    let Some(project) = DockerProject::new(|p| {
        p.var("plain_port", plain_port)
            .var("wrapped_port", wrapped_port)
            .manifest(
                r#"
[project]
name = "{project}"

[services.plain]
image = "{project}/bb:dev"
build = { context = "bb" }
command = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
ports = ["{plain_port}:8080"]
health = { http = "http://127.0.0.1:{plain_port}/" }
stop_timeout = "1s"

[services.wrapped]
image = "{project}/bb:dev"
command = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
init = true
ports = ["{wrapped_port}:8080"]
health = { http = "http://127.0.0.1:{wrapped_port}/" }
stop_timeout = "60s"
depends_on = { plain = "healthy" }
"#,
            )
    }) else {
        return;
    };
    crate::real_servers::assert_static_busybox(&busybox);
    project.write_bytes(
        "bb/Dockerfile",
        b"FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\n",
    );
    project.write_bytes("bb/www/index.html", b"init test\n");
    // A copy keeps the executable bit.
    let target = project.path("bb/busybox");
    std::fs::copy(&busybox, &target)
        .unwrap_or_else(|err| panic!("cannot copy {busybox:?} to {target:?}: {err}"));

    let mut fleet = project.up(&["--no-tui"]);
    fleet.wait_for_output("wrapped: healthy", DOCKER_WAIT);
    let wrapped_ids = containers_labelled(&[
        format!("fleet.project={}", project.name),
        "fleet.service=wrapped".to_string(),
    ]);
    let [wrapped_id] = wrapped_ids.as_slice() else {
        panic!("one `wrapped` container, found {wrapped_ids:?}");
    };
    let found = inspect(wrapped_id).unwrap_or_default();
    assert_eq!(
        found["HostConfig"]["Init"], true,
        "the engine was not asked for its init"
    );

    fleet.interrupt();
    let status = fleet.wait_exit(DOCKER_WAIT);
    assert_eq!(exit_code(status), 0, "{}", fleet.dump());
    let stopped = |service: &str| -> String {
        fleet
            .status_lines()
            .into_iter()
            .find(|(name, text)| name == service && text.starts_with("stopped ("))
            .map(|(_, text)| text)
            .unwrap_or_else(|| panic!("no `{service}: stopped` line\n{}", fleet.dump()))
    };
    let plain = stopped("plain");
    assert!(
        plain.contains("SIGKILL") || plain.contains("137"),
        "without init, httpd as PID 1 should ignore SIGTERM and be killed: {plain}"
    );
    let wrapped = stopped("wrapped");
    assert!(
        wrapped.contains("SIGTERM") || wrapped.contains("143"),
        "with init, SIGTERM should reach httpd and end it: {wrapped}\n{}",
        fleet.dump()
    );
    assert_eq!(project_containers(&project.name), Vec::<String>::new());
    project.assert_nothing_left();
}

#[test]
fn container_output_and_image_build_output_land_in_the_log_file_tagged() {
    let port = free_port();
    let Some(project) = DockerProject::new(|p| p.var("port", port).manifest(ONE_CACHE)) else {
        return;
    };
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    project.wait_for_state("cache", "healthy", DOCKER_WAIT);

    let wanted = [
        ("out", "box cache listening on 0.0.0.0:8080 version v1"),
        ("err", "box cache says hello on stderr"),
        ("bld", "COPY box /box"),
    ];
    let has = |entries: &[LogEntry], (tag, text): (&str, &str)| {
        entries
            .iter()
            .any(|entry| entry.tag == tag && entry.text.contains(text))
    };
    let found = wait_until(WAIT, || {
        let entries = project.log_entries("cache");
        wanted.iter().all(|want| has(&entries, *want))
    });
    assert!(
        found,
        "cache.log lacks one of {wanted:?}:\n{:#?}",
        project.log_lines("cache")
    );
    // Each line under its own tag only: stderr is not mixed into `out`, nor the reverse.
    let entries = project.log_entries("cache");
    assert!(!has(&entries, ("out", "says hello on stderr")));
    assert!(!has(&entries, ("err", "listening on")));
}

#[test]
fn a_context_change_replaces_only_that_container_and_a_broken_build_keeps_it() {
    let (port, other_port, web_port) = (free_port(), free_port(), free_port());
    let Some(project) = DockerProject::new(|p| {
        let p = p
            .var("port", port)
            .var("other_port", other_port)
            .var("web_port", web_port)
            .manifest(
                r#"
[project]
name = "{project}"

[services.cache]
image = "{image}"
build = { context = "img" }
ports = ["{port}:8080"]
health = { http = "http://127.0.0.1:{port}/health" }
watch = ["img/**"]
stop_timeout = "2s"

[services.other]
image = "{project}/other:dev"
build = { context = "img2" }
ports = ["{other_port}:8080"]
health = { http = "http://127.0.0.1:{other_port}/health" }

[services.web]
command = "{helper} --name web --port {web_port}"
health = { http = "http://127.0.0.1:{web_port}/health" }
"#,
            );
        add_context(&p, "img2", "other-v1");
        p
    }) else {
        return;
    };
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let mut cache = project.wait_for_state("cache", "healthy", DOCKER_WAIT);
    let other = project.wait_for_state("other", "healthy", DOCKER_WAIT);
    let web = project.wait_for_state("web", "healthy", WAIT);
    let (other_id, web_pid) = (container_of(&other), pid_of(&web));
    let untouched = || {
        let now = project.service_status("other");
        assert_eq!(container_of(&now), other_id, "other was replaced: {now:#}");
        assert_eq!(generation_of(&now), 1, "{now:#}");
        let now = project.service_status("web");
        assert_eq!(pid_of(&now), web_pid, "web was replaced: {now:#}");
        assert_eq!(
            http_get(other_port, "/version"),
            Some((200, "other-v1".to_string()))
        );
    };
    assert_eq!(http_get(port, "/version"), Some((200, "v1".to_string())));

    let mut took = Vec::new();
    for version in ["v2", "v3", "v4"] {
        let (old_id, old_generation) = (container_of(&cache), generation_of(&cache));
        let changed_at = Instant::now();
        project.write_bytes("img/VERSION", format!("{version}\n").as_bytes());
        cache = project.wait_for_status(
            "cache",
            &format!("healthy in a new container with {version}"),
            DOCKER_WAIT,
            |s| {
                s["state"] == "healthy"
                    && s["container"] != old_id.as_str()
                    && generation_of(s) > old_generation
            },
        );
        took.push(changed_at.elapsed());
        print_timeline(&project, "cache", generation_of(&cache));
        assert_eq!(
            http_get(port, "/version"),
            Some((200, version.to_string())),
            "the new container does not serve the changed context"
        );
        assert!(
            wait_until(WAIT, || !container_exists(&old_id)),
            "the replaced container {old_id} is still there"
        );
        assert!(cache["build"].is_null(), "{cache:#}");
        untouched();
    }
    took.sort();
    eprintln!("figure: context change to the replacement container healthy: {took:?}");
    figure(
        "context change to the replacement container healthy (median of 3)",
        took[1],
    );

    // A broken Dockerfile: the build fails and the running container keeps serving.
    let (kept_id, kept_generation) = (container_of(&cache), generation_of(&cache));
    project.write_bytes("img/Dockerfile", b"FROM scratch\nCOPY missing /x\n");
    let failed = project.wait_for_status("cache", "build: failed", DOCKER_WAIT, |s| {
        s["build"] == "failed"
    });
    assert_eq!(container_of(&failed), kept_id, "{failed:#}");
    assert_eq!(generation_of(&failed), kept_generation, "{failed:#}");
    assert_eq!(failed["state"], "healthy", "{failed:#}");
    assert!(container_running(&kept_id));
    assert_eq!(http_get(port, "/version"), Some((200, "v4".to_string())));
    let ps = project.ps_json();
    let row = ps
        .iter()
        .find(|service| service["name"] == "cache")
        .unwrap_or_else(|| panic!("no cache in `fleet ps --json`: {ps:#?}"));
    assert_eq!(row["build"], "failed", "{row:#}");
    assert_eq!(container_of(row), kept_id, "{row:#}");
    untouched();
}

#[test]
fn a_second_up_sweeps_the_containers_of_a_crashed_run_but_not_a_users_container() {
    // No published port here: only the sweep is under test (see the next test).
    let Some(project) = DockerProject::new(|p| {
        p.manifest(
            r#"
[project]
name = "{project}"

[services.cache]
image = "{image}"
build = { context = "img" }
"#,
        )
    }) else {
        return;
    };
    let first = project.up_detached(&[]);
    assert_eq!(first.up.code, 0, "{:#?}", first.up);
    let old_id = container_of(&project.wait_for_state("cache", "running", DOCKER_WAIT));
    crash_without_cleanup(first.supervisor_pid());
    assert!(
        container_running(&old_id),
        "precondition: the container {old_id} did not survive the crash"
    );
    // A user's container from the same image, made without fleet.
    let bystander = project.run_bystander();
    assert!(container_running(&bystander));

    let second = project.up_detached(&[]);
    assert_eq!(second.up.code, 0, "{:#?}", second.up);
    assert!(
        !container_exists(&old_id),
        "the crashed run's container {old_id} is still there after the second `fleet up -d`"
    );
    let new_id = container_of(&project.wait_for_state("cache", "running", DOCKER_WAIT));
    assert_ne!(new_id, old_id);
    assert!(container_running(&new_id));
    let labelled: Vec<String> = project_containers(&project.name)
        .into_iter()
        .filter(|id| *id != bystander)
        .collect();
    assert!(
        labelled.len() == 1 && labelled[0].starts_with(&new_id),
        "fleet's containers of the project: {labelled:?}, expected only {new_id}"
    );
    assert!(
        container_running(&bystander),
        "the user's container {bystander} (made with `docker run` from fleet's image, so it \
         inherits the image's labels {}) was removed or stopped by fleet",
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            &format!("{}/box:dev", project.name)
        ])
        .trim()
    );
    docker(&["rm", "-f", &bystander]);
}

#[test]
fn a_container_left_by_a_crashed_run_does_not_keep_its_port_from_the_next_up() {
    let port = free_port();
    let Some(project) = DockerProject::new(|p| p.var("port", port).manifest(ONE_CACHE)) else {
        return;
    };
    let first = project.up_detached(&[]);
    assert_eq!(first.up.code, 0, "{:#?}", first.up);
    let old_id = container_of(&project.wait_for_state("cache", "healthy", DOCKER_WAIT));
    crash_without_cleanup(first.supervisor_pid());
    assert!(
        container_running(&old_id),
        "precondition: the container {old_id} did not survive the crash"
    );
    assert_eq!(http_get(port, "/health"), Some((200, "ok".to_string())));

    // The stray container is the project's own: the sweep removes it, and the port is
    // free for the new instance.
    let second = project.up_detached(&[]);
    assert_eq!(second.up.code, 0, "{:#?}", second.up);
    let new_id = container_of(&project.wait_for_state("cache", "healthy", DOCKER_WAIT));
    assert_ne!(new_id, old_id);
    assert!(!container_exists(&old_id));
    assert_eq!(http_get(port, "/health"), Some((200, "ok".to_string())));
}

#[test]
fn down_leaves_no_container_and_no_network() {
    let port = free_port();
    let Some(project) = DockerProject::new(|p| {
        p.var("port", port).manifest(&format!(
            "{ONE_CACHE}\n[services.second]\nimage = \"{{project}}/second:dev\"\n\
             build = {{ context = \"img\" }}\n\n[services.steady]\n\
             command = \"{{helper}} --name steady\"\n"
        ))
    }) else {
        return;
    };
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    project.wait_for_state("cache", "healthy", DOCKER_WAIT);
    project.wait_for_state("second", "running", DOCKER_WAIT);
    let network = format!("fleet-{}", project.name);
    assert_eq!(project_containers(&project.name).len(), 2);
    assert_eq!(networks_named(&network), std::slice::from_ref(&network));

    let down = project.run(&["down"]);
    assert_eq!(down.code, 0, "{down:#?}");
    // `down` returns when all is gone: no waiting here.
    assert_eq!(
        project_containers(&project.name),
        Vec::<String>::new(),
        "containers left after `fleet down`"
    );
    assert_eq!(
        networks_named(&network),
        Vec::<String>::new(),
        "network left after `fleet down`"
    );
    project.assert_nothing_left();
}

#[test]
fn the_keeper_removes_the_containers_of_a_killed_supervisor() {
    let port = free_port();
    let Some(project) = DockerProject::new(|p| {
        p.var("port", port).manifest(&format!(
            "{ONE_CACHE}\n[services.second]\nimage = \"{{project}}/second:dev\"\n\
             build = {{ context = \"img\" }}\n"
        ))
    }) else {
        return;
    };
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let cache = container_of(&project.wait_for_state("cache", "healthy", DOCKER_WAIT));
    let second = container_of(&project.wait_for_state("second", "running", DOCKER_WAIT));
    let supervisor = fleet.supervisor_pid();

    let killed_at = Instant::now();
    sigkill(supervisor);
    let gone = wait_until(WAIT, || project_containers(&project.name).is_empty());
    let took = killed_at.elapsed();
    assert!(
        gone,
        "{WAIT:?} after the supervisor was SIGKILLed, its containers remain: {:?} \
         (cache {cache}, second {second})",
        project_containers(&project.name)
    );
    figure(
        "supervisor SIGKILLed to its containers removed by the keeper",
        took,
    );
    assert!(
        wait_until(WAIT, || http_get(port, "/health").is_none()),
        "port {port} still answers"
    );
}

#[test]
fn a_missing_image_without_build_fails_that_service_without_pulling() {
    const IMAGE: &str = "fleet-test/does-not-exist:1";
    let Some(project) = DockerProject::new(|p| {
        p.var("missing", IMAGE).manifest(
            r#"
[project]
name = "{project}"

[services.ghost]
image = "{missing}"
volumes = ["{project}-ghostdata:/data"]

[services.steady]
command = "{helper} --name steady"
"#,
        )
    }) else {
        return;
    };
    assert!(
        try_docker(&["image", "inspect", IMAGE], CLI_WAIT).is_err(),
        "precondition: {IMAGE} exists locally"
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let ghost = project.wait_for_state("ghost", "failed", WAIT);
    let expected = fleet::runtime::container::ContainerError::ImageMissing {
        image: IMAGE.to_string(),
    }
    .to_string();
    assert!(
        expected.contains("fleet does not pull from registries"),
        "the wording changed: {expected}"
    );
    let last_event = ghost["last_event"].as_str().unwrap_or_default();
    assert!(
        last_event.contains(&expected),
        "last event {last_event:?} does not say {expected:?}"
    );
    assert_eq!(ghost["kind"], "container", "{ghost:#}");
    assert!(ghost["container"].is_null(), "{ghost:#}");
    assert_eq!(project_containers(&project.name), Vec::<String>::new());
    // The create is what finds the image missing, but a named volume would be made
    // before it: a start that cannot succeed must leave none behind.
    let volume = format!("{}-ghostdata", project.name);
    assert!(
        try_docker(&["volume", "inspect", &volume], CLI_WAIT).is_err(),
        "the failed start created volume {volume}"
    );
    assert!(
        try_docker(&["image", "inspect", IMAGE], CLI_WAIT).is_err(),
        "{IMAGE} was pulled"
    );

    let steady = project.wait_for_state("steady", "running", WAIT);
    assert!(pid_alive(pid_of(&steady)));
}

#[test]
fn container_replicas_publish_one_host_port_each_from_a_range() {
    let first = free_port();
    let second = first + 1;
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", second)).is_ok(),
        "port {second} (after the free port {first}) is taken; rerun"
    );
    let Some(project) = DockerProject::new(|p| {
        p.var("first", first).var("second", second).manifest(
            r#"
[project]
name = "{project}"

[services.cache]
image = "{image}"
build = { context = "img" }
replicas = 2
ports = ["127.0.0.1:{first}-{second}:8080"]
health = { http = "http://127.0.0.1:{first}/health" }
stop_timeout = "2s"
"#,
        )
    }) else {
        return;
    };
    let fleet = project.up_detached(&["--wait", "--wait-timeout", "90s"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let ps = project.ps_json();
    let rows: Vec<&Value> = ps.iter().filter(|row| row["service"] == "cache").collect();
    assert_eq!(rows.len(), 2, "{ps:#?}");
    assert_eq!(rows[0]["name"], "cache.1", "{ps:#?}");
    assert_eq!(rows[1]["name"], "cache.2", "{ps:#?}");
    assert_eq!(rows[0]["ports"], serde_json::json!([first]), "{ps:#?}");
    assert_eq!(rows[1]["ports"], serde_json::json!([second]), "{ps:#?}");
    let ids: Vec<String> = rows.iter().map(|row| container_of(row)).collect();
    assert_ne!(ids[0], ids[1], "two replicas, two containers");
    // Each container really publishes its own port, and each port answers.
    for (id, port) in ids.iter().zip([first, second]) {
        let found = inspect(id).unwrap_or_else(|| panic!("container {id} does not exist"));
        let bindings = &found["HostConfig"]["PortBindings"]["8080/tcp"];
        assert_eq!(
            bindings[0]["HostPort"],
            port.to_string(),
            "{id}: {bindings:#}"
        );
        assert_eq!(http_get(port, "/health"), Some((200, "ok".to_string())));
    }
    assert_eq!(
        found_names(&ids),
        [
            format!("/{}-cache-1", project.name),
            format!("/{}-cache.2-1", project.name)
        ]
    );
    let down = project.run(&["down"]);
    assert_eq!(down.code, 0, "{down:#?}");
    assert!(
        ids.iter().all(|id| !container_exists(id)),
        "a replica's container is left after down"
    );
}

fn found_names(ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            inspect(id)
                .and_then(|found| found["Name"].as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect()
}
