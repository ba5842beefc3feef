//! The log pane's half of [`TuiState`]: which log window is on screen, lines arriving
//! from the fleet and read back from the files, scrolling, following, and search and
//! filter input. The windows themselves are [`LogView`]s; this turns what they need
//! into [`Request`]s for the loop. The table and selection stay in [`super`].

use std::sync::Arc;

use ratatui::layout::Rect;

use super::{InputKind, Pane, Request, Status, TuiState};
use crate::logs::LogLine;
use crate::tui::log_view::{Line, LogGeometry, LogView, INITIAL_TAIL, LOAD_CHUNK, PREFETCH_LINES};
use crate::tui::text;

impl TuiState {
    // ----- which window is on screen, and its geometry ------------------------------

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

    pub(super) fn log_geometry(&self) -> LogGeometry {
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

    pub(super) fn current_key(&self) -> Option<Arc<str>> {
        let name = self.selected_service()?;
        self.views.get_key_value(name).map(|(key, _)| key.clone())
    }

    pub(super) fn current_view_mut(&mut self) -> Option<&mut LogView> {
        if self.show_all {
            return Some(&mut self.all);
        }
        let name = self.snapshot.services.get(self.selected)?.name.as_str();
        self.views.get_mut(name)
    }

    pub(super) fn view_key(&mut self, service: &str) -> Arc<str> {
        if let Some((key, _)) = self.views.get_key_value(service) {
            return key.clone();
        }
        let key: Arc<str> = Arc::from(service);
        self.views.insert(key.clone(), LogView::new(true));
        key
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
        for line in lines {
            let line = Arc::new(Line::from_log(&key, line));
            view.push_live(line.clone(), cap, queries);
            self.all.push_live(line, cap, queries);
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
        self.all.merge(first_chunk, cap, &self.queries);
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
        let key = if self.show_all {
            None
        } else {
            self.current_key()
        };
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
        if let Some(key) = (!self.show_all).then(|| self.current_key()).flatten() {
            self.load_older(&key);
        }
    }

    pub(super) fn follow_on(&mut self) {
        let show_all = self.show_all;
        let key = self.current_key();
        let Some(view) = self.current_view_mut() else {
            return;
        };
        // The merged view never detaches: it has no file to read the tail from.
        if view.follow_live()
            && !show_all
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
        for view in self.views.values_mut() {
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
