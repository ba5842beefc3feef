//! The log pane's half of [`TuiState`]: which log window is on screen, lines arriving
//! from the fleet and read back from the files, scrolling, following, and search and
//! filter input. The windows themselves are [`LogView`]s; this turns what they need
//! into [`Request`]s for the loop. The table and selection stay in [`super`].

use std::sync::Arc;

use ratatui::layout::Rect;

use super::{InputKind, Pane, Request, Shown, Status, TuiState};
use crate::logs::LogLine;
use crate::tui::log_view::{Line, LogGeometry, LogView, INITIAL_TAIL, LOAD_CHUNK, PREFETCH_LINES};
use crate::tui::rows::RowKind;
use crate::tui::text;

impl TuiState {
    // ----- which window is on screen, and its geometry ------------------------------

    /// Width of the name prefix in a merged view (all services, or one service's
    /// replicas); `None` when the pane shows one log file.
    pub fn prefix_name_width(&self) -> Option<usize> {
        let names: Box<dyn Iterator<Item = &str>> = match self.shown()? {
            Shown::All => Box::new(self.snapshot.services.iter().map(|s| s.name.as_str())),
            Shown::Group(_) => Box::new(
                self.selected_row()?
                    .instances(&self.snapshot)
                    .map(|s| s.name.as_str()),
            ),
            Shown::File(_) => return None,
        };
        Some(names.map(text::width).max().unwrap_or(4).clamp(4, 16))
    }

    /// What a line from the log file `key` is called in a merged view: its row's
    /// name (`web.1` for replica 1 of a replicated `web`, whose file is `web`), and
    /// the row's place for its colour.
    pub fn line_label<'a>(&'a self, key: &'a str) -> (&'a str, usize) {
        self.log_keys
            .iter()
            .position(|known| &**known == key)
            .and_then(|index| Some((self.snapshot.services.get(index)?.name.as_str(), index)))
            .unwrap_or((key, 0))
    }

    pub fn log_geometry_for(&self, body: Rect) -> LogGeometry {
        let mut prefix = 0;
        if let Some(name_width) = self.prefix_name_width() {
            prefix += name_width + 3;
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

    pub(super) fn log_geometry(&self) -> LogGeometry {
        self.log_geometry_for(self.areas().log_body)
    }

    /// Which log the pane shows: all services merged, the selected group's replicas
    /// merged, or the selected row's own file.
    pub(super) fn shown(&self) -> Option<Shown> {
        if self.show_all {
            return Some(Shown::All);
        }
        let row = self.selected_row()?;
        match row.kind {
            RowKind::Group { .. } => Some(Shown::Group(row.service.clone())),
            RowKind::Single | RowKind::Replica => {
                let key = self.log_key(*row.members.first()?)?;
                Some(Shown::File(key.clone()))
            }
        }
    }

    /// The name the log pane's title gives what it shows.
    pub fn shown_title(&self) -> String {
        match self.shown() {
            Some(Shown::All) => "all services".to_owned(),
            Some(Shown::Group(service)) => format!("{service} · all replicas"),
            Some(Shown::File(_)) => self.selected_service().unwrap_or("-").to_owned(),
            None => "-".to_owned(),
        }
    }

    /// The log window on screen.
    pub fn current_view(&self) -> Option<&LogView> {
        match self.shown()? {
            Shown::All => Some(&self.all),
            Shown::Group(service) => self.groups.get(&service),
            Shown::File(key) => self.views.get(&key),
        }
    }

    /// The file behind the window on screen; `None` for a merged window.
    pub(super) fn current_key(&self) -> Option<Arc<str>> {
        match self.shown()? {
            Shown::File(key) => Some(key),
            Shown::All | Shown::Group(_) => None,
        }
    }

    pub(super) fn current_view_mut(&mut self) -> Option<&mut LogView> {
        match self.shown()? {
            Shown::All => Some(&mut self.all),
            Shown::Group(service) => self.groups.get_mut(&service),
            Shown::File(key) => self.views.get_mut(&key),
        }
    }

    /// The key of `log_name`'s window, made (empty, to be loaded) if there is none.
    pub(super) fn view_key(&mut self, log_name: &str) -> Arc<str> {
        if let Some((key, _)) = self.views.get_key_value(log_name) {
            return key.clone();
        }
        let key: Arc<str> = Arc::from(log_name);
        self.views.insert(key.clone(), LogView::new(true));
        key
    }

    /// The merged window of the replicated service whose replica writes `log_name`
    /// (`web` or `web.N`: service names never end in `.N`).
    fn group_of(&mut self, log_name: &str) -> Option<&mut LogView> {
        let service = match log_name.rsplit_once('.') {
            Some((service, number))
                if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) =>
            {
                service
            }
            _ => log_name,
        };
        self.groups.get_mut(service)
    }

    // ----- log lines from the fleet and from the files -----------------------------

    pub(super) fn request_initial(&mut self, key: &Arc<str>) {
        let Some(view) = self.views.get_mut(key) else {
            return;
        };
        let Some((before_line_count, front)) = view.begin_initial_load() else {
            return;
        };
        self.requests.push(Request::LoadOlder {
            service: key.clone(),
            before_line_count,
            count: INITIAL_TAIL,
            front,
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
        let lines: Vec<Arc<Line>> = lines
            .into_iter()
            .map(|line| Arc::new(Line::from_log(&key, line)))
            .collect();
        for line in &lines {
            view.push_live(line.clone(), cap, queries);
            self.all.push_live(line.clone(), cap, queries);
        }
        let queries = self.queries.clone();
        if let Some(group) = self.group_of(&key) {
            for line in lines {
                group.push_live(line, cap, &queries);
            }
        }
        self.dirty = true;
    }

    /// Answer to [`Request::LoadOlder`]: lines older than the window, oldest first.
    /// `at_file_start` says the file has nothing older.
    pub fn prepend_log_lines(&mut self, service: &str, lines: Vec<Arc<Line>>, at_file_start: bool) {
        let cap = self.log_window;
        let Some(view) = self.views.get_mut(service) else {
            return;
        };
        let first_chunk = view.older_loaded(lines, at_file_start, cap, &self.queries);
        let queries = self.queries.clone();
        if let Some(group) = self.group_of(service) {
            group.merge(first_chunk.clone(), cap, &queries);
        }
        self.all.merge(first_chunk, cap, &queries);
        self.dirty = true;
    }

    /// Answer to [`Request::LoadNewer`]; `reached_end` says these run to the end of
    /// the file, so the window is live again.
    pub fn append_loaded_lines(&mut self, service: &str, lines: Vec<Arc<Line>>, reached_end: bool) {
        let cap = self.log_window;
        let Some(view) = self.views.get_mut(service) else {
            return;
        };
        view.newer_loaded(lines, reached_end, cap, &self.queries);
        self.dirty = true;
    }

    /// Answer to [`Request::LoadTail`]: the window becomes the end of the file.
    pub fn replace_log_lines(&mut self, service: &str, lines: Vec<Arc<Line>>, at_file_start: bool) {
        let Some(view) = self.views.get_mut(service) else {
            return;
        };
        view.tail_loaded(lines, at_file_start, &self.queries);
        self.dirty = true;
    }

    /// A read for `service` failed; allow the next one.
    pub fn load_failed(&mut self, service: &str, error: String) {
        if let Some(view) = self.views.get_mut(service) {
            view.load_failed();
        }
        self.set_status(format!("cannot read the log of {service}: {error}"), true);
    }

    // ----- log scrolling ----------------------------------------------------------

    pub(super) fn scroll_by(&mut self, delta: i64) {
        let geometry = self.log_geometry();
        let filtering = self.filtering();
        let key = self.current_key();
        let Some(view) = self.current_view_mut() else {
            return;
        };
        view.scroll_by(delta, filtering, &geometry);
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

    pub(super) fn scroll_to_top(&mut self) {
        let filtering = self.filtering();
        if let Some(view) = self.current_view_mut() {
            view.scroll_to_top(filtering);
        }
        if let Some(key) = self.current_key() {
            self.load_older(&key);
        }
    }

    pub(super) fn follow_on(&mut self) {
        let key = self.current_key();
        let Some(view) = self.current_view_mut() else {
            return;
        };
        // A merged view never detaches: it has no file to read the tail from.
        if view.follow_live()
            && let Some(service) = key
        {
            self.requests.push(Request::LoadTail {
                service,
                count: LOAD_CHUNK,
            });
        }
    }

    pub(super) fn follow_off(&mut self) {
        let geometry = self.log_geometry();
        let filtering = self.filtering();
        if let Some(view) = self.current_view_mut() {
            view.follow_off(filtering, &geometry);
        }
    }

    fn load_older(&mut self, key: &Arc<str>) {
        let Some(view) = self.views.get_mut(key) else {
            return;
        };
        let Some((before_line_count, front)) = view.begin_load_older() else {
            return;
        };
        self.requests.push(Request::LoadOlder {
            service: key.clone(),
            before_line_count,
            count: LOAD_CHUNK,
            front,
        });
    }

    fn load_newer(&mut self, key: &Arc<str>) {
        let Some(view) = self.views.get_mut(key) else {
            return;
        };
        let Some((after_line_count, back)) = view.begin_load_newer() else {
            return;
        };
        self.requests.push(Request::LoadNewer {
            service: key.clone(),
            after_line_count,
            count: LOAD_CHUNK,
            back,
        });
    }

    // ----- search and filter ------------------------------------------------------

    pub(super) fn start_input(&mut self, kind: InputKind) {
        self.input_previous = match kind {
            InputKind::Search => self.queries.search.clone(),
            InputKind::Filter => self.queries.filter.clone(),
        };
        self.input = Some((kind, String::new()));
        if kind == InputKind::Search {
            self.focus = Pane::Log;
        }
    }

    pub(super) fn edit_input(&mut self, edit: impl FnOnce(&mut String)) {
        let Some((kind, text)) = self.input.as_mut() else {
            return;
        };
        edit(text);
        let (kind, text) = (*kind, text.clone());
        // Incremental: every keystroke shows its hits at once.
        self.set_query(kind, text);
    }

    pub(super) fn submit_input(&mut self) {
        let Some((kind, text)) = self.input.take() else {
            return;
        };
        self.set_query(kind, text);
        if kind == InputKind::Search && self.searching() {
            self.jump_match(false);
        }
    }

    pub(super) fn cancel_input(&mut self) {
        if let Some((kind, _)) = self.input.take() {
            let previous = std::mem::take(&mut self.input_previous);
            self.set_query(kind, previous);
        }
    }

    pub(super) fn set_query(&mut self, kind: InputKind, text: String) {
        let changed = match kind {
            InputKind::Search => self.queries.set_search(text),
            InputKind::Filter => self.queries.set_filter(text),
        };
        if !changed {
            return;
        }
        for view in self.views.values_mut().chain(self.groups.values_mut()) {
            view.invalidate_hits();
        }
        self.all.invalidate_hits();
        let queries = self.queries.clone();
        if let Some(view) = self.current_view_mut() {
            view.clear_match();
            view.ensure_hits(&queries);
        }
    }

    /// `n` and `N`; see [`LogView::jump_match`].
    pub(super) fn jump_match(&mut self, forward: bool) {
        let geometry = self.log_geometry();
        let filtering = self.filtering();
        let Some(view) = self.current_view_mut() else {
            return;
        };
        if !view.jump_match(forward, filtering, &geometry) {
            self.status = Some(Status {
                text: "no matches".into(),
                error: false,
            });
        }
    }
}

#[cfg(test)]
#[path = "log_pane_tests.rs"]
mod tests;
