//! Hostile and careless clients of the control socket, and services that abuse the
//! machine: the supervisor must keep serving everyone else, stay alive, and give back
//! what a bad client took (file descriptors, memory).
//!
//! Each test runs a real fleet in the background and reads the supervisor's own
//! figures from /proc (open descriptors in `/proc/PID/fd`, `VmRSS`). Figures over
//! time (RSS and descriptors before and after each case, `ps` latency under a flood)
//! are printed by `scripts/hostile-clients`, never asserted here.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleet::protocol::{MAX_REQUEST, REQUEST_DEADLINE, WRITE_DEADLINE};
use serde_json::Value;

use crate::support::{error_code, pid_alive, wait_until, Project, WAIT};

const ONE_SERVICE: &str = r#"
[services.a]
command = "{helper} --name a"
"#;

const PS: &str = r#"{"version":1,"op":"ps"}"#;

// ---------------------------------------------------------------------------------------
// Helpers

/// Open file descriptors of `pid`.
fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or_else(|err| panic!("cannot list /proc/{pid}/fd: {err}"))
}

/// Descriptors the supervisor may hold beyond a baseline for reasons of its own (a
/// log file being rotated, a client that is just leaving): far fewer than any case
/// here opens.
const FD_SLACK: usize = 5;

/// The supervisor's descriptor count once it has served a client end to end, so that
/// whatever it opens on its first connections is counted.
fn baseline_fds(project: &Project, supervisor: u32) -> usize {
    assert_served(project, "before the case");
    fd_count(supervisor)
}

/// `pid`'s descriptors and what they are (`7 -> socket:[1234]`), for failure messages.
fn fd_listing(pid: u32) -> String {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return format!("(cannot list /proc/{pid}/fd)");
    };
    let mut lines: Vec<(u64, String)> = entries
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            Some((fd, format!("{fd} -> {}", target.display())))
        })
        .collect();
    lines.sort();
    lines
        .into_iter()
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The open-files limit that leaves `pid` exactly `free` more descriptors.
fn limit_leaving_free(pid: u32, free: usize) -> u64 {
    let used: std::collections::HashSet<u64> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|err| panic!("cannot list /proc/{pid}/fd: {err}"))
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    // The limit caps descriptor numbers, not their count: the numbers freed by earlier
    // connections and services count too.
    (0..).filter(|fd| !used.contains(fd)).nth(free).unwrap_or(0)
}

/// Resident memory of `pid` in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/status: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// `pid`'s (soft, hard) limit on open files, from `/proc/PID/limits`.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/limits: {err}"));
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-files line in /proc/{pid}/limits"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match numbers[..] {
        [soft, hard, ..] => (soft, hard),
        _ => panic!("cannot read the open-files limit from {line:?}"),
    }
}

/// Sets `pid`'s limit on open files with util-linux's `prlimit` (the tests run as
/// root, which may raise a hard limit too).
fn set_open_files_limit(pid: u32, soft: u64, hard: u64) {
    let output = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={soft}:{hard}"))
        .output()
        .unwrap_or_else(|err| panic!("cannot run prlimit: {err}"));
    assert!(
        output.status.success(),
        "prlimit --pid={pid} --nofile={soft}:{hard} failed: {output:?}"
    );
}

/// Gives `pid` at least `files` open files, so that the control socket's share (a
/// quarter) holds what a test opens whatever `ulimit -n` the tests run under.
fn ensure_open_files(pid: u32, files: u64) {
    let (soft, hard) = open_files_limit(pid);
    if soft < files {
        set_open_files_limit(pid, files, hard.max(files));
    }
}

/// The same for the test process itself, which holds the client ends.
fn ensure_own_open_files(files: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit works");
    if soft < files {
        setrlimit(
            Resource::RLIMIT_NOFILE,
            files.min(hard.max(files)),
            hard.max(files),
        )
        .unwrap_or_else(|err| panic!("cannot raise the test's open-files limit: {err}"));
    }
}

/// Start time (in clock ticks since boot) of `pid`, which tells a pid from a later
/// process that reused it.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Every process in process group `group`, with its start time.
fn group_members(group: u32) -> Vec<(u32, u64)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After the state: ppid, pgrp, ...; the start time is the 20th after it.
            let pgrp: u32 = fields.get(2)?.parse().ok()?;
            let started: u64 = fields.get(19)?.parse().ok()?;
            (pgrp == group).then_some((pid, started))
        })
        .collect()
}

/// A distinct name of one to three characters for each `n` below 62^3, so that
/// 10,000 of them fit in one request.
fn short_name(mut n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut name = Vec::new();
    loop {
        name.push(DIGITS[n % DIGITS.len()]);
        n /= DIGITS.len();
        if n == 0 {
            break;
        }
        n -= 1;
    }
    String::from_utf8(name).expect("the digits are ASCII")
}

/// The supervisor's own log (a detached fleet's stderr).
fn supervisor_log(project: &Project) -> String {
    fs::read_to_string(project.path(".fleet/supervisor.log")).unwrap_or_default()
}

/// A raw client that, unlike the harness's `Control`, can see the server close the
/// connection.
struct Raw {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Raw {
    fn connect(socket: &Path) -> Raw {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|err| panic!("cannot connect to {socket:?}: {err}"));
        // Long enough for the server's own deadlines to pass first.
        stream
            .set_read_timeout(Some(REQUEST_DEADLINE + WAIT))
            .expect("a read timeout can be set on a connected socket");
        let writer = stream.try_clone().expect("a socket can be duplicated");
        Raw {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Writes all of `bytes`, or says why not (the server may close first).
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// The next line, parsed, or `None` when the server closed the connection.
    fn line(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|err| panic!("reply {line:?} is not JSON: {err}")),
            ),
            Err(err) => panic!("no reply from the supervisor: {err}"),
        }
    }

    fn request(&mut self, line: &str) -> Value {
        self.send(format!("{line}\n").as_bytes())
            .unwrap_or_else(|err| panic!("cannot send {line:?}: {err}"));
        self.line()
            .unwrap_or_else(|| panic!("the supervisor closed the connection after {line:?}"))
    }

    /// Asserts that the server closed the connection (after any lines still queued).
    fn assert_closed(&mut self, after: &str) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            // A close with unread input may reach us as a reset: closed all the same.
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(err) => panic!("the connection stayed open {after}: {err}"),
        }
    }
}

fn assert_served(project: &Project, after: &str) {
    let ps = project.run(&["ps"]);
    assert_eq!(ps.code, 0, "`fleet ps` {after}: {ps:#?}");
    assert!(ps.stdout.contains("running"), "`fleet ps` {after}: {ps:#?}");
}

// ---------------------------------------------------------------------------------------
// Many connections, silent ones, slow ones

#[test]
fn a_thousand_connections_at_once_are_all_served_and_their_descriptors_come_back() {
    const CONNECTIONS: usize = 1000;
    let project = Project::new().manifest(ONE_SERVICE);
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    project.wait_for_state("a", "running", WAIT);
    ensure_open_files(supervisor, 8192);
    ensure_own_open_files(4096);
    let socket = project.endpoint().socket;
    let before = baseline_fds(&project, supervisor);

    // All at once: every one is accepted and served, none refused.
    let mut clients: Vec<Raw> = (0..CONNECTIONS).map(|_| Raw::connect(&socket)).collect();
    for client in &mut clients {
        client
            .send(format!("{PS}\n").as_bytes())
            .expect("a request can be sent on an open connection");
    }
    for (n, client) in clients.iter_mut().enumerate() {
        let reply = client.line().expect("a reply to `ps`");
        assert!(
            reply["ok"]["services"].is_array(),
            "connection {n}: {reply}"
        );
    }
    // They stay open, each holding a descriptor in the supervisor (give or take the
    // transient ones counted before), and another client is still served.
    let open = fd_count(supervisor);
    assert!(
        open + 5 >= before + CONNECTIONS,
        "the supervisor holds {open} descriptors, {before} before {CONNECTIONS} connections"
    );
    assert_served(&project, "with 1000 other connections open");
    drop(clients);
    assert!(
        wait_until(WAIT, || fd_count(supervisor) <= before + FD_SLACK),
        "the supervisor still holds {} descriptors after the connections closed ({before} before)",
        fd_count(supervisor)
    );
    assert!(pid_alive(supervisor));
}

#[test]
fn silent_and_slow_clients_get_request_timeout_and_are_closed() {
    let project = Project::new().manifest(ONE_SERVICE);
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    project.wait_for_state("a", "running", WAIT);
    let socket = project.endpoint().socket;
    let before = baseline_fds(&project, supervisor);
    let before_listing = fd_listing(supervisor);

    // Fifty connections that never send a byte.
    let mut silent: Vec<Raw> = (0..50).map(|_| Raw::connect(&socket)).collect();
    // One that sends a valid request a byte a second (slowloris): it would take 24 s.
    let mut slow = Raw::connect(&socket);
    let mut drip = slow.writer.try_clone().expect("a socket can be duplicated");
    let stop = Arc::new(AtomicBool::new(false));
    let dripping = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for byte in format!("{PS}\n").bytes() {
                if stop.load(Ordering::Relaxed) || drip.write_all(&[byte]).is_err() {
                    return;
                }
                // The pace is the behaviour under test, not a synchronisation.
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // Meanwhile everyone else is served.
    assert_served(&project, "while 51 clients dawdle");

    let reply = slow.line().expect("an answer to the slow client");
    assert_eq!(error_code(&reply), Some("request_timeout"), "{reply}");
    slow.assert_closed("after request_timeout");
    stop.store(true, Ordering::Relaxed);
    dripping.join().expect("the dripping thread ends");
    for client in &mut silent {
        let reply = client.line().expect("an answer to a silent client");
        assert_eq!(error_code(&reply), Some("request_timeout"), "{reply}");
        client.assert_closed("after request_timeout");
    }
    drop(silent);
    assert!(
        wait_until(WAIT, || fd_count(supervisor) <= before + FD_SLACK),
        "the supervisor holds {} descriptors, {before} before:\n{}\n--- before ---\n{before_listing}",
        fd_count(supervisor),
        fd_listing(supervisor)
    );
    assert_served(&project, "after the dawdlers were closed");
    assert!(pid_alive(supervisor));
}

// ---------------------------------------------------------------------------------------
// Bad requests

#[test]
fn oversized_malformed_and_foreign_requests_get_errors_and_the_supervisor_runs_on() {
    let project = Project::new().manifest(
        r#"
[services.first]
command = "{helper} --name first"

[services.second]
command = "{helper} --name second"
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    // Names longer than the 10,000 made up below, which must all be unknown.
    let first = project.wait_for_state("first", "running", WAIT);
    project.wait_for_state("second", "running", WAIT);
    let socket = project.endpoint().socket;
    let rss_before = rss_kib(supervisor);

    // A 1 GiB line: refused at the size limit and closed, never read whole.
    let mut huge = Raw::connect(&socket);
    let mut writer = huge.writer.try_clone().expect("a socket can be duplicated");
    let writing = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        for _ in 0..1024 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let reply = huge.line().expect("an answer to the 1 GiB line");
    assert_eq!(error_code(&reply), Some("request_too_large"), "{reply}");
    huge.assert_closed("after request_too_large");
    let sent = writing.join().expect("the writing thread ends");
    assert!(sent < 1 << 30, "the supervisor took all of the 1 GiB line");
    assert_served(&project, "a 1 GiB line");

    // Per request, on one connection that stays open: each gets its error.
    let mut client = Raw::connect(&socket);
    let mut expect = |request: &[u8], code: &str| {
        let mut line = request.to_vec();
        line.push(b'\n');
        client
            .send(&line)
            .unwrap_or_else(|err| panic!("cannot send: {err}"));
        let reply = client
            .line()
            .unwrap_or_else(|| panic!("closed after {}", String::from_utf8_lossy(request)));
        assert_eq!(
            error_code(&reply),
            Some(code),
            "{} -> {reply}",
            String::from_utf8_lossy(request)
        );
        assert!(reply["error"]["message"].is_string(), "{reply}");
    };
    // Invalid UTF-8, inside and outside a string.
    expect(b"{\"version\":1,\"op\":\"\xff\xfe\"}", "bad_request");
    expect(b"\xc3\x28\xa0\xa1", "bad_request");
    // Valid JSON of the wrong shape.
    expect(
        br#"{"version":1,"op":"command","command":42}"#,
        "bad_request",
    );
    expect(
        br#"{"version":1,"op":"command","command":{"command":"stop","services":"first"}}"#,
        "bad_request",
    );
    expect(br#"{"version":1,"op":["ps"]}"#, "bad_request");
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    expect(nested.as_bytes(), "bad_request");
    // Unknown protocol versions.
    expect(br#"{"version":2,"op":"ps"}"#, "unsupported_version");
    expect(br#"{"version":"1","op":"ps"}"#, "unsupported_version");
    expect(br#"{"version":-1,"op":"ps"}"#, "unsupported_version");
    // A request naming 10,000 services that do not exist: one error, not 10,000 names.
    let names: Vec<String> = (0..10_000)
        .map(|n| format!("\"{}\"", short_name(n)))
        .collect();
    let stop = format!(
        r#"{{"version":1,"op":"command","command":{{"command":"stop","services":[{}]}}}}"#,
        names.join(",")
    );
    assert!(stop.len() < MAX_REQUEST, "the request fits the size limit");
    client
        .send(format!("{stop}\n").as_bytes())
        .expect("the request can be sent");
    let reply = client.line().expect("an answer to 10,000 names");
    assert_eq!(error_code(&reply), Some("unknown_service"), "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.ends_with("and 9990 more") && message.len() < 200,
        "{message}"
    );
    // The connection still serves after all of that.
    assert!(client.request(PS)["ok"]["services"].is_array());

    // 10,000 services by name, past the size limit: refused and closed.
    let names: Vec<String> = (0..10_000).map(|n| format!("\"service-{n}\"")).collect();
    let stop = format!(
        r#"{{"version":1,"op":"command","command":{{"command":"stop","services":[{}]}}}}"#,
        names.join(",")
    );
    let mut big = Raw::connect(&socket);
    let _ = big.send(format!("{stop}\n").as_bytes());
    let reply = big.line().expect("an answer to the oversized request");
    assert_eq!(error_code(&reply), Some("request_too_large"), "{reply}");
    big.assert_closed("after request_too_large");

    // Nothing was stopped or restarted, and the supervisor did not grow by the line.
    assert_served(&project, "every bad request");
    assert_eq!(project.service_status("first")["pid"], first["pid"]);
    assert!(pid_alive(supervisor));
    let rss_after = rss_kib(supervisor);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "the supervisor grew from {rss_before} KiB to {rss_after} KiB"
    );
}

// ---------------------------------------------------------------------------------------
// Subscribers

#[test]
fn a_subscriber_that_never_reads_is_disconnected_and_the_fleet_runs_on() {
    // `flap` exits at once and is restarted every 10 ms: a stream of events and
    // snapshots that fills a subscriber's socket buffer within seconds.
    let project = Project::new().manifest(
        r#"
[services.a]
command = "{helper} --name a"

[services.flap]
command = "false"
restart = "always"
max_restarts = 1000000
restart_window = "1s"
backoff = { initial = "10ms", max = "10ms" }
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    let a = project.wait_for_state("a", "running", WAIT);
    let socket = project.endpoint().socket;
    let rss_before = rss_kib(supervisor);

    let mut stalled = Raw::connect(&socket);
    stalled
        .send(b"{\"version\":1,\"op\":\"subscribe\"}\n")
        .expect("the request can be sent");
    // A subscriber that does read keeps getting lines throughout, in its own thread.
    let mut reading = Raw::connect(&socket);
    let first = reading.request(r#"{"version":1,"op":"subscribe"}"#);
    assert!(first["stream"]["snapshot"].is_object(), "{first}");
    let lines_read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop_reading = Arc::new(AtomicBool::new(false));
    let reader = {
        let (lines_read, stop_reading) = (lines_read.clone(), stop_reading.clone());
        std::thread::spawn(move || {
            while !stop_reading.load(Ordering::Relaxed) {
                match reading.line() {
                    Some(line) if line["stream"].is_object() => {
                        lines_read.fetch_add(1, Ordering::Relaxed);
                    }
                    other => return Some(other),
                }
            }
            None
        })
    };

    // The stalled one is cut off once its socket has stayed full for the write
    // deadline; the supervisor says so in its log.
    let said = "that took no output for";
    assert!(
        wait_until(WRITE_DEADLINE + WAIT, || supervisor_log(&project)
            .contains(said)),
        "no disconnection in the supervisor's log:\n{}",
        supervisor_log(&project)
    );
    assert_served(&project, "a subscriber stalled");
    let read_by_then = lines_read.load(Ordering::Relaxed);
    assert!(
        wait_until(WAIT, || lines_read.load(Ordering::Relaxed)
            > read_by_then + 10),
        "the reading subscriber got no more lines after the stalled one was cut"
    );
    stop_reading.store(true, Ordering::Relaxed);
    let ended = reader.join().expect("the reading thread ends");
    assert!(
        ended.is_none(),
        "the reading subscriber's stream ended: {ended:?}"
    );
    // What was queued before the cut can still be read, then the stream ends.
    stalled.assert_closed("after the write deadline");
    assert_eq!(project.service_status("a")["pid"], a["pid"]);
    assert!(pid_alive(supervisor));
    let rss_after = rss_kib(supervisor);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "the supervisor grew from {rss_before} KiB to {rss_after} KiB"
    );
}

// ---------------------------------------------------------------------------------------
// Another user

/// Where `python3` is for another user: root's own may be a shim in a private folder.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Connects to `socket` as uid/gid 65534 (nobody) with `setpriv`, optionally keeping
/// CAP_DAC_OVERRIDE so that the file modes let it through and the supervisor's own
/// peer check has to refuse it. Prints `errno N` or `reply <first line>`.
///
/// The connecting process itself must be the other user: the kernel records the
/// peer's credentials at connect(2), so a socket connected as root and handed to a
/// process that then drops to uid 65534 would still read as root. Keeping one
/// capability (DAC override, which only bypasses file modes) through the uid change
/// gets that user past the 0700 folder and the 0600 socket without loosening either,
/// as a misconfigured runtime folder would.
fn connect_as_nobody(socket: &Path, past_file_modes: bool) -> String {
    let script = r#"
import socket, sys
client = socket.socket(socket.AF_UNIX)
client.settimeout(20)
try:
    client.connect(sys.argv[1])
except OSError as err:
    print("errno", err.errno)
    sys.exit(0)
print("reply", client.makefile().readline().strip())
"#;
    let mut command = Command::new("setpriv");
    command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if past_file_modes {
        command.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
    }
    let output = command
        .arg(SYSTEM_PYTHON)
        .args(["-c", script])
        .arg(socket)
        .output()
        .unwrap_or_else(|err| panic!("cannot run setpriv: {err}"));
    assert!(
        output.status.success(),
        "setpriv/python3 failed: {output:?}"
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn another_user_is_refused_and_logged() {
    let can_switch_user = nix::unistd::geteuid().is_root()
        && Command::new("setpriv").arg("--version").output().is_ok()
        && Path::new(SYSTEM_PYTHON).exists();
    if !can_switch_user {
        eprintln!("skipped: needs root, setpriv and {SYSTEM_PYTHON} to act as another user");
        return;
    }
    let project = Project::new().manifest(ONE_SERVICE);
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    let a = project.wait_for_state("a", "running", WAIT);
    let socket = project.endpoint().socket;
    let before = baseline_fds(&project, supervisor);

    // The runtime dir (0700) and the socket (0600) keep another user out...
    let plain = connect_as_nobody(&socket, false);
    assert_eq!(plain, format!("errno {}", nix::errno::Errno::EACCES as i32));
    // ... and one who gets past file modes is refused by the supervisor's peer check.
    let privileged = connect_as_nobody(&socket, true);
    let reply: Value = serde_json::from_str(
        privileged
            .strip_prefix("reply ")
            .unwrap_or_else(|| panic!("no reply: {privileged:?}")),
    )
    .unwrap_or_else(|err| panic!("{privileged:?} is not JSON: {err}"));
    assert_eq!(error_code(&reply), Some("permission_denied"), "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("65534")),
        "{reply}"
    );
    // The supervisor's log names who was refused.
    assert!(
        wait_until(WAIT, || supervisor_log(&project)
            .contains("refused a control connection from uid 65534")),
        "no refusal in the supervisor's log:\n{}",
        supervisor_log(&project)
    );
    // The owner is still served, nothing changed, and the refused connection's
    // descriptor is back.
    assert_served(&project, "another user was refused");
    assert_eq!(project.service_status("a")["pid"], a["pid"]);
    assert!(
        wait_until(WAIT, || fd_count(supervisor) <= before + FD_SLACK),
        "the supervisor holds {} descriptors, {before} before",
        fd_count(supervisor)
    );
}

// ---------------------------------------------------------------------------------------
// Services that abuse the machine

#[test]
fn a_service_that_cannot_get_file_descriptors_fails_clearly_and_the_rest_is_served() {
    let project = Project::new().manifest(
        r#"
[services.a]
command = "{helper} --name a"

[services.many]
command = "sleep 600"
replicas = 40
max_restarts = 2
backoff = { initial = "10ms", max = "50ms" }
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    let a = project.wait_for_state("a", "running", WAIT);
    let (soft, hard) = open_files_limit(supervisor);
    let rows = || -> Vec<Value> {
        project
            .ps_json()
            .into_iter()
            .filter(|row| row["service"] == "many")
            .collect()
    };
    let stop = project.run(&["stop", "many"]);
    assert_eq!(stop.code, 0, "{stop:#?}");
    // Counted once their pipes are closed.
    assert!(
        wait_until(WAIT, || rows().iter().all(|row| row["state"] == "stopped")),
        "the replicas did not stop: {:#?}",
        rows()
    );
    // Room for about half of the replicas' pipes (two descriptors each).
    let low = limit_leaving_free(supervisor, 40);
    set_open_files_limit(supervisor, low, hard);

    let start = project.run(&["start", "many"]);
    assert_eq!(start.code, 0, "{start:#?}");
    let settled = |row: &Value| row["state"] == "running" || row["state"] == "failed";
    assert!(
        wait_until(WAIT, || rows().iter().all(settled)),
        "the replicas did not settle: {:#?}",
        rows()
    );
    let settled_rows = rows();
    let failed: Vec<&Value> = settled_rows
        .iter()
        .filter(|row| row["state"] == "failed")
        .collect();
    let running = settled_rows
        .iter()
        .filter(|row| row["state"] == "running")
        .count();
    assert!(
        !failed.is_empty() && running > 0,
        "expected some replicas to start and some to fail: {settled_rows:#?}"
    );
    for row in &failed {
        let said = row["last_event"].as_str().unwrap_or_default();
        assert!(
            said.contains(&format!("fleet has reached its limit of {low} open files"))
                && said.contains("ulimit -n"),
            "{row:#}"
        );
        let name = row["name"].as_str().unwrap_or_default();
        let log = fs::read_to_string(project.path(&format!(".fleet/logs/{name}.log")))
            .unwrap_or_default();
        assert!(log.contains("Too many open files"), "{name}.log:\n{log}");
    }
    assert_served(&project, "replicas failed for want of descriptors");
    assert_eq!(project.service_status("a")["pid"], a["pid"]);
    assert!(pid_alive(supervisor));

    // With its limit back, the failed replicas start.
    set_open_files_limit(supervisor, soft, hard);
    let restart = project.run(&["restart", "many"]);
    assert_eq!(restart.code, 0, "{restart:#?}");
    let all_running = || rows().iter().all(|row| row["state"] == "running");
    assert!(wait_until(WAIT, all_running), "{:#?}", rows());
}

#[test]
fn with_every_descriptor_taken_the_supervisor_still_answers_with_its_spare() {
    let project = Project::new().manifest(ONE_SERVICE);
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    project.wait_for_state("a", "running", WAIT);
    let socket = project.endpoint().socket;
    // A limit just above the supervisor's own descriptors, and one connection for
    // each free number below it: then not one descriptor is left. Descriptors far
    // above the rest were inherited from the test's environment (a CI runner's pipe)
    // and are left out: a descriptor above the limit stays open, but closing it
    // frees no usable number.
    let (_, hard) = open_files_limit(supervisor);
    let mut used: Vec<u64> = fs::read_dir(format!("/proc/{supervisor}/fd"))
        .expect("the supervisor's descriptors can be listed")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    used.sort_unstable();
    let own_end = used
        .windows(2)
        .find(|pair| pair[1] - pair[0] > 64)
        .map(|pair| pair[0])
        .or(used.last().copied())
        .unwrap_or(0);
    let limit = own_end + 1;
    set_open_files_limit(supervisor, limit, hard);
    let free_below_limit = || {
        let open = fs::read_dir(format!("/proc/{supervisor}/fd"))
            .expect("the supervisor's descriptors can be listed")
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u64>().ok())
            .filter(|fd| *fd < limit)
            .count();
        usize::try_from(limit).expect("a small number") - open
    };
    // One at a time, each served before the next, so that no filler takes the spare;
    // the count is taken again each time, as the supervisor's own short-lived
    // descriptors come and go.
    let mut fillers: Vec<Raw> = Vec::new();
    let filled = wait_until(WAIT, || {
        if free_below_limit() == 0 {
            return true;
        }
        let mut filler = Raw::connect(&socket);
        assert!(
            filler.request(PS)["ok"].is_object(),
            "a filler was not served"
        );
        fillers.push(filler);
        false
    });
    assert!(filled, "{} descriptors still free", free_below_limit());

    assert_served(&project, "with no descriptor left");
    assert_served(&project, "with no descriptor left, a second time");
    assert!(
        supervisor_log(&project).contains("serving a control connection with its spare one"),
        "the spare was not used:\n{}",
        supervisor_log(&project)
    );
    assert!(pid_alive(supervisor));
}

#[test]
fn a_service_with_a_thousand_children_is_gone_whole_after_stop() {
    let project = Project::new().manifest(
        r#"
[services.a]
command = "{helper} --name a"

[services.forker]
command = "i=0; while [ $$i -lt 1000 ]; do sleep 600 & i=$$((i+1)); done; wait"
"#,
    );
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    let a = project.wait_for_state("a", "running", WAIT);
    let forker = project.wait_for_state("forker", "running", WAIT);
    let group = forker["pid"].as_u64().expect("a running service has a pid") as u32;
    // The shell and its thousand children.
    let mut members = Vec::new();
    assert!(
        wait_until(WAIT, || {
            members = group_members(group);
            members.len() > 1000
        }),
        "only {} processes in the group",
        members.len()
    );
    assert_served(&project, "with a thousand children forked");

    let stop = project.run(&["stop", "forker"]);
    assert_eq!(stop.code, 0, "{stop:#?}");
    let left = || -> Vec<u32> {
        members
            .iter()
            .filter(|(pid, started)| start_time(*pid) == Some(*started))
            .map(|(pid, _)| *pid)
            .collect()
    };
    assert!(
        wait_until(WAIT, || left().is_empty()),
        "{} of {} processes outlived `fleet stop`: {:?}",
        left().len(),
        members.len(),
        left().iter().take(20).collect::<Vec<_>>()
    );
    assert_eq!(project.service_status("a")["pid"], a["pid"]);
    assert!(pid_alive(supervisor));
}

#[test]
fn a_service_flooding_its_output_leaves_the_supervisor_serving() {
    // `yes` writes 100-byte lines as fast as the pipe takes them.
    let project = Project::new().manifest(&format!(
        r#"
[project]
log_max_size = "20MB"
log_keep = 1

[services.a]
command = "{{helper}} --name a"

[services.flood]
command = ["yes", "{}"]
"#,
        "f".repeat(99)
    ));
    let fleet = project.up_detached(&[]);
    assert_eq!(fleet.up.code, 0, "{:#?}", fleet.up);
    let supervisor = fleet.supervisor_pid();
    let a = project.wait_for_state("a", "running", WAIT);
    let flood = project.wait_for_state("flood", "running", WAIT);
    let flood_pid = flood["pid"].as_u64().expect("a running service has a pid") as u32;
    assert!(
        wait_until(WAIT, || fs::metadata(project.log_path("flood"))
            .is_ok_and(|meta| meta.len() > 1 << 20)),
        "the flood did not reach its log"
    );
    for _ in 0..10 {
        assert_served(&project, "while a service floods its output");
    }
    let rss = rss_kib(supervisor);
    assert!(
        rss < 256 * 1024,
        "the supervisor holds {rss} KiB while flooded"
    );

    let stop = project.run(&["stop", "flood"]);
    assert_eq!(stop.code, 0, "{stop:#?}");
    assert!(wait_until(WAIT, || !pid_alive(flood_pid)));
    assert_eq!(project.service_status("a")["pid"], a["pid"]);
    assert!(pid_alive(supervisor));
}
