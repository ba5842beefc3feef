//! Plain-text output of `fleet up` and `fleet logs`: each line labelled with its
//! service, fleet's status lines, and the printer thread that writes them. Reads the
//! log hub and the event broadcast; owns nothing else.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use tokio::sync::{broadcast, oneshot};

use crate::event::Event;
use crate::logs::LogBatch;

/// Colour on a terminal, unless `NO_COLOR` is set (to anything but empty).
pub fn use_color(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// How `fleet up` and `fleet logs` label lines: each service's name padded to the
/// widest one shown, in its own colour (by manifest order) on a terminal. Prefixes are
/// made once, not per line.
pub struct Labels {
    prefixes: std::collections::HashMap<String, String>,
    colors: std::collections::HashMap<String, &'static str>,
}

impl Labels {
    pub fn new(all: &[String], shown: &[String], color: bool) -> Labels {
        let width = shown
            .iter()
            .map(|name| name.chars().count())
            .max()
            .unwrap_or(0)
            .min(24);
        let colors: std::collections::HashMap<String, &'static str> = if color {
            all.iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), PALETTE[i % PALETTE.len()]))
                .collect()
        } else {
            Default::default()
        };
        let prefixes = all
            .iter()
            .map(|name| {
                let padded = format!("{name:<width$}");
                let prefix = match colors.get(name) {
                    Some(code) => format!("{code}{padded}{RESET} | "),
                    None => format!("{padded} | "),
                };
                (name.clone(), prefix)
            })
            .collect();
        Labels { prefixes, colors }
    }

    /// Lines of `file` (a log name: `web` is replica 1 of a replicated `web`) are
    /// labelled as `shown` (`web.1`).
    pub fn alias(&mut self, file: &str, shown: &str) {
        if let Some(prefix) = self.prefixes.get(shown).cloned() {
            self.prefixes.insert(file.to_string(), prefix);
        }
    }

    /// `users   | ` for an output line; a name not known at the start (a replica
    /// added by `fleet scale`) gets its name, unpadded.
    pub fn prefix(&self, name: &str) -> std::borrow::Cow<'_, str> {
        match self.prefixes.get(name) {
            Some(prefix) => std::borrow::Cow::Borrowed(prefix.as_str()),
            None => std::borrow::Cow::Owned(format!("{name} | ")),
        }
    }

    /// `users: started (pid 4242)` for a status line.
    pub fn status(&self, name: &str, text: &str) -> String {
        match self.colors.get(name) {
            Some(code) => format!("{code}{BOLD}{name}{RESET}: {text}\n"),
            None => format!("{name}: {text}\n"),
        }
    }
}

/// ANSI colours that read on dark and light terminals and exist in 8-colour ones.
const PALETTE: [&str; 6] = [
    "\x1b[36m", "\x1b[33m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[31m",
];
const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";

/// `fleet up` without the TUI: every output line prefixed with its service, and
/// fleet's status lines. Runs on its own thread so a slow terminal blocks only it;
/// if it falls behind, it says how much it skipped (the log files have everything).
pub struct Printer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Printer {
    /// `names` are the labels shown; `aliases` map a log name to one of them
    /// (replica 1 of a replicated `web` writes `web`, shown as `web.1`).
    pub fn start(
        names: &[String],
        aliases: &[(String, String)],
        logs: Option<broadcast::Receiver<Arc<LogBatch>>>,
        mut events: broadcast::Receiver<Event>,
    ) -> Printer {
        let mut labels = Labels::new(names, names, use_color(&std::io::stdout()));
        for (file, shown) in aliases {
            labels.alias(file, shown);
        }
        let (stop, mut stopped) = oneshot::channel::<()>();
        // Without output to show, a receiver that never receives stands in; its sender
        // lives as long as the thread, so it never reports "closed" either.
        let (idle_sender, idle) = broadcast::channel(1);
        let mut logs = logs.unwrap_or(idle);
        let thread = std::thread::Builder::new().name("fleet-printer".into()).spawn(move || {
            let _idle_sender = idle_sender;
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            runtime.block_on(async {
                let mut draining = false;
                loop {
                    let next = if draining {
                        // Shutdown: print what is already queued, then end.
                        match (logs.try_recv(), events.try_recv()) {
                            (Err(_), Err(_)) => break,
                            (log, event) => (log.ok(), event.ok()),
                        }
                    } else {
                        tokio::select! {
                            log = logs.recv() => match log {
                                Ok(batch) => (Some(batch), None),
                                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                                    let _ = writeln!(out, "fleet: output too fast for this terminal, {skipped} batches not shown (all are in .fleet/logs)");
                                    (None, None)
                                }
                                Err(broadcast::error::RecvError::Closed) => { draining = true; (None, None) }
                            },
                            event = events.recv() => match event {
                                Ok(event) => (None, Some(event)),
                                Err(broadcast::error::RecvError::Lagged(_)) => (None, None),
                                Err(broadcast::error::RecvError::Closed) => { draining = true; (None, None) }
                            },
                            _ = &mut stopped => { draining = true; (None, None) }
                        }
                    };
                    // fleet's own lines reach the terminal as events; the log keeps both.
                    if let Some(batch) = next.0.filter(|batch| batch.stream != crate::logs::Stream::Fleet) {
                        let head = labels.prefix(&batch.service);
                        for line in batch.lines() {
                            let _ = out.write_all(head.as_bytes());
                            let _ = out.write_all(line);
                            let _ = out.write_all(b"\n");
                        }
                    }
                    if let Some(event) = next.1 {
                        let line = labels.status(&event.service, &event.kind.to_string());
                        let _ = out.write_all(line.as_bytes());
                    }
                    if logs.is_empty() && events.is_empty() {
                        let _ = out.flush();
                    }
                }
                let _ = out.flush();
            });
        });
        Printer {
            stop: Some(stop),
            thread: thread.ok(),
        }
    }

    pub fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
