//! Writing manifests: TOML values as fleet.toml spells them, and a whole validated
//! [`Manifest`] back as a complete `fleet.toml` (`fleet config`).
//!
//! Owns the spelling of values (quoting, `$` escaped as `$$` so that interpolation
//! gives the text back, durations in manifest units) and the order of keys in a
//! written service. It reads resolved types only; it never validates: what it writes
//! from a [`Manifest`] parses back to the same manifest (a test checks that), and
//! `fleet import` validates what it writes itself.

use std::fmt::Write as _;
use std::time::Duration;

use super::{
    CommandLine, DependencyCondition, HealthSpec, Manifest, PortMapping, Probe, RedeployStrategy,
    RestartPolicy, ServiceExport, ServiceKind, ServiceSpec,
};

/// A TOML value to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TomlValue {
    /// Text meant literally: a `$` in it is written `$$`.
    String(String),
    /// Text written as it is, for interpolation when the manifest loads (`${VAR:-}`).
    Template(String),
    Integer(i64),
    Boolean(bool),
    Array(Vec<TomlValue>),
    /// An inline table, keys in this order.
    Table(Vec<(String, TomlValue)>),
}

impl TomlValue {
    pub fn string(text: impl Into<String>) -> TomlValue {
        TomlValue::String(text.into())
    }

    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> TomlValue {
        TomlValue::Array(items.into_iter().map(TomlValue::string).collect())
    }

    pub fn duration(duration: Duration) -> TomlValue {
        TomlValue::String(format_duration(duration))
    }

    /// The value as TOML text, on one line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            TomlValue::String(text) => out.push_str(&quote(&text.replace('$', "$$"))),
            TomlValue::Template(text) => out.push_str(&quote(text)),
            TomlValue::Integer(number) => {
                let _ = write!(out, "{number}");
            }
            TomlValue::Boolean(flag) => {
                let _ = write!(out, "{flag}");
            }
            TomlValue::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            TomlValue::Table(entries) if entries.is_empty() => out.push_str("{}"),
            TomlValue::Table(entries) => {
                out.push_str("{ ");
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&toml_key(key));
                    out.push_str(" = ");
                    value.write(out);
                }
                out.push_str(" }");
            }
        }
    }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key, bare when TOML allows it, else quoted.
pub fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        quote(key)
    }
}

/// `[services.NAME]`, the name quoted when it needs it (`[services."api.v2"]`).
pub fn service_header(name: &str) -> String {
    format!("[services.{}]", toml_key(name))
}

/// A duration in the manifest's units, the shortest exact way: `"10s"`, `"1500ms"`,
/// and fractions of a second below a millisecond as `"0.000250s"`.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.subsec_nanos();
    if nanos == 0 {
        format!("{}s", duration.as_secs())
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}.{nanos:09}s", duration.as_secs())
    }
}

/// The `health` table's keys besides the probe.
fn health_timings(health: &HealthSpec) -> Vec<(String, TomlValue)> {
    vec![
        ("interval".into(), TomlValue::duration(health.interval)),
        ("timeout".into(), TomlValue::duration(health.timeout)),
        ("retries".into(), TomlValue::Integer(health.retries.into())),
        (
            "start_period".into(),
            TomlValue::duration(health.start_period),
        ),
    ]
}

/// A port mapping as `ports` writes it, its host IP always given:
/// `"127.0.0.1:8080-8081:80"`, `"[::1]:7000:70"`.
pub fn port_mapping_text(port: &PortMapping) -> String {
    let ip = if port.host_ip.contains(':') {
        format!("[{}]", port.host_ip)
    } else {
        port.host_ip.clone()
    };
    match port.host_last {
        Some(last) => format!("{ip}:{}-{last}:{}", port.host, port.container),
        None => format!("{ip}:{}:{}", port.host, port.container),
    }
}

fn command_value(command: &CommandLine) -> TomlValue {
    match command {
        CommandLine::Shell(script) => TomlValue::string(script),
        CommandLine::Argv(argv) => TomlValue::strings(argv.iter().cloned()),
    }
}

/// The whole manifest as `fleet.toml`: every key of every service written out with its
/// value after interpolation and defaults, paths absolute, `env_file` merged into `env`.
pub fn to_toml(manifest: &Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} after interpolation and defaults (fleet config)",
        manifest.path.display()
    );
    out.push_str("\n[project]\n");
    let project = &manifest.project;
    let _ = writeln!(out, "name = {}", TomlValue::string(&project.name).to_text());
    let _ = writeln!(out, "log_max_size = {}", project.log_max_size);
    let _ = writeln!(out, "log_keep = {}", project.log_keep);
    for service in &manifest.services {
        out.push('\n');
        out.push_str(&service_header(&service.name));
        out.push('\n');
        let mut entries = service_entries(service);
        if let Some(export) = manifest.exports.get(&service.name) {
            entries.extend(export_entries(export));
        }
        for (key, value) in entries {
            let _ = writeln!(out, "{} = {}", toml_key(&key), value.to_text());
        }
    }
    out
}

/// The `env_file` (its values are in `env` too, which wins anyway) and the `export`
/// table.
fn export_entries(export: &ServiceExport) -> Vec<(String, TomlValue)> {
    let mut entries = Vec::new();
    if let Some((path, _)) = &export.env_file {
        entries.push((
            "env_file".to_string(),
            TomlValue::string(path.to_string_lossy()),
        ));
    }
    let mut table = Vec::new();
    if let Some(image) = &export.image {
        table.push(("image".to_string(), TomlValue::string(image)));
    }
    if let Some(command) = &export.command {
        table.push(("command".to_string(), command_value(command)));
    }
    if !export.env.is_empty() {
        let env = export
            .env
            .iter()
            .map(|(key, value)| (key.clone(), TomlValue::string(value)))
            .collect();
        table.push(("env".to_string(), TomlValue::Table(env)));
    }
    if export.secret {
        table.push(("secret".to_string(), TomlValue::Boolean(true)));
    }
    if !table.is_empty() {
        entries.push(("export".to_string(), TomlValue::Table(table)));
    }
    entries
}

fn service_entries(service: &ServiceSpec) -> Vec<(String, TomlValue)> {
    let mut entries: Vec<(String, TomlValue)> = Vec::new();
    let mut push = |key: &str, value: TomlValue| entries.push((key.to_string(), value));
    match &service.kind {
        ServiceKind::Process(process) => {
            push("command", command_value(&process.command));
            push("cwd", TomlValue::string(process.cwd.to_string_lossy()));
            if let Some(build) = &process.build {
                push("build", command_value(build));
            }
        }
        ServiceKind::Container(container) => {
            push("image", TomlValue::string(&container.image));
            if let Some(build) = &container.build {
                let args = build
                    .args
                    .iter()
                    .map(|(key, value)| (key.clone(), TomlValue::string(value)))
                    .collect();
                push(
                    "build",
                    TomlValue::Table(vec![
                        (
                            "context".into(),
                            TomlValue::string(build.context.to_string_lossy()),
                        ),
                        ("dockerfile".into(), TomlValue::string(&build.dockerfile)),
                        ("args".into(), TomlValue::Table(args)),
                    ]),
                );
            }
            if let Some(command) = &container.command {
                push("command", TomlValue::strings(command.iter().cloned()));
            }
            push(
                "ports",
                TomlValue::strings(container.ports.iter().map(port_mapping_text)),
            );
            push(
                "volumes",
                TomlValue::strings(container.volumes.iter().cloned()),
            );
            push("init", TomlValue::Boolean(container.init));
        }
    }
    push("replicas", TomlValue::Integer(service.replicas.into()));
    if !service.profiles.is_empty() {
        push(
            "profiles",
            TomlValue::strings(service.profiles.iter().cloned()),
        );
    }
    push(
        "env",
        TomlValue::Table(
            service
                .env
                .iter()
                .map(|(key, value)| (key.clone(), TomlValue::string(value)))
                .collect(),
        ),
    );
    push(
        "depends_on",
        TomlValue::Table(
            service
                .depends_on
                .iter()
                .map(|dependency| {
                    let condition = match dependency.condition {
                        DependencyCondition::Started => "started",
                        DependencyCondition::Healthy => "healthy",
                        DependencyCondition::Completed => "completed",
                    };
                    (
                        dependency.service.clone(),
                        TomlValue::Table(vec![
                            ("condition".into(), TomlValue::string(condition)),
                            ("restart".into(), TomlValue::Boolean(dependency.restart)),
                        ]),
                    )
                })
                .collect(),
        ),
    );
    let restart = match service.restart {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "never",
    };
    push("restart", TomlValue::string(restart));
    push(
        "max_restarts",
        TomlValue::Integer(service.max_restarts.into()),
    );
    push(
        "restart_window",
        TomlValue::duration(service.restart_window),
    );
    push(
        "backoff",
        TomlValue::Table(vec![
            (
                "initial".into(),
                TomlValue::duration(service.backoff.initial),
            ),
            ("max".into(), TomlValue::duration(service.backoff.max)),
        ]),
    );
    push("stop_signal", TomlValue::string(service.stop_signal.name));
    push("stop_timeout", TomlValue::duration(service.stop_timeout));
    if let ServiceKind::Process(_) = service.kind {
        push(
            "ports",
            TomlValue::Array(
                service
                    .ports
                    .iter()
                    .map(|port| TomlValue::Integer((*port).into()))
                    .collect(),
            ),
        );
    }
    let engine = match &service.kind {
        ServiceKind::Container(container) => container.healthcheck.as_ref(),
        ServiceKind::Process(_) => None,
    };
    match &service.health {
        Some(
            health @ HealthSpec {
                probe: Probe::Notify { watchdog },
                ..
            },
        ) => {
            push("notify", TomlValue::Boolean(true));
            if let Some(watchdog) = watchdog {
                push("watchdog", TomlValue::duration(*watchdog));
            }
            // READY=1 is the probe; the `health` table, without one, keeps the timings.
            push("health", TomlValue::Table(health_timings(health)));
        }
        Some(health) => {
            let probe = match &health.probe {
                Probe::Http { target, .. } => ("http", TomlValue::string(&target.url)),
                Probe::Tcp { host, port } => ("tcp", TomlValue::string(format!("{host}:{port}"))),
                Probe::Exec(command) => ("exec", command_value(command)),
                Probe::Log(pattern) => ("log", TomlValue::string(pattern)),
                Probe::Docker => (
                    "docker",
                    engine.map_or(TomlValue::Boolean(true), |check| command_value(&check.test)),
                ),
                Probe::Notify { .. } => ("notify", TomlValue::Boolean(true)),
            };
            let mut table = vec![(probe.0.to_string(), probe.1)];
            if let Probe::Http {
                expect_body: Some(body),
                ..
            } = &health.probe
            {
                table.push(("expect_body".into(), TomlValue::string(body)));
            }
            table.extend(health_timings(health));
            push("health", TomlValue::Table(table));
        }
        None => {}
    }
    push(
        "restart_on_unhealthy",
        TomlValue::Boolean(service.restart_on_unhealthy),
    );
    if let Some(timeout) = service.start_timeout {
        push("start_timeout", TomlValue::duration(timeout));
    }
    push("watch", TomlValue::strings(service.watch.iter().cloned()));
    push("ignore", TomlValue::strings(service.ignore.iter().cloned()));
    let redeploy = match service.redeploy {
        RedeployStrategy::StartFirst => "start-first",
        RedeployStrategy::StopFirst => "stop-first",
    };
    push("redeploy", TomlValue::string(redeploy));
    if let Some(socket) = &service.socket {
        push(
            "socket",
            TomlValue::string(format!("{}:{}", socket.host, socket.port)),
        );
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_and_escaped() {
        assert_eq!(
            TomlValue::string("a \"b\" \\ $HOME\n").to_text(),
            r#""a \"b\" \\ $$HOME\n""#
        );
        assert_eq!(TomlValue::Template("${X:-}".into()).to_text(), "\"${X:-}\"");
        assert_eq!(
            TomlValue::Table(vec![
                ("a.b".into(), TomlValue::Integer(3)),
                ("ok_key".into(), TomlValue::Boolean(true)),
                ("list".into(), TomlValue::strings(["x", "y"])),
            ])
            .to_text(),
            r#"{ "a.b" = 3, ok_key = true, list = ["x", "y"] }"#
        );
        assert_eq!(service_header("api.v2"), "[services.\"api.v2\"]");
        assert_eq!(service_header("web-1"), "[services.web-1]");
    }

    #[test]
    fn a_rendered_manifest_parses_back_to_the_same_manifest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("img")).expect("mkdir");
        std::fs::write(root.join("img/Dockerfile"), "FROM scratch\n").expect("Dockerfile");
        std::fs::write(root.join("app.env"), "FROM_FILE=\"a $b\"\n").expect("env file");
        let source = r#"
[project]
name = "round trip"
log_max_size = "1MB"

[services.db]
build = { context = "img", args = { V = 1 } }
ports = ["5432:5432", "0.0.0.0:6000-6001:80", "[::1]:7000:70"]
volumes = ["./data:/data:ro", "named:/var"]
command = "db --fast"
health = { docker = "pg_isready -U app", interval = "250ms", retries = 2, start_period = "1m30s" }
replicas = 2
stop_signal = "int"

[services.api]
command = ["api", "--quote", "say \"hi\" $$HOME"]
env = { DEBUG = true, PATHS = "a:b" }
env_file = "app.env"
export = { image = "registry.example/api:1", command = "api --cluster", env = { MODE = "cluster" }, secret = true }
depends_on = { db = { condition = "healthy", restart = true } }
socket = 7003
notify = true
watchdog = "5s"
watch = ["src/**"]
ignore = ["**/*.tmp"]
start_timeout = "2m"
backoff = { initial = "0s", max = "1s" }

[services.job]
command = "echo done"
depends_on = ["api"]
restart = "never"
profiles = ["jobs", "all"]
health = { http = "http://127.0.0.1:9/health", expect_body = "ok" }
ports = [9]
"#;
        let path = root.join("fleet.toml");
        let variables = crate::manifest::interpolate::Variables::default();
        let first = match crate::manifest::parse_with_variables(&path, source, &variables) {
            Ok(manifest) => manifest,
            Err(err) => panic!("{}", err.render(false)),
        };
        let rendered = to_toml(&first);
        let second = match crate::manifest::parse_with_variables(&path, &rendered, &variables) {
            Ok(manifest) => manifest,
            Err(err) => panic!("{rendered}\n{}", err.render(false)),
        };
        assert_eq!(first, second, "{rendered}");
        assert!(rendered.contains(" $$HOME\""), "{rendered}");
        assert!(rendered.contains("FROM_FILE = \"a $$b\""), "{rendered}");
    }

    /// Found by the `manifest` fuzz target: `fleet config` wrote `notify = true` alone
    /// and dropped the `health` table's timings, so its output loaded as another
    /// manifest.
    #[test]
    fn a_notify_service_keeps_its_health_timings_through_fleet_config() {
        let source = "[services.queue]\ncommand = \"queue\"\nnotify = true\nwatchdog = \"5s\"\n\
                      health = { interval = \"3s\", timeout = \"2s\", retries = 5, start_period = \"1m\" }\n";
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fleet.toml");
        let path = path.as_path();
        let variables = crate::manifest::interpolate::Variables::default();
        let first = match crate::manifest::parse_with_variables(path, source, &variables) {
            Ok(manifest) => manifest,
            Err(err) => panic!("{}", err.render(false)),
        };
        let rendered = to_toml(&first);
        let second = match crate::manifest::parse_with_variables(path, &rendered, &variables) {
            Ok(manifest) => manifest,
            Err(err) => panic!("{rendered}\n{}", err.render(false)),
        };
        assert_eq!(first.services, second.services, "{rendered}");
    }

    /// Found by the `manifest` fuzz target: an empty `export = {}` was kept as an export
    /// table that `fleet config` (rightly) does not write, so its output loaded as
    /// another manifest. An empty table says nothing: it is no table.
    #[test]
    fn an_empty_export_table_is_no_export_table() {
        let source = "[services.web]\nimage = \"web:1\"\nexport = {}\n";
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fleet.toml");
        let variables = crate::manifest::interpolate::Variables::default();
        let first = match crate::manifest::parse_with_variables(&path, source, &variables) {
            Ok(manifest) => manifest,
            Err(err) => panic!("{}", err.render(false)),
        };
        assert!(first.exports.is_empty(), "{:?}", first.exports);
        let rendered = to_toml(&first);
        let second = match crate::manifest::parse_with_variables(&path, &rendered, &variables) {
            Ok(manifest) => manifest,
            Err(err) => panic!("{rendered}\n{}", err.render(false)),
        };
        assert_eq!(first, second, "{rendered}");
    }

    #[test]
    fn durations_are_written_exactly() {
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_micros(250)), "0.000250000s");
        for duration in [
            Duration::from_secs(90),
            Duration::from_millis(1500),
            Duration::from_micros(250),
            Duration::from_nanos(1_000_000_001),
        ] {
            assert_eq!(
                super::super::parse_duration(&format_duration(duration)),
                Ok(duration)
            );
        }
    }
}
