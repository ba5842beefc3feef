//! Raw TOML -> [`Manifest`], collecting every problem on the way.
//!
//! Owns the meaning of each key: which keys a table may have, defaults, durations,
//! sizes, signals, ports, probes, paths (resolved against the manifest's folder and
//! checked to exist), env files (read here, so nothing downstream reads them), and the
//! checks that need all services at once: unknown or self dependencies, dependency
//! cycles, and a host port declared twice.
//!
//! Theory of operation: one pass over the file resolves each service into a
//! [`ServiceSpec`], falling back to a default (or a placeholder) wherever a value is
//! wrong, so that one mistake never hides the next; each problem becomes a
//! [`Diagnostic`]. A second pass checks services against each other using the spans
//! remembered in the first. The manifest is returned only if no diagnostic was made;
//! placeholders never leave this module.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::diagnostic::{locate, suggest, Diagnostic, ManifestError};
use super::raw::{self, one_of, Entry, Kind, Span, Table, Value};
use super::{
    BackoffSpec, CommandLine, ContainerSpec, Dependency, DependencyCondition, HealthSpec,
    HttpTarget, ImageBuild, Manifest, PortMapping, Probe, ProcessSpec, Project, RedeployStrategy,
    RestartPolicy, ServiceKind, ServiceSpec, SocketSpec, StopSignal, DEFAULT_LOG_KEEP,
    DEFAULT_LOG_MAX_SIZE, MAX_DURATION,
};

const TOP_LEVEL_KEYS: &[&str] = &["project", "services"];
const PROJECT_KEYS: &[&str] = &["name", "log_max_size", "log_keep"];
const SERVICE_KEYS: &[&str] = &[
    "command",
    "cwd",
    "env",
    "env_file",
    "depends_on",
    "restart",
    "max_restarts",
    "restart_window",
    "backoff",
    "stop_signal",
    "stop_timeout",
    "ports",
    "health",
    "notify",
    "watchdog",
    "restart_on_unhealthy",
    "start_timeout",
    "build",
    "watch",
    "ignore",
    "redeploy",
    "socket",
    "image",
    "volumes",
];
const HEALTH_KEYS: &[&str] = &[
    "http",
    "tcp",
    "exec",
    "log",
    "docker",
    "expect_body",
    "interval",
    "timeout",
    "retries",
    "start_period",
];
const PROBE_KEYS: &[&str] = &["http", "tcp", "exec", "log", "docker"];
const BACKOFF_KEYS: &[&str] = &["initial", "max"];
const BUILD_KEYS: &[&str] = &["context", "dockerfile", "args"];
const DEPENDENCY_KEYS: &[&str] = &["condition", "restart"];

/// Crashes tolerated within `restart_window` before a service is `failed`: enough to
/// ride out a dependency that is slow to come up, few enough to stop a crash loop.
const DEFAULT_MAX_RESTARTS: u32 = 5;
const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(60);
/// First restart delay: short enough to feel instant, long enough not to spin.
const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Grace between the stop signal and SIGKILL, as `docker stop` gives.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_STOP_SIGNAL: &str = "SIGTERM";
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_HEALTH_RETRIES: u32 = 3;
/// Ports and sockets bind to loopback unless told otherwise: a dev service should not
/// be reachable from the network by accident.
const DEFAULT_HOST_IP: &str = "127.0.0.1";
const DEFAULT_DOCKERFILE: &str = "Dockerfile";
/// Used when the manifest's folder has no name (it is `/`).
const FALLBACK_PROJECT_NAME: &str = "fleet";

/// Rotated log files kept at most: each rotation renames every kept file, so a huge
/// count would stall the log writer; a thousand is far more history than anyone reads.
const MAX_LOG_KEEP: u32 = 1000;

/// Says what [`MAX_DURATION`] is, in manifest syntax.
pub(super) const TOO_LONG_HELP: &str = "the longest duration is 87600h (10 years)";

const DURATION_EXPECTED: &str =
    "expected a duration with a unit, like \"250ms\", \"10s\" or \"2m\"";
const PATH_HELP: &str = "relative paths start from the manifest's folder";

pub fn validate(path: &Path, source: &str) -> Result<Manifest, ManifestError> {
    let document =
        raw::parse(source).map_err(|syntax| ManifestError::invalid(path, source, vec![syntax]))?;
    let manifest_path = match absolute(path) {
        Ok(manifest_path) => manifest_path,
        Err(err) => return Err(ManifestError::unreadable(path, &err)),
    };
    let root = manifest_path
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut checker = Checker {
        root,
        source,
        diagnostics: Vec::new(),
    };
    let manifest = checker.manifest(&document, manifest_path);
    if checker.diagnostics.is_empty() {
        Ok(manifest)
    } else {
        Err(ManifestError::invalid(path, source, checker.diagnostics))
    }
}

/// `path` made absolute against the current folder, with `.` and `..` removed
/// lexically (symlinks are kept, so paths read as the user wrote them).
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    if path.is_absolute() {
        Ok(normalize(path))
    } else {
        Ok(normalize(&std::env::current_dir()?.join(path)))
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    normal.push(component);
                }
            }
            other => normal.push(other),
        }
    }
    normal
}

/// Where each service's cross-checked values were written.
struct ServiceSpans {
    name: Span,
    /// Each dependency's name, parallel to `ServiceSpec::depends_on`.
    dependencies: Vec<Span>,
    /// Host ports, with the span that declared each, in source order.
    ports: Vec<(u16, Span, PortSource)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PortSource {
    Ports,
    Socket,
}

struct Checker<'a> {
    root: PathBuf,
    source: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, message: impl Into<String>, span: Span) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::new(message, span));
        let last = self.diagnostics.len() - 1;
        &mut self.diagnostics[last]
    }

    fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn manifest(&mut self, document: &Table, path: PathBuf) -> Manifest {
        document.check_keys(TOP_LEVEL_KEYS, "", &mut self.diagnostics);
        let project = self.project(document.get("project"));

        let mut services = Vec::new();
        let mut spans = Vec::new();
        if let Some(table) = document
            .get("services")
            .and_then(|value| value.table(&mut self.diagnostics))
        {
            for entry in &table.entries {
                let Some(service_table) = entry.value.as_table() else {
                    let diagnostic = entry.value.expected("a table").with_help(format!(
                        "define a service as a table: `[services.{}]` with a `command` or an `image`",
                        entry.key
                    ));
                    self.push(diagnostic);
                    continue;
                };
                let (spec, service_spans) = self.service(&project, entry, service_table);
                services.push(spec);
                spans.push(service_spans);
            }
        }
        // A `services` of the wrong type or with only broken entries was reported already.
        let declared = document
            .get("services")
            .map(|value| value.as_table().map_or(1, |table| table.entries.len()));
        if declared.unwrap_or(0) == 0 {
            self.error("no services defined", 0..0).help = Some(
                "add a table for each service, like:\n[services.web]\ncommand = \"python3 -m http.server 8000\""
                    .to_string(),
            );
        }
        self.check_dependencies(&services, &spans);
        self.check_ports(&services, &spans);
        Manifest {
            path,
            root: self.root.clone(),
            project,
            services,
        }
    }

    fn project(&mut self, value: Option<&Value>) -> Project {
        let folder_name = self
            .root
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        let mut project = Project {
            name: folder_name.unwrap_or_else(|| FALLBACK_PROJECT_NAME.to_string()),
            log_max_size: DEFAULT_LOG_MAX_SIZE,
            log_keep: DEFAULT_LOG_KEEP,
        };
        let Some(table) = value.and_then(|value| value.table(&mut self.diagnostics)) else {
            return project;
        };
        table.check_keys(PROJECT_KEYS, " in `[project]`", &mut self.diagnostics);
        if let Some(value) = table.get("name") {
            if let Some(name) = value.string(&mut self.diagnostics) {
                if name.trim().is_empty() {
                    self.error("the project name is empty", value.span.clone());
                } else {
                    project.name = name.to_string();
                }
            }
        }
        if let Some(value) = table.get("log_max_size") {
            if let Some(size) = self.size(value) {
                project.log_max_size = size;
            }
        }
        if let Some(value) = table.get("log_keep") {
            match self.count(value) {
                Some(keep) if keep > MAX_LOG_KEEP => {
                    self.error(
                        format!("`log_keep` must be at most {MAX_LOG_KEEP}"),
                        value.span.clone(),
                    );
                }
                Some(keep) => project.log_keep = keep,
                None => {}
            }
        }
        project
    }

    fn service(
        &mut self,
        project: &Project,
        entry: &Entry,
        table: &Table,
    ) -> (ServiceSpec, ServiceSpans) {
        let name = entry.key.clone();
        let context = format!(" in service `{name}`");
        if !is_valid_name(&name) {
            self.error(format!("invalid service name `{name}`"), entry.key_span.clone()).help = Some(
                "service names become file and container names: use letters, digits, `-`, `_` and `.`, \
                 starting with a letter or digit"
                    .to_string(),
            );
        }
        table.check_keys(SERVICE_KEYS, &context, &mut self.diagnostics);

        let build = table.get("build");
        let is_container = table.get("image").is_some() || build.is_some_and(Value::is_table);

        let env = self.env(table);
        let (depends_on, dependency_spans) = match table.get("depends_on") {
            Some(value) => self.depends_on(&name, value),
            None => (Vec::new(), Vec::new()),
        };
        let restart = table
            .get("restart")
            .and_then(|value| {
                self.choice(value, "restart policy", &["always", "on-failure", "never"])
            })
            .map_or(RestartPolicy::OnFailure, |index| {
                [
                    RestartPolicy::Always,
                    RestartPolicy::OnFailure,
                    RestartPolicy::Never,
                ][index]
            });
        let max_restarts = table
            .get("max_restarts")
            .and_then(|value| self.count(value))
            .unwrap_or(DEFAULT_MAX_RESTARTS);
        let restart_window = self.duration_or(table.get("restart_window"), DEFAULT_RESTART_WINDOW);
        let backoff = self.backoff(&name, table.get("backoff"));
        let stop_signal = table
            .get("stop_signal")
            .and_then(|value| self.signal(value))
            .unwrap_or(StopSignal {
                name: DEFAULT_STOP_SIGNAL,
                number: nix::sys::signal::Signal::SIGTERM as i32,
            });
        let stop_timeout = self.duration_or(table.get("stop_timeout"), DEFAULT_STOP_TIMEOUT);
        let health = self.health(&name, table, is_container);
        let restart_on_unhealthy = table
            .get("restart_on_unhealthy")
            .and_then(|value| value.boolean(&mut self.diagnostics))
            .unwrap_or(true);
        let start_timeout = table
            .get("start_timeout")
            .and_then(|value| self.nonzero_duration(value));
        if let (Some(_), None, Some(value)) = (start_timeout, &health, table.get("start_timeout")) {
            self.error(
                "`start_timeout` needs a health check: without one an instance is ready as soon as it runs",
                value.span.clone(),
            )
            .help = Some("add `health = { ... }` (or `notify = true`), or remove `start_timeout`".to_string());
        }
        let watch = self.globs(table.get("watch"));
        let ignore = self.globs(table.get("ignore"));

        let mut ports: Vec<(u16, Span, PortSource)> = Vec::new();
        let socket = match table.get("socket") {
            Some(_) if is_container => {
                self.only_for_processes(
                    table,
                    "socket",
                    "fleet hands the socket to a process; a container publishes its ports with `ports`",
                );
                None
            }
            Some(value) => self.host_port(value, "`socket`").map(|(host, port)| {
                ports.push((port, value.span.clone(), PortSource::Socket));
                SocketSpec { host, port }
            }),
            None => None,
        };
        let redeploy = match table.get("redeploy") {
            Some(value) => self
                .choice(value, "redeploy strategy", &["start-first", "stop-first"])
                .map(|index| [RedeployStrategy::StartFirst, RedeployStrategy::StopFirst][index]),
            None => None,
        };
        // Start-first needs the old and new instance to listen at once, which only a
        // socket fleet holds and shares makes safe for a fixed port.
        let redeploy = redeploy.unwrap_or(if socket.is_some() {
            RedeployStrategy::StartFirst
        } else {
            RedeployStrategy::StopFirst
        });

        let kind = if is_container {
            self.container(project, &name, table, &mut ports)
        } else {
            self.process(&name, entry, table, &mut ports)
        };
        ports.sort_by_key(|(_, span, _)| span.start);
        let spec = ServiceSpec {
            name,
            kind,
            env,
            depends_on,
            restart,
            max_restarts,
            restart_window,
            backoff,
            stop_signal,
            stop_timeout,
            ports: ports
                .iter()
                .filter(|(_, _, source)| *source == PortSource::Ports)
                .map(|(port, _, _)| *port)
                .collect(),
            health,
            restart_on_unhealthy,
            start_timeout,
            watch,
            ignore,
            redeploy,
            socket,
        };
        (
            spec,
            ServiceSpans {
                name: entry.key_span.clone(),
                dependencies: dependency_spans,
                ports,
            },
        )
    }

    fn only_for_processes(&mut self, table: &Table, key: &str, help: &str) {
        if let Some(entry) = table.entry(key) {
            self.error(
                format!("`{key}` is only for process services"),
                entry.key_span.clone(),
            )
            .help = Some(help.to_string());
        }
    }

    fn only_for_containers(&mut self, span: Span, key: &str) {
        self.error(format!("`{key}` is only for container services"), span)
            .help =
            Some("a service with an `image` or a `build` table runs in a container".to_string());
    }

    fn process(
        &mut self,
        name: &str,
        entry: &Entry,
        table: &Table,
        ports: &mut Vec<(u16, Span, PortSource)>,
    ) -> ServiceKind {
        let command = match table.get("command") {
            Some(value) => self.command_line(value, "`command`"),
            // A misspelled `command` (or `image`) is reported as an unknown key with a
            // suggestion; saying the command is missing too would be the same mistake twice.
            None if has_misspelling_of(table, &["command", "image", "build"]) => None,
            None => {
                self.error(format!("service `{name}` has no `command`"), entry.value.span.clone()).help = Some(
                    "add the command that runs it, like `command = \"./run.sh\"`, or an `image` to run a container"
                        .to_string(),
                );
                None
            }
        };
        let cwd = match table.get("cwd") {
            Some(value) => self.existing_dir(value, "working directory"),
            None => None,
        };
        let build = table
            .get("build")
            .and_then(|value| self.command_line(value, "`build`"));
        if let Some(value) = table.get("ports") {
            if let Some(items) = value.array("an array of port numbers", &mut self.diagnostics) {
                for item in items {
                    if matches!(item.kind, Kind::String(_)) {
                        self.push(item.expected("a port number").with_help(
                            "a process listens on the host directly: write `ports = [7001]`",
                        ));
                    } else if let Some(port) = self.port_number(item) {
                        ports.push((port, item.span.clone(), PortSource::Ports));
                    }
                }
            }
        }
        if let Some(entry) = table.entry("volumes") {
            self.only_for_containers(entry.key_span.clone(), "volumes");
        }
        ServiceKind::Process(ProcessSpec {
            command: command.unwrap_or_else(|| CommandLine::Argv(Vec::new())),
            cwd: cwd.unwrap_or_else(|| self.root.clone()),
            build,
        })
    }

    fn container(
        &mut self,
        project: &Project,
        name: &str,
        table: &Table,
        ports: &mut Vec<(u16, Span, PortSource)>,
    ) -> ServiceKind {
        self.only_for_processes(
            table,
            "cwd",
            "a container's working directory comes from its image (`WORKDIR`)",
        );
        let image = match table.get("image") {
            Some(value) => match value.string(&mut self.diagnostics) {
                Some(image) if image.trim().is_empty() => {
                    self.error("`image` is empty", value.span.clone());
                    None
                }
                Some(image) => Some(image.to_string()),
                None => None,
            },
            None => None,
        };
        let build = match table.get("build") {
            Some(value) => match &value.kind {
                Kind::Table(build) => self.image_build(name, build, value),
                _ => {
                    let diagnostic = value.expected("a table").with_help(
                        "a container's `build` builds its image: `build = { context = \".\" }`",
                    );
                    self.push(diagnostic);
                    None
                }
            },
            None => None,
        };
        let image = image.unwrap_or_else(|| default_image_tag(&project.name, name));
        let command = table
            .get("command")
            .and_then(|value| self.command_line(value, "`command`"))
            .map(|command| command.argv());

        let mut mappings = Vec::new();
        if let Some(value) = table.get("ports") {
            if let Some(items) = value.array("an array of ports", &mut self.diagnostics) {
                for item in items {
                    let mapping = match &item.kind {
                        Kind::String(text) => {
                            let mapping = parse_port_mapping(text);
                            if mapping.is_none() {
                                self.error(format!("invalid port mapping `{text}`"), item.span.clone()).help = Some(
                                    "expected \"HOST:CONTAINER\" or \"IP:HOST:CONTAINER\", like \"8080:80\" or \
                                     \"127.0.0.1:8080:80\""
                                        .to_string(),
                                );
                            }
                            mapping
                        }
                        _ => self.port_number(item).map(|port| PortMapping {
                            host_ip: DEFAULT_HOST_IP.to_string(),
                            host: port,
                            container: port,
                        }),
                    };
                    if let Some(mapping) = mapping {
                        ports.push((mapping.host, item.span.clone(), PortSource::Ports));
                        mappings.push(mapping);
                    }
                }
            }
        }
        let mut volumes = Vec::new();
        if let Some(value) = table.get("volumes") {
            for (text, span) in value.strings(&mut self.diagnostics).unwrap_or_default() {
                match parse_volume(text, &self.root) {
                    Some(volume) => volumes.push(volume),
                    None => {
                        self.error(format!("invalid volume `{text}`"), span).help = Some(
                            "expected \"HOST:CONTAINER\" or \"NAME:CONTAINER\", optionally with \":ro\", like \
                             \"./data:/data\" or \"cache:/var/cache:ro\""
                                .to_string(),
                        );
                    }
                }
            }
        }
        ServiceKind::Container(ContainerSpec {
            image,
            build,
            ports: mappings,
            volumes,
            command,
        })
    }

    fn image_build(&mut self, service: &str, table: &Table, value: &Value) -> Option<ImageBuild> {
        table.check_keys(
            BUILD_KEYS,
            &format!(" in `build` of service `{service}`"),
            &mut self.diagnostics,
        );
        let context = match table.get("context") {
            Some(context) => self.existing_dir(context, "build context")?,
            None => self.root.clone(),
        };
        let dockerfile = match table.get("dockerfile") {
            Some(dockerfile) => dockerfile.string(&mut self.diagnostics)?.to_string(),
            None => DEFAULT_DOCKERFILE.to_string(),
        };
        if !context.join(&dockerfile).is_file() {
            let span = table
                .get("dockerfile")
                .or_else(|| table.get("context"))
                .map_or(value.span.clone(), |v| v.span.clone());
            self.error(format!("no `{dockerfile}` in the build context"), span);
        }
        let mut args = BTreeMap::new();
        if let Some(table) = table
            .get("args")
            .and_then(|args| args.table(&mut self.diagnostics))
        {
            for entry in &table.entries {
                if let Some(text) = entry.value.scalar_text(&mut self.diagnostics) {
                    args.insert(entry.key.clone(), text);
                }
            }
        }
        Some(ImageBuild {
            context,
            dockerfile,
            args,
        })
    }

    /// A string or an array of strings, not empty, whose program is not empty.
    fn command_line(&mut self, value: &Value, what: &str) -> Option<CommandLine> {
        match &value.kind {
            Kind::String(script) => {
                if script.trim().is_empty() {
                    self.error(format!("{what} is empty"), value.span.clone());
                    return None;
                }
                Some(CommandLine::Shell(script.clone()))
            }
            Kind::Array(items) => {
                let Some(program) = items.first() else {
                    self.error(format!("{what} is empty"), value.span.clone());
                    return None;
                };
                let mut argv = Vec::new();
                for item in items {
                    match &item.kind {
                        Kind::String(arg) => argv.push(arg.clone()),
                        _ => self.push(item.expected("a string")),
                    }
                }
                if argv.len() != items.len() {
                    return None;
                }
                if argv[0].trim().is_empty() {
                    self.error(
                        format!("the program in {what} is empty"),
                        program.span.clone(),
                    );
                    return None;
                }
                Some(CommandLine::Argv(argv))
            }
            _ => {
                self.push(value.expected("a string or an array of strings"));
                None
            }
        }
    }

    /// A folder path, resolved against the manifest's folder, that must exist.
    fn existing_dir(&mut self, value: &Value, what: &str) -> Option<PathBuf> {
        let text = value.string(&mut self.diagnostics)?;
        let path = normalize(&self.root.join(text));
        if path.is_dir() {
            return Some(path);
        }
        let problem = if path.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        let diagnostic = self.error(format!("{what} `{text}` {problem}"), value.span.clone());
        if Path::new(text).is_relative() {
            diagnostic.help = Some(PATH_HELP.to_string());
        }
        None
    }

    fn env(&mut self, table: &Table) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if let Some(value) = table.get("env_file") {
            if let Some(file) = value.string(&mut self.diagnostics) {
                self.read_env_file(file, value.span.clone(), &mut env);
            }
        }
        if let Some(vars) = table
            .get("env")
            .and_then(|value| value.table(&mut self.diagnostics))
        {
            for entry in &vars.entries {
                if !is_valid_env_name(&entry.key) {
                    self.error(
                        format!("invalid environment variable name `{}`", entry.key),
                        entry.key_span.clone(),
                    );
                }
                if let Some(text) = entry.value.scalar_text(&mut self.diagnostics) {
                    env.insert(entry.key.clone(), text);
                }
            }
        }
        env
    }

    /// Reads `KEY=VALUE` lines; `#` comments, blank lines and an `export ` prefix are
    /// allowed, and one pair of matching quotes around a value is removed. Problems are
    /// reported at the `env_file` value, since the file itself has no span here.
    fn read_env_file(&mut self, file: &str, span: Span, env: &mut BTreeMap<String, String>) {
        let path = self.root.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) => {
                let diagnostic = self.error(format!("cannot read env_file `{file}`: {err}"), span);
                if Path::new(file).is_relative() && err.kind() == std::io::ErrorKind::NotFound {
                    diagnostic.help = Some(PATH_HELP.to_string());
                }
                return;
            }
        };
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").map_or(line, str::trim_start);
            match line.split_once('=') {
                Some((key, value)) if is_valid_env_name(key.trim()) => {
                    env.insert(key.trim().to_string(), unquote(value.trim()).to_string());
                }
                _ => {
                    self.error(
                        format!("invalid line {} in env_file `{file}`", index + 1),
                        span.clone(),
                    )
                    .help = Some("expected `KEY=VALUE`".to_string());
                }
            }
        }
    }

    fn depends_on(&mut self, service: &str, value: &Value) -> (Vec<Dependency>, Vec<Span>) {
        let mut dependencies = Vec::new();
        let mut spans = Vec::new();
        match &value.kind {
            Kind::Array(items) => {
                for item in items {
                    let Kind::String(name) = &item.kind else {
                        self.push(item.expected("a service name"));
                        continue;
                    };
                    if dependencies
                        .iter()
                        .any(|dependency: &Dependency| &dependency.service == name)
                    {
                        self.error(
                            format!("service `{service}` depends on `{name}` twice"),
                            item.span.clone(),
                        );
                        continue;
                    }
                    dependencies.push(Dependency {
                        service: name.clone(),
                        condition: DependencyCondition::Started,
                        restart: false,
                    });
                    spans.push(item.span.clone());
                }
            }
            Kind::Table(table) => {
                for entry in &table.entries {
                    let conditions = ["started", "healthy", "completed"];
                    let condition_of = |index: usize| {
                        [
                            DependencyCondition::Started,
                            DependencyCondition::Healthy,
                            DependencyCondition::Completed,
                        ][index]
                    };
                    let mut dependency = Dependency {
                        service: entry.key.clone(),
                        condition: DependencyCondition::Started,
                        restart: false,
                    };
                    match &entry.value.kind {
                        Kind::String(_) => {
                            if let Some(index) =
                                self.choice(&entry.value, "dependency condition", &conditions)
                            {
                                dependency.condition = condition_of(index);
                            }
                        }
                        Kind::Table(options) => {
                            let context =
                                format!(" in dependency `{}` of service `{service}`", entry.key);
                            options.check_keys(DEPENDENCY_KEYS, &context, &mut self.diagnostics);
                            if let Some(condition) = options.get("condition") {
                                if let Some(index) =
                                    self.choice(condition, "dependency condition", &conditions)
                                {
                                    dependency.condition = condition_of(index);
                                }
                            }
                            if let Some(restart) = options.get("restart") {
                                dependency.restart =
                                    restart.boolean(&mut self.diagnostics).unwrap_or(false);
                            }
                        }
                        _ => {
                            let diagnostic = entry.value.expected("a condition or a table").with_help(
                                "write `db = \"healthy\"` or `db = { condition = \"healthy\", restart = true }`",
                            );
                            self.push(diagnostic);
                        }
                    }
                    dependencies.push(dependency);
                    spans.push(entry.key_span.clone());
                }
            }
            _ => self.push(value.expected("an array of service names or a table")),
        }
        (dependencies, spans)
    }

    fn backoff(&mut self, service: &str, value: Option<&Value>) -> BackoffSpec {
        let mut backoff = BackoffSpec {
            initial: DEFAULT_BACKOFF_INITIAL,
            max: DEFAULT_BACKOFF_MAX,
        };
        let Some(table) = value.and_then(|value| value.table(&mut self.diagnostics)) else {
            return backoff;
        };
        table.check_keys(
            BACKOFF_KEYS,
            &format!(" in `backoff` of service `{service}`"),
            &mut self.diagnostics,
        );
        backoff.initial = self.duration_or(table.get("initial"), DEFAULT_BACKOFF_INITIAL);
        backoff.max = self.duration_or(table.get("max"), DEFAULT_BACKOFF_MAX);
        if backoff.max < backoff.initial {
            let span = table
                .get("max")
                .or_else(|| table.get("initial"))
                .map_or(0..0, |value| value.span.clone());
            self.error(
                format!(
                    "backoff `max` ({}) is shorter than `initial` ({})",
                    format_duration(backoff.max),
                    format_duration(backoff.initial)
                ),
                span,
            );
        }
        backoff
    }

    fn health(&mut self, service: &str, table: &Table, is_container: bool) -> Option<HealthSpec> {
        let notify = match table.get("notify") {
            Some(value) => value.boolean(&mut self.diagnostics).unwrap_or(false),
            None => false,
        };
        if is_container && notify {
            self.only_for_processes(
                table,
                "notify",
                "fleet's NOTIFY_SOCKET is not visible inside a container",
            );
        }
        let watchdog = match table.entry("watchdog") {
            Some(entry) => {
                if !notify {
                    self.error("`watchdog` needs `notify = true`", entry.key_span.clone())
                        .help = Some(
                        "the watchdog is fed by WATCHDOG=1 messages on NOTIFY_SOCKET".to_string(),
                    );
                }
                self.nonzero_duration(&entry.value)
            }
            None => None,
        };

        let mut spec = HealthSpec {
            probe: Probe::Notify { watchdog },
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            retries: DEFAULT_HEALTH_RETRIES,
            start_period: Duration::ZERO,
        };
        let Some(value) = table.get("health") else {
            return notify.then_some(spec);
        };
        let health = value.table(&mut self.diagnostics)?;
        health.check_keys(
            HEALTH_KEYS,
            &format!(" in `health` of service `{service}`"),
            &mut self.diagnostics,
        );

        let mut probes: Vec<(&Entry, Option<Probe>)> = Vec::new();
        for entry in health
            .entries
            .iter()
            .filter(|entry| PROBE_KEYS.contains(&entry.key.as_str()))
        {
            let probe = match entry.key.as_str() {
                "http" => entry.value.string(&mut self.diagnostics).and_then(|url| {
                    let expect_body = health
                        .get("expect_body")
                        .and_then(|body| body.string(&mut self.diagnostics));
                    self.http_probe(url, expect_body, &entry.value)
                }),
                "tcp" => self
                    .host_port(&entry.value, "`health.tcp`")
                    .map(|(host, port)| Probe::Tcp { host, port }),
                "exec" => self
                    .command_line(&entry.value, "`health.exec`")
                    .map(Probe::Exec),
                "log" => entry
                    .value
                    .string(&mut self.diagnostics)
                    .and_then(|pattern| match regex::Regex::new(pattern) {
                        Ok(_) => Some(Probe::Log(pattern.to_string())),
                        Err(err) => {
                            self.error(
                                format!("invalid regex in `health.log`: {}", regex_problem(&err)),
                                entry.value.span.clone(),
                            );
                            None
                        }
                    }),
                _ => match entry.value.boolean(&mut self.diagnostics) {
                    // `docker = false` asks for no probe, which is the same as leaving it out.
                    Some(false) | None => continue,
                    Some(true) if !is_container => {
                        self.only_for_containers(entry.key_span.clone(), "health.docker");
                        None
                    }
                    Some(true) => Some(Probe::Docker),
                },
            };
            probes.push((entry, probe));
        }
        if let (Some(body), false) = (health.entry("expect_body"), health.entry("http").is_some()) {
            self.error("`expect_body` needs `http`", body.key_span.clone());
        }
        if let Some((second, _)) = probes.get(1) {
            let first = &probes[0].0.key;
            self.error(
                format!("`health` has two probes: `{first}` and `{}`", second.key),
                second.key_span.clone(),
            )
            .help = Some("a service has one health probe; keep one of them".to_string());
        }
        match probes.first() {
            Some((entry, _)) if notify => {
                self.error(
                    format!("`notify` and `health.{}` are both set", entry.key),
                    entry.key_span.clone(),
                )
                .help = Some(
                    "`notify = true` makes READY=1 the service's health probe; remove one of them"
                        .to_string(),
                );
            }
            Some((_, Some(probe))) => spec.probe = probe.clone(),
            Some((_, None)) => {}
            None if notify => {}
            None => {
                self.error("`health` has no probe", value.span.clone()).help =
                    Some(format!("add {}", one_of(PROBE_KEYS)));
            }
        }

        spec.interval = self.nonzero_duration_or(health.get("interval"), DEFAULT_HEALTH_INTERVAL);
        spec.timeout = self.nonzero_duration_or(health.get("timeout"), DEFAULT_HEALTH_TIMEOUT);
        spec.start_period = self.duration_or(health.get("start_period"), Duration::ZERO);
        if let Some(value) = health.get("retries") {
            match self.count(value) {
                Some(0) => {
                    self.error("`retries` must be at least 1", value.span.clone());
                }
                Some(retries) => spec.retries = retries,
                None => {}
            }
        }
        Some(spec)
    }

    fn http_probe(&mut self, url: &str, expect_body: Option<&str>, value: &Value) -> Option<Probe> {
        match parse_http_url(url) {
            Ok(target) => Some(Probe::Http {
                target,
                expect_body: expect_body.map(str::to_string),
            }),
            Err(problem) => {
                let diagnostic = self.error(
                    format!("invalid health URL `{url}`: {problem}"),
                    value.span.clone(),
                );
                diagnostic.help = Some(if problem == HTTPS_UNSUPPORTED {
                    "fleet has no TLS client: probe a plain http:// port of the service, or use `tcp`"
                        .to_string()
                } else {
                    "expected an http:// URL, like \"http://127.0.0.1:8080/health\"".to_string()
                });
                None
            }
        }
    }

    /// One of `options`, by index; else an error with a suggestion or the list.
    fn choice(&mut self, value: &Value, what: &str, options: &[&str]) -> Option<usize> {
        let text = value.string(&mut self.diagnostics)?;
        if let Some(index) = options.iter().position(|option| *option == text) {
            return Some(index);
        }
        let diagnostic = Diagnostic::new(format!("unknown {what} `{text}`"), value.span.clone());
        let diagnostic = match suggest(text, options.iter().copied()) {
            Some(suggestion) => diagnostic.with_suggestion(Some(suggestion)),
            None => diagnostic.with_help(format!("expected {}", one_of(options))),
        };
        self.push(diagnostic);
        None
    }

    /// An integer that fits a `u32` (counts: restarts, retries, files kept).
    fn count(&mut self, value: &Value) -> Option<u32> {
        let integer = value.integer(&mut self.diagnostics)?;
        match u32::try_from(integer) {
            Ok(count) => Some(count),
            Err(_) if integer < 0 => {
                self.error(
                    format!("expected a count, found {integer}"),
                    value.span.clone(),
                );
                None
            }
            Err(_) => {
                self.error(format!("{integer} is too large"), value.span.clone());
                None
            }
        }
    }

    fn size(&mut self, value: &Value) -> Option<u64> {
        let size = match &value.kind {
            Kind::Integer(_) => {
                let integer = value.integer(&mut self.diagnostics)?;
                u64::try_from(integer).map_err(|_| SizeError::Invalid)
            }
            Kind::String(text) => parse_size(text),
            _ => {
                self.push(value.expected("a size"));
                return None;
            }
        };
        match size {
            Ok(0) => {
                self.error("the size must be more than 0 bytes", value.span.clone());
                None
            }
            Ok(size) => Some(size),
            Err(SizeError::TooLarge) => {
                let message = match &value.kind {
                    Kind::String(text) => format!("the size `{text}` is too large"),
                    _ => "the size is too large".to_string(),
                };
                self.error(message, value.span.clone()).help =
                    Some("sizes go up to 16 EiB (2^64 bytes)".to_string());
                None
            }
            Err(SizeError::Invalid) => {
                self.error(
                    "expected a size, like \"512KB\", \"10MB\" or \"1GB\"",
                    value.span.clone(),
                );
                None
            }
        }
    }

    fn duration_or(&mut self, value: Option<&Value>, default: Duration) -> Duration {
        value
            .and_then(|value| self.duration(value))
            .unwrap_or(default)
    }

    fn nonzero_duration_or(&mut self, value: Option<&Value>, default: Duration) -> Duration {
        value
            .and_then(|value| self.nonzero_duration(value))
            .unwrap_or(default)
    }

    fn nonzero_duration(&mut self, value: &Value) -> Option<Duration> {
        match self.duration(value)? {
            Duration::ZERO => {
                self.error("the duration must be more than 0", value.span.clone());
                None
            }
            duration => Some(duration),
        }
    }

    fn duration(&mut self, value: &Value) -> Option<Duration> {
        let text = match &value.kind {
            Kind::String(text) => text,
            Kind::Integer(Some(integer)) => {
                self.error(DURATION_EXPECTED, value.span.clone()).help =
                    Some(format!("write it as a string with a unit: \"{integer}s\""));
                return None;
            }
            _ => {
                self.push(value.expected("a duration"));
                return None;
            }
        };
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(DurationError::NoUnit) => {
                self.error(DURATION_EXPECTED, value.span.clone()).help =
                    Some(format!("add a unit: \"{}s\"", text.trim()));
                None
            }
            Err(DurationError::Invalid) => {
                self.error(DURATION_EXPECTED, value.span.clone()).help = Some(
                    "the units are `ms`, `s`, `m` and `h`, and they combine: \"1m30s\"".to_string(),
                );
                None
            }
            Err(DurationError::TooLong) => {
                self.error(
                    format!("the duration `{text}` is too long"),
                    value.span.clone(),
                )
                .help = Some(TOO_LONG_HELP.to_string());
                None
            }
        }
    }

    fn signal(&mut self, value: &Value) -> Option<StopSignal> {
        let text = value.string(&mut self.diagnostics)?;
        let upper = text.trim().to_ascii_uppercase();
        let wanted = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        let known = nix::sys::signal::Signal::iterator();
        if let Some(signal) = known.clone().find(|signal| signal.as_str() == wanted) {
            return Some(StopSignal {
                name: signal.as_str(),
                number: signal as i32,
            });
        }
        let names: Vec<&str> = known.map(|signal| signal.as_str()).collect();
        let diagnostic = Diagnostic::new(format!("unknown signal `{text}`"), value.span.clone())
            .with_suggestion(suggest(&wanted, names.iter().copied()));
        let diagnostic = if diagnostic.help.is_none() {
            diagnostic.with_help("common stop signals are SIGTERM, SIGINT, SIGQUIT and SIGHUP")
        } else {
            diagnostic
        };
        self.push(diagnostic);
        None
    }

    fn port_number(&mut self, value: &Value) -> Option<u16> {
        let integer = match &value.kind {
            Kind::Integer(_) => value.integer(&mut self.diagnostics)?,
            _ => {
                self.push(value.expected("a port number"));
                return None;
            }
        };
        match u16::try_from(integer) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                self.error(
                    format!("port {integer} is out of range"),
                    value.span.clone(),
                )
                .help = Some("ports are 1 to 65535".to_string());
                None
            }
        }
    }

    /// A port number (on the default host) or a `"HOST:PORT"` string.
    fn host_port(&mut self, value: &Value, what: &str) -> Option<(String, u16)> {
        match &value.kind {
            Kind::String(text) => {
                let parsed = text.rsplit_once(':').and_then(|(host, port)| {
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let port = port.parse::<u16>().ok().filter(|port| *port > 0)?;
                    (!host.is_empty()).then(|| (host.to_string(), port))
                });
                if parsed.is_none() {
                    self.error(
                        format!("invalid address `{text}` in {what}"),
                        value.span.clone(),
                    )
                    .help = Some(
                        "expected a port or \"HOST:PORT\", like 7001 or \"127.0.0.1:7001\""
                            .to_string(),
                    );
                }
                parsed
            }
            Kind::Integer(_) => self
                .port_number(value)
                .map(|port| (DEFAULT_HOST_IP.to_string(), port)),
            _ => {
                self.push(value.expected("a port or \"HOST:PORT\""));
                None
            }
        }
    }

    fn globs(&mut self, value: Option<&Value>) -> Vec<String> {
        let Some(value) = value else {
            return Vec::new();
        };
        let mut globs = Vec::new();
        for (pattern, span) in value.strings(&mut self.diagnostics).unwrap_or_default() {
            if pattern.trim().is_empty() {
                self.error("empty glob", span);
                continue;
            }
            match globset::Glob::new(pattern) {
                Ok(_) => globs.push(pattern.to_string()),
                Err(err) => {
                    self.error(format!("invalid glob `{pattern}`: {}", err.kind()), span);
                }
            }
        }
        globs
    }

    /// Unknown and self dependencies, a `healthy` wait on a service without a probe,
    /// and cycles (one per strongly connected group, named from the group's first
    /// declared service).
    fn check_dependencies(&mut self, services: &[ServiceSpec], spans: &[ServiceSpans]) {
        let index_of: HashMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(index, service)| (service.name.as_str(), index))
            .collect();
        let names: Vec<&str> = services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        // edges[i] = (j, span of the name of j in i's depends_on)
        let mut edges: Vec<Vec<(usize, Span)>> = vec![Vec::new(); services.len()];
        for (index, service) in services.iter().enumerate() {
            for (dependency, span) in service.depends_on.iter().zip(&spans[index].dependencies) {
                let Some(&target) = index_of.get(dependency.service.as_str()) else {
                    let diagnostic = Diagnostic::new(
                        format!(
                            "service `{}` depends on unknown service `{}`",
                            service.name, dependency.service
                        ),
                        span.clone(),
                    )
                    // A service depending on itself is never the fix.
                    .with_suggestion(suggest(
                        &dependency.service,
                        names.iter().copied().filter(|name| *name != service.name),
                    ));
                    self.push(diagnostic);
                    continue;
                };
                if target == index {
                    self.error(
                        format!("service `{}` depends on itself", service.name),
                        span.clone(),
                    );
                    continue;
                }
                if dependency.condition == DependencyCondition::Healthy
                    && services[target].health.is_none()
                {
                    self.error(
                        format!("service `{}` waits for `{}` to be healthy, but `{}` has no health check", service.name, dependency.service, dependency.service),
                        span.clone(),
                    )
                    .help = Some(format!(
                        "add `health` to service `{}`, or wait for it to be \"started\"",
                        dependency.service
                    ));
                }
                edges[index].push((target, span.clone()));
            }
        }
        for component in strongly_connected(&edges) {
            if component.len() < 2 {
                continue;
            }
            let Some(&first) = component.iter().min() else {
                continue;
            };
            let Some(cycle) = shortest_cycle(&edges, &component, first) else {
                continue;
            };
            let mut path: Vec<&str> = cycle.iter().map(|&index| names[index]).collect();
            path.push(names[first]);
            let second = cycle.get(1).copied().unwrap_or(first);
            let span = edges[first]
                .iter()
                .find(|(target, _)| *target == second)
                .map_or(spans[first].name.clone(), |(_, span)| span.clone());
            self.error(format!("dependency cycle: {}", path.join(" -> ")), span).help = Some(
                "a service starts after its dependencies, so a cycle can never start; remove one of these dependencies"
                    .to_string(),
            );
        }
    }

    /// A host port declared twice: by two services, twice in one service, or as both
    /// a service's `socket` and one of its `ports` (fleet holds the socket's port
    /// itself, so the free-port check before a start would always fail).
    fn check_ports(&mut self, services: &[ServiceSpec], spans: &[ServiceSpans]) {
        let mut first_declared: HashMap<u16, (usize, Span, PortSource)> = HashMap::new();
        for (index, service) in services.iter().enumerate() {
            for (port, span, source) in &spans[index].ports {
                let Some((owner, first_span, first_source)) = first_declared.get(port).cloned()
                else {
                    first_declared.insert(*port, (index, span.clone(), *source));
                    continue;
                };
                let first_line = locate(self.source, first_span.start).line;
                if owner != index {
                    let owner_name = &services[owner].name;
                    self.error(
                        format!(
                            "port {port} is declared by both `{owner_name}` and `{}`",
                            service.name
                        ),
                        span.clone(),
                    )
                    .label = Some(format!(
                        "`{owner_name}` declared it first, on line {first_line}"
                    ));
                } else if first_source != *source {
                    self.error(
                        format!(
                            "port {port} is both the `socket` and in `ports` of service `{}`",
                            service.name
                        ),
                        span.clone(),
                    )
                    .help = Some(
                        "the socket already reserves the port; remove it from `ports`".to_string(),
                    );
                } else {
                    self.error(
                        format!(
                            "port {port} is declared twice in service `{}`",
                            service.name
                        ),
                        span.clone(),
                    )
                    .label = Some(format!("first declared on line {first_line}"));
                }
            }
        }
    }
}

/// Tarjan's algorithm; components in no particular order, members as indices.
fn strongly_connected(edges: &[Vec<(usize, Span)>]) -> Vec<Vec<usize>> {
    struct State {
        next_index: usize,
        index: Vec<Option<usize>>,
        lowlink: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        components: Vec<Vec<usize>>,
    }
    fn visit(node: usize, edges: &[Vec<(usize, Span)>], state: &mut State) {
        state.index[node] = Some(state.next_index);
        state.lowlink[node] = state.next_index;
        state.next_index += 1;
        state.stack.push(node);
        state.on_stack[node] = true;
        for (target, _) in &edges[node] {
            match state.index[*target] {
                None => {
                    visit(*target, edges, state);
                    state.lowlink[node] = state.lowlink[node].min(state.lowlink[*target]);
                }
                Some(target_index) if state.on_stack[*target] => {
                    state.lowlink[node] = state.lowlink[node].min(target_index);
                }
                Some(_) => {}
            }
        }
        if Some(state.lowlink[node]) == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            state.components.push(component);
        }
    }
    let count = edges.len();
    let mut state = State {
        next_index: 0,
        index: vec![None; count],
        lowlink: vec![0; count],
        on_stack: vec![false; count],
        stack: Vec::new(),
        components: Vec::new(),
    };
    for node in 0..count {
        if state.index[node].is_none() {
            visit(node, edges, &mut state);
        }
    }
    state.components
}

/// The shortest path `start -> ... -> start` inside `component` (breadth first, so
/// the named cycle is as short as the graph allows), without the final `start`.
fn shortest_cycle(
    edges: &[Vec<(usize, Span)>],
    component: &[usize],
    start: usize,
) -> Option<Vec<usize>> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for (target, _) in &edges[node] {
            if !component.contains(target) {
                continue;
            }
            if *target == start {
                let mut path = vec![node];
                let mut current = node;
                while current != start {
                    current = *parent.get(&current)?;
                    path.push(current);
                }
                path.reverse();
                return Some(path);
            }
            if !parent.contains_key(target) {
                parent.insert(*target, node);
                queue.push_back(*target);
            }
        }
    }
    None
}

/// Whether an unknown key in `table` looks like a typo of one of `keys`.
fn has_misspelling_of(table: &Table, keys: &[&str]) -> bool {
    table.entries.iter().any(|entry| {
        !SERVICE_KEYS.contains(&entry.key.as_str())
            && suggest(&entry.key, SERVICE_KEYS.iter().copied())
                .is_some_and(|key| keys.contains(&key))
    })
}

/// Service names become log file names, env values and container names, so they
/// follow Docker's container-name rule.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `execve` takes `NAME=value` strings, so a name can't hold `=` or NUL.
fn is_valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0']) && !name.contains(char::is_whitespace)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// `fleet-<project>/<service>:dev`, lowercased and with anything Docker refuses in a
/// repository name replaced, since the project name may come from a folder name.
fn default_image_tag(project: &str, service: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("fleet-{}/{}:dev", clean(project), clean(service))
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum DurationError {
    /// A plain number: the unit is missing.
    NoUnit,
    Invalid,
    TooLong,
}

/// `"250ms"`, `"10s"`, `"2m"`, `"1h"`, combined (`"1m30s"`) and with decimals (`"1.5s"`).
pub(super) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    const UNITS: &[(&str, u128)] = &[
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    /// Digits after the point that count; more precision than a nanosecond of an hour is noise.
    const MAX_FRACTION_DIGITS: usize = 12;
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Invalid);
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(DurationError::NoUnit);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty())
            || !fraction.chars().all(|c| c.is_ascii_digit())
        {
            return Err(DurationError::Invalid);
        }
        let unit_nanos = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, nanos)| *nanos)
            .ok_or(DurationError::Invalid)?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| DurationError::TooLong)?
        };
        let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| DurationError::Invalid)?;
            digits * unit_nanos / 10u128.pow(fraction.len() as u32)
        };
        total_nanos = whole
            .checked_mul(unit_nanos)
            .and_then(|nanos| nanos.checked_add(fraction_nanos))
            .and_then(|nanos| nanos.checked_add(total_nanos))
            .ok_or(DurationError::TooLong)?;
    }
    if total_nanos > MAX_DURATION.as_nanos() {
        return Err(DurationError::TooLong);
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::TooLong)?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// The shortest way to write a duration back in manifest syntax.
fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{duration:?}")
    }
}

#[derive(Debug, PartialEq, Eq)]
enum SizeError {
    Invalid,
    /// More than a `u64` of bytes.
    TooLarge,
}

/// `"512KB"`, `"10MB"`, `"1GB"` (powers of 1000), `"64KiB"` (powers of 1024), `"100B"`
/// or a plain number of bytes; units are case-insensitive.
fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let digits_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let digits = &text[..digits_len];
    if digits.is_empty() {
        return Err(SizeError::Invalid);
    }
    let multiplier: u64 = match text[digits_len..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1024,
        "mib" => 1024 * 1024,
        "gib" => 1024 * 1024 * 1024,
        _ => return Err(SizeError::Invalid),
    };
    // Only digits are left, so a failed parse means too many of them.
    let number: u64 = digits.parse().map_err(|_| SizeError::TooLarge)?;
    number.checked_mul(multiplier).ok_or(SizeError::TooLarge)
}

const HTTPS_UNSUPPORTED: &str = "https probes are not supported";

/// `http://host[:port][/path][?query]` -> an [`HttpTarget`]: port 80 and path `/`
/// unless given, the query kept, the fragment dropped, an IPv6 address in brackets.
/// Only plain HTTP: probes talk to local dev services, and fleet carries no TLS client.
fn parse_http_url(url: &str) -> Result<HttpTarget, &'static str> {
    let scheme_is = |scheme: &str| {
        url.get(..scheme.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
    };
    if !scheme_is("http://") {
        return Err(if scheme_is("https://") {
            HTTPS_UNSUPPORTED
        } else {
            "it must start with http://"
        });
    }
    let rest = &url["http://".len()..];
    let rest = rest.split('#').next().unwrap_or_default();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err("credentials are not supported");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("unclosed `[` in the host")?;
        let address: Ipv6Addr = host
            .parse()
            .map_err(|_| "the host in brackets is not an IPv6 address")?;
        match after.strip_prefix(':') {
            Some(port) => (address.to_string(), Some(port)),
            None if after.is_empty() => (address.to_string(), None),
            None => return Err("unexpected text after the host"),
        }
    } else {
        if authority.matches(':').count() > 1 {
            return Err("an IPv6 address must be in brackets, like http://[::1]:8080/");
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("the host is missing");
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err("the host has a character a host name cannot have");
        }
        (host.to_string(), port)
    };
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or("the port is not a number from 1 to 65535")?,
        None => 80,
    };
    let path_and_query = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    // Checked with the parser the probe's request is built with, so that it can never
    // fail there.
    if hyper::http::uri::PathAndQuery::try_from(path_and_query.as_str()).is_err() {
        return Err("the path has a character that must be percent-encoded");
    }
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    // As browsers and curl do, the default port is left out of `Host`.
    let host_header = if port == 80 {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Ok(HttpTarget {
        url: url.to_string(),
        host,
        port,
        path_and_query,
        host_header,
    })
}

/// `"6380:6380"` or `"127.0.0.1:6380:6380"` (an IPv6 host IP may be bracketed).
fn parse_port_mapping(text: &str) -> Option<PortMapping> {
    let mut parts: Vec<&str> = text.trim().rsplitn(3, ':').collect();
    parts.reverse();
    let port = |text: &str| text.parse::<u16>().ok().filter(|port| *port > 0);
    let (host_ip, host, container) = match parts.as_slice() {
        [host, container] => (DEFAULT_HOST_IP.to_string(), port(host)?, port(container)?),
        [ip, host, container] => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            ip.parse::<IpAddr>().ok()?;
            (ip.to_string(), port(host)?, port(container)?)
        }
        _ => return None,
    };
    Some(PortMapping {
        host_ip,
        host,
        container,
    })
}

/// `"./data:/data"` (bind mount, host made absolute), `"name:/data"` (named volume),
/// either optionally with `:ro` or `:rw`.
fn parse_volume(text: &str, root: &Path) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, mode) = match parts.as_slice() {
        [host, container] => (*host, *container, None),
        [host, container, mode] if matches!(*mode, "ro" | "rw") => (*host, *container, Some(*mode)),
        _ => return None,
    };
    if !container.starts_with('/') || host.is_empty() {
        return None;
    }
    let host = if host.starts_with('.') || host.starts_with('/') {
        normalize(&root.join(host)).to_string_lossy().into_owned()
    } else if is_valid_name(host) {
        host.to_string()
    } else {
        return None;
    };
    Some(match mode {
        Some("ro") => format!("{host}:{container}:ro"),
        _ => format!("{host}:{container}"),
    })
}

/// The last line of a regex error is the problem; the lines before repeat the pattern.
fn regex_problem(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    last.trim().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `source` as `fleet.toml` in the current folder (the crate root under
    /// `cargo test`) and returns the rendered error, without color.
    fn render(source: &str) -> String {
        match super::super::parse(Path::new("fleet.toml"), source) {
            Ok(manifest) => panic!("expected errors, got {manifest:#?}"),
            Err(err) => err.render(false),
        }
    }

    /// Compares against a raw string literal that starts with a newline (for
    /// readability); shows both texts whole on a mismatch.
    #[track_caller]
    fn check(source: &str, expected: &str) {
        let expected = expected.strip_prefix('\n').unwrap_or(expected);
        let actual = render(source);
        assert!(
            actual == expected,
            "rendered:\n{actual}\n\nexpected:\n{expected}\n"
        );
    }

    fn parse_ok(source: &str) -> Manifest {
        match super::super::parse(Path::new("fleet.toml"), source) {
            Ok(manifest) => manifest,
            Err(err) => panic!("expected a manifest, got:\n{}", err.render(false)),
        }
    }

    #[test]
    fn toml_syntax_error() {
        check(
            "[services.users]\ncommand = \"x\n[x\n",
            r#"
error: invalid basic string, expected `"`
 --> fleet.toml:2:13
  |
2 | command = "x
  |             ^

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn duplicate_key_is_a_syntax_error() {
        check(
            "[services.users]\ncommand = \"x\"\ncommand = \"y\"\n",
            r#"
error: duplicate key
 --> fleet.toml:3:1
  |
3 | command = "y"
  | ^^^^^^^

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        check(
            "[services.users]\ncomand = \"x\"\n",
            r#"
error: unknown key `comand` in service `users`
 --> fleet.toml:2:1
  |
2 | comand = "x"
  | ^^^^^^
  |
  = help: did you mean `command`?

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn unknown_key_in_a_small_table_lists_the_keys() {
        check(
            "[services.users]\ncommand = \"x\"\nbackoff = { first = \"1s\" }\n",
            r#"
error: unknown key `first` in `backoff` of service `users`
 --> fleet.toml:3:13
  |
3 | backoff = { first = "1s" }
  |             ^^^^^
  |
  = help: expected `initial` or `max`

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn wrong_type() {
        check(
            "[services.users]\ncommand = 3\n",
            r#"
error: expected a string or an array of strings, found integer
 --> fleet.toml:2:11
  |
2 | command = 3
  |           ^

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn unknown_dependency_suggests_a_service() {
        check(
            "[services.db]\ncommand = \"db\"\n\n[services.users]\ncommand = \"u\"\ndepends_on = [\"dbb\"]\n",
            r#"
error: service `users` depends on unknown service `dbb`
 --> fleet.toml:6:15
  |
6 | depends_on = ["dbb"]
  |               ^^^^^
  |
  = help: did you mean `db`?

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn dependency_cycle_is_named_from_its_first_service() {
        check(
            r#"
[services.c]
command = "c"
depends_on = { a = "started" }

[services.a]
command = "a"
depends_on = ["b"]

[services.b]
command = "b"
depends_on = ["c"]
"#,
            r#"
error: dependency cycle: c -> a -> b -> c
 --> fleet.toml:4:16
  |
4 | depends_on = { a = "started" }
  |                ^
  |
  = help: a service starts after its dependencies, so a cycle can never start; remove one of these dependencies

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn dependency_cycle_a_b_c() {
        let source =
            "[services.a]\ncommand = \"a\"\ndepends_on = [\"b\"]\n[services.b]\ncommand = \"b\"\n\
                      depends_on = [\"c\"]\n[services.c]\ncommand = \"c\"\ndepends_on = [\"a\"]\n";
        check(
            source,
            r#"
error: dependency cycle: a -> b -> c -> a
 --> fleet.toml:3:15
  |
3 | depends_on = ["b"]
  |               ^^^
  |
  = help: a service starts after its dependencies, so a cycle can never start; remove one of these dependencies

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn service_depending_on_itself() {
        check(
            "[services.a]\ncommand = \"a\"\ndepends_on = [\"a\"]\n",
            r#"
error: service `a` depends on itself
 --> fleet.toml:3:15
  |
3 | depends_on = ["a"]
  |               ^^^

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn port_declared_by_two_services() {
        check(
            "[services.users]\ncommand = \"u\"\nports = [7001]\n\n[services.orders]\ncommand = \"o\"\nports = [7002, 7001]\n",
            r#"
error: port 7001 is declared by both `users` and `orders`
 --> fleet.toml:7:16
  |
7 | ports = [7002, 7001]
  |                ^^^^ `users` declared it first, on line 3

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn socket_counts_as_a_port_and_clashes_with_a_container_port() {
        check(
            "[services.web]\ncommand = \"w\"\nsocket = \"127.0.0.1:8080\"\nports = [8080]\n\n\
             [services.proxy]\nimage = \"nginx\"\nports = [\"8080:80\"]\n",
            r#"
error: port 8080 is both the `socket` and in `ports` of service `web`
 --> fleet.toml:4:10
  |
4 | ports = [8080]
  |          ^^^^
  |
  = help: the socket already reserves the port; remove it from `ports`

error: port 8080 is declared by both `web` and `proxy`
 --> fleet.toml:8:10
  |
8 | ports = ["8080:80"]
  |          ^^^^^^^^^ `web` declared it first, on line 3

error: could not load fleet.toml: 2 errors"#,
        );
    }

    #[test]
    fn empty_and_missing_commands() {
        check(
            "[services.a]\ncommand = \"\"\n[services.b]\ncommand = []\n[services.c]\nenv = { A = \"1\" }\n\
             [services.d]\ncommand = [\"\", \"x\"]\n",
            r#"
error: `command` is empty
 --> fleet.toml:2:11
  |
2 | command = ""
  |           ^^

error: `command` is empty
 --> fleet.toml:4:11
  |
4 | command = []
  |           ^^

error: service `c` has no `command`
 --> fleet.toml:5:1
  |
5 | [services.c]
  | ^^^^^^^^^^^^
  |
  = help: add the command that runs it, like `command = "./run.sh"`, or an `image` to run a container

error: the program in `command` is empty
 --> fleet.toml:8:12
  |
8 | command = ["", "x"]
  |            ^^

error: could not load fleet.toml: 4 errors"#,
        );
    }

    #[test]
    fn bad_durations() {
        check(
            "[services.a]\ncommand = \"a\"\nstop_timeout = 10\nrestart_window = \"60\"\n\
             backoff = { initial = \"1sec\", max = \"1s\" }\n",
            r#"
error: expected a duration with a unit, like "250ms", "10s" or "2m"
 --> fleet.toml:3:16
  |
3 | stop_timeout = 10
  |                ^^
  |
  = help: write it as a string with a unit: "10s"

error: expected a duration with a unit, like "250ms", "10s" or "2m"
 --> fleet.toml:4:18
  |
4 | restart_window = "60"
  |                  ^^^^
  |
  = help: add a unit: "60s"

error: expected a duration with a unit, like "250ms", "10s" or "2m"
 --> fleet.toml:5:23
  |
5 | backoff = { initial = "1sec", max = "1s" }
  |                       ^^^^^^
  |
  = help: the units are `ms`, `s`, `m` and `h`, and they combine: "1m30s"

error: could not load fleet.toml: 3 errors"#,
        );
    }

    #[test]
    fn backoff_max_shorter_than_initial() {
        check(
            "[services.a]\ncommand = \"a\"\nbackoff = { initial = \"2s\", max = \"500ms\" }\n",
            r#"
error: backoff `max` (500ms) is shorter than `initial` (2s)
 --> fleet.toml:3:35
  |
3 | backoff = { initial = "2s", max = "500ms" }
  |                                   ^^^^^^^

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn unknown_signal_suggests_the_closest() {
        check(
            "[services.a]\ncommand = \"a\"\nstop_signal = \"SIGTREM\"\n[services.b]\ncommand = \"b\"\nstop_signal = \"stop-now\"\n",
            r#"
error: unknown signal `SIGTREM`
 --> fleet.toml:3:15
  |
3 | stop_signal = "SIGTREM"
  |               ^^^^^^^^^
  |
  = help: did you mean `SIGTERM`?

error: unknown signal `stop-now`
 --> fleet.toml:6:15
  |
6 | stop_signal = "stop-now"
  |               ^^^^^^^^^^
  |
  = help: common stop signals are SIGTERM, SIGINT, SIGQUIT and SIGHUP

error: could not load fleet.toml: 2 errors"#,
        );
    }

    #[test]
    fn missing_cwd_and_unreadable_env_file() {
        check(
            "[services.a]\ncommand = \"a\"\ncwd = \"does/not/exist\"\nenv_file = \"missing.env\"\n",
            r#"
error: working directory `does/not/exist` does not exist
 --> fleet.toml:3:7
  |
3 | cwd = "does/not/exist"
  |       ^^^^^^^^^^^^^^^^
  |
  = help: relative paths start from the manifest's folder

error: cannot read env_file `missing.env`: No such file or directory (os error 2)
 --> fleet.toml:4:12
  |
4 | env_file = "missing.env"
  |            ^^^^^^^^^^^^^
  |
  = help: relative paths start from the manifest's folder

error: could not load fleet.toml: 2 errors"#,
        );
    }

    #[test]
    fn env_file_with_a_bad_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(".env"), "# ok\nA=1\nnot a pair\n").expect("write .env");
        let source = "[services.a]\ncommand = \"a\"\nenv_file = \".env\"\n";
        let err =
            super::super::parse(&dir.path().join("fleet.toml"), source).expect_err("bad env file");
        let messages: Vec<&str> = err
            .diagnostics()
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(messages, ["invalid line 3 in env_file `.env`"]);
    }

    #[test]
    fn empty_manifest() {
        let expected = r#"
error: no services defined
 --> fleet.toml:1:1
  |
1 |
  | ^
  |
  = help: add a table for each service, like:
          [services.web]
          command = "python3 -m http.server 8000"

error: could not load fleet.toml: 1 error"#;
        check("", expected);
        // Comments only: line 1 is the empty first line, so the text is the same.
        check("\n# nothing yet\n", expected);
    }

    #[test]
    fn only_a_project_table_has_no_services() {
        check(
            "[project]\nname = \"x\"\n",
            r#"
error: no services defined
 --> fleet.toml:1:1
  |
1 | [project]
  | ^
  |
  = help: add a table for each service, like:
          [services.web]
          command = "python3 -m http.server 8000"

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn health_urls_are_checked_when_the_manifest_loads() {
        let source = r#"[services.a]
command = "x"
health = { http = "http://localhost:99999/health" }
[services.b]
command = "x"
health = { http = "http://::1:8080/" }
[services.c]
command = "x"
health = { http = "http:///health" }
[services.d]
command = "x"
health = { http = "https://localhost:8443/health" }
"#;
        check(
            source,
            r#"
error: invalid health URL `http://localhost:99999/health`: the port is not a number from 1 to 65535
 --> fleet.toml:3:19
  |
3 | health = { http = "http://localhost:99999/health" }
  |                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  |
  = help: expected an http:// URL, like "http://127.0.0.1:8080/health"

error: invalid health URL `http://::1:8080/`: an IPv6 address must be in brackets, like http://[::1]:8080/
 --> fleet.toml:6:19
  |
6 | health = { http = "http://::1:8080/" }
  |                   ^^^^^^^^^^^^^^^^^^
  |
  = help: expected an http:// URL, like "http://127.0.0.1:8080/health"

error: invalid health URL `http:///health`: the host is missing
 --> fleet.toml:9:19
  |
9 | health = { http = "http:///health" }
  |                   ^^^^^^^^^^^^^^^^
  |
  = help: expected an http:// URL, like "http://127.0.0.1:8080/health"

error: invalid health URL `https://localhost:8443/health`: https probes are not supported
  --> fleet.toml:12:19
   |
12 | health = { http = "https://localhost:8443/health" }
   |                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
   |
   = help: fleet has no TLS client: probe a plain http:// port of the service, or use `tcp`

error: could not load fleet.toml: 4 errors"#,
        );
    }

    #[test]
    fn an_ipv6_health_url_keeps_its_brackets_for_host() {
        let manifest = parse_ok(
            "[services.a]\ncommand = \"x\"\nhealth = { http = \"http://[::1]:8080/health?deep=1\" }\n",
        );
        let probe = manifest.services[0]
            .health
            .as_ref()
            .map(|health| &health.probe);
        assert_eq!(
            probe,
            Some(&Probe::Http {
                target: HttpTarget {
                    url: "http://[::1]:8080/health?deep=1".into(),
                    host: "::1".into(),
                    port: 8080,
                    path_and_query: "/health?deep=1".into(),
                    host_header: "[::1]:8080".into(),
                },
                expect_body: None,
            })
        );
    }

    #[test]
    fn huge_durations_and_numbers_are_errors_not_overflows() {
        let source = r#"[project]
log_max_size = "99999999999GB"
log_keep = 4000000000
[services.a]
command = "x"
stop_timeout = "99999999999999s"
restart_window = "87601h"
"#;
        check(
            source,
            r#"
error: the size `99999999999GB` is too large
 --> fleet.toml:2:16
  |
2 | log_max_size = "99999999999GB"
  |                ^^^^^^^^^^^^^^^
  |
  = help: sizes go up to 16 EiB (2^64 bytes)

error: `log_keep` must be at most 1000
 --> fleet.toml:3:12
  |
3 | log_keep = 4000000000
  |            ^^^^^^^^^^

error: the duration `99999999999999s` is too long
 --> fleet.toml:6:16
  |
6 | stop_timeout = "99999999999999s"
  |                ^^^^^^^^^^^^^^^^^
  |
  = help: the longest duration is 87600h (10 years)

error: the duration `87601h` is too long
 --> fleet.toml:7:18
  |
7 | restart_window = "87601h"
  |                  ^^^^^^^^
  |
  = help: the longest duration is 87600h (10 years)

error: could not load fleet.toml: 4 errors"#,
        );
    }

    #[test]
    fn several_errors_are_all_reported_in_source_order() {
        let source = r#"[project]
nam = "x"
log_max_size = "10XB"
[services.a]
command = 1
restart = "on_failure"
ports = [70000]
health = { http = "https://x", intervl = "1s" }
[services.b]
image = "x"
cwd = "."
ports = ["1:2:3:4"]
volumes = ["data"]
"#;
        check(
            source,
            r#"
error: unknown key `nam` in `[project]`
 --> fleet.toml:2:1
  |
2 | nam = "x"
  | ^^^
  |
  = help: did you mean `name`?

error: expected a size, like "512KB", "10MB" or "1GB"
 --> fleet.toml:3:16
  |
3 | log_max_size = "10XB"
  |                ^^^^^^

error: expected a string or an array of strings, found integer
 --> fleet.toml:5:11
  |
5 | command = 1
  |           ^

error: unknown restart policy `on_failure`
 --> fleet.toml:6:11
  |
6 | restart = "on_failure"
  |           ^^^^^^^^^^^^
  |
  = help: did you mean `on-failure`?

error: port 70000 is out of range
 --> fleet.toml:7:10
  |
7 | ports = [70000]
  |          ^^^^^
  |
  = help: ports are 1 to 65535

error: invalid health URL `https://x`: https probes are not supported
 --> fleet.toml:8:19
  |
8 | health = { http = "https://x", intervl = "1s" }
  |                   ^^^^^^^^^^^
  |
  = help: fleet has no TLS client: probe a plain http:// port of the service, or use `tcp`

error: unknown key `intervl` in `health` of service `a`
 --> fleet.toml:8:32
  |
8 | health = { http = "https://x", intervl = "1s" }
  |                                ^^^^^^^
  |
  = help: did you mean `interval`?

error: `cwd` is only for process services
  --> fleet.toml:11:1
   |
11 | cwd = "."
   | ^^^
   |
   = help: a container's working directory comes from its image (`WORKDIR`)

error: invalid port mapping `1:2:3:4`
  --> fleet.toml:12:10
   |
12 | ports = ["1:2:3:4"]
   |          ^^^^^^^^^
   |
   = help: expected "HOST:CONTAINER" or "IP:HOST:CONTAINER", like "8080:80" or "127.0.0.1:8080:80"

error: invalid volume `data`
  --> fleet.toml:13:12
   |
13 | volumes = ["data"]
   |            ^^^^^^
   |
   = help: expected "HOST:CONTAINER" or "NAME:CONTAINER", optionally with ":ro", like "./data:/data" or "cache:/var/cache:ro"

error: could not load fleet.toml: 10 errors"#,
        );
    }

    #[test]
    fn health_probe_conflicts() {
        let source = r#"[services.a]
command = "a"
notify = true
health = { tcp = 7001 }
[services.b]
command = "b"
watchdog = "5s"
health = { http = "http://127.0.0.1/", exec = "true" }
[services.c]
command = "c"
health = { interval = "2s", docker = true }
volumes = ["./x:/x"]
"#;
        check(
            source,
            r#"
error: `notify` and `health.tcp` are both set
 --> fleet.toml:4:12
  |
4 | health = { tcp = 7001 }
  |            ^^^
  |
  = help: `notify = true` makes READY=1 the service's health probe; remove one of them

error: `watchdog` needs `notify = true`
 --> fleet.toml:7:1
  |
7 | watchdog = "5s"
  | ^^^^^^^^
  |
  = help: the watchdog is fed by WATCHDOG=1 messages on NOTIFY_SOCKET

error: `health` has two probes: `http` and `exec`
 --> fleet.toml:8:40
  |
8 | health = { http = "http://127.0.0.1/", exec = "true" }
  |                                        ^^^^
  |
  = help: a service has one health probe; keep one of them

error: `health.docker` is only for container services
  --> fleet.toml:11:29
   |
11 | health = { interval = "2s", docker = true }
   |                             ^^^^^^
   |
   = help: a service with an `image` or a `build` table runs in a container

error: `volumes` is only for container services
  --> fleet.toml:12:1
   |
12 | volumes = ["./x:/x"]
   | ^^^^^^^
   |
   = help: a service with an `image` or a `build` table runs in a container

error: could not load fleet.toml: 5 errors"#,
        );
    }

    #[test]
    fn health_without_a_probe() {
        check(
            "[services.a]\ncommand = \"a\"\n\n[services.a.health]\ninterval = \"2s\"\n",
            r#"
error: `health` has no probe
 --> fleet.toml:4:1
  |
4 | [services.a.health]
  | ^^^^^^^^^^^^^^^^^^^
  |
  = help: add one of `http`, `tcp`, `exec`, `log`, `docker`

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn keys_for_the_other_kind_of_service() {
        let source = r#"[services.cache]
image = "redis:7"
build = "make image"
socket = 6379
notify = true
[services.web]
command = "w"
build = { context = "." }
"#;
        check(
            source,
            r#"
error: expected a table, found string
 --> fleet.toml:3:9
  |
3 | build = "make image"
  |         ^^^^^^^^^^^^
  |
  = help: a container's `build` builds its image: `build = { context = "." }`

error: `socket` is only for process services
 --> fleet.toml:4:1
  |
4 | socket = 6379
  | ^^^^^^
  |
  = help: fleet hands the socket to a process; a container publishes its ports with `ports`

error: `notify` is only for process services
 --> fleet.toml:5:1
  |
5 | notify = true
  | ^^^^^^
  |
  = help: fleet's NOTIFY_SOCKET is not visible inside a container

error: no `Dockerfile` in the build context
 --> fleet.toml:8:21
  |
8 | build = { context = "." }
  |                     ^^^

error: could not load fleet.toml: 4 errors"#,
        );
    }

    #[test]
    fn dependency_problems() {
        let source = r#"[services.db]
command = "db"
[services.api]
command = "api"
depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
"#;
        check(
            source,
            r#"
error: service `api` waits for `db` to be healthy, but `db` has no health check
 --> fleet.toml:5:16
  |
5 | depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
  |                ^^
  |
  = help: add `health` to service `db`, or wait for it to be "started"

error: service `api` depends on unknown service `cache`
 --> fleet.toml:5:32
  |
5 | depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
  |                                ^^^^^

error: unknown dependency condition `helthy`
 --> fleet.toml:5:54
  |
5 | depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
  |                                                      ^^^^^^^^
  |
  = help: did you mean `healthy`?

error: unknown key `retry` in dependency `cache` of service `api`
 --> fleet.toml:5:64
  |
5 | depends_on = { db = "healthy", cache = { condition = "helthy", retry = true } }
  |                                                                ^^^^^
  |
  = help: expected `condition` or `restart`

error: could not load fleet.toml: 4 errors"#,
        );
    }

    #[test]
    fn bad_globs_regexes_env_values_and_names() {
        let source = r#"[services."my api"]
command = "a"
watch = ["src/[a"]
env = { RATIO = 1.5 }
health = { log = "ready (" }
[services.b]
command = "b"
build = { context = "." }
"#;
        check(
            source,
            r#"
error: invalid service name `my api`
 --> fleet.toml:1:11
  |
1 | [services."my api"]
  |           ^^^^^^^^
  |
  = help: service names become file and container names: use letters, digits, `-`, `_` and `.`, starting with a letter or digit

error: invalid glob `src/[a`: unclosed character class; missing ']'
 --> fleet.toml:3:10
  |
3 | watch = ["src/[a"]
  |          ^^^^^^^^

error: expected a string, integer or boolean, found float
 --> fleet.toml:4:17
  |
4 | env = { RATIO = 1.5 }
  |                 ^^^

error: invalid regex in `health.log`: unclosed group
 --> fleet.toml:5:18
  |
5 | health = { log = "ready (" }
  |                  ^^^^^^^^^

error: no `Dockerfile` in the build context
 --> fleet.toml:8:21
  |
8 | build = { context = "." }
  |                     ^^^

error: could not load fleet.toml: 5 errors"#,
        );
    }

    #[test]
    fn services_must_be_tables() {
        check(
            "[services]\nweb = \"python3 -m http.server\"\n",
            r#"
error: expected a table, found string
 --> fleet.toml:2:7
  |
2 | web = "python3 -m http.server"
  |       ^^^^^^^^^^^^^^^^^^^^^^^^
  |
  = help: define a service as a table: `[services.web]` with a `command` or an `image`

error: could not load fleet.toml: 1 error"#,
        );
    }

    #[test]
    fn list_depends_on_means_started_and_defaults_apply() {
        let manifest = parse_ok("[services.db]\ncommand = \"db\"\n[services.api]\ncommand = [\"api\", \"--port\", \"1\"]\ndepends_on = [\"db\"]\n");
        let root = normalize(&std::env::current_dir().expect("current dir"));
        assert_eq!(manifest.root, root);
        assert_eq!(manifest.path, root.join("fleet.toml"));
        let folder = root
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        assert_eq!(Some(manifest.project.name.clone()), folder);
        assert_eq!(manifest.project.log_max_size, DEFAULT_LOG_MAX_SIZE);
        let names: Vec<&str> = manifest
            .services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        assert_eq!(names, ["db", "api"]);
        let api = manifest.service("api").expect("api");
        assert_eq!(
            api.depends_on,
            [Dependency {
                service: "db".into(),
                condition: DependencyCondition::Started,
                restart: false
            }]
        );
        assert_eq!(
            api.kind,
            ServiceKind::Process(ProcessSpec {
                command: CommandLine::Argv(vec!["api".into(), "--port".into(), "1".into()]),
                cwd: root.clone(),
                build: None,
            })
        );
        assert_eq!(api.restart, RestartPolicy::OnFailure);
        assert_eq!(api.max_restarts, 5);
        assert_eq!(api.restart_window, Duration::from_secs(60));
        assert_eq!(
            api.backoff,
            BackoffSpec {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(30)
            }
        );
        assert_eq!(
            api.stop_signal,
            StopSignal {
                name: "SIGTERM",
                number: 15
            }
        );
        assert_eq!(api.stop_timeout, Duration::from_secs(10));
        assert_eq!(api.health, None);
        assert!(api.restart_on_unhealthy);
        assert_eq!(api.redeploy, RedeployStrategy::StopFirst);
        assert!(
            api.env.is_empty()
                && api.ports.is_empty()
                && api.watch.is_empty()
                && api.socket.is_none()
        );
    }

    #[test]
    fn full_example() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = normalize(dir.path());
        std::fs::create_dir_all(root.join("examples/cache")).expect("mkdir");
        std::fs::write(root.join("examples/cache/Dockerfile"), "FROM scratch\n")
            .expect("write Dockerfile");
        std::fs::write(
            root.join(".env"),
            "# local secrets\n\nexport RUST_LOG=debug\nDATABASE_URL=\"postgres://localhost/db\"\nNAME='single'\n",
        )
        .expect("write .env");
        let source = r#"
[project]
name = "demo"
log_max_size = "512KB"
log_keep = 5

[services.users]
command = "target/debug/examples/users --port 7001"
cwd = "."
env = { RUST_LOG = "info", WORKERS = 4, DEBUG = true }
env_file = ".env"
restart = "on-failure"
max_restarts = 5
restart_window = "60s"
backoff = { initial = "100ms", max = "30s" }
stop_signal = "SIGTERM"
stop_timeout = "10s"
ports = [7001]
health = { http = "http://127.0.0.1:7001/health", expect_body = "ok", interval = "1s", timeout = "1s", retries = 3, start_period = "0s" }

[services.ratings]
command = ["target/debug/examples/ratings", "--port", "7003"]
build = "cargo build -q --example ratings"
watch = ["examples/ratings.rs", "examples/common/**"]
ignore = ["**/*.tmp"]
socket = 7003
notify = true
watchdog = "5s"
stop_signal = "int"
stop_timeout = "1.5s"
depends_on = { users = "healthy", cache = { condition = "started", restart = true } }
restart = "always"
backoff = { initial = "0s", max = "1m30s" }
restart_on_unhealthy = false

[services.cache]
build = { context = "examples/cache", args = { PROFILE = "dev", LEVEL = 2 } }
ports = ["6380:6380", "0.0.0.0:6381:6379", 6382]
volumes = ["./data/cache:/data", "cachedata:/var/lib:ro"]
command = "/cache --port 6380"

[services.cache.health]
docker = true
retries = 10

[services.migrate]
image = "postgres:16"
command = ["/migrate"]
depends_on = ["cache"]
restart = "never"
redeploy = "start-first"
"#;
        let manifest = match super::super::parse(&root.join("fleet.toml"), source) {
            Ok(manifest) => manifest,
            Err(err) => panic!("{}", err.render(false)),
        };
        let defaults = |name: &str, kind: ServiceKind| ServiceSpec {
            name: name.to_string(),
            kind,
            env: BTreeMap::new(),
            depends_on: Vec::new(),
            restart: RestartPolicy::OnFailure,
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            backoff: BackoffSpec {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(30),
            },
            stop_signal: StopSignal {
                name: "SIGTERM",
                number: 15,
            },
            stop_timeout: Duration::from_secs(10),
            ports: Vec::new(),
            health: None,
            restart_on_unhealthy: true,
            start_timeout: None,
            watch: Vec::new(),
            ignore: Vec::new(),
            redeploy: RedeployStrategy::StopFirst,
            socket: None,
        };
        let strings = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        };
        let health = |probe: Probe| HealthSpec {
            probe,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 3,
            start_period: Duration::ZERO,
        };

        let users = ServiceSpec {
            env: strings(&[
                ("DATABASE_URL", "postgres://localhost/db"),
                ("DEBUG", "true"),
                ("NAME", "single"),
                ("RUST_LOG", "info"),
                ("WORKERS", "4"),
            ]),
            ports: vec![7001],
            health: Some(health(Probe::Http {
                target: HttpTarget {
                    url: "http://127.0.0.1:7001/health".into(),
                    host: "127.0.0.1".into(),
                    port: 7001,
                    path_and_query: "/health".into(),
                    host_header: "127.0.0.1:7001".into(),
                },
                expect_body: Some("ok".into()),
            })),
            ..defaults(
                "users",
                ServiceKind::Process(ProcessSpec {
                    command: CommandLine::Shell("target/debug/examples/users --port 7001".into()),
                    cwd: root.clone(),
                    build: None,
                }),
            )
        };
        let ratings = ServiceSpec {
            depends_on: vec![
                Dependency {
                    service: "users".into(),
                    condition: DependencyCondition::Healthy,
                    restart: false,
                },
                Dependency {
                    service: "cache".into(),
                    condition: DependencyCondition::Started,
                    restart: true,
                },
            ],
            restart: RestartPolicy::Always,
            backoff: BackoffSpec {
                initial: Duration::ZERO,
                max: Duration::from_secs(90),
            },
            stop_signal: StopSignal {
                name: "SIGINT",
                number: 2,
            },
            stop_timeout: Duration::from_millis(1500),
            health: Some(health(Probe::Notify {
                watchdog: Some(Duration::from_secs(5)),
            })),
            restart_on_unhealthy: false,
            start_timeout: None,
            watch: vec!["examples/ratings.rs".into(), "examples/common/**".into()],
            ignore: vec!["**/*.tmp".into()],
            redeploy: RedeployStrategy::StartFirst,
            socket: Some(SocketSpec {
                host: "127.0.0.1".into(),
                port: 7003,
            }),
            ..defaults(
                "ratings",
                ServiceKind::Process(ProcessSpec {
                    command: CommandLine::Argv(vec![
                        "target/debug/examples/ratings".into(),
                        "--port".into(),
                        "7003".into(),
                    ]),
                    cwd: root.clone(),
                    build: Some(CommandLine::Shell(
                        "cargo build -q --example ratings".into(),
                    )),
                }),
            )
        };
        let cache = ServiceSpec {
            ports: vec![6380, 6381, 6382],
            health: Some(HealthSpec {
                retries: 10,
                ..health(Probe::Docker)
            }),
            ..defaults(
                "cache",
                ServiceKind::Container(ContainerSpec {
                    image: "fleet-demo/cache:dev".into(),
                    build: Some(ImageBuild {
                        context: root.join("examples/cache"),
                        dockerfile: "Dockerfile".into(),
                        args: strings(&[("LEVEL", "2"), ("PROFILE", "dev")]),
                    }),
                    ports: vec![
                        PortMapping {
                            host_ip: "127.0.0.1".into(),
                            host: 6380,
                            container: 6380,
                        },
                        PortMapping {
                            host_ip: "0.0.0.0".into(),
                            host: 6381,
                            container: 6379,
                        },
                        PortMapping {
                            host_ip: "127.0.0.1".into(),
                            host: 6382,
                            container: 6382,
                        },
                    ],
                    volumes: vec![
                        format!("{}:/data", root.join("data/cache").display()),
                        "cachedata:/var/lib:ro".into(),
                    ],
                    // Plain words run without a shell: scratch images have none.
                    command: Some(vec!["/cache".into(), "--port".into(), "6380".into()]),
                }),
            )
        };
        let migrate = ServiceSpec {
            depends_on: vec![Dependency {
                service: "cache".into(),
                condition: DependencyCondition::Started,
                restart: false,
            }],
            restart: RestartPolicy::Never,
            redeploy: RedeployStrategy::StartFirst,
            ..defaults(
                "migrate",
                ServiceKind::Container(ContainerSpec {
                    image: "postgres:16".into(),
                    build: None,
                    ports: Vec::new(),
                    volumes: Vec::new(),
                    command: Some(vec!["/migrate".into()]),
                }),
            )
        };
        let expected = Manifest {
            path: root.join("fleet.toml"),
            root: root.clone(),
            project: Project {
                name: "demo".into(),
                log_max_size: 512_000,
                log_keep: 5,
            },
            services: vec![users, ratings, cache, migrate],
        };
        assert_eq!(manifest, expected);
    }

    #[test]
    fn durations() {
        let ok = |text: &str| parse_duration(text).expect(text);
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.1s"), Duration::from_millis(100));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(parse_duration("10"), Err(DurationError::NoUnit));
        assert_eq!(parse_duration("1.5"), Err(DurationError::NoUnit));
        for bad in ["", "s", "10sec", "1m30", "-1s", "1.2.3s", "inf", "1 s"] {
            assert_eq!(parse_duration(bad), Err(DurationError::Invalid), "{bad:?}");
        }
        assert_eq!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn durations_past_ten_years_are_too_long() {
        // Regression: `--wait-timeout 99999999999999s` parsed, then overflowed the
        // `Instant` it was added to and panicked.
        assert_eq!(ok_duration("87600h"), MAX_DURATION);
        assert_eq!(
            ok_duration("87599h59m59.999s"),
            MAX_DURATION - Duration::from_millis(1)
        );
        for long in ["87600h1ms", "87601h", "99999999999999s", "5256000m1s"] {
            assert_eq!(parse_duration(long), Err(DurationError::TooLong), "{long}");
        }
        assert_eq!(
            super::super::parse_duration("99999999999999s"),
            Err("the longest duration is 87600h (10 years)".to_string())
        );
        assert_eq!(
            super::super::parse_duration("10"),
            Err("expected a duration with a unit, like \"30s\" or \"2m\"".to_string())
        );
    }

    fn ok_duration(text: &str) -> Duration {
        parse_duration(text).expect(text)
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KB"), Ok(512_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1gb"), Ok(1_000_000_000));
        assert_eq!(parse_size("64 KiB"), Ok(65_536));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("10XB"), Err(SizeError::Invalid));
        assert_eq!(parse_size("MB"), Err(SizeError::Invalid));
        assert_eq!(parse_size("-1MB"), Err(SizeError::Invalid));
    }

    #[test]
    fn sizes_past_u64_are_too_large() {
        // Regression: "99999999999GB" overflowed the multiplication and was reported
        // as not a size at all.
        assert_eq!(parse_size("99999999999GB"), Err(SizeError::TooLarge));
        assert_eq!(parse_size("18446744073709551616"), Err(SizeError::TooLarge));
        assert_eq!(
            parse_size("99999999999999999999999999KB"),
            Err(SizeError::TooLarge)
        );
    }

    #[test]
    fn http_urls() {
        // host, port, request target, Host header
        let parsed = |url: &str| {
            parse_http_url(url).map(|target| {
                format!(
                    "{} {} {} {}",
                    target.host, target.port, target.path_and_query, target.host_header
                )
            })
        };
        assert_eq!(
            parsed("http://127.0.0.1:7001/health"),
            Ok("127.0.0.1 7001 /health 127.0.0.1:7001".into())
        );
        assert_eq!(
            parsed("http://localhost"),
            Ok("localhost 80 / localhost".into())
        );
        assert_eq!(
            parsed("http://localhost?ready=1#top"),
            Ok("localhost 80 /?ready=1 localhost".into())
        );
        assert_eq!(
            parsed("http://localhost:8080/a/b?x=1&y=%20#frag"),
            Ok("localhost 8080 /a/b?x=1&y=%20 localhost:8080".into())
        );
        assert_eq!(
            parsed("HTTP://Web.local:81"),
            Ok("Web.local 81 / Web.local:81".into())
        );
        assert_eq!(
            parsed("http://[::1]:8080/x"),
            Ok("::1 8080 /x [::1]:8080".into())
        );
        assert_eq!(parsed("http://[::1]"), Ok("::1 80 / [::1]".into()));
        assert_eq!(
            parsed("http://[0:0::1]:9/"),
            Ok("::1 9 / [::1]:9".into()),
            "IPv6 addresses are written the short way"
        );
        assert_eq!(parsed("https://localhost"), Err(HTTPS_UNSUPPORTED));
        assert_eq!(parsed("HTTPS://localhost"), Err(HTTPS_UNSUPPORTED));
        assert_eq!(parsed("localhost:80"), Err("it must start with http://"));
        assert_eq!(parsed("http://:80/"), Err("the host is missing"));
        assert_eq!(parsed("http:///health"), Err("the host is missing"));
        assert_eq!(parsed("http://"), Err("the host is missing"));
        let bad_port = Err("the port is not a number from 1 to 65535");
        assert_eq!(parsed("http://localhost:http/"), bad_port);
        assert_eq!(parsed("http://localhost:0/"), bad_port);
        assert_eq!(parsed("http://localhost:65536/"), bad_port);
        assert_eq!(parsed("http://localhost:/"), bad_port);
        assert_eq!(parsed("http://[::1]:99999/"), bad_port);
        assert_eq!(
            parsed("http://::1:8080/"),
            Err("an IPv6 address must be in brackets, like http://[::1]:8080/")
        );
        assert_eq!(parsed("http://[::1/"), Err("unclosed `[` in the host"));
        assert_eq!(
            parsed("http://[localhost]:80/"),
            Err("the host in brackets is not an IPv6 address")
        );
        assert_eq!(
            parsed("http://[::1]x/"),
            Err("unexpected text after the host")
        );
        assert_eq!(
            parsed("http://user:pw@localhost/"),
            Err("credentials are not supported")
        );
        assert_eq!(
            parsed("http://local host/"),
            Err("the host has a character a host name cannot have")
        );
        assert_eq!(
            parsed("http://localhost/a b"),
            Err("the path has a character that must be percent-encoded")
        );
    }

    #[test]
    fn port_mappings_and_volumes() {
        let mapping = |text: &str| {
            parse_port_mapping(text).map(|m| format!("{} {} {}", m.host_ip, m.host, m.container))
        };
        assert_eq!(mapping("6380:6379"), Some("127.0.0.1 6380 6379".into()));
        assert_eq!(mapping("0.0.0.0:80:8080"), Some("0.0.0.0 80 8080".into()));
        assert_eq!(mapping("[::1]:80:8080"), Some("::1 80 8080".into()));
        assert_eq!(mapping("localhost:80:8080"), None);
        assert_eq!(mapping("80"), None);
        let root = Path::new("/srv/app");
        assert_eq!(
            parse_volume("./data:/data", root),
            Some("/srv/app/data:/data".into())
        );
        assert_eq!(
            parse_volume("../shared:/s:ro", root),
            Some("/srv/shared:/s:ro".into())
        );
        assert_eq!(parse_volume("/abs:/x:rw", root), Some("/abs:/x".into()));
        assert_eq!(
            parse_volume("cache:/var/cache", root),
            Some("cache:/var/cache".into())
        );
        assert_eq!(parse_volume("cache:relative", root), None);
        assert_eq!(parse_volume("cache:/x:rx", root), None);
    }

    #[test]
    fn default_image_tags_are_valid_docker_names() {
        assert_eq!(default_image_tag("demo", "cache"), "fleet-demo/cache:dev");
        assert_eq!(
            default_image_tag("My App", "Cache"),
            "fleet-my-app/cache:dev"
        );
    }
}
