//! The terminal UI of `fleet up` and `fleet tui`: a client of the same snapshot, event
//! and command vocabulary as `fleet ps`, so anything it does the CLI can do too.
//!
//! Owns the terminal while it runs and nothing of the fleet: it reads snapshots, events
//! and log lines, and sends [`Command`]s through whatever [`TuiSource`] it is given (the
//! supervisor's own channels in `fleet up`, the control socket in `fleet tui`). It never
//! touches service state, and nothing else in fleet depends on it.
//!
//! - [`state`]: everything shown, with pure updates; returns [`Request`]s for the loop.
//! - [`rows`]: the service table's rows: a replicated service folded into one.
//! - [`log_view`]: one window of log lines: scroll, follow, search hits, merge.
//! - [`view`]: the pure draw of a [`TuiState`].
//! - [`keys`]: key and mouse events to [`Action`]s.
//! - [`scrollback`]: reads older log lines back from the files, on a reader thread.
//!
//! CPU and memory come from [`crate::runtime::resources`], sampled on a blocking task
//! off the render path; the TUI only keeps their history and draws it.
//!
//! # Theory of operation
//! One loop owns the state. It waits (never polls) on everything at once: terminal
//! input, the snapshot watch, events, live log lines, answers from the log reader
//! thread, finished commands, a 2 s resource tick and a 1 s clock tick for uptimes.
//! Terminal input comes first, so keys are handled between any two batches of a flood
//! of log lines; each wake-up drains what is queued (log lines up to a time budget) and
//! then draws, but only if something changed and no sooner than one frame (~30 fps)
//! after the last draw. Commands are spawned and their replies come back as footer
//! messages, so a 10 s stop or a long build never blocks a key. Idle, the loop sleeps
//! until the next tick.
//!
//! The terminal is restored (raw mode off, alternate screen left, cursor shown, mouse
//! released) when [`run`] returns, on error, and by a panic hook before the panic
//! message prints.

pub mod keys;
pub mod layout;
pub mod log_view;
pub mod remote;
pub mod rows;
pub mod scrollback;
pub mod state;
pub mod text;
pub mod view;

#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event as TerminalEvent, EventStream,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::event::{now_ms, Command, Event, Snapshot};
use crate::logs::{format_timestamp, LogBatch, LogLine};
use crate::runtime::resources::{ResourceSampler, Target, Usage};
use scrollback::Loaded;

pub use scrollback::ReadTail;
pub use state::{Action, Request, TuiMode, TuiState};

/// Least time between two draws: about 30 frames per second.
const FRAME: Duration = Duration::from_millis(33);
/// How long one wake-up may spend taking in log lines before it looks at keys again.
const LOG_BUDGET: Duration = Duration::from_millis(8);
const RESOURCE_PERIOD: Duration = Duration::from_secs(2);
/// Uptimes and "12s ago" change every second.
const CLOCK_PERIOD: Duration = Duration::from_secs(1);

/// Sends one command and resolves to the reply text (shown in the footer) or an error
/// message. Called once per command; each call is awaited on its own task.
pub type SendCommand =
    Arc<dyn Fn(Command) -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Where the TUI gets what it shows, and where its commands go.
pub struct TuiSource {
    /// The current state of the fleet; when the sender is gone the fleet has ended.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub events: mpsc::Receiver<Event>,
    /// Live output lines, in batches per service.
    pub logs: mpsc::Receiver<(String, Vec<LogLine>)>,
    pub send: SendCommand,
    /// Reads back a service's log file for scrollback; see [`TuiSource::read_tail_in`].
    pub read_tail: Arc<ReadTail>,
}

impl TuiSource {
    /// Scrollback from the log files in `dir` (`.fleet/logs`).
    pub fn read_tail_in(dir: PathBuf) -> Arc<ReadTail> {
        Arc::new(move |service: &str, count: usize| crate::logs::read_tail(&dir, service, count))
    }
}

/// Why the TUI ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuiExit {
    /// The user quit; the fleet keeps running.
    Quit,
    /// The user asked to stop the fleet (`q` then `y` in `fleet up`, or Ctrl-C): the
    /// caller stops it exactly as for Ctrl-C, with the terminal already restored.
    StopFleet,
    /// The snapshot sender went away: the supervisor ended.
    FleetEnded,
}

/// Lines of a broadcast batch, as the TUI takes them.
pub fn batch_lines(batch: &LogBatch) -> Vec<LogLine> {
    let timestamp = format_timestamp(batch.at_ms);
    batch
        .lines()
        .map(|line| LogLine {
            timestamp: timestamp.clone(),
            stream: batch.stream,
            text: String::from_utf8_lossy(line).into_owned(),
        })
        .collect()
}

/// How many output batches may wait for the TUI before it skips to the newest.
const LIVE_BATCHES: usize = 64;

/// Forwards the log hub's broadcast into a [`TuiSource::logs`] channel. A lagging
/// receiver skips what it missed; the files still have it (scroll up to read it).
pub fn forward_logs(
    mut hub: broadcast::Receiver<Arc<LogBatch>>,
) -> mpsc::Receiver<(String, Vec<LogLine>)> {
    let (sender, receiver) = mpsc::channel(LIVE_BATCHES);
    tokio::spawn(async move {
        loop {
            // Far behind a flood, jump to the newest output: the screen shows only the
            // last lines anyway, and decoding a backlog would starve the keys.
            if hub.len() > LIVE_BATCHES {
                hub = hub.resubscribe();
            }
            match hub.recv().await {
                Ok(batch) => {
                    let lines = batch_lines(&batch);
                    if sender
                        .send((batch.service.to_string(), lines))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    receiver
}

/// Forwards the supervisor's event broadcast into a [`TuiSource::events`] channel.
pub fn forward_events(mut events: broadcast::Receiver<Event>) -> mpsc::Receiver<Event> {
    let (sender, receiver) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if sender.send(event).await.is_err() {
                        break;
                    }
                }
                // The snapshot carries each service's last event; nothing is lost.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    receiver
}

/// Set while the terminal is in raw mode, so the panic hook restores only a terminal
/// the TUI changed.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

fn restore_terminal() {
    // Best effort: each step on its own, since one failing must not skip the others.
    let _ = disable_raw_mode();
    let mut stdout = io::stdout();
    let _ = execute!(
        stdout,
        DisableMouseCapture,
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
    let _ = stdout.flush();
}

fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
                restore_terminal();
            }
            previous(info);
        }));
    });
}

/// Raw mode, alternate screen and mouse capture for as long as it lives.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<io::Stdout>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let entered = (|| {
            enable_raw_mode()?;
            execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            terminal.hide_cursor()?;
            terminal.clear()?;
            Ok(terminal)
        })();
        match entered {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(err) => {
                if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
                    restore_terminal();
                }
                Err(err)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
            restore_terminal();
        }
    }
}

/// Runs the TUI on the real terminal until the user quits or the fleet ends. Colours
/// are off when `NO_COLOR` is set (and not empty).
pub async fn run(source: TuiSource, mode: TuiMode) -> io::Result<TuiExit> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    install_panic_hook();
    let mut guard = TerminalGuard::enter()?;
    let input = EventStream::new();
    let set_copy_mode = |copy: bool| {
        // Copy mode releases the mouse, so the terminal's own selection works.
        if copy {
            execute!(io::stdout(), DisableMouseCapture)
        } else {
            execute!(io::stdout(), EnableMouseCapture)
        }
    };
    let result = run_with(
        &mut guard.terminal,
        source,
        TuiState::new(mode, no_color),
        input,
        set_copy_mode,
    )
    .await;
    drop(guard);
    result
}

/// What to sample for each service that is up: its container, or else its process
/// group (a process instance's pid is its group's id).
fn sample_targets(snapshot: &Snapshot) -> Vec<(String, Target)> {
    snapshot
        .services
        .iter()
        .filter(|service| service.status.state.is_up())
        .filter_map(|service| {
            let target = match (&service.status.container, service.status.pid) {
                (Some(id), _) => Target::Container(id.clone()),
                (None, Some(pid)) => Target::Group(pid),
                (None, None) => return None,
            };
            // By log name, which stays when the row's name gains or loses its `.N`.
            Some((service.log_name(), target))
        })
        .collect()
}

/// The sampler goes to a blocking task and comes back with its sample.
type Sampled = (ResourceSampler, Vec<(String, Usage)>);

async fn join_sample(
    task: &mut Option<JoinHandle<Sampled>>,
) -> Result<Sampled, tokio::task::JoinError> {
    match task {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// A backend's error as an `io::Error`. Since ratatui 0.30 each backend names its
/// own error type: crossterm's is already an `io::Error` and is kept as it is (same
/// kind, same text); the test backend's cannot happen.
fn backend_error<E: std::error::Error + Send + Sync + 'static>(err: E) -> io::Error {
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    match boxed.downcast::<io::Error>() {
        Ok(io_error) => *io_error,
        Err(other) => io::Error::other(other),
    }
}

/// The loop behind [`run`], on any backend and any input stream, so tests drive it
/// with a `TestBackend` and scripted keys. `set_copy_mode` is told when copy mode
/// starts and ends.
pub async fn run_with<B, I>(
    terminal: &mut Terminal<B>,
    source: TuiSource,
    mut state: TuiState,
    mut input: I,
    mut set_copy_mode: impl FnMut(bool) -> io::Result<()>,
) -> io::Result<TuiExit>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
    I: Stream<Item = io::Result<TerminalEvent>> + Unpin,
{
    let TuiSource {
        mut snapshots,
        mut events,
        mut logs,
        send,
        read_tail,
    } = source;
    let size = terminal.size().map_err(backend_error)?;
    let mut pending = state.handle(Action::Resize {
        width: size.width,
        height: size.height,
    });
    let first = snapshots.borrow_and_update().clone();
    state.apply_snapshot(first, now_ms());

    // Log files are read on their own thread: a scrollback read of a big file takes
    // milliseconds to seconds and must not hold up keys or frames.
    let (read_sender, read_receiver) = std::sync::mpsc::channel::<Request>();
    let (loaded_sender, mut loaded) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("fleet-tui-logs".into())
        .spawn(move || {
            for request in read_receiver {
                let service = match &request {
                    Request::LoadOlder { service, .. }
                    | Request::LoadNewer { service, .. }
                    | Request::LoadTail { service, .. } => service.clone(),
                    _ => continue,
                };
                if let Some(answer) = scrollback::answer(&*read_tail, &request)
                    && loaded_sender.send((service, answer)).is_err()
                {
                    break;
                }
            }
        })?;
    let (done_sender, mut done) = mpsc::unbounded_channel::<(String, Result<String, String>)>();

    let mut sampler = Some(ResourceSampler::new());
    let mut sample_task = None;
    let mut resource_tick = tokio::time::interval(RESOURCE_PERIOD);
    resource_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock_tick = tokio::time::interval(CLOCK_PERIOD);
    clock_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut events_open = true;
    let mut logs_open = true;
    let mut copy_mode = false;
    let mut needs_draw = true;
    let mut last_draw: Option<Instant> = None;
    loop {
        pending.extend(state.drain_requests());
        for request in pending.drain(..) {
            match request {
                Request::Quit => return Ok(TuiExit::Quit),
                Request::StopFleetAndQuit => return Ok(TuiExit::StopFleet),
                Request::Send(command) => {
                    let label = state::describe(&command);
                    let reply = send(command);
                    let done_sender = done_sender.clone();
                    tokio::spawn(async move {
                        let outcome = reply.await;
                        let _ = done_sender.send((label, outcome));
                    });
                }
                load => {
                    // The reader thread only ends with this loop.
                    let _ = read_sender.send(load);
                }
            }
        }
        if state.copy_mode() != copy_mode {
            copy_mode = state.copy_mode();
            set_copy_mode(copy_mode)?;
            needs_draw = true;
        }
        needs_draw |= state.take_dirty();
        let mut draw_at = None;
        if needs_draw {
            let now = Instant::now();
            match last_draw.map(|at| at + FRAME).filter(|due| *due > now) {
                Some(due) => draw_at = Some(tokio::time::Instant::from_std(due)),
                None => {
                    let now_ms = now_ms();
                    terminal
                        .draw(|frame| view::draw(frame, &state, now_ms))
                        .map_err(backend_error)?;
                    last_draw = Some(now);
                    needs_draw = false;
                }
            }
        }

        tokio::select! {
            biased;
            terminal_event = input.next() => match terminal_event {
                Some(Ok(event)) => {
                    let action = match event {
                        TerminalEvent::Key(key) => keys::map_key(key, state.mode()),
                        TerminalEvent::Mouse(mouse) => keys::map_mouse(mouse, state.mode()),
                        TerminalEvent::Resize(width, height) => {
                            Some(Action::Resize { width, height })
                        }
                        _ => None,
                    };
                    if let Some(action) = action {
                        pending.extend(state.handle(action));
                    }
                }
                Some(Err(err)) => return Err(err),
                // No more input: the terminal is gone.
                None => return Ok(TuiExit::Quit),
            },
            _ = tokio::time::sleep_until(draw_at.unwrap_or_else(tokio::time::Instant::now)),
                if draw_at.is_some() => {}
            changed = snapshots.changed() => match changed {
                Ok(()) => {
                    let snapshot = snapshots.borrow_and_update().clone();
                    state.apply_snapshot(snapshot, now_ms());
                }
                Err(_) => return Ok(TuiExit::FleetEnded),
            },
            event = events.recv(), if events_open => match event {
                Some(event) => state.push_event(&event),
                None => events_open = false,
            },
            batch = logs.recv(), if logs_open => match batch {
                Some((service, lines)) => {
                    let started = Instant::now();
                    state.push_log_lines(&service, lines);
                    while started.elapsed() < LOG_BUDGET {
                        match logs.try_recv() {
                            Ok((service, lines)) => state.push_log_lines(&service, lines),
                            Err(_) => break,
                        }
                    }
                }
                None => logs_open = false,
            },
            Some((service, answer)) = loaded.recv() => match answer {
                Ok(Loaded::Older { lines, at_file_start, .. }) => {
                    state.prepend_log_lines(&service, lines, at_file_start)
                }
                Ok(Loaded::Newer { lines, reached_end, .. }) => {
                    state.append_loaded_lines(&service, lines, reached_end)
                }
                Ok(Loaded::Tail { lines, at_file_start, .. }) => {
                    state.replace_log_lines(&service, lines, at_file_start)
                }
                Err(err) => state.load_failed(&service, err.to_string()),
            },
            Some((label, outcome)) = done.recv() => state.command_finished(&label, outcome),
            sampled = join_sample(&mut sample_task) => {
                sample_task = None;
                match sampled {
                    Ok((returned, usage)) => {
                        sampler = Some(returned);
                        for (service, usage) in usage {
                            state.set_resources(&service, usage.cpu_percent, usage.rss_bytes);
                        }
                    }
                    // The sampler panicked; start over rather than stop sampling.
                    Err(_) => sampler = Some(ResourceSampler::new()),
                }
            },
            _ = resource_tick.tick() => {
                let targets = sample_targets(state.snapshot());
                if !targets.is_empty()
                    && sample_task.is_none()
                    && let Some(mut taken) = sampler.take()
                {
                    sample_task = Some(tokio::task::spawn_blocking(move || {
                        let usage = taken.sample(&targets);
                        (taken, usage)
                    }));
                }
            },
            _ = clock_tick.tick() => {
                if !state.snapshot().services.is_empty() {
                    state.mark_dirty();
                }
            },
        }
    }
}
