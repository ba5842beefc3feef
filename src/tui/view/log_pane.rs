//! The log pane: its title bar (whose log, follow or paused, the search and filter)
//! and its body, the current log window cut or wrapped to the pane, bottom-anchored
//! while following.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::Theme;
use crate::logs::format_timestamp;
use crate::tui::layout::Areas;
use crate::tui::state::{LogGeometry, LogView, Pane, TuiState};
use crate::tui::text::{self, fit, truncate, truncate_spans, wrap_spans};

pub(super) fn draw_log_title(frame: &mut Frame, state: &TuiState, areas: &Areas, theme: Theme) {
    let area = areas.log_title;
    if area.height == 0 {
        return;
    }
    let focused = state.focus == Pane::Log;
    // The focused pane's bar is drawn heavy, which reads without colour or bold.
    let rule = if focused { "━" } else { "─" };
    let style = if focused { theme.bold() } else { Style::new() };
    let name = state.shown_title();
    let geometry = state.log_geometry_for(areas.log_body);
    let view = state.current_view();
    let mut spans = vec![
        Span::styled(format!("{rule}{rule} "), style),
        Span::styled(name, style.add_modifier(Modifier::BOLD)),
        Span::styled(format!(" {rule} "), style),
    ];
    let mut flags: Vec<Span<'static>> = Vec::new();
    match view {
        Some(view) if !view.follow => {
            let filtering = state.filtering();
            let top = view.top_index(filtering, &geometry);
            let below = view
                .display_len(filtering)
                .saturating_sub(top + geometry.rows);
            flags.push(Span::styled("paused", theme.fg(Color::Yellow)));
            if below > 0 || view.is_detached() {
                flags.push(Span::styled(
                    format!(" ↓{}{}", below, if view.is_detached() { "+" } else { "" }),
                    theme.fg(Color::Yellow),
                ));
            }
        }
        _ => flags.push(Span::styled("follow", theme.fg(Color::Green))),
    }
    if state.wrap {
        flags.push(Span::raw(" · wrap"));
    }
    if state.timestamps {
        flags.push(Span::raw(" · utc"));
    }
    if state.filtering() {
        let shown = view.map_or(0, |view| view.display_len(true));
        flags.push(Span::styled(
            format!(" · filter \"{}\" {shown} lines", state.filter_query()),
            theme.fg(Color::Magenta),
        ));
    }
    if state.searching() {
        let hits = view.map(LogView::search_hits);
        let total = hits.map_or(0, |hits| hits.len());
        let position = view
            .and_then(|view| Some((view.current_match()?, hits?)))
            .and_then(|(current, hits)| hits.iter().position(|&hit| hit == current))
            .map(|index| format!("{}/{total}", index + 1))
            .unwrap_or_else(|| format!("{total} matches"));
        flags.push(Span::styled(
            format!(" · /{} {position}", state.search_query()),
            theme.fg(Color::Yellow),
        ));
    }
    spans.extend(flags);
    spans.push(Span::styled(format!(" {rule}"), style));
    let used = text::spans_width(&spans);
    spans.push(Span::styled(
        rule.repeat((area.width as usize).saturating_sub(used)),
        style,
    ));
    let line = truncate_spans(spans, area.width as usize);
    frame.render_widget(Paragraph::new(line), area);
}

/// Rows for one log line: a separator for a generation boundary, else the (cut or
/// wrapped) text with its prefixes and search highlights.
fn line_rows(
    state: &TuiState,
    view: &LogView,
    seq: i64,
    geometry: &LogGeometry,
    theme: Theme,
) -> Vec<Line<'static>> {
    let Some(line) = view.line(seq) else {
        return Vec::new();
    };
    let plain = state.copy;
    let mut spans = Vec::new();
    if state.timestamps {
        let stamp = format_timestamp(line.at_ms);
        spans.push(Span::styled(
            format!("{} ", stamp.get(11..19).unwrap_or("")),
            theme.dim(),
        ));
    }
    if let Some(name_width) = state.prefix_name_width() {
        let (label, index) = state.line_label(&line.service);
        let name = fit(label, name_width);
        spans.push(Span::styled(
            format!("{name} │ "),
            if plain {
                Style::new()
            } else {
                theme.service(index)
            },
        ));
    }
    if line.is_boundary() && !plain {
        let label = line
            .text
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        let style = theme.fg(Color::Yellow).add_modifier(Modifier::BOLD);
        spans.push(Span::styled(format!("──── {label} "), style));
        let used = text::spans_width(&spans);
        spans.push(Span::styled(
            "─".repeat(geometry.width.saturating_sub(used)),
            style,
        ));
        return vec![truncate_spans(spans, geometry.width)];
    }
    let prefix_spans = spans.len();
    let base = if plain {
        Style::new()
    } else {
        theme.stream(line.stream)
    };
    let hits = if state.searching() && !plain {
        text::find_all(&line.text, state.search_query())
    } else {
        Vec::new()
    };
    let mut at = 0;
    let current = view.current_match() == Some(seq);
    for range in hits {
        if range.start > at {
            spans.push(Span::styled(line.text[at..range.start].to_owned(), base));
        }
        spans.push(Span::styled(
            line.text[range.clone()].to_owned(),
            theme.hit(current),
        ));
        at = range.end;
    }
    if at < line.text.len() {
        spans.push(Span::styled(line.text[at..].to_owned(), base));
    }
    if geometry.wrap {
        // Continuation rows start under the text, not under the prefixes.
        let prefix = spans.drain(..prefix_spans).collect::<Vec<_>>();
        let text_width = geometry.width.saturating_sub(geometry.prefix).max(1);
        let indent = " ".repeat(geometry.prefix.min(geometry.width.saturating_sub(1)));
        wrap_spans(spans, text_width)
            .into_iter()
            .enumerate()
            .map(|(row, line)| {
                let mut row_spans = if row == 0 {
                    prefix.clone()
                } else {
                    vec![Span::raw(indent.clone())]
                };
                row_spans.extend(line.spans);
                truncate_spans(row_spans, geometry.width)
            })
            .collect()
    } else {
        vec![truncate_spans(spans, geometry.width)]
    }
}

pub(super) fn draw_log_body(frame: &mut Frame, state: &TuiState, area: Rect, theme: Theme) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let geometry = state.log_geometry_for(area);
    let Some(view) = state.current_view() else {
        return;
    };
    let filtering = state.filtering();
    let len = view.display_len(filtering);
    if len == 0 {
        let note = if filtering {
            "(no line matches the filter)"
        } else {
            "(no output yet)"
        };
        frame.render_widget(
            Paragraph::new(Line::styled(
                truncate(note, area.width as usize).into_owned(),
                theme.dim(),
            )),
            area,
        );
        return;
    }
    let mut rows: Vec<Line<'static>> = Vec::new();
    if view.follow {
        // Bottom-anchored: the newest line always ends on the last row.
        let mut index = len;
        while index > 0 && rows.len() < geometry.rows {
            index -= 1;
            if let Some(seq) = view.display_seq(filtering, index) {
                let mut line_rows = line_rows(state, view, seq, &geometry, theme);
                line_rows.append(&mut rows);
                rows = line_rows;
            }
        }
        let excess = rows.len().saturating_sub(geometry.rows);
        rows.drain(..excess);
    } else {
        let mut index = view.top_index(filtering, &geometry);
        while index < len && rows.len() < geometry.rows {
            if let Some(seq) = view.display_seq(filtering, index) {
                rows.extend(line_rows(state, view, seq, &geometry, theme));
            }
            index += 1;
        }
        rows.truncate(geometry.rows);
    }
    frame.render_widget(Paragraph::new(rows), area);
}
