//! Docker Swarm: one compose file (format 3.8) for `docker stack deploy`.
//!
//! Owns the mapping of a [`Plan`] to a stack service: image, entrypoint or command,
//! environment, ports (long syntax, `mode` from [`PublishMode`]), volumes, the health
//! check the engine runs inside the container, `restart_policy`, `update_config`,
//! `stop_signal`/`stop_grace_period`, `json-file` log rotation, and the labels
//! `fleet.project`/`fleet.service` on services, containers, the network and volumes.
//! Services reach each other by service name on the stack's default network, as
//! containers do under fleet.
//!
//! `docker stack deploy` interpolates `$VAR` in the whole file, so every `$` fleet
//! means literally is written `$$`.

use super::yaml::Yaml;
use super::{
    document, go_duration, labels, Check, Document, Findings, Options, Plan, PublishMode,
    VolumeSource, STARTING_BOUND,
};
use crate::manifest::{CommandLine, Manifest, RedeployStrategy, RestartPolicy};

/// Compose file format 3.8: the newest that Docker 19.03 and later deploy.
const COMPOSE_VERSION: &str = "3.8";

/// A literal string in a file that `docker stack deploy` interpolates.
fn lit(text: &str) -> Yaml {
    Yaml::Str(text.replace('$', "$$"))
}

fn lits<'a>(items: impl IntoIterator<Item = &'a String>) -> Yaml {
    Yaml::Seq(items.into_iter().map(|item| lit(item)).collect())
}

pub(super) fn documents(
    manifest: &Manifest,
    plans: &[Plan<'_>],
    options: &Options,
    findings: &mut Findings,
) -> Result<Vec<Document>, String> {
    let project = &manifest.project.name;
    let mut file = Yaml::map();
    file.push("version", Yaml::str(COMPOSE_VERSION));
    let mut services = Yaml::map();
    let mut volume_names: Vec<String> = Vec::new();
    for plan in plans {
        services.push(&plan.spec.name, service(manifest, plan, options, findings));
        for volume in &plan.volumes {
            if let VolumeSource::Named(name) = &volume.source
                && !volume_names.contains(name)
            {
                volume_names.push(name.clone());
            }
        }
    }
    file.push("services", services);
    let mut default_network = Yaml::map();
    default_network.push("driver", Yaml::str("overlay"));
    default_network.push("labels", labels(project, None));
    file.push(
        "networks",
        Yaml::Map(vec![("default".to_string(), default_network)]),
    );
    if !volume_names.is_empty() {
        let mut volumes = Yaml::map();
        for name in &volume_names {
            let mut volume = Yaml::map();
            volume.push("labels", labels(project, None));
            volumes.push(name, volume);
        }
        file.push("volumes", volumes);
    }
    check(&file)?;
    Ok(vec![document("compose", project, &file)?])
}

fn service(
    manifest: &Manifest,
    plan: &Plan<'_>,
    options: &Options,
    findings: &mut Findings,
) -> Yaml {
    let spec = plan.spec;
    let name = &spec.name;
    let project = &manifest.project.name;
    let mut service = Yaml::map();
    service.push("image", lit(&plan.image));
    if let Some(argv) = &plan.argv {
        // A process's command is its whole command line; a container's replaces the
        // image's CMD and keeps its ENTRYPOINT, as fleet runs it.
        let key = if plan.process {
            "entrypoint"
        } else {
            "command"
        };
        service.push(key, lits(argv));
    }
    if !plan.env.is_empty() {
        let mut environment = Yaml::map();
        for (key, value) in &plan.env {
            environment.push(key, lit(value));
        }
        service.push("environment", environment);
    }
    if plan.env_file.as_ref().is_some_and(|(_, secret)| *secret) {
        findings.note(
            name,
            "export.secret",
            "Swarm's secrets are files, not variables: the env_file's values are written into `environment` in the clear",
        );
    }
    if !plan.ports.is_empty() {
        let mut ports = Vec::new();
        for port in &plan.ports {
            let mut entry = Yaml::map();
            entry.push("target", Yaml::int(port.container));
            if let Some(published) = port.published {
                entry.push("published", Yaml::int(published));
            }
            entry.push("protocol", Yaml::str("tcp"));
            if port.published.is_some() {
                let mode = match options.publish {
                    PublishMode::Ingress => "ingress",
                    PublishMode::Host => "host",
                };
                entry.push("mode", Yaml::str(mode));
            }
            ports.push(entry);
        }
        service.push("ports", Yaml::Seq(ports));
        if plan.ports.iter().any(|port| {
            port.host_ip
                .as_deref()
                .is_some_and(|ip| ip != "0.0.0.0" && ip != "::")
        }) {
            findings.note(
                name,
                "ports",
                "Swarm publishes on every address of the node; fleet publishes on 127.0.0.1 unless told otherwise",
            );
        }
        if options.publish == PublishMode::Host && spec.replicas > 1 {
            findings.note(
                name,
                "replicas",
                "with host-mode ports a node runs one task of this service: the replicas need as many nodes",
            );
        }
    }
    let mut mounts = Vec::new();
    for volume in &plan.volumes {
        let mut mount = Yaml::map();
        match &volume.source {
            VolumeSource::Named(source) => {
                mount.push("type", Yaml::str("volume"));
                mount.push("source", lit(source));
                findings.note(
                    name,
                    "volumes",
                    format!("the named volume `{source}` is local to each node: a task moved to another node gets another, empty one"),
                );
            }
            VolumeSource::Bind(source) => {
                mount.push("type", Yaml::str("bind"));
                mount.push("source", lit(source));
                findings.unmapped(
                    name,
                    "volumes",
                    format!("the bind mount `{source}` is a folder of this machine: it must exist on every node the task may run on"),
                );
            }
        }
        mount.push("target", lit(&volume.target));
        if volume.read_only {
            mount.push("read_only", Yaml::Bool(true));
        }
        mounts.push(mount);
    }
    if !mounts.is_empty() {
        service.push("volumes", Yaml::Seq(mounts));
    }
    if let Some(healthcheck) = healthcheck(plan, findings) {
        service.push("healthcheck", healthcheck);
    }
    if plan.init() {
        service.push("init", Yaml::Bool(true));
    }
    service.push("stop_signal", Yaml::str(spec.stop_signal.name));
    service.push(
        "stop_grace_period",
        Yaml::str(go_duration(spec.stop_timeout)),
    );
    service.push("labels", labels(project, Some(name)));
    let mut logging = Yaml::map();
    logging.push("driver", Yaml::str("json-file"));
    let mut log_options = Yaml::map();
    log_options.push(
        "max-size",
        Yaml::str(manifest.project.log_max_size.to_string()),
    );
    // `log_keep` counts the rotated files; `max-file` counts the live one too.
    log_options.push(
        "max-file",
        Yaml::str((manifest.project.log_keep + 1).to_string()),
    );
    logging.push("options", log_options);
    service.push("logging", logging);

    let mut deploy = Yaml::map();
    if options.publish == PublishMode::Host {
        // A service's virtual IP is IPVS too: without it, its name resolves to the
        // tasks' own addresses.
        deploy.push("endpoint_mode", Yaml::str("dnsrr"));
    }
    deploy.push("replicas", Yaml::int(spec.replicas));
    deploy.push("labels", labels(project, Some(name)));
    deploy.push("restart_policy", restart_policy(plan, findings));
    let mut update = Yaml::map();
    // fleet rolls one replica at a time and stops at the first that fails.
    update.push("parallelism", Yaml::int(1));
    update.push(
        "order",
        Yaml::str(match spec.redeploy {
            RedeployStrategy::StartFirst => "start-first",
            RedeployStrategy::StopFirst => "stop-first",
        }),
    );
    update.push("failure_action", Yaml::str("pause"));
    deploy.push("update_config", update);
    service.push("deploy", deploy);

    if !spec.depends_on.is_empty() {
        findings.unmapped(
            name,
            "depends_on",
            "has no counterpart: Swarm starts a stack's services in no order and waits for none; the service must retry until what it needs answers",
        );
    }
    service
}

fn restart_policy(plan: &Plan<'_>, findings: &mut Findings) -> Yaml {
    let spec = plan.spec;
    let mut policy = Yaml::map();
    // Swarm's `max_attempts: 0` means no limit; fleet's `max_restarts = 0` means none.
    let condition = match spec.restart {
        _ if spec.max_restarts == 0 => "none",
        RestartPolicy::Always => "any",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "none",
    };
    policy.push("condition", Yaml::str(condition));
    if condition != "none" {
        policy.push("delay", Yaml::str(go_duration(spec.backoff.initial)));
        policy.push("max_attempts", Yaml::int(spec.max_restarts));
        policy.push("window", Yaml::str(go_duration(spec.restart_window)));
        findings.unmapped(
            &spec.name,
            "backoff.max",
            "has no counterpart: Swarm waits `delay` (backoff.initial) before every restart, without doubling",
        );
    }
    policy
}

/// The engine's health check: run inside the container, so a probe fleet makes from
/// this machine becomes a command that makes it from inside.
fn healthcheck(plan: &Plan<'_>, findings: &mut Findings) -> Option<Yaml> {
    let spec = plan.spec;
    let name = &spec.name;
    let health = spec.health.as_ref()?;
    let test: Vec<String> = match plan.check.as_ref()? {
        Check::Http {
            port,
            path,
            expect_body,
        } => {
            let url = format!("http://127.0.0.1:{port}{path}");
            findings.note(
                name,
                "health.http",
                "Swarm runs health checks inside the container: this one runs `wget`, which the image must have",
            );
            match expect_body {
                None => ["CMD", "wget", "-q", "-O", "/dev/null", &url]
                    .map(String::from)
                    .to_vec(),
                Some(body) => vec![
                    "CMD-SHELL".to_string(),
                    format!(
                        "wget -q -O - {} | grep -qF -- {}",
                        shell_quote(&url),
                        shell_quote(body)
                    ),
                ],
            }
        }
        Check::Tcp { port } => {
            findings.note(
                name,
                "health.tcp",
                "Swarm runs health checks inside the container: this one runs `nc -z`, which the image must have",
            );
            ["CMD", "nc", "-z", "127.0.0.1", &port.to_string()]
                .map(String::from)
                .to_vec()
        }
        Check::Command(CommandLine::Shell(script)) => vec!["CMD-SHELL".to_string(), script.clone()],
        Check::Command(CommandLine::Argv(argv)) => std::iter::once("CMD".to_string())
            .chain(argv.iter().cloned())
            .collect(),
        // The image's HEALTHCHECK applies when the file says nothing.
        Check::ImageOwn => return None,
        Check::None => return None,
    };
    let mut check = Yaml::map();
    check.push("test", lits(&test));
    check.push("interval", Yaml::str(go_duration(health.interval)));
    check.push("timeout", Yaml::str(go_duration(health.timeout)));
    check.push("retries", Yaml::int(health.retries));
    // Docker ignores failures until the first pass within `start_period`: fleet's
    // starting phase, bounded by `start_timeout`.
    check.push(
        "start_period",
        Yaml::str(go_duration(spec.start_timeout.unwrap_or(STARTING_BOUND))),
    );
    if !health.start_period.is_zero() {
        findings.unmapped(
            name,
            "health.start_period",
            "has no counterpart: Docker ignores failures only until the first pass, not for a time after the start",
        );
    }
    if !spec.restart_on_unhealthy {
        findings.unmapped(
            name,
            "restart_on_unhealthy",
            "has no counterpart: Swarm always replaces a task whose health check fails",
        );
    }
    Some(check)
}

/// `text` in single quotes for `/bin/sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// What `docker stack deploy` would refuse, checked before printing: every service
/// has an image, every named volume it mounts is declared, every published port is a
/// real port.
fn check(file: &Yaml) -> Result<(), String> {
    let Some(Yaml::Map(services)) = file.get("services") else {
        return Err("the compose file has no services".to_string());
    };
    let declared: Vec<&str> = match file.get("volumes") {
        Some(Yaml::Map(volumes)) => volumes.iter().map(|(name, _)| name.as_str()).collect(),
        _ => Vec::new(),
    };
    for (name, service) in services {
        if service
            .get("image")
            .and_then(Yaml::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("service `{name}` has no image"));
        }
        if let Some(Yaml::Seq(mounts)) = service.get("volumes") {
            for mount in mounts {
                if mount.get("type").and_then(Yaml::as_str) == Some("volume")
                    && let Some(source) = mount.get("source").and_then(Yaml::as_str)
                    && !declared.contains(&source.replace("$$", "$").as_str())
                    && !declared.contains(&source)
                {
                    return Err(format!(
                        "service `{name}` mounts the undeclared volume `{source}`"
                    ));
                }
            }
        }
        if let Some(Yaml::Seq(ports)) = service.get("ports") {
            for port in ports {
                for key in ["target", "published"] {
                    if let Some(Yaml::Int(number)) = port.get(key)
                        && !(1..=65535).contains(number)
                    {
                        return Err(format!("service `{name}` has the port {number}"));
                    }
                }
            }
        }
    }
    Ok(())
}
