//! The manifest: `fleet.toml` turned into a validated [`Manifest`].
//!
//! Owns: finding the file, parsing it (`raw`), interpolating its strings
//! (`interpolate`: `${VAR}` from the environment and `.env`), checking it (`validate` walks the
//! tables, `values` reads single values, `health` the probe, `checks` compares
//! services) and rendering what is wrong with it (`diagnostic`). It never starts
//! anything and never touches the OS beyond reading files and checking that paths
//! exist.
//!
//! Everything downstream (supervisor, runners, runtime) works on these resolved types
//! only: paths are absolute, durations are [`Duration`], env files are already read.
//! Each [`ServiceSpec`] derives `Hash`, so `fleet reload` can tell which services
//! changed by comparing [`ServiceSpec::spec_hash`].

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod checks;
pub mod diagnostic;
mod health;
pub mod interpolate;
mod raw;
pub mod render;
pub mod schema;
#[cfg(test)]
mod test_support;
mod validate;
// `pub(crate)` for `crate::fuzzing`, which feeds its parsers directly.
pub(crate) mod values;

pub use diagnostic::{Diagnostic, ManifestError};
pub use values::DurationError;

/// The file name looked for in the current folder and its parents.
pub const MANIFEST_FILE: &str = "fleet.toml";

/// A validated manifest: every service resolved, every dependency known, no cycles.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Absolute path of the manifest file.
    pub path: PathBuf,
    /// The folder holding the manifest; relative paths in the file are resolved against it.
    pub root: PathBuf,
    pub project: Project,
    /// Services in the order they are declared in the file.
    pub services: Vec<ServiceSpec>,
    /// What `fleet export` needs beyond what runs here, by service name: only services
    /// with an `[services.X.export]` table or an `env_file`. Kept out of [`ServiceSpec`]
    /// so that editing it never makes `fleet reload` replace a running service.
    pub exports: BTreeMap<String, ServiceExport>,
}

/// A service's `[services.X.export]` table and its `env_file` kept apart from `env`:
/// how the service runs on Docker Swarm or Kubernetes where that differs from here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceExport {
    /// `export.image`: the image an engine runs; a process service is exported only
    /// with one, a container's replaces its local tag.
    pub image: Option<String>,
    /// `export.command`: the command in that image, when it differs from `command`.
    pub command: Option<CommandLine>,
    /// `export.env`: variables added over the service's own `env` there.
    pub env: BTreeMap<String, String>,
    /// `export.secret`: the `env_file` holds secrets (Kubernetes: a Secret, not a
    /// ConfigMap).
    pub secret: bool,
    /// `env_file`: its absolute path and the values read from it (which
    /// [`ServiceSpec::env`] holds too, under `env`).
    pub env_file: Option<(PathBuf, BTreeMap<String, String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Project {
    /// `[project] name`, else the name of the manifest's folder.
    pub name: String,
    /// `[project] log_max_size`: a service's log file is rotated when it grows past this.
    pub log_max_size: u64,
    /// `[project] log_keep`: how many rotated files are kept beside the live one.
    pub log_keep: u32,
}

/// Default for `log_max_size`: 10 MB keeps hours of chatty dev output per service
/// while bounding the disk a runaway logger can fill.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1000 * 1000;
/// Default for `log_keep`.
pub const DEFAULT_LOG_KEEP: u32 = 3;

/// The most replicas a service may have: far beyond what one machine runs of one
/// service, low enough that a typo (`replicas = 30000`) is caught, not obeyed.
pub const MAX_REPLICAS: u32 = 1000;

/// Which services a command enables: those without `profiles`, those with one of
/// `profiles`, and those named (a named service runs whatever its profiles).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activation {
    pub profiles: Vec<String>,
    pub services: Vec<String>,
    /// The profiles given as flags: each must be declared by some service. Those
    /// from `FLEET_PROFILES` need not (a variable set for many projects at once).
    pub flags: Vec<String>,
}

impl Activation {
    /// `FLEET_PROFILES` (comma-separated) and `--profile` flags, in that order,
    /// without repeats.
    pub fn new(flags: &[String], env: Option<&str>, services: &[String]) -> Activation {
        let mut profiles: Vec<String> = Vec::new();
        let from_env = env
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty());
        for name in from_env.chain(flags.iter().map(String::as_str)) {
            if !profiles.iter().any(|known| known == name) {
                profiles.push(name.to_string());
            }
        }
        Activation {
            profiles,
            services: services.to_vec(),
            flags: flags.to_vec(),
        }
    }

    /// Whether `spec` runs under this activation (before dependencies are added).
    pub fn enables(&self, spec: &ServiceSpec) -> bool {
        spec.profiles.is_empty()
            || spec
                .profiles
                .iter()
                .any(|profile| self.profiles.contains(profile))
            || self.services.contains(&spec.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceSpec {
    pub name: String,
    pub kind: ServiceKind,
    /// Environment added to the service's: `env_file` first, then `env` (which wins).
    pub env: BTreeMap<String, String>,
    pub depends_on: Vec<Dependency>,
    pub restart: RestartPolicy,
    /// Crashes allowed within `restart_window`; one more and the service is `failed`.
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub backoff: BackoffSpec,
    pub stop_signal: StopSignal,
    pub stop_timeout: Duration,
    /// Host ports the service listens on; checked free before each start.
    pub ports: Vec<u16>,
    pub health: Option<HealthSpec>,
    /// Restart an instance whose liveness probe fails `retries` times in a row.
    pub restart_on_unhealthy: bool,
    /// A new instance that has not passed its probe by then is restarted; `None`: it
    /// may take as long as it needs.
    pub start_timeout: Option<Duration>,
    /// Paths (globs, relative to the manifest's folder) whose changes redeploy the service.
    pub watch: Vec<String>,
    /// Globs excluded from `watch`; `.git`, `target` and `.fleet` are always excluded.
    pub ignore: Vec<String>,
    pub redeploy: RedeployStrategy,
    /// A listening socket fleet binds and hands to every instance (`LISTEN_FDS`).
    pub socket: Option<SocketSpec>,
    /// How many instances run at once (`replicas`, 0 to [`MAX_REPLICAS`]); each is a
    /// replica with its own process group or container, probe, restarts and log.
    pub replicas: u32,
    /// The profiles that enable the service; empty: it is always enabled.
    pub profiles: Vec<String>,
}

impl ServiceSpec {
    /// A hash of everything that defines how the service runs. Two specs with the
    /// same hash are run the same way; `fleet reload` restarts only services whose
    /// hash changed.
    pub fn spec_hash(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut hasher);
        hasher.finish()
    }

    pub fn is_container(&self) -> bool {
        matches!(self.kind, ServiceKind::Container(_))
    }

    /// The host ports the service listens on, as `fleet ps` shows them: its `ports`,
    /// then its handed socket's port unless it is among them.
    pub fn listening_ports(&self) -> Vec<u16> {
        let mut ports = self.ports.clone();
        if let Some(socket) = &self.socket
            && !ports.contains(&socket.port)
        {
            ports.push(socket.port);
        }
        ports
    }

    /// The spec replica `index` (0-based) runs with: every host port in `ports` and
    /// every published host port moved up by `index`, and a probe of one of those
    /// ports moved with it. The shared `socket` stays where it is: every replica
    /// accepts on it.
    pub fn replica(&self, index: u32) -> ServiceSpec {
        let mut spec = self.clone();
        if index == 0 {
            return spec;
        }
        let shift = |port: u16| port.saturating_add(u16::try_from(index).unwrap_or(u16::MAX));
        let own_ports = self.ports.clone();
        spec.ports = self.ports.iter().map(|port| shift(*port)).collect();
        if let ServiceKind::Container(container) = &mut spec.kind {
            for mapping in &mut container.ports {
                mapping.host = shift(mapping.host);
            }
        }
        if let Some(health) = &mut spec.health {
            match &mut health.probe {
                Probe::Http { target, .. } if own_ports.contains(&target.port) => {
                    *target = target.with_port(shift(target.port));
                }
                Probe::Tcp { port, .. } if own_ports.contains(port) => *port = shift(*port),
                _ => {}
            }
        }
        spec
    }

    /// The most replicas the service's ports allow: a host port range has one port
    /// per replica, and a single port moves up by one per replica.
    pub fn replica_limit(&self) -> u32 {
        let mut limit = MAX_REPLICAS;
        let mut cap = |first: u16, count: u32| {
            let room = u32::from(u16::MAX - first) + 1;
            limit = limit.min(count.min(room));
        };
        for port in &self.ports {
            cap(*port, MAX_REPLICAS);
        }
        if let ServiceKind::Container(container) = &self.kind {
            for mapping in &container.ports {
                let count = mapping
                    .host_last
                    .map_or(MAX_REPLICAS, |last| u32::from(last - mapping.host) + 1);
                cap(mapping.host, count);
            }
        }
        limit
    }

    /// Whether the service has a build step that runs before each (re)start.
    pub fn has_build(&self) -> bool {
        match &self.kind {
            ServiceKind::Process(process) => process.build.is_some(),
            ServiceKind::Container(container) => container.build.is_some(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    Process(ProcessSpec),
    Container(ContainerSpec),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessSpec {
    pub command: CommandLine,
    /// Absolute working directory (checked to exist).
    pub cwd: PathBuf,
    /// `build = "..."`: run (in `cwd`) before each start and redeploy.
    pub build: Option<CommandLine>,
}

/// A command as written in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CommandLine {
    /// A string: run by `/bin/sh -c`.
    Shell(String),
    /// An array: exec'd directly, no shell.
    Argv(Vec<String>),
}

impl CommandLine {
    /// The argv that runs this command. A string with nothing for a shell to interpret
    /// (no quotes, variables, globs, redirections or operators) is split on whitespace
    /// and exec'd directly, as a shell would do anyway: the service is then fleet's own
    /// child, gets signals first-hand, and its pid is the one `LISTEN_PID` names.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Shell(script) if is_plain_words(script) => {
                script.split_whitespace().map(str::to_string).collect()
            }
            CommandLine::Shell(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
            CommandLine::Argv(argv) => argv.clone(),
        }
    }
}

/// Whether a shell would run `script` as one plain command with these words.
fn is_plain_words(script: &str) -> bool {
    const SHELL_SYNTAX: &[char] = &[
        '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '#', '~',
        '%', '{', '}', '!', '\n',
    ];
    let mut words = script.split_whitespace();
    let first = words.next();
    // A shell builtin or keyword as the first word needs the shell.
    const BUILTINS: &[&str] = &[
        "cd", "exec", "export", "set", "ulimit", "umask", "source", ".", "eval", "trap", "wait",
        "if", "for", "while", "until", "case", "read",
    ];
    first.is_some_and(|word| !BUILTINS.contains(&word) && !word.contains('='))
        && !script.contains(SHELL_SYNTAX)
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandLine::Shell(script) => f.write_str(script),
            CommandLine::Argv(argv) => f.write_str(&argv.join(" ")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerSpec {
    /// Image to run; with `build`, the tag the built image gets
    /// (default `fleet-<project>/<service>:dev`).
    pub image: String,
    pub build: Option<ImageBuild>,
    pub ports: Vec<PortMapping>,
    /// `host:container[:ro]` bind mounts (host made absolute) or `name:container` named volumes.
    pub volumes: Vec<String>,
    /// Overrides the image's command.
    pub command: Option<Vec<String>>,
    /// A health check the engine runs inside the container, set when it is created
    /// (`health = { docker = "..." }`); `None` keeps the image's own `HEALTHCHECK`.
    pub healthcheck: Option<EngineHealthCheck>,
    /// Run the engine's init process as PID 1 (`init = true`, compose's `init`): it
    /// forwards the stop signal to the program and reaps its zombies, so a program that
    /// installs no SIGTERM handler stops at once instead of at `stop_timeout`.
    pub init: bool,
}

/// The engine's health check of a container, as fleet configures it: the engine runs
/// `test` inside the container every `interval` and calls the container unhealthy after
/// `retries` failures in a row; fleet's `docker` probe reads its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineHealthCheck {
    /// A string runs through the container's `/bin/sh -c` (the engine's `CMD-SHELL`);
    /// an array is exec'd directly (`CMD`).
    pub test: CommandLine,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    /// Failures during this time after the start don't count (the engine's
    /// `start_period`).
    pub start_period: Duration,
}

impl EngineHealthCheck {
    /// The engine's form of the test: `["CMD-SHELL", script]` or `["CMD", argv...]`.
    pub fn engine_test(&self) -> Vec<String> {
        match &self.test {
            CommandLine::Shell(script) => vec!["CMD-SHELL".to_string(), script.clone()],
            CommandLine::Argv(argv) => std::iter::once("CMD".to_string())
                .chain(argv.iter().cloned())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageBuild {
    /// Absolute path of the build context.
    pub context: PathBuf,
    /// Dockerfile path relative to the context.
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortMapping {
    pub host_ip: String,
    /// The host port of replica 1; replica N publishes `host + N - 1`.
    pub host: u16,
    pub container: u16,
    /// The last host port of a range (`"8080-8082:80"`): one port per replica, so
    /// the range's length is the service's replica count.
    pub host_last: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    pub service: String,
    pub condition: DependencyCondition,
    /// Restart the dependent once the dependency is back after it restarted.
    pub restart: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    /// The dependency's process is running (the default).
    Started,
    /// The dependency's health probe passes.
    Healthy,
    /// The dependency is a one-shot job that exited 0.
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackoffSpec {
    pub initial: Duration,
    pub max: Duration,
}

/// A stop signal by name and number, checked against the signals Linux knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StopSignal {
    pub name: &'static str,
    pub number: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedeployStrategy {
    /// Start the new instance beside the old one; switch when it is healthy.
    StartFirst,
    /// Stop the old instance, then start the new one.
    StopFirst,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SocketSpec {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthSpec {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before a healthy instance is `unhealthy`.
    pub retries: u32,
    /// Failures during this period after start don't count.
    pub start_period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Probe {
    /// GET `target`; 2xx is healthy, and the body must contain `expect_body` when
    /// given.
    Http {
        target: HttpTarget,
        expect_body: Option<String>,
    },
    /// A TCP connect succeeds.
    Tcp { host: String, port: u16 },
    /// The command exits 0 (run in the service's cwd and env).
    Exec(CommandLine),
    /// A regex matched by a line of the service's output; readiness only.
    Log(String),
    /// The service sends `READY=1` on `NOTIFY_SOCKET`; with `watchdog`, `WATCHDOG=1`
    /// at least that often keeps it alive.
    Notify { watchdog: Option<Duration> },
    /// A container's own `HEALTHCHECK`, as the engine reports it.
    Docker,
}

/// An `http://` probe URL, parsed and checked once when the manifest loads, so a probe
/// never fails on its own URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpTarget {
    /// The URL as written, for messages.
    pub url: String,
    /// Where the probe connects: a name, an IPv4 address or an IPv6 address without
    /// brackets.
    pub host: String,
    /// Where the probe connects; 80 unless the URL says otherwise.
    pub port: u16,
    /// The request target: the path (`/` if none) and the query; the fragment is
    /// dropped, as clients never send it.
    pub path_and_query: String,
    /// The `Host` header: `host:port` (the port left out when it is 80, as clients
    /// do) with an IPv6 address in brackets, `[::1]:8080`. It names the address as
    /// written even when fleet connects elsewhere (a private probe socket), because
    /// that is the address the service expects to be called by.
    pub host_header: String,
}

/// Finds the manifest: `explicit` if given, else `fleet.toml` in `start` or the
/// nearest parent folder that has one.
pub fn find(explicit: Option<&Path>, start: &Path) -> Result<PathBuf, ManifestError> {
    if let Some(path) = explicit {
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            start.join(path)
        };
        return Ok(path);
    }
    let mut dir = Some(start);
    while let Some(current) = dir {
        let candidate = current.join(MANIFEST_FILE);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = current.parent();
    }
    Err(ManifestError::not_found(start))
}

/// Reads, parses and validates the manifest at `path`.
/// The most fleet reads of a manifest, an `env_file` or a `.env`: far above any real
/// one, and a bound on what a path to a device or a huge file costs.
pub const MAX_TEXT_FILE: u64 = 16 * 1024 * 1024;

/// Reads a text file fleet is configured by. Only a regular file (a symlink to one is
/// fine): `/dev/zero` would never end and a FIFO would block until someone writes; and
/// at most [`MAX_TEXT_FILE`] bytes.
pub fn read_text_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_TEXT_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TEXT_FILE {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_TEXT_FILE / 1024 / 1024),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    load_with(path, &Activation::default())
}

/// Loads the manifest for a run with `activation`: also an error when a service it
/// runs depends on one it does not.
pub fn load_with(path: &Path, activation: &Activation) -> Result<Manifest, ManifestError> {
    let source = read_text_file(path).map_err(|err| ManifestError::unreadable(path, &err))?;
    validated(path, &source, activation, None)
}

/// Parses and validates manifest text as if read from `path` (which names the file in
/// errors and anchors relative paths).
pub fn parse(path: &Path, source: &str) -> Result<Manifest, ManifestError> {
    validated(path, source, &Activation::default(), None)
}

/// [`parse`] with the variables given instead of the environment and `.env`.
pub fn parse_with_variables(
    path: &Path,
    source: &str,
    variables: &interpolate::Variables,
) -> Result<Manifest, ManifestError> {
    validated(path, source, &Activation::default(), Some(variables))
}

/// [`parse`] for a run with `activation` (see [`load_with`]).
pub fn parse_with(
    path: &Path,
    source: &str,
    activation: &Activation,
) -> Result<Manifest, ManifestError> {
    validated(path, source, activation, None)
}

fn validated(
    path: &Path,
    source: &str,
    activation: &Activation,
    variables: Option<&interpolate::Variables>,
) -> Result<Manifest, ManifestError> {
    let manifest = validate::validate(path, source, activation, variables);
    // Every manifest a unit test gets through the validator must pass the editors'
    // schema too: the widest check that the two stay in step.
    #[cfg(test)]
    if manifest.is_ok() {
        schema::tests::assert_schema_accepts(path, source);
    }
    manifest
}

impl Manifest {
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|service| service.name == name)
    }

    /// The services `activation` runs, in declaration order: the named ones and
    /// their dependencies, or (none named) every service it enables.
    pub fn selection(&self, activation: &Activation) -> Vec<String> {
        checks::selection(&self.services, activation)
    }

    /// Every profile some service declares, in declaration order.
    pub fn profiles(&self) -> Vec<String> {
        let mut profiles: Vec<String> = Vec::new();
        for profile in self.services.iter().flat_map(|spec| &spec.profiles) {
            if !profiles.contains(profile) {
                profiles.push(profile.clone());
            }
        }
        profiles
    }

    /// What is wrong with `activation` itself: profile flags no service declares and
    /// services the manifest does not have, each described.
    pub fn check_activation(&self, activation: &Activation) -> Result<(), String> {
        let declared = self.profiles();
        let mut problems = Vec::new();
        for profile in &activation.flags {
            if !declared.contains(profile) {
                let known = if declared.is_empty() {
                    "no service has `profiles`".to_string()
                } else {
                    format!("declared: {}", declared.join(", "))
                };
                problems.push(format!(
                    "unknown profile `{profile}`: no service in {} declares it ({known})",
                    self.path.display()
                ));
            }
        }
        let unknown: Vec<&str> = activation
            .services
            .iter()
            .filter(|name| self.service(name).is_none())
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            problems.push(format!("unknown service: {}", unknown.join(", ")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The folder for fleet's own files (`.fleet/` beside the manifest).
    pub fn state_dir(&self) -> PathBuf {
        crate::project::state_dir(&self.root)
    }

    pub fn log_dir(&self) -> PathBuf {
        crate::project::log_dir(&self.root)
    }
}

/// The longest duration the manifest or the command line accepts: 10 years is more
/// than any timeout, interval or grace period can mean, and far below where adding it
/// to a clock reading overflows (std's `Instant + Duration` panics then).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses a duration written like the manifest's (`"250ms"`, `"10s"`, `"1m30s"`), at
/// most [`MAX_DURATION`]; the error's text says what is wrong, for a person.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    values::parse_duration(text)
}
