//! The harness: a temp folder with a `fleet.toml`, the real `fleet` binary run in it,
//! and helpers to watch what fleet and its services really did (pids, ports, log files).
//!
//! # Theory of operation
//! - [`Project::new`] makes a temp folder; [`Project::manifest`] writes `fleet.toml`
//!   after replacing placeholders: `{helper}` (the helper example binary, built once per
//!   test run), `{dir}` (the project folder) and any set with [`Project::var`].
//! - [`Project::up`] spawns `fleet up ...` with stdout and stderr going to files in the
//!   project folder (a pipe that nobody reads would block fleet once it fills), and
//!   returns a [`Running`] guard that reads those files back incrementally.
//! - Every fleet the harness starts, and so every service and grandchild (they inherit
//!   fleet's environment), carries `FLEET_TEST_PROJECT=<project folder>`. Dropping a
//!   [`Running`] stops fleet (SIGINT, then SIGKILL after [`STOP_GRACE`]) and then
//!   SIGKILLs whatever still carries the marker, so a failing test leaves no process
//!   behind. fleet itself gets `PR_SET_PDEATHSIG = SIGKILL`, so even a killed test
//!   binary takes its fleets (and, through fleet's keeper, their services) with it.
//! - A fleet started in the background ([`Project::up_detached`]) is not a child of
//!   the test; its [`Detached`] guard runs `fleet down` on drop, then kills what carries
//!   the marker. [`Project::run`] (for one-shot commands like `fleet ps`) leaves the
//!   project's processes alone; the [`Project`] itself kills them when it is dropped.
//! - [`Control`] speaks the control socket's protocol directly, byte by byte.
//! - Every wait has a deadline and panics with the captured output when it passes.
//!   Use [`WAIT`] unless a test needs longer; never sleep to synchronise.

#![allow(dead_code)] // Not every test module uses every helper.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use regex::Regex;

/// The default deadline of every wait: generous, because CI machines are slow and
/// shared; a passing test never waits this long.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long a dropped [`Running`] gives fleet to stop its services after SIGINT before
/// it is SIGKILLed (its keeper process then kills the services).
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Polling period of every wait: short enough that tests don't idle, long enough not
/// to steal the CPU from the processes under test.
const POLL: Duration = Duration::from_millis(10);
/// The environment variable that marks every process a test started (see the module
/// docs); its value is the project folder, unique per test.
pub const TEST_MARKER_VAR: &str = "FLEET_TEST_PROJECT";
/// Lines of captured output shown in a failure message.
const SHOWN_LINES: usize = 80;

// ---------------------------------------------------------------------------------------
// Binaries

/// The `fleet` binary cargo built for this test run.
pub fn fleet_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fleet"))
}

/// The helper example (`examples/helper.rs`), built on first use. CI prebuilds it, so
/// the build is then a quick no-op.
pub fn helper_binary() -> &'static Path {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(build_helper)
}

/// Where the helper example is (or will be, once built): beside the fleet binary, in
/// `target/<profile>/examples/`.
pub fn helper_path() -> PathBuf {
    fleet_binary()
        .parent()
        .expect("the fleet binary lives in target/<profile>/")
        .join("examples")
        .join("helper")
}

fn build_helper() -> PathBuf {
    let helper = helper_path();
    let profile_dir = fleet_binary()
        .parent()
        .expect("the fleet binary lives in target/<profile>/");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--example", "helper", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    if profile_dir.file_name() == Some(OsStr::new("release")) {
        build.arg("--release");
    }
    // Captured, not inherited: the test harness can't capture a child's output, and
    // compiler warnings would be noise in every test run.
    let (built, log) = match build.output() {
        Ok(output) => (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ),
        Err(err) => (false, format!("cannot run cargo: {err}")),
    };
    // A failed build fails the tests: a helper left from an older build would test
    // code that is not the code under test.
    match (built, helper.is_file()) {
        (true, true) => helper,
        (true, false) => panic!(
            "`cargo build --example helper` succeeded but made no {}:\n{log}",
            helper.display()
        ),
        (false, _) => panic!("`cargo build --example helper` failed:\n{log}"),
    }
}

/// The editors' schema (`fleet schema`) must accept every manifest the suite runs
/// fleet on that fleet's validator accepts: the widest check that the two stay in step.
/// A manifest the validator rejects is the test's business, not the schema's.
fn assert_schema_accepts_what_fleet_accepts(root: &Path, args: &[&str]) {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    let path = match args {
        ["-f" | "--file", file, ..] => root.join(file),
        _ => root.join("fleet.toml"),
    };
    let Ok(source) = fs::read_to_string(&path) else {
        return;
    };
    if fleet::manifest::parse(&path, &source).is_err() {
        return;
    }
    let schema = SCHEMA.get_or_init(|| {
        jsonschema::draft202012::new(&fleet::manifest::schema::manifest_schema())
            .expect("the schema compiles")
    });
    let document: toml::Table = toml::from_str(&source).expect("the validator read it as TOML");
    let instance = serde_json::to_value(document).expect("TOML values convert to JSON");
    let errors: Vec<String> = schema
        .iter_errors(&instance)
        .map(|error| format!("at `{}`: {error}", error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "fleet accepts {} but `fleet schema` rejects it:\n{}\n--- the manifest ---\n{source}",
        path.display(),
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Project

/// A temp folder holding a `fleet.toml`. Removed on drop, after every process the
/// test started there is gone.
pub struct Project {
    /// Canonical path: fleet prints paths from `getcwd`, which resolves symlinks.
    root: PathBuf,
    vars: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Default for Project {
    fn default() -> Self {
        Project::new()
    }
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::Builder::new()
            .prefix("fleet-test-")
            .tempdir()
            .expect("cannot create a temp folder for the test project");
        let root = dir
            .path()
            .canonicalize()
            .expect("the new temp folder has a canonical path");
        Project {
            root,
            vars: Vec::new(),
            _dir: dir,
        }
    }

    /// Sets a placeholder: `{name}` in later [`Project::manifest`] and
    /// [`Project::file`] texts becomes `value`.
    pub fn var(mut self, name: &str, value: impl ToString) -> Project {
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    /// Writes `fleet.toml` from `text`, placeholders replaced.
    pub fn manifest(self, text: &str) -> Project {
        self.file("fleet.toml", text)
    }

    /// Writes `relative` (folders created) from `text`, placeholders replaced.
    pub fn file(self, relative: &str, text: &str) -> Project {
        let text = self.expand(text);
        self.write_bytes(relative, text.as_bytes());
        self
    }

    /// Rewrites `relative` from `text`, placeholders replaced, while the project is in
    /// use (a running fleet borrows it): to edit `fleet.toml` before `fleet reload`.
    pub fn rewrite(&self, relative: &str, text: &str) {
        self.write_bytes(relative, self.expand(text).as_bytes());
    }

    /// Writes raw bytes, no placeholders.
    pub fn write_bytes(&self, relative: &str, bytes: &[u8]) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("cannot create a folder in the test project");
        }
        fs::write(&path, bytes).unwrap_or_else(|err| panic!("cannot write {path:?}: {err}"));
    }

    /// Replaces `{helper}`, `{dir}` and the [`Project::var`] placeholders; panics on
    /// one left over, so a typo can't reach fleet as a literal `{name}`.
    pub fn expand(&self, text: &str) -> String {
        // Variables first: their values may hold `{dir}` and `{helper}`.
        let mut text = text.to_string();
        for (name, value) in &self.vars {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text = text.replace("{dir}", &self.root.to_string_lossy());
        if text.contains("{helper}") {
            text = text.replace("{helper}", &helper_binary().to_string_lossy());
        }
        // A placeholder is `{word}` without spaces; TOML inline tables have spaces.
        let leftover = Regex::new(r"\{[a-z_][a-z0-9_]*\}").expect("the placeholder regex is valid");
        if let Some(found) = leftover.find(&text) {
            panic!(
                "placeholder {} has no value (use Project::var)",
                found.as_str()
            );
        }
        text
    }

    /// The project folder (canonical).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// `relative` inside the project folder.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// A `fleet` command set up to run in the project folder, marked for cleanup.
    pub fn command(&self, args: &[&str]) -> Command {
        assert_schema_accepts_what_fleet_accepts(&self.root, args);
        let mut command = Command::new(fleet_binary());
        command
            .args(args)
            .current_dir(&self.root)
            .env(TEST_MARKER_VAR, &self.root)
            .env("NO_COLOR", "1")
            // If the tests themselves run under fleet, their fleets are not its instances.
            .env_remove("FLEET_INSTANCE")
            .stdin(Stdio::null());
        // SAFETY: the closure runs between fork and exec and only calls prctl(2), which
        // is async-signal-safe; it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(|| {
                // If the test binary dies (killed by a CI timeout), fleet dies with it and
                // its keeper kills the services. The signal fires when the spawning *thread*
                // exits; a test's guard stops fleet before its thread ends, so that is fine.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        command
    }

    /// Spawns `fleet ARGS` with its output captured to files in the project folder.
    pub fn spawn(&self, args: &[&str]) -> Running<'_> {
        self.spawn_with_env(args, &[])
    }

    /// [`Project::spawn`] with extra environment variables (`DOCKER_HOST`, say).
    pub fn spawn_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Running<'_> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Outside `.fleet/`, which some tests expect not to exist.
        let stdout_path = self.path(&format!("fleet-{n}.stdout"));
        let stderr_path = self.path(&format!("fleet-{n}.stderr"));
        let create = |path: &Path| {
            fs::File::create(path).unwrap_or_else(|err| panic!("cannot create {path:?}: {err}"))
        };
        let child = self
            .command(args)
            .envs(env.iter().copied())
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path))
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", fleet_binary().display()));
        Running {
            child,
            exited: None,
            description: format!("fleet {}", args.join(" ")),
            stdout: RefCell::new(Capture::new(stdout_path)),
            stderr: RefCell::new(Capture::new(stderr_path)),
            marker: self.root.clone(),
            kill_marked_on_drop: true,
            _project: PhantomData,
        }
    }

    /// Spawns `fleet up ARGS` (pass `--no-tui` for prefixed plain output).
    pub fn up(&self, args: &[&str]) -> Running<'_> {
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        self.spawn(&all)
    }

    /// Runs `fleet ARGS` to completion (within [`WAIT`]).
    pub fn run(&self, args: &[&str]) -> Finished {
        self.run_within(args, WAIT)
    }

    /// Runs `fleet ARGS` to completion within `within` (image builds take longer).
    pub fn run_within(&self, args: &[&str], within: Duration) -> Finished {
        let mut running = self.spawn(args);
        running.kill_marked_on_drop = false;
        let status = running.wait_exit(within);
        let code = status.code().unwrap_or_else(|| {
            panic!(
                "`{}` was killed by {status}\n{}",
                running.description,
                running.dump()
            )
        });
        let stdout = running.stdout.borrow_mut().all_text();
        let stderr = running.stderr.borrow_mut().all_text();
        Finished {
            code,
            stdout,
            stderr,
        }
    }

    /// `text` with the project folder replaced by `{dir}` and the helper's path by
    /// `{helper}`, so expected text that names files can be written as a literal.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&*self.root.to_string_lossy(), "{dir}")
            .replace(&*helper_path().to_string_lossy(), "{helper}")
    }

    /// The raw bytes of `.fleet/logs/<service>.log` (empty when it does not exist).
    pub fn log_bytes(&self, service: &str) -> Vec<u8> {
        let path = self.log_path(service);
        match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => panic!("cannot read {path:?}: {err}"),
        }
    }

    pub fn log_path(&self, service: &str) -> PathBuf {
        self.path(&format!(".fleet/logs/{service}.log"))
    }

    /// The lines of a service's log file, decoded lossily, without their newline.
    pub fn log_lines(&self, service: &str) -> Vec<String> {
        let bytes = self.log_bytes(service);
        let text = String::from_utf8_lossy(&bytes);
        text.lines().map(str::to_string).collect()
    }

    /// The log file's lines, parsed (`<24-char timestamp> <tag> <text>`); panics on a
    /// line that does not have that shape.
    pub fn log_entries(&self, service: &str) -> Vec<LogEntry> {
        self.log_lines(service)
            .iter()
            .map(|line| {
                LogEntry::parse(line)
                    .unwrap_or_else(|| panic!("malformed line in {service}.log: {line:?}"))
            })
            .collect()
    }

    /// Pids of live processes that carry this project's test marker: whatever the
    /// project's fleets, services and their descendants left running.
    pub fn processes_left(&self) -> Vec<u32> {
        processes_with_marker(&self.root)
    }

    /// Waits (within [`WAIT`]) until no process carries this project's marker; panics
    /// listing the survivors.
    pub fn assert_nothing_left(&self) {
        if wait_until(WAIT, || self.processes_left().is_empty()) {
            return;
        }
        let survivors: Vec<String> = self
            .processes_left()
            .into_iter()
            .map(|pid| format!("  pid {pid}: {}", command_line(pid)))
            .collect();
        panic!("processes outlived their fleet:\n{}", survivors.join("\n"));
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        kill_marked(&self.root);
    }
}

/// What a finished `fleet` command left.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One parsed line of a service's log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// `2026-11-26T06:25:08.123Z`
    pub timestamp: String,
    /// `out`, `err`, `bld` or `---`
    pub tag: String,
    pub text: String,
}

impl LogEntry {
    pub fn parse(line: &str) -> Option<LogEntry> {
        let timestamp = line.get(..24)?;
        let rest = line.get(24..)?.strip_prefix(' ')?;
        let tag = rest.get(..3)?;
        let text = rest.get(3..)?.strip_prefix(' ')?;
        Some(LogEntry {
            timestamp: timestamp.to_string(),
            tag: tag.to_string(),
            text: text.to_string(),
        })
    }

    /// The timestamp as milliseconds since the Unix epoch.
    pub fn at_ms(&self) -> u64 {
        fleet::logs::parse_timestamp(&self.timestamp)
            .unwrap_or_else(|| panic!("bad log timestamp {:?}", self.timestamp))
    }
}

// ---------------------------------------------------------------------------------------
// Running

/// A running (or finished) `fleet` process and its captured output. Dropping it stops
/// fleet and kills anything the project left (see the module docs). It borrows its
/// [`Project`], so the project folder outlives the fleet running in it.
pub struct Running<'project> {
    child: Child,
    exited: Option<ExitStatus>,
    description: String,
    stdout: RefCell<Capture>,
    stderr: RefCell<Capture>,
    marker: PathBuf,
    /// Whether dropping this guard kills every process carrying the project's marker.
    /// Off for commands [`Project::run`] runs to completion: `fleet ps` must not take a
    /// detached fleet down with it ([`Project`] and [`Detached`] clean up those).
    kill_marked_on_drop: bool,
    _project: PhantomData<&'project Project>,
}

impl Running<'_> {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a line of fleet's stdout or stderr matches `pattern` (a substring
    /// `&str` or a [`Regex`]); returns that line. Panics, showing the output, when the
    /// deadline passes or fleet exits first.
    pub fn wait_for_output(&mut self, pattern: impl Pattern, within: Duration) -> String {
        self.wait_for_lines(pattern, 1, within).remove(0)
    }

    /// Waits until `count` lines match `pattern`; returns the first `count`, in order
    /// (stdout lines before stderr lines).
    pub fn wait_for_lines(
        &mut self,
        pattern: impl Pattern,
        count: usize,
        within: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut found = Vec::new();
        let (mut out_seen, mut err_seen) = (0, 0);
        loop {
            // Check for exit first, so the last read below sees everything it wrote.
            let exited = self.poll_exit();
            for (capture, seen) in [(&self.stdout, &mut out_seen), (&self.stderr, &mut err_seen)] {
                let mut capture = capture.borrow_mut();
                capture.refresh(exited.is_some());
                for line in &capture.lines[*seen..] {
                    if pattern.is_match(line) {
                        found.push(line.clone());
                    }
                }
                *seen = capture.lines.len();
            }
            if found.len() >= count {
                found.truncate(count);
                return found;
            }
            if let Some(status) = exited {
                panic!(
                    "`{}` exited ({status}) after {} of {count} lines matching {}\n{}",
                    self.description,
                    found.len(),
                    pattern.describe(),
                    self.dump()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {within:?}: {} of {count} lines matching {} from `{}`\n{}",
                    found.len(),
                    pattern.describe(),
                    self.description,
                    self.dump()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `service` prints a line containing `text` (fleet shows it as
    /// `<service padded> | <line>`); returns the service's line, without the prefix.
    pub fn wait_for_output_of(&mut self, service: &str, text: &str, within: Duration) -> String {
        let line = Regex::new(&format!(
            r"^{} *\| (.*{}.*)$",
            regex::escape(service),
            regex::escape(text)
        ))
        .expect("the output-line regex is valid");
        let found = self.wait_for_output(&line, within);
        line.captures(&found).expect("the line matched")[1].to_string()
    }

    /// Waits for `<service>: started (pid N)` and returns N (the first such line).
    pub fn started_pid(&mut self, service: &str, within: Duration) -> u32 {
        self.started_pids(service, 1, within)[0]
    }

    /// Waits for `count` `<service>: started (pid N)` lines; returns their pids in order.
    pub fn started_pids(&mut self, service: &str, count: usize, within: Duration) -> Vec<u32> {
        let started = Regex::new(&format!(
            r"^{}: started \(pid (\d+)\)$",
            regex::escape(service)
        ))
        .expect("the started-line regex is valid");
        self.wait_for_lines(&started, count, within)
            .iter()
            .map(|line| {
                started.captures(line).expect("the line matched")[1]
                    .parse()
                    .expect("a pid is a number")
            })
            .collect()
    }

    /// Every complete line fleet has written to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        let mut capture = self.stdout.borrow_mut();
        capture.refresh(self.exited.is_some());
        capture.lines.clone()
    }

    /// Every complete line fleet has written to stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        let mut capture = self.stderr.borrow_mut();
        capture.refresh(self.exited.is_some());
        capture.lines.clone()
    }

    /// fleet's status lines so far, as `(service, text)`: `a: started (pid 7)` is
    /// `("a", "started (pid 7)")`. Lines of fleet itself (`fleet: ...`) are included.
    pub fn status_lines(&self) -> Vec<(String, String)> {
        let status = Regex::new(r"^([A-Za-z0-9][A-Za-z0-9_.-]*): (.*)$")
            .expect("the status-line regex is valid");
        self.stdout_lines()
            .iter()
            .chain(self.stderr_lines().iter())
            .filter_map(|line| {
                let captures = status.captures(line)?;
                Some((captures[1].to_string(), captures[2].to_string()))
            })
            .collect()
    }

    /// The output lines of `service` so far (`<service padded> | <text>`), text only.
    pub fn output_of(&self, service: &str) -> Vec<String> {
        self.stdout_lines()
            .iter()
            .filter_map(|line| {
                let (name, text) = line.split_once(" | ")?;
                (name.trim_end() == service).then(|| text.to_string())
            })
            .collect()
    }

    /// Sends SIGINT to fleet (as Ctrl-C would, but to fleet alone).
    pub fn interrupt(&self) {
        self.signal(Signal::SIGINT);
    }

    pub fn signal(&self, signal: Signal) {
        if self.exited.is_some() {
            panic!(
                "`{}` already exited; cannot send {signal}",
                self.description
            );
        }
        kill(Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|err| panic!("cannot send {signal} to fleet: {err}"));
    }

    /// Waits for fleet to exit; panics, showing the output, after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.poll_exit() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "`{}` did not exit within {within:?}\n{}",
                    self.description,
                    self.dump()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The exit status if fleet has exited.
    pub fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .unwrap_or_else(|err| panic!("cannot wait for fleet: {err}"));
        }
        self.exited
    }

    /// All captured output, for failure messages.
    pub fn dump(&self) -> String {
        let tail = |capture: &RefCell<Capture>| {
            let mut capture = capture.borrow_mut();
            capture.refresh(true);
            let skip = capture.lines.len().saturating_sub(SHOWN_LINES);
            let mut text = String::new();
            if skip > 0 {
                text.push_str(&format!("  ... {skip} earlier lines\n"));
            }
            for line in &capture.lines[skip..] {
                text.push_str("  ");
                text.push_str(line);
                text.push('\n');
            }
            text
        };
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.poll_exit().is_none() {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGINT);
            let deadline = Instant::now() + STOP_GRACE;
            while self.poll_exit().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if self.poll_exit().is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if self.kill_marked_on_drop {
            kill_marked(&self.marker);
        }
    }
}

/// One captured output file, read incrementally into lines.
struct Capture {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    lines: Vec<String>,
}

impl Capture {
    fn new(path: PathBuf) -> Capture {
        Capture {
            path,
            offset: 0,
            partial: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Reads what was appended since the last call. An incomplete last line is held
    /// back until its newline arrives, or until `finished` (the writer exited).
    fn refresh(&mut self, finished: bool) {
        let mut file = match fs::File::open(&self.path) {
            Ok(file) => file,
            Err(err) => panic!("cannot open {:?}: {err}", self.path),
        };
        let read = file
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| file.read_to_end(&mut self.partial))
            .unwrap_or_else(|err| panic!("cannot read {:?}: {err}", self.path));
        self.offset += read as u64;
        if let Some(last_newline) = self.partial.iter().rposition(|byte| *byte == b'\n') {
            let rest = self.partial.split_off(last_newline + 1);
            let complete = std::mem::replace(&mut self.partial, rest);
            self.lines.extend(
                String::from_utf8_lossy(&complete)
                    .lines()
                    .map(str::to_string),
            );
        }
        if finished && !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.lines.push(String::from_utf8_lossy(&last).into_owned());
        }
    }

    fn all_text(&mut self) -> String {
        self.refresh(true);
        let mut text = self.lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text
    }
}

// ---------------------------------------------------------------------------------------
// Patterns

/// What a waited-for line must match: a `&str`/`String` (substring) or a [`Regex`].
pub trait Pattern {
    fn is_match(&self, line: &str) -> bool;
    fn describe(&self) -> String;
}

impl Pattern for str {
    fn is_match(&self, line: &str) -> bool {
        line.contains(self)
    }
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl Pattern for String {
    fn is_match(&self, line: &str) -> bool {
        line.contains(self.as_str())
    }
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl Pattern for Regex {
    fn is_match(&self, line: &str) -> bool {
        Regex::is_match(self, line)
    }
    fn describe(&self) -> String {
        format!("/{}/", self.as_str())
    }
}

impl<P: Pattern + ?Sized> Pattern for &P {
    fn is_match(&self, line: &str) -> bool {
        (**self).is_match(line)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A [`Regex`] from a pattern the test wrote (panics if it is invalid).
pub fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|err| panic!("bad regex {pattern:?}: {err}"))
}

// ---------------------------------------------------------------------------------------
// Processes, files, ports

/// Polls `condition` every 10 ms until it holds (true) or `within` passes (false).
#[must_use = "assert on the result: false means the deadline passed"]
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// The process exists and is not a zombie (a zombie has exited; only its exit status
/// waits to be collected).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid_i32) = i32::try_from(pid) else {
        return false;
    };
    if kill(Pid::from_raw(pid_i32), None).is_err() {
        return false;
    }
    match process_state(pid) {
        Some(state) => state != 'Z' && state != 'X',
        None => false,
    }
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, ...).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// The command line of a process, for messages.
pub fn command_line(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .split('\0')
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".to_string())
}

/// Whether `pid` is a fleet keeper: one forked by its supervisor names itself
/// `fleet-keeper`; one started by re-executing fleet has the hidden argument.
pub fn is_keeper(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "fleet-keeper")
        || command_line(pid).contains("__fleet_keeper")
}

/// A pid file's content, trimmed and parsed; `None` while it does not exist.
pub fn read_pidfile(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{path:?} holds {text:?}, not a pid")),
    )
}

/// Waits for a pid file to appear; returns the pid in it.
pub fn wait_for_pidfile(path: &Path, within: Duration) -> u32 {
    let mut pid = None;
    if wait_until(within, || {
        pid = read_pidfile(path);
        pid.is_some()
    }) {
        return pid.expect("set when the wait succeeded");
    }
    panic!("{path:?} did not appear within {within:?}");
}

/// A TCP connection to 127.0.0.1:`port` succeeds.
pub fn port_answers(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}

/// `GET path` from 127.0.0.1:`port` (HTTP/1.1, `Connection: close`): the status code
/// and the body, or `None` without a complete answer (connect within 1 s, answer
/// within 2 s).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released). Tests use
/// these, never fixed ports, so they can run in parallel.
/// `GET PATH` on a new connection with `Connection: close` (connect within 1 s, the
/// whole answer within `answer_within`): the raw answer as text, or how it failed.
pub fn raw_get_on_new_connection(
    port: u16,
    path: &str,
    answer_within: Duration,
) -> Result<String, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))
        .map_err(|err| format!("connect: {err}"))?;
    stream
        .set_read_timeout(Some(answer_within))
        .map_err(|err| format!("set_read_timeout: {err}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|err| format!("write: {err}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|err| format!("read: {err} after {} bytes", response.len()))?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// The same GET: the body of a 200, trimmed, or how the request failed. For clients
/// that count failed requests through a redeploy.
pub fn get_on_new_connection(
    port: u16,
    path: &str,
    answer_within: Duration,
) -> Result<String, String> {
    let text = raw_get_on_new_connection(port, path, answer_within)?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.trim().to_string()),
        _ if text.is_empty() => Err("closed without an answer".to_string()),
        _ => Err(format!("answer {text:?}")),
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// The first of `count` consecutive free ports on 127.0.0.1, for services whose
/// replicas take port, port + 1, .... They come from below the kernel's ephemeral range
/// (32768 and up), where [`free_port`] and every outgoing connection's source port
/// live: a neighbour of an ephemeral port may be any connection's source port at any
/// moment. Blocks are handed out in turn, so two tests of one run never share one.
pub fn free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static CURSOR: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id() * 97;
    for _ in 0..200 {
        let offset = CURSOR.fetch_add(u32::from(count) + 1, Ordering::Relaxed);
        let base = FIRST + (seed + offset) % (SPAN - u32::from(count));
        let base = u16::try_from(base).expect("below 32768");
        let listeners: Vec<TcpListener> = (base..base + count)
            .map_while(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok())
            .collect();
        if listeners.len() == usize::from(count) {
            return base;
        }
    }
    panic!(
        "no {count} consecutive free ports between {FIRST} and {}",
        FIRST + SPAN
    )
}

/// Live processes whose environment holds `FLEET_TEST_PROJECT=<marker>`.
fn processes_with_marker(marker: &Path) -> Vec<u32> {
    let wanted = format!("{TEST_MARKER_VAR}={}", marker.to_string_lossy());
    let own = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own && pid_alive(*pid))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|entry| entry == wanted.as_bytes())
            })
        })
        .collect()
}

/// SIGKILLs every process carrying the marker. Repeats, since a process may fork while
/// we look.
fn kill_marked(marker: &Path) {
    for _ in 0..5 {
        let found = processes_with_marker(marker);
        if found.is_empty() {
            return;
        }
        for pid in found {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        std::thread::sleep(POLL);
    }
}

/// `status` as the exit code, panicking when a signal ended the process.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => panic!("fleet was killed by signal {signal}"),
        (None, None) => panic!("fleet ended with {status}"),
    }
}

// ---------------------------------------------------------------------------------------
// Detached fleets

/// A fleet started with `fleet up -d` (or `--wait`). Its supervisor is not a child of
/// the test (it runs in its own session and outlives `fleet up -d`), so neither
/// `PR_SET_PDEATHSIG` nor a [`Running`] guard covers it: dropping this guard runs
/// `fleet down` and then SIGKILLs whatever still carries the project's marker, so a
/// failing test leaves no supervisor behind.
pub struct Detached<'project> {
    project: &'project Project,
    /// What `fleet up -d ...` printed, and its exit code.
    pub up: Finished,
    /// From `supervisor running in the background (pid N)`; `None` when fleet did not
    /// get that far.
    pub supervisor_pid: Option<u32>,
}

impl Project {
    /// Runs `fleet up -d ARGS` to completion and returns a guard that takes the fleet
    /// down on drop. Does not check the exit code: `--wait` tests expect failures.
    pub fn up_detached(&self, args: &[&str]) -> Detached<'_> {
        self.up_detached_within(args, WAIT)
    }

    /// [`Project::up_detached`], waiting up to `within` for `up` to return.
    pub fn up_detached_within(&self, args: &[&str], within: Duration) -> Detached<'_> {
        let mut all = vec!["up", "-d"];
        all.extend_from_slice(args);
        let up = self.run_within(&all, within);
        let supervisor_pid = regex(r"supervisor running in the background \(pid (\d+)\)")
            .captures(&up.stdout)
            .map(|found| found[1].parse().expect("a pid is a number"));
        Detached {
            project: self,
            up,
            supervisor_pid,
        }
    }

    /// The manifest path as fleet sees it (fleet finds `fleet.toml` in its cwd, the
    /// canonical project folder); the control socket's name is a hash of it.
    pub fn manifest_path(&self) -> PathBuf {
        self.path("fleet.toml")
    }

    /// Where this project's control socket and lock live.
    pub fn endpoint(&self) -> fleet::control::Endpoint {
        fleet::control::Endpoint::for_manifest(&self.manifest_path())
            .unwrap_or_else(|err| panic!("cannot make fleet's runtime dir: {err}"))
    }

    /// `fleet ps --json`, parsed; panics unless it exits 0 with a JSON array.
    pub fn ps_json(&self) -> Vec<serde_json::Value> {
        let finished = self.run(&["ps", "--json"]);
        assert_eq!(finished.code, 0, "`fleet ps --json` failed: {finished:#?}");
        match serde_json::from_str(&finished.stdout) {
            Ok(serde_json::Value::Array(services)) => services,
            other => panic!("`fleet ps --json` printed no JSON array ({other:?}): {finished:#?}"),
        }
    }

    /// The supervisor's snapshot, through the control socket (cheaper than spawning
    /// `fleet ps` in a polling loop).
    pub fn snapshot(&self) -> serde_json::Value {
        let mut control = Control::connect(self);
        let reply = control.request(r#"{"version":1,"op":"ps"}"#);
        match reply.get("ok") {
            Some(snapshot) => snapshot.clone(),
            None => panic!("`ps` on the control socket answered {reply}"),
        }
    }

    /// One service's row of the snapshot (the same object `fleet ps --json` prints).
    pub fn service_status(&self, service: &str) -> serde_json::Value {
        let snapshot = self.snapshot();
        snapshot["services"]
            .as_array()
            .and_then(|services| services.iter().find(|s| s["name"] == service))
            .cloned()
            .unwrap_or_else(|| panic!("no service `{service}` in the snapshot: {snapshot:#}"))
    }

    /// Waits until `service`'s row satisfies `condition`; returns that row. Panics with
    /// the last row, described by `what`, when `within` passes.
    pub fn wait_for_status(
        &self,
        service: &str,
        what: &str,
        within: Duration,
        mut condition: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        if wait_until(within, || {
            last = self.service_status(service);
            condition(&last)
        }) {
            return last;
        }
        panic!("`{service}` did not become {what} within {within:?}; last status: {last:#}");
    }

    /// Waits until `service` is in `state`; returns its row.
    pub fn wait_for_state(
        &self,
        service: &str,
        state: &str,
        within: Duration,
    ) -> serde_json::Value {
        self.wait_for_status(service, state, within, |status| status["state"] == state)
    }
}

impl Detached<'_> {
    /// The supervisor's pid; panics (showing fleet's output) when `up -d` did not say.
    pub fn supervisor_pid(&self) -> u32 {
        self.supervisor_pid.unwrap_or_else(|| {
            panic!(
                "`fleet up -d` did not report the supervisor's pid: {:#?}",
                self.up
            )
        })
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        // No panics in here: this also runs while a failed test unwinds. A fleet that
        // is already down makes `fleet down` exit 4, which is fine.
        let mut down = self.project.command(&["down"]);
        down.stdout(Stdio::null()).stderr(Stdio::null());
        if let Ok(mut child) = down.spawn() {
            let deadline = Instant::now() + STOP_GRACE;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        kill_marked(&self.project.root);
    }
}

// ---------------------------------------------------------------------------------------
// The control socket, spoken directly

/// A raw connection to a project's control socket: newline-delimited JSON, as
/// `fleet ps` and friends speak it, but with the test choosing every byte.
pub struct Control {
    reader: std::io::BufReader<UnixStream>,
    writer: UnixStream,
}

impl Control {
    /// Connects to the project's socket; panics if nothing listens there.
    pub fn connect(project: &Project) -> Control {
        let socket = project.endpoint().socket;
        let stream = UnixStream::connect(&socket)
            .unwrap_or_else(|err| panic!("cannot connect to {socket:?}: {err}"));
        // A reply that never comes fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(WAIT))
            .expect("a read timeout can be set on a connected socket");
        let writer = stream
            .try_clone()
            .expect("a connected socket can be duplicated");
        Control {
            reader: std::io::BufReader::new(stream),
            writer,
        }
    }

    /// Writes `bytes` as they are: no newline is added.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .unwrap_or_else(|err| panic!("cannot write to the control socket: {err}"));
    }

    /// Reads one reply line (within [`WAIT`]) and parses it.
    pub fn reply(&mut self) -> serde_json::Value {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("the supervisor closed the connection"),
            Ok(_) => serde_json::from_str(&line)
                .unwrap_or_else(|err| panic!("reply {line:?} is not JSON: {err}")),
            Err(err) => panic!("no reply from the supervisor: {err}"),
        }
    }

    /// Sends `line` and a newline; returns the first reply line.
    pub fn request(&mut self, line: &str) -> serde_json::Value {
        self.send(format!("{line}\n").as_bytes());
        self.reply()
    }
}

/// The `error.code` of a reply, if it is an error.
pub fn error_code(reply: &serde_json::Value) -> Option<&str> {
    reply.get("error")?.get("code")?.as_str()
}

/// The pids of `pid`'s children, from `/proc/PID/task/*/children` (every thread's).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
