//! The control socket's server side (the protocol is [`crate::protocol`]). It holds no
//! state: it answers from the supervisor's snapshot and forwards commands to the
//! supervisor's queue. It lives beside the supervisor because it serves a
//! [`SupervisorHandle`]; clients need only `control` and `protocol`.
//!
//! # Theory of operation
//! One accept loop and one task per connection, so a slow, silent or disconnected
//! client costs nothing to the others or to the supervisor, whose loop never waits on
//! a client: commands reach it through its bounded queue, and what it publishes (a
//! `watch` of the snapshot, a bounded `broadcast` of events) never blocks the sender.
//!
//! Every cost a client can put on the supervisor is bounded, because any program
//! running as the user can connect, and a buggy script should not be able to take
//! the fleet down with it:
//! - **Who.** The accept loop checks the peer's uid (`SO_PEERCRED`) before anything
//!   else; another user gets `permission_denied`, and the supervisor's log says who
//!   (a line at most every [`NOTE_INTERVAL`] per kind, counting the rest).
//! - **How many.** At most [`connection_limit`] connections are served at once, a
//!   quarter of the process's file descriptors (the rest are the services' pipes, log
//!   files and probes), at most [`MAX_CONNECTIONS`]. One more gets
//!   `too_many_connections` and is closed at once.
//! - **How long to ask.** A request line must arrive whole within
//!   [`REQUEST_DEADLINE`] from the moment the server waits for it: a connection that
//!   never sends, or sends a byte a second, gets `request_timeout` and is closed.
//! - **How big.** The read buffer never holds more than [`MAX_REQUEST`] + 1 bytes;
//!   a longer line gets `request_too_large` and the connection is closed, so a 1 GB
//!   line costs 64 KiB of reading, not a gigabyte.
//! - **How slow to read.** Every line written must be taken within
//!   [`WRITE_DEADLINE`], or the connection is closed. A `subscribe` stream writes one
//!   line at a time; while a line waits in a full socket, events queue in the shared,
//!   bounded broadcast, and a subscriber that falls too far behind skips to the
//!   current snapshot. So a subscriber that never reads holds at most the kernel's
//!   socket buffer, for at most the write deadline.
//!
//! Out of file descriptors, `accept` fails at once, and again at once, as long as the
//! listener stays readable. The loop holds one spare descriptor (on `/dev/null`) for
//! that moment: it gives it up to take and serve one connection, so `fleet ps` and
//! `fleet stop` still work while a service has used up the descriptors. That
//! connection's socket, shut down but not closed, becomes the next spare: closing it
//! would free a number that a busy service could take first. Without a spare the loop
//! waits [`ACCEPT_BACKOFF`] between tries instead of spinning.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;

use super::SupervisorHandle;
use crate::protocol::{
    encode_line, parse_request, ErrorCode, Frame, Hello, Reply, Request, RequestFramer,
    MAX_REQUEST, REQUEST_DEADLINE, WRITE_DEADLINE,
};

/// The most connections served at once however many file descriptors the process
/// may have: a fleet's legitimate clients (a TUI, a `ps --watch`, scripts) number a
/// handful, so this is room for a thousand scripts at once, not a target.
pub const MAX_CONNECTIONS: usize = 1024;

/// The fewest connections served at once, even under a tiny `ulimit -n`: a TUI, a
/// watch and a few commands must always fit.
const MIN_CONNECTIONS: usize = 16;

/// How long the accept loop waits before trying again when `accept` fails for want
/// of file descriptors or memory: long enough not to spin on a listener that stays
/// readable, short enough that a client barely notices.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The least time between two lines of one kind in the supervisor's log, so a client
/// that repeats itself (a loop connecting as another user) cannot flood the log.
const NOTE_INTERVAL: Duration = Duration::from_secs(10);

/// The least read: an ordinary request (tens to hundreds of bytes) in one go. A longer
/// one reads as much as the framer already holds, up to [`MAX_REQUEST`] + 1; after
/// each request the framer's buffer shrinks back to this.
const FIRST_READ: usize = 1024;

/// Binds the project's socket (replacing a stale one; the caller holds the lock) with
/// mode 0600.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// How many connections may be served at once: a quarter of the soft limit on open
/// files, read at each accept so that a limit changed while the supervisor runs
/// (`prlimit`) counts, within [`MIN_CONNECTIONS`] and [`MAX_CONNECTIONS`].
pub fn connection_limit() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _hard)| soft)
        .unwrap_or(1024);
    usize::try_from(soft / 4)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// Accepts connections until the task is dropped.
pub async fn serve(
    listener: UnixListener,
    handle: SupervisorHandle,
    hello: Hello,
    in_flight: InFlight,
) {
    let own_uid = nix::unistd::geteuid().as_raw();
    let open = Arc::new(AtomicUsize::new(0));
    let notes = Arc::new(Notes::default());
    let spare = Spare::open();
    // Whether the spare was given up for the connection `accept` returns next.
    let mut spare_released = false;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) if err.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(err) => {
                if out_of_descriptors(&err) && spare.release() {
                    notes.note(Note::AcceptFailed, || {
                        format!(
                            "the supervisor is out of file descriptors ({err}); serving a \
                             control connection with its spare one"
                        )
                    });
                    spare_released = true;
                    continue;
                }
                notes.note(Note::AcceptFailed, || {
                    format!(
                        "the control socket cannot accept connections: {err} \
                         (trying again every {} ms)",
                        ACCEPT_BACKOFF.as_millis()
                    )
                });
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                spare.refill();
                continue;
            }
        };
        let give_back = std::mem::take(&mut spare_released).then(|| spare.clone());
        spare.refill();
        let peer = stream.peer_cred().ok();
        let peer_pid = peer.and_then(|cred| cred.pid());
        let peer_uid = peer.map(|cred| cred.uid());
        if peer_uid != Some(own_uid) {
            let who = peer_uid
                .map(|uid| format!("uid {uid}"))
                .unwrap_or_else(|| "an unknown user".into());
            let message = format!("{who} may not control a fleet run by uid {own_uid}");
            notes.note(Note::Refused, || {
                format!(
                    "refused a control connection from {who}{}: only uid {own_uid} may connect",
                    describe_pid(peer_pid)
                )
            });
            let reply = Reply::error(ErrorCode::PermissionDenied, message);
            tokio::spawn(refuse(stream, reply, give_back));
            continue;
        }
        let limit = connection_limit();
        if let Some(slot) = Slot::take(&open, limit) {
            let connection = Connection {
                handle: handle.clone(),
                hello: hello.clone(),
                notes: notes.clone(),
                peer_pid,
                give_back,
                in_flight: in_flight.clone(),
                _slot: slot,
            };
            tokio::spawn(connection.serve(stream));
        } else {
            let message =
                format!("the supervisor already serves {limit} control connections; try again");
            notes.note(Note::Busy, || {
                format!(
                    "refused a control connection{}: {limit} are open already",
                    describe_pid(peer_pid)
                )
            });
            let reply = Reply::error(ErrorCode::TooManyConnections, message);
            tokio::spawn(refuse(stream, reply, give_back));
        }
    }
}

/// A descriptor held only to be given up when the process runs out (see the module
/// docs): `/dev/null`, or the shut-down socket of the last connection it was given up
/// for. Empty when even that cannot be had.
#[derive(Clone)]
struct Spare(Arc<Mutex<Option<OwnedFd>>>);

impl Spare {
    fn open() -> Spare {
        let spare = Spare(Arc::new(Mutex::new(None)));
        spare.refill();
        spare
    }

    /// Opens a new spare if there is none (which fails while the process is out of
    /// descriptors; it is tried again later).
    fn refill(&self) {
        if let Ok(mut spare) = self.0.lock()
            && spare.is_none()
        {
            *spare = File::open("/dev/null").ok().map(OwnedFd::from);
        }
    }

    /// Closes the spare, freeing one descriptor; false when there was none.
    fn release(&self) -> bool {
        self.0.lock().is_ok_and(|mut spare| spare.take().is_some())
    }

    /// Ends a connection that took the spare's place, keeping its descriptor number
    /// as the next spare: shut down, the socket is closed for the client but still
    /// holds the number, which a busy service cannot take before the spare does.
    fn take_back(&self, stream: UnixStream) {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let _ = stream.shutdown(std::net::Shutdown::Both);
        if let Ok(mut spare) = self.0.lock()
            && spare.is_none()
        {
            *spare = Some(OwnedFd::from(stream));
        }
    }
}

/// EMFILE (this process's limit) or ENFILE (the system's): the errors a spare
/// descriptor can get past.
fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(code) if code == nix::errno::Errno::EMFILE as i32
            || code == nix::errno::Errno::ENFILE as i32
    )
}

fn describe_pid(pid: Option<i32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

/// Answers a connection that will not be served with one error line, then closes it.
/// The line fits in an empty socket buffer, so this ends at once unless the peer is
/// gone; the write deadline bounds it anyway.
async fn refuse(stream: UnixStream, reply: Reply, give_back: Option<Spare>) {
    let (reader, mut writer) = stream.into_split();
    let _ = send(&mut writer, &reply).await;
    close(reader, writer, give_back);
}

/// Closes a connection, or keeps its descriptor as the spare when it took the spare's
/// place.
fn close(reader: OwnedReadHalf, writer: OwnedWriteHalf, give_back: Option<Spare>) {
    if let Some(spare) = give_back
        && let Ok(stream) = reader.reunite(writer)
    {
        spare.take_back(stream);
    }
}

/// One of the connections counted against [`connection_limit`]; freed when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, limit: usize) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
            (count < limit).then_some(count + 1)
        })
        .ok()
        .map(|_| Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The kinds of line the server writes to the supervisor's log, each throttled on
/// its own.
#[derive(Clone, Copy)]
enum Note {
    Refused,
    Busy,
    AcceptFailed,
    Stalled,
}

const NOTE_KINDS: usize = 4;

/// Per kind: when its last line was written, and how many were left out since.
#[derive(Default)]
struct Notes {
    throttles: Mutex<[(Option<Instant>, u64); NOTE_KINDS]>,
}

impl Notes {
    /// Writes `text()` to the supervisor's log (its stderr), unless a line of this
    /// kind was written less than [`NOTE_INTERVAL`] ago; the next line written says
    /// how many were left out.
    fn note(&self, kind: Note, text: impl FnOnce() -> String) {
        let now = Instant::now();
        let skipped = {
            let Ok(mut throttles) = self.throttles.lock() else {
                return;
            };
            let (last, skipped) = &mut throttles[kind as usize];
            if last.is_some_and(|last| now.duration_since(last) < NOTE_INTERVAL) {
                *skipped += 1;
                return;
            }
            *last = Some(now);
            std::mem::take(skipped)
        };
        let more = match skipped {
            0 => String::new(),
            n => format!(" ({n} more like it since the last such line)"),
        };
        crate::note!("fleet: {}{more}", text());
    }
}

/// What a connection's task needs, and its slot, held for as long as it runs.
struct Connection {
    handle: SupervisorHandle,
    hello: Hello,
    notes: Arc<Notes>,
    peer_pid: Option<i32>,
    /// Where its descriptor goes when it ends, if it took the spare's place.
    give_back: Option<Spare>,
    in_flight: InFlight,
    _slot: Slot,
}

/// Commands handed to the supervisor whose replies are not on their sockets yet. The
/// reply to `fleet down` is sent as the supervisor ends: the process waits for this to
/// settle before it exits, or the client would see its connection closed instead.
#[derive(Clone, Default)]
pub struct InFlight(Arc<InFlightCount>);

#[derive(Default)]
struct InFlightCount {
    count: AtomicUsize,
    settled: tokio::sync::Notify,
}

/// One command in flight, from handing it over until its reply is written (or failed).
struct InFlightCommand(InFlight);

impl InFlight {
    fn begin(&self) -> InFlightCommand {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        InFlightCommand(self.clone())
    }

    /// Waits, at most `within`, until every reply in flight is written.
    pub async fn settle(&self, within: Duration) {
        let settled = async {
            loop {
                // Made before the check: `notify_waiters` reaches a future from its making.
                let notified = self.0.settled.notified();
                if self.0.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(within, settled).await;
    }
}

impl Drop for InFlightCommand {
    fn drop(&mut self) {
        if self.0 .0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0 .0.settled.notify_waiters();
        }
    }
}

/// What reading a request line gave.
enum Incoming {
    Line(Vec<u8>),
    /// The client closed its end.
    Closed,
    /// More than [`MAX_REQUEST`] bytes without a newline.
    TooLong,
}

impl Connection {
    /// Serves requests one after another until the client leaves or breaks a limit.
    async fn serve(mut self, stream: UnixStream) {
        let (mut reader, mut writer) = stream.into_split();
        self.serve_requests(&mut reader, &mut writer).await;
        close(reader, writer, self.give_back.take());
    }

    async fn serve_requests(&self, reader: &mut OwnedReadHalf, writer: &mut OwnedWriteHalf) {
        let mut framer = RequestFramer::new(MAX_REQUEST);
        let mut ready = VecDeque::new();
        loop {
            let reading = read_request(reader, &mut framer, &mut ready);
            let line = match tokio::time::timeout(REQUEST_DEADLINE, reading).await {
                Ok(Ok(Incoming::Line(line))) => line,
                Ok(Ok(Incoming::Closed) | Err(_)) => return,
                Ok(Ok(Incoming::TooLong)) => {
                    let message = format!(
                        "a request may be at most {MAX_REQUEST} bytes; closing the connection"
                    );
                    let reply = Reply::error(ErrorCode::RequestTooLarge, message);
                    let _ = send(writer, &reply).await;
                    return;
                }
                Err(_elapsed) => {
                    let message = format!(
                        "no complete request within {} s; closing the connection",
                        REQUEST_DEADLINE.as_secs()
                    );
                    let reply = Reply::error(ErrorCode::RequestTimeout, message);
                    let _ = send(writer, &reply).await;
                    return;
                }
            };
            framer.shrink_to(FIRST_READ);
            if let Err(err) = self.handle_line(reader, writer, &line).await {
                if err.kind() == io::ErrorKind::TimedOut {
                    self.notes.note(Note::Stalled, || {
                        format!(
                            "disconnected a control client{} that took no output for {} s",
                            describe_pid(self.peer_pid),
                            WRITE_DEADLINE.as_secs()
                        )
                    });
                }
                // Any other error is a client that went away mid-reply: nothing to
                // report.
                return;
            }
        }
    }

    async fn handle_line(
        &self,
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
        line: &[u8],
    ) -> io::Result<()> {
        let request = match parse_request(line) {
            Ok(request) => request,
            Err(body) => return send(writer, &Reply::Error(body)).await,
        };
        match request {
            Request::Hello => {
                let hello = serde_json::to_value(&self.hello).map_err(io::Error::other)?;
                send(writer, &Reply::Ok(hello)).await
            }
            Request::Ps => {
                let snapshot = self.handle.snapshot.borrow().clone();
                let value = serde_json::to_value(&*snapshot).map_err(io::Error::other)?;
                send(writer, &Reply::Ok(value)).await
            }
            Request::Command { command } => {
                let _in_flight = self.in_flight.begin();
                let reply = match self.handle.send(command).await {
                    Ok(message) => Reply::Ok(serde_json::Value::String(message)),
                    Err(err) => Reply::error(err.code, err.message),
                };
                send(writer, &reply).await
            }
            Request::Subscribe => subscribe(reader, writer, &self.handle).await,
        }
    }
}

/// Reads until the framer has a whole non-blank line, and takes it (without its
/// newline); frames after it wait in `ready` for the next request. The framer holds at
/// most [`MAX_REQUEST`] bytes and one read; a connection that sends nothing holds no
/// buffer: one is taken only while there is something to read.
async fn read_request(
    reader: &mut OwnedReadHalf,
    framer: &mut RequestFramer,
    ready: &mut VecDeque<Frame>,
) -> io::Result<Incoming> {
    loop {
        match ready.pop_front() {
            Some(Frame::Line(line)) => return Ok(Incoming::Line(line)),
            Some(Frame::TooLarge) => return Ok(Incoming::TooLong),
            None => {}
        }
        reader.readable().await?;
        let mut buffer = vec![0u8; FIRST_READ.max(framer.buffered()).min(MAX_REQUEST + 1)];
        let read = match reader.try_read(&mut buffer) {
            Ok(0) => return Ok(Incoming::Closed),
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        };
        ready.extend(framer.push(&buffer[..read]));
    }
}

/// Writes one line within [`WRITE_DEADLINE`]; a client that does not take it gets a
/// `TimedOut` error, which ends its connection.
async fn send(writer: &mut OwnedWriteHalf, reply: &Reply) -> io::Result<()> {
    let line = encode_line(reply).map_err(io::Error::other)?;
    match tokio::time::timeout(WRITE_DEADLINE, writer.write_all(&line)).await {
        Ok(written) => written,
        Err(_elapsed) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read its reply",
        )),
    }
}

/// Streams the snapshot on every change and every event, until the client leaves or
/// the supervisor ends. One line is written at a time; meanwhile events wait in the
/// broadcast, and a subscriber that lagged past its capacity gets the current
/// snapshot instead of what it missed.
async fn subscribe(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    handle: &SupervisorHandle,
) -> io::Result<()> {
    let mut snapshots = handle.snapshot.clone();
    let mut events = handle.events.subscribe();
    let mut send_snapshot = true;
    // What the client writes mid-stream is read and dropped, a buffer at a time.
    let mut ignored = [0u8; 512];
    loop {
        if send_snapshot {
            let snapshot = snapshots.borrow_and_update().clone();
            let value = serde_json::json!({ "snapshot": &*snapshot });
            send(writer, &Reply::Stream(value)).await?;
            send_snapshot = false;
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    let ended = Reply::Ok(serde_json::Value::String("supervisor ended".into()));
                    return send(writer, &ended).await;
                }
                send_snapshot = true;
            }
            event = events.recv() => match event {
                Ok(event) => {
                    let value = serde_json::json!({ "event": event });
                    send(writer, &Reply::Stream(value)).await?;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => send_snapshot = true,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            read = reader.read(&mut ignored) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
        }
    }
}
