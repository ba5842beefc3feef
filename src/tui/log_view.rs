//! One scrollable window of log lines: what it holds, where it is scrolled to, which
//! lines match the search and filter, and the merge of services into one window.
//!
//! A [`LogView`] knows nothing of services, selection or the loop: [`super::state`]
//! owns one per service plus the merged one, says which is on screen, and turns what a
//! view asks for (older lines, newer lines, the tail) into [`super::Request`]s.
//!
//! # Log windows
//! Each service keeps at most `log_window` lines in memory. While following, new lines
//! push the oldest out. Scrolling up to the oldest line asks for older lines from the
//! file; when that makes the window too big, the newest lines are dropped and the
//! window is *detached* from the live end: new lines are only counted until the user
//! scrolls back down (newer lines are read) or jumps to the end (the tail is read). A
//! window the user is reading (not following) never loses the lines on screen: when it
//! is full it detaches instead of dropping its front. Lines are numbered by a sequence
//! that survives both ends moving, so positions and search hits stay valid.

use std::collections::VecDeque;
use std::sync::Arc;

use super::text;
use crate::logs::{parse_timestamp, LogLine, Stream};

/// Lines kept in memory per service (and for the merged view). At ~100 bytes a line
/// this bounds a flooding service to a few MB; older lines are read back on demand.
pub const LOG_WINDOW: usize = 50_000;
/// Lines read from the file per scrollback step.
pub const LOAD_CHUNK: usize = 5_000;
/// Lines read from each service's file when the UI starts: enough for a first screen
/// and the merged view, cheap for 300 services.
pub const INITIAL_TAIL: usize = 500;
/// Scrolling closer than this many lines to the oldest line in memory fetches more.
pub const PREFETCH_LINES: usize = 200;
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

/// Search and filter text; `revision` changes whenever either does, so a view knows
/// whether its hit lists are current.
#[derive(Debug, Clone, Default)]
pub(super) struct Queries {
    pub search: String,
    pub filter: String,
    revision: u64,
}

impl Queries {
    /// Returns whether the search changed (and with it the revision).
    pub(super) fn set_search(&mut self, text: String) -> bool {
        let changed = self.search != text;
        if changed {
            self.search = text;
            self.revision += 1;
        }
        changed
    }

    /// Returns whether the filter changed (and with it the revision).
    pub(super) fn set_filter(&mut self, text: String) -> bool {
        let changed = self.filter != text;
        if changed {
            self.filter = text;
            self.revision += 1;
        }
        changed
    }
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
    /// `can_load`: the window has a file behind it to read older and newer lines from.
    pub(super) fn new(can_load: bool) -> LogView {
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

    /// Every line held, oldest first.
    pub fn lines_in_order(&self) -> impl Iterator<Item = &Arc<Line>> {
        self.lines.iter()
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

    pub(super) fn ensure_hits(&mut self, queries: &Queries) {
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

    pub(super) fn invalidate_hits(&mut self) {
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
    pub(super) fn push_live(&mut self, line: Arc<Line>, cap: usize, queries: &Queries) {
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

    // ----- reading the file back ---------------------------------------------------

    /// The first read of a new window (the end of its file), once per window: how many
    /// lines the window holds and its oldest, or `None` if it was asked already.
    pub(super) fn begin_initial_load(&mut self) -> Option<(usize, Option<Arc<Line>>)> {
        if self.initial_requested {
            return None;
        }
        self.initial_requested = true;
        self.loading = true;
        Some((self.len(), self.lines.front().cloned()))
    }

    /// A read of older lines, unless one is under way or there is nothing older: about
    /// how many lines from the end of the file the oldest in memory is, and that line.
    pub(super) fn begin_load_older(&mut self) -> Option<(usize, Option<Arc<Line>>)> {
        if self.loading || self.at_file_start || !self.can_load {
            return None;
        }
        self.loading = true;
        Some((
            self.len() + self.lines_after_back,
            self.lines.front().cloned(),
        ))
    }

    /// A read of newer lines, unless one is under way: about how many lines of the
    /// file follow the newest in memory, and that line.
    pub(super) fn begin_load_newer(&mut self) -> Option<(usize, Arc<Line>)> {
        let back = self.lines.back().cloned()?;
        if self.loading {
            return None;
        }
        self.loading = true;
        Some((self.lines_after_back, back))
    }

    /// Older lines arrived, oldest first; `at_file_start` says the file has nothing
    /// older. Returns the lines the merged view should take: a window's first chunk,
    /// so the merged view has history too, and nothing after that.
    pub(super) fn older_loaded(
        &mut self,
        lines: Vec<Arc<Line>>,
        at_file_start: bool,
        cap: usize,
        queries: &Queries,
    ) -> Vec<Arc<Line>> {
        let before = self.first_seq;
        self.prepend(lines, cap, queries);
        self.loading = false;
        self.at_file_start = at_file_start;
        if self.merged_into_all {
            return Vec::new();
        }
        self.merged_into_all = true;
        (self.first_seq..before)
            .filter_map(|seq| self.line(seq).cloned())
            .collect()
    }

    /// Newer lines arrived; `reached_end` says they run to the end of the file, so the
    /// window is live again.
    pub(super) fn newer_loaded(
        &mut self,
        lines: Vec<Arc<Line>>,
        reached_end: bool,
        cap: usize,
        queries: &Queries,
    ) {
        self.append_loaded(lines, reached_end, cap, queries);
        self.loading = false;
    }

    /// The end of the file arrived: it becomes the whole window, following.
    pub(super) fn tail_loaded(
        &mut self,
        lines: Vec<Arc<Line>>,
        at_file_start: bool,
        queries: &Queries,
    ) {
        self.replace(lines, at_file_start, queries);
        self.loading = false;
    }

    /// A read failed; the next one may go.
    pub(super) fn load_failed(&mut self) {
        self.loading = false;
    }

    /// Merges lines sorted by time into this window (itself in arrival order, which is
    /// time order up to a few milliseconds between services): how the merged view
    /// takes each service's first chunk.
    pub(super) fn merge(&mut self, lines: Vec<Arc<Line>>, cap: usize, queries: &Queries) {
        if lines.is_empty() {
            return;
        }
        let end_seq = self.end_seq();
        let existing = std::mem::take(&mut self.lines);
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
        self.first_seq = end_seq - merged.len() as i64;
        self.lines = merged;
        self.top = self.top.max(self.first_seq);
        self.invalidate_hits();
        self.ensure_hits(queries);
    }

    // ----- scrolling and following -------------------------------------------------

    /// Scrolls by `delta` shown lines (negative is up). Scrolling up stops following;
    /// reaching the end follows again, unless the window is detached from the file's
    /// end (then the newer lines must be read first).
    pub(super) fn scroll_by(&mut self, delta: i64, filtering: bool, geometry: &LogGeometry) {
        let len = self.display_len(filtering);
        if len == 0 {
            return;
        }
        let max_top = self.max_top(filtering, geometry);
        let current = self.top_index(filtering, geometry) as i64;
        let target = (current + delta).clamp(0, max_top as i64) as usize;
        if delta > 0 && target >= max_top && !self.is_detached() {
            self.follow = true;
            return;
        }
        if delta < 0 || !self.follow {
            self.follow = false;
            if let Some(seq) = self.display_seq(filtering, target) {
                self.top = seq;
            }
        }
    }

    /// Stops following with the first shown line on top.
    pub(super) fn scroll_to_top(&mut self, filtering: bool) {
        self.follow = false;
        if let Some(seq) = self.display_seq(filtering, 0) {
            self.top = seq;
        }
    }

    /// Follows the live end. Returns whether the window must first be replaced by the
    /// end of the file (it is detached and no read is under way; the read then counts
    /// as under way).
    pub(super) fn follow_live(&mut self) -> bool {
        self.follow = true;
        self.current_match = None;
        if self.is_detached() && !self.loading {
            self.loading = true;
            return true;
        }
        false
    }

    /// Stops following, keeping on screen what is there now.
    pub(super) fn follow_off(&mut self, filtering: bool, geometry: &LogGeometry) {
        let index = self.top_index(filtering, geometry);
        if let Some(seq) = self.display_seq(filtering, index) {
            self.top = seq;
        }
        self.follow = false;
    }

    /// Forgets the current search match (the query or the window on screen changed).
    pub(super) fn clear_match(&mut self) {
        self.current_match = None;
    }

    /// `n` goes to the next (newer) match, `N` to the previous (older) one; both wrap.
    /// Without a current match, `N` (and Enter on a search) goes to the newest match.
    /// The match goes a third of the way down the screen. Returns false when nothing
    /// matches.
    pub(super) fn jump_match(
        &mut self,
        forward: bool,
        filtering: bool,
        geometry: &LogGeometry,
    ) -> bool {
        let hits = &self.hits.search;
        let (Some(&first), Some(&last)) = (hits.front(), hits.back()) else {
            return false;
        };
        let target = match (self.current_match, forward) {
            (None, true) => {
                let from = if self.follow { i64::MIN } else { self.top };
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
        self.current_match = Some(target);
        let index = self.display_index(filtering, target);
        let wanted_top = index
            .saturating_sub(geometry.rows / 3)
            .min(self.max_top(filtering, geometry));
        if let Some(seq) = self.display_seq(filtering, wanted_top) {
            self.top = seq;
        }
        self.follow = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 10;

    fn line(n: u64) -> Arc<Line> {
        Arc::new(Line {
            service: Arc::from("api"),
            at_ms: 1_000 + n,
            stream: Stream::Stdout,
            text: format!("line {n}").into_boxed_str(),
        })
    }

    fn lines(range: std::ops::Range<u64>) -> Vec<Arc<Line>> {
        range.map(line).collect()
    }

    fn texts(view: &LogView) -> Vec<String> {
        (0..view.len())
            .filter_map(|index| view.display_seq(false, index))
            .filter_map(|seq| view.line(seq))
            .map(|line| line.text.to_string())
            .collect()
    }

    fn numbered(range: std::ops::Range<u64>) -> Vec<String> {
        range.map(|n| format!("line {n}")).collect()
    }

    fn geometry(rows: usize) -> LogGeometry {
        LogGeometry {
            rows,
            width: 80,
            wrap: false,
            prefix: 0,
        }
    }

    /// A service window that holds `range`, its first read answered.
    fn window(range: std::ops::Range<u64>, queries: &Queries) -> LogView {
        let mut view = LogView::new(true);
        view.begin_initial_load();
        view.older_loaded(Vec::new(), true, CAP, queries);
        for line in lines(range) {
            view.push_live(line, CAP, queries);
        }
        view
    }

    #[test]
    fn a_following_window_drops_its_oldest_lines_and_their_hits() {
        let mut queries = Queries::default();
        queries.set_search("line 1".into());
        let mut view = window(0..1, &queries);
        view.ensure_hits(&queries);
        for line in lines(1..15) {
            view.push_live(line, CAP, &queries);
        }
        assert_eq!(texts(&view), numbered(5..15));
        let hits: Vec<String> = view
            .search_hits()
            .iter()
            .filter_map(|&seq| view.line(seq))
            .map(|line| line.text.to_string())
            .collect();
        // "line 1" itself scrolled out; its hit went with it.
        assert_eq!(hits, numbered(10..15));
        assert!(!view.is_detached());
    }

    #[test]
    fn a_reading_window_keeps_its_lines_and_detaches_when_full() {
        let queries = Queries::default();
        let mut view = window(0..CAP as u64, &queries);
        view.scroll_to_top(false);
        for line in lines(10..13) {
            view.push_live(line, CAP, &queries);
        }
        assert_eq!(texts(&view), numbered(0..10));
        assert!(view.is_detached());
        // Scrolling to the end of a detached window does not follow: newer lines must
        // be read from the file first.
        view.scroll_by(100, false, &geometry(3));
        assert!(!view.follow);
        let (after, back) = view.begin_load_newer().expect("newer lines are wanted");
        assert_eq!((after, &*back.text), (3, "line 9"));
        assert!(view.begin_load_newer().is_none(), "one read at a time");
    }

    #[test]
    fn newer_lines_are_joined_at_the_seam_and_reattach_at_the_end_of_the_file() {
        let queries = Queries::default();
        let mut view = window(0..CAP as u64, &queries);
        view.scroll_to_top(false);
        for line in lines(10..13) {
            view.push_live(line, CAP, &queries);
        }
        view.begin_load_newer();
        // The chunk starts at the window's last line, which is cut.
        view.newer_loaded(lines(9..13), true, CAP, &queries);
        assert_eq!(texts(&view), numbered(3..13));
        assert!(!view.is_detached());
        view.scroll_by(100, false, &geometry(3));
        assert!(view.follow, "the end of an attached window follows again");
    }

    #[test]
    fn older_lines_are_joined_at_the_seam_and_the_first_chunk_goes_to_the_merged_view() {
        let queries = Queries::default();
        let mut view = LogView::new(true);
        assert_eq!(view.begin_initial_load(), Some((0, None)));
        assert_eq!(view.begin_initial_load(), None, "asked once");
        for line in lines(6..8) {
            view.push_live(line, CAP, &queries);
        }
        // The file grew while it was read: the chunk overlaps memory by one line.
        let first = view.older_loaded(lines(3..7), false, CAP, &queries);
        assert_eq!(texts(&view), numbered(3..8));
        assert_eq!(first.len(), 3, "only what was new to the window");
        let (before, front) = view.begin_load_older().expect("older lines are wanted");
        assert_eq!((before, &*front.expect("a front line").text), (5, "line 3"));
        let again = view.older_loaded(lines(0..3), true, CAP, &queries);
        assert!(
            again.is_empty(),
            "the merged view takes the first chunk only"
        );
        assert_eq!(texts(&view), numbered(0..8));
        assert!(
            view.begin_load_older().is_none(),
            "nothing older than the file start"
        );
    }

    #[test]
    fn the_merged_view_interleaves_by_time_and_keeps_its_cap() {
        let queries = Queries::default();
        let mut all = LogView::new(false);
        let even: Vec<Arc<Line>> = (0..16).step_by(2).map(line).collect();
        let odd: Vec<Arc<Line>> = (1..16).step_by(2).map(line).collect();
        all.merge(even, CAP, &queries);
        all.merge(odd, CAP, &queries);
        assert_eq!(texts(&all), numbered(6..16));
        assert!(
            all.begin_load_older().is_none(),
            "no file behind the merged view"
        );
    }

    #[test]
    fn following_a_detached_window_asks_for_the_tail_once() {
        let queries = Queries::default();
        let mut view = window(0..CAP as u64, &queries);
        view.follow_off(false, &geometry(3));
        assert!(!view.follow);
        assert!(!view.follow_live(), "an attached window just follows");
        view.scroll_to_top(false);
        view.push_live(line(10), CAP, &queries);
        assert!(view.follow_live());
        assert!(view.follow);
        assert!(!view.follow_live(), "the tail is already being read");
        view.tail_loaded(lines(5..11), false, &queries);
        assert_eq!(texts(&view), numbered(5..11));
        assert!(!view.is_detached());
    }

    #[test]
    fn matches_wrap_and_a_window_without_matches_says_so() {
        let mut queries = Queries::default();
        let mut view = window(0..CAP as u64, &queries);
        assert!(!view.jump_match(true, false, &geometry(3)));
        assert!(queries.set_search("line 2".into()));
        assert!(
            !queries.set_search("line 2".into()),
            "same text, same revision"
        );
        view.ensure_hits(&queries);
        assert!(view.jump_match(false, false, &geometry(3)));
        let only = view.current_match();
        assert!(view.jump_match(true, false, &geometry(3)));
        assert_eq!(view.current_match(), only, "one match wraps to itself");
        assert!(!view.follow, "a match stops following");
        let filter_changed = queries.set_filter("9".into());
        assert!(filter_changed);
        view.invalidate_hits();
        view.ensure_hits(&queries);
        assert_eq!(view.display_len(true), 1);
        assert!(view.search_hits().is_empty(), "the match is filtered out");
    }
}
