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
//! Readiness is not liveness. Until its first pass an instance is *starting*, and no
//! number of failures makes it unhealthy: a JVM or a first `initdb` may need a minute.
//! The task only reports a starting instance's probe error when it changes, for
//! `fleet ps` to show. After the first pass, `retries` failures in a row (outside
//! `start_period`) make it unhealthy.
//!
//! While an instance has not yet passed, it is probed faster than `interval` (starting
//! at [`FIRST_PROBE_INTERVAL`] and growing to `interval`), so a service that is ready in
//! 10 ms is reported healthy in about that time, not a whole interval later.
//!
//! A probe of a port whose socket several instances share (`socket`) must not be
//! answered by another instance: during a start-first overlap the old one accepts on
//! the same socket. So such a probe connects, finds in `/proc` which process accepted
//! the connection, and only counts it if that process belongs to the probed instance;
//! a connection another instance took is dropped and the probe connects again.

pub mod docker;
pub mod http;

use std::io;
use std::os::unix::net::UnixDatagram as StdUnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UnixDatagram};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::logs::{LogBatch, LogHub, ServiceLog};
use crate::manifest::{HealthSpec, Probe};
use crate::runtime::ports::{self, Acceptance};
use crate::runtime::process::{ProcessRuntime, SpawnRequest, MARKER_VAR};

/// The first probe of a new instance comes this soon; the pace then slows by half
/// again per attempt up to `interval`.
pub const FIRST_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// The slowest pace of a starting instance's TCP or HTTP probe: a refused connect
/// costs next to nothing, and readiness is then noticed within 100 ms however long
/// the start takes.
pub const STARTING_PACE: Duration = Duration::from_millis(100);
/// The same for an `exec` probe, which spawns a process each time.
pub const STARTING_PACE_EXEC: Duration = Duration::from_millis(500);

/// What a probe task reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// It had passed, then failed `retries` probes in a row.
    Unhealthy,
    /// It has not passed yet and its probe failed with a new error: information for
    /// `fleet ps`, never a reason to stop it.
    Failing,
}

/// Pure bookkeeping of probe outcomes for one instance.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    retries: u32,
    start_period: Duration,
    started: Instant,
    consecutive_failures: u32,
    /// Probes in a row whose every connection another instance on the same socket
    /// took (see [`ProbeTracker::record_unreached`]).
    unreached: u32,
    verdict: Option<Verdict>,
}

/// Probes in a row that never reach their instance (the socket's other instances
/// took every connection) before one counts as failed: under load, with replicas
/// sharing a socket, a probe may miss its instance for a whole timeout without
/// anything being wrong with it; an instance that never accepts still turns
/// unhealthy, after `retries` times this many probes.
const UNREACHED_PER_FAILURE: u32 = 5;

impl ProbeTracker {
    pub fn new(spec: &HealthSpec, started: Instant) -> ProbeTracker {
        ProbeTracker {
            retries: spec.retries.max(1),
            start_period: spec.start_period,
            started,
            consecutive_failures: 0,
            unreached: 0,
            verdict: None,
        }
    }

    /// Records a probe that timed out without reaching its instance: every connection
    /// went to another instance on the shared socket. Counts as a failure only every
    /// [`UNREACHED_PER_FAILURE`]th time in a row.
    pub fn record_unreached(&mut self, now: Instant) -> Option<Verdict> {
        self.unreached += 1;
        if self.unreached < UNREACHED_PER_FAILURE {
            return None;
        }
        self.record(false, now)
    }

    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
    }

    /// Records one probe outcome; returns the new verdict if it changed.
    pub fn record(&mut self, passed: bool, now: Instant) -> Option<Verdict> {
        self.unreached = 0;
        if passed {
            self.consecutive_failures = 0;
            return self.change(Verdict::Healthy);
        }
        // Starting: however long it takes, failures before the first pass never count
        // (only the service's `start_timeout` can end a start).
        self.verdict?;
        if now.duration_since(self.started) < self.start_period {
            // Within `start_period` of the start, even a service that answered once
            // may stumble (workers restarting, caches warming) without consequence.
            return None;
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
    /// While starting, the pace grows from [`FIRST_PROBE_INTERVAL`] to `starting_pace`
    /// at most (never slower than `interval`), so readiness is noticed as quickly after
    /// 5 minutes of start as after 50 ms.
    pub fn next_delay(
        &self,
        interval: Duration,
        starting_pace: Duration,
        attempt: u32,
    ) -> Duration {
        if self.verdict.is_some() {
            return interval;
        }
        let limit = interval.min(starting_pace);
        let mut delay = FIRST_PROBE_INTERVAL;
        for _ in 0..attempt.min(40) {
            delay = delay.mul_f64(1.5);
            if delay >= limit {
                return limit;
            }
        }
        delay.min(limit)
    }
}

/// What must exist before the instance is spawned: the notify socket it will be told
/// about, and the log subscription that must not miss its first line.
pub struct ProbeSetup {
    spec: HealthSpec,
    notify: Option<(StdUnixDatagram, String)>,
    log_lines: Option<broadcast::Receiver<Arc<LogBatch>>>,
    exec: Option<ExecContext>,
    /// The main pid of the instance whose process tree must accept a TCP or HTTP
    /// probe's connection for it to count (the port is a socket instances share).
    acceptor: Option<u32>,
    /// The port is a container's published port: a proxy may accept for it.
    behind_proxy: bool,
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
    /// Counts a TCP or HTTP probe only when `pid` or one of its descendants accepted
    /// its connection: for a port on a socket that other instances also accept on.
    pub fn accepted_by(&mut self, pid: u32) {
        self.acceptor = Some(pid);
    }

    /// The probed port is a container's published port. Docker's userland proxy
    /// accepts every connection there and closes it at once when nothing listens in
    /// the container, so a TCP probe must see the connection stay open.
    pub fn behind_proxy(&mut self) {
        self.behind_proxy = true;
    }

    /// Sends a TCP probe of `port` to `host:target` instead: a container's published
    /// port is probed at the container's own address, behind Docker's proxy.
    pub fn retarget_tcp(&mut self, port: u16, host: String, target: u16) {
        if let Probe::Tcp {
            host: probed_host,
            port: probed_port,
        } = &mut self.spec.probe
            && *probed_port == port
        {
            *probed_host = host;
            *probed_port = target;
            self.behind_proxy = false;
        }
    }

    /// Whether the probe connects to `port` (TCP or HTTP).
    pub fn probes_port(&self, port: u16) -> bool {
        match &self.spec.probe {
            Probe::Tcp { port: probed, .. } => *probed == port,
            Probe::Http { target, .. } => target.port == port,
            _ => false,
        }
    }

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
        acceptor: None,
        behind_proxy: false,
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
                let mut last_error: Option<String> = None;
                loop {
                    let reach = AtomicU8::new(REACH_NONE);
                    let timed_out = tokio::time::timeout(
                        setup.spec.timeout,
                        run_once(probe, &setup, &log, &reach),
                    )
                    .await;
                    let unreached =
                        timed_out.is_err() && reach.load(Ordering::Relaxed) == REACH_ELSEWHERE;
                    let outcome = match timed_out {
                        Ok(outcome) => outcome,
                        Err(_) if unreached => Err(format!(
                            "no connection reached this instance within {} (others on the socket took them)",
                            crate::event::format_duration_ms(
                                setup.spec.timeout.as_millis().try_into().unwrap_or(u64::MAX)
                            )
                        )),
                        Err(_) => Err(format!(
                            "timed out after {}",
                            crate::event::format_duration_ms(
                                setup
                                    .spec
                                    .timeout
                                    .as_millis()
                                    .try_into()
                                    .unwrap_or(u64::MAX)
                            )
                        )),
                    };
                    let passed = outcome.is_ok();
                    let verdict = if unreached {
                        tracker.record_unreached(Instant::now())
                    } else {
                        tracker.record(passed, Instant::now())
                    };
                    match (verdict, outcome) {
                        (Some(verdict), outcome) => {
                            report(verdict, outcome.err().unwrap_or_default());
                        }
                        (None, Err(error)) if tracker.verdict().is_none() => {
                            // Starting: say what the probe sees, once per new error.
                            if last_error.as_deref() != Some(error.as_str()) {
                                report(Verdict::Failing, error.clone());
                                last_error = Some(error);
                            }
                        }
                        (None, _) => {}
                    }
                    let pace = match probe {
                        Probe::Exec(_) => STARTING_PACE_EXEC,
                        _ => STARTING_PACE,
                    };
                    tokio::time::sleep(tracker.next_delay(setup.spec.interval, pace, attempt))
                        .await;
                    attempt += 1;
                }
            }
        }
    })
}

/// What the connections of one probe reached, for a probe with an acceptor.
const REACH_NONE: u8 = 0;
/// Only other instances on the socket took its connections so far.
const REACH_ELSEWHERE: u8 = 1;
/// Its own instance accepted one.
const REACH_OWN: u8 = 2;

async fn run_once(
    probe: &Probe,
    setup: &ProbeSetup,
    log: &ServiceLog,
    reach: &AtomicU8,
) -> Result<(), String> {
    let acceptor = setup.acceptor;
    let exec = setup.exec.as_ref();
    match probe {
        Probe::Tcp { host, port } => {
            let stream = connect(host, *port, acceptor, reach)
                .await
                .map_err(|err| format!("{host}:{port}: {err}"))?;
            if setup.behind_proxy {
                stays_open(stream)
                    .await
                    .map_err(|err| format!("{host}:{port}: {err}"))?;
            }
            Ok(())
        }
        Probe::Http {
            target,
            expect_body,
        } => match acceptor {
            None => http::get(target, expect_body.as_deref()).await,
            Some(_) => {
                let stream = connect(&target.host, target.port, acceptor, reach).await?;
                http::exchange(stream, target, expect_body.as_deref()).await
            }
        },
        Probe::Exec(command) => {
            let Some(exec) = exec else {
                return Err("exec probe without context".into());
            };
            run_exec(command.argv(), exec, log).await
        }
        Probe::Log(_) | Probe::Notify { .. } | Probe::Docker => Ok(()),
    }
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
        processes: exec.processes.clone(),
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

/// How long a connection through Docker's proxy must stay open to show that something
/// listens behind it: the proxy closes it within a millisecond or two otherwise.
const PROXY_SETTLE: Duration = Duration::from_millis(50);

/// Passes when the connection stays open (or the server greets) for [`PROXY_SETTLE`];
/// fails when the other end closes or resets it at once.
async fn stays_open(mut stream: TcpStream) -> Result<(), String> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(PROXY_SETTLE, stream.read(&mut byte)).await {
        Err(_) | Ok(Ok(1..)) => Ok(()),
        Ok(Ok(0)) => Err("closed at once: nothing listens behind the published port yet".into()),
        Ok(Err(err)) => Err(http::describe_io(&err)),
    }
}

/// Connects to `host:port`. With an `acceptor`, returns only a connection that the
/// acceptor's process tree accepted: on a socket fleet holds, the kernel completes
/// every connect on its own, so a connect alone proves nothing, and another instance
/// may accept it. The caller's timeout ends the attempts.
/// `reach` says whether a connection reached the acceptor or only other instances.
async fn connect(
    host: &str,
    port: u16,
    acceptor: Option<u32>,
    reach: &AtomicU8,
) -> Result<TcpStream, String> {
    let Some(acceptor) = acceptor else {
        return TcpStream::connect((host, port))
            .await
            .map_err(|err| http::describe_io(&err));
    };
    // Between attempts whose connection another instance took: short at first (the
    // next one is likely ours), then longer, so that a server that accepts and closes
    // at once is not hit with a connection per millisecond for the whole timeout.
    let mut retry_pause = Duration::from_millis(1);
    loop {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|err| http::describe_io(&err))?;
        let (client, server) = match (stream.local_addr(), stream.peer_addr()) {
            (Ok(client), Ok(server)) => (client, server),
            (Err(err), _) | (_, Err(err)) => return Err(http::describe_io(&err)),
        };
        // An idle server accepts within microseconds; poll /proc briefly, then less
        // often, so a slow one costs little. Reading /proc/net/tcp takes tens of
        // milliseconds on a machine with many connections: it runs on the blocking
        // pool (never on the threads that drain the services' output), and the pause
        // is at least four times what the last read took.
        let mut pause = Duration::from_micros(500);
        loop {
            let started = Instant::now();
            let lookup =
                tokio::task::spawn_blocking(move || match ports::acceptance(client, server) {
                    Acceptance::Accepted { inode } => {
                        Some(ports::tree_holds_socket(acceptor, inode))
                    }
                    Acceptance::Queued => None,
                    Acceptance::Gone => Some(false),
                })
                .await;
            match lookup {
                Ok(None) => {
                    pause = pause.max(started.elapsed() * 4);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20).max(pause));
                }
                Ok(Some(true)) => {
                    reach.store(REACH_OWN, Ordering::Relaxed);
                    return Ok(stream);
                }
                // Another instance took it (or it is already closed): try again.
                Ok(Some(false)) => {
                    let _ = reach.compare_exchange(
                        REACH_NONE,
                        REACH_ELSEWHERE,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    break;
                }
                Err(_) => return Err("the connection's owner could not be looked up".into()),
            }
        }
        drop(stream);
        tokio::time::sleep(retry_pause).await;
        retry_pause = (retry_pause * 2).min(Duration::from_millis(50));
    }
}

struct KillOnDrop {
    pid: u32,
    marker: String,
    processes: ProcessRuntime,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.processes
                .kill_group_and_escaped(self.pid, &self.marker);
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
    fn probes_that_never_reach_their_replica_count_only_every_fifth_time() {
        let start = Instant::now();
        let mut tracker = ProbeTracker::new(&spec(3, 0), start);
        assert_eq!(tracker.record(true, start), Some(Verdict::Healthy));
        // Under load its siblings on the socket took every connection: not a failure ...
        for _ in 0..(UNREACHED_PER_FAILURE * 3 - 1) {
            assert_eq!(tracker.record_unreached(start), None);
        }
        // ... until it never got one for `retries` times five probes.
        assert_eq!(tracker.record_unreached(start), Some(Verdict::Unhealthy));
        // A probe that reaches it resets the count.
        assert_eq!(tracker.record(true, start), Some(Verdict::Healthy));
        for _ in 0..4 {
            assert_eq!(tracker.record_unreached(start), None);
        }
        assert_eq!(tracker.record(true, start), None);
        for _ in 0..(UNREACHED_PER_FAILURE * 2) {
            assert_eq!(tracker.record_unreached(start), None);
        }
        assert_eq!(tracker.record(false, start), Some(Verdict::Unhealthy));
    }

    #[test]
    fn a_slow_starter_is_never_unhealthy_before_its_first_pass() {
        // Regression: a service that needed 5 s to listen was declared unhealthy after
        // `retries * interval` (3 s) and killed in a loop, so it could never start.
        let start = Instant::now();
        let mut tracker = ProbeTracker::new(&spec(3, 0), start);
        for second in 0..600 {
            assert_eq!(
                tracker.record(false, start + Duration::from_secs(second)),
                None,
                "failure at {second}s"
            );
        }
        assert_eq!(tracker.verdict(), None);
        assert_eq!(
            tracker.record(true, start + Duration::from_secs(601)),
            Some(Verdict::Healthy)
        );
        // Liveness from now on: `retries` failures in a row.
        assert_eq!(
            tracker.record(false, start + Duration::from_secs(602)),
            None
        );
        assert_eq!(
            tracker.record(false, start + Duration::from_secs(603)),
            None
        );
        assert_eq!(
            tracker.record(false, start + Duration::from_secs(604)),
            Some(Verdict::Unhealthy)
        );
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_even_after_a_pass() {
        let start = Instant::now();
        let mut tracker = ProbeTracker::new(&spec(1, 500), start);
        let ms = Duration::from_millis;
        assert_eq!(tracker.record(true, start + ms(50)), Some(Verdict::Healthy));
        assert_eq!(tracker.record(false, start + ms(100)), None);
        assert_eq!(tracker.record(false, start + ms(499)), None);
        assert_eq!(
            tracker.record(false, start + ms(501)),
            Some(Verdict::Unhealthy)
        );
    }

    #[test]
    fn a_pending_instance_is_probed_fast_then_at_the_interval() {
        let start = Instant::now();
        let mut tracker = ProbeTracker::new(&spec(3, 0), start);
        let interval = Duration::from_secs(1);
        let pace = STARTING_PACE;
        assert_eq!(tracker.next_delay(interval, pace, 0), FIRST_PROBE_INTERVAL);
        assert!(tracker.next_delay(interval, pace, 3) < pace);
        // However long the start: never slower than the starting pace.
        assert_eq!(tracker.next_delay(interval, pace, 3000), pace);
        // Nor slower than the interval, if that is shorter.
        let short = Duration::from_millis(50);
        assert_eq!(tracker.next_delay(short, pace, 3000), short);
        tracker.record(true, start);
        assert_eq!(tracker.next_delay(interval, pace, 0), interval);
    }

    #[tokio::test]
    async fn a_connection_a_proxy_closes_at_once_is_not_a_listener() -> io::Result<()> {
        // Docker's userland proxy accepts on a published port and closes the
        // connection when nothing listens in the container: that must not pass.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            for close_at_once in [true, false] {
                if let Ok((stream, _)) = listener.accept().await
                    && !close_at_once
                {
                    held.push(stream);
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(held);
        });
        let closed = stays_open(TcpStream::connect(address).await?).await;
        assert!(closed.is_err(), "{closed:?}");
        assert_eq!(stays_open(TcpStream::connect(address).await?).await, Ok(()));
        server.abort();
        Ok(())
    }

    #[tokio::test]
    async fn a_socket_probe_waits_for_its_own_instance_to_accept() -> io::Result<()> {
        // fleet holds the socket; the connection sits in the accept queue until this
        // test (standing in for the instance) accepts it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let acceptor = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let accepted = listener.accept();
            std::thread::sleep(Duration::from_millis(500));
            drop(accepted);
        });
        let started = Instant::now();
        let stream = connect(
            "127.0.0.1",
            port,
            Some(std::process::id()),
            &AtomicU8::new(REACH_NONE),
        )
        .await;
        assert!(stream.is_ok(), "{:?}", stream.err());
        assert!(started.elapsed() >= Duration::from_millis(100));
        // A process that is not us never accepts it: the probe keeps trying.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let reach = AtomicU8::new(REACH_NONE);
        let stranger = tokio::time::timeout(
            Duration::from_millis(300),
            connect("127.0.0.1", port, Some(1), &reach),
        )
        .await;
        // Queued, not taken by anyone: a plain failure, not a miss.
        assert_eq!(reach.load(Ordering::Relaxed), REACH_NONE);
        assert!(
            stranger.is_err(),
            "a connection nobody of pid 1 accepted counted"
        );
        let _ = acceptor.join();
        Ok(())
    }
}
