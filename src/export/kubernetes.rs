//! Kubernetes: a Deployment (or a Job for a one-shot) per service, a Service for every
//! service with a port (so services reach each other by name, as under fleet), a
//! ConfigMap or Secret per `env_file`, a PersistentVolumeClaim per named volume, and
//! what waiting for a Job needs (a ServiceAccount allowed to read Jobs).
//!
//! Owns the mapping of a [`Plan`] to those objects. The three phases fleet keeps apart
//! become the three probes Kubernetes has: starting (`startupProbe`, bounded by
//! `start_timeout`), ready (`readinessProbe`, which also decides what the Service
//! routes to) and alive (`livenessProbe`, only with `restart_on_unhealthy`).
//! Dependencies become init containers that wait for the dependency's Service (or Job)
//! when the pod starts: that is the only order Kubernetes enforces, and it is enforced
//! once per pod, not again when the dependency restarts.
//!
//! Kubernetes expands `$(VAR)` in `command`, `args` and `env` values and reads `$$` as
//! `$`, so every `$` fleet means literally is written `$$` there.

use std::collections::BTreeMap;
use std::time::Duration;

use super::yaml::Yaml;
use super::{
    document, whole_seconds, Check, Document, Findings, Options, Plan, VolumeSource, STARTING_BOUND,
};
use crate::manifest::{
    CommandLine, DependencyCondition, Manifest, RedeployStrategy, RestartPolicy,
};

/// The image of the init containers that wait for a Service: `nc` and `wget` in a few
/// MB, from the registry every cluster reaches.
const WAIT_IMAGE: &str = "busybox:1.37";
/// The image of the init containers that wait for a Job to complete: the Kubernetes
/// project's own kubectl image.
const KUBECTL_IMAGE: &str = "registry.k8s.io/kubectl:v1.33.0";
/// The size of a PersistentVolumeClaim made for a named volume: fleet's volumes have
/// none, a claim must have one.
const CLAIM_SIZE: &str = "1Gi";
/// The longest name or label value Kubernetes takes.
const MAX_NAME: usize = 63;

/// A fleet name as a Kubernetes name (DNS-1035 label, which suits Services too):
/// lowercase letters, digits and `-`, starting with a letter, at most 63 characters.
pub(crate) fn k8s_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "s-");
    }
    out.truncate(MAX_NAME);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// A label value: letters, digits, `-`, `_`, `.`, starting and ending alphanumeric.
fn label_value(value: &str) -> String {
    let mut out: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(MAX_NAME);
    out.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn labels(project: &str, service: Option<&str>) -> Yaml {
    let mut labels = Yaml::map();
    labels.push("fleet.project", Yaml::str(label_value(project)));
    if let Some(service) = service {
        labels.push("fleet.service", Yaml::str(label_value(service)));
    }
    labels
}

/// A literal string where Kubernetes expands `$(VAR)`.
fn lit(text: &str) -> Yaml {
    Yaml::Str(text.replace('$', "$$"))
}

fn metadata(name: &str, namespace: Option<&str>, labels: Yaml) -> Yaml {
    let mut metadata = Yaml::map();
    metadata.push("name", Yaml::str(name));
    if let Some(namespace) = namespace {
        metadata.push("namespace", Yaml::str(namespace));
    }
    metadata.push("labels", labels);
    metadata
}

fn object(api: &str, kind: &str, metadata: Yaml) -> Yaml {
    let mut object = Yaml::map();
    object.push("apiVersion", Yaml::str(api));
    object.push("kind", Yaml::str(kind));
    object.push("metadata", metadata);
    object
}

/// Whether the plan runs as a Job: a one-shot (`restart = "never"`), or a service a
/// dependent waits on as `completed` that is restarted only on failure.
fn is_job(plan: &Plan<'_>, plans: &[Plan<'_>]) -> bool {
    match plan.spec.restart {
        RestartPolicy::Never => true,
        RestartPolicy::OnFailure => plan.awaited_as(plans, DependencyCondition::Completed),
        RestartPolicy::Always => false,
    }
}

pub(super) fn documents(
    manifest: &Manifest,
    plans: &[Plan<'_>],
    options: &Options,
    findings: &mut Findings,
) -> Result<Vec<Document>, String> {
    let project = &manifest.project.name;
    let namespace = options.namespace.as_str();
    let waiter = format!("{}-job-waiter", k8s_name(project));
    let waiter = k8s_name(&waiter);
    let mut objects: Vec<Yaml> = Vec::new();
    let mut claims: Vec<(String, String)> = Vec::new();
    let mut needs_waiter = false;
    for key in ["log_max_size", "log_keep"] {
        findings.project_unmapped(
            key,
            "has no counterpart: container log rotation is the kubelet's setting for the whole node (containerLogMaxSize, containerLogMaxFiles)",
        );
    }
    for plan in plans {
        let name = &plan.spec.name;
        let k8s = k8s_name(name);
        if k8s != *name {
            findings.unmapped(
                name,
                "",
                format!("is named `{k8s}` there (Kubernetes names are lowercase letters, digits and `-`): other services reach it by that name"),
            );
        }
        if let Some((values, secret)) = &plan.env_file {
            objects.push(env_object(project, name, namespace, values, *secret));
        }
        for volume in &plan.volumes {
            if let VolumeSource::Named(volume_name) = &volume.source
                && !claims.iter().any(|(claim, _)| claim == volume_name)
            {
                claims.push((volume_name.clone(), name.clone()));
            }
        }
        let (workload, waits_for_job) = workload(manifest, plan, plans, options, &waiter, findings);
        needs_waiter |= waits_for_job;
        objects.push(workload);
        if !plan.ports.is_empty() {
            objects.push(service_object(project, plan, namespace));
        }
    }
    for (claim, first_user) in &claims {
        let mut spec = Yaml::map();
        spec.push("accessModes", Yaml::strs(["ReadWriteOnce"]));
        let mut requests = Yaml::map();
        requests.push("storage", Yaml::str(CLAIM_SIZE));
        let mut resources = Yaml::map();
        resources.push("requests", requests);
        spec.push("resources", resources);
        let mut claim_object = object(
            "v1",
            "PersistentVolumeClaim",
            metadata(
                &k8s_name(claim),
                Some(namespace),
                labels(project, Some(first_user)),
            ),
        );
        claim_object.push("spec", spec);
        objects.push(claim_object);
    }
    if needs_waiter {
        objects.extend(waiter_objects(project, namespace, &waiter));
    }
    let mut documents = Vec::new();
    for object in &objects {
        check(object)?;
        let kind = object
            .get("kind")
            .and_then(Yaml::as_str)
            .unwrap_or_default();
        let name = object
            .get("metadata")
            .and_then(|metadata| metadata.get("name"))
            .and_then(Yaml::as_str)
            .unwrap_or_default();
        documents.push(document(kind, name, object)?);
    }
    Ok(documents)
}

/// The ConfigMap (or Secret) holding an `env_file`'s values.
fn env_object(
    project: &str,
    service: &str,
    namespace: &str,
    values: &BTreeMap<String, String>,
    secret: bool,
) -> Yaml {
    let name = env_object_name(service);
    let kind = if secret { "Secret" } else { "ConfigMap" };
    let mut object = object(
        "v1",
        kind,
        metadata(&name, Some(namespace), labels(project, Some(service))),
    );
    if secret {
        object.push("type", Yaml::str("Opaque"));
    }
    let mut data = Yaml::map();
    for (key, value) in values {
        // Read as they are: only `env` and `command` expand `$(VAR)`.
        data.push(key, Yaml::str(value));
    }
    object.push(if secret { "stringData" } else { "data" }, data);
    object
}

fn env_object_name(service: &str) -> String {
    k8s_name(&format!("{}-env", k8s_name(service)))
}

/// The Deployment or Job; whether its pod waits for a Job (and so needs the waiter's
/// service account).
fn workload(
    manifest: &Manifest,
    plan: &Plan<'_>,
    plans: &[Plan<'_>],
    options: &Options,
    waiter: &str,
    findings: &mut Findings,
) -> (Yaml, bool) {
    let spec = plan.spec;
    let name = &spec.name;
    let project = &manifest.project.name;
    let k8s = k8s_name(name);
    let job = is_job(plan, plans);
    let (init_containers, waits_for_job) = init_containers(plan, plans, findings);
    let mut pod = Yaml::map();
    if waits_for_job {
        pod.push("serviceAccountName", Yaml::str(waiter));
    }
    if job {
        pod.push(
            "restartPolicy",
            Yaml::str(if spec.restart == RestartPolicy::Never {
                "Never"
            } else {
                "OnFailure"
            }),
        );
    }
    if plan.init() {
        // Kubernetes has no init flag; with a shared process namespace the pod's pause
        // process is PID 1 and reaps zombies, and the program, no longer PID 1, gets
        // the default action of a signal it does not handle: what `init` is for.
        pod.push("shareProcessNamespace", Yaml::Bool(true));
        findings.note(
            name,
            "init",
            "written as shareProcessNamespace: the pause process is PID 1, and the pod's containers see each other's processes",
        );
    }
    pod.push(
        "terminationGracePeriodSeconds",
        Yaml::Int(whole_seconds(spec.stop_timeout, 0)),
    );
    if !init_containers.is_empty() {
        pod.push("initContainers", Yaml::Seq(init_containers));
    }
    pod.push("containers", Yaml::Seq(vec![container(plan, findings)]));
    let volumes = pod_volumes(plan, findings);
    if !volumes.is_empty() {
        pod.push("volumes", Yaml::Seq(volumes));
    }
    if spec.stop_signal.name != "SIGTERM" {
        findings.unmapped(
            name,
            "stop_signal",
            format!("has no counterpart: Kubernetes stops a container with the image's STOPSIGNAL, else SIGTERM; put `STOPSIGNAL {}` in the image", spec.stop_signal.name),
        );
    }
    let mut template = Yaml::map();
    let mut template_metadata = Yaml::map();
    template_metadata.push("labels", labels(project, Some(name)));
    template.push("metadata", template_metadata);
    template.push("spec", pod);

    let mut workload_spec = Yaml::map();
    let (api, kind) = if job {
        workload_spec.push("completions", Yaml::int(spec.replicas));
        workload_spec.push("parallelism", Yaml::int(spec.replicas));
        let limit = if spec.restart == RestartPolicy::Never {
            0
        } else {
            spec.max_restarts
        };
        workload_spec.push("backoffLimit", Yaml::int(limit));
        for key in ["restart_window", "backoff"] {
            findings.unmapped(
                name,
                key,
                "has no counterpart: a Job's failed pods are retried with the kubelet's own backoff (10s doubling to 6m), counted by `backoffLimit` (max_restarts) over the Job's whole life",
            );
        }
        findings.unmapped(
            name,
            "redeploy",
            "has no counterpart: a Job runs to completion once; a new definition is a new Job",
        );
        ("batch/v1", "Job")
    } else {
        workload_spec.push("replicas", Yaml::int(spec.replicas));
        let mut selector = Yaml::map();
        selector.push("matchLabels", labels(project, Some(name)));
        workload_spec.push("selector", selector);
        let mut rolling = Yaml::map();
        let (surge, unavailable) = match spec.redeploy {
            RedeployStrategy::StartFirst => (1, 0),
            RedeployStrategy::StopFirst => (0, 1),
        };
        rolling.push("maxSurge", Yaml::int(surge));
        rolling.push("maxUnavailable", Yaml::int(unavailable));
        let mut strategy = Yaml::map();
        strategy.push("type", Yaml::str("RollingUpdate"));
        strategy.push("rollingUpdate", rolling);
        workload_spec.push("strategy", strategy);
        if spec.restart == RestartPolicy::OnFailure {
            findings.unmapped(
                name,
                "restart",
                "\"on-failure\" has no counterpart in a Deployment: its container is restarted after any exit, also with code 0",
            );
        }
        for key in ["max_restarts", "restart_window", "backoff"] {
            findings.unmapped(
                name,
                key,
                "has no counterpart: the kubelet restarts a Deployment's container with its own backoff (10s doubling to 5m) and never gives up",
            );
        }
        ("apps/v1", "Deployment")
    };
    workload_spec.push("template", template);
    let mut object = object(
        api,
        kind,
        metadata(&k8s, Some(&options.namespace), labels(project, Some(name))),
    );
    object.push("spec", workload_spec);
    (object, waits_for_job)
}

fn container(plan: &Plan<'_>, findings: &mut Findings) -> Yaml {
    let spec = plan.spec;
    let name = &spec.name;
    let mut container = Yaml::map();
    container.push("name", Yaml::str(k8s_name(name)));
    container.push("image", Yaml::str(&plan.image));
    if let Some(argv) = &plan.argv {
        // A process's command line replaces the image's ENTRYPOINT; a container's
        // `command` replaces its CMD only, as fleet runs it.
        let key = if plan.process { "command" } else { "args" };
        container.push(key, Yaml::Seq(argv.iter().map(|arg| lit(arg)).collect()));
    }
    let from_file = plan.env_file.as_ref().map(|(values, _)| values);
    let mut env = Vec::new();
    for (key, value) in &plan.env {
        // A value the env_file gives comes from its ConfigMap; `env` wins over it.
        if from_file.and_then(|values| values.get(key)) == Some(value) {
            continue;
        }
        let mut entry = Yaml::map();
        entry.push("name", Yaml::str(key));
        entry.push("value", lit(value));
        env.push(entry);
    }
    if !env.is_empty() {
        container.push("env", Yaml::Seq(env));
    }
    if let Some((_, secret)) = &plan.env_file {
        let mut reference = Yaml::map();
        reference.push("name", Yaml::str(env_object_name(name)));
        let mut source = Yaml::map();
        source.push(
            if *secret { "secretRef" } else { "configMapRef" },
            reference,
        );
        container.push("envFrom", Yaml::Seq(vec![source]));
    }
    if !plan.ports.is_empty() {
        let mut ports = Vec::new();
        for port in &plan.ports {
            let mut entry = Yaml::map();
            entry.push("containerPort", Yaml::int(port.container));
            if let Some(published) = port.published {
                // Published on the node that runs the pod, as fleet publishes on this
                // machine.
                entry.push("hostPort", Yaml::int(published));
                if let Some(ip) = &port.host_ip
                    && ip != "0.0.0.0"
                    && ip != "::"
                {
                    entry.push("hostIP", Yaml::str(ip));
                }
            }
            entry.push("protocol", Yaml::str("TCP"));
            ports.push(entry);
        }
        container.push("ports", Yaml::Seq(ports));
    }
    let mounts: Vec<Yaml> = plan
        .volumes
        .iter()
        .enumerate()
        .map(|(index, volume)| {
            let mut mount = Yaml::map();
            mount.push("name", Yaml::str(format!("volume-{index}")));
            mount.push("mountPath", Yaml::str(&volume.target));
            if volume.read_only {
                mount.push("readOnly", Yaml::Bool(true));
            }
            mount
        })
        .collect();
    if !mounts.is_empty() {
        container.push("volumeMounts", Yaml::Seq(mounts));
    }
    probes(plan, &mut container, findings);
    container
}

fn pod_volumes(plan: &Plan<'_>, findings: &mut Findings) -> Vec<Yaml> {
    let name = &plan.spec.name;
    plan.volumes
        .iter()
        .enumerate()
        .map(|(index, volume)| {
            let mut entry = Yaml::map();
            entry.push("name", Yaml::str(format!("volume-{index}")));
            match &volume.source {
                VolumeSource::Named(claim) => {
                    let mut source = Yaml::map();
                    source.push("claimName", Yaml::str(k8s_name(claim)));
                    entry.push("persistentVolumeClaim", source);
                    findings.note(
                        name,
                        "volumes",
                        format!("the named volume `{claim}` is a PersistentVolumeClaim of {CLAIM_SIZE} (ReadWriteOnce): set the size it needs"),
                    );
                }
                VolumeSource::Bind(path) => {
                    let mut source = Yaml::map();
                    source.push("path", Yaml::str(path));
                    entry.push("hostPath", source);
                    findings.unmapped(
                        name,
                        "volumes",
                        format!("mounts `{path}`, a folder of this machine: as a hostPath it is whatever that path holds on the node the pod lands on"),
                    );
                }
            }
            entry
        })
        .collect()
}

/// The probe handler; `None` when the engine has nothing to run.
fn handler(plan: &Plan<'_>, findings: &mut Findings) -> Option<Yaml> {
    let name = &plan.spec.name;
    let mut handler = Yaml::map();
    match plan.check.as_ref()? {
        Check::Http {
            port,
            path,
            expect_body,
        } => {
            let mut get = Yaml::map();
            get.push("path", Yaml::str(path));
            get.push("port", Yaml::int(*port));
            handler.push("httpGet", get);
            if expect_body.is_some() {
                findings.unmapped(
                    name,
                    "health.expect_body",
                    "has no counterpart: an httpGet probe passes on any status from 200 to 399 and reads no body",
                );
            }
        }
        Check::Tcp { port } => {
            let mut socket = Yaml::map();
            socket.push("port", Yaml::int(*port));
            handler.push("tcpSocket", socket);
        }
        Check::Command(command) => {
            let argv = match command {
                CommandLine::Shell(script) => {
                    vec!["/bin/sh".to_string(), "-c".to_string(), script.clone()]
                }
                CommandLine::Argv(argv) => argv.clone(),
            };
            let mut exec = Yaml::map();
            exec.push("command", Yaml::strs(argv));
            handler.push("exec", exec);
        }
        Check::ImageOwn => {
            findings.unmapped(
                name,
                "health.docker",
                "has no counterpart: Kubernetes ignores the image's HEALTHCHECK; the pod is ready once it runs",
            );
            return None;
        }
        Check::None => return None,
    }
    Some(handler)
}

fn probes(plan: &Plan<'_>, container: &mut Yaml, findings: &mut Findings) {
    let spec = plan.spec;
    let Some(health) = &spec.health else {
        return;
    };
    let Some(handler) = handler(plan, findings) else {
        return;
    };
    for (key, duration) in [
        ("health.interval", health.interval),
        ("health.timeout", health.timeout),
    ] {
        if duration.subsec_nanos() > 0 || duration < Duration::from_secs(1) {
            findings.note(
                &spec.name,
                key,
                "Kubernetes counts probe times in whole seconds: rounded up",
            );
        }
    }
    let period = whole_seconds(health.interval, 1);
    let timeout = whole_seconds(health.timeout, 1);
    let with = |extra: &[(&str, i64)]| {
        let mut probe = handler.clone();
        for (key, value) in extra {
            probe.push(key, Yaml::Int(*value));
        }
        probe
    };
    // Starting: probed every second until the first pass, for as long as
    // `start_timeout` allows (fleet probes faster; the kubelet's floor is a second).
    let bound = whole_seconds(spec.start_timeout.unwrap_or(STARTING_BOUND), 1);
    container.push(
        "startupProbe",
        with(&[
            ("periodSeconds", 1),
            ("timeoutSeconds", timeout),
            ("failureThreshold", bound),
        ]),
    );
    let retries = i64::from(
        spec.health
            .as_ref()
            .map_or(3, |health| health.retries)
            .max(1),
    );
    container.push(
        "readinessProbe",
        with(&[
            ("periodSeconds", period),
            ("timeoutSeconds", timeout),
            ("failureThreshold", retries),
        ]),
    );
    if spec.restart_on_unhealthy {
        container.push(
            "livenessProbe",
            with(&[
                ("initialDelaySeconds", whole_seconds(health.start_period, 0)),
                ("periodSeconds", period),
                ("timeoutSeconds", timeout),
                ("failureThreshold", retries),
            ]),
        );
    }
}

/// Init containers that hold the pod until what it depends on is there; whether one
/// waits for a Job.
fn init_containers(
    plan: &Plan<'_>,
    plans: &[Plan<'_>],
    findings: &mut Findings,
) -> (Vec<Yaml>, bool) {
    let name = &plan.spec.name;
    let mut containers = Vec::new();
    let mut waits_for_job = false;
    for dependency in &plan.spec.depends_on {
        let Some(target) = plans
            .iter()
            .find(|other| other.spec.name == dependency.service)
        else {
            continue; // reported by `export`: not exported
        };
        let target_name = k8s_name(&target.spec.name);
        if dependency.restart {
            findings.unmapped(
                name,
                "depends_on",
                format!("`restart = true` on `{}` has no counterpart: nothing restarts a pod when what it depends on restarts", dependency.service),
            );
        }
        let mut init = Yaml::map();
        init.push(
            "name",
            Yaml::str(k8s_name(&format!("wait-for-{target_name}"))),
        );
        if is_job(target, plans) {
            if dependency.condition != DependencyCondition::Completed {
                findings.unmapped(
                    name,
                    "depends_on",
                    format!("waits for `{}` to be {}, which runs as a Job there: only its completion can be waited for", dependency.service, condition_name(dependency.condition)),
                );
                continue;
            }
            init.push("image", Yaml::str(KUBECTL_IMAGE));
            init.push(
                "command",
                Yaml::strs([
                    "kubectl".to_string(),
                    "wait".to_string(),
                    "--for=condition=complete".to_string(),
                    format!("job/{target_name}"),
                    "--timeout=-1s".to_string(),
                ]),
            );
            waits_for_job = true;
            findings.note(
                name,
                "depends_on",
                format!("waits for the Job `{target_name}` with `kubectl wait` in an init container (image {KUBECTL_IMAGE}, a ServiceAccount allowed to read Jobs)"),
            );
        } else {
            if dependency.condition == DependencyCondition::Completed {
                findings.unmapped(
                    name,
                    "depends_on",
                    format!("waits for `{}` to complete, but it is restarted after it exits there (restart = \"always\"): nothing to wait for", dependency.service),
                );
                continue;
            }
            let Some(port) = target.ports.first().map(|port| port.container) else {
                findings.unmapped(
                    name,
                    "depends_on",
                    format!(
                        "cannot wait for `{}`: it has no port, so no Service to wait for",
                        dependency.service
                    ),
                );
                continue;
            };
            let wait = match (&target.check, dependency.condition) {
                (Some(Check::Http { port, path, .. }), DependencyCondition::Healthy) => format!(
                    "until wget -q -T 1 -O /dev/null http://{target_name}:{port}{path}; do sleep 1; done"
                ),
                _ => format!("until nc -z -w 1 {target_name} {port}; do sleep 1; done"),
            };
            init.push("image", Yaml::str(WAIT_IMAGE));
            init.push(
                "command",
                Yaml::strs(["sh".to_string(), "-c".to_string(), wait]),
            );
            findings.note(
                name,
                "depends_on",
                format!("waits in an init container, when the pod starts, until the Service `{target_name}` answers (a Service routes only to ready pods: one ready replica is enough there)"),
            );
        }
        containers.push(init);
    }
    (containers, waits_for_job)
}

fn condition_name(condition: DependencyCondition) -> &'static str {
    match condition {
        DependencyCondition::Started => "started",
        DependencyCondition::Healthy => "healthy",
        DependencyCondition::Completed => "completed",
    }
}

fn service_object(project: &str, plan: &Plan<'_>, namespace: &str) -> Yaml {
    let name = &plan.spec.name;
    let mut ports = Vec::new();
    let mut seen = Vec::new();
    for port in &plan.ports {
        if seen.contains(&port.container) {
            continue;
        }
        seen.push(port.container);
        let mut entry = Yaml::map();
        entry.push("name", Yaml::str(format!("tcp-{}", port.container)));
        entry.push("port", Yaml::int(port.container));
        entry.push("targetPort", Yaml::int(port.container));
        entry.push("protocol", Yaml::str("TCP"));
        ports.push(entry);
    }
    let mut spec = Yaml::map();
    spec.push("selector", labels(project, Some(name)));
    spec.push("ports", Yaml::Seq(ports));
    let mut service = object(
        "v1",
        "Service",
        metadata(
            &k8s_name(name),
            Some(namespace),
            labels(project, Some(name)),
        ),
    );
    service.push("spec", spec);
    service
}

/// The ServiceAccount an init container waits for Jobs as, with a Role that may read
/// Jobs and nothing else.
fn waiter_objects(project: &str, namespace: &str, waiter: &str) -> Vec<Yaml> {
    let account = object(
        "v1",
        "ServiceAccount",
        metadata(waiter, Some(namespace), labels(project, None)),
    );
    let mut rule = Yaml::map();
    rule.push("apiGroups", Yaml::strs(["batch"]));
    rule.push("resources", Yaml::strs(["jobs"]));
    rule.push("verbs", Yaml::strs(["get", "list", "watch"]));
    let mut role = object(
        "rbac.authorization.k8s.io/v1",
        "Role",
        metadata(waiter, Some(namespace), labels(project, None)),
    );
    role.push("rules", Yaml::Seq(vec![rule]));
    let mut subject = Yaml::map();
    subject.push("kind", Yaml::str("ServiceAccount"));
    subject.push("name", Yaml::str(waiter));
    subject.push("namespace", Yaml::str(namespace));
    let mut role_ref = Yaml::map();
    role_ref.push("apiGroup", Yaml::str("rbac.authorization.k8s.io"));
    role_ref.push("kind", Yaml::str("Role"));
    role_ref.push("name", Yaml::str(waiter));
    let mut binding = object(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        metadata(waiter, Some(namespace), labels(project, None)),
    );
    binding.push("subjects", Yaml::Seq(vec![subject]));
    binding.push("roleRef", role_ref);
    vec![account, role, binding]
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// What the API server would refuse, checked before printing: names, the namespace,
/// label values, ports, and a Deployment whose selector does not match its pods.
fn check(object: &Yaml) -> Result<(), String> {
    let kind = object
        .get("kind")
        .and_then(Yaml::as_str)
        .unwrap_or("object");
    let metadata = object
        .get("metadata")
        .ok_or_else(|| format!("a {kind} has no metadata"))?;
    let name = metadata
        .get("name")
        .and_then(Yaml::as_str)
        .unwrap_or_default();
    if !is_dns_label(name) {
        return Err(format!(
            "the {kind} name `{name}` is not a valid Kubernetes name"
        ));
    }
    if let Some(namespace) = metadata.get("namespace").and_then(Yaml::as_str)
        && !is_dns_label(namespace)
    {
        return Err(format!("the namespace `{namespace}` is not a valid Kubernetes name (lowercase letters, digits and `-`)"));
    }
    if let Some(Yaml::Map(labels)) = metadata.get("labels") {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or_default();
            if label_value(value) != value {
                return Err(format!(
                    "the {kind} `{name}` has the invalid label {key}={value}"
                ));
            }
        }
    }
    if kind == "Deployment" {
        let spec = object.get("spec");
        let selector = spec
            .and_then(|spec| spec.get("selector"))
            .and_then(|selector| selector.get("matchLabels"));
        let pod_labels = spec
            .and_then(|spec| spec.get("template"))
            .and_then(|template| template.get("metadata"))
            .and_then(|metadata| metadata.get("labels"));
        if let (Some(Yaml::Map(selector)), Some(pod_labels)) = (selector, pod_labels) {
            for (key, value) in selector {
                if pod_labels.get(key) != Some(value) {
                    return Err(format!(
                        "the Deployment `{name}` selects pods its template does not label"
                    ));
                }
            }
        }
    }
    check_ports(object, name)
}

fn check_ports(value: &Yaml, name: &str) -> Result<(), String> {
    match value {
        Yaml::Map(entries) => {
            for (key, inner) in entries {
                if matches!(
                    key.as_str(),
                    "containerPort" | "hostPort" | "port" | "targetPort"
                ) && let Yaml::Int(number) = inner
                    && !(1..=65535).contains(number)
                {
                    return Err(format!("`{name}` has the port {number}"));
                }
                check_ports(inner, name)?;
            }
            Ok(())
        }
        Yaml::Seq(items) => items.iter().try_for_each(|item| check_ports(item, name)),
        _ => Ok(()),
    }
}
