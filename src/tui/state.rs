//! Everything the TUI shows and every choice the user made in it, with pure updates.
//!
//! [`TuiState`] owns only presentation: a copy of the latest [`Snapshot`], the table's
//! rows, a bounded window of log lines per log file (a service's or a replica's),
//! scroll positions, search and filter, the resource history behind the sparklines,
//! and which overlay is open. It never does IO and never
//! reads a clock: the loop in [`super`] feeds it snapshots, events, log lines, resource
//! samples and [`Action`]s, and carries out the [`Request`]s it returns (send a command,
//! read older log lines from the file, quit).
//!
//! The log windows themselves (scroll, follow, search hits, merge) are [`LogView`]s in
//! [`super::log_view`]; this module decides which one is on screen and turns what it
//! needs into [`Request`]s.
//!
//! The table is [`super::rows`] over the snapshot: one row per service, a replicated
//! service's replicas under it when opened. Its half of the state (the rows, the
//! selection across rebuilds, each replicated service's merged log window, scaling)
//! is in `replicas`, the log pane's in `log_pane`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ratatui::layout::Rect;

use super::layout::{self, Areas};
use super::rows::TableRow;
use crate::event::{Command, Event, EventKind, ServiceState, Snapshot};

use super::log_view::Queries;
pub use super::log_view::{Line, LogGeometry, LogView, INITIAL_TAIL, LOAD_CHUNK, LOG_WINDOW};

mod log_pane;
mod replicas;

use replicas::PendingScale;

/// Resource samples kept per service: at one sample every 2 s, two minutes.
pub const HISTORY_SAMPLES: usize = 60;

/// `fleet up` (quitting asks whether to stop the fleet) or `fleet tui` (quitting leaves
/// it running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuiMode {
    Up,
    Attach,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Services,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Search,
    Filter,
}

/// What keys mean right now; see [`super::keys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Input(InputKind),
    Help,
    ConfirmQuit,
    Copy,
}

/// Everything a user can do, from a key, the mouse or a remote controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Move the keyboard focus to the log pane.
    FocusLog,
    SwitchPane,
    /// Esc: clear the search, then the filter, then go back to the service table.
    Back,
    Restart,
    Redeploy,
    StopStart,
    /// `+`: one replica more of the selected service.
    ScaleUp,
    /// `-`: one replica fewer (down to 0).
    ScaleDown,
    /// Show a replicated service's replicas under it.
    Expand,
    /// Fold them back; on a replica, fold its service and select it.
    Collapse,
    ToggleExpand,
    /// Show the services no active profile enables, as `fleet ps --all` does.
    ToggleInactive,
    ToggleAll,
    ToggleFollow,
    ToggleWrap,
    ToggleTimestamps,
    ToggleCopy,
    ToggleHelp,
    StartSearch,
    StartFilter,
    InputChar(char),
    InputBackspace,
    InputClear,
    InputSubmit,
    InputCancel,
    NextMatch,
    PrevMatch,
    /// `q`: asks first in `fleet up`.
    Quit,
    /// Ctrl-C: stops the fleet without asking in `fleet up`, quits in `fleet tui`.
    Interrupt,
    ConfirmYes,
    ConfirmNo,
    /// Mouse wheel at a screen position; negative is up.
    Scroll {
        column: u16,
        row: u16,
        lines: i32,
    },
    Click {
        column: u16,
        row: u16,
    },
    Resize {
        width: u16,
        height: u16,
    },
}

/// What the loop must do outside the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Send(Command),
    /// Read up to `count` lines older than `front` (the oldest line in memory, which
    /// sits about `before_line_count` lines from the end of the file); answer with
    /// [`TuiState::prepend_log_lines`].
    LoadOlder {
        service: Arc<str>,
        before_line_count: usize,
        count: usize,
        front: Option<Arc<Line>>,
    },
    /// Read up to `count` lines newer than `back` (about `after_line_count` lines from
    /// the end); answer with [`TuiState::append_loaded_lines`].
    LoadNewer {
        service: Arc<str>,
        after_line_count: usize,
        count: usize,
        back: Arc<Line>,
    },
    /// Read the last `count` lines; answer with [`TuiState::replace_log_lines`].
    LoadTail {
        service: Arc<str>,
        count: usize,
    },
    Quit,
    StopFleetAndQuit,
}

/// The last command's outcome, shown in the footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// What the log pane shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shown {
    /// Every service merged.
    All,
    /// A replicated service's replicas merged.
    Group(String),
    /// One log file: a service's or a replica's (its log name).
    File(Arc<str>),
}

#[derive(Debug, Clone, Default)]
pub struct ResourceHistory {
    pub cpu_percent: VecDeque<f32>,
    pub rss_bytes: VecDeque<u64>,
}

/// See the module documentation.
pub struct TuiState {
    pub(super) tui_mode: TuiMode,
    pub(super) no_color: bool,
    pub(super) snapshot: Arc<Snapshot>,
    /// Each snapshot row's log name (`web` for replica 1, `web.N` for the others), by
    /// snapshot index: the key of its log window and resources.
    pub(super) log_keys: Vec<Arc<str>>,
    /// The table as shown; `selected` and `table_offset` index it.
    pub(super) rows: Vec<TableRow>,
    pub(super) expanded: HashSet<String>,
    pub(super) show_inactive: bool,
    /// Per service, in the order sent.
    pending_scale: HashMap<String, Vec<PendingScale>>,
    pub(super) selected: usize,
    pub(super) table_offset: usize,
    pub(super) focus: Pane,
    pub(super) show_all: bool,
    /// One window per log file, by log name.
    pub(super) views: HashMap<Arc<str>, LogView>,
    /// The merged window of each replicated service, by service.
    pub(super) groups: HashMap<String, LogView>,
    pub(super) all: LogView,
    pub(super) queries: Queries,
    pub(super) input: Option<(InputKind, String)>,
    /// The query an input replaced, restored when the input is cancelled.
    input_previous: String,
    pub(super) wrap: bool,
    pub(super) timestamps: bool,
    pub(super) copy: bool,
    pub(super) help: bool,
    pub(super) confirm_quit: bool,
    pub(super) status: Option<Status>,
    pub(super) last_events: HashMap<String, (String, u64)>,
    /// By log name, which stays the same when a service gains or loses replicas.
    pub(super) resources: HashMap<String, ResourceHistory>,
    pub(super) size: (u16, u16),
    log_window: usize,
    requests: Vec<Request>,
    dirty: bool,
}

impl TuiState {
    pub fn new(mode: TuiMode, no_color: bool) -> TuiState {
        TuiState {
            tui_mode: mode,
            no_color,
            snapshot: Arc::new(Snapshot::default()),
            log_keys: Vec::new(),
            rows: Vec::new(),
            expanded: HashSet::new(),
            show_inactive: false,
            pending_scale: HashMap::new(),
            selected: 0,
            table_offset: 0,
            focus: Pane::Services,
            show_all: false,
            views: HashMap::new(),
            groups: HashMap::new(),
            all: LogView::new(false),
            queries: Queries::default(),
            input: None,
            input_previous: String::new(),
            wrap: false,
            timestamps: false,
            copy: false,
            help: false,
            confirm_quit: false,
            status: None,
            last_events: HashMap::new(),
            resources: HashMap::new(),
            size: (80, 24),
            log_window: LOG_WINDOW,
            requests: Vec::new(),
            dirty: true,
        }
    }

    /// A smaller window, so tests can cross its bound cheaply.
    pub fn with_log_window(mut self, lines: usize) -> TuiState {
        self.log_window = lines.max(1);
        self
    }

    pub fn mode(&self) -> Mode {
        if self.confirm_quit {
            Mode::ConfirmQuit
        } else if self.help {
            Mode::Help
        } else if let Some((kind, _)) = &self.input {
            Mode::Input(*kind)
        } else if self.copy {
            Mode::Copy
        } else {
            Mode::Normal
        }
    }

    pub fn tui_mode(&self) -> TuiMode {
        self.tui_mode
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    pub fn focus(&self) -> Pane {
        self.focus
    }

    pub fn copy_mode(&self) -> bool {
        self.copy
    }

    pub fn follow(&self) -> bool {
        self.current_view().is_none_or(|view| view.follow)
    }

    /// The name the selected row's commands take: a service (a group acts on all its
    /// replicas) or one replica (`web.2`).
    pub fn selected_service(&self) -> Option<&str> {
        self.selected_row().map(|row| row.target(&self.snapshot))
    }

    pub fn selected_row(&self) -> Option<&TableRow> {
        self.rows.get(self.selected)
    }

    /// The table's rows, as drawn.
    pub fn rows(&self) -> &[TableRow] {
        &self.rows
    }

    /// The log name of the snapshot row at `index`.
    pub(super) fn log_key(&self, index: usize) -> Option<&Arc<str>> {
        self.log_keys.get(index)
    }

    /// True once since the last call if anything on screen may have changed.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Work for the loop queued by updates other than [`TuiState::handle`].
    pub fn drain_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    pub fn searching(&self) -> bool {
        !self.queries.search.is_empty()
    }

    pub fn filtering(&self) -> bool {
        !self.queries.filter.is_empty()
    }

    pub fn search_query(&self) -> &str {
        &self.queries.search
    }

    pub fn filter_query(&self) -> &str {
        &self.queries.filter
    }

    pub fn input(&self) -> Option<(InputKind, &str)> {
        self.input
            .as_ref()
            .map(|(kind, text)| (*kind, text.as_str()))
    }

    pub fn areas(&self) -> Areas {
        layout::areas(
            Rect::new(0, 0, self.size.0, self.size.1),
            self.rows.len(),
            self.copy,
        )
    }

    /// The newest of the snapshot's last event and the last one pushed, with its time.
    pub fn last_event(&self, service: &str) -> Option<(&str, u64)> {
        let from_snapshot = self.snapshot.service(service).and_then(|snapshot| {
            Some((
                snapshot.last_event.as_deref()?,
                snapshot.last_event_at_ms.unwrap_or(0),
            ))
        });
        let pushed = self
            .last_events
            .get(service)
            .map(|(text, at)| (text.as_str(), *at));
        match (from_snapshot, pushed) {
            (Some(a), Some(b)) => Some(if b.1 >= a.1 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    // ----- updates from the fleet -------------------------------------------------

    pub fn apply_snapshot(&mut self, snapshot: Arc<Snapshot>, _now_ms: u64) {
        let selection = self.selection();
        let shown = self.shown();
        self.snapshot = snapshot;
        let log_names: Vec<String> = self
            .snapshot
            .services
            .iter()
            .map(|service| service.log_name())
            .collect();
        self.log_keys = log_names.iter().map(|name| self.view_key(name)).collect();
        let known: HashSet<&str> = self.log_keys.iter().map(|key| &**key).collect();
        self.views.retain(|name, _| known.contains(&**name));
        self.resources
            .retain(|name, _| known.contains(name.as_str()));
        for key in self.log_keys.clone() {
            self.request_initial(&key);
        }
        self.update_groups();
        self.forget_applied_scales();
        self.rebuild_rows(selection, shown);
        let queries = self.queries.clone();
        if let Some(view) = self.current_view_mut() {
            view.ensure_hits(&queries);
        }
        self.dirty = true;
    }

    pub fn push_event(&mut self, event: &Event) {
        if matches!(event.kind, EventKind::StateChanged { .. }) {
            return;
        }
        let current = self
            .snapshot
            .service(&event.service)
            .map(|service| service.status.generation);
        if current.is_some_and(|current| event.kind.is_routine_for(event.generation, current)) {
            return;
        }
        self.last_events
            .insert(event.service.clone(), (event.kind.to_string(), event.at_ms));
        self.dirty = true;
    }

    pub fn set_resources(&mut self, service: &str, cpu_percent: f32, rss_bytes: u64) {
        let history = self.resources.entry(service.to_owned()).or_default();
        history.cpu_percent.push_back(cpu_percent);
        history.rss_bytes.push_back(rss_bytes);
        while history.cpu_percent.len() > HISTORY_SAMPLES {
            history.cpu_percent.pop_front();
        }
        while history.rss_bytes.len() > HISTORY_SAMPLES {
            history.rss_bytes.pop_front();
        }
        self.dirty = true;
    }

    /// The outcome of a command sent earlier.
    pub fn command_finished(&mut self, label: &str, outcome: Result<String, String>) {
        self.scale_finished(label, outcome.is_ok());
        self.status = Some(match outcome {
            Ok(reply) if reply.is_empty() => Status {
                text: format!("{label}: done"),
                error: false,
            },
            Ok(reply) => Status {
                text: format!("{label}: {reply}"),
                error: false,
            },
            Err(error) => Status {
                text: format!("{label} failed: {error}"),
                error: true,
            },
        });
        self.dirty = true;
    }

    /// A message from the loop (e.g. a log file that could not be read).
    pub fn set_status(&mut self, text: String, error: bool) {
        self.status = Some(Status { text, error });
        self.dirty = true;
    }

    // ----- user actions -----------------------------------------------------------

    pub fn handle(&mut self, action: Action) -> Vec<Request> {
        self.dirty = true;
        match action {
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.page(-1),
            Action::PageDown => self.page(1),
            Action::Top => match self.focus {
                Pane::Services => self.select(0),
                Pane::Log => self.scroll_to_top(),
            },
            Action::Bottom => match self.focus {
                Pane::Services => self.select(self.rows.len().saturating_sub(1)),
                Pane::Log => self.follow_on(),
            },
            Action::FocusLog => self.focus = Pane::Log,
            Action::SwitchPane => {
                self.focus = match self.focus {
                    Pane::Services => Pane::Log,
                    Pane::Log => Pane::Services,
                }
            }
            Action::Back => self.back(),
            Action::Restart => self.send_for_selected(|services| Command::Restart { services }),
            Action::Redeploy => self.send_for_selected(|services| Command::Redeploy { services }),
            Action::StopStart => self.stop_or_start(),
            Action::ScaleUp => self.scale_selected(1),
            Action::ScaleDown => self.scale_selected(-1),
            Action::Expand => self.set_expanded(Some(true)),
            Action::Collapse => self.set_expanded(Some(false)),
            Action::ToggleExpand => self.set_expanded(None),
            Action::ToggleInactive => {
                self.show_inactive = !self.show_inactive;
                let (selection, shown) = (self.selection(), self.shown());
                self.rebuild_rows(selection, shown);
            }
            Action::ToggleAll => {
                self.show_all = !self.show_all;
                self.view_changed();
            }
            Action::ToggleFollow => {
                if self.follow() {
                    self.follow_off();
                } else {
                    self.follow_on();
                }
            }
            Action::ToggleWrap => self.wrap = !self.wrap,
            Action::ToggleTimestamps => self.timestamps = !self.timestamps,
            Action::ToggleCopy => self.copy = !self.copy,
            Action::ToggleHelp => self.help = !self.help,
            Action::StartSearch => self.start_input(InputKind::Search),
            Action::StartFilter => self.start_input(InputKind::Filter),
            Action::InputChar(c) => self.edit_input(|text| text.push(c)),
            Action::InputBackspace => self.edit_input(|text| {
                text.pop();
            }),
            Action::InputClear => self.edit_input(String::clear),
            Action::InputSubmit => self.submit_input(),
            Action::InputCancel => self.cancel_input(),
            Action::NextMatch => self.jump_match(true),
            Action::PrevMatch => self.jump_match(false),
            Action::Quit => match self.tui_mode {
                TuiMode::Up => self.confirm_quit = true,
                TuiMode::Attach => self.requests.push(Request::Quit),
            },
            Action::Interrupt => self.requests.push(match self.tui_mode {
                TuiMode::Up => Request::StopFleetAndQuit,
                TuiMode::Attach => Request::Quit,
            }),
            Action::ConfirmYes => {
                self.confirm_quit = false;
                self.requests.push(Request::StopFleetAndQuit);
            }
            Action::ConfirmNo => self.confirm_quit = false,
            Action::Scroll { column, row, lines } => self.mouse_scroll(column, row, lines),
            Action::Click { column, row } => self.click(column, row),
            Action::Resize { width, height } => {
                self.size = (width, height);
                self.keep_selection_visible();
            }
        }
        std::mem::take(&mut self.requests)
    }

    fn move_by(&mut self, delta: i64) {
        match self.focus {
            Pane::Services => {
                let target = (self.selected as i64 + delta).max(0) as usize;
                self.select(target);
            }
            Pane::Log => self.scroll_by(delta),
        }
    }

    fn page(&mut self, direction: i64) {
        let areas = self.areas();
        match self.focus {
            Pane::Services => {
                let rows = layout::table_rows(&areas).max(2) as i64 - 1;
                let target = (self.selected as i64 + direction * rows).max(0) as usize;
                self.select(target);
            }
            Pane::Log => {
                let rows = (areas.log_body.height as i64 - 1).max(1);
                self.scroll_by(direction * rows);
            }
        }
    }

    fn select(&mut self, index: usize) {
        let index = index.min(self.rows.len().saturating_sub(1));
        if index != self.selected {
            self.selected = index;
            if !self.show_all {
                self.view_changed();
            }
        }
        self.keep_selection_visible();
    }

    fn view_changed(&mut self) {
        let queries = self.queries.clone();
        if let Some(view) = self.current_view_mut() {
            view.clear_match();
            view.ensure_hits(&queries);
        }
        if let Some(key) = self.current_key() {
            self.request_initial(&key);
        }
    }

    fn keep_selection_visible(&mut self) {
        let rows = layout::table_rows(&self.areas()).max(1);
        if self.selected < self.table_offset {
            self.table_offset = self.selected;
        } else if self.selected >= self.table_offset + rows {
            self.table_offset = self.selected + 1 - rows;
        }
        let max_offset = self.rows.len().saturating_sub(rows);
        self.table_offset = self.table_offset.min(max_offset);
    }

    fn back(&mut self) {
        if self.searching() {
            self.set_query(InputKind::Search, String::new());
        } else if self.filtering() {
            self.set_query(InputKind::Filter, String::new());
        } else {
            self.focus = Pane::Services;
        }
    }

    fn send_for_selected(&mut self, command: impl FnOnce(Vec<String>) -> Command) {
        if let Some(name) = self.selected_service() {
            let command = command(vec![name.to_owned()]);
            self.send(command);
        }
    }

    fn send(&mut self, command: Command) {
        self.status = Some(Status {
            text: format!("{}…", describe(&command)),
            error: false,
        });
        self.requests.push(Request::Send(command));
    }

    /// `s`: stops what runs, starts what does not; a group counts as stopped when
    /// none of its replicas runs.
    fn stop_or_start(&mut self) {
        let Some(row) = self.selected_row() else {
            return;
        };
        let stopped = row.instances(&self.snapshot).all(|service| {
            matches!(
                service.status.state,
                ServiceState::Stopped
                    | ServiceState::Stopping
                    | ServiceState::Failed
                    | ServiceState::Completed
            )
        });
        if stopped {
            self.send_for_selected(|services| Command::Start { services });
        } else {
            self.send_for_selected(|services| Command::Stop { services });
        }
    }

    // ----- mouse ------------------------------------------------------------------

    fn mouse_scroll(&mut self, column: u16, row: u16, lines: i32) {
        let areas = self.areas();
        if layout::contains(areas.table, column, row) {
            let target = (self.selected as i64 + i64::from(lines.signum())).max(0) as usize;
            self.select(target);
        } else if layout::contains(areas.log_body, column, row)
            || layout::contains(areas.log_title, column, row)
        {
            self.scroll_by(i64::from(lines));
        }
    }

    fn click(&mut self, column: u16, row: u16) {
        let areas = self.areas();
        if layout::contains(areas.table, column, row) {
            self.focus = Pane::Services;
            if row > areas.table.y {
                let index = self.table_offset + (row - areas.table.y - 1) as usize;
                // A click on the selected group opens or folds it.
                if index == self.selected && self.selected_row().is_some_and(TableRow::is_group) {
                    self.set_expanded(None);
                } else if index < self.rows.len() {
                    self.select(index);
                }
            }
        } else if layout::contains(areas.log_body, column, row)
            || layout::contains(areas.log_title, column, row)
        {
            self.focus = Pane::Log;
        }
    }
}

/// `restart api`, as the footer says it.
pub fn describe(command: &Command) -> String {
    let (verb, services) = match command {
        Command::Start { services } => ("start", services),
        Command::Stop { services } => ("stop", services),
        Command::Restart { services } => ("restart", services),
        Command::Redeploy { services } => ("redeploy", services),
        Command::Reload => return "reload".into(),
        Command::Scale { counts } => {
            let counts: Vec<String> = counts
                .iter()
                .map(|(service, count)| format!("{service}={count}"))
                .collect();
            return format!("scale {}", counts.join(" "));
        }
        Command::Down => return "down".into(),
        Command::Kill => return "kill".into(),
    };
    if services.is_empty() {
        format!("{verb} all")
    } else {
        format!("{verb} {}", services.join(" "))
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
