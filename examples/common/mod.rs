//! Shared plumbing for the demo services (`users`, `catalog`, `ratings`, `gateway`) and the
//! test `helper`: std-only, so the examples compile in seconds.
//!
//! - Output: [`say`] writes one whole line to stdout and flushes, because stdout is usually a
//!   pipe to fleet and a half-buffered line would show up late or torn.
//! - Listening: [`take_activated_listener`] adopts a socket passed by fleet with systemd's
//!   `LISTEN_FDS` convention; [`bind_or_inherit`] falls back to binding `127.0.0.1:<port>`.
//! - Readiness: [`announce_ready`] sends `READY=1` to `NOTIFY_SOCKET` and keeps the
//!   `WATCHDOG=1` pings going, as `sd_notify(3)` would.
//! - HTTP: a thread-per-connection HTTP/1.1 server ([`serve`]) that answers one request per
//!   connection with `Connection: close`, and a tiny GET client ([`http_get`]).
//! - JSON: a small [`Json`] value with a compact printer and a parser, enough for the gateway
//!   to merge what the other services return.
#![allow(dead_code)]
// Included as `mod common` by each example binary, which has no API: its `pub` items
// are shared between the demos, not exported.
#![allow(unreachable_pub)]

use std::env;
use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{FromRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Output

/// Writes `line` and a newline to stdout in one write, then flushes.
pub fn say(line: &str) {
    let mut out = io::stdout().lock();
    // A log line that can't be written (fleet closed our pipe) is no reason to stop serving.
    let _ = out
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| out.flush());
}

/// Prints `message` to stderr and exits 1: the error path of these small programs.
pub fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}

// ---------------------------------------------------------------------------------------------
// Ports and listeners

/// Parses the demo services' command line (only `--port N`), then env `PORT`, then
/// `default_port`. Prints usage and exits 2 on anything else.
pub fn demo_port(name: &str, default_port: u16) -> u16 {
    let usage = format!(
        "usage: {name} [--port N]\n\
         \x20 port: --port, else env PORT, else {default_port}; a socket passed by fleet \
         (LISTEN_FDS/LISTEN_PID) wins over both"
    );
    let mut args = env::args().skip(1);
    let mut port = None;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0)
            }
            "--port" => args.next(),
            other => match other.strip_prefix("--port=") {
                Some(value) => Some(value.to_string()),
                None => usage_error(&format!("unknown argument {other:?}"), &usage),
            },
        };
        match value.as_deref().map(str::parse::<u16>) {
            Some(Ok(parsed)) => port = Some(parsed),
            _ => usage_error("--port needs a number from 0 to 65535", &usage),
        }
    }
    if let Some(port) = port {
        return port;
    }
    match env::var("PORT") {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| usage_error(&format!("env PORT={value:?} is not a port"), &usage)),
        Err(_) => default_port,
    }
}

/// Prints `problem` and `usage` to stderr and exits 2, the conventional "bad invocation" code.
pub fn usage_error(problem: &str, usage: &str) -> ! {
    eprintln!("error: {problem}\n{usage}");
    std::process::exit(2)
}

/// The first fd passed under systemd's socket-activation convention (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Adopts the listening socket fleet passed as fd 3, if `LISTEN_FDS` >= 1 and `LISTEN_PID` is
/// our pid. Always removes `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` from the environment
/// and marks the fd close-on-exec, so processes we spawn neither see nor hold the socket (a
/// child holding it would keep the port open after we exit).
///
/// Call it first thing in `main`, before any thread exists: it edits the environment.
pub fn take_activated_listener() -> io::Result<Option<TcpListener>> {
    let fd_count = env::var("LISTEN_FDS").ok();
    let for_pid = env::var("LISTEN_PID").ok();
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        // SAFETY: editing the environment races with any other thread reading it; every
        // caller (a demo's `main` through `start_demo_service`, the helper's `main`) runs
        // this first, before it spawns a thread, as the documentation above requires.
        unsafe { env::remove_var(var) };
    }
    let passed = fd_count
        .and_then(|count| count.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let ours = for_pid.and_then(|pid| pid.trim().parse::<u32>().ok()) == Some(std::process::id());
    if passed == 0 || !ours {
        return Ok(None);
    }
    // SAFETY: F_GETFD only reads the descriptor's flags and is sound for any integer; it tells
    // us whether fd 3 is open before anything takes ownership of it.
    if unsafe { nix::libc::fcntl(LISTEN_FDS_START, nix::libc::F_GETFD) } == -1 {
        return Err(io::Error::other(
            "LISTEN_FDS is set for this process but fd 3 is not open",
        ));
    }
    // SAFETY: the systemd socket-activation convention (LISTEN_FDS >= 1 and LISTEN_PID == our
    // pid, both checked above) guarantees fd 3 is a listening socket handed to this process
    // alone, and fd 3 is open (checked above); nothing else in this program uses fd 3, so the
    // listener becomes its only owner.
    let listener = unsafe { TcpListener::from_raw_fd(LISTEN_FDS_START) };
    nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    // Fleet may have created the socket non-blocking (tokio does); we accept on plain threads.
    listener.set_nonblocking(false)?;
    listener.local_addr().map_err(|error| {
        io::Error::other(format!(
            "fd 3 passed by LISTEN_FDS is not a TCP socket: {error}"
        ))
    })?;
    if !nix::sys::socket::getsockopt(&listener, nix::sys::socket::sockopt::AcceptConn)? {
        return Err(io::Error::other(
            "fd 3 passed by LISTEN_FDS is not a listening socket",
        ));
    }
    // Further sockets (fd 4, ...): serve every socket passed, as `sd_listen_fds` asks
    // (fleet passes one, but a wrapper or systemd itself may pass more).
    for fd in LISTEN_FDS_START + 1..LISTEN_FDS_START + passed as RawFd {
        // SAFETY: as above, the convention hands fds 3..3+LISTEN_FDS to this process; F_GETFD
        // checks the fd is open before we own it.
        if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } == -1 {
            continue;
        }
        // SAFETY: see above; nothing else in this program uses these fds.
        let extra = unsafe { TcpListener::from_raw_fd(fd) };
        let _ = nix::fcntl::fcntl(
            &extra,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        if extra.set_nonblocking(false).is_ok()
            && let Ok(mut extras) = EXTRA_LISTENERS.lock()
        {
            extras.push(extra);
        }
    }
    Ok(Some(listener))
}

/// Sockets passed beyond fd 3; [`serve`] answers on them too.
static EXTRA_LISTENERS: Mutex<Vec<TcpListener>> = Mutex::new(Vec::new());
/// Set by SIGTERM: stop accepting, finish what was accepted, exit 0.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Connections accepted and not yet answered.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// The thread blocked in `accept` on the main listener, to interrupt on SIGTERM.
static ACCEPTOR: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigterm(_: nix::libc::c_int) {
    DRAINING.store(true, Ordering::SeqCst);
    let acceptor = ACCEPTOR.load(Ordering::SeqCst);
    if acceptor != 0 {
        // SAFETY: pthread_kill is async-signal-safe; the id was stored by the acceptor
        // thread itself, which lives as long as the process serves.
        unsafe {
            nix::libc::pthread_kill(acceptor as nix::libc::pthread_t, nix::libc::SIGUSR2);
        }
    }
}

extern "C" fn interrupt_accept(_: nix::libc::c_int) {}

/// Graceful stop for servers that share a listening socket with their successor (fleet's
/// start-first redeploy): on SIGTERM, leave `accept` at once (connections still queued
/// are the next instance's), answer every connection already accepted, then exit 0. A
/// SIGTERM that is ignored (`--ignore-sigterm`) stays ignored.
fn install_graceful_stop() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    // SAFETY: reading the current disposition installs nothing.
    let current = unsafe {
        sigaction(
            Signal::SIGTERM,
            &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
        )
    };
    if let Ok(previous) = current
        && matches!(previous.handler(), SigHandler::SigIgn)
    {
        // SAFETY: restores the ignore disposition we just replaced.
        let _ = unsafe { sigaction(Signal::SIGTERM, &previous) };
        return;
    }
    // No SA_RESTART: a blocked accept returns EINTR when the signal arrives.
    let term = SigAction::new(
        SigHandler::Handler(on_sigterm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let usr2 = SigAction::new(
        SigHandler::Handler(interrupt_accept),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: both handlers only touch atomics and call pthread_kill, which are
    // async-signal-safe.
    unsafe {
        let _ = sigaction(Signal::SIGUSR2, &usr2);
        let _ = sigaction(Signal::SIGTERM, &term);
    }
}

fn drain_and_exit() -> ! {
    let deadline = Instant::now() + Duration::from_secs(10);
    while IN_FLIGHT.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    std::process::exit(0)
}

/// Uses `inherited` if fleet passed a socket, else binds `<BIND_HOST>:<port>` (env
/// `BIND_HOST`, default `127.0.0.1`; a container sets `0.0.0.0` so its published port
/// reaches it); prints `<name> listening on <address>` (the real port, so `--port 0`
/// reports what it got). Exits 1 with a message if the port can't be bound.
pub fn bind_or_inherit(name: &str, port: u16, inherited: Option<TcpListener>) -> TcpListener {
    let host = env::var("BIND_HOST").unwrap_or_else(|_| "127.0.0.1".to_string());
    let (listener, note) = match inherited {
        Some(listener) => (listener, " (socket from fleet)"),
        None => match TcpListener::bind((host.as_str(), port)) {
            Ok(listener) => (listener, ""),
            Err(error) => fail(&format!("{name}: cannot listen on {host}:{port}: {error}")),
        },
    };
    match listener.local_addr() {
        Ok(address) => say(&format!("{name} listening on {address}{note}")),
        Err(error) => fail(&format!(
            "{name}: cannot read the listening address: {error}"
        )),
    }
    listener
}

/// The whole start-up of a demo service: parse `--port`, adopt or bind the listener, announce
/// readiness.
pub fn start_demo_service(name: &str, default_port: u16) -> TcpListener {
    let inherited = take_activated_listener()
        .unwrap_or_else(|error| fail(&format!("{name}: socket activation: {error}")));
    let port = demo_port(name, default_port);
    let listener = bind_or_inherit(name, port, inherited);
    announce_ready(name);
    listener
}

// ---------------------------------------------------------------------------------------------
// Readiness: the sd_notify protocol

/// Sends `state` (e.g. `READY=1`) as one datagram to `$NOTIFY_SOCKET`. Returns `Ok(false)` when
/// the variable is unset. A name starting with `@` is a Linux abstract socket.
pub fn sd_notify(state: &str) -> io::Result<bool> {
    let Some(target) = env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    if let Some(abstract_name) = target.as_bytes().strip_prefix(b"@") {
        let address = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
        socket.send_to_addr(state.as_bytes(), &address)?;
    } else {
        socket.send_to(state.as_bytes(), std::path::Path::new(&target))?;
    }
    Ok(true)
}

/// Sends `READY=1` if `NOTIFY_SOCKET` is set and, if `WATCHDOG_USEC` is set (and
/// `WATCHDOG_PID`, when present, is us), starts a thread that sends `WATCHDOG=1` every half
/// period, as `sd_watchdog_enabled(3)` recommends. Failures are reported, not fatal.
pub fn announce_ready(name: &str) {
    match sd_notify("READY=1") {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => eprintln!("{name}: cannot send READY=1 to NOTIFY_SOCKET: {error}"),
    }
    let Some(period_usec) = env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|usec| usec.trim().parse::<u64>().ok())
        .filter(|usec| *usec > 0)
    else {
        return;
    };
    let for_us = env::var("WATCHDOG_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_none_or(|pid| pid == std::process::id());
    if !for_us {
        return;
    }
    let ping_every = Duration::from_micros(period_usec / 2).max(Duration::from_millis(1));
    let name = name.to_string();
    thread::spawn(move || loop {
        thread::sleep(ping_every);
        if let Err(error) = sd_notify("WATCHDOG=1") {
            eprintln!("{name}: cannot send WATCHDOG=1 to NOTIFY_SOCKET: {error}");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// HTTP server

/// How long a client may take to send its request head before we drop the connection.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head we read; these services only get short GETs.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A parsed request line; headers are read and ignored.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent, query string included.
    pub target: String,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// A complete response; [`serve`] adds the status line and headers.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    /// `value` printed compactly, with a trailing newline so `curl` output ends cleanly.
    pub fn json(status: u16, value: &Json) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: format!("{value}\n").into_bytes(),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn json_error(status: u16, message: &str) -> Response {
        Response::json(status, &Json::obj([("error", Json::from(message))]))
    }

    pub fn not_found(path: &str) -> Response {
        Response::json_error(404, &format!("no route for {path}"))
    }
}

/// What a handler wants done with a connection.
pub enum Reply {
    Send(Response),
    /// Keep the connection open and never answer (until the client gives up): a hung health
    /// endpoint, for probe-timeout tests.
    Hang,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply::Send(response)
    }
}

/// Accepts forever, one thread per connection, one request per connection. Each request logs
/// `<log_prefix>GET /path 200 0.1ms`. Non-GET methods get 405 without reaching `handler`.
pub fn serve<H>(listener: TcpListener, log_prefix: String, handler: H) -> !
where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let log_prefix: Arc<str> = log_prefix.into();
    let extras: Vec<TcpListener> = EXTRA_LISTENERS
        .lock()
        .map(|mut extras| extras.drain(..).collect())
        .unwrap_or_default();
    for extra in extras {
        let handler = Arc::clone(&handler);
        let log_prefix = Arc::clone(&log_prefix);
        thread::spawn(move || accept_loop(&extra, &log_prefix, &handler));
    }
    // SAFETY: pthread_self has no preconditions.
    ACCEPTOR.store(
        unsafe { nix::libc::pthread_self() } as u64,
        Ordering::SeqCst,
    );
    install_graceful_stop();
    accept_loop(&listener, &log_prefix, &handler);
    drain_and_exit()
}

/// Accepts until SIGTERM asks to drain.
fn accept_loop<H>(listener: &TcpListener, log_prefix: &Arc<str>, handler: &Arc<H>)
where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    while !DRAINING.load(Ordering::SeqCst) {
        // The raw accept, because std's retries EINTR and so would sleep through the
        // SIGTERM that asks us to stop accepting.
        let accepted =
            nix::sys::socket::accept4(listener, nix::sys::socket::SockFlag::SOCK_CLOEXEC)
                .map(TcpStream::from)
                .map_err(io::Error::from);
        match accepted {
            Ok(stream) => {
                IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
                let handler = Arc::clone(handler);
                let log_prefix = Arc::clone(log_prefix);
                thread::spawn(move || {
                    handle_connection(stream, &log_prefix, handler.as_ref());
                    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                // EMFILE and friends are transient; back off instead of spinning.
                eprintln!("{log_prefix}accept failed: {error}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn handle_connection<H>(mut stream: TcpStream, log_prefix: &str, handler: &H)
where
    H: Fn(&Request) -> Reply,
{
    if stream.set_read_timeout(Some(REQUEST_READ_TIMEOUT)).is_err() {
        return;
    }
    let request = match read_request(&mut stream) {
        Ok(Some(request)) => request,
        // Closed before sending a byte (a TCP health probe, a port scan), or timed out or reset
        // mid-head: nothing to answer and not worth a log line.
        Ok(None) | Err(RequestError::Io(_)) => return,
        Err(RequestError::Malformed(problem)) => {
            let response = Response::text(400, format!("bad request: {problem}\n"));
            let _ = write_response(&mut stream, &response);
            say(&format!("{log_prefix}(malformed request: {problem}) 400"));
            return;
        }
    };
    let started = Instant::now();
    let reply = if request.method == "GET" {
        handler(&request)
    } else {
        Reply::Send(Response::text(405, "only GET is supported\n"))
    };
    match reply {
        Reply::Send(response) => {
            // The client may already be gone; there is nobody left to tell.
            let _ = write_response(&mut stream, &response);
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            // Health checks come every few seconds from fleet; logging them would bury
            // the requests a developer cares about.
            if request.target == "/health" && response.status == 200 {
                return;
            }
            say(&format!(
                "{log_prefix}{} {} {} {elapsed_ms:.1}ms",
                request.method, request.target, response.status
            ));
        }
        Reply::Hang => {
            say(&format!(
                "{log_prefix}{} {} (hanging, no reply)",
                request.method, request.target
            ));
            // Read (and discard) until the client closes, so the thread ends with the client.
            let _ = stream.set_read_timeout(None);
            let _ = io::copy(&mut stream, &mut io::sink());
        }
    }
}

enum RequestError {
    Io(io::Error),
    Malformed(&'static str),
}

/// Reads up to the end of the request head. `Ok(None)` means the client closed without
/// sending a byte.
fn read_request(stream: &mut TcpStream) -> Result<Option<Request>, RequestError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).map_err(RequestError::Io)?;
        if read == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(RequestError::Malformed(
                "connection closed inside the request head",
            ));
        }
        head.extend_from_slice(&chunk[..read]);
        if find(&head, b"\r\n\r\n").is_some() || find(&head, b"\n\n").is_some() {
            break;
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Err(RequestError::Malformed("request head too large"));
        }
    }
    let head = std::str::from_utf8(&head).map_err(|_| RequestError::Malformed("not UTF-8"))?;
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None) if version.starts_with("HTTP/1.") => {
            Ok(Some(Request {
                method: method.to_string(),
                target: target.to_string(),
            }))
        }
        _ => Err(RequestError::Malformed("bad request line")),
    }
}

fn write_response(stream: &mut TcpStream, response: &Response) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    let mut whole = head.into_bytes();
    whole.extend_from_slice(&response.body);
    stream.write_all(&whole)?;
    stream.flush()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

// ---------------------------------------------------------------------------------------------
// HTTP client

/// Budget for a whole upstream call (connect, send, read); the gateway answers 502 after it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest response body the client accepts.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// What [`http_get`] got back.
#[derive(Debug)]
pub struct ClientResponse {
    pub status: u16,
    pub body: String,
}

/// `GET url` over HTTP/1.1 with `Connection: close`, within [`CLIENT_TIMEOUT`] in total.
/// Only `http://host[:port][/path]` URLs; the body must be UTF-8 and not chunked. Errors are
/// human-readable strings, because they end up in the gateway's 502 body.
pub fn http_get(url: &str) -> Result<ClientResponse, String> {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let with_port = if authority.rsplit(']').next().unwrap_or("").contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addresses: Vec<_> = with_port
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {authority}: {error}"))?
        .collect();
    let mut last_error = format!("{authority} resolved to no address");
    let mut connected = None;
    for address in addresses {
        let remaining = remaining_until(deadline)?;
        match TcpStream::connect_timeout(&address, remaining) {
            Ok(stream) => {
                connected = Some(stream);
                break;
            }
            Err(error) => last_error = format!("cannot connect to {address}: {error}"),
        }
    }
    let mut stream = connected.ok_or(last_error)?;
    let io_error = |error: io::Error| format!("talking to {authority}: {error}");
    stream
        .set_write_timeout(Some(remaining_until(deadline)?))
        .map_err(io_error)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io_error)?;

    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut expected_total = None;
    loop {
        if let Some(total) = expected_total
            && received.len() >= total
        {
            break;
        }
        stream
            .set_read_timeout(Some(remaining_until(deadline)?))
            .map_err(io_error)?;
        let read = match stream.read(&mut chunk) {
            Ok(read) => read,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "{authority} did not answer within {}s",
                    CLIENT_TIMEOUT.as_secs()
                ));
            }
            Err(error) => return Err(io_error(error)),
        };
        if read == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..read]);
        if received.len() > MAX_RESPONSE {
            return Err(format!("{authority} sent more than {MAX_RESPONSE} bytes"));
        }
        if expected_total.is_none()
            && let Some(head_end) = find(&received, b"\r\n\r\n")
            && let Some(length) = content_length(&received[..head_end])?
        {
            expected_total = Some(head_end + 4 + length);
        }
    }
    parse_response(&received, authority)
}

fn remaining_until(deadline: Instant) -> Result<Duration, String> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        Err(format!("no answer within {}s", CLIENT_TIMEOUT.as_secs()))
    } else {
        Ok(remaining)
    }
}

/// The Content-Length of a response head, refusing chunked bodies we don't decode.
fn content_length(head: &[u8]) -> Result<Option<usize>, String> {
    let head = String::from_utf8_lossy(head);
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
            return Err("chunked responses are not supported".to_string());
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        }
    }
    Ok(length)
}

fn parse_response(received: &[u8], authority: &str) -> Result<ClientResponse, String> {
    let head_end = find(received, b"\r\n\r\n")
        .ok_or_else(|| format!("{authority} closed the connection before a full response"))?;
    let head = String::from_utf8_lossy(&received[..head_end]);
    let status_line = head.split("\r\n").next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => code
            .parse::<u16>()
            .map_err(|_| format!("{authority} sent a bad status line {status_line:?}"))?,
        _ => {
            return Err(format!(
                "{authority} sent a bad status line {status_line:?}"
            ));
        }
    };
    let mut body = &received[head_end + 4..];
    if let Some(length) = content_length(&received[..head_end])? {
        if body.len() < length {
            return Err(format!(
                "{authority} closed the connection after {} of {length} body bytes",
                body.len()
            ));
        }
        body = &body[..length];
    }
    let body = String::from_utf8(body.to_vec())
        .map_err(|_| format!("{authority} sent a body that is not UTF-8"))?;
    Ok(ClientResponse { status, body })
}

// ---------------------------------------------------------------------------------------------
// JSON

/// A JSON value. Objects keep their keys in insertion order, so output is stable.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn obj<K: Into<String>>(fields: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(
            fields
                .into_iter()
                .map(|(key, value)| (key.into(), value))
                .collect(),
        )
    }

    /// The value of `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(number) => Some(*number),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(text) => Some(text),
            _ => None,
        }
    }

    /// Parses one JSON document (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut parser = JsonParser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        let value = parser.value()?;
        parser.skip_whitespace();
        if parser.pos != parser.bytes.len() {
            return Err(parser.error("trailing characters"));
        }
        Ok(value)
    }
}

impl From<&str> for Json {
    fn from(text: &str) -> Json {
        Json::Str(text.to_string())
    }
}

impl From<String> for Json {
    fn from(text: String) -> Json {
        Json::Str(text)
    }
}

impl From<f64> for Json {
    fn from(number: f64) -> Json {
        Json::Num(number)
    }
}

impl From<u32> for Json {
    fn from(number: u32) -> Json {
        Json::Num(f64::from(number))
    }
}

impl From<bool> for Json {
    fn from(flag: bool) -> Json {
        Json::Bool(flag)
    }
}

impl From<Vec<Json>> for Json {
    fn from(items: Vec<Json>) -> Json {
        Json::Arr(items)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(flag) => write!(f, "{flag}"),
            // JSON has no NaN or infinity.
            Json::Num(number) if !number.is_finite() => f.write_str("null"),
            // Whole numbers print without ".0"; 2^53 is where f64 stops holding every integer.
            Json::Num(number)
                if number.fract() == 0.0 && number.abs() < 9_007_199_254_740_992.0 =>
            {
                write!(f, "{}", *number as i64)
            }
            Json::Num(number) => write!(f, "{number}"),
            Json::Str(text) => write_json_string(f, text),
            Json::Arr(items) => {
                f.write_char('[')?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Json::Obj(fields) => {
                f.write_char('{')?;
                for (index, (key, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        f.write_char(',')?;
                    }
                    write_json_string(f, key)?;
                    write!(f, ":{value}")?;
                }
                f.write_char('}')
            }
        }
    }
}

/// Writes `text` as a quoted JSON string, escaping quotes, backslashes and control characters.
pub fn write_json_string(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    for ch in text.chars() {
        match ch {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            ch if u32::from(ch) < 0x20 => write!(out, "\\u{:04x}", u32::from(ch))?,
            ch => out.write_char(ch)?,
        }
    }
    out.write_char('"')
}

/// Nesting limit, so a hostile upstream can't overflow our stack.
const MAX_JSON_DEPTH: usize = 128;

struct JsonParser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn error(&self, problem: &str) -> String {
        format!("invalid JSON at byte {}: {problem}", self.pos)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, literal: &str, value: Json) -> Result<Json, String> {
        if self.text[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(value)
        } else {
            Err(self.error("unknown literal"))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_whitespace();
        match self.bytes.get(self.pos) {
            None => Err(self.error("unexpected end")),
            Some(b'n') => self.expect_literal("null", Json::Null),
            Some(b't') => self.expect_literal("true", Json::Bool(true)),
            Some(b'f') => self.expect_literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => self.nested(Self::array),
            Some(b'{') => self.nested(Self::object),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
        }
    }

    fn nested(&mut self, parse: fn(&mut Self) -> Result<Json, String>) -> Result<Json, String> {
        self.depth += 1;
        if self.depth > MAX_JSON_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.pos;
        while matches!(
            self.bytes.get(self.pos),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        self.text[start..self.pos]
            .parse()
            .map(Json::Num)
            .map_err(|_| self.error("bad number"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while matches!(self.bytes.get(self.pos), Some(byte) if *byte != b'"' && *byte != b'\\' && *byte >= 0x20)
            {
                self.pos += 1;
            }
            // Only ASCII bytes stop the scan, so both ends are on char boundaries.
            out.push_str(&self.text[run_start..self.pos]);
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => return Err(self.error("control character in string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), String> {
        let escaped = self.bytes.get(self.pos).copied();
        self.pos += 1;
        let ch = match escaped {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let first = self.hex4()?;
                let code = if (0xd800..0xdc00).contains(&first) {
                    if !self.text[self.pos..].starts_with("\\u") {
                        return Err(self.error("lone surrogate"));
                    }
                    self.pos += 2;
                    let second = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&second) {
                        return Err(self.error("bad surrogate pair"));
                    }
                    0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
                } else {
                    first
                };
                char::from_u32(code).ok_or_else(|| self.error("bad \\u escape"))?
            }
            _ => return Err(self.error("bad escape")),
        };
        out.push(ch);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let code = u32::from_str_radix(digits, 16).map_err(|_| self.error("bad \\u escape"))?;
        self.pos += 4;
        Ok(code)
    }

    fn array(&mut self) -> Result<Json, String> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_whitespace();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Arr(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.pos += 1; // '{'
        let mut fields = Vec::new();
        self.skip_whitespace();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Json::Obj(fields));
        }
        loop {
            self.skip_whitespace();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.error("expected ':'"));
            }
            self.pos += 1;
            fields.push((key, self.value()?));
            self.skip_whitespace();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Obj(fields));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }
}
