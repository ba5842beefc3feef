//! `fleet export`: the manifest translated into what Docker Swarm (`swarm`: a compose
//! file for `docker stack deploy`) and Kubernetes (`kubernetes`: Deployments, Jobs,
//! Services, ...) run, keeping the meaning of every key that has a counterpart there.
//!
//! Owns the translation and its report. It reads a validated [`Manifest`] and the
//! manifest's text (only for the places of keys, `places`); it writes nothing, starts
//! nothing and never talks to an engine: `cli::export` prints or writes the documents
//! and the report.
//!
//! Theory of operation: [`export`] picks the services to export (the selection, minus
//! process services without an image to run there, which stay local) and turns each
//! into a [`Plan`]: what runs, in the terms both engines share (an image, a command,
//! environment, container ports, volumes, a probe from inside the network). Each
//! target (`swarm`, `kubernetes`) turns plans into YAML documents and says, per key,
//! what it could not keep ([`Findings`]): an unmapped key is a warning, a meaning kept
//! with a condition (the image must contain `wget`) a note. Every document is written
//! and read back (`yaml::round_trip`) and checked by its target before anything is
//! returned, so what `fleet export` prints is what it meant to print.

mod kubernetes;
mod places;
mod swarm;
#[cfg(test)]
mod tests;
pub(crate) mod yaml;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::manifest::{
    CommandLine, DependencyCondition, Manifest, Probe, ServiceExport, ServiceKind, ServiceSpec,
};

use places::{covers, Places};
use yaml::Yaml;

/// The engine to export to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Swarm,
    Kubernetes,
}

impl Target {
    pub fn title(self) -> &'static str {
        match self {
            Target::Swarm => "Docker Swarm",
            Target::Kubernetes => "Kubernetes",
        }
    }
}

/// How Swarm publishes a port and resolves a service's name: through IPVS (the
/// routing mesh on every node, a virtual IP per service), or without it (the task's
/// own node, the tasks' own addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PublishMode {
    /// The routing mesh (IPVS): every node answers and balances over the tasks.
    #[default]
    Ingress,
    /// `mode: host` ports (one task per node per port) and `endpoint_mode: dnsrr`.
    Host,
}

/// What the export is asked for besides the manifest.
#[derive(Debug, Clone)]
pub struct Options {
    /// The services to export, in manifest order (a selection: `Manifest::selection`).
    pub services: Vec<String>,
    pub publish: PublishMode,
    /// Kubernetes: the namespace written on every namespaced object.
    pub namespace: String,
}

/// One document of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// `compose` for Swarm, the object's kind for Kubernetes.
    pub kind: String,
    pub name: String,
    /// The YAML text, ending in a newline.
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Export {
    pub documents: Vec<Document>,
    pub report: Report,
}

impl Export {
    /// All documents as one YAML stream (`---` between documents).
    pub fn to_text(&self) -> String {
        let texts: Vec<&str> = self.documents.iter().map(|doc| doc.text.as_str()).collect();
        texts.join("---\n")
    }
}

/// A key that has no counterpart, or a meaning kept under a condition, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `None`: a `[project]` key.
    pub service: Option<String>,
    /// The key's dotted path (`health.log`); empty for the service as a whole.
    pub key: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Finding {
    /// `fleet.toml:12:1: service `web`: `watch` ...`.
    pub fn render(&self, file: &str) -> String {
        let owner = match &self.service {
            Some(service) => format!("service `{service}`"),
            None => "[project]".to_string(),
        };
        let key = if self.key.is_empty() {
            String::new()
        } else {
            format!("`{}` ", self.key)
        };
        format!(
            "{file}:{}:{}: {owner}: {key}{}",
            self.line, self.column, self.message
        )
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub target: Target,
    /// Services exported, in manifest order.
    pub exported: Vec<String>,
    /// Selected services that stay on this machine, with why.
    pub local: Vec<(String, String)>,
    /// How many written keys of the exported services (and `[project]`) kept their
    /// meaning.
    pub mapped: usize,
    /// Written keys with no counterpart: warnings (`--strict`: errors).
    pub unmapped: Vec<Finding>,
    /// Meanings kept with a condition or a difference worth knowing.
    pub notes: Vec<Finding>,
}

impl Report {
    /// The closing line: services exported, keys mapped, keys with no counterpart.
    pub fn summary(&self) -> String {
        let plural = |count: usize, word: &str| {
            format!("{count} {word}{}", if count == 1 { "" } else { "s" })
        };
        let mut line = format!(
            "{} exported to {}",
            plural(self.exported.len(), "service"),
            self.target.title()
        );
        if !self.exported.is_empty() {
            let _ = write!(line, " ({})", self.exported.join(", "));
        }
        if !self.local.is_empty() {
            let names: Vec<&str> = self.local.iter().map(|(name, _)| name.as_str()).collect();
            let _ = write!(
                line,
                ", {} staying local ({})",
                self.local.len(),
                names.join(", ")
            );
        }
        let _ = write!(
            line,
            "; {} mapped, {} with no counterpart",
            plural(self.mapped, "key"),
            plural(self.unmapped.len(), "key"),
        );
        line
    }
}

/// Translates the selected services of `manifest` (whose text is `source`).
pub fn export(
    manifest: &Manifest,
    source: &str,
    target: Target,
    options: &Options,
) -> Result<Export, String> {
    let places = Places::read(source);
    let mut findings = Findings::default();
    let mut plans = Vec::new();
    let mut local = Vec::new();
    for spec in manifest
        .services
        .iter()
        .filter(|spec| options.services.contains(&spec.name))
    {
        let export = manifest.exports.get(&spec.name);
        match Plan::new(spec, export, &mut findings) {
            Some(plan) => plans.push(plan),
            None => local.push((
                spec.name.clone(),
                "a process on this machine: give it `export.image` (an image holding it) to export it"
                    .to_string(),
            )),
        }
    }
    for plan in &plans {
        for dependency in &plan.spec.depends_on {
            if !plans
                .iter()
                .any(|other| other.spec.name == dependency.service)
            {
                findings.unmapped(
                    &plan.spec.name,
                    "depends_on",
                    format!(
                        "names `{}`, which is not exported: it cannot be reached or waited for there",
                        dependency.service
                    ),
                );
            }
        }
    }
    let documents = match target {
        Target::Swarm => swarm::documents(manifest, &plans, options, &mut findings)?,
        Target::Kubernetes => kubernetes::documents(manifest, &plans, options, &mut findings)?,
    };
    for document in &documents {
        if document.text.trim().is_empty() {
            return Err(format!(
                "the {} `{}` is empty",
                document.kind, document.name
            ));
        }
    }
    let exported: Vec<String> = plans.iter().map(|plan| plan.spec.name.clone()).collect();
    Ok(Export {
        documents,
        report: findings.report(target, &places, exported, local),
    })
}

/// Renders `body` and checks that the text reads back as `body`: the check every
/// document passes before it is returned.
fn document(kind: &str, name: &str, body: &Yaml) -> Result<Document, String> {
    let text = body.to_text();
    yaml::round_trip(&text, body).map_err(|err| format!("{kind} `{name}`: {err}"))?;
    Ok(Document {
        kind: kind.to_string(),
        name: name.to_string(),
        text,
    })
}

/// What the targets found while mapping, before places are known.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// (service, key, message); service `None` for `[project]`.
    unmapped: Vec<(Option<String>, String, String)>,
    notes: Vec<(Option<String>, String, String)>,
}

impl Findings {
    pub(crate) fn unmapped(&mut self, service: &str, key: &str, message: impl Into<String>) {
        self.unmapped
            .push((Some(service.to_string()), key.to_string(), message.into()));
    }

    pub(crate) fn note(&mut self, service: &str, key: &str, message: impl Into<String>) {
        self.notes
            .push((Some(service.to_string()), key.to_string(), message.into()));
    }

    pub(crate) fn project_unmapped(&mut self, key: &str, message: impl Into<String>) {
        self.unmapped.push((None, key.to_string(), message.into()));
    }

    /// Keeps the findings about keys that were written (a default's difference is the
    /// README's to tell, not every export's), places them, and counts the written keys
    /// that kept their meaning.
    fn report(
        self,
        target: Target,
        places: &Places,
        exported: Vec<String>,
        local: Vec<(String, String)>,
    ) -> Report {
        let written = |service: &Option<String>, key: &str| -> bool {
            if key.is_empty() {
                return true;
            }
            let keys = match service {
                Some(service) => places.service_keys(service),
                None => places.project.as_slice(),
            };
            keys.iter()
                .any(|written| covers(key, &written.path) || covers(&written.path, key))
        };
        let place = |(service, key, message): (Option<String>, String, String)| {
            let (line, column) = places.line_of(service.as_deref(), &key);
            Finding {
                service,
                key,
                line,
                column,
                message,
            }
        };
        let mut unmapped: Vec<Finding> = Vec::new();
        for finding in self.unmapped {
            if written(&finding.0, &finding.1)
                && !unmapped.iter().any(|known| {
                    known.service == finding.0
                        && known.key == finding.1
                        && known.message == finding.2
                })
            {
                unmapped.push(place(finding));
            }
        }
        let notes: Vec<Finding> = self
            .notes
            .into_iter()
            .filter(|(service, key, _)| written(service, key))
            .map(place)
            .collect();
        let is_unmapped = |service: Option<&str>, path: &str| {
            unmapped.iter().any(|finding| {
                finding.service.as_deref() == service
                    && !finding.key.is_empty()
                    && covers(&finding.key, path)
            })
        };
        let mut mapped = places
            .project
            .iter()
            .filter(|written| !is_unmapped(None, &written.path))
            .count();
        for service in &exported {
            mapped += places
                .service_keys(service)
                .iter()
                .filter(|written| !is_unmapped(Some(service), &written.path))
                .count();
        }
        let mut sorted = unmapped;
        sorted.sort_by_key(|finding| (finding.line, finding.column));
        let mut notes = notes;
        notes.sort_by_key(|finding| (finding.line, finding.column));
        Report {
            target,
            exported,
            local,
            mapped,
            unmapped: sorted,
            notes,
        }
    }
}

/// A container port of an exported service, and the host port it is published on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Port {
    pub container: u16,
    /// The host port (of replica 1); `None`: reachable inside the network only.
    pub published: Option<u16>,
    /// The host address fleet publishes on; `None` for a process (it binds what it
    /// binds).
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VolumeSource {
    Named(String),
    /// An absolute path on this machine.
    Bind(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Volume {
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

/// A probe as the engines run it: from beside the container (Kubernetes' kubelet) or
/// inside it (Swarm), at container ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    Http {
        port: u16,
        path: String,
        expect_body: Option<String>,
    },
    Tcp {
        port: u16,
    },
    /// `exec` and `health.docker = "..."`: a command run inside the container.
    Command(CommandLine),
    /// `health.docker = true`: the image's own `HEALTHCHECK`.
    ImageOwn,
    /// `log` and `notify`: nothing an engine runs.
    None,
}

/// One exported service in the terms both engines share.
#[derive(Debug, Clone)]
pub(crate) struct Plan<'a> {
    pub spec: &'a ServiceSpec,
    pub image: String,
    /// A process service: `argv` is the whole command line (it replaces the image's
    /// entrypoint); a container's `argv` replaces the image's command only.
    pub process: bool,
    pub argv: Option<Vec<String>>,
    /// Everything the container's environment gets: `env_file`, `env`, `export.env`
    /// (in that order of precedence, lowest first), and `PORT` for a process.
    pub env: BTreeMap<String, String>,
    /// The `env_file`'s values and whether they are secret.
    pub env_file: Option<(BTreeMap<String, String>, bool)>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Volume>,
    pub check: Option<Check>,
}

impl<'a> Plan<'a> {
    /// The service asks for an init process as PID 1 (`init = true`).
    pub(crate) fn init(&self) -> bool {
        matches!(&self.spec.kind, ServiceKind::Container(container) if container.init)
    }

    /// `None` for a process service with no image to run there.
    fn new(
        spec: &'a ServiceSpec,
        export: Option<&ServiceExport>,
        findings: &mut Findings,
    ) -> Option<Plan<'a>> {
        let name = &spec.name;
        let export_image = export.and_then(|export| export.image.clone());
        let export_command = export.and_then(|export| export.command.clone());
        let mut env = spec.env.clone();
        let (image, process, argv, ports, volumes) = match &spec.kind {
            ServiceKind::Process(process) => {
                let image = export_image?;
                let command = export_command.unwrap_or_else(|| process.command.clone());
                if matches!(command, CommandLine::Shell(_))
                    && command.argv().first().map(String::as_str) == Some("/bin/sh")
                {
                    findings.note(
                        name,
                        if export.is_some_and(|export| export.command.is_some()) {
                            "export.command"
                        } else {
                            "command"
                        },
                        "runs through `/bin/sh -c`, as here: the image needs a shell",
                    );
                }
                findings.unmapped(
                    name,
                    "cwd",
                    "is a folder on this machine: the image's WORKDIR applies there",
                );
                if process.build.is_some() {
                    findings.unmapped(
                        name,
                        "build",
                        format!(
                            "runs on this machine: build `{image}` yourself and make it available to the nodes"
                        ),
                    );
                }
                let mut ports: Vec<Port> = spec
                    .ports
                    .iter()
                    .map(|port| Port {
                        container: *port,
                        published: Some(*port),
                        host_ip: None,
                    })
                    .collect();
                if let Some(first) = spec.ports.first() {
                    env.entry("PORT".to_string())
                        .or_insert_with(|| first.to_string());
                }
                if let Some(socket) = &spec.socket {
                    findings.unmapped(
                        name,
                        "socket",
                        format!(
                            "has no counterpart: nothing hands the server a listening socket (fd 3, LISTEN_FDS); it must bind 0.0.0.0:{} itself, and the engine's rolling update replaces the handover",
                            socket.port
                        ),
                    );
                    if !spec.ports.contains(&socket.port) {
                        ports.push(Port {
                            container: socket.port,
                            published: Some(socket.port),
                            host_ip: None,
                        });
                    }
                }
                (image, true, Some(command.argv()), ports, Vec::new())
            }
            ServiceKind::Container(container) => {
                let image = export_image.unwrap_or_else(|| container.image.clone());
                let argv = export_command
                    .map(|command| command.argv())
                    .or_else(|| container.command.clone());
                let ports = container
                    .ports
                    .iter()
                    .map(|mapping| Port {
                        container: mapping.container,
                        published: Some(mapping.host),
                        host_ip: Some(mapping.host_ip.clone()),
                    })
                    .collect();
                let volumes = container
                    .volumes
                    .iter()
                    .filter_map(|volume| parse_volume(volume))
                    .collect();
                if container.build.is_some() {
                    findings.note(
                        name,
                        "build",
                        format!(
                            "the engine does not build: `{image}` must exist on every node (build it there, or push it to a registry the nodes pull from and set `export.image`)"
                        ),
                    );
                }
                (image, false, argv, ports, volumes)
            }
        };
        if let Some(export) = export {
            for (key, value) in &export.env {
                env.insert(key.clone(), value.clone());
            }
        }
        let env_file = export
            .and_then(|export| export.env_file.as_ref())
            .map(|(_, values)| (values.clone(), export.is_some_and(|export| export.secret)));
        let check = spec.health.as_ref().map(|health| match &health.probe {
            Probe::Http {
                target,
                expect_body,
            } => Check::Http {
                port: container_port(&ports, target.port),
                path: target.path_and_query.clone(),
                expect_body: expect_body.clone(),
            },
            Probe::Tcp { port, .. } => Check::Tcp {
                port: container_port(&ports, *port),
            },
            Probe::Exec(command) => {
                findings.note(
                    name,
                    "health.exec",
                    "runs inside the container there, not on this machine",
                );
                Check::Command(command.clone())
            }
            Probe::Docker => match &spec.kind {
                ServiceKind::Container(container) => match &container.healthcheck {
                    Some(engine) => Check::Command(engine.test.clone()),
                    None => Check::ImageOwn,
                },
                ServiceKind::Process(_) => Check::ImageOwn,
            },
            Probe::Log(_) => {
                findings.unmapped(
                    name,
                    "health.log",
                    "has no counterpart: neither engine reads a service's output for readiness; the service counts as ready once it runs",
                );
                Check::None
            }
            Probe::Notify { watchdog } => {
                findings.unmapped(
                    name,
                    "notify",
                    "has no counterpart: nothing listens for READY=1 there; the service counts as ready once it runs",
                );
                if watchdog.is_some() {
                    findings.unmapped(name, "watchdog", "has no counterpart: nothing receives WATCHDOG=1 there");
                }
                Check::None
            }
        });
        for key in ["watch", "ignore"] {
            findings.unmapped(
                name,
                key,
                "is for redeploying on this machine: an engine redeploys when you deploy a new image or definition",
            );
        }
        if spec.replicas > 1 && ports.iter().any(|port| port.published.is_some()) {
            findings.note(
                name,
                "replicas",
                "each replica's own host port (the port plus N - 1) has no counterpart: the replicas share the published port",
            );
        }
        Some(Plan {
            spec,
            image,
            process,
            argv,
            env,
            env_file,
            ports,
            volumes,
            check,
        })
    }

    /// Whether some exported dependent waits for this service with `condition`.
    pub(crate) fn awaited_as(&self, plans: &[Plan<'_>], condition: DependencyCondition) -> bool {
        plans.iter().any(|plan| {
            plan.spec.depends_on.iter().any(|dependency| {
                dependency.service == self.spec.name && dependency.condition == condition
            })
        })
    }
}

/// The container port a probe of host port `port` reaches: the port it is published
/// from, else `port` itself (a process's own port, or a probe of a container port).
fn container_port(ports: &[Port], port: u16) -> u16 {
    ports
        .iter()
        .find(|mapping| mapping.published == Some(port))
        .map_or(port, |mapping| mapping.container)
}

/// `NAME:/path[:ro]` or `/host/path:/path[:ro]` (the manifest made host paths absolute).
fn parse_volume(text: &str) -> Option<Volume> {
    let (rest, read_only) = match text.strip_suffix(":ro") {
        Some(rest) => (rest, true),
        None => (text.strip_suffix(":rw").unwrap_or(text), false),
    };
    let (source, target) = rest.rsplit_once(':')?;
    let source = if source.starts_with('/') {
        VolumeSource::Bind(source.to_string())
    } else {
        VolumeSource::Named(source.to_string())
    };
    Some(Volume {
        source,
        target: target.to_string(),
        read_only,
    })
}

/// A duration as Go's `time.ParseDuration` (Docker) reads it: `24h`, `2m`, `2s`,
/// `250ms`, `1500us`.
pub(crate) fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        "0s".to_string()
    } else if nanos.is_multiple_of(3_600_000_000_000) {
        format!("{}h", nanos / 3_600_000_000_000)
    } else if nanos.is_multiple_of(60_000_000_000) {
        format!("{}m", nanos / 60_000_000_000)
    } else if nanos.is_multiple_of(1_000_000_000) {
        format!("{}s", nanos / 1_000_000_000)
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

/// Whole seconds, rounded up (Kubernetes counts probes and grace periods in seconds),
/// at least `floor`.
pub(crate) fn whole_seconds(duration: Duration, floor: i64) -> i64 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i64::try_from(seconds).unwrap_or(i64::MAX).max(floor)
}

/// How long a starting service may take where fleet has no bound (no
/// `start_timeout`): both engines need one, and a day is longer than any start.
pub(crate) const STARTING_BOUND: Duration = Duration::from_secs(24 * 3600);

/// Labels on every object: where it came from.
pub(crate) fn labels(project: &str, service: Option<&str>) -> Yaml {
    let mut labels = Yaml::map();
    labels.push("fleet.project", Yaml::str(project));
    if let Some(service) = service {
        labels.push("fleet.service", Yaml::str(service));
    }
    labels
}
