//! What is drawn on top of the screen: the key help and the quit dialog, centred.

use ratatui::layout::{Alignment, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::Theme;
use crate::tui::keys::HELP;
use crate::tui::text::{fit, truncate_spans, width};

fn centered(area: Rect, wanted_width: u16, wanted_height: u16) -> Rect {
    let w = wanted_width.min(area.width);
    let h = wanted_height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

pub(super) fn draw_help(frame: &mut Frame, area: Rect, theme: Theme) {
    let key_width = HELP.iter().map(|(keys, _)| width(keys)).max().unwrap_or(0);
    let text_width = HELP.iter().map(|(_, what)| width(what)).max().unwrap_or(0);
    let entry_width = key_width + 2 + text_width;
    let inner_width = area.width.saturating_sub(2) as usize;
    let inner_height = area.height.saturating_sub(2) as usize;
    // One column when it fits, else two side by side.
    let columns = if HELP.len() <= inner_height || inner_width < 2 * 24 + 3 {
        1
    } else {
        2
    };
    let per_column = HELP.len().div_ceil(columns);
    let column_width = if columns == 1 {
        entry_width.min(inner_width)
    } else {
        entry_width.min((inner_width - 3) / 2)
    };
    let box_width = (column_width * columns + 3 * (columns - 1) + 2) as u16;
    let box_height = (per_column + 2) as u16;
    let rect = centered(area, box_width, box_height);
    frame.render_widget(Clear, rect);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" keys · any key closes ")
        .title_alignment(Alignment::Center);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let entry = |index: usize| -> Vec<Span<'static>> {
        let Some((keys, what)) = HELP.get(index) else {
            return vec![Span::raw(" ".repeat(column_width))];
        };
        let keys_cells = key_width.min(column_width);
        let what_cells = column_width.saturating_sub(keys_cells + 2);
        vec![
            Span::styled(fit(keys, keys_cells), theme.bold()),
            Span::raw("  "),
            Span::raw(fit(what, what_cells)),
        ]
    };
    let lines: Vec<Line> = (0..per_column)
        .map(|row| {
            let mut spans = entry(row);
            if columns == 2 {
                spans.push(Span::raw(" │ "));
                spans.extend(entry(row + per_column));
            }
            truncate_spans(spans, inner.width as usize)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

pub(super) fn draw_confirm(frame: &mut Frame, area: Rect, theme: Theme) {
    let lines = [
        Line::styled("Stop the fleet and quit?", theme.bold()),
        Line::raw(""),
        Line::raw("y / Enter  stop every service, exit"),
        Line::raw("n / Esc    go back"),
    ];
    let inner_width = lines.iter().map(Line::width).max().unwrap_or(0) + 2;
    let rect = centered(area, inner_width as u16 + 2, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.error());
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let lines: Vec<Line> = lines
        .into_iter()
        .map(|line| {
            let style = line.style;
            let mut spans = vec![Span::raw(" ")];
            spans.extend(line.spans);
            truncate_spans(spans, inner.width as usize).style(style)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
