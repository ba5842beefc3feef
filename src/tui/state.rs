//! Everything the TUI shows and every choice the user made in it, with pure updates.
//!
//! [`TuiState`] owns only presentation: a copy of the latest [`Snapshot`], a bounded
//! window of log lines per service, scroll positions, search and filter, the resource
//! history behind the sparklines, and which overlay is open. It never does IO and never
//! reads a clock: the loop in [`super`] feeds it snapshots, events, log lines, resource
//! samples and [`Action`]s, and carries out the [`Request`]s it returns (send a command,
//! read older log lines from the file, quit).
//!
//! # Log windows
//! Each service keeps at most `log_window` lines in memory. While following, new lines
//! push the oldest out. Scrolling up to the oldest line asks for older lines from the
//! file ([`Request::LoadOlder`]); when that makes the window too big, the newest lines
//! are dropped and the window is *detached* from the live end: new lines are only
//! counted until the user scrolls back down ([`Request::LoadNewer`]) or jumps to the end
//! ([`Request::LoadTail`]). A window the user is reading (not following) never loses
//! the lines on screen: when it is full it detaches instead of dropping its front.
//! Lines are numbered by a sequence that survives both ends moving, so positions and
//! search hits stay valid.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ratatui::layout::Rect;

use super::layout::{self, Areas};
use super::text;
use crate::event::{Command, Event, EventKind, ServiceState, Snapshot};
use crate::logs::{parse_timestamp, LogLine, Stream};

/// Lines kept in memory per service (and for the merged view). At ~100 bytes a line
/// this bounds a flooding service to a few MB; older lines are read back on demand.
pub const LOG_WINDOW: usize = 50_000;
/// Lines read from the file per scrollback step.
pub const LOAD_CHUNK: usize = 5_000;
/// Lines read from each service's file when the UI starts: enough for a first screen
/// and the merged view, cheap for 300 services.
pub const INITIAL_TAIL: usize = 500;
/// Resource samples kept per service: at one sample every 2 s, two minutes.
pub const HISTORY_SAMPLES: usize = 60;
/// Scrolling closer than this many lines to the oldest line in memory fetches more.
const PREFETCH_LINES: usize = 200;
/// How far back from the end of a loaded chunk the seam with memory is looked for.
const SEAM_SEARCH: usize = 4_096;

/// One log line as the TUI keeps it: text made safe to draw, time parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub service: Arc<str>,
    /// Milliseconds since the Unix epoch, 0 when the file's timestamp was unreadable.
    pub at_ms: u64,
    pub stream: Stream,
    pub text: Box<str>,
}

impl Line {
    pub fn from_log(service: &Arc<str>, line: LogLine) -> Line {
        Line {
            service: service.clone(),
            at_ms: parse_timestamp(&line.timestamp).unwrap_or(0),
            stream: line.stream,
            text: text::sanitize(line.text).into_boxed_str(),
        }
    }

    /// Same line of the same file: how a chunk read from the file is joined to memory.
    pub fn same_as(&self, other: &Line) -> bool {
        self.at_ms == other.at_ms && self.stream == other.stream && self.text == other.text
    }

    /// The line fleet writes when a new generation starts; drawn as a separator.
    pub fn is_boundary(&self) -> bool {
        self.stream == Stream::Fleet && self.text.starts_with("--- generation")
    }
}

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

#[derive(Debug, Clone, Default)]
pub struct ResourceHistory {
    pub cpu_percent: VecDeque<f32>,
    pub rss_bytes: VecDeque<u64>,
}

/// Search and filter text; `revision` changes whenever either does, so a view knows
/// whether its hit lists are current.
#[derive(Debug, Clone, Default)]
pub(super) struct Queries {
    pub search: String,
    pub filter: String,
    revision: u64,
}

/// Rows and cells the log pane has, and what each line costs in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogGeometry {
    pub rows: usize,
    pub width: usize,
    pub wrap: bool,
    /// Cells taken before the text: service prefix and timestamp.
    pub prefix: usize,
}

impl LogGeometry {
    pub fn rows_of(&self, line: &Line) -> usize {
        if !self.wrap || line.is_boundary() {
            1
        } else {
            let text_width = self.width.saturating_sub(self.prefix).max(1);
            text::wrapped_rows(text::width(&line.text), text_width)
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Hits {
    /// The query revision these lists were computed for.
    revision: Option<u64>,
    search: VecDeque<i64>,
    filter: VecDeque<i64>,
}

/// One scrollable window of log lines.
#[derive(Debug, Clone)]
pub struct LogView {
    lines: VecDeque<Arc<Line>>,
    /// Sequence number of `lines[0]`.
    first_seq: i64,
    pub follow: bool,
    /// Sequence number of the first line on screen when not following.
    top: i64,
    /// Lines of the file newer than the window's last line (detached window).
    lines_after_back: usize,
    pub at_file_start: bool,
    loading: bool,
    initial_requested: bool,
    merged_into_all: bool,
    /// The merged view has no file to read back, so it never detaches.
    can_load: bool,
    hits: Hits,
    current_match: Option<i64>,
}

impl LogView {
    fn new(can_load: bool) -> LogView {
        LogView {
            lines: VecDeque::new(),
            first_seq: 0,
            follow: true,
            top: 0,
            lines_after_back: 0,
            at_file_start: !can_load,
            loading: false,
            initial_requested: false,
            merged_into_all: false,
            can_load,
            hits: Hits::default(),
            current_match: None,
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn is_detached(&self) -> bool {
        self.lines_after_back > 0
    }

    pub fn line(&self, seq: i64) -> Option<&Arc<Line>> {
        usize::try_from(seq - self.first_seq)
            .ok()
            .and_then(|index| self.lines.get(index))
    }

    fn end_seq(&self) -> i64 {
        self.first_seq + self.lines.len() as i64
    }

    /// Lines shown: every line, or with a filter only the matching ones.
    pub fn display_len(&self, filtering: bool) -> usize {
        if filtering {
            self.hits.filter.len()
        } else {
            self.lines.len()
        }
    }

    pub fn display_seq(&self, filtering: bool, index: usize) -> Option<i64> {
        if filtering {
            self.hits.filter.get(index).copied()
        } else if index < self.lines.len() {
            Some(self.first_seq + index as i64)
        } else {
            None
        }
    }

    /// Index of the first shown line at or after `seq`.
    pub fn display_index(&self, filtering: bool, seq: i64) -> usize {
        if filtering {
            self.hits.filter.partition_point(|&hit| hit < seq)
        } else {
            (seq - self.first_seq).clamp(0, self.lines.len() as i64) as usize
        }
    }

    pub fn search_hits(&self) -> &VecDeque<i64> {
        &self.hits.search
    }

    pub fn current_match(&self) -> Option<i64> {
        self.current_match
    }

    /// Smallest top index that still shows the last line: the end is "in view" from
    /// there on.
    pub fn max_top(&self, filtering: bool, geometry: &LogGeometry) -> usize {
        let len = self.display_len(filtering);
        let mut used = 0;
        let mut top = len;
        while top > 0 {
            let Some(line) = self
                .display_seq(filtering, top - 1)
                .and_then(|seq| self.line(seq))
            else {
                break;
            };
            used += geometry.rows_of(line);
            if used > geometry.rows && top < len {
                break;
            }
            top -= 1;
        }
        top.min(len.saturating_sub(1))
    }

    /// Index of the first line on screen, following or not.
    pub fn top_index(&self, filtering: bool, geometry: &LogGeometry) -> usize {
        let max_top = self.max_top(filtering, geometry);
        if self.follow {
            max_top
        } else {
            self.display_index(filtering, self.top).min(max_top)
        }
    }

    fn note_hits(&mut self, seq: i64, line: &Line, queries: &Queries) {
        if self.hits.revision != Some(queries.revision) {
            return;
        }
        let shown = if queries.filter.is_empty() {
            true
        } else if line.is_boundary() || text::contains(&line.text, &queries.filter) {
            self.hits.filter.push_back(seq);
            true
        } else {
            false
        };
        if shown && text::contains(&line.text, &queries.search) {
            self.hits.search.push_back(seq);
        }
    }

    fn ensure_hits(&mut self, queries: &Queries) {
        if self.hits.revision == Some(queries.revision) {
            return;
        }
        self.hits = Hits {
            revision: Some(queries.revision),
            ..Hits::default()
        };
        if queries.search.is_empty() && queries.filter.is_empty() {
            return;
        }
        for index in 0..self.lines.len() {
            let line = self.lines[index].clone();
            self.note_hits(self.first_seq + index as i64, &line, queries);
        }
    }

    fn invalidate_hits(&mut self) {
        self.hits.revision = None;
    }

    fn drop_front(&mut self) {
        if self.lines.pop_front().is_some() {
            self.first_seq += 1;
            let first = self.first_seq;
            while self.hits.search.front().is_some_and(|&hit| hit < first) {
                self.hits.search.pop_front();
            }
            while self.hits.filter.front().is_some_and(|&hit| hit < first) {
                self.hits.filter.pop_front();
            }
            if self.top < first {
                self.top = first;
            }
        }
    }

    fn drop_back(&mut self) {
        if self.lines.pop_back().is_some() {
            let end = self.end_seq();
            while self.hits.search.back().is_some_and(|&hit| hit >= end) {
                self.hits.search.pop_back();
            }
            while self.hits.filter.back().is_some_and(|&hit| hit >= end) {
                self.hits.filter.pop_back();
            }
            self.lines_after_back += 1;
        }
    }

    fn push_back(&mut self, line: Arc<Line>, queries: &Queries) {
        let seq = self.end_seq();
        self.note_hits(seq, &line, queries);
        self.lines.push_back(line);
    }

    /// A line that just arrived from the service.
    fn push_live(&mut self, line: Arc<Line>, cap: usize, queries: &Queries) {
        if self.lines_after_back > 0 {
            self.lines_after_back += 1;
            return;
        }
        if self.can_load && !self.follow && self.lines.len() >= cap {
            // The user is reading: keep their lines, remember how far the file ran on.
            self.lines_after_back += 1;
            return;
        }
        self.push_back(line, queries);
        while self.lines.len() > cap {
            self.drop_front();
        }
    }

    /// Older lines from the file go in front. The chunk may overlap memory if the file
    /// grew while it was read; the overlap is cut at the seam.
    fn prepend(&mut self, mut older: Vec<Arc<Line>>, cap: usize, queries: &Queries) {
        if let Some(front) = self.lines.front() {
            let search_from = older.len().saturating_sub(SEAM_SEARCH);
            if let Some(seam) = older[search_from..]
                .iter()
                .rposition(|line| line.same_as(front))
            {
                older.truncate(search_from + seam);
            }
        }
        for line in older.into_iter().rev() {
            self.lines.push_front(line);
            self.first_seq -= 1;
        }
        while self.lines.len() > cap {
            if self.follow {
                self.drop_front();
            } else {
                self.drop_back();
            }
        }
        self.invalidate_hits();
        self.ensure_hits(queries);
    }

    fn append_loaded(
        &mut self,
        mut newer: Vec<Arc<Line>>,
        reached_end: bool,
        cap: usize,
        queries: &Queries,
    ) {
        if let Some(back) = self.lines.back() {
            let search_to = newer.len().min(SEAM_SEARCH);
            if let Some(seam) = newer[..search_to]
                .iter()
                .position(|line| line.same_as(back))
            {
                newer.drain(..=seam);
            }
        }
        let added = newer.len();
        for line in newer {
            self.push_back(line, queries);
        }
        self.lines_after_back = if reached_end {
            0
        } else {
            self.lines_after_back.saturating_sub(added.max(1))
        };
        while self.lines.len() > cap {
            self.drop_front();
        }
    }

    fn replace(&mut self, lines: Vec<Arc<Line>>, at_file_start: bool, queries: &Queries) {
        let first_seq = self.end_seq() + self.lines_after_back as i64;
        self.lines = lines.into();
        self.first_seq = first_seq;
        self.lines_after_back = 0;
        self.at_file_start = at_file_start;
        self.follow = true;
        self.current_match = None;
        self.invalidate_hits();
        self.ensure_hits(queries);
    }
}

/// See the module documentation.
pub struct TuiState {
    pub(super) tui_mode: TuiMode,
    pub(super) no_color: bool,
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) selected: usize,
    pub(super) table_offset: usize,
    pub(super) focus: Pane,
    pub(super) show_all: bool,
    pub(super) views: HashMap<Arc<str>, LogView>,
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
            selected: 0,
            table_offset: 0,
            focus: Pane::Services,
            show_all: false,
            views: HashMap::new(),
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

    pub fn selected_service(&self) -> Option<&str> {
        self.snapshot
            .services
            .get(self.selected)
            .map(|service| service.name.as_str())
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
            self.snapshot.services.len(),
            self.copy,
        )
    }

    /// Width of the service prefix in the merged view.
    pub fn prefix_name_width(&self) -> usize {
        self.snapshot
            .services
            .iter()
            .map(|service| text::width(&service.name))
            .max()
            .unwrap_or(4)
            .clamp(4, 16)
    }

    pub fn log_geometry_for(&self, body: Rect) -> LogGeometry {
        let mut prefix = 0;
        if self.show_all {
            prefix += self.prefix_name_width() + 3;
        }
        if self.timestamps {
            prefix += 9;
        }
        LogGeometry {
            rows: body.height as usize,
            width: body.width as usize,
            // Copy mode wraps: a line cut at the edge could not be copied whole.
            wrap: self.wrap || self.copy,
            prefix,
        }
    }

    fn log_geometry(&self) -> LogGeometry {
        self.log_geometry_for(self.areas().log_body)
    }

    /// The log window on screen: the selected service's, or the merged one.
    pub fn current_view(&self) -> Option<&LogView> {
        if self.show_all {
            Some(&self.all)
        } else {
            self.views.get(self.selected_service()?)
        }
    }

    fn current_key(&self) -> Option<Arc<str>> {
        let name = self.selected_service()?;
        self.views.get_key_value(name).map(|(key, _)| key.clone())
    }

    fn current_view_mut(&mut self) -> Option<&mut LogView> {
        if self.show_all {
            return Some(&mut self.all);
        }
        let name = self.snapshot.services.get(self.selected)?.name.as_str();
        self.views.get_mut(name)
    }

    fn view_key(&mut self, service: &str) -> Arc<str> {
        if let Some((key, _)) = self.views.get_key_value(service) {
            return key.clone();
        }
        let key: Arc<str> = Arc::from(service);
        self.views.insert(key.clone(), LogView::new(true));
        key
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
        let selected_name = self.selected_service().map(str::to_owned);
        self.snapshot = snapshot;
        if let Some(name) = selected_name {
            if let Some(index) = self.snapshot.services.iter().position(|s| s.name == name) {
                self.selected = index;
            }
        }
        self.selected = self
            .selected
            .min(self.snapshot.services.len().saturating_sub(1));
        let names: Vec<String> = self
            .snapshot
            .services
            .iter()
            .map(|service| service.name.clone())
            .collect();
        let known: HashSet<&str> = names.iter().map(String::as_str).collect();
        self.views.retain(|name, _| known.contains(&**name));
        self.resources
            .retain(|name, _| known.contains(name.as_str()));
        for name in &names {
            let key = self.view_key(name);
            self.request_initial(&key);
        }
        let queries = self.queries.clone();
        if let Some(view) = self.current_view_mut() {
            view.ensure_hits(&queries);
        }
        self.keep_selection_visible();
        self.dirty = true;
    }

    fn request_initial(&mut self, key: &Arc<str>) {
        let Some(view) = self.views.get_mut(key) else {
            return;
        };
        if view.initial_requested {
            return;
        }
        view.initial_requested = true;
        view.loading = true;
        self.requests.push(Request::LoadOlder {
            service: key.clone(),
            before_line_count: view.len(),
            count: INITIAL_TAIL,
            front: view.lines.front().cloned(),
        });
    }

    pub fn push_log_lines(&mut self, service: &str, lines: Vec<LogLine>) {
        if lines.is_empty() {
            return;
        }
        let key = self.view_key(service);
        let cap = self.log_window;
        let queries = &self.queries;
        let Some(view) = self.views.get_mut(&key) else {
            return;
        };
        for line in lines {
            let line = Arc::new(Line::from_log(&key, line));
            view.push_live(line.clone(), cap, queries);
            self.all.push_live(line, cap, queries);
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
            .map(|service| service.generation);
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

    /// Answer to [`Request::LoadOlder`]: lines older than the window, oldest first.
    /// `at_file_start` says the file has nothing older.
    pub fn prepend_log_lines(&mut self, service: &str, lines: Vec<Arc<Line>>, at_file_start: bool) {
        let cap = self.log_window;
        let Some(view) = self.views.get_mut(service) else {
            return;
        };
        let before = view.first_seq;
        view.prepend(lines, cap, &self.queries);
        view.loading = false;
        view.at_file_start = at_file_start;
        if !view.merged_into_all {
            // The merged view gets each service's first chunk, so it has history too.
            view.merged_into_all = true;
            let added: Vec<Arc<Line>> = (view.first_seq..before)
                .filter_map(|seq| view.line(seq).cloned())
                .collect();
            merge_sorted(&mut self.all, added, cap, &self.queries);
        }
        self.dirty = true;
    }

    /// Answer to [`Request::LoadNewer`]; `reached_end` says these run to the end of
    /// the file, so the window is live again.
    pub fn append_loaded_lines(&mut self, service: &str, lines: Vec<Arc<Line>>, reached_end: bool) {
        let cap = self.log_window;
        let Some(view) = self.views.get_mut(service) else {
            return;
        };
        view.append_loaded(lines, reached_end, cap, &self.queries);
        view.loading = false;
        self.dirty = true;
    }

    /// Answer to [`Request::LoadTail`]: the window becomes the end of the file.
    pub fn replace_log_lines(&mut self, service: &str, lines: Vec<Arc<Line>>, at_file_start: bool) {
        let Some(view) = self.views.get_mut(service) else {
            return;
        };
        view.replace(lines, at_file_start, &self.queries);
        view.loading = false;
        self.dirty = true;
    }

    /// A read for `service` failed; allow the next one.
    pub fn load_failed(&mut self, service: &str, error: String) {
        if let Some(view) = self.views.get_mut(service) {
            view.loading = false;
        }
        self.set_status(format!("cannot read the log of {service}: {error}"), true);
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
                Pane::Services => self.select(self.snapshot.services.len().saturating_sub(1)),
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
        let index = index.min(self.snapshot.services.len().saturating_sub(1));
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
            view.current_match = None;
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
        let max_offset = self.snapshot.services.len().saturating_sub(rows);
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
            self.status = Some(Status {
                text: format!("{}…", describe(&command)),
                error: false,
            });
            self.requests.push(Request::Send(command));
        }
    }

    fn stop_or_start(&mut self) {
        let Some(service) = self.snapshot.services.get(self.selected) else {
            return;
        };
        let stopped = matches!(
            service.state,
            ServiceState::Stopped
                | ServiceState::Stopping
                | ServiceState::Failed
                | ServiceState::Completed
        );
        if stopped {
            self.send_for_selected(|services| Command::Start { services });
        } else {
            self.send_for_selected(|services| Command::Stop { services });
        }
    }

    // ----- log scrolling ----------------------------------------------------------

    fn scroll_by(&mut self, delta: i64) {
        let geometry = self.log_geometry();
        let filtering = self.filtering();
        let key = if self.show_all {
            None
        } else {
            self.current_key()
        };
        let Some(view) = self.current_view_mut() else {
            return;
        };
        scroll_view(view, delta, filtering, &geometry);
        let index = view.top_index(filtering, &geometry);
        let at_bottom = !view.follow && index >= view.max_top(filtering, &geometry);
        let detached = view.is_detached();
        if let Some(key) = key {
            if delta < 0 && index < PREFETCH_LINES.max(geometry.rows) {
                self.load_older(&key);
            }
            if delta > 0 && at_bottom && detached {
                self.load_newer(&key);
            }
        }
    }

    fn scroll_to_top(&mut self) {
        let filtering = self.filtering();
        if let Some(view) = self.current_view_mut() {
            view.follow = false;
            if let Some(seq) = view.display_seq(filtering, 0) {
                view.top = seq;
            }
        }
        if let Some(key) = (!self.show_all).then(|| self.current_key()).flatten() {
            self.load_older(&key);
        }
    }

    fn follow_on(&mut self) {
        let show_all = self.show_all;
        let key = self.current_key();
        let Some(view) = self.current_view_mut() else {
            return;
        };
        view.follow = true;
        view.current_match = None;
        if view.is_detached() && !show_all && !view.loading {
            if let Some(service) = key {
                view.loading = true;
                self.requests.push(Request::LoadTail {
                    service,
                    count: LOAD_CHUNK,
                });
            }
        }
    }

    fn follow_off(&mut self) {
        let geometry = self.log_geometry();
        let filtering = self.filtering();
        if let Some(view) = self.current_view_mut() {
            let index = view.top_index(filtering, &geometry);
            if let Some(seq) = view.display_seq(filtering, index) {
                view.top = seq;
            }
            view.follow = false;
        }
    }

    fn load_older(&mut self, key: &Arc<str>) {
        let Some(view) = self.views.get_mut(key) else {
            return;
        };
        if view.loading || view.at_file_start || !view.can_load {
            return;
        }
        view.loading = true;
        self.requests.push(Request::LoadOlder {
            service: key.clone(),
            before_line_count: view.len() + view.lines_after_back,
            count: LOAD_CHUNK,
            front: view.lines.front().cloned(),
        });
    }

    fn load_newer(&mut self, key: &Arc<str>) {
        let Some(view) = self.views.get_mut(key) else {
            return;
        };
        let Some(back) = view.lines.back().cloned() else {
            return;
        };
        if view.loading {
            return;
        }
        view.loading = true;
        self.requests.push(Request::LoadNewer {
            service: key.clone(),
            after_line_count: view.lines_after_back,
            count: LOAD_CHUNK,
            back,
        });
    }

    // ----- search and filter ------------------------------------------------------

    fn start_input(&mut self, kind: InputKind) {
        self.input_previous = match kind {
            InputKind::Search => self.queries.search.clone(),
            InputKind::Filter => self.queries.filter.clone(),
        };
        self.input = Some((kind, String::new()));
        if kind == InputKind::Search {
            self.focus = Pane::Log;
        }
    }

    fn edit_input(&mut self, edit: impl FnOnce(&mut String)) {
        let Some((kind, text)) = self.input.as_mut() else {
            return;
        };
        edit(text);
        let (kind, text) = (*kind, text.clone());
        // Incremental: every keystroke shows its hits at once.
        self.set_query(kind, text);
    }

    fn submit_input(&mut self) {
        let Some((kind, text)) = self.input.take() else {
            return;
        };
        self.set_query(kind, text);
        if kind == InputKind::Search && self.searching() {
            self.jump_match(false);
        }
    }

    fn cancel_input(&mut self) {
        if let Some((kind, _)) = self.input.take() {
            let previous = std::mem::take(&mut self.input_previous);
            self.set_query(kind, previous);
        }
    }

    fn set_query(&mut self, kind: InputKind, text: String) {
        let target = match kind {
            InputKind::Search => &mut self.queries.search,
            InputKind::Filter => &mut self.queries.filter,
        };
        if *target == text {
            return;
        }
        *target = text;
        self.queries.revision += 1;
        for view in self.views.values_mut() {
            view.invalidate_hits();
        }
        self.all.invalidate_hits();
        let queries = self.queries.clone();
        if let Some(view) = self.current_view_mut() {
            view.current_match = None;
            view.ensure_hits(&queries);
        }
    }

    /// `n` goes to the next (newer) match, `N` to the previous (older) one; both wrap.
    /// Without a current match, `N` (and Enter on a search) goes to the newest match.
    fn jump_match(&mut self, forward: bool) {
        let geometry = self.log_geometry();
        let filtering = self.filtering();
        let Some(view) = self.current_view_mut() else {
            return;
        };
        let hits = &view.hits.search;
        let (Some(&first), Some(&last)) = (hits.front(), hits.back()) else {
            self.status = Some(Status {
                text: "no matches".into(),
                error: false,
            });
            return;
        };
        let target = match (view.current_match, forward) {
            (None, true) => {
                let from = if view.follow { i64::MIN } else { view.top };
                hits.iter()
                    .copied()
                    .find(|&hit| hit >= from)
                    .unwrap_or(first)
            }
            (None, false) => last,
            (Some(current), true) => hits
                .iter()
                .copied()
                .find(|&hit| hit > current)
                .unwrap_or(first),
            (Some(current), false) => hits
                .iter()
                .rev()
                .copied()
                .find(|&hit| hit < current)
                .unwrap_or(last),
        };
        view.current_match = Some(target);
        let index = view.display_index(filtering, target);
        let wanted_top = index
            .saturating_sub(geometry.rows / 3)
            .min(view.max_top(filtering, &geometry));
        if let Some(seq) = view.display_seq(filtering, wanted_top) {
            view.top = seq;
        }
        view.follow = false;
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
                if index < self.snapshot.services.len() {
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

fn scroll_view(view: &mut LogView, delta: i64, filtering: bool, geometry: &LogGeometry) {
    let len = view.display_len(filtering);
    if len == 0 {
        return;
    }
    let max_top = view.max_top(filtering, geometry);
    let current = view.top_index(filtering, geometry) as i64;
    let target = (current + delta).clamp(0, max_top as i64) as usize;
    if delta > 0 && target >= max_top && !view.is_detached() {
        view.follow = true;
        return;
    }
    if delta < 0 || !view.follow {
        view.follow = false;
        if let Some(seq) = view.display_seq(filtering, target) {
            view.top = seq;
        }
    }
}

/// Merges lines sorted by time into the merged view (itself in arrival order, which is
/// time order up to a few milliseconds between services).
fn merge_sorted(view: &mut LogView, lines: Vec<Arc<Line>>, cap: usize, queries: &Queries) {
    if lines.is_empty() {
        return;
    }
    let end_seq = view.end_seq();
    let existing = std::mem::take(&mut view.lines);
    let mut merged = VecDeque::with_capacity(existing.len() + lines.len());
    let mut old = existing.into_iter().peekable();
    let mut new = lines.into_iter().peekable();
    loop {
        let take_new = match (old.peek(), new.peek()) {
            (Some(a), Some(b)) => b.at_ms <= a.at_ms,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let next = if take_new { new.next() } else { old.next() };
        match next {
            Some(line) => merged.push_back(line),
            None => break,
        }
    }
    while merged.len() > cap {
        merged.pop_front();
    }
    view.first_seq = end_seq - merged.len() as i64;
    view.lines = merged;
    view.top = view.top.max(view.first_seq);
    view.invalidate_hits();
    view.ensure_hits(queries);
}

/// `restart api`, as the footer says it.
pub fn describe(command: &Command) -> String {
    let (verb, services) = match command {
        Command::Start { services } => ("start", services),
        Command::Stop { services } => ("stop", services),
        Command::Restart { services } => ("restart", services),
        Command::Redeploy { services } => ("redeploy", services),
        Command::Reload => return "reload".into(),
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
