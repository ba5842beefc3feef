//! `helper`: one binary that plays any well- or badly-behaved service for fleet's integration
//! tests, benchmarks and demo. Every behaviour is a flag; flags combine.
//!
//! Theory of operation, in order (each step only if its flag is given):
//! 1. adopt a socket passed by fleet (`LISTEN_FDS`), before any child could inherit it;
//! 2. internal modes: `--setsid` (become a session leader), `--daemonize PIDFILE` (spawn an
//!    orphan-to-be, record its pid, exit at once);
//! 3. spawn the grandchildren, and only then ignore SIGTERM, because an ignored signal stays
//!    ignored across exec and the children should die on a plain TERM;
//! 4. `--pidfile`, `--hold-port`, the `--ready-after` delay, then listen and serve HTTP in a
//!    thread, then `READY=1` to `NOTIFY_SOCKET` (unless `--no-notify`);
//! 5. print `<name> started pid <pid>`, then the bulk outputs (`--print`, `--print-stderr`,
//!    `--invalid-utf8`, `--no-newline` last so its text really is the final byte);
//! 6. `--lines-per-sec` ticks in a thread; then exit after `--exit-after`, or live forever, or,
//!    when only bulk-output flags were given, exit 0 as soon as they are written (so
//!    `helper --print 1000000 > file` terminates and the file holds exactly the lines).
//!
//! Status lines are prefixed with `<name> `; data lines (`line ...`, `err  ...`, `tick <n>`,
//! `--no-newline` text, the invalid UTF-8 line) are not.

mod common;

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use common::{Reply, Request, Response};

const USAGE: &str = "\
usage: helper [FLAGS]   (no flags: print `helper started pid <pid>` and sleep forever)
  --name NAME                prefix of status lines (default helper)
  --port N                   serve HTTP on 127.0.0.1:N (0 = any): / /health /pid
                             (a socket passed by fleet via LISTEN_FDS is used instead)
  --print N                  print N lines of exactly 100 bytes to stdout, then flush
  --print-stderr N           the same to stderr, prefix `err  `
  --no-newline TEXT          write TEXT to stdout without a newline
  --invalid-utf8             write a line containing the bytes 0xff 0xfe
  --exit-after MS            after MS ms print `exiting with N` and exit N
  --exit-code N              N for --exit-after (default 1; alone it means --exit-after 0)
  --ignore-sigterm           ignore SIGTERM
  --grandchild PIDFILE       spawn a sleeping child, write its pid to PIDFILE
  --setsid-grandchild PIDFILE  the same, but the child calls setsid() (leaves our group)
  --double-fork PIDFILE      a child spawns a sleeper, writes its pid, exits: an orphan
  --sleep-forever            just sleep
  --pidfile PATH             write our own pid to PATH
  --unhealthy-after MS       /health answers 503 from MS ms after listening
  --hang-health-after MS     /health never answers from MS ms after listening
  --ready-after MS           wait MS ms before listening and READY=1
  --notify                   send READY=1 to NOTIFY_SOCKET (the default when it is set)
  --no-notify                never write to NOTIFY_SOCKET
  --lines-per-sec N          print `tick <n>` N times a second, forever
  --hold-port N              bind 127.0.0.1:N, listen, never accept
internal: --setsid, --daemonize PIDFILE (used by the flags above when re-executing helper)";

/// Every `--print` line is exactly this long, newline included, so byte counts are exact.
const PRINT_LINE_LEN: usize = 100;
/// Where the zero-padded sequence number starts in a `--print` line (after `line ` / `err  `).
const PRINT_NUMBER_AT: usize = 5;
const PRINT_NUMBER_DIGITS: usize = 10;
/// How long a parent waits for a `--setsid` child to record its pid.
const CHILD_PIDFILE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Args {
    name: Option<String>,
    port: Option<u16>,
    print: u64,
    print_stderr: u64,
    no_newline: Option<String>,
    invalid_utf8: bool,
    exit_after: Option<Duration>,
    exit_code: Option<u8>,
    ignore_sigterm: bool,
    grandchild: Option<PathBuf>,
    setsid_grandchild: Option<PathBuf>,
    double_fork: Option<PathBuf>,
    sleep_forever: bool,
    pidfile: Option<PathBuf>,
    unhealthy_after: Option<Duration>,
    hang_health_after: Option<Duration>,
    ready_after: Option<Duration>,
    notify: bool,
    no_notify: bool,
    lines_per_sec: Option<u32>,
    hold_port: Option<u16>,
    setsid: bool,
    daemonize: Option<PathBuf>,
}

impl Args {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("helper")
    }

    fn has_bulk_output(&self) -> bool {
        self.print > 0 || self.print_stderr > 0 || self.no_newline.is_some() || self.invalid_utf8
    }

    /// True when some flag asks for a process that lives on (or exits on its own schedule);
    /// false for plain output jobs.
    fn has_lifetime_flag(&self) -> bool {
        self.port.is_some()
            || self.exit_after.is_some()
            || self.exit_code.is_some()
            || self.ignore_sigterm
            || self.grandchild.is_some()
            || self.setsid_grandchild.is_some()
            || self.double_fork.is_some()
            || self.sleep_forever
            || self.pidfile.is_some()
            || self.unhealthy_after.is_some()
            || self.hang_health_after.is_some()
            || self.ready_after.is_some()
            || self.notify
            || self.lines_per_sec.is_some()
            || self.hold_port.is_some()
            || self.setsid
    }
}

fn main() -> ExitCode {
    let args = parse_args(env::args_os().skip(1).collect());
    let name = args.name().to_string();
    // First, before any child could inherit the socket or the LISTEN_* variables.
    let inherited = common::take_activated_listener()
        .unwrap_or_else(|error| common::fail(&format!("{name}: socket activation: {error}")));

    if args.setsid
        && let Err(error) = nix::unistd::setsid()
    {
        common::fail(&format!("{name}: setsid failed: {error}"));
    }
    if let Some(pidfile) = &args.daemonize {
        daemonize(&name, pidfile);
        return ExitCode::SUCCESS;
    }

    if let Some(pidfile) = &args.grandchild {
        let child = spawn_self(&["--sleep-forever", "--name", &format!("{name}-child")]);
        write_pid_file(pidfile, child);
        common::say(&format!("{name} grandchild {child}"));
    }
    if let Some(pidfile) = &args.setsid_grandchild {
        let child = spawn_self(&[
            "--setsid",
            "--sleep-forever",
            "--name",
            &format!("{name}-child"),
            "--pidfile",
            &path_arg(pidfile),
        ]);
        // The child writes the pidfile itself, after setsid(), so once it exists the child is
        // already out of our process group. Wait for it so our own readiness implies that.
        wait_for_pid_file(pidfile, child, &name);
        common::say(&format!("{name} grandchild {child} (setsid)"));
    }
    if let Some(pidfile) = &args.double_fork {
        double_fork(&name, pidfile);
    }
    if args.ignore_sigterm {
        // SAFETY: SIG_IGN installs no handler code, so there is nothing that could run in
        // signal context and no async-signal-safety requirement to uphold.
        if let Err(error) = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGTERM,
                nix::sys::signal::SigHandler::SigIgn,
            )
        } {
            common::fail(&format!("{name}: cannot ignore SIGTERM: {error}"));
        }
        common::say(&format!("{name} ignoring SIGTERM"));
    }
    if let Some(pidfile) = &args.pidfile {
        write_pid_file(pidfile, std::process::id());
    }
    // Held until exit: the point is that nobody else can bind the port.
    let _held_port = args.hold_port.map(|port| hold_port(&name, port));

    if let Some(delay) = args.ready_after {
        thread::sleep(delay);
    }
    if args.port.is_some() || inherited.is_some() {
        let listener = common::bind_or_inherit(&name, args.port.unwrap_or(0), inherited);
        start_http(listener, &args);
    }
    if !args.no_notify {
        if args.notify && env::var_os("NOTIFY_SOCKET").is_none() {
            eprintln!("{name}: --notify given but NOTIFY_SOCKET is not set");
        }
        common::announce_ready(&name);
    }

    let output_only = args.has_bulk_output() && !args.has_lifetime_flag();
    if !output_only {
        common::say(&format!("{name} started pid {}", std::process::id()));
    }
    if let Err(error) = write_bulk_output(&args) {
        // Most likely our reader went away (EPIPE); there is nobody to tell but stderr.
        eprintln!("{name}: writing output failed: {error}");
        return ExitCode::FAILURE;
    }
    if let Some(per_second) = args.lines_per_sec {
        thread::spawn(move || tick(per_second));
    }

    let exit_after = match (args.exit_after, args.exit_code) {
        (None, Some(_)) => Some(Duration::ZERO),
        (after, _) => after,
    };
    if let Some(after) = exit_after {
        thread::sleep(after);
        let code = args.exit_code.unwrap_or(1);
        common::say(&format!("{name} exiting with {code}"));
        return ExitCode::from(code);
    }
    if output_only {
        return ExitCode::SUCCESS;
    }
    sleep_forever()
}

fn parse_args(raw: Vec<OsString>) -> Args {
    let mut args = Args::default();
    let mut raw = raw.into_iter();
    while let Some(arg) = raw.next() {
        let Some(arg) = arg.to_str().map(str::to_string) else {
            common::usage_error(&format!("argument {arg:?} is not UTF-8"), USAGE);
        };
        // Accept both `--flag value` and `--flag=value`.
        let (flag, mut inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || -> String {
            inline_value
                .take()
                .or_else(|| raw.next().and_then(|value| value.into_string().ok()))
                .unwrap_or_else(|| common::usage_error(&format!("{flag} needs a value"), USAGE))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            "--name" => args.name = Some(value()),
            "--port" => args.port = Some(number(&flag, &value())),
            "--print" => args.print = number(&flag, &value()),
            "--print-stderr" => args.print_stderr = number(&flag, &value()),
            "--no-newline" => args.no_newline = Some(value()),
            "--invalid-utf8" => args.invalid_utf8 = true,
            "--exit-after" => args.exit_after = Some(millis(&flag, &value())),
            "--exit-code" => args.exit_code = Some(number(&flag, &value())),
            "--ignore-sigterm" => args.ignore_sigterm = true,
            "--grandchild" => args.grandchild = Some(value().into()),
            "--setsid-grandchild" => args.setsid_grandchild = Some(value().into()),
            "--double-fork" => args.double_fork = Some(value().into()),
            "--sleep-forever" => args.sleep_forever = true,
            "--pidfile" => args.pidfile = Some(value().into()),
            "--unhealthy-after" => args.unhealthy_after = Some(millis(&flag, &value())),
            "--hang-health-after" => args.hang_health_after = Some(millis(&flag, &value())),
            "--ready-after" => args.ready_after = Some(millis(&flag, &value())),
            "--notify" => args.notify = true,
            "--no-notify" => args.no_notify = true,
            "--lines-per-sec" => {
                let per_second: u32 = number(&flag, &value());
                if per_second == 0 {
                    common::usage_error("--lines-per-sec must be at least 1", USAGE);
                }
                args.lines_per_sec = Some(per_second);
            }
            "--hold-port" => args.hold_port = Some(number(&flag, &value())),
            "--setsid" => args.setsid = true,
            "--daemonize" => args.daemonize = Some(value().into()),
            _ => common::usage_error(&format!("unknown flag {arg:?}"), USAGE),
        }
        if inline_value.is_some() {
            common::usage_error(&format!("{flag} takes no value"), USAGE);
        }
    }
    if args.notify && args.no_notify {
        common::usage_error("--notify and --no-notify contradict each other", USAGE);
    }
    args
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value.parse().unwrap_or_else(|_| {
        common::usage_error(
            &format!("{flag} needs a non-negative number in range, got {value:?}"),
            USAGE,
        )
    })
}

fn millis(flag: &str, value: &str) -> Duration {
    Duration::from_millis(number(flag, value))
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Re-executes this binary with `args`, stdio inherited, and returns the child's pid. The
/// child is never waited for: outliving or being orphaned is its job.
fn spawn_self(args: &[&str]) -> u32 {
    let exe = env::current_exe()
        .unwrap_or_else(|error| common::fail(&format!("cannot find our own binary: {error}")));
    match Command::new(&exe).args(args).spawn() {
        Ok(child) => child.id(),
        Err(error) => common::fail(&format!("cannot spawn {}: {error}", exe.display())),
    }
}

/// Writes `pid` to `path` via a temporary file in the same directory and a rename, so a reader
/// sees either no file or the whole pid.
fn write_pid_file(path: &Path, pid: u32) {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp.{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let result =
        fs::write(&temporary, format!("{pid}\n")).and_then(|()| fs::rename(&temporary, path));
    if let Err(error) = result {
        let _ = fs::remove_file(&temporary);
        common::fail(&format!(
            "cannot write pid file {}: {error}",
            path.display()
        ));
    }
}

fn wait_for_pid_file(path: &Path, pid: u32, name: &str) {
    let deadline = Instant::now() + CHILD_PIDFILE_TIMEOUT;
    while Instant::now() < deadline {
        if fs::read_to_string(path).is_ok_and(|text| text.trim() == pid.to_string()) {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    common::fail(&format!(
        "{name}: child {pid} did not write {} within {}s",
        path.display(),
        CHILD_PIDFILE_TIMEOUT.as_secs()
    ));
}

/// `--double-fork`: a child (`--daemonize`) spawns a sleeper, records the sleeper's pid and
/// exits; we reap that child, so the sleeper is left with no parent and is reparented to the
/// nearest subreaper (fleet) or init.
fn double_fork(name: &str, pidfile: &Path) {
    let exe = env::current_exe()
        .unwrap_or_else(|error| common::fail(&format!("cannot find our own binary: {error}")));
    let status = Command::new(&exe)
        .args([
            "--daemonize",
            &path_arg(pidfile),
            "--name",
            &format!("{name}-orphan"),
        ])
        .status()
        .unwrap_or_else(|error| common::fail(&format!("cannot spawn {}: {error}", exe.display())));
    if !status.success() {
        common::fail(&format!("{name}: the --daemonize child failed: {status}"));
    }
    match fs::read_to_string(pidfile) {
        Ok(pid) => common::say(&format!("{name} grandchild {} (double-forked)", pid.trim())),
        Err(error) => common::fail(&format!("cannot read {}: {error}", pidfile.display())),
    }
}

/// The middle process of `--double-fork`.
fn daemonize(name: &str, pidfile: &Path) {
    let sleeper = spawn_self(&["--sleep-forever", "--name", name]);
    write_pid_file(pidfile, sleeper);
}

fn hold_port(name: &str, port: u16) -> TcpListener {
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => {
            common::say(&format!("{name} holding port {port}"));
            listener
        }
        Err(error) => common::fail(&format!("{name}: cannot hold 127.0.0.1:{port}: {error}")),
    }
}

/// Serves `/`, `/health`, `/pid` in a background thread. Health timers count from now.
fn start_http(listener: TcpListener, args: &Args) {
    let name = args.name().to_string();
    let listening_since = Instant::now();
    let unhealthy_after = args.unhealthy_after;
    let hang_health_after = args.hang_health_after;
    let pid = std::process::id();
    let log_prefix = format!("{name} ");
    thread::spawn(move || {
        common::serve(
            listener,
            log_prefix,
            move |request: &Request| match request.path() {
                "/" => Response::text(200, format!("hello from {name} pid {pid}\n")).into(),
                "/pid" => Response::text(200, pid.to_string()).into(),
                "/health" => {
                    let up_for = listening_since.elapsed();
                    if hang_health_after.is_some_and(|after| up_for >= after) {
                        Reply::Hang
                    } else if unhealthy_after.is_some_and(|after| up_for >= after) {
                        Response::text(503, "unhealthy").into()
                    } else {
                        Response::text(200, "ok").into()
                    }
                }
                path => Response::not_found(path).into(),
            },
        )
    });
}

fn write_bulk_output(args: &Args) -> io::Result<()> {
    if args.print > 0 {
        print_lines(io::stdout().lock(), *b"line ", args.print)?;
    }
    if args.print_stderr > 0 {
        print_lines(io::stderr().lock(), *b"err  ", args.print_stderr)?;
    }
    let mut stdout = io::stdout().lock();
    if args.invalid_utf8 {
        stdout.write_all(b"invalid utf8: \xff\xfe\n")?;
        stdout.flush()?;
    }
    if let Some(text) = &args.no_newline {
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
    }
    Ok(())
}

/// Writes `count` lines `<prefix><10-digit number> xxx...x\n`, each [`PRINT_LINE_LEN`] bytes.
fn print_lines(out: impl Write, prefix: [u8; PRINT_NUMBER_AT], count: u64) -> io::Result<()> {
    let mut line = [b'x'; PRINT_LINE_LEN];
    line[..PRINT_NUMBER_AT].copy_from_slice(&prefix);
    line[PRINT_NUMBER_AT + PRINT_NUMBER_DIGITS] = b' ';
    line[PRINT_LINE_LEN - 1] = b'\n';
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    for number in 1..=count {
        // Numbers past 10 digits keep their last 10, so every line stays exactly 100 bytes.
        let mut rest = number;
        for digit in line[PRINT_NUMBER_AT..PRINT_NUMBER_AT + PRINT_NUMBER_DIGITS]
            .iter_mut()
            .rev()
        {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.write_all(&line)?;
    }
    out.flush()
}

/// `tick 1`, `tick 2`, ... `per_second` times a second, on an absolute schedule so slow writes
/// don't make the rate drift.
fn tick(per_second: u32) -> ! {
    let interval = Duration::from_secs(1) / per_second;
    let mut due = Instant::now();
    let mut number: u64 = 0;
    loop {
        number += 1;
        due += interval;
        thread::sleep(due.saturating_duration_since(Instant::now()));
        common::say(&format!("tick {number}"));
    }
}

fn sleep_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}
