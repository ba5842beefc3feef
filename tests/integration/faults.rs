//! Faults of the machine, injected for real while a fleet runs: the disk under `.fleet`
//! fills up, `.fleet/logs` is removed, the Docker engine becomes unreachable.
//!
//! # Theory of operation
//! - The full disk is a small tmpfs mounted on the project's `.fleet` before `fleet up`
//!   (the tests run as root; without root the test says so and passes), filled to the
//!   last byte by a file the test writes and later removes. [`Tmpfs`] unmounts it on
//!   drop, after the fleet is down.
//! - The unreachable engine is a socket proxy in this file ([`EngineProxy`]) that
//!   forwards a Unix socket in the project folder to `/var/run/docker.sock`; fleet
//!   gets `DOCKER_HOST=unix://<proxy>`. Cutting it closes every connection and stops
//!   listening (connects are refused), as a dead engine would; restoring it listens
//!   again. The machine's engine is never touched, and the test itself looks at it
//!   through the `docker` CLI on the real socket.
//! - Each test checks what a user would: the service's pid unchanged and its port
//!   answering, the messages fleet prints, the lines in the log file, `fleet ps`
//!   states. Timings are printed as `figure:` lines (`--nocapture` shows them), never
//!   asserted.

use std::fs;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::containers::{
    container_of, container_running, figure, generation_of, pid_of, DockerProject, DOCKER_WAIT,
};
use crate::support::{
    free_port, http_get, port_answers, regex, wait_until, LogEntry, Pattern, Project, Running, WAIT,
};

// ---------------------------------------------------------------------------------------
// A small file system to fill

/// A tmpfs mounted on a folder for the life of the guard.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`64m`) on `dir` (made if missing). `None`, after a note,
    /// when the test does not run as root; a failed mount as root fails the test.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("note: fault test skipped: mounting a tmpfs needs root");
            return None;
        }
        fs::create_dir_all(dir).unwrap_or_else(|err| panic!("cannot create {dir:?}: {err}"));
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap_or_else(|err| panic!("cannot run mount: {err}"));
        assert!(
            status.success(),
            "mount -t tmpfs on {dir:?} failed: {status}"
        );
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // No panics: this also runs while a failed test unwinds. A file still open
        // (a fleet that would not die) keeps the mount busy: detach it then.
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Writes `path` until its file system is full; returns how many bytes it took.
fn fill(path: &Path) -> u64 {
    let mut file =
        fs::File::create(path).unwrap_or_else(|err| panic!("cannot create {path:?}: {err}"));
    let chunk = vec![b'x'; 4096];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(count) => written += count as u64,
            Err(err) if err.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(err) => panic!("cannot fill {path:?}: {err}"),
        }
    }
    // The last bytes one at a time: not even a short line may fit anywhere.
    while let Ok(1) = file.write(b"x") {
        written += 1;
    }
    written
}

// ---------------------------------------------------------------------------------------
// Log lines

/// The numbers of the `tick N` lines (helper `--lines-per-sec`) among `entries`.
fn ticks(entries: &[LogEntry]) -> Vec<u64> {
    entries
        .iter()
        .filter(|entry| entry.tag == "out")
        .filter_map(|entry| entry.text.strip_prefix("tick ")?.parse().ok())
        .collect()
}

/// Matches a `ticker | tick N` output line of fleet with N at least this.
struct TickAtLeast(u64);

impl Pattern for TickAtLeast {
    fn is_match(&self, line: &str) -> bool {
        line.split_once(" | ")
            .filter(|(name, _)| name.trim_end() == "ticker")
            .and_then(|(_, text)| text.strip_prefix("tick ")?.parse::<u64>().ok())
            .is_some_and(|number| number >= self.0)
    }
    fn describe(&self) -> String {
        format!("ticker's tick {} or later", self.0)
    }
}

/// The number in a `ticker | tick N` line.
fn tick_number(line: &str) -> u64 {
    line.rsplit_once("tick ")
        .and_then(|(_, number)| number.parse().ok())
        .unwrap_or_else(|| panic!("not a tick line: {line}"))
}

fn status_lines_matching(fleet: &Running<'_>, pattern: &regex::Regex) -> Vec<String> {
    fleet
        .stdout_lines()
        .into_iter()
        .filter(|line| pattern.is_match(line))
        .collect()
}

/// A service that prints `tick N` `{rate}` times a second and answers HTTP on `{port}`.
const TICKER: &str = r#"
[services.ticker]
command = "{helper} --port {port} --lines-per-sec {rate}"
health = { http = "http://127.0.0.1:{port}/health", interval = "200ms" }
"#;

// ---------------------------------------------------------------------------------------
// Tests: the log disk

#[test]
fn a_full_log_disk_drops_lines_says_so_once_and_writes_again_when_space_returns() {
    let port = free_port();
    // ~240 KB/s through the pipe, ~1 MB/s into the log: the file system is large
    // enough that the log alone does not fill it again before the test ends.
    let rate = 20_000;
    let project = Project::new()
        .var("port", port)
        .var("rate", rate)
        .manifest(TICKER);
    let Some(_disk) = Tmpfs::mount(&project.path(".fleet"), "64m") else {
        return;
    };
    let mut fleet = project.up(&["--no-tui"]);
    let pid = fleet.started_pid("ticker", WAIT);
    fleet.wait_for_output("ticker: healthy", WAIT);
    assert!(
        wait_until(WAIT, || !ticks(&project.log_entries("ticker")).is_empty()),
        "no tick reached ticker.log"
    );

    let filled_at = Instant::now();
    let filler = project.path(".fleet/filler");
    let took = fill(&filler);
    let dropping = regex(
        r"^ticker: cannot write the log file \(.*No space left on device.*\): dropping its lines until it can$",
    );
    fleet.wait_for_output(&dropping, WAIT);
    figure(
        "disk full until fleet says lines are dropped",
        filled_at.elapsed(),
    );
    eprintln!("figure: the filler took the last {took} bytes of the 64 MiB tmpfs");

    // The service runs on: its pipe is drained. It writes 100,000 more lines (1.2 MB,
    // more than its 1 MiB pipe holds, so it would block if fleet stopped reading),
    // and they reach fleet's own output. Same pid, port answering.
    let now = fleet
        .output_of("ticker")
        .last()
        .map_or(0, |line| tick_number(line));
    fleet.wait_for_output(TickAtLeast(now + 100_000), WAIT);
    let status = project.service_status("ticker");
    assert_eq!(pid_of(&status), pid, "{status:#}");
    assert_eq!(status["state"], "healthy", "{status:#}");
    assert!(port_answers(port), "ticker's port stopped answering");
    let ps = project.ps_json();
    let row = ps
        .iter()
        .find(|service| service["name"] == "ticker")
        .unwrap_or_else(|| panic!("no ticker in `fleet ps --json`: {ps:#?}"));
    assert!(
        row["last_event"]
            .as_str()
            .is_some_and(|event| event.contains("dropping its lines")),
        "`fleet ps` does not say lines are dropped: {row:#}"
    );

    // Space returns: fleet writes again, and says how many lines it dropped.
    fs::remove_file(&filler).unwrap_or_else(|err| panic!("cannot remove the filler: {err}"));
    let freed_at = Instant::now();
    let resumed = regex(r"^ticker: log file written again: (\d+) lines? dropped over (\S+)$");
    let line = fleet.wait_for_output(&resumed, WAIT);
    figure(
        "space back until fleet writes the log again",
        freed_at.elapsed(),
    );
    let captures = resumed.captures(&line).expect("the line matched");
    let dropped: u64 = captures[1].parse().expect("a count");
    eprintln!("figure: {dropped} lines dropped over {}", &captures[2]);
    assert!(dropped > 0, "{line}");

    // Lines after the recovery are in the file.
    let mut entries = Vec::new();
    let resumed_text = line
        .strip_prefix("ticker: ")
        .expect("a status line of ticker")
        .to_string();
    assert!(
        wait_until(WAIT, || {
            entries = project.log_entries("ticker");
            entries
                .iter()
                .position(|entry| entry.tag == "---" && entry.text == resumed_text)
                .is_some_and(|at| ticks(&entries[at..]).len() >= 10)
        }),
        "no ticks after `{resumed_text}` in ticker.log"
    );
    // Said once each, on fleet's output and in the file.
    assert_eq!(status_lines_matching(&fleet, &dropping).len(), 1);
    assert_eq!(status_lines_matching(&fleet, &resumed).len(), 1);
    let notes: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.tag == "---" && entry.text.starts_with("log file written again"))
        .map(|(at, _)| at)
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    // Every line in the file is whole (log_entries parsed them all), and the ticks
    // missing from it are exactly the lines fleet counted as dropped.
    let before = ticks(&entries[..notes[0]]);
    let after = ticks(&entries[notes[0]..]);
    assert!(
        before.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "ticks lost before the disk filled"
    );
    assert!(
        after.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "ticks lost after the disk had room again"
    );
    let (last_before, first_after) = (before[before.len() - 1], after[0]);
    assert_eq!(
        first_after - last_before - 1,
        dropped,
        "ticks {last_before} and {first_after} surround the gap"
    );
    assert_eq!(pid_of(&project.service_status("ticker")), pid);
}

#[test]
fn a_removed_log_folder_is_made_again_and_fleet_logs_shows_new_lines() {
    let port = free_port();
    let project = Project::new()
        .var("port", port)
        .var("rate", 100)
        .manifest(TICKER);
    let fleet = project.up_detached(&["--wait"]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let pid = pid_of(&project.service_status("ticker"));
    assert!(
        wait_until(WAIT, || ticks(&project.log_entries("ticker")).len() >= 100),
        "100 ticks did not reach ticker.log"
    );

    let logs = project.path(".fleet/logs");
    fs::remove_dir_all(&logs).unwrap_or_else(|err| panic!("cannot remove {logs:?}: {err}"));
    let removed_at = Instant::now();
    assert!(
        wait_until(WAIT, || project.log_path("ticker").exists()),
        "ticker.log was not made again"
    );
    figure(
        "log folder removed until the file is made again",
        removed_at.elapsed(),
    );

    // `fleet logs` reads the new file, and shows new lines.
    let shown_ticks = || {
        let shown = project.run(&["logs", "ticker", "-n", "1000"]);
        assert_eq!(shown.code, 0, "{shown:#?}");
        shown
            .stdout
            .lines()
            .filter_map(|line| {
                line.split_once(" | ")?
                    .1
                    .strip_prefix("tick ")?
                    .parse()
                    .ok()
            })
            .collect::<Vec<u64>>()
    };
    // The file is made again at the ticker's next write: wait for its lines.
    let mut first = Vec::new();
    assert!(
        wait_until(WAIT, || {
            first = shown_ticks();
            !first.is_empty()
        }),
        "`fleet logs` shows no ticks"
    );
    assert!(
        wait_until(WAIT, || shown_ticks().last() > first.last()),
        "`fleet logs` shows no new lines"
    );

    // Nothing crashed: same pid, port answering, the supervisor serving.
    let status = project.service_status("ticker");
    assert_eq!(pid_of(&status), pid, "{status:#}");
    assert_eq!(status["state"], "healthy", "{status:#}");
    assert!(port_answers(port));
    assert_eq!(
        status["last_event"], "the log file was removed while fleet ran; made it again",
        "{status:#}"
    );
    // The new file says what happened, once, and no tick written after the removal
    // is missing: it starts with what went into the removed file since the last check.
    let entries = project.log_entries("ticker");
    let notes = entries
        .iter()
        .filter(|entry| entry.tag == "---" && entry.text.contains("was removed while fleet ran"))
        .count();
    assert_eq!(notes, 1, "{entries:#?}");
    let ticks = ticks(&entries);
    assert!(
        ticks.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "ticks missing from the new file: {ticks:?}"
    );
    eprintln!(
        "figure: the new file starts at tick {} (carried over from the removed file)",
        ticks[0]
    );
}

// ---------------------------------------------------------------------------------------
// The Docker engine, through a proxy the test can cut

/// A Unix socket that forwards every connection to the machine's Docker engine, until
/// it is cut. See the module docs.
struct EngineProxy {
    path: PathBuf,
    shared: Arc<ProxyShared>,
    accepter: Option<std::thread::JoinHandle<()>>,
}

struct ProxyShared {
    /// `None` while cut: the socket file stays, and connects to it are refused.
    listener: Mutex<Option<UnixListener>>,
    /// Both ends of every forwarded connection, to shut them all when cut.
    connections: Mutex<Vec<UnixStream>>,
    stopping: AtomicBool,
}

/// The machine's engine.
const ENGINE_SOCKET: &str = "/var/run/docker.sock";

impl EngineProxy {
    fn start(path: PathBuf) -> EngineProxy {
        let shared = Arc::new(ProxyShared {
            listener: Mutex::new(Some(listen(&path))),
            connections: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        let accepter = std::thread::spawn(move || accept_loop(&accepting));
        EngineProxy {
            path,
            shared,
            accepter: Some(accepter),
        }
    }

    /// `DOCKER_HOST` for fleet.
    fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Drops every connection and refuses new ones, as an engine that died.
    fn cut(&self) {
        lock(&self.shared.listener).take();
        for stream in lock(&self.shared.connections).drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Listens again, as an engine that came back.
    fn restore(&self) {
        *lock(&self.shared.listener) = Some(listen(&self.path));
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.cut();
        if let Some(accepter) = self.accepter.take() {
            let _ = accepter.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A non-blocking listener on `path`, replacing a stale socket file.
fn listen(path: &Path) -> UnixListener {
    let _ = fs::remove_file(path);
    let listener =
        UnixListener::bind(path).unwrap_or_else(|err| panic!("cannot bind {path:?}: {err}"));
    listener
        .set_nonblocking(true)
        .expect("a listener can be made non-blocking");
    listener
}

fn accept_loop(shared: &ProxyShared) {
    while !shared.stopping.load(Ordering::Relaxed) {
        let accepted = lock(&shared.listener)
            .as_ref()
            .map(|listener| listener.accept());
        let client = match accepted {
            Some(Ok((client, _))) => client,
            // Cut, or nobody connecting: look again shortly.
            _ => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let _ = client.set_nonblocking(false);
        let Ok(engine) = UnixStream::connect(ENGINE_SOCKET) else {
            continue;
        };
        let ends = [&client, &engine].map(|stream| stream.try_clone());
        let [Ok(client_end), Ok(engine_end)] = ends else {
            continue;
        };
        lock(&shared.connections).extend([client_end, engine_end]);
        pipe(&client, &engine);
        pipe(&engine, &client);
    }
}

/// Copies `from` to `to` on a thread until either side closes, then closes both.
fn pipe(from: &UnixStream, to: &UnixStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// One service's state in the snapshot.
fn state_of(project: &Project, service: &str) -> Value {
    project.service_status(service)["state"].clone()
}

#[test]
fn an_unreachable_docker_engine_leaves_processes_alone_shows_containers_unknown_and_is_reconciled()
{
    let (web_port, steady_port, brief_port) = (free_port(), free_port(), free_port());
    let Some(project) = DockerProject::new(|p| {
        p.var("web_port", web_port)
            .var("steady_port", steady_port)
            .var("brief_port", brief_port)
            .manifest(
                r#"
[project]
name = "{project}"

[services.web]
command = "{helper} --port {web_port}"
health = { http = "http://127.0.0.1:{web_port}/health", interval = "200ms" }

[services.steady]
image = "{image}"
build = { context = "img" }
ports = ["{steady_port}:8080"]
health = { http = "http://127.0.0.1:{steady_port}/health", interval = "200ms" }
stop_timeout = "2s"

[services.brief]
image = "{image}"
ports = ["{brief_port}:8080"]
depends_on = { steady = "healthy" }
health = { http = "http://127.0.0.1:{brief_port}/health", interval = "200ms" }
backoff = { initial = "100ms", max = "1s" }
stop_timeout = "2s"
"#,
            )
    }) else {
        return;
    };
    let proxy = EngineProxy::start(project.path("engine.sock"));
    let docker_host = proxy.docker_host();
    let mut fleet = project.spawn_with_env(&["up", "--no-tui"], &[("DOCKER_HOST", &docker_host)]);
    fleet.wait_for_output("web: healthy", WAIT);
    fleet.wait_for_output("steady: healthy", DOCKER_WAIT);
    fleet.wait_for_output("brief: healthy", DOCKER_WAIT);
    let web_pid = pid_of(&project.service_status("web"));
    let steady = container_of(&project.service_status("steady"));
    let brief = container_of(&project.service_status("brief"));

    // The engine goes away.
    let cut_at = Instant::now();
    proxy.cut();
    project.wait_for_state("steady", "unknown", WAIT);
    figure(
        "engine cut until `fleet ps` shows the container unknown",
        cut_at.elapsed(),
    );
    project.wait_for_state("brief", "unknown", WAIT);
    fleet.wait_for_output("steady: Docker engine unreachable (", WAIT);
    // One container dies meanwhile, saying so on its way out: fleet can see neither.
    let _ = http_get(brief_port, "/crash");
    assert!(
        wait_until(WAIT, || !container_running(&brief)),
        "{brief} did not exit on /crash"
    );
    // For a while: the process service is untouched, the containers are shown as
    // unknown and left as they are, neither restarted nor removed.
    let watched_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watched_until {
        let web = project.service_status("web");
        assert_eq!(pid_of(&web), web_pid, "{web:#}");
        assert_eq!(web["state"], "healthy", "{web:#}");
        assert!(port_answers(web_port), "web's port stopped answering");
        for (service, id) in [("steady", &steady), ("brief", &brief)] {
            let status = project.service_status(service);
            assert_eq!(status["state"], "unknown", "{status:#}");
            assert_eq!(container_of(&status), *id, "{status:#}");
            assert_eq!(generation_of(&status), 1, "{status:#}");
        }
        assert!(container_running(&steady), "steady's container stopped");
        assert!(
            crate::containers::inspect(&brief).is_some(),
            "brief's dead container was removed while fleet could not see it"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        port_answers(steady_port),
        "steady's published port stopped answering"
    );

    // The engine comes back: the running container is adopted back as it was, the dead
    // one is replaced through the restart policy.
    let restored_at = Instant::now();
    proxy.restore();
    let adopted = project.wait_for_status("steady", "healthy again", WAIT, |status| {
        status["state"] == "healthy"
    });
    figure(
        "engine back until `fleet ps` shows steady healthy",
        restored_at.elapsed(),
    );
    assert_eq!(container_of(&adopted), steady, "{adopted:#}");
    assert_eq!(generation_of(&adopted), 1, "{adopted:#}");
    assert_eq!(adopted["restarts"], 0, "{adopted:#}");
    let replaced =
        project.wait_for_status("brief", "healthy in a new container", DOCKER_WAIT, |s| {
            s["state"] == "healthy" && generation_of(s) == 2
        });
    figure(
        "engine back until brief's replacement is healthy",
        restored_at.elapsed(),
    );
    assert_ne!(container_of(&replaced), brief, "{replaced:#}");
    assert_eq!(replaced["restarts"], 1, "{replaced:#}");
    assert!(
        crate::containers::inspect(&brief).is_none(),
        "brief's dead container was not removed once the engine was back"
    );
    // Its exit, as the engine reported it once back (or, had the runner heard that the
    // engine was back before it heard the exit, its failed liveness probe).
    fleet.wait_for_output(
        regex(r"^brief: (exited with code 3|restarted: unhealthy .*), restart 1 in "),
        WAIT,
    );
    fleet.wait_for_output("steady: Docker engine reachable again after ", WAIT);
    // The container's output while the engine was away reached its log, once, and
    // nothing before it was written twice by following the output again.
    let count = |service: &str, text: &str| {
        project
            .log_entries(service)
            .iter()
            .filter(|entry| entry.tag == "out" && entry.text.starts_with(text))
            .count()
    };
    assert_eq!(count("brief", "box brief crashing on request"), 1);
    assert_eq!(
        count("brief", "box brief listening on"),
        2,
        "generations 1 and 2"
    );
    assert_eq!(count("steady", "box steady listening on"), 1);
    let said = |text: &str| {
        fleet
            .stdout_lines()
            .iter()
            .filter(|line| line.starts_with("steady: ") && line.contains(text))
            .count()
    };
    assert_eq!(said("Docker engine unreachable"), 1);
    assert_eq!(said("Docker engine reachable again"), 1);
    let web = project.service_status("web");
    assert_eq!(pid_of(&web), web_pid, "{web:#}");
    assert_eq!(state_of(&project, "web"), "healthy");
}
