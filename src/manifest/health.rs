//! The `health` table, `notify` and `watchdog`: which probe a service has, and how
//! often and how patiently it is run.
//!
//! Owns the probe keys, the rule of one probe per service, the probes that only fit
//! one kind of service (`notify` for processes, `docker` for containers), and the
//! probe defaults. Reads each value through the parsers in `values` (addresses, URLs,
//! commands, durations); must not run a probe or touch the network: a URL is checked
//! here so that a probe never fails on its own URL later.

use std::time::Duration;

use super::raw::{one_of, Entry, Kind, Table, Value};
use super::validate::Checker;
use super::values::{parse_http_url, regex_problem, HTTPS_UNSUPPORTED};
use super::{CommandLine, EngineHealthCheck, HealthSpec, Probe};

pub(super) const HEALTH_KEYS: &[&str] = &[
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

const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_HEALTH_RETRIES: u32 = 3;

impl Checker<'_> {
    pub(super) fn health(
        &mut self,
        service: &str,
        table: &Table,
        is_container: bool,
    ) -> (Option<HealthSpec>, Option<EngineHealthCheck>) {
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
            return (notify.then_some(spec), None);
        };
        let Some(health) = value.table(&mut self.diagnostics) else {
            return (None, None);
        };
        let mut engine_test = None;
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
                _ => match &entry.value.kind {
                    // `docker = false` asks for no probe, which is the same as leaving it out.
                    Kind::Boolean(false) => continue,
                    Kind::Boolean(true) | Kind::String(_) | Kind::Array(_) if !is_container => {
                        self.only_for_containers(entry.key_span.clone(), "health.docker");
                        None
                    }
                    Kind::Boolean(true) => Some(Probe::Docker),
                    Kind::String(_) | Kind::Array(_) => {
                        engine_test = self.engine_test(&entry.value);
                        engine_test.as_ref().map(|_| Probe::Docker)
                    }
                    _ => {
                        self.push(entry.value.expected(
                            "`true` (the image's HEALTHCHECK) or a command the engine runs in the container",
                        ));
                        None
                    }
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
        let engine = engine_test.map(|test| EngineHealthCheck {
            test,
            interval: spec.interval,
            timeout: spec.timeout,
            retries: spec.retries,
            start_period: spec.start_period,
        });
        (Some(spec), engine)
    }

    /// The command of `health.docker`: a string (run by the container's shell, the
    /// engine's `CMD-SHELL`), an array exec'd directly, or an array in the engine's own
    /// form, `["CMD", program, args...]` or `["CMD-SHELL", script]`.
    fn engine_test(&mut self, value: &Value) -> Option<CommandLine> {
        const WHAT: &str = "`health.docker`";
        let Kind::Array(items) = &value.kind else {
            return self.command_line(value, WHAT);
        };
        let first = items.first().and_then(|item| match &item.kind {
            Kind::String(text) => Some(text.as_str()),
            _ => None,
        });
        let rest = || Value {
            kind: Kind::Array(items[1..].to_vec()),
            span: value.span.clone(),
        };
        match first {
            Some("CMD") => self.command_line(&rest(), WHAT),
            Some("CMD-SHELL") => match &items[1..] {
                [script] => self.command_line(script, WHAT),
                _ => {
                    self.error(
                        "`CMD-SHELL` takes one string, the script",
                        value.span.clone(),
                    )
                    .help = Some("like `docker = [\"CMD-SHELL\", \"pg_isready -U app\"]`, or the script alone as a string".to_string());
                    None
                }
            },
            Some("NONE") => {
                self.error(
                    "`NONE` turns the engine's health check off, which is no probe",
                    value.span.clone(),
                )
                .help = Some(
                    "leave out `health` (fleet then ignores the image's HEALTHCHECK)".to_string(),
                );
                None
            }
            _ => self.command_line(value, WHAT),
        }
    }

    pub(super) fn http_probe(
        &mut self,
        url: &str,
        expect_body: Option<&str>,
        value: &Value,
    ) -> Option<Probe> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::test_support::{check, parse_ok};
    use crate::manifest::HttpTarget;

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
    fn an_engine_health_check_from_the_manifest() {
        use crate::manifest::{CommandLine, EngineHealthCheck, ServiceKind};
        use std::time::Duration;
        let manifest = parse_ok(
            r#"[services.shell]
image = "db:1"
health = { docker = "pg_isready -U app", interval = "2s", timeout = "3s", retries = 5, start_period = "30s" }
[services.exec]
image = "db:1"
health = { docker = ["/bin/check", "--quick"] }
[services.cmd]
image = "db:1"
health = { docker = ["CMD", "/bin/check"] }
[services.cmd_shell]
image = "db:1"
health = { docker = ["CMD-SHELL", "test -f /ready"] }
[services.image]
image = "db:1"
health = { docker = true }
"#,
        );
        let engine = |name: &str| match &manifest.service(name).expect("declared").kind {
            ServiceKind::Container(container) => container.healthcheck.clone(),
            ServiceKind::Process(_) => None,
        };
        assert_eq!(
            engine("shell"),
            Some(EngineHealthCheck {
                test: CommandLine::Shell("pg_isready -U app".into()),
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(3),
                retries: 5,
                start_period: Duration::from_secs(30),
            })
        );
        let argv =
            |words: &[&str]| CommandLine::Argv(words.iter().map(|w| w.to_string()).collect());
        assert_eq!(
            engine("exec").map(|check| check.engine_test()),
            Some(vec![
                "CMD".to_string(),
                "/bin/check".into(),
                "--quick".into()
            ])
        );
        assert_eq!(
            engine("cmd").map(|check| check.test),
            Some(argv(&["/bin/check"]))
        );
        assert_eq!(
            engine("cmd_shell").map(|check| check.engine_test()),
            Some(vec!["CMD-SHELL".to_string(), "test -f /ready".into()])
        );
        assert_eq!(engine("image"), None);
        for name in ["shell", "exec", "image"] {
            assert_eq!(
                manifest
                    .service(name)
                    .and_then(|s| s.health.as_ref())
                    .map(|h| &h.probe),
                Some(&Probe::Docker)
            );
        }
    }

    #[test]
    fn engine_health_check_mistakes() {
        check(
            r#"[services.a]
image = "x"
health = { docker = ["NONE"] }
[services.b]
image = "x"
health = { docker = ["CMD-SHELL", "a", "b"] }
[services.c]
command = "c"
health = { docker = "true" }
[services.d]
image = "x"
health = { docker = 5 }
"#,
            r#"
error: `NONE` turns the engine's health check off, which is no probe
 --> fleet.toml:3:21
  |
3 | health = { docker = ["NONE"] }
  |                     ^^^^^^^^
  |
  = help: leave out `health` (fleet then ignores the image's HEALTHCHECK)

error: `CMD-SHELL` takes one string, the script
 --> fleet.toml:6:21
  |
6 | health = { docker = ["CMD-SHELL", "a", "b"] }
  |                     ^^^^^^^^^^^^^^^^^^^^^^^
  |
  = help: like `docker = ["CMD-SHELL", "pg_isready -U app"]`, or the script alone as a string

error: `health.docker` is only for container services
 --> fleet.toml:9:12
  |
9 | health = { docker = "true" }
  |            ^^^^^^
  |
  = help: a service with an `image` or a `build` table runs in a container

error: expected `true` (the image's HEALTHCHECK) or a command the engine runs in the container, found integer
  --> fleet.toml:12:21
   |
12 | health = { docker = 5 }
   |                     ^

error: could not load fleet.toml: 4 errors"#,
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
}
