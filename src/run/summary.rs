//! What a `fleet run` leaves for people and CI systems: `summary.json` (the types
//! here, serialized as they are) and the JUnit XML of `--junit`.
//!
//! Data and rendering only: the driver and the recorder fill a [`Summary`]; this module
//! never looks at a process, a socket or a clock. Every time in it is either an
//! absolute `*_at` timestamp or a `*_ms` count of milliseconds, and `since_start_ms`
//! counts from the moment `fleet run` started. The keys are part of fleet's output:
//! add keys, never rename one.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::event::{ServiceKindName, ServiceState};

/// How the run ended, as one stable word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// CMD exited 0 and nothing else failed the run.
    Passed,
    /// CMD exited non-zero or was killed by a signal.
    CommandFailed,
    /// CMD could not be started (not found, not executable).
    CommandNotRun,
    /// CMD ran longer than `--timeout` and was stopped.
    TimedOut,
    /// The fleet did not become ready within `--wait-timeout`; CMD never ran.
    NotReady,
    /// The fleet could not start at all (a port was busy, ...); CMD never ran.
    StartFailed,
    /// CMD passed, but a service crashed, restarted or turned unhealthy and the run
    /// had `--fail-on-restart`.
    ServiceRestarted,
    /// CMD passed, but teardown found something fleet started still there.
    LeftOvers,
    /// Ctrl-C (or SIGTERM, SIGHUP) stopped the run.
    Interrupted,
}

/// The whole run, as `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// fleet's version.
    pub fleet: String,
    /// The project's name, and the name its run went by (Docker objects, `FLEET_PROJECT`).
    pub project: String,
    pub run_project: String,
    /// The manifest the run was made from, and the run's own copy of it.
    pub manifest: String,
    pub run_manifest: String,
    /// This folder.
    pub artifacts: String,
    /// When `fleet run` started: `2026-11-26T06:25:08.123Z`, and in ms since the epoch.
    pub started_at: String,
    pub started_at_ms: u64,
    /// The profiles the run enabled, and the services named on the command line.
    pub profiles: Vec<String>,
    pub selected: Vec<String>,
    pub outcome: Outcome,
    /// What `fleet run` exited with.
    pub exit_code: i32,
    /// Why the run failed, in words (null when it passed).
    pub error: Option<String>,
    pub fail_on_restart: bool,
    /// `--keep-on-failure` kept the fleet up after CMD failed, until `fleet down` or
    /// Ctrl-C.
    pub kept_after_failure: bool,
    pub durations_ms: Durations,
    pub command: CommandSummary,
    /// One entry per instance row: `web` or, for a replicated service, `web.1` ...
    pub services: Vec<ServiceSummary>,
    pub teardown: Teardown,
}

/// How long each part of the run took. A part that did not happen is null.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    /// From `fleet run`'s start until the supervisor started the services (manifest,
    /// sweep, port checks, keeper).
    pub up: Option<u64>,
    /// From then until every selected service was ready (or the wait gave up).
    pub wait: Option<u64>,
    /// CMD's run.
    pub command: Option<u64>,
    /// From the stop of the fleet until the supervisor was gone.
    pub down: Option<u64>,
    /// The check that nothing is left.
    pub teardown_check: Option<u64>,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSummary {
    pub argv: Vec<String>,
    /// CMD started.
    pub ran: bool,
    pub pid: Option<u32>,
    /// Its exit code, or null when a signal ended it (or it never ran).
    pub exit_code: Option<i32>,
    /// The signal that ended it (`SIGKILL`), if one did.
    pub signal: Option<String>,
    /// Why it did not start (`not found`), if it did not.
    pub error: Option<String>,
    /// The processes it left running when it exited (killed then).
    pub left_running: Vec<LeftProcess>,
    /// Its output, in `cmd.log`.
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    /// The row's name (`web`, `web.2`), its service and replica number.
    pub name: String,
    pub service: String,
    pub replica: Option<u32>,
    pub kind: ServiceKindName,
    /// Ready (healthy, running without a probe, or completed) once.
    pub ready: bool,
    /// From the run's start until it was first ready.
    pub time_to_healthy_ms: Option<u64>,
    /// From the start of the instance that became ready until it was.
    pub healthy_after_start_ms: Option<u64>,
    /// Its state when CMD ended (or when the wait gave up).
    pub state_at_end: ServiceState,
    /// What its probe last saw while it was starting, if it never became ready.
    pub last_probe_error: Option<String>,
    /// Every state it went through, as the supervisor published them.
    pub states: Vec<StateAt>,
    /// Every restart, with its reason.
    pub restarts: Vec<Restart>,
    /// Crashes, restarts, unhealthy turns, start failures and give-ups before teardown.
    pub incidents: Vec<Incident>,
    /// The pids (or container ids) it ran.
    pub pids: Vec<u32>,
    pub containers: Vec<String>,
    /// Its log, relative to the artifacts folder.
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateAt {
    pub since_start_ms: u64,
    pub state: ServiceState,
}

/// Why fleet restarted an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartCause {
    /// It exited on its own.
    Crash,
    /// It had been healthy, then failed its probes.
    Unhealthy,
    /// It did not pass its probe within `start_timeout`.
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restart {
    pub since_start_ms: u64,
    /// The generation that ended.
    pub generation: u64,
    pub cause: RestartCause,
    /// `exited with code 1`, `unhealthy (3 failed probes)`, ...
    pub reason: String,
    pub restart_in_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub since_start_ms: u64,
    /// What fleet said, as `fleet up` prints it.
    pub text: String,
}

/// What the check after teardown found. Everything listed was removed then.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Teardown {
    /// Nothing of the fleet was left.
    pub clean: bool,
    pub processes: Vec<LeftProcess>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// What was checked: `processes`, and with container services `containers`,
    /// `networks`, `volumes`.
    pub checked: Vec<String>,
    /// A check that could not be made (the engine did not answer), in words.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftProcess {
    pub pid: u32,
    pub command: String,
}

impl Teardown {
    pub fn found_anything(&self) -> bool {
        !(self.processes.is_empty()
            && self.containers.is_empty()
            && self.networks.is_empty()
            && self.volumes.is_empty())
    }
}

impl ServiceSummary {
    /// The JUnit verdict on "became healthy and never crashed": `None` when it holds,
    /// else why not.
    pub fn problem(&self) -> Option<String> {
        if !self.ready {
            let mut text = format!("never became ready (state {})", self.state_at_end);
            if let Some(error) = &self.last_probe_error {
                text.push_str(&format!(", last probe: {error}"));
            }
            return Some(text);
        }
        let first = self.incidents.first()?;
        let more = match self.incidents.len() {
            1 => String::new(),
            count => format!(" (and {} more)", count - 1),
        };
        Some(format!("{}{more}", first.text))
    }
}

/// Text for a JUnit test case: the log lines shown in it, by service row name.
pub struct JunitLogs<'a> {
    pub service_tail: &'a dyn Fn(&ServiceSummary) -> Vec<String>,
    pub command_tail: Vec<String>,
}

/// The JUnit XML of a run: one test suite, one test case per service row ("became
/// healthy and never crashed") and one for CMD. A CMD that never ran is skipped.
pub fn junit(summary: &Summary, logs: &JunitLogs<'_>) -> String {
    let seconds = |ms: Option<u64>| format!("{:.3}", ms.unwrap_or(0) as f64 / 1000.0);
    let mut cases = String::new();
    let mut failures = 0;
    let mut skipped = 0;
    for service in &summary.services {
        let name = format!("{} became healthy and never crashed", service.name);
        let _ = writeln!(
            cases,
            "    <testcase classname=\"fleet.services\" name=\"{}\" time=\"{}\">",
            xml_text(&name),
            seconds(service.time_to_healthy_ms)
        );
        if let Some(problem) = service.problem() {
            failures += 1;
            let kind = if service.ready {
                "crashed"
            } else {
                "not_ready"
            };
            let _ = writeln!(
                cases,
                "      <failure message=\"{}\" type=\"{kind}\">{}</failure>",
                xml_text(&problem),
                xml_text(&incident_lines(service))
            );
            let tail = (logs.service_tail)(service);
            if !tail.is_empty() {
                let _ = writeln!(
                    cases,
                    "      <system-out>{}</system-out>",
                    xml_text(&tail.join("\n"))
                );
            }
        }
        cases.push_str("    </testcase>\n");
    }
    let command = &summary.command;
    let _ = writeln!(
        cases,
        "    <testcase classname=\"fleet.command\" name=\"{}\" time=\"{}\">",
        xml_text(&command.argv.join(" ")),
        seconds(summary.durations_ms.command)
    );
    if !command.ran && command.error.is_none() {
        skipped += 1;
        let _ = writeln!(
            cases,
            "      <skipped message=\"{}\"/>",
            xml_text(
                summary
                    .error
                    .as_deref()
                    .unwrap_or("the fleet never became ready")
            )
        );
    } else if let Some(problem) = command_problem(summary) {
        failures += 1;
        let _ = writeln!(
            cases,
            "      <failure message=\"{}\" type=\"{}\"/>",
            xml_text(&problem),
            if command.ran { "exit_code" } else { "not_run" }
        );
    }
    if !logs.command_tail.is_empty() {
        let _ = writeln!(
            cases,
            "      <system-out>{}</system-out>",
            xml_text(&logs.command_tail.join("\n"))
        );
    }
    cases.push_str("    </testcase>\n");
    let tests = summary.services.len() + 1;
    let time = seconds(Some(summary.durations_ms.total));
    // JUnit's `timestamp` is a local date-time without a zone in the schemas CI
    // systems validate against; ours is UTC.
    let timestamp = summary
        .started_at
        .split('.')
        .next()
        .unwrap_or(&summary.started_at)
        .to_string();
    let suite = xml_text(&format!("fleet run: {}", summary.project));
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <testsuites name=\"fleet run\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time}\">\n  \
         <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time}\" timestamp=\"{timestamp}\" hostname=\"localhost\">\n\
         {cases}  </testsuite>\n\
         </testsuites>\n"
    )
}

/// Why CMD's test case failed, if it did.
fn command_problem(summary: &Summary) -> Option<String> {
    let command = &summary.command;
    if let Some(error) = &command.error {
        return Some(error.clone());
    }
    if summary.outcome == Outcome::TimedOut {
        return Some("stopped: ran longer than --timeout".into());
    }
    match (command.exit_code, &command.signal) {
        (Some(0), _) => None,
        (Some(code), _) => Some(format!("exited with code {code}")),
        (None, Some(signal)) => Some(format!("killed by {signal}")),
        (None, None) => None,
    }
}

fn incident_lines(service: &ServiceSummary) -> String {
    service
        .incidents
        .iter()
        .map(|incident| format!("{} after {}ms", incident.text, incident.since_start_ms))
        .collect::<Vec<String>>()
        .join("\n")
}

/// `text` made safe for XML 1.0 content and attribute values: markup characters
/// escaped, and the control characters XML cannot hold at all (a service's ANSI
/// colours, say) replaced with U+FFFD.
pub fn xml_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, ready: bool, incidents: &[&str]) -> ServiceSummary {
        ServiceSummary {
            name: name.to_string(),
            service: name.to_string(),
            replica: None,
            kind: ServiceKindName::Process,
            ready,
            time_to_healthy_ms: ready.then_some(412),
            healthy_after_start_ms: ready.then_some(12),
            state_at_end: if ready {
                ServiceState::Healthy
            } else {
                ServiceState::Starting
            },
            last_probe_error: (!ready).then(|| "connection refused".to_string()),
            states: Vec::new(),
            restarts: Vec::new(),
            incidents: incidents
                .iter()
                .map(|text| Incident {
                    since_start_ms: 900,
                    text: text.to_string(),
                })
                .collect(),
            pids: vec![42],
            containers: Vec::new(),
            log: format!("logs/{name}.log"),
        }
    }

    fn summary(services: Vec<ServiceSummary>, command: CommandSummary) -> Summary {
        Summary {
            fleet: "0.1.0".into(),
            project: "shop & co".into(),
            run_project: "shop-run-abc".into(),
            manifest: "/p/fleet.toml".into(),
            run_manifest: "/p/.fleet/runs/x/fleet.toml".into(),
            artifacts: "/p/.fleet/runs/x".into(),
            started_at: "2026-11-26T06:25:08.123Z".into(),
            started_at_ms: 0,
            profiles: Vec::new(),
            selected: Vec::new(),
            outcome: Outcome::Passed,
            exit_code: 0,
            error: None,
            fail_on_restart: false,
            kept_after_failure: false,
            durations_ms: Durations {
                command: Some(1500),
                total: 2250,
                ..Durations::default()
            },
            command,
            services,
            teardown: Teardown::default(),
        }
    }

    fn command(exit_code: Option<i32>) -> CommandSummary {
        CommandSummary {
            argv: vec!["pytest".into(), "-k".into(), "a<b".into()],
            ran: exit_code.is_some(),
            pid: exit_code.map(|_| 7),
            exit_code,
            signal: None,
            error: None,
            left_running: Vec::new(),
            log: "cmd.log".into(),
        }
    }

    #[test]
    fn xml_text_escapes_markup_and_drops_what_xml_cannot_hold() {
        assert_eq!(
            xml_text("a<b & \"c\" 'd'\u{1b}[31mred\t\n"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;\u{FFFD}[31mred\t\n"
        );
    }

    #[test]
    fn junit_has_one_case_per_service_row_and_one_for_the_command() {
        let tail = |_: &ServiceSummary| vec!["line \u{1b}one".to_string()];
        let logs = JunitLogs {
            service_tail: &tail,
            command_tail: vec!["FAILED test_x".into()],
        };
        let xml = junit(
            &summary(
                vec![
                    service("db", true, &[]),
                    service(
                        "web.1",
                        true,
                        &["web.1: exited with code 1, restart 1 in 100ms"],
                    ),
                ],
                command(Some(3)),
            ),
            &logs,
        );
        insta::assert_snapshot!(xml, @r#"
        <?xml version="1.0" encoding="UTF-8"?>
        <testsuites name="fleet run" tests="3" failures="2" errors="0" time="2.250">
          <testsuite name="fleet run: shop &amp; co" tests="3" failures="2" errors="0" skipped="0" time="2.250" timestamp="2026-11-26T06:25:08" hostname="localhost">
            <testcase classname="fleet.services" name="db became healthy and never crashed" time="0.412">
            </testcase>
            <testcase classname="fleet.services" name="web.1 became healthy and never crashed" time="0.412">
              <failure message="web.1: exited with code 1, restart 1 in 100ms" type="crashed">web.1: exited with code 1, restart 1 in 100ms after 900ms</failure>
              <system-out>line �one</system-out>
            </testcase>
            <testcase classname="fleet.command" name="pytest -k a&lt;b" time="1.500">
              <failure message="exited with code 3" type="exit_code"/>
              <system-out>FAILED test_x</system-out>
            </testcase>
          </testsuite>
        </testsuites>
        "#);
    }

    #[test]
    fn a_command_that_never_ran_is_skipped_and_a_laggard_fails() {
        let tail = |_: &ServiceSummary| Vec::new();
        let logs = JunitLogs {
            service_tail: &tail,
            command_tail: Vec::new(),
        };
        let mut run = summary(vec![service("api", false, &[])], command(None));
        run.outcome = Outcome::NotReady;
        run.error = Some("api did not become ready within 5s".into());
        let xml = junit(&run, &logs);
        assert!(
            xml.contains(r#"<failure message="never became ready (state starting), last probe: connection refused" type="not_ready">"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<skipped message="api did not become ready within 5s"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"failures="1" errors="0" skipped="1""#),
            "{xml}"
        );
    }

    #[test]
    fn the_summary_keys_are_stable() {
        let value = serde_json::to_value(summary(vec![service("db", true, &[])], command(Some(0))))
            .expect("a summary serializes");
        let mut keys: Vec<&str> = value
            .as_object()
            .map(|object| object.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        let mut expected = [
            "fleet",
            "project",
            "run_project",
            "manifest",
            "run_manifest",
            "artifacts",
            "started_at",
            "started_at_ms",
            "profiles",
            "selected",
            "outcome",
            "exit_code",
            "error",
            "fail_on_restart",
            "kept_after_failure",
            "durations_ms",
            "command",
            "services",
            "teardown",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(value["outcome"], "passed");
        assert_eq!(value["services"][0]["state_at_end"], "healthy");
        assert_eq!(value["durations_ms"]["command"], 1500);
    }
}
