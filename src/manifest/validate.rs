//! Raw TOML -> [`Manifest`], collecting every problem on the way: the walk over the
//! file's tables.
//!
//! Owns the meaning of each key of `[project]` and of a service: which keys a table
//! may have, their defaults, which keys belong to processes and which to containers,
//! dependencies as written, backoff, builds, env (including `env_file`'s values). It
//! leaves reading a single value to `values` (durations, sizes, signals, ports,
//! addresses, volumes, URLs, paths, env file lines), the `health` table to `health`,
//! and the checks that need all services at once to `checks`; it must not parse a
//! value itself nor compare services with each other.
//!
//! Theory of operation: one pass over the file resolves each service into a
//! [`ServiceSpec`], falling back to a default (or a placeholder) wherever a value is
//! wrong, so that one mistake never hides the next; each problem becomes a
//! [`Diagnostic`]. A second pass (`checks`) checks services against each other using
//! the spans remembered in the first. The manifest is returned only if no diagnostic
//! was made; placeholders never leave `crate::manifest`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checks::{PortSource, ServiceSpans};
use super::diagnostic::{suggest, Diagnostic, ManifestError};
use super::interpolate::{interpolate_table, Variables};
use super::raw::{self, Entry, Kind, Span, Table, Value};
use super::values::{
    format_duration, is_valid_env_name, is_valid_name, normalize, parse_port_mapping, parse_volume,
    DEFAULT_HOST_IP,
};
use super::{
    Activation, BackoffSpec, CommandLine, ContainerSpec, Dependency, DependencyCondition,
    EngineHealthCheck, ImageBuild, Manifest, PortMapping, ProcessSpec, Project, RedeployStrategy,
    RestartPolicy, ServiceExport, ServiceKind, ServiceSpec, SocketSpec, StopSignal,
    DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_SIZE, MAX_REPLICAS,
};

pub(super) const TOP_LEVEL_KEYS: &[&str] = &["project", "services"];
pub(super) const PROJECT_KEYS: &[&str] = &["name", "log_max_size", "log_keep"];
pub(super) const SERVICE_KEYS: &[&str] = &[
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
    "init",
    "replicas",
    "profiles",
    "export",
];
pub(super) const EXPORT_KEYS: &[&str] = &["image", "command", "env", "secret"];
pub(super) const BACKOFF_KEYS: &[&str] = &["initial", "max"];
pub(super) const BUILD_KEYS: &[&str] = &["context", "dockerfile", "args"];
pub(super) const DEPENDENCY_KEYS: &[&str] = &["condition", "restart"];
const PORT_MAPPING_HELP: &str = "expected \"HOST:CONTAINER\" or \"IP:HOST:CONTAINER\", \
    like \"8080:80\" or \"127.0.0.1:8080:80\"; HOST may be a range, one port per replica: \
    \"8080-8082:80\"";

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
const DEFAULT_DOCKERFILE: &str = "Dockerfile";
/// Used when the manifest's folder has no name (it is `/`).
const FALLBACK_PROJECT_NAME: &str = "fleet";

/// Rotated log files kept at most: each rotation renames every kept file, so a huge
/// count would stall the log writer; a thousand is far more history than anyone reads.
const MAX_LOG_KEEP: u32 = 1000;

pub(crate) fn validate(
    path: &Path,
    source: &str,
    activation: &Activation,
    variables: Option<&Variables>,
) -> Result<Manifest, ManifestError> {
    let mut document =
        raw::parse(source).map_err(|syntax| ManifestError::invalid(path, source, vec![syntax]))?;
    let manifest_path = match absolute(path) {
        Ok(manifest_path) => manifest_path,
        Err(err) => return Err(ManifestError::unreadable(path, &err)),
    };
    let root = manifest_path
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    // Interpolation comes before any value is read; a string it cannot finish would
    // only cause confusing errors later, so its errors are reported alone.
    let read;
    let variables = match variables {
        Some(variables) => variables,
        None => {
            read = Variables::for_folder(&root).map_err(|err| {
                ManifestError::invalid(path, source, vec![Diagnostic::new(err.to_string(), 0..0)])
            })?;
            &read
        }
    };
    let mut problems = Vec::new();
    interpolate_table(&mut document, source, variables, &mut problems);
    if !problems.is_empty() {
        return Err(ManifestError::invalid(path, source, problems));
    }
    let mut checker = Checker {
        root,
        source,
        diagnostics: Vec::new(),
    };
    let manifest = checker.manifest(&document, manifest_path, activation);
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

/// The state of one validation: where relative paths start, the text (for line
/// numbers in messages) and every problem found so far. Its methods are spread over
/// this module and its siblings, each beside the part of the manifest it checks.
pub(super) struct Checker<'a> {
    pub(super) root: PathBuf,
    pub(super) source: &'a str,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(super) fn error(&mut self, message: impl Into<String>, span: Span) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::new(message, span));
        let last = self.diagnostics.len() - 1;
        &mut self.diagnostics[last]
    }

    pub(super) fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn manifest(&mut self, document: &Table, path: PathBuf, activation: &Activation) -> Manifest {
        document.check_keys(TOP_LEVEL_KEYS, "", &mut self.diagnostics);
        let project = self.project(document.get("project"));

        let mut services = Vec::new();
        let mut spans = Vec::new();
        let mut exports = BTreeMap::new();
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
                if let Some(export) = self.export(&entry.key, service_table) {
                    exports.insert(entry.key.clone(), export);
                }
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
        if self.diagnostics.is_empty() {
            self.check_activation(&services, &spans, activation);
        }
        Manifest {
            path,
            root: self.root.clone(),
            project,
            services,
            exports,
        }
    }

    /// `[services.X.export]` and the `env_file`'s own values; `None` when the service
    /// has neither.
    fn export(&mut self, name: &str, table: &Table) -> Option<ServiceExport> {
        let mut export = ServiceExport::default();
        if let Some(value) = table.get("env_file")
            && let Kind::String(file) = &value.kind
        {
            // Read again apart from `env`; problems were reported when `env` read it.
            let mut values = BTreeMap::new();
            let mut ignored = Checker {
                root: self.root.clone(),
                source: self.source,
                diagnostics: Vec::new(),
            };
            ignored.read_env_file(file, value.span.clone(), &mut values);
            export.env_file = Some((self.root.join(file), values));
        }
        let Some(value) = table.get("export") else {
            return export.env_file.is_some().then_some(export);
        };
        let export_table = value.table(&mut self.diagnostics)?;
        export_table.check_keys(
            EXPORT_KEYS,
            &format!(" in `export` of service `{name}`"),
            &mut self.diagnostics,
        );
        if let Some(value) = export_table.get("image") {
            match value.string(&mut self.diagnostics) {
                Some(image) if image.trim().is_empty() => {
                    self.error("`export.image` is empty", value.span.clone());
                }
                Some(image) => export.image = Some(image.to_string()),
                None => {}
            }
        }
        export.command = export_table
            .get("command")
            .and_then(|value| self.command_line(value, "`export.command`"));
        if let Some(vars) = export_table
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
                    export.env.insert(entry.key.clone(), text);
                }
            }
        }
        if let Some(value) = export_table.get("secret")
            && let Some(secret) = value.boolean(&mut self.diagnostics)
        {
            if secret && table.get("env_file").is_none() {
                self.error(
                    "`export.secret` needs an `env_file`: it marks that file's values as secrets",
                    value.span.clone(),
                );
            }
            export.secret = secret;
        }
        // `export = {}` says nothing: no table, as `fleet config` writes it.
        (export != ServiceExport::default()).then_some(export)
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
        if let Some(value) = table.get("name")
            && let Some(name) = value.string(&mut self.diagnostics)
        {
            if name.trim().is_empty() {
                self.error("the project name is empty", value.span.clone());
            } else {
                project.name = name.to_string();
            }
        }
        if let Some(value) = table.get("log_max_size")
            && let Some(size) = self.size(value)
        {
            project.log_max_size = size;
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
        if let Some((_, suffix)) = name.rsplit_once('.')
            && !suffix.is_empty()
            && suffix.bytes().all(|byte| byte.is_ascii_digit())
        {
            self.error(
                format!("service name `{name}` ends like a replica's name"),
                entry.key_span.clone(),
            )
            .help = Some(format!(
                "`NAME.{suffix}` names replica {suffix} of service `NAME`: rename it, like `{}`",
                name.replace('.', "-")
            ));
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
        let (health, engine_health) = self.health(&name, table, is_container);
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
            self.container(project, &name, table, &mut ports, engine_health)
        } else {
            self.process(&name, entry, table, &mut ports)
        };
        let replicas = self.replicas(table.get("replicas"));
        let profiles = self.profiles(table.get("profiles"));
        if let ServiceKind::Container(container) = &kind {
            self.check_port_ranges(&name, container, replicas, table.get("ports"));
        }
        ports.sort_by_key(|(_, span, _)| span.start);
        let ports_of_replicas = replica_ports(&ports, replicas);
        if let Some((port, span)) = ports
            .iter()
            .filter(|(_, _, source)| *source == PortSource::Ports)
            .find(|(port, _, _)| {
                u32::from(*port) + replicas.saturating_sub(1) > u32::from(u16::MAX)
            })
            .map(|(port, span, _)| (*port, span.clone()))
        {
            self.error(
                format!("with {replicas} replicas, port {port} runs past 65535"),
                span,
            )
            .help = Some("replica N listens on the port plus N - 1: pick a lower port".to_string());
        }
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
            replicas,
            profiles,
        };
        (
            spec,
            ServiceSpans {
                name: entry.key_span.clone(),
                dependencies: dependency_spans,
                ports: ports_of_replicas,
            },
        )
    }

    fn replicas(&mut self, value: Option<&Value>) -> u32 {
        let Some(value) = value else {
            return 1;
        };
        match self.count(value) {
            Some(count) if count <= MAX_REPLICAS => count,
            Some(count) => {
                self.error(
                    format!("{count} replicas is more than the {MAX_REPLICAS} fleet runs of one service"),
                    value.span.clone(),
                )
                .help = Some(format!("`replicas` is 0 to {MAX_REPLICAS}"));
                1
            }
            None => 1,
        }
    }

    fn profiles(&mut self, value: Option<&Value>) -> Vec<String> {
        let Some(value) = value else {
            return Vec::new();
        };
        let mut profiles: Vec<String> = Vec::new();
        let items = value.strings(&mut self.diagnostics).unwrap_or_default();
        if items.is_empty() && matches!(value.kind, Kind::Array(_)) {
            self.error("`profiles` is empty", value.span.clone()).help = Some(
                "a service without `profiles` always starts; remove the key, or name a profile"
                    .to_string(),
            );
        }
        for (name, span) in items {
            if !is_valid_name(name) {
                self.error(format!("invalid profile name `{name}`"), span)
                    .help = Some(
                    "use letters, digits, `-`, `_` and `.`, starting with a letter or digit"
                        .to_string(),
                );
            } else if !profiles.iter().any(|known| known == name) {
                profiles.push(name.to_string());
            }
        }
        profiles
    }

    /// A host port range gives one port per replica: its length must be the count.
    fn check_port_ranges(
        &mut self,
        name: &str,
        container: &ContainerSpec,
        replicas: u32,
        value: Option<&Value>,
    ) {
        let Some(items) = value.and_then(|value| match &value.kind {
            Kind::Array(items) => Some(items),
            _ => None,
        }) else {
            return;
        };
        let ranges = container
            .ports
            .iter()
            .filter_map(|mapping| Some((mapping.host, mapping.host_last?)));
        let spans = items
            .iter()
            .filter(|item| matches!(&item.kind, Kind::String(text) if text.contains('-')));
        for ((first, last), item) in ranges.zip(spans) {
            let length = u32::from(last - first) + 1;
            if replicas != 0 && length != replicas {
                self.error(
                    format!(
                        "port range {first}-{last} has {length} port{} for {replicas} replica{} of `{name}`",
                        if length == 1 { "" } else { "s" },
                        if replicas == 1 { "" } else { "s" },
                    ),
                    item.span.clone(),
                )
                .help = Some(
                    "a host port range gives each replica one port: make its length the `replicas` count"
                        .to_string(),
                );
            }
        }
    }

    pub(super) fn only_for_processes(&mut self, table: &Table, key: &str, help: &str) {
        if let Some(entry) = table.entry(key) {
            self.error(
                format!("`{key}` is only for process services"),
                entry.key_span.clone(),
            )
            .help = Some(help.to_string());
        }
    }

    pub(super) fn only_for_containers(&mut self, span: Span, key: &str) {
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
        if let Some(value) = table.get("ports")
            && let Some(items) = value.array("an array of port numbers", &mut self.diagnostics)
        {
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
        if let Some(entry) = table.entry("volumes") {
            self.only_for_containers(entry.key_span.clone(), "volumes");
        }
        if let Some(entry) = table.entry("init") {
            self.only_for_containers(entry.key_span.clone(), "init");
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
        healthcheck: Option<EngineHealthCheck>,
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
        if let Some(value) = table.get("ports")
            && let Some(items) = value.array("an array of ports", &mut self.diagnostics)
        {
            for item in items {
                let mapping = match &item.kind {
                    Kind::String(text) => {
                        let mapping = parse_port_mapping(text);
                        if mapping.is_none() {
                            let message = format!("invalid port mapping `{text}`");
                            self.error(message, item.span.clone()).help =
                                Some(PORT_MAPPING_HELP.to_string());
                        }
                        mapping
                    }
                    _ => self.port_number(item).map(|port| PortMapping {
                        host_ip: DEFAULT_HOST_IP.to_string(),
                        host: port,
                        container: port,
                        host_last: None,
                    }),
                };
                if let Some(mapping) = mapping {
                    ports.push((mapping.host, item.span.clone(), PortSource::Ports));
                    mappings.push(mapping);
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
        let init = table
            .get("init")
            .and_then(|value| value.boolean(&mut self.diagnostics))
            .unwrap_or(false);
        ServiceKind::Container(ContainerSpec {
            image,
            build,
            ports: mappings,
            volumes,
            command,
            healthcheck,
            init,
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

    fn env(&mut self, table: &Table) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if let Some(value) = table.get("env_file")
            && let Some(file) = value.string(&mut self.diagnostics)
        {
            self.read_env_file(file, value.span.clone(), &mut env);
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
                            if let Some(condition) = options.get("condition")
                                && let Some(index) =
                                    self.choice(condition, "dependency condition", &conditions)
                            {
                                dependency.condition = condition_of(index);
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
}

/// Whether an unknown key in `table` looks like a typo of one of `keys`.
/// The host ports every replica takes: replica N (0-based) listens on each of the
/// service's ports plus N, all declared where the port was written; the socket is
/// shared. Each entry says which replica takes it, for the clash message.
fn replica_ports(ports: &[(u16, Span, PortSource)], replicas: u32) -> Vec<(u16, Span, PortSource)> {
    let mut all = Vec::new();
    for (port, span, source) in ports {
        if *source == PortSource::Socket {
            all.push((*port, span.clone(), *source));
            continue;
        }
        for index in 0..replicas.max(1) {
            let Some(shifted) = u16::try_from(index)
                .ok()
                .and_then(|index| port.checked_add(index))
            else {
                break;
            };
            let source = if index == 0 {
                PortSource::Ports
            } else {
                PortSource::Replica(index + 1)
            };
            all.push((shifted, span.clone(), source));
        }
    }
    all
}

fn has_misspelling_of(table: &Table, keys: &[&str]) -> bool {
    table.entries.iter().any(|entry| {
        !SERVICE_KEYS.contains(&entry.key.as_str())
            && suggest(&entry.key, SERVICE_KEYS.iter().copied())
                .is_some_and(|key| keys.contains(&key))
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::test_support::{check, parse_ok};
    use crate::manifest::{HealthSpec, HttpTarget, Probe};

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
   = help: expected "HOST:CONTAINER" or "IP:HOST:CONTAINER", like "8080:80" or "127.0.0.1:8080:80"; HOST may be a range, one port per replica: "8080-8082:80"

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
            replicas: 1,
            profiles: Vec::new(),
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
                            host_last: None,
                        },
                        PortMapping {
                            host_ip: "0.0.0.0".into(),
                            host: 6381,
                            container: 6379,
                            host_last: None,
                        },
                        PortMapping {
                            host_ip: "127.0.0.1".into(),
                            host: 6382,
                            container: 6382,
                            host_last: None,
                        },
                    ],
                    volumes: vec![
                        format!("{}:/data", root.join("data/cache").display()),
                        "cachedata:/var/lib:ro".into(),
                    ],
                    // Plain words run without a shell: scratch images have none.
                    command: Some(vec!["/cache".into(), "--port".into(), "6380".into()]),
                    healthcheck: None,
                    init: false,
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
                    healthcheck: None,
                    init: false,
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
            exports: manifest.exports.clone(),
        };
        assert_eq!(manifest, expected);
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
