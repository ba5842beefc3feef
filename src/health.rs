//! Health probes: TCP connect, HTTP GET, exec, a log line, and the systemd notify
//! protocol. Probes report verdicts; they never act on them (the state machine does).
//!
//! # Theory of operation
//! Each instance with a health check gets one probe task. The task runs the probe,
//! cuts it at `timeout`, and feeds the outcome to a pure [`ProbeTracker`], which turns
//! a stream of passes and failures into verdict changes (healthy / unhealthy) following
//! `retries` and `start_period`. Only changes are reported, through a callback, so a
//! steady service costs one message at start and nothing after.
//!
//! While an instance has not yet passed, it is probed faster than `interval` (starting
//! at [`FIRST_PROBE_INTERVAL`] and growing to `interval`), so a service that is ready in
//! 10 ms is reported healthy in about that time, not a whole interval later.

use std::io;
use std::os::unix::net::UnixDatagram as StdUnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixDatagram};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::logs::{LogBatch, LogHub, ServiceLog};
use crate::manifest::{HealthSpec, Probe};
use crate::runtime::process::{self, ProcessRuntime, SpawnRequest, MARKER_VAR};

/// The first probe of a new instance comes this soon; the pace then slows by half
/// again per attempt up to `interval`.
pub const FIRST_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// HTTP responses are read up to this size: enough for a status line, headers and a
/// small body to match `expect_body` against, without trusting the service's size.
const MAX_HTTP_RESPONSE: usize = 64 * 1024;

/// A verdict change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy,
}

/// Pure bookkeeping of probe outcomes for one instance.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    retries: u32,
    start_period: Duration,
    interval: Duration,
    started: Instant,
    consecutive_failures: u32,
    /// When the last failure was counted while the instance had not yet passed.
    last_counted: Option<Instant>,
    verdict: Option<Verdict>,
}

impl ProbeTracker {
    pub fn new(spec: &HealthSpec, started: Instant) -> ProbeTracker {
        ProbeTracker {
            retries: spec.retries.max(1),
            start_period: spec.start_period,
            interval: spec.interval,
            started,
            consecutive_failures: 0,
            last_counted: None,
            verdict: None,
        }
    }

    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
    }

    /// Records one probe outcome; returns the new verdict if it changed.
    pub fn record(&mut self, passed: bool, now: Instant) -> Option<Verdict> {
        if passed {
            self.consecutive_failures = 0;
            return self.change(Verdict::Healthy);
        }
        if self.verdict.is_none() {
            if now.duration_since(self.started) < self.start_period {
                // Failures while the service is still starting up don't count.
                return None;
            }
            // Before the first pass, the extra early probes only serve to notice
            // readiness quickly: failures count at the `interval` pace, so a service
            // gets the same `retries * interval` to come up as without them.
            if self
                .last_counted
                .is_some_and(|last| now.duration_since(last) < self.interval)
            {
                return None;
            }
            self.last_counted = Some(now);
        }
        self.consecutive_failures += 1;
        if self.consecutive_failures >= self.retries {
            return self.change(Verdict::Unhealthy);
        }
        None
    }

    fn change(&mut self, verdict: Verdict) -> Option<Verdict> {
        if self.verdict == Some(verdict) {
            None
        } else {
            self.verdict = Some(verdict);
            Some(verdict)
        }
    }

    /// How long to wait before the next probe.
    pub fn next_delay(&self, interval: Duration, attempt: u32) -> Duration {
        if self.verdict.is_some() {
            return interval;
        }
        let mut delay = FIRST_PROBE_INTERVAL;
        for _ in 0..attempt.min(40) {
            delay = delay.mul_f64(1.5);
            if delay >= interval {
                return interval;
            }
        }
        delay.min(interval)
    }
}

/// What must exist before the instance is spawned: the notify socket it will be told
/// about, and the log subscription that must not miss its first line.
pub struct ProbeSetup {
    spec: HealthSpec,
    notify: Option<(StdUnixDatagram, String)>,
    log_lines: Option<broadcast::Receiver<Arc<LogBatch>>>,
    exec: Option<ExecContext>,
}

/// Where and how an `exec` probe runs: like the service.
#[derive(Clone)]
pub struct ExecContext {
    pub processes: ProcessRuntime,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub marker: String,
}

impl ProbeSetup {
    /// Environment the instance needs for its probe (`NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some((_, name)) = &self.notify {
            env.push(("NOTIFY_SOCKET".to_string(), name.clone()));
            if let Probe::Notify {
                watchdog: Some(watchdog),
            } = &self.spec.probe
            {
                env.push((
                    "WATCHDOG_USEC".to_string(),
                    watchdog.as_micros().to_string(),
                ));
            }
        }
        env
    }
}

/// Prepares the probe of one instance. `socket_name` must be unique per instance.
pub fn prepare(
    spec: &HealthSpec,
    hub: &LogHub,
    socket_name: &str,
    exec: Option<ExecContext>,
) -> io::Result<ProbeSetup> {
    let mut setup = ProbeSetup {
        spec: spec.clone(),
        notify: None,
        log_lines: None,
        exec: None,
    };
    match &spec.probe {
        Probe::Notify { .. } => {
            // An abstract socket: nothing on disk to clean up, no path length limit
            // from the project folder, gone when fleet closes it.
            use std::os::linux::net::SocketAddrExt;
            let address =
                std::os::unix::net::SocketAddr::from_abstract_name(socket_name.as_bytes())?;
            let socket = StdUnixDatagram::bind_addr(&address)?;
            socket.set_nonblocking(true)?;
            setup.notify = Some((socket, format!("@{socket_name}")));
        }
        Probe::Log(_) => setup.log_lines = Some(hub.subscribe()),
        Probe::Exec(_) => setup.exec = exec,
        _ => {}
    }
    Ok(setup)
}

/// Runs the probe of one instance until aborted; `report` gets each verdict change.
pub fn start<F>(
    setup: ProbeSetup,
    service: String,
    log: Arc<ServiceLog>,
    report: F,
) -> JoinHandle<()>
where
    F: Fn(Verdict, String) + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tracker = ProbeTracker::new(&setup.spec, started);
        match &setup.spec.probe {
            Probe::Notify { watchdog } => {
                if let Some((socket, _)) = setup.notify {
                    notify_loop(socket, *watchdog, tracker, &report).await;
                }
            }
            Probe::Log(pattern) => {
                if let Some(lines) = setup.log_lines {
                    log_loop(lines, pattern, &service, &report).await;
                }
            }
            Probe::Docker => {}
            probe => {
                let mut attempt = 0;
                loop {
                    let outcome = match tokio::time::timeout(
                        setup.spec.timeout,
                        run_once(probe, setup.exec.as_ref(), &log),
                    )
                    .await
                    {
                        Ok(outcome) => outcome,
                        Err(_) => Err(format!(
                            "timed out after {}",
                            crate::event::format_duration_ms(setup.spec.timeout.as_millis() as u64)
                        )),
                    };
                    let passed = outcome.is_ok();
                    if let Some(verdict) = tracker.record(passed, Instant::now()) {
                        let reason = outcome.err().unwrap_or_default();
                        report(verdict, reason);
                    }
                    tokio::time::sleep(tracker.next_delay(setup.spec.interval, attempt)).await;
                    attempt += 1;
                }
            }
        }
    })
}

async fn run_once(
    probe: &Probe,
    exec: Option<&ExecContext>,
    log: &ServiceLog,
) -> Result<(), String> {
    match probe {
        Probe::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
            .await
            .map(drop)
            .map_err(|err| format!("tcp {host}:{port}: {err}")),
        Probe::Http {
            host,
            port,
            path,
            expect_body,
            url,
        } => http_get(host, *port, path, expect_body.as_deref())
            .await
            .map_err(|err| format!("{url}: {err}")),
        Probe::Exec(command) => {
            let Some(exec) = exec else {
                return Err("exec probe without context".into());
            };
            run_exec(command.argv(), exec, log).await
        }
        Probe::Log(_) | Probe::Notify { .. } | Probe::Docker => Ok(()),
    }
}

/// A GET over a plain TCP stream: 2xx passes, and the body must contain
/// `expect_body` when given.
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    expect_body: Option<&str>,
) -> Result<(), String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|err| err.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: fleet\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| err.to_string())?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|err| err.to_string())?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
        if response.len() >= MAX_HTTP_RESPONSE {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "no HTTP status line in the response".to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    if let Some(expected) = expect_body {
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or("");
        if !body.contains(expected) {
            return Err(format!(
                "HTTP {status} but the body does not contain {expected:?}"
            ));
        }
    }
    Ok(())
}

async fn run_exec(argv: Vec<String>, exec: &ExecContext, log: &ServiceLog) -> Result<(), String> {
    let request = SpawnRequest {
        argv,
        cwd: exec.cwd.clone(),
        env: exec
            .env
            .iter()
            .filter(|(k, _)| k != MARKER_VAR)
            .cloned()
            .chain([(MARKER_VAR.to_string(), exec.marker.clone())])
            .collect(),
        listen_fds: Vec::new(),
    };
    let spawned = exec
        .processes
        .spawn(&request)
        .map_err(|err| err.to_string())?;
    let pid = spawned.pid;
    // Kill the probe's group if this future is dropped at the timeout.
    let guard = KillOnDrop {
        pid,
        marker: exec.marker.clone(),
        armed: true,
    };
    let mut output = Vec::new();
    let mut stdout = spawned.stdout;
    let mut stderr = spawned.stderr;
    let _ = stdout.read_to_end(&mut output).await;
    let _ = stderr.read_to_end(&mut output).await;
    let status = spawned
        .exit
        .await
        .map_err(|_| "probe was not reaped".to_string())?;
    let mut guard = guard;
    guard.armed = false;
    for line in String::from_utf8_lossy(&output).lines() {
        log.write_fleet_line(&format!("health: {line}"));
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("health command {status}"))
    }
}

struct KillOnDrop {
    pid: u32,
    marker: String,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = process::signal_group(self.pid, nix::sys::signal::Signal::SIGKILL as i32);
            for pid in process::escaped_with_marker(&self.marker) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

async fn notify_loop<F>(
    socket: StdUnixDatagram,
    watchdog: Option<Duration>,
    mut tracker: ProbeTracker,
    report: &F,
) where
    F: Fn(Verdict, String),
{
    let Ok(socket) = UnixDatagram::from_std(socket) else {
        return;
    };
    let mut buffer = vec![0u8; 4096];
    let mut last_ping = Instant::now();
    loop {
        let wait = match (watchdog, tracker.verdict()) {
            (Some(watchdog), Some(Verdict::Healthy)) => {
                watchdog.saturating_sub(last_ping.elapsed())
            }
            _ => Duration::from_secs(3600),
        };
        match tokio::time::timeout(wait, socket.recv(&mut buffer)).await {
            Ok(Ok(read)) => {
                let message = String::from_utf8_lossy(&buffer[..read]);
                for assignment in message.split('\n') {
                    match assignment.trim() {
                        "READY=1" | "WATCHDOG=1" => {
                            last_ping = Instant::now();
                            if let Some(verdict) = tracker.record(true, Instant::now()) {
                                report(verdict, String::new());
                            }
                        }
                        "WATCHDOG=trigger" => {
                            report(
                                Verdict::Unhealthy,
                                "the service triggered its watchdog".into(),
                            );
                        }
                        _ => {}
                    }
                }
            }
            Ok(Err(_)) => return,
            Err(_) => {
                let silence =
                    crate::event::format_duration_ms(last_ping.elapsed().as_millis() as u64);
                tracker = ProbeTracker {
                    verdict: Some(Verdict::Unhealthy),
                    ..tracker
                };
                report(Verdict::Unhealthy, format!("no WATCHDOG=1 for {silence}"));
            }
        }
    }
}

async fn log_loop<F>(
    mut lines: broadcast::Receiver<Arc<LogBatch>>,
    pattern: &str,
    service: &str,
    report: &F,
) where
    F: Fn(Verdict, String),
{
    let Ok(regex) = regex::bytes::Regex::new(pattern) else {
        return;
    };
    loop {
        match lines.recv().await {
            Ok(batch) => {
                if &*batch.service == service && batch.lines().any(|line| regex.is_match(line)) {
                    report(Verdict::Healthy, String::new());
                    // Readiness only: once seen, the instance stays healthy.
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(retries: u32, start_period_ms: u64) -> HealthSpec {
        HealthSpec {
            probe: Probe::Tcp {
                host: "127.0.0.1".into(),
                port: 1,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::from_millis(start_period_ms),
        }
    }

    #[test]
    fn tracker_reports_only_changes() {
        let start = Instant::now();
        let mut tracker = ProbeTracker::new(&spec(3, 0), start);
        let outcomes = [false, false, true, true, false, false, false, false, true];
        let verdicts: Vec<Option<Verdict>> = outcomes
            .iter()
            .map(|passed| tracker.record(*passed, start))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                None,
                None,
                Some(Verdict::Healthy),
                None,
                None,
                None,
                Some(Verdict::Unhealthy),
                None,
                Some(Verdict::Healthy)
            ]
        );
    }

    #[test]
    fn fast_early_probes_do_not_use_up_the_retries() {
        // Regression: a service that took 30 ms to listen was declared unhealthy by
        // the fast readiness probes and restarted before it ever came up.
        let start = Instant::now();
        let mut tracker = ProbeTracker::new(&spec(3, 0), start);
        let ms = Duration::from_millis;
        for at in [10, 25, 47, 80, 130, 500, 900] {
            assert_eq!(
                tracker.record(false, start + ms(at)),
                None,
                "failure at {at}ms"
            );
        }
        assert_eq!(tracker.record(false, start + ms(1011)), None);
        assert_eq!(
            tracker.record(false, start + ms(2012)),
            Some(Verdict::Unhealthy)
        );
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let start = Instant::now();
        let mut tracker = ProbeTracker::new(&spec(1, 500), start);
        assert_eq!(
            tracker.record(false, start + Duration::from_millis(100)),
            None
        );
        assert_eq!(
            tracker.record(false, start + Duration::from_millis(499)),
            None
        );
        assert_eq!(
            tracker.record(false, start + Duration::from_millis(501)),
            Some(Verdict::Unhealthy)
        );
    }

    #[test]
    fn a_pending_instance_is_probed_fast_then_at_the_interval() {
        let start = Instant::now();
        let mut tracker = ProbeTracker::new(&spec(3, 0), start);
        let interval = Duration::from_secs(1);
        assert_eq!(tracker.next_delay(interval, 0), FIRST_PROBE_INTERVAL);
        assert!(tracker.next_delay(interval, 3) < interval);
        assert_eq!(tracker.next_delay(interval, 30), interval);
        tracker.record(true, start);
        assert_eq!(tracker.next_delay(interval, 0), interval);
    }

    #[tokio::test]
    async fn http_probe_checks_status_and_body() -> io::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            for body in [
                "HTTP/1.1 200 OK\r\n\r\nall ok",
                "HTTP/1.1 200 OK\r\n\r\nall ok",
                "HTTP/1.1 503 Busy\r\n\r\n",
            ] {
                if let Ok((mut stream, _)) = listener.accept().await {
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                }
            }
        });
        assert_eq!(
            http_get("127.0.0.1", port, "/health", Some("ok")).await,
            Ok(())
        );
        assert!(http_get("127.0.0.1", port, "/health", Some("ready"))
            .await
            .is_err());
        assert_eq!(
            http_get("127.0.0.1", port, "/health", None).await,
            Err("HTTP 503".to_string())
        );
        Ok(())
    }
}
